//! Kubernetes manifests read from multi-document YAML (or JSON) with the line of every value kept,
//! so an error in a ConstraintTemplate or constraint names `file:line:column`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_saphyr::Spanned;

use crate::error::{SourceError, SourceErrors};

/// One Kubernetes object and where it was read from.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    /// The object as JSON (what the API server would store and Gatekeeper would review).
    pub object: Value,
    pub file: PathBuf,
    /// 1-based line of the document's first key; 0 when the object was not read from a file.
    pub line: u32,
    pub(crate) spans: Option<Node>,
    /// The text of the file, to tell literal block scalars from other strings.
    pub(crate) source: Option<Arc<str>>,
}

impl Manifest {
    /// An object that was not read from a file (rendered, or built by a test).
    pub fn from_value(origin: impl Into<PathBuf>, object: Value) -> Self {
        Self {
            object,
            file: origin.into(),
            line: 0,
            spans: None,
            source: None,
        }
    }

    /// `apiVersion`, `kind`, `metadata.namespace` and `metadata.name`, for reports.
    pub fn reference(&self) -> ObjectRef {
        ObjectRef::of(&self.object)
    }

    /// `(line, column)` of the value at `path` (map keys and sequence indexes as strings), or the
    /// document's own line when the path cannot be followed.
    pub(crate) fn position(&self, path: &[&str]) -> (u32, u32) {
        self.spans
            .as_ref()
            .and_then(|n| n.find(path))
            .map(|n| (n.line, n.column))
            .unwrap_or((self.line, if self.line > 0 { 1 } else { 0 }))
    }

    pub(crate) fn node(&self, path: &[&str]) -> Option<&Node> {
        self.spans.as_ref().and_then(|n| n.find(path))
    }

    pub(crate) fn error(&self, path: &[&str], message: impl Into<String>) -> SourceError {
        let (line, column) = self.position(path);
        SourceError::new(&self.file, line, column, message)
    }
}

/// Names an object the way `kubectl` does, for findings.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl ObjectRef {
    pub fn of(object: &Value) -> Self {
        let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_owned();
        let metadata = object.get("metadata");
        Self {
            api_version: text(object.get("apiVersion")),
            kind: text(object.get("kind")),
            namespace: text(metadata.and_then(|m| m.get("namespace"))),
            name: text(metadata.and_then(|m| m.get("name"))),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}/{}", self.kind, self.name)
        } else {
            write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// Reads every object from `paths`: files, or directories walked recursively for `.yaml`, `.yml`
/// and `.json` files in name order. Empty documents are skipped. Unreadable files and invalid
/// YAML are errors; every file is tried so all errors are reported at once.
pub fn load_manifests<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<Manifest>, SourceErrors> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        collect_files(path.as_ref(), &mut files, &mut errors);
    }
    let mut manifests = Vec::new();
    for file in files {
        match std::fs::read_to_string(&file) {
            Ok(text) => match parse_documents(&file, &text) {
                Ok(mut docs) => manifests.append(&mut docs),
                Err(e) => errors.push(e),
            },
            Err(e) => errors.push(
                SourceError::new(&file, 0, 0, format!("cannot read manifest: {e}"))
                    .expected("a readable YAML or JSON file"),
            ),
        }
    }
    if errors.is_empty() {
        Ok(manifests)
    } else {
        Err(SourceErrors(errors))
    }
}

fn collect_files(path: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<SourceError>) {
    if path.is_file() {
        files.push(path.to_path_buf());
        return;
    }
    if !path.is_dir() {
        errors.push(
            SourceError::new(path, 0, 0, "no such file or directory")
                .expected("a manifest file or a directory of manifests"),
        );
        return;
    }
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) => {
            errors.push(SourceError::new(
                path,
                0,
                0,
                format!("cannot list directory: {e}"),
            ));
            return;
        }
    };
    let mut children: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    children.sort();
    for child in children {
        if child.is_dir() {
            collect_files(&child, files, errors);
        } else if matches!(
            child.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            files.push(child);
        }
    }
}

/// Parses every document of one YAML stream; `file` is used for locations only.
pub fn parse_documents(file: &Path, text: &str) -> Result<Vec<Manifest>, SourceError> {
    let options = serde_saphyr::options! { budget: Some(crate::yaml_limits::budget_for(text)) };
    let nodes: Vec<Node> = serde_saphyr::from_str_multiple_with_options(text, options)
        .map_err(|e| yaml_error(file, &e))?;
    let source: Arc<str> = Arc::from(text);
    Ok(nodes
        .into_iter()
        .filter(|n| !matches!(n.kind, NodeKind::Null))
        .map(|n| Manifest {
            object: n.to_json(),
            file: file.to_path_buf(),
            line: n.first_line(),
            spans: Some(n),
            source: Some(Arc::clone(&source)),
        })
        .collect())
}

fn yaml_error(file: &Path, e: &serde_saphyr::Error) -> SourceError {
    let (line, column) = e
        .location()
        .map(|l| (l.line() as u32, l.column() as u32))
        .unwrap_or((0, 0));
    let message = e.to_string();
    // The first line carries "error: line L column C: what"; the rest is a source snippet.
    let first = message.lines().next().unwrap_or("invalid YAML").trim();
    let what = first
        .strip_prefix("error: ")
        .and_then(|rest| {
            rest.split_once(": ")
                .filter(|(loc, _)| loc.starts_with("line "))
                .map(|(_, w)| w)
        })
        .unwrap_or(first);
    SourceError::new(file, line, column, format!("invalid YAML: {what}"))
        .expected("Kubernetes objects as YAML documents separated by ---")
}

/// A YAML value with the position where it starts.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Node {
    pub line: u32,
    pub column: u32,
    pub kind: NodeKind,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum NodeKind {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

impl Node {
    fn find(&self, path: &[&str]) -> Option<&Node> {
        let Some((first, rest)) = path.split_first() else {
            return Some(self);
        };
        let child = match &self.kind {
            NodeKind::Map(entries) => entries.iter().find(|(k, _)| k == first).map(|(_, v)| v),
            NodeKind::Seq(items) => first.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        }?;
        child.find(rest)
    }

    /// The line of the document's first key (a scalar value sits on its key's line).
    fn first_line(&self) -> u32 {
        let line = match &self.kind {
            NodeKind::Map(entries) => entries.first().map_or(self.line, |(_, v)| v.line),
            _ => self.line,
        };
        line.max(1)
    }

    fn to_json(&self) -> Value {
        match &self.kind {
            NodeKind::Null => Value::Null,
            NodeKind::Bool(b) => Value::Bool(*b),
            NodeKind::Int(i) => Value::from(*i),
            NodeKind::UInt(u) => Value::from(*u),
            NodeKind::Float(f) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            NodeKind::Str(s) => Value::String(s.clone()),
            NodeKind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeKind::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<NodeKind>::deserialize(deserializer)?;
        Ok(Node {
            line: spanned.referenced.line() as u32,
            column: spanned.referenced.column() as u32,
            kind: spanned.value,
        })
    }
}

impl<'de> Deserialize<'de> for NodeKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(KindVisitor)
    }
}

struct KindVisitor;

impl<'de> Visitor<'de> for KindVisitor {
    type Value = NodeKind;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<NodeKind, E> {
        Ok(NodeKind::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<NodeKind, E> {
        Ok(NodeKind::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<NodeKind, E> {
        Ok(NodeKind::UInt(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<NodeKind, E> {
        Ok(NodeKind::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<NodeKind, E> {
        Ok(NodeKind::Str(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<NodeKind, E> {
        Ok(NodeKind::Str(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<NodeKind, E> {
        Ok(NodeKind::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<NodeKind, E> {
        Ok(NodeKind::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<NodeKind, D::Error> {
        NodeKind::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NodeKind, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(NodeKind::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NodeKind, A::Error> {
        let mut entries: Vec<(String, Node)> = Vec::new();
        while let Some(key) = map.next_key::<Key>()? {
            let value = map.next_value::<Node>()?;
            // Later keys win, as in JSON decoding; Kubernetes rejects duplicates anyway.
            entries.retain(|(k, _)| *k != key.0);
            entries.push((key.0, value));
        }
        Ok(NodeKind::Map(entries))
    }
}

/// A mapping key: Kubernetes keys are strings, but YAML lets `80:` or `true:` through as scalars.
struct Key(String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a scalar mapping key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(Key(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Key, E> {
                Ok(Key("null".to_owned()))
            }
        }
        deserializer.deserialize_any(KeyVisitor)
    }
}

//! A located YAML tree: every node and every mapping key remembers its line and column, so the
//! typed readers in [`super::fields`] can point at the exact key that is wrong or unsupported.
//!
//! Parsing is YAML 1.2 (core schema: only `true`/`false` are booleans, so `name: y` stays a
//! string), duplicate keys are errors, and a malformed stream becomes one [`SourceError`] at the
//! parser's location — never a panic.

use std::fmt;
use std::path::Path;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use crate::error::SourceError;

/// One YAML node, as written.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
}

impl Node {
    /// What a user would call this kind of node, for "expected X, found Y" messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "a boolean",
            Node::Int(_) => "a number",
            Node::Float(_) => "a number",
            Node::Str(_) => "a string",
            Node::Seq(_) => "a list",
            Node::Map(_) => "a mapping",
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML node")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        i64::try_from(v)
            .map(Node::Int)
            .map_err(|_| E::custom(format!("number {v} is too large")))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
        i64::try_from(v)
            .map(Node::Int)
            .map_err(|_| E::custom(format!("number {v} is too large")))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
        i64::try_from(v)
            .map(Node::Int)
            .map_err(|_| E::custom(format!("number {v} is too large")))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Node, E> {
        String::from_utf8(v.to_vec())
            .map(Node::Str)
            .map_err(|_| E::custom("binary value is not UTF-8"))
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = access.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = access.next_entry()? {
            entries.push(entry);
        }
        Ok(Node::Map(entries))
    }
}

/// A node with its location.
pub type Located = Spanned<Node>;

/// Line of a located value (1-based).
pub fn line<T>(value: &Spanned<T>) -> u32 {
    u32::try_from(value.referenced.line()).unwrap_or(u32::MAX)
}

/// Column of a located value (1-based).
pub fn column<T>(value: &Spanned<T>) -> u32 {
    u32::try_from(value.referenced.column()).unwrap_or(u32::MAX)
}

/// Parses a multi-document YAML stream. Empty and `null` documents are dropped (as kubectl does).
pub fn documents(file: &Path, text: &str) -> Result<Vec<Located>, SourceError> {
    let options = serde_saphyr::options! {
        strict_booleans: true,
        with_snippet: false,
        budget: Some(crate::yaml_limits::budget_for(text)),
    };
    serde_saphyr::from_str_multiple_with_options::<Located, Vec<Located>>(text, options)
        .map_err(|e| yaml_error(file, &e))
}

fn yaml_error(file: &Path, e: &serde_saphyr::Error) -> SourceError {
    let (line, column) = e
        .location()
        .map(|l| {
            (
                u32::try_from(l.line()).unwrap_or(u32::MAX),
                u32::try_from(l.column()).unwrap_or(u32::MAX),
            )
        })
        .unwrap_or((0, 0));
    let rendered = e.to_string();
    let first = rendered.lines().next().unwrap_or("invalid YAML").trim();
    // serde-saphyr appends " at line L, column C"; the location is printed by SourceError.
    let what = first
        .rsplit_once(" at line ")
        .map(|(what, _)| what)
        .unwrap_or(first);
    SourceError::new(file, line, column, format!("invalid YAML: {what}"))
        .expected("well-formed YAML (Kubernetes manifests, documents separated by ---)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_locations_and_yaml12_scalars() {
        let docs = documents(
            Path::new("t.yaml"),
            "# c\na: y\nb: [\"80\", 80, true]\n---\n---\nc: {}\n",
        )
        .expect("parses");
        assert_eq!(docs.len(), 2);
        let Node::Map(entries) = &docs[0].value else {
            panic!("mapping expected")
        };
        assert_eq!(entries[0].0.value, "a");
        assert_eq!(line(&entries[0].0), 2);
        assert_eq!(entries[0].1.value, Node::Str("y".into()));
        let Node::Seq(items) = &entries[1].1.value else {
            panic!("list expected")
        };
        assert_eq!(items[0].value, Node::Str("80".into()));
        assert_eq!(items[1].value, Node::Int(80));
        assert_eq!(items[2].value, Node::Bool(true));
        assert_eq!(line(&docs[1]), 6);
    }

    #[test]
    fn malformed_yaml_is_a_located_error() {
        let err = documents(Path::new("bad.yaml"), "a: 1\nb: [1, 2\nc: 3\n").expect_err("bad");
        assert!(err.line >= 2, "{err}");
        let text = err.to_string();
        assert!(text.starts_with("bad.yaml:"), "{text}");
        assert!(!text.contains(" at line "), "{text}");
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let err = documents(Path::new("d.yaml"), "a: 1\na: 2\n").expect_err("dup");
        assert_eq!(err.line, 2);
        assert!(err.message.contains("duplicate"), "{err}");
    }
}

//! Strict, located reading of a [`Node`] tree into typed values. Unknown keys, wrong types and
//! duplicate keys become [`SourceError`]s at the offending line; fields that are read but not
//! modelled become [`Unsupported`] entries. Nothing here panics.

use std::collections::BTreeMap;
use std::path::Path;

use serde_saphyr::Spanned;

use super::model::{Labels, Unsupported, Value, Values};
use super::yaml::{Located, Node, column, line};
use crate::error::SourceError;

/// Collects what one document's reading finds.
pub struct Ctx<'a> {
    pub file: &'a Path,
    /// `AuthorizationPolicy foo/bar`, for unsupported entries.
    pub object: String,
    pub errors: Vec<SourceError>,
    pub unsupported: Vec<Unsupported>,
}

impl<'a> Ctx<'a> {
    pub fn new(file: &'a Path) -> Self {
        Ctx {
            file,
            object: String::new(),
            errors: Vec::new(),
            unsupported: Vec::new(),
        }
    }

    pub fn error<T>(
        &mut self,
        at: &Spanned<T>,
        message: impl Into<String>,
        expected: impl Into<String>,
    ) {
        self.errors
            .push(SourceError::new(self.file, line(at), column(at), message).expected(expected));
    }

    pub fn unsupported(&mut self, at_line: u32, field: &str, why: impl Into<String>) {
        self.unsupported.push(Unsupported {
            file: self.file.to_path_buf(),
            line: at_line,
            object: self.object.clone(),
            field: field.to_owned(),
            why: why.into(),
        });
    }

    /// Reads a mapping whose keys must all be in `known`; `None` (after reporting) otherwise.
    pub fn map<'n>(&mut self, node: &'n Located, path: &str, known: &[&str]) -> Option<Fields<'n>> {
        let Node::Map(entries) = &node.value else {
            self.error(
                node,
                format!("{path} is {}", node.value.kind()),
                "a mapping (key: value lines)",
            );
            return None;
        };
        let mut fields = Fields {
            path: path.to_owned(),
            entries: Vec::new(),
        };
        for (key, value) in entries {
            if !known.contains(&key.value.as_str()) {
                let hint = suggestion(&key.value, known)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                self.error(
                    key,
                    format!("unknown field `{}` in {path}{hint}", key.value),
                    format!("one of {}", known.join(", ")),
                );
                continue;
            }
            fields.entries.push((key, value));
        }
        Some(fields)
    }

    /// A required or optional string; `null` counts as absent.
    pub fn string(&mut self, node: &Located, path: &str) -> Option<Value> {
        match &node.value {
            Node::Str(s) => Some(Value {
                text: s.clone(),
                line: line(node),
            }),
            Node::Null => None,
            other => {
                self.error(
                    node,
                    format!("{path} is {}, not a string", other.kind()),
                    "a string (quote numbers and booleans, e.g. \"8080\")",
                );
                None
            }
        }
    }

    /// A list of strings; `null` is an empty list.
    pub fn strings(&mut self, node: &Located, path: &str) -> Values {
        match &node.value {
            Node::Null => Vec::new(),
            Node::Seq(items) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| {
                    let item_path = format!("{path}[{i}]");
                    match &item.value {
                        Node::Str(_) => self.string(item, &item_path),
                        other => {
                            self.error(
                                item,
                                format!("{item_path} is {}, not a string", other.kind()),
                                "a string (quote numbers and booleans, e.g. \"8080\")",
                            );
                            None
                        }
                    }
                })
                .collect(),
            other => {
                self.error(
                    node,
                    format!("{path} is {}", other.kind()),
                    "a list of strings, e.g. [\"a\", \"b\"]",
                );
                Vec::new()
            }
        }
    }

    /// A list of items of any shape; `null` is an empty list.
    pub fn list<'n>(&mut self, node: &'n Located, path: &str) -> Vec<&'n Located> {
        match &node.value {
            Node::Null => Vec::new(),
            Node::Seq(items) => items.iter().collect(),
            other => {
                self.error(
                    node,
                    format!("{path} is {}", other.kind()),
                    "a list (lines starting with -)",
                );
                Vec::new()
            }
        }
    }

    /// A string → string map (labels, annotations, matchLabels).
    pub fn labels(&mut self, node: &Located, path: &str) -> Labels {
        let mut labels = BTreeMap::new();
        match &node.value {
            Node::Null => {}
            Node::Map(entries) => {
                for (key, value) in entries {
                    let item_path = format!("{path}.{}", key.value);
                    if let Some(v) = self.string(value, &item_path) {
                        labels.insert(key.value.clone(), v.text);
                    } else if value.value == Node::Null {
                        self.error(value, format!("{item_path} is null"), "a string value");
                    }
                }
            }
            other => self.error(
                node,
                format!("{path} is {}", other.kind()),
                "a mapping of strings, e.g. {app: httpbin}",
            ),
        }
        labels
    }
}

/// The entries of a mapping whose keys were checked.
pub struct Fields<'n> {
    pub path: String,
    pub entries: Vec<(&'n Spanned<String>, &'n Located)>,
}

impl<'n> Fields<'n> {
    pub fn get(&self, key: &str) -> Option<&'n Located> {
        self.entries
            .iter()
            .find(|(k, _)| k.value == key)
            .map(|(_, v)| *v)
    }

    /// The key's own location (for "missing X" or unsupported reports).
    pub fn key(&self, key: &str) -> Option<&'n Spanned<String>> {
        self.entries
            .iter()
            .find(|(k, _)| k.value == key)
            .map(|(k, _)| *k)
    }

    pub fn path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }
}

/// The known key closest to a misspelt one, if close enough to be a typo.
fn suggestion<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (edit_distance(&key.to_lowercase(), &k.to_lowercase()), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_typos() {
        assert_eq!(
            suggestion("principal", &["principals", "namespaces"]),
            Some("principals")
        );
        assert_eq!(suggestion("zzz", &["principals", "namespaces"]), None);
    }
}

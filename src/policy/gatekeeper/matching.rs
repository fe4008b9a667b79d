//! A constraint's `spec.match`, with Gatekeeper's semantics (`pkg/mutation/match`): every top-level
//! matcher that is set must hold; an unset or empty matcher matches everything.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// A problem in `spec.match`, located by its path below the constraint's root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Issue {
    pub path: Vec<String>,
    pub message: String,
    pub expected: Option<String>,
}

impl Issue {
    fn new(path: &[&str], message: impl Into<String>, expected: &str) -> Self {
        Self {
            path: path.iter().map(|s| (*s).to_owned()).collect(),
            message: message.into(),
            expected: Some(expected.to_owned()),
        }
    }
}

/// Which objects a constraint applies to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Match {
    pub kinds: Vec<KindsMatcher>,
    pub scope: Scope,
    pub namespaces: Vec<Wildcard>,
    pub excluded_namespaces: Vec<Wildcard>,
    pub label_selector: Option<LabelSelector>,
    pub namespace_selector: Option<LabelSelector>,
    pub name: Option<Wildcard>,
}

/// One `kinds` entry: any of `api_groups` × any of `kinds`; empty or `*` means all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KindsMatcher {
    pub api_groups: Vec<String>,
    pub kinds: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scope {
    #[default]
    All,
    Cluster,
    Namespaced,
}

/// A name with an optional `*` at its front and/or end (`kube-*`, `*-system`, `*mesh*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wildcard(pub String);

impl Wildcard {
    pub fn matches(&self, candidate: &str) -> bool {
        let w = self.0.as_str();
        match (w.strip_prefix('*'), w.strip_suffix('*')) {
            (Some(_), Some(_)) if w.len() >= 2 => candidate.contains(&w[1..w.len() - 1]),
            (Some(suffix), _) => candidate.ends_with(suffix),
            (None, Some(prefix)) => candidate.starts_with(prefix),
            (None, None) => w == candidate,
        }
    }
}

/// A Kubernetes label selector: `matchLabels` and `matchExpressions`, all ANDed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub match_labels: BTreeMap<String, String>,
    pub match_expressions: Vec<Requirement>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    pub values: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl LabelSelector {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::In => value.is_some_and(|v| self.values.contains(v)),
            // Kubernetes: NotIn also matches objects without the key.
            Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

/// What the matcher looks at: the reviewed object (or old object), its group/kind and namespace.
pub(crate) struct Candidate<'a> {
    pub object: &'a Value,
    pub group: &'a str,
    pub kind: &'a str,
    /// The request's namespace ("" for cluster-scoped objects).
    pub namespace: &'a str,
    /// Labels of that namespace, when the Namespace object is known.
    pub namespace_labels: Option<BTreeMap<String, String>>,
}

impl Candidate<'_> {
    fn is_namespace(&self) -> bool {
        self.group.is_empty() && self.kind == "Namespace"
    }

    fn name(&self) -> &str {
        self.object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// The namespace the namespace matchers compare: a Namespace's own name, else the request's.
    fn effective_namespace(&self) -> Option<&str> {
        if self.is_namespace() {
            Some(self.name())
        } else if self.namespace.is_empty() {
            None
        } else {
            Some(self.namespace)
        }
    }
}

pub(crate) fn labels_of(object: &Value) -> BTreeMap<String, String> {
    object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

impl Match {
    /// Whether `candidate` is in scope. An error means Gatekeeper's matcher would fail too (a
    /// `namespaceSelector` for an object whose Namespace is unknown).
    pub(crate) fn matches(&self, candidate: &Candidate<'_>) -> Result<bool, String> {
        let kinds = self.kinds.is_empty()
            || self.kinds.iter().any(|k| {
                let kind =
                    k.kinds.is_empty() || k.kinds.iter().any(|x| x == "*" || x == candidate.kind);
                let group = k.api_groups.is_empty()
                    || k.api_groups
                        .iter()
                        .any(|g| g == "*" || g == candidate.group);
                kind && group
            });
        if !kinds {
            return Ok(false);
        }
        let has_namespace = !candidate.namespace.is_empty();
        let scope = match self.scope {
            Scope::All => true,
            Scope::Cluster => candidate.is_namespace() || !has_namespace,
            Scope::Namespaced => !candidate.is_namespace() && has_namespace,
        };
        if !scope {
            return Ok(false);
        }
        let namespace = candidate.effective_namespace();
        // A cluster-scoped object cannot be disqualified by namespace matchers.
        if let Some(ns) = namespace {
            if !self.namespaces.is_empty() && !self.namespaces.iter().any(|w| w.matches(ns)) {
                return Ok(false);
            }
            if self.excluded_namespaces.iter().any(|w| w.matches(ns)) {
                return Ok(false);
            }
        }
        if let Some(selector) = &self.label_selector
            && !selector.matches(&labels_of(candidate.object))
        {
            return Ok(false);
        }
        if let Some(selector) = &self.namespace_selector {
            let matched = if candidate.is_namespace() {
                selector.matches(&labels_of(candidate.object))
            } else if !has_namespace {
                true
            } else {
                match &candidate.namespace_labels {
                    Some(labels) => selector.matches(labels),
                    None => {
                        return Err(format!(
                            "namespaceSelector needs the labels of namespace \"{}\", which is not known",
                            candidate.namespace
                        ));
                    }
                }
            };
            if !matched {
                return Ok(false);
            }
        }
        if let Some(name) = &self.name
            && !name.matches(candidate.name())
        {
            return Ok(false);
        }
        Ok(true)
    }

    /// Parses `spec.match` strictly: a misspelt matcher would silently widen the constraint, so
    /// unknown keys are errors (Gatekeeper's CRD would prune them instead).
    pub(crate) fn parse(value: Option<&Value>) -> Result<Self, Vec<Issue>> {
        let base = ["spec", "match"];
        let mut issues = Vec::new();
        let mut out = Match::default();
        let Some(value) = value else {
            return Ok(out);
        };
        if value.is_null() {
            return Ok(out);
        }
        let Some(map) = value.as_object() else {
            return Err(vec![Issue::new(
                &base,
                "spec.match must be a mapping",
                "kinds, scope, namespaces, excludedNamespaces, labelSelector, namespaceSelector, name",
            )]);
        };
        for (key, v) in map {
            let path = [base[0], base[1], key.as_str()];
            match key.as_str() {
                "kinds" => match v.as_array() {
                    Some(items) => {
                        for (i, item) in items.iter().enumerate() {
                            let index = i.to_string();
                            let path = [base[0], base[1], "kinds", index.as_str()];
                            match parse_kinds(item, &path) {
                                Ok(k) => out.kinds.push(k),
                                Err(issue) => issues.push(issue),
                            }
                        }
                    }
                    None => issues.push(Issue::new(
                        &path,
                        "kinds must be a list",
                        "kinds: [{apiGroups: [\"\"], kinds: [Pod]}]",
                    )),
                },
                "scope" => match v.as_str() {
                    Some("*") => out.scope = Scope::All,
                    Some("Cluster") => out.scope = Scope::Cluster,
                    Some("Namespaced") => out.scope = Scope::Namespaced,
                    _ => issues.push(Issue::new(
                        &path,
                        format!("unknown scope {v}"),
                        "*, Cluster or Namespaced",
                    )),
                },
                "namespaces" | "excludedNamespaces" => match string_list(v) {
                    Some(list) => {
                        let list = list.into_iter().map(Wildcard).collect();
                        if key == "namespaces" {
                            out.namespaces = list;
                        } else {
                            out.excluded_namespaces = list;
                        }
                    }
                    None => issues.push(Issue::new(
                        &path,
                        format!("{key} must be a list of namespace names"),
                        "names with an optional * at the front or end",
                    )),
                },
                "labelSelector" | "namespaceSelector" => match parse_selector(v, &path) {
                    Ok(selector) => {
                        if key == "labelSelector" {
                            out.label_selector = Some(selector);
                        } else {
                            out.namespace_selector = Some(selector);
                        }
                    }
                    Err(mut more) => issues.append(&mut more),
                },
                "name" => match v.as_str() {
                    Some("") => {}
                    Some(name) => out.name = Some(Wildcard(name.to_owned())),
                    None => issues.push(Issue::new(
                        &path,
                        "name must be a string",
                        "an object name with an optional * at the front or end",
                    )),
                },
                // Only expansion (generated resources) distinguishes sources; reviews here are
                // always of original objects, which `All` and `Original` both match.
                "source" => match v.as_str() {
                    Some("All" | "Original" | "") => {}
                    Some("Generated") => issues.push(Issue::new(
                        &path,
                        "source: Generated matches only expanded resources, which meshproof does not generate",
                        "All or Original",
                    )),
                    _ => issues.push(Issue::new(
                        &path,
                        format!("unknown source {v}"),
                        "All, Original or Generated",
                    )),
                },
                other => issues.push(Issue::new(
                    &path,
                    format!("unknown matcher \"{other}\""),
                    "kinds, scope, namespaces, excludedNamespaces, labelSelector, namespaceSelector, name, source",
                )),
            }
        }
        if issues.is_empty() {
            Ok(out)
        } else {
            Err(issues)
        }
    }
}

fn string_list(v: &Value) -> Option<Vec<String>> {
    if v.is_null() {
        return Some(Vec::new());
    }
    v.as_array()?
        .iter()
        .map(|s| s.as_str().map(str::to_owned))
        .collect()
}

fn parse_kinds(item: &Value, path: &[&str]) -> Result<KindsMatcher, Issue> {
    let expected = "{apiGroups: [\"\"], kinds: [Pod]}";
    let Some(map) = item.as_object() else {
        return Err(Issue::new(
            path,
            "a kinds entry must be a mapping",
            expected,
        ));
    };
    let mut out = KindsMatcher::default();
    for (key, v) in map {
        let list = string_list(v);
        match (key.as_str(), list) {
            ("apiGroups", Some(list)) => out.api_groups = list,
            ("kinds", Some(list)) => out.kinds = list,
            ("apiGroups" | "kinds", None) => {
                let mut p = path.to_vec();
                p.push(key);
                return Err(Issue::new(
                    &p,
                    format!("{key} must be a list of strings"),
                    expected,
                ));
            }
            (other, _) => {
                let mut p = path.to_vec();
                p.push(key);
                return Err(Issue::new(
                    &p,
                    format!("unknown key \"{other}\" in a kinds entry"),
                    expected,
                ));
            }
        }
    }
    Ok(out)
}

fn parse_selector(v: &Value, path: &[&str]) -> Result<LabelSelector, Vec<Issue>> {
    let expected = "matchLabels: {key: value} and/or matchExpressions: [{key, operator, values}]";
    let mut out = LabelSelector::default();
    if v.is_null() {
        return Ok(out);
    }
    let Some(map) = v.as_object() else {
        return Err(vec![Issue::new(
            path,
            "a label selector must be a mapping",
            expected,
        )]);
    };
    let mut issues = Vec::new();
    for (key, v) in map {
        let mut p = path.to_vec();
        p.push(key);
        match key.as_str() {
            "matchLabels" => match v.as_object() {
                Some(labels) => {
                    for (k, value) in labels {
                        match value.as_str() {
                            Some(value) => {
                                out.match_labels.insert(k.clone(), value.to_owned());
                            }
                            None => issues.push(Issue::new(
                                &p,
                                format!("matchLabels value for \"{k}\" must be a string"),
                                "quoted label values",
                            )),
                        }
                    }
                }
                None if v.is_null() => {}
                None => issues.push(Issue::new(&p, "matchLabels must be a mapping", expected)),
            },
            "matchExpressions" => match v.as_array() {
                Some(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let index = i.to_string();
                        let mut p = p.clone();
                        p.push(index.as_str());
                        match parse_requirement(item) {
                            Ok(r) => out.match_expressions.push(r),
                            Err(message) => issues.push(Issue::new(
                                &p,
                                message,
                                "{key: app, operator: In|NotIn|Exists|DoesNotExist, values: [...]}",
                            )),
                        }
                    }
                }
                None if v.is_null() => {}
                None => issues.push(Issue::new(&p, "matchExpressions must be a list", expected)),
            },
            other => issues.push(Issue::new(
                &p,
                format!("unknown key \"{other}\" in a label selector"),
                expected,
            )),
        }
    }
    if issues.is_empty() {
        Ok(out)
    } else {
        Err(issues)
    }
}

fn parse_requirement(item: &Value) -> Result<Requirement, String> {
    let map: &Map<String, Value> = item
        .as_object()
        .ok_or("a matchExpressions entry must be a mapping")?;
    let key = map
        .get("key")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .ok_or("a matchExpressions entry needs a non-empty key")?;
    let operator = match map.get("operator").and_then(Value::as_str) {
        Some("In") => Operator::In,
        Some("NotIn") => Operator::NotIn,
        Some("Exists") => Operator::Exists,
        Some("DoesNotExist") => Operator::DoesNotExist,
        other => {
            return Err(format!(
                "unknown operator {} for key \"{key}\"",
                other.map_or("(none)".to_owned(), |o| format!("\"{o}\""))
            ));
        }
    };
    let values = match map.get("values") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => string_list(v).ok_or(format!("values for key \"{key}\" must be strings"))?,
    };
    if let Some(unknown) = map
        .keys()
        .find(|k| !matches!(k.as_str(), "key" | "operator" | "values"))
    {
        return Err(format!(
            "unknown key \"{unknown}\" in a matchExpressions entry"
        ));
    }
    match operator {
        Operator::In | Operator::NotIn if values.is_empty() => Err(format!(
            "operator {operator:?} for key \"{key}\" needs at least one value"
        )),
        Operator::Exists | Operator::DoesNotExist if !values.is_empty() => Err(format!(
            "operator {operator:?} for key \"{key}\" takes no values"
        )),
        _ => Ok(Requirement {
            key: key.to_owned(),
            operator,
            values,
        }),
    }
}

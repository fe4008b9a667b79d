//! ConstraintTemplates and constraints, read from manifests and checked the way Gatekeeper's
//! webhook checks them before it accepts them (plus a few stricter checks that catch typos).

use std::path::PathBuf;

use serde_json::Value;

use super::matching::{Issue, Match};
use super::yaml::{Manifest, NodeKind};
use crate::error::SourceError;

/// The only target Gatekeeper's validating webhook serves.
pub const ADMISSION_TARGET: &str = "admission.k8s.gatekeeper.sh";
pub const TEMPLATES_GROUP: &str = "templates.gatekeeper.sh";
pub const CONSTRAINTS_GROUP: &str = "constraints.gatekeeper.sh";

/// Enforcement points named by `scopedEnforcementActions`.
pub const WEBHOOK_POINT: &str = "validation.gatekeeper.sh";
pub const AUDIT_POINT: &str = "audit.gatekeeper.sh";

/// Which Rego dialect a template is parsed as. Gatekeeper parses the legacy `targets[].rego`
/// field as v0; Rego v1 needs `code: [{engine: Rego, source: {version: "v1", rego: ...}}]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RegoVersion {
    V0,
    V1,
}

/// A compiled ConstraintTemplate.
#[derive(Clone, Debug)]
pub struct Template {
    /// `metadata.name`: the lowercased kind, as Gatekeeper requires.
    pub name: String,
    /// `spec.crd.spec.names.kind`: the kind of its constraints.
    pub kind: String,
    pub file: PathBuf,
    pub line: u32,
    pub rego_version: RegoVersion,
    /// `spec.crd.spec.validation.openAPIV3Schema`, the schema of constraint parameters.
    pub parameters_schema: Option<Value>,
    pub(crate) engine: regorus::Engine,
    /// `data.<package>.violation`.
    pub(crate) violation_rule: String,
}

/// What a violation of a constraint does at one enforcement point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EnforcementAction {
    /// Reject the request (the default).
    Deny,
    /// Admit it, and tell the client (`Warning: [constraint] message`).
    Warn,
    /// Admit it silently; the violation only shows in audit results.
    Dryrun,
}

impl EnforcementAction {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "deny" => Some(Self::Deny),
            "warn" => Some(Self::Warn),
            "dryrun" => Some(Self::Dryrun),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deny => "deny",
            Self::Warn => "warn",
            Self::Dryrun => "dryrun",
        }
    }
}

/// `spec.enforcementAction`, with `scoped` resolved per enforcement point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Enforcement {
    Action(EnforcementAction),
    /// `enforcementAction: scoped`: each action with the enforcement points it applies to.
    Scoped(Vec<(EnforcementAction, Vec<String>)>),
}

impl Enforcement {
    /// The actions that apply at `point` (`validation.gatekeeper.sh` or `audit.gatekeeper.sh`).
    pub fn actions_at(&self, point: &str) -> Vec<EnforcementAction> {
        match self {
            Self::Action(action) => vec![*action],
            Self::Scoped(scoped) => {
                let mut actions: Vec<EnforcementAction> = scoped
                    .iter()
                    .filter(|(_, points)| points.iter().any(|p| p == point || p == "*"))
                    .map(|(action, _)| *action)
                    .collect();
                actions.sort();
                actions.dedup();
                actions
            }
        }
    }
}

/// A constraint: an instance of a template with its match, parameters and enforcement.
#[derive(Clone, Debug)]
pub struct Constraint {
    pub kind: String,
    pub name: String,
    pub file: PathBuf,
    pub line: u32,
    pub matcher: Match,
    pub parameters: Value,
    pub enforcement: Enforcement,
}

/// `group/version` → `(group, version)`; the core group is "".
pub(crate) fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.rsplit_once('/').unwrap_or(("", api_version))
}

pub(crate) fn group_of(object: &Value) -> &str {
    split_api_version(str_at(object, "/apiVersion")).0
}

fn str_at<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn issue_error(manifest: &Manifest, issue: Issue) -> SourceError {
    let path: Vec<&str> = issue.path.iter().map(String::as_str).collect();
    let error = manifest.error(&path, issue.message);
    match issue.expected {
        Some(expected) => error.expected(expected),
        None => error,
    }
}

impl Template {
    /// Reads and compiles one ConstraintTemplate. Every problem is a [`SourceError`] at the line
    /// of the offending field; a Rego error points at the Rego line inside the YAML file.
    pub(crate) fn parse(manifest: &Manifest) -> Result<Self, Vec<SourceError>> {
        let object = &manifest.object;
        let mut errors = Vec::new();
        let name = str_at(object, "/metadata/name");
        let kind = str_at(object, "/spec/crd/spec/names/kind");
        if kind.is_empty() {
            errors.push(
                manifest
                    .error(
                        &["spec"],
                        "ConstraintTemplate has no spec.crd.spec.names.kind",
                    )
                    .expected("the kind its constraints use, e.g. K8sRequiredLabels"),
            );
        } else if name != kind.to_lowercase() {
            errors.push(
                manifest
                    .error(
                        &["metadata", "name"],
                        format!(
                            "ConstraintTemplate name \"{name}\" does not match its kind {kind}"
                        ),
                    )
                    .expected(format!(
                        "metadata.name: {} (Gatekeeper requires the lowercased kind)",
                        kind.to_lowercase()
                    )),
            );
        }
        let label = format!("ConstraintTemplate {name}");
        let targets = object
            .pointer("/spec/targets")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let target = match targets {
            [one] => Some(one),
            _ => {
                errors.push(
                    manifest
                        .error(
                            &["spec", "targets"],
                            format!("{label} has {} targets", targets.len()),
                        )
                        .expected(format!("exactly one target: {ADMISSION_TARGET}")),
                );
                None
            }
        };
        let source = target.and_then(|t| {
            let target_name = t.get("target").and_then(Value::as_str).unwrap_or_default();
            if target_name != ADMISSION_TARGET {
                errors.push(
                    manifest
                        .error(
                            &["spec", "targets", "0", "target"],
                            format!("{label} targets \"{target_name}\""),
                        )
                        .expected(ADMISSION_TARGET),
                );
                return None;
            }
            match rego_source(t) {
                Ok(source) => Some(source),
                Err(message) => {
                    errors.push(
                        manifest
                            .error(&["spec", "targets", "0"], format!("{label}: {message}"))
                            .expected(
                                "code: [{engine: Rego, source: {version: \"v1\", rego: ...}}] or a legacy rego field",
                            ),
                    );
                    None
                }
            }
        });
        let (Some(source), true) = (source, errors.is_empty()) else {
            return Err(errors);
        };

        let mut engine = regorus::Engine::new();
        engine.set_rego_v0(source.version == RegoVersion::V0);
        let main_path = format!("{kind}.rego");
        let package = match engine.add_policy(main_path.clone(), source.rego.clone()) {
            Ok(package) => package,
            Err(e) => {
                let path: Vec<&str> = source.rego_path.iter().map(String::as_str).collect();
                return Err(vec![rego_error(
                    manifest,
                    &path,
                    &label,
                    source.version,
                    &e.to_string(),
                )]);
            }
        };
        for (i, lib) in source.libs.iter().enumerate() {
            let index = i.to_string();
            let mut path: Vec<&str> = source.libs_path.iter().map(String::as_str).collect();
            path.push(&index);
            match engine.add_policy(format!("{kind}.lib{i}.rego"), lib.clone()) {
                Ok(lib_package) if lib_package.starts_with("data.lib.") => {}
                Ok(lib_package) => errors.push(
                    manifest
                        .error(
                            &path,
                            format!(
                                "{label}: library {i} declares package {}",
                                lib_package.trim_start_matches("data.")
                            ),
                        )
                        .expected("libraries in packages under lib. (Gatekeeper's rule)"),
                ),
                Err(e) => errors.push(rego_error(
                    manifest,
                    &path,
                    &label,
                    source.version,
                    &e.to_string(),
                )),
            }
        }
        let declares_violation = engine
            .has_declared_rule_rooted_at(&main_path, "violation")
            .unwrap_or(false);
        if !declares_violation {
            let path: Vec<&str> = source.rego_path.iter().map(String::as_str).collect();
            errors.push(
                manifest
                    .error(&path, format!("{label}: the Rego has no violation rule"))
                    .expected("violation contains {\"msg\": msg} if { ... }"),
            );
        }
        // Referential templates read data.inventory; it is empty here (nothing is synced).
        if let Err(e) = engine.add_data(regorus::Value::from(serde_json::json!({
            "inventory": {"cluster": {}, "namespace": {}}
        }))) {
            errors.push(manifest.error(&[], format!("{label}: {e}")));
        }
        let violation_rule = format!("{package}.violation");
        if errors.is_empty() {
            // OPA rejects unsafe variables and the like when it compiles; regorus only when it
            // evaluates. One evaluation against an empty review surfaces them now, at the line.
            // The probe keeps the engine prepared (analysed and scheduled), so each review clones a
            // ready engine instead of analysing the template again.
            let mut probe = engine.clone();
            probe.set_input(regorus::Value::from(serde_json::json!({
                "review": {"object": {}, "oldObject": null, "kind": {}},
                "parameters": {}
            })));
            match probe.eval_rule(violation_rule.clone()) {
                Ok(_) => engine = probe,
                Err(e) => {
                    let text = e.to_string();
                    let lib_index = text.lines().find_map(|l| {
                        let rest = l.trim().strip_prefix("--> ")?;
                        let file = rest.split(':').next()?;
                        file.strip_prefix(&format!("{kind}.lib"))?
                            .strip_suffix(".rego")?
                            .parse::<usize>()
                            .ok()
                    });
                    let index = lib_index.map(|i| i.to_string());
                    let mut path: Vec<&str> = match &index {
                        Some(_) => source.libs_path.iter().map(String::as_str).collect(),
                        None => source.rego_path.iter().map(String::as_str).collect(),
                    };
                    if let Some(index) = &index {
                        path.push(index);
                    }
                    errors.push(rego_error(manifest, &path, &label, source.version, &text));
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Template {
            name: name.to_owned(),
            kind: kind.to_owned(),
            file: manifest.file.clone(),
            line: manifest.line,
            rego_version: source.version,
            parameters_schema: object
                .pointer("/spec/crd/spec/validation/openAPIV3Schema")
                .filter(|s| !s.is_null())
                .cloned(),
            engine,
            violation_rule,
        })
    }
}

struct RegoSource {
    rego: String,
    libs: Vec<String>,
    version: RegoVersion,
    rego_path: Vec<String>,
    libs_path: Vec<String>,
}

/// Picks the Rego the way Gatekeeper's conversion does: a non-empty legacy `rego` field wins (as
/// v0, with the legacy `libs`); otherwise the `code` entry whose engine is `Rego`.
fn rego_source(target: &Value) -> Result<RegoSource, String> {
    let base = ["spec", "targets", "0"].map(str::to_owned);
    let strings = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    if let Some(rego) = target
        .get("rego")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
    {
        let mut rego_path = base.to_vec();
        rego_path.push("rego".to_owned());
        let mut libs_path = base.to_vec();
        libs_path.push("libs".to_owned());
        return Ok(RegoSource {
            rego: rego.to_owned(),
            libs: strings(target.get("libs")),
            version: RegoVersion::V0,
            rego_path,
            libs_path,
        });
    }
    let code = target
        .get("code")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let Some((index, entry)) = code
        .iter()
        .enumerate()
        .find(|(_, c)| c.get("engine").and_then(Value::as_str) == Some("Rego"))
    else {
        let engines: Vec<&str> = code
            .iter()
            .filter_map(|c| c.get("engine").and_then(Value::as_str))
            .collect();
        return Err(if engines.is_empty() {
            "no Rego source".to_owned()
        } else {
            format!(
                "no Rego source (engines: {}); meshproof evaluates Rego only",
                engines.join(", ")
            )
        });
    };
    let source = entry.get("source");
    let rego = source
        .and_then(|s| s.get("rego"))
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
        .ok_or("the Rego code entry has no source.rego")?;
    let version = match source
        .and_then(|s| s.get("version"))
        .and_then(Value::as_str)
    {
        Some("v1") => RegoVersion::V1,
        _ => RegoVersion::V0,
    };
    let mut source_path = base.to_vec();
    source_path.extend(["code".to_owned(), index.to_string(), "source".to_owned()]);
    let mut rego_path = source_path.clone();
    rego_path.push("rego".to_owned());
    let mut libs_path = source_path;
    libs_path.push("libs".to_owned());
    Ok(RegoSource {
        rego: rego.to_owned(),
        libs: strings(source.and_then(|s| s.get("libs"))),
        version,
        rego_path,
        libs_path,
    })
}

/// Turns a regorus error (`--> file:line:col`, a snippet, `error: what`) into a [`SourceError`]
/// at the same place in the YAML file: for a literal block scalar (`rego: |`) the Rego's line N is
/// the block's first line + N - 1; otherwise the Rego position is given in the message.
fn rego_error(
    manifest: &Manifest,
    path: &[&str],
    label: &str,
    version: RegoVersion,
    text: &str,
) -> SourceError {
    let location = text.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("--> ")?;
        let mut parts = rest.rsplitn(3, ':');
        let column = parts.next()?.trim().parse::<u32>().ok()?;
        let line = parts.next()?.trim().parse::<u32>().ok()?;
        Some((line, column))
    });
    let what = text
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .unwrap_or_else(|| text.trim());
    let dialect = match version {
        RegoVersion::V0 => "Rego v0 (legacy rego field)",
        RegoVersion::V1 => "Rego v1",
    };
    let expected = match version {
        RegoVersion::V0 => {
            "Rego v1 in code: [{engine: Rego, source: {version: \"v1\", rego: ...}}], or v0 syntax in the legacy rego field"
        }
        RegoVersion::V1 => "valid Rego v1 (regorus has no deprecated any/all/re_match builtins)",
    };
    let node = manifest.node(path);
    let (line, column, block) = match node {
        Some(n) => (n.line, n.column, manifest.is_literal_block(n)),
        None => (manifest.line, 0, false),
    };
    match (location, block) {
        (Some((rego_line, rego_column)), true) => SourceError::new(
            &manifest.file,
            line + rego_line.saturating_sub(1),
            column.saturating_sub(1) + rego_column,
            format!("{label}: {dialect} does not compile: {what}"),
        )
        .expected(expected),
        (Some((rego_line, rego_column)), false) => SourceError::new(
            &manifest.file,
            line,
            column,
            format!(
                "{label}: {dialect} does not compile at Rego line {rego_line}, column {rego_column}: {what}"
            ),
        )
        .expected(expected),
        (None, _) => SourceError::new(
            &manifest.file,
            line,
            column,
            format!("{label}: {dialect} does not compile: {what}"),
        )
        .expected(expected),
    }
}

impl Constraint {
    /// Reads one constraint; `template` is the template of its kind, if loaded.
    pub(crate) fn parse(
        manifest: &Manifest,
        template: Option<&Template>,
    ) -> Result<Self, Vec<SourceError>> {
        let object = &manifest.object;
        let kind = str_at(object, "/kind");
        let name = str_at(object, "/metadata/name");
        let mut errors = Vec::new();
        if name.is_empty() {
            errors.push(
                manifest
                    .error(
                        &["metadata"],
                        format!("{kind} constraint has no metadata.name"),
                    )
                    .expected("a DNS-1123 name"),
            );
        }
        if template.is_none() {
            errors.push(
                manifest
                    .error(
                        &["kind"],
                        format!("constraint {name}: no ConstraintTemplate defines kind {kind}"),
                    )
                    .expected(format!(
                        "a ConstraintTemplate with spec.crd.spec.names.kind: {kind} among the loaded manifests"
                    )),
            );
        }
        let matcher = match Match::parse(object.pointer("/spec/match")) {
            Ok(m) => m,
            Err(issues) => {
                errors.extend(issues.into_iter().map(|i| issue_error(manifest, i)));
                Match::default()
            }
        };
        let parameters = match object.pointer("/spec/parameters") {
            None | Some(Value::Null) => Value::Object(Default::default()),
            Some(p @ Value::Object(_)) => p.clone(),
            Some(_) => {
                errors.push(
                    manifest
                        .error(&["spec", "parameters"], "spec.parameters must be a mapping")
                        .expected("parameters: {name: value}"),
                );
                Value::Null
            }
        };
        if let (Some(schema), Value::Object(_)) = (
            template.and_then(|t| t.parameters_schema.as_ref()),
            &parameters,
        ) {
            let mut path = vec!["spec".to_owned(), "parameters".to_owned()];
            let mut issues = Vec::new();
            check_schema(schema, &parameters, &mut path, &mut issues);
            errors.extend(issues.into_iter().map(|i| issue_error(manifest, i)));
        }
        let enforcement = match parse_enforcement(object) {
            Ok(e) => e,
            Err(issue) => {
                errors.push(issue_error(manifest, issue));
                Enforcement::Action(EnforcementAction::Deny)
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Constraint {
            kind: kind.to_owned(),
            name: name.to_owned(),
            file: manifest.file.clone(),
            line: manifest.line,
            matcher,
            parameters,
            enforcement,
        })
    }
}

fn parse_enforcement(object: &Value) -> Result<Enforcement, Issue> {
    let path = ["spec", "enforcementAction"];
    let expected = "deny (the default), dryrun, warn or scoped";
    let action = match object.pointer("/spec/enforcementAction") {
        None | Some(Value::Null) => return Ok(Enforcement::Action(EnforcementAction::Deny)),
        Some(Value::String(s)) => s.as_str(),
        Some(other) => {
            return Err(issue(&path, format!("enforcementAction {other}"), expected));
        }
    };
    if action.is_empty() {
        return Ok(Enforcement::Action(EnforcementAction::Deny));
    }
    if let Some(action) = EnforcementAction::parse(action) {
        return Ok(Enforcement::Action(action));
    }
    if action != "scoped" {
        return Err(issue(
            &path,
            format!("unknown enforcementAction \"{action}\""),
            expected,
        ));
    }
    let path = ["spec", "scopedEnforcementActions"];
    let expected_scoped =
        "[{action: deny|warn|dryrun, enforcementPoints: [{name: validation.gatekeeper.sh}]}]";
    let Some(entries) = object
        .pointer("/spec/scopedEnforcementActions")
        .and_then(Value::as_array)
    else {
        return Err(issue(
            &path,
            "enforcementAction: scoped needs scopedEnforcementActions",
            expected_scoped,
        ));
    };
    let mut scoped = Vec::new();
    for entry in entries {
        let name = entry.get("action").and_then(Value::as_str).unwrap_or("");
        let Some(action) = EnforcementAction::parse(name) else {
            return Err(issue(
                &path,
                format!("unknown scoped action \"{name}\""),
                expected_scoped,
            ));
        };
        let points: Vec<String> = entry
            .get("enforcementPoints")
            .and_then(Value::as_array)
            .map(|points| {
                points
                    .iter()
                    .filter_map(|p| p.get("name").and_then(Value::as_str).map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        scoped.push((action, points));
    }
    Ok(Enforcement::Scoped(scoped))
}

fn issue(path: &[&str], message: impl Into<String>, expected: &str) -> Issue {
    Issue {
        path: path.iter().map(|s| (*s).to_owned()).collect(),
        message: message.into(),
        expected: Some(expected.to_owned()),
    }
}

/// A structural check of parameters against the template's openAPIV3Schema: `type`,
/// `properties`, `items` and `enum`. Undeclared properties are errors unless the schema has
/// `x-kubernetes-preserve-unknown-fields` (the API server would prune them silently, which turns a
/// typo into a missing parameter).
fn check_schema(schema: &Value, value: &Value, path: &mut Vec<String>, issues: &mut Vec<Issue>) {
    let here = |path: &Vec<String>| path.join(".");
    if let Some(ty) = schema.get("type").and_then(Value::as_str) {
        let ok = match ty {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "boolean" => value.is_boolean(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            _ => true,
        };
        if !ok {
            issues.push(Issue {
                path: path.clone(),
                message: format!("{} must be of type {ty}", here(path)),
                expected: Some(format!(
                    "a value of type {ty}, as the template's schema says"
                )),
            });
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        issues.push(Issue {
            path: path.clone(),
            message: format!("{} is {value}", here(path)),
            expected: Some(format!(
                "one of {}",
                allowed
                    .iter()
                    .map(Value::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        });
    }
    match value {
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let preserve = schema
                .get("x-kubernetes-preserve-unknown-fields")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let additional = schema.get("additionalProperties");
            for (key, v) in map {
                path.push(key.clone());
                match properties.and_then(|p| p.get(key)) {
                    Some(sub) => check_schema(sub, v, path, issues),
                    None => match additional {
                        Some(sub @ Value::Object(_)) => check_schema(sub, v, path, issues),
                        _ if preserve || properties.is_none() => {}
                        _ => issues.push(Issue {
                            path: path.clone(),
                            message: format!("unknown parameter {}", here(path)),
                            expected: properties.map(|p| {
                                format!(
                                    "one of {}",
                                    p.keys().cloned().collect::<Vec<_>>().join(", ")
                                )
                            }),
                        }),
                    },
                }
                path.pop();
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    path.push(i.to_string());
                    check_schema(item_schema, item, path, issues);
                    path.pop();
                }
            }
        }
        _ => {}
    }
}

impl Manifest {
    /// Whether `node` is a literal block scalar (`key: |`), whose lines are the file's lines.
    pub(crate) fn is_literal_block(&self, node: &super::yaml::Node) -> bool {
        if !matches!(node.kind, NodeKind::Str(_)) || node.line < 2 {
            return false;
        }
        let Some(text) = self.source.as_deref() else {
            return false;
        };
        let Some(previous) = text.lines().nth(node.line as usize - 2) else {
            return false;
        };
        // Strip a trailing comment, then look for `|` with optional chomping/indent indicators.
        let previous = previous.split(" #").next().unwrap_or(previous).trim_end();
        let indicator = previous
            .trim_end_matches(|c: char| c == '-' || c == '+' || c.is_ascii_digit())
            .trim_end();
        indicator.ends_with('|')
    }
}

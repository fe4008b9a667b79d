//! Gatekeeper admission: ConstraintTemplates and constraints evaluated in process with regorus,
//! under Gatekeeper's own contract, so the lab target can say what a cluster would admit.
//!
//! # Security contract
//!
//! [`Admission::review`] answers "would Gatekeeper's validating webhook admit this object?" and
//! [`Admission::audit`] "what would Gatekeeper's audit report?". What matches Gatekeeper
//! (v3.23, the version `scripts/install/gator.sh` pins and `tests/gator.rs` cross-checks):
//!
//! - **Templates** are `templates.gatekeeper.sh` ConstraintTemplates with exactly one target,
//!   `admission.k8s.gatekeeper.sh`, whose `metadata.name` is the lowercased kind. The Rego is
//!   chosen as Gatekeeper's conversion chooses it: a non-empty legacy `rego` field wins and is
//!   parsed as **Rego v0**; otherwise the `code` entry with `engine: Rego` is used, as Rego v1
//!   when `source.version: v1`, else v0. `libs` must live under `package lib.…`. The Rego must
//!   declare `violation`. Each template compiles into its own engine (Gatekeeper keeps one
//!   compiler per template), so packages never collide. A template that fails to compile is a
//!   [`SourceError`] at the offending line *of the YAML file* (block start + Rego line), never a
//!   panic.
//! - **Constraints** (`constraints.gatekeeper.sh`, kind = a template's kind) are evaluated with
//!   `input.review` = `{object, oldObject, kind: {group, version, kind}, operation, namespace,
//!   name, userInfo, dryRun}` and `input.parameters` = `spec.parameters` (default `{}`); every
//!   element of `violation` with a string `msg` (and optional `details`) is a violation.
//! - **`spec.match`**: `kinds`, `scope`, `namespaces` / `excludedNamespaces` (prefix/suffix `*`
//!   globs), `labelSelector` and `namespaceSelector` (`matchLabels` + `matchExpressions`
//!   `In`/`NotIn`/`Exists`/`DoesNotExist`), `name`; an unset matcher matches everything, namespace
//!   matchers never disqualify cluster-scoped objects, a Namespace is matched by its own name, and
//!   an UPDATE matches if either the object or the old object does.
//! - **`spec.enforcementAction`**: `deny` (default) rejects; `warn` admits with a warning
//!   (`[<constraint>] <msg>`); `dryrun` admits silently and shows only in audit; `scoped` applies
//!   `scopedEnforcementActions` per enforcement point (`validation.gatekeeper.sh`,
//!   `audit.gatekeeper.sh`, `*`).
//! - **Denial text** is the API server's wrapping of Gatekeeper's message:
//!   `admission webhook "validation.gatekeeper.sh" denied the request: [<constraint>] <msg>`, with
//!   several deny violations joined by `"\n"`, each line `[<constraint>] <msg>`.
//! - A **Rego runtime error** becomes a violation of that constraint whose message is the error,
//!   under the constraint's enforcement action (Gatekeeper's driver does the same: fail closed).
//!
//! What differs, on purpose or by necessity:
//!
//! - **Order** of several violations: Gatekeeper walks templates in Go map order (unstable), so the
//!   order of lines in its denial varies between requests. Here they are sorted by constraint kind,
//!   constraint name, then message. Compare multi-line denials as sets of lines.
//! - **Stricter loading**: unknown keys in `spec.match`, malformed label selectors, parameters of
//!   the wrong type or not declared by the template's schema (unless it preserves unknown fields),
//!   duplicate templates or constraints, and constraints whose kind has no template are load
//!   errors. The API server would prune unknown fields silently, turning a typo into a wider
//!   constraint; a harness must not.
//! - **Errors Gatekeeper fails open on** (a result without a string `msg`, a `namespaceSelector`
//!   whose Namespace is unknown) make the webhook return an error, and Gatekeeper's default
//!   `failurePolicy: Ignore` then admits the request. [`AdmissionResult::error`] carries it, and
//!   `allowed` follows the fail-open policy so that the prediction stays the cluster's.
//! - **Builtins**: regorus lacks OPA's deprecated `any`, `all` and `re_match`, and this crate
//!   builds it (features `arc`, `std`) without the `regex.*`, `glob.*`, `time.*`, `net.*`,
//!   `semver.*`, `base64*`/`hex.*`, `uuid.*`, `urlquery.*`, `yaml.*`, `json.match_schema` and
//!   `http.send` families. A call to a missing builtin is only noticed when evaluation reaches it
//!   and then yields an error violation (fail closed) instead of OPA's compile-time rejection; the
//!   bundled templates use none of them. Keep templates in Rego v1.
//! - **Not modelled**: `data.inventory` is empty (no referential data is synced), ExpansionTemplates,
//!   mutation, CEL (`K8sNativeValidation`) code, Gatekeeper's `Config` exclusions, the template
//!   `operations` field, and the webhook's own self-exemption of Gatekeeper's service account.
//!
//! # Pod templates
//!
//! Gatekeeper evaluates the object under review as it is: a Deployment is a Deployment, and a rule
//! that only reads `spec.containers` never sees its pods. The bundled templates (see
//! [`render_templates`]) therefore read the pod spec where the object keeps it: a Pod's `spec`,
//! `spec.template.spec` of Deployments, StatefulSets, DaemonSets, ReplicaSets,
//! ReplicationControllers and Jobs, and `spec.jobTemplate.spec.template.spec` of CronJobs. Their
//! constraints match those kinds too, so a bad Deployment is rejected when it is applied rather
//! than leaving a ReplicaSet that cannot create Pods. [`Admission::audit`] likewise judges every
//! manifest as it is, so a Deployment's finding names the Deployment (and its file:line);
//! templates that only read Pods keep Gatekeeper's behaviour and do not see controllers.

mod matching;
mod render;
mod template;
mod yaml;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Value, json};

pub use matching::{KindsMatcher, LabelSelector, Match, Operator, Requirement, Scope, Wildcard};
pub use render::{
    BUNDLED, BundledTemplate, WORKLOAD_LIB, policy_problems, render_templates, render_yaml,
    workload_kinds,
};
pub use template::{
    ADMISSION_TARGET, AUDIT_POINT, CONSTRAINTS_GROUP, Constraint, Enforcement, EnforcementAction,
    RegoVersion, TEMPLATES_GROUP, Template, WEBHOOK_POINT,
};
pub use yaml::{Manifest, ObjectRef, load_manifests, parse_documents};

use crate::error::{SourceError, SourceErrors};
use matching::{Candidate, labels_of};
use template::{group_of, split_api_version};

/// The webhook name the API server puts in front of Gatekeeper's denial message.
pub const WEBHOOK_NAME: &str = "validation.gatekeeper.sh";

/// The admission operation of a review.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "CREATE",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
            Self::Connect => "CONNECT",
        }
    }
}

/// An admission request, as the API server would send it to Gatekeeper.
#[derive(Clone, Debug, PartialEq)]
pub struct ReviewRequest {
    pub operation: Operation,
    /// The object being written; on DELETE, Gatekeeper reviews the old object in its place.
    pub object: Value,
    pub old_object: Option<Value>,
    /// The request's namespace; defaults to the object's `metadata.namespace`.
    pub namespace: Option<String>,
    /// `userInfo` as the API server reports it (`{username, groups, ...}`).
    pub user_info: Value,
}

impl ReviewRequest {
    pub fn new(operation: Operation, object: Value) -> Self {
        Self {
            operation,
            object,
            old_object: None,
            namespace: None,
            user_info: json!({}),
        }
    }

    pub fn create(object: Value) -> Self {
        Self::new(Operation::Create, object)
    }

    pub fn update(object: Value, old_object: Value) -> Self {
        Self {
            old_object: Some(old_object),
            ..Self::new(Operation::Update, object)
        }
    }

    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    pub fn user(mut self, username: &str, groups: &[&str]) -> Self {
        self.user_info = json!({"username": username, "groups": groups});
        self
    }
}

/// One violation of one constraint.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Violation {
    /// The constraint's `metadata.name`.
    pub constraint: String,
    /// The constraint's kind (= the template's kind).
    pub kind: String,
    pub message: String,
    /// The Rego result's `details`, `{}` when it gave none.
    pub details: Value,
    pub action: EnforcementAction,
}

impl Violation {
    /// `[<constraint>] <msg>`: one line of Gatekeeper's denial, or one warning.
    pub fn gatekeeper_line(&self) -> String {
        format!("[{}] {}", self.constraint, self.message)
    }
}

/// The webhook's decision on one request.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AdmissionResult {
    pub allowed: bool,
    /// Violations of `deny` constraints: the reasons for rejection.
    pub denials: Vec<Violation>,
    /// Violations of `warn` constraints: admitted, reported to the client.
    pub warnings: Vec<Violation>,
    /// Violations of `dryrun` constraints: admitted, invisible to the client (audit only).
    pub dry_run: Vec<Violation>,
    /// What `kubectl` prints on rejection: `admission webhook "validation.gatekeeper.sh" denied
    /// the request: [<constraint>] <msg>`, several lines joined by `\n`.
    pub denial_text: Option<String>,
    /// What `kubectl` prints after `Warning: `, one per warning.
    pub warning_texts: Vec<String>,
    /// The webhook would have failed (see the module docs); Gatekeeper's default
    /// `failurePolicy: Ignore` admits the request anyway.
    pub error: Option<String>,
}

/// One audit result: an existing object that violates a constraint, whatever its action.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AuditFinding {
    pub constraint: String,
    pub kind: String,
    pub action: EnforcementAction,
    pub message: String,
    pub details: Value,
    pub object: ObjectRef,
    /// Where the object was read from (line 0: not from a file).
    pub file: PathBuf,
    pub line: u32,
}

/// Loaded templates and constraints, ready to review objects.
#[derive(Clone, Debug, Default)]
pub struct Admission {
    templates: Vec<Template>,
    constraints: Vec<Constraint>,
    /// Labels of known Namespaces, for `namespaceSelector`.
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
}

impl Admission {
    /// Loads every ConstraintTemplate, constraint and Namespace from `paths` (files, or
    /// directories walked for `.yaml`/`.yml`/`.json`); other kinds are skipped. All problems are
    /// reported together.
    pub fn load<P: AsRef<Path>>(paths: &[P]) -> Result<Self, SourceErrors> {
        let manifests = load_manifests(paths)?;
        Self::from_manifests(&manifests)
    }

    /// Builds from objects that were not read from files (e.g. [`render_templates`]' output);
    /// `origin` names them in errors.
    pub fn from_objects(origin: &Path, objects: &[Value]) -> Result<Self, SourceErrors> {
        let manifests: Vec<Manifest> = objects
            .iter()
            .map(|o| Manifest::from_value(origin, o.clone()))
            .collect();
        Self::from_manifests(&manifests)
    }

    /// Builds from already-read manifests; see [`Admission::load`].
    pub fn from_manifests(manifests: &[Manifest]) -> Result<Self, SourceErrors> {
        let mut errors: Vec<SourceError> = Vec::new();
        let mut admission = Admission::default();
        for manifest in manifests {
            let object = &manifest.object;
            let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
            let group = group_of(object);
            if group == TEMPLATES_GROUP && kind == "ConstraintTemplate" {
                match Template::parse(manifest) {
                    Ok(template) => {
                        if let Some(first) =
                            admission.templates.iter().find(|t| t.kind == template.kind)
                        {
                            errors.push(
                                manifest
                                    .error(
                                        &["spec", "crd", "spec", "names", "kind"],
                                        format!(
                                            "a second ConstraintTemplate for kind {}",
                                            template.kind
                                        ),
                                    )
                                    .expected(format!(
                                        "one template per kind (the first is at {}:{})",
                                        first.file.display(),
                                        first.line
                                    )),
                            );
                        } else {
                            admission.templates.push(template);
                        }
                    }
                    Err(mut more) => errors.append(&mut more),
                }
            } else if group.is_empty() && kind == "Namespace" {
                let name = object
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                admission
                    .namespaces
                    .insert(name.to_owned(), labels_of(object));
            }
        }
        for manifest in manifests {
            if group_of(&manifest.object) != CONSTRAINTS_GROUP {
                continue;
            }
            let kind = manifest
                .object
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("");
            let template = admission.templates.iter().find(|t| t.kind == kind);
            match Constraint::parse(manifest, template) {
                Ok(constraint) => {
                    if let Some(first) = admission
                        .constraints
                        .iter()
                        .find(|c| c.kind == constraint.kind && c.name == constraint.name)
                    {
                        errors.push(
                            manifest
                                .error(
                                    &["metadata", "name"],
                                    format!("a second {} constraint named {}", kind, first.name),
                                )
                                .expected(format!(
                                    "unique names per kind (the first is at {}:{})",
                                    first.file.display(),
                                    first.line
                                )),
                        );
                    } else {
                        admission.constraints.push(constraint);
                    }
                }
                Err(mut more) => errors.append(&mut more),
            }
        }
        if errors.is_empty() {
            admission
                .constraints
                .sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
            Ok(admission)
        } else {
            Err(SourceErrors(errors))
        }
    }

    pub fn templates(&self) -> &[Template] {
        &self.templates
    }

    /// Constraints, sorted by kind then name (the order violations are reported in).
    pub fn constraints(&self) -> &[Constraint] {
        &self.constraints
    }

    pub fn constraint(&self, name: &str) -> Option<&Constraint> {
        self.constraints.iter().find(|c| c.name == name)
    }

    /// Makes a Namespace's labels known, for `namespaceSelector`.
    pub fn add_namespace(&mut self, name: &str, labels: BTreeMap<String, String>) {
        self.namespaces.insert(name.to_owned(), labels);
    }

    /// Would the webhook admit `object` for `operation`? (For UPDATE with an old object, see
    /// [`Admission::review_request`].)
    pub fn review(&self, object: &Value, operation: Operation) -> AdmissionResult {
        self.review_request(&ReviewRequest::new(operation, object.clone()))
    }

    /// Would the webhook admit this request?
    pub fn review_request(&self, request: &ReviewRequest) -> AdmissionResult {
        // On DELETE the API server sends only the old object; Gatekeeper copies it into `object`.
        let (object, old_object) = match request.operation {
            Operation::Delete => {
                let deleted = match &request.old_object {
                    Some(old) if request.object.is_null() => old,
                    _ => &request.object,
                };
                (deleted, Some(deleted))
            }
            _ => (&request.object, request.old_object.as_ref()),
        };
        let evaluation = self.evaluate(
            object,
            old_object,
            Some(request.operation),
            request.namespace.as_deref(),
            &request.user_info,
        );
        let mut result = AdmissionResult {
            allowed: true,
            denials: Vec::new(),
            warnings: Vec::new(),
            dry_run: Vec::new(),
            denial_text: None,
            warning_texts: Vec::new(),
            error: evaluation.error,
        };
        for (constraint, violation) in evaluation.violations {
            for action in constraint.enforcement.actions_at(WEBHOOK_POINT) {
                let violation = Violation {
                    action,
                    ..violation.clone()
                };
                match action {
                    EnforcementAction::Deny => result.denials.push(violation),
                    EnforcementAction::Warn => result.warnings.push(violation),
                    EnforcementAction::Dryrun => result.dry_run.push(violation),
                }
            }
        }
        if result.error.is_none() && !result.denials.is_empty() {
            result.allowed = false;
            let lines: Vec<String> = result
                .denials
                .iter()
                .map(Violation::gatekeeper_line)
                .collect();
            result.denial_text = Some(format!(
                "admission webhook \"{WEBHOOK_NAME}\" denied the request: {}",
                lines.join("\n")
            ));
        }
        result.warning_texts = result
            .warnings
            .iter()
            .map(Violation::gatekeeper_line)
            .collect();
        result
    }

    /// What Gatekeeper's audit would report for these existing objects: every violation of every
    /// matching constraint, whatever its enforcement action (`scoped` constraints only for the
    /// actions scoped to `audit.gatekeeper.sh`). Objects are judged as they are (see the module
    /// docs on pod templates); an object the matcher cannot judge is reported with action `deny`
    /// and the error as message, under the constraint name `meshproof-audit-error`.
    pub fn audit(&self, objects: &[Manifest]) -> Vec<AuditFinding> {
        let mut findings = Vec::new();
        for manifest in objects {
            let evaluation = self.evaluate(&manifest.object, None, None, None, &json!({}));
            if let Some(error) = evaluation.error {
                findings.push(AuditFinding {
                    constraint: "meshproof-audit-error".to_owned(),
                    kind: String::new(),
                    action: EnforcementAction::Deny,
                    message: error,
                    details: json!({}),
                    object: manifest.reference(),
                    file: manifest.file.clone(),
                    line: manifest.line,
                });
            }
            for (constraint, violation) in evaluation.violations {
                for action in constraint.enforcement.actions_at(AUDIT_POINT) {
                    findings.push(AuditFinding {
                        constraint: violation.constraint.clone(),
                        kind: violation.kind.clone(),
                        action,
                        message: violation.message.clone(),
                        details: violation.details.clone(),
                        object: manifest.reference(),
                        file: manifest.file.clone(),
                        line: manifest.line,
                    });
                }
            }
        }
        findings
    }

    /// Runs every matching constraint against one object. `operation` is `None` for audit (as
    /// for gator and Gatekeeper's audit, which review plain objects).
    fn evaluate<'a>(
        &'a self,
        object: &Value,
        old_object: Option<&Value>,
        operation: Option<Operation>,
        namespace: Option<&str>,
        user_info: &Value,
    ) -> Evaluation<'a> {
        let mut out = Evaluation {
            violations: Vec::new(),
            error: None,
        };
        let api_version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let (group, version) = split_api_version(api_version);
        let kind = object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let metadata_namespace = object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let namespace = namespace.unwrap_or(metadata_namespace);
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        // Built once, when the first constraint matches, and shared by every template run: the
        // review is most of a template's input, and converting it is a good part of a run.
        let mut review: Option<regorus::Value> = None;
        let build_review = || {
            let mut review = json!({
                "uid": "",
                "kind": {"group": group, "version": version, "kind": kind},
                "name": name,
                "operation": operation.map_or("", Operation::as_str),
                "userInfo": user_info,
                "object": object,
                "oldObject": old_object.cloned().unwrap_or(Value::Null),
                "dryRun": false,
            });
            if !namespace.is_empty()
                && let Some(map) = review.as_object_mut()
            {
                map.insert("namespace".to_owned(), Value::String(namespace.to_owned()));
            }
            regorus::Value::from(review)
        };
        let namespace_labels = self.namespaces.get(namespace).cloned();
        for constraint in &self.constraints {
            let candidates = std::iter::once(object).chain(old_object);
            let mut matched = false;
            for candidate in candidates {
                let candidate = Candidate {
                    object: candidate,
                    group,
                    kind,
                    namespace,
                    namespace_labels: namespace_labels.clone(),
                };
                match constraint.matcher.matches(&candidate) {
                    Ok(true) => {
                        matched = true;
                        break;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        out.error = Some(format!("constraint {}: {e}", constraint.name));
                    }
                }
            }
            if !matched {
                continue;
            }
            let Some(template) = self.templates.iter().find(|t| t.kind == constraint.kind) else {
                continue;
            };
            let review = review.get_or_insert_with(build_review).clone();
            let input = regorus::Value::from(std::collections::BTreeMap::from([
                (regorus::Value::from("review"), review),
                (
                    regorus::Value::from("parameters"),
                    regorus::Value::from(constraint.parameters.clone()),
                ),
            ]));
            match run_template(template, input) {
                Ok(results) => {
                    for (message, details) in results {
                        out.violations.push((
                            constraint,
                            Violation {
                                constraint: constraint.name.clone(),
                                kind: constraint.kind.clone(),
                                message,
                                details,
                                action: EnforcementAction::Deny,
                            },
                        ));
                    }
                }
                Err(RunError::Evaluation(message)) => out.violations.push((
                    constraint,
                    Violation {
                        constraint: constraint.name.clone(),
                        kind: constraint.kind.clone(),
                        message,
                        details: json!({}),
                        action: EnforcementAction::Deny,
                    },
                )),
                Err(RunError::Malformed(message)) => {
                    out.error = Some(format!("constraint {}: {message}", constraint.name));
                }
            }
        }
        out.violations.sort_by(|(a, va), (b, vb)| {
            (&a.kind, &a.name, &va.message).cmp(&(&b.kind, &b.name, &vb.message))
        });
        out
    }
}

struct Evaluation<'a> {
    violations: Vec<(&'a Constraint, Violation)>,
    error: Option<String>,
}

enum RunError {
    /// Rego failed at run time: Gatekeeper reports the error as the violation's message.
    Evaluation(String),
    /// The template returned something Gatekeeper cannot read: the webhook itself errors.
    Malformed(String),
}

/// Evaluates `violation` and returns `(msg, details)` of each element.
fn run_template(
    template: &Template,
    input: regorus::Value,
) -> Result<Vec<(String, Value)>, RunError> {
    let mut engine = template.engine.clone();
    engine.set_input(input);
    let value = engine
        .eval_rule(template.violation_rule.clone())
        .map_err(|e| RunError::Evaluation(one_line(&e.to_string())))?;
    if value == regorus::Value::Undefined {
        return Ok(Vec::new());
    }
    let json = serde_json::to_value(&value).map_err(|e| RunError::Malformed(e.to_string()))?;
    let elements = match json {
        Value::Array(items) => items,
        other => {
            return Err(RunError::Malformed(format!(
                "violation is not a set: {other}"
            )));
        }
    };
    let mut out = Vec::new();
    for element in elements {
        let Some(message) = element.get("msg").and_then(Value::as_str) else {
            return Err(RunError::Malformed(format!(
                "a violation has no string msg: {element}"
            )));
        };
        let details = element.get("details").cloned().unwrap_or_else(|| json!({}));
        out.push((message.to_owned(), details));
    }
    Ok(out)
}

/// regorus errors carry a source snippet over several lines; keep the location and the reason.
fn one_line(text: &str) -> String {
    let location = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("--> "))
        .map(str::trim);
    let what = text
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .unwrap_or_else(|| text.trim());
    match location {
        Some(location) => format!("{location}: {what}"),
        None => what.to_owned(),
    }
}

/// The runbook's four test pods (SomaAgentHub, section 2, "Test Policy Violations"), verbatim,
/// as `(name, YAML)`.
pub const RUNBOOK_PODS: &[(&str, &str)] = &[
    (
        "bad-registry",
        include_str!("testdata/runbook/bad-registry.yaml"),
    ),
    (
        "bad-privileged",
        include_str!("testdata/runbook/bad-privileged.yaml"),
    ),
    (
        "bad-resources",
        include_str!("testdata/runbook/bad-resources.yaml"),
    ),
    ("good-pod", include_str!("testdata/runbook/good-pod.yaml")),
];

//! The four SomaAgentHub policies as ConstraintTemplates (Rego v1, embedded), and the constraints a
//! profile's `admission` section asks for.

use serde_json::{Value, json};

use super::template::ADMISSION_TARGET;
use crate::profile::Profile;

/// Shared helpers, shipped as each template's `libs` (package `lib.meshproof.workload`).
pub const WORKLOAD_LIB: &str = include_str!("templates/lib_workload.rego");

/// A ConstraintTemplate that ships with meshproof.
#[derive(Clone, Copy, Debug)]
pub struct BundledTemplate {
    /// The constraint kind (`spec.crd.spec.names.kind`).
    pub kind: &'static str,
    pub description: &'static str,
    /// Rego v1, evaluated with [`WORKLOAD_LIB`].
    pub rego: &'static str,
    /// The placeholders its `message` parameter understands, e.g. `{container}`.
    pub placeholders: &'static [&'static str],
    /// Parameter schema, as JSON text (`properties` of `openAPIV3Schema`).
    parameters: &'static str,
}

/// The runbook's four policies, in the runbook's order.
pub const BUNDLED: &[BundledTemplate] = &[
    BundledTemplate {
        kind: "K8sRequiredRegistry",
        description: "Every container image (init and ephemeral included) must come from an allowed registry prefix.",
        rego: include_str!("templates/k8srequiredregistry.rego"),
        placeholders: &["image", "container", "name"],
        parameters: r#"{
            "registries": {"type": "array", "items": {"type": "string"},
                           "description": "Allowed image prefixes, e.g. docker.io/ (include the slash)."},
            "message": {"type": "string", "description": "Denial text; {image}, {container}, {name}."}
        }"#,
    },
    BundledTemplate {
        kind: "K8sBlockPrivileged",
        description: "No container (init and ephemeral included) may run privileged.",
        rego: include_str!("templates/k8sblockprivileged.rego"),
        placeholders: &["container", "name"],
        parameters: r#"{
            "message": {"type": "string", "description": "Denial text; {container}, {name}."}
        }"#,
    },
    BundledTemplate {
        kind: "K8sRequiredResources",
        description: "Containers and init containers must set cpu and memory requests and limits.",
        rego: include_str!("templates/k8srequiredresources.rego"),
        placeholders: &["container", "name"],
        parameters: r#"{
            "message": {"type": "string", "description": "Denial text for missing requests; {container}, {name}."},
            "limitsMessage": {"type": "string", "description": "Denial text for missing limits; {container}, {name}."}
        }"#,
    },
    BundledTemplate {
        kind: "K8sRequiredLabels",
        description: "The pod (or a controller's pod template) must carry every required label.",
        rego: include_str!("templates/k8srequiredlabels.rego"),
        placeholders: &["name", "label"],
        parameters: r#"{
            "labels": {"type": "array", "items": {"type": "string"}},
            "message": {"type": "string", "description": "Denial text; {name}, {label}."}
        }"#,
    },
];

/// The kinds the bundled templates judge, as a constraint's `spec.match.kinds`: Pods, and the
/// controllers whose pod templates they read.
pub fn workload_kinds() -> Value {
    json!([
        {"apiGroups": [""], "kinds": ["Pod", "ReplicationController"]},
        {"apiGroups": ["apps"], "kinds": ["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"]},
        {"apiGroups": ["batch"], "kinds": ["Job", "CronJob"]}
    ])
}

impl BundledTemplate {
    pub fn find(kind: &str) -> Option<&'static BundledTemplate> {
        BUNDLED.iter().find(|t| t.kind == kind)
    }

    /// The ConstraintTemplate object (`templates.gatekeeper.sh/v1`, Rego v1 via `code`).
    pub fn to_object(&self) -> Value {
        let properties: Value = serde_json::from_str(self.parameters).unwrap_or_else(|_| json!({}));
        json!({
            "apiVersion": "templates.gatekeeper.sh/v1",
            "kind": "ConstraintTemplate",
            "metadata": {
                "name": self.kind.to_lowercase(),
                "annotations": {
                    "description": self.description,
                    "meshproof.dev/source": "meshproof policy::gatekeeper bundled template",
                },
            },
            "spec": {
                "crd": {"spec": {
                    "names": {"kind": self.kind},
                    "validation": {"openAPIV3Schema": {"type": "object", "properties": properties}},
                }},
                "targets": [{
                    "target": ADMISSION_TARGET,
                    "code": [{
                        "engine": "Rego",
                        "source": {"version": "v1", "rego": self.rego, "libs": [WORKLOAD_LIB]},
                    }],
                }],
            },
        })
    }
}

/// Problems with a profile's admission policies that rendering cannot fix: kinds without a bundled
/// template, and `{placeholders}` in a message that the template does not fill.
pub fn policy_problems(profile: &Profile) -> Vec<String> {
    let Some(admission) = &profile.admission else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    for policy in &admission.policies {
        let Some(template) = BundledTemplate::find(&policy.kind) else {
            problems.push(format!(
                "{}: no bundled ConstraintTemplate for kind {} (bundled: {})",
                policy.name,
                policy.kind,
                BUNDLED
                    .iter()
                    .map(|t| t.kind)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            continue;
        };
        for placeholder in placeholders(&policy.message) {
            if !template.placeholders.contains(&placeholder.as_str()) {
                problems.push(format!(
                    "{}: message placeholder {{{placeholder}}} is not filled by {} (it fills {})",
                    policy.name,
                    policy.kind,
                    template
                        .placeholders
                        .iter()
                        .map(|p| format!("{{{p}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
    }
    problems
}

fn placeholders(message: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = message;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        match after.find('}') {
            Some(end) => {
                let name = &after[..end];
                if !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    out.push(name.to_owned());
                }
                rest = &after[end + 1..];
            }
            None => break,
        }
    }
    out
}

/// The ConstraintTemplates and constraints for `profile.admission`: each bundled template that a
/// policy uses (once, in first-use order), then one constraint per policy, matching workloads in
/// the profile's admission namespaces. The profile's `message` becomes the constraint's `message`
/// parameter, so the denial text is the runbook's. A policy whose kind has no bundled template
/// still gets its constraint, so loading the result fails loudly instead of dropping the policy.
pub fn render_templates(profile: &Profile) -> Vec<Value> {
    let Some(admission) = &profile.admission else {
        return Vec::new();
    };
    let mut templates: Vec<Value> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for policy in &admission.policies {
        if let Some(template) = BundledTemplate::find(&policy.kind)
            && !seen.contains(&template.kind)
        {
            seen.push(template.kind);
            templates.push(template.to_object());
        }
    }
    let constraints = admission.policies.iter().map(|policy| {
        let mut parameters = match &policy.parameters {
            Value::Object(map) => map.clone(),
            _ => serde_json::Map::new(),
        };
        parameters.insert("message".to_owned(), Value::String(policy.message.clone()));
        let mut matcher = serde_json::Map::new();
        matcher.insert("kinds".to_owned(), workload_kinds());
        if !admission.namespaces.is_empty() {
            matcher.insert("namespaces".to_owned(), json!(admission.namespaces));
        }
        json!({
            "apiVersion": "constraints.gatekeeper.sh/v1beta1",
            "kind": policy.kind,
            "metadata": {"name": policy.name},
            "spec": {
                "enforcementAction": "deny",
                "match": matcher,
                "parameters": parameters,
            },
        })
    });
    templates.extend(constraints);
    templates
}

/// [`render_templates`] as one multi-document YAML stream, ready for `kubectl apply -f`.
pub fn render_yaml(profile: &Profile) -> Result<String, String> {
    let mut out = String::new();
    for object in render_templates(profile) {
        let text = serde_saphyr::to_string(&object).map_err(|e| e.to_string())?;
        out.push_str("---\n");
        out.push_str(&text);
        if !text.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}

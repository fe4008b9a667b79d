//! Admission on a real cluster: `kubectl create --dry-run=server -o json -f -` runs every
//! admission webhook (Gatekeeper's included) without persisting the object. Acceptance is exit
//! 0; a denial is kubectl's error text, from which the Gatekeeper lines are read into the same
//! [`AdmissionResult`] the in-process evaluation produces, so one check judges both.
//!
//! kubectl prints a Gatekeeper denial as
//! `Error from server (Forbidden): error when creating "STDIN": admission webhook
//! "validation.gatekeeper.sh" denied the request: [constraint] message` with one
//! `[constraint] message` line per violation, and `warn` violations as `Warning: [constraint]
//! message` lines.
//!
//! A ValidatingAdmissionPolicy (which Gatekeeper can generate from its ConstraintTemplates, and
//! which clusters use beside it) denies in the API server's own words, seen from a real
//! kube-apiserver 1.37: `The pods "p" is invalid: : ValidatingAdmissionPolicy 'NAME' with
//! binding 'BINDING' denied request: message`; the policy's name stands where Gatekeeper puts
//! the constraint's.

use serde_json::Value;

use super::KubeError;
use super::kubectl::Kubectl;
use crate::policy::gatekeeper::{AdmissionResult, EnforcementAction, Violation};

/// Submits `object` for admission (dry run) and reads the decision.
pub fn review(kubectl: &Kubectl, object: &Value) -> Result<AdmissionResult, KubeError> {
    let out = kubectl.create_dry_run(object)?;
    if out.success() {
        return Ok(parse(&out.stderr, true));
    }
    if out.stderr.contains("denied the request") || out.stderr.contains(VAP_DENIAL) {
        return Ok(parse(&out.stderr, false));
    }
    // Not an admission decision: the object is invalid, the namespace missing, the API down.
    Err(KubeError::Tool(super::tool::ToolError::Failed {
        command: "kubectl create --dry-run=server -o json -f -".into(),
        status: out
            .code
            .map(|c| format!("exit {c}"))
            .unwrap_or_else(|| "killed".into()),
        stderr: super::tool::excerpt(&out.stderr),
    }))
}

/// What the API server says when a ValidatingAdmissionPolicy denies.
const VAP_DENIAL: &str = "denied request: ";

/// Reads kubectl's stderr into an admission result.
pub fn parse(stderr: &str, allowed: bool) -> AdmissionResult {
    let mut warnings = Vec::new();
    let mut warning_texts = Vec::new();
    let mut denials = Vec::new();
    let mut denial_text = None;
    let mut in_denial = false;
    for line in stderr.lines() {
        let line = line.trim_end();
        if let Some(text) = line.strip_prefix("Warning: ") {
            if let Some(v) = violation(text, EnforcementAction::Warn) {
                warnings.push(v);
            }
            warning_texts.push(text.to_owned());
            continue;
        }
        if let Some((at, v)) = policy_denial(line) {
            denial_text = Some(line[at..].to_owned());
            denials.push(v);
            continue;
        }
        if let Some(at) = line.find("admission webhook") {
            let text = &line[at..];
            denial_text = Some(text.to_owned());
            in_denial = true;
            if let Some((_, first)) = text.split_once("denied the request: ") {
                if let Some(v) = violation(first, EnforcementAction::Deny) {
                    denials.push(v);
                }
            }
            continue;
        }
        if in_denial && line.starts_with('[') {
            if let Some(v) = violation(line, EnforcementAction::Deny) {
                denials.push(v);
            }
            if let Some(text) = denial_text.as_mut() {
                text.push('\n');
                text.push_str(line);
            }
        }
    }
    AdmissionResult {
        allowed,
        denials,
        warnings,
        dry_run: Vec::new(),
        denial_text,
        warning_texts,
        error: None,
    }
}

/// `… ValidatingAdmissionPolicy 'NAME' with binding 'B' denied request: message` → where the
/// policy's words start, and a violation of `NAME`.
fn policy_denial(line: &str) -> Option<(usize, Violation)> {
    const POLICY: &str = "ValidatingAdmissionPolicy '";
    let at = line.find(POLICY)?;
    let (policy, rest) = line[at + POLICY.len()..].split_once('\'')?;
    let (_, message) = rest.split_once(VAP_DENIAL)?;
    let violation = Violation {
        constraint: policy.to_owned(),
        kind: "ValidatingAdmissionPolicy".to_owned(),
        message: message.trim().to_owned(),
        details: Value::Object(Default::default()),
        action: EnforcementAction::Deny,
    };
    Some((at, violation))
}

/// `[constraint] message` → a violation (the kind is not in kubectl's text).
fn violation(text: &str, action: EnforcementAction) -> Option<Violation> {
    let rest = text.trim().strip_prefix('[')?;
    let (constraint, message) = rest.split_once("] ")?;
    Some(Violation {
        constraint: constraint.to_owned(),
        kind: String::new(),
        message: message.to_owned(),
        details: Value::Object(Default::default()),
        action,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gatekeeper_denials_are_read_from_kubectl_stderr() {
        let stderr = "Error from server (Forbidden): error when creating \"STDIN\": admission webhook \"validation.gatekeeper.sh\" denied the request: [soma-registry-policy] Image 'evil-registry.com/malware:latest' from disallowed registry\n[soma-required-labels] Pod 'x' missing required label 'version'\n";
        let result = parse(stderr, false);
        assert!(!result.allowed);
        let lines: Vec<String> = result.denials.iter().map(|v| v.gatekeeper_line()).collect();
        assert_eq!(
            lines,
            [
                "[soma-registry-policy] Image 'evil-registry.com/malware:latest' from disallowed registry",
                "[soma-required-labels] Pod 'x' missing required label 'version'"
            ]
        );
        assert!(
            result
                .denial_text
                .is_some_and(|t| t.starts_with("admission webhook \"validation.gatekeeper.sh\""))
        );
    }

    #[test]
    fn validating_admission_policy_denials_are_read_as_denials() {
        let stderr = "The pods \"p\" is invalid: : ValidatingAdmissionPolicy 'block-privileged' with binding 'block-privileged' denied request: Container 'app' is running in privileged mode\n";
        let result = parse(stderr, false);
        assert!(!result.allowed);
        let lines: Vec<String> = result.denials.iter().map(|v| v.gatekeeper_line()).collect();
        assert_eq!(
            lines,
            ["[block-privileged] Container 'app' is running in privileged mode"]
        );
        assert!(result.denial_text.is_some_and(|t| {
            t.starts_with("ValidatingAdmissionPolicy 'block-privileged'")
                && t.ends_with("Container 'app' is running in privileged mode")
        }));
    }

    #[test]
    fn warnings_are_kept_on_an_admitted_object() {
        let result = parse(
            "Warning: [soma-required-labels] Pod 'x' missing required label 'version'\n",
            true,
        );
        assert!(result.allowed);
        assert_eq!(result.warnings.len(), 1);
        assert_eq!(result.warning_texts.len(), 1);
    }
}

//! `intent.static` — security contract: for every request of the intent matrix (see
//! [`crate::intents`]), Istio's decision predicted from the configured AuthorizationPolicies —
//! evaluated exactly as Istio orders them: CUSTOM, DENY, then ALLOW; allow-nothing when an ALLOW
//! policy applies and none matches — equals the decision the profile promised. A mismatch names
//! the request and the policy (file:line) that decided it. Widened access (promised deny,
//! predicted allow) is the finding that matters most; narrowed access (promised allow, predicted
//! deny) breaks the service.
//!
//! `intent.live` — the same contract for a request actually sent through the data plane, and the
//! observation must also equal the static prediction (a disagreement means the configuration is
//! not what is enforced).

use crate::intents::ExpectedCall;
use crate::policy::istio::{AuthzDecision, PolicyIndex, PolicyRef, Request};
use crate::profile::Decision;
use crate::results::CheckResult;

pub const STATIC: &str = "intent.static";
pub const LIVE: &str = "intent.live";

/// The request a call of the matrix is, as the callee's sidecar sees it.
fn request(call: &ExpectedCall) -> Request {
    Request::http(
        &call.to_namespace,
        &[("app", call.to.as_str())],
        call.port,
        &call.method,
        &call.path,
    )
    .from_spiffe_id(&call.principal)
}

/// Istio's decision for one call of the matrix, with its account.
pub fn predict(policies: &PolicyIndex<'_>, call: &ExpectedCall) -> AuthzDecision {
    policies.evaluate(&request(call))
}

pub fn decided_by(decision: &AuthzDecision) -> String {
    policy_label(decision.decided_by.as_ref())
}

fn policy_label(policy: Option<&PolicyRef>) -> String {
    match policy {
        Some(p) => format!(
            "{}/{} ({}:{})",
            p.namespace,
            p.name,
            p.file.display(),
            p.detail_line.unwrap_or(p.line)
        ),
        None => "no policy".to_owned(),
    }
}

fn word(d: Decision) -> &'static str {
    match d {
        Decision::Allow => "allow",
        Decision::Deny => "deny",
    }
}

/// Evidence every intent verdict carries, in the keys the reports read.
pub fn evidence(call: &ExpectedCall, observed: Decision, decided: &str) -> Vec<(String, String)> {
    vec![
        ("from".into(), call.from.clone()),
        ("to".into(), call.to.clone()),
        ("method".into(), call.method.clone()),
        ("path".into(), call.path.clone()),
        ("principal".into(), call.principal.to_string()),
        ("expected".into(), word(call.expected).into()),
        ("observed".into(), word(observed).into()),
        ("decided_by".into(), decided.to_owned()),
    ]
}

/// Judges one call statically. The verdict carries its evidence whether it passed or failed: a
/// widened access is exactly the verdict an auditor needs the caller, callee and policy of.
pub fn judge_static(policies: &PolicyIndex<'_>, call: &ExpectedCall) -> CheckResult {
    let request = request(call);
    let verdict = policies.decide(&request);
    let predicted = if verdict.allowed {
        Decision::Allow
    } else {
        Decision::Deny
    };
    let by = policy_label(verdict.decided_by().as_ref());
    let label = call.label();
    let outcome = if predicted == call.expected {
        Ok((
            format!("{label} predicted {} by {by}", word(predicted)),
            Vec::new(),
        ))
    } else {
        let kind = if predicted == Decision::Allow {
            "WIDENED ACCESS"
        } else {
            "narrowed access"
        };
        Err(format!(
            "{kind}: {label} as {} is promised {} ({}) but the manifests {} it: {by}; {}",
            call.principal,
            word(call.expected),
            call.intent_line
                .map(|l| format!("profile line {l}"))
                .unwrap_or_else(|| "default deny".into()),
            word(predicted),
            // The account is only worth its cost on a mismatch.
            policies.evaluate(&request).explanation
        ))
    };
    let mut result = super::verdict(STATIC, &label, outcome);
    result.evidence = evidence(call, predicted, &by);
    result
}

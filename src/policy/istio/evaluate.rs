//! The authorization decision a sidecar makes for one request, as Istio defines it: CUSTOM, then
//! DENY, then ALLOW; AUDIT and dry-run policies decide nothing; if any ALLOW policy applies the
//! request must match one of its rules, otherwise it is allowed.
//!
//! Every rule is matched through the same translation [`super::envoy::envoy_rbac`] compiles for
//! Envoy (including the TCP rules: an ALLOW rule with HTTP-only fields is dropped on a TCP port, a
//! DENY rule loses those fields and so denies more), so the lab's Envoy must agree with this.

use std::fmt;

use serde::Serialize;

use super::model::{Action, AuthorizationPolicy, MeshPolicies, PolicyRef};
use super::request::{Protocol, Request, workload_name};
use super::select;
use super::translate::{self, Gen, GenRule};
use super::trust;

/// Why the request was allowed or denied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum AuthzAction {
    /// An enforcing ALLOW policy matched.
    Allow,
    /// An enforcing DENY policy matched.
    Deny,
    /// ALLOW policies apply to the workload and none matched.
    NoAllowMatch,
    /// No enforcing ALLOW policy applies (and no DENY matched): allowed by default.
    NoPolicies,
}

impl fmt::Display for AuthzAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthzAction::Allow => "ALLOW",
            AuthzAction::Deny => "DENY",
            AuthzAction::NoAllowMatch => "NO_ALLOW_MATCH",
            AuthzAction::NoPolicies => "NO_POLICIES",
        })
    }
}

/// The verdict, with the policy that decided it (if one did) and a readable account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuthzDecision {
    pub allowed: bool,
    pub action: AuthzAction,
    pub decided_by: Option<PolicyRef>,
    pub explanation: String,
}

/// How one policy fared against the request.
enum Outcome {
    /// Rule `i` matched.
    Matched(usize),
    /// No rule matched; one reason per rule.
    Missed(Vec<String>),
}

/// Decides `request` against the policies applying to its destination workload.
pub fn evaluate(config: &MeshPolicies, request: &Request) -> AuthzDecision {
    let dest = &request.destination;
    let workload = workload_name(&dest.namespace, &dest.labels);
    let applicable = select::authorization_policies(config, &dest.namespace, &dest.labels);
    let bundle = trust::bundle(&config.mesh);
    let mut notes = Vec::new();
    for p in &applicable {
        match (p.action, p.dry_run) {
            (Action::Custom, _) => notes.push(format!(
                "CUSTOM {} not evaluated (external authorizer)",
                name(p)
            )),
            (_, true) => notes.push(format!("dry-run {} not enforced", name(p))),
            (Action::Audit, _) => notes.push(format!("AUDIT {} decides nothing", name(p))),
            _ => {}
        }
    }
    let notes = if notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", notes.join("; "))
    };
    let enforcing = |action: Action| {
        applicable
            .iter()
            .filter(move |p| p.action == action && !p.dry_run)
            .copied()
    };

    let mut deny_checked = 0;
    for policy in enforcing(Action::Deny) {
        deny_checked += 1;
        if let Outcome::Matched(i) = outcome(policy, request, &bundle) {
            let by = rule_ref(policy, i);
            return AuthzDecision {
                allowed: false,
                action: AuthzAction::Deny,
                explanation: format!("denied: {} matched DENY {by}{notes}", request.describe()),
                decided_by: Some(by),
            };
        }
    }

    let allows: Vec<&AuthorizationPolicy> = enforcing(Action::Allow).collect();
    if allows.is_empty() {
        let denies = match deny_checked {
            0 => "no DENY policy applies either".to_owned(),
            n => format!("none of its {n} DENY policies matched"),
        };
        return AuthzDecision {
            allowed: true,
            action: AuthzAction::NoPolicies,
            decided_by: None,
            explanation: format!(
                "allowed: no ALLOW policy applies to {workload} and {denies} {}{notes}",
                request.describe()
            ),
        };
    }
    let mut misses = Vec::new();
    for policy in &allows {
        match outcome(policy, request, &bundle) {
            Outcome::Matched(i) => {
                let by = rule_ref(policy, i);
                return AuthzDecision {
                    allowed: true,
                    action: AuthzAction::Allow,
                    explanation: format!(
                        "allowed: {} matched ALLOW {by}{notes}",
                        request.describe()
                    ),
                    decided_by: Some(by),
                };
            }
            Outcome::Missed(reasons) => misses.push(format!(
                "{} at {}:{}: {}",
                name(policy),
                policy.meta.file.display(),
                policy.meta.line,
                reasons.join("; ")
            )),
        }
    }
    AuthzDecision {
        allowed: false,
        action: AuthzAction::NoAllowMatch,
        decided_by: None,
        explanation: format!(
            "denied: {} ALLOW polic{} apply to {workload} and none matched {}: {}{notes}",
            allows.len(),
            if allows.len() == 1 { "y" } else { "ies" },
            request.describe(),
            misses.join(" | ")
        ),
    }
}

fn name(p: &AuthorizationPolicy) -> String {
    format!("{}/{}", p.meta.namespace, p.meta.name)
}

fn rule_ref(policy: &AuthorizationPolicy, rule: usize) -> PolicyRef {
    let mut by = PolicyRef::of(&policy.meta);
    by.rule = Some(rule);
    by.detail_line = policy.rules.get(rule).map(|r| r.line);
    by
}

fn outcome(policy: &AuthorizationPolicy, request: &Request, bundle: &[String]) -> Outcome {
    let g = Gen {
        for_tcp: request.protocol == Protocol::Tcp,
        action: policy.action,
        policy_namespace: &policy.meta.namespace,
        trust_bundle: Some(bundle),
    };
    if policy.rules.is_empty() {
        return match GenRule::match_never().check(request) {
            Ok(()) => Outcome::Matched(0),
            Err(_) => Outcome::Missed(vec!["it has no rules, so it matches nothing".into()]),
        };
    }
    let mut reasons = Vec::new();
    for (i, rule) in policy.rules.iter().enumerate() {
        match translate::generate(rule, &g) {
            Err(translate::Dropped(why)) => {
                reasons.push(format!("rule[{i}] is dropped on this TCP port ({why})"));
            }
            Ok(generated) => match generated.check(request) {
                Ok(()) => return Outcome::Matched(i),
                Err(why) => reasons.push(format!("rule[{i}]: {why}")),
            },
        }
    }
    Outcome::Missed(reasons)
}

//! The authorization decision a sidecar makes for one request, as Istio defines it: CUSTOM, then
//! DENY, then ALLOW; AUDIT and dry-run policies decide nothing; if any ALLOW policy applies the
//! request must match one of its rules, otherwise it is allowed.
//!
//! Every rule is matched through the same translation [`super::envoy::envoy_rbac`] compiles for
//! Envoy (including the TCP rules: an ALLOW rule with HTTP-only fields is dropped on a TCP port, a
//! DENY rule loses those fields and so denies more), so the lab's Envoy must agree with this.

use std::fmt;

use serde::Serialize;

use super::index::PolicyIndex;
use super::model::{Action, AuthorizationPolicy, MeshPolicies, PolicyRef};
use super::request::{Request, workload_name};
use super::translate::Dropped;

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

/// The decision without its account: what deciding many requests needs. See
/// [`PolicyIndex::evaluate`] for the account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict<'a> {
    pub allowed: bool,
    pub action: AuthzAction,
    /// The policy and the index of its rule that decided, if one did.
    pub rule: Option<(&'a AuthorizationPolicy, usize)>,
}

impl Verdict<'_> {
    /// The policy (and rule) that decided, if one did.
    pub fn decided_by(&self) -> Option<PolicyRef> {
        self.rule.map(|(policy, rule)| rule_ref(policy, rule))
    }
}

/// Decides `request` against the policies applying to its destination workload. To decide many
/// requests, build one [`PolicyIndex`] and call [`PolicyIndex::decide`] or
/// [`PolicyIndex::evaluate`].
pub fn evaluate(config: &MeshPolicies, request: &Request) -> AuthzDecision {
    PolicyIndex::new(config).evaluate(request)
}

impl<'a> PolicyIndex<'a> {
    /// Decides `request` against the policies applying to its destination workload.
    pub fn decide(&self, request: &Request) -> Verdict<'a> {
        let dest = &request.destination;
        let applicable = self.applicable_positions(&dest.namespace, &dest.labels);
        let enforcing = |action: Action| {
            applicable.iter().copied().filter(move |&i| {
                let p = self.policy(i);
                p.action == action && !p.dry_run
            })
        };
        for i in enforcing(Action::Deny) {
            if let Some(rule) = self.matching_rule(i, request) {
                return Verdict {
                    allowed: false,
                    action: AuthzAction::Deny,
                    rule: Some((self.policy(i), rule)),
                };
            }
        }
        let mut allows = enforcing(Action::Allow).peekable();
        if allows.peek().is_none() {
            return Verdict {
                allowed: true,
                action: AuthzAction::NoPolicies,
                rule: None,
            };
        }
        for i in allows {
            if let Some(rule) = self.matching_rule(i, request) {
                return Verdict {
                    allowed: true,
                    action: AuthzAction::Allow,
                    rule: Some((self.policy(i), rule)),
                };
            }
        }
        Verdict {
            allowed: false,
            action: AuthzAction::NoAllowMatch,
            rule: None,
        }
    }

    /// [`Self::decide`], with a readable account of why.
    pub fn evaluate(&self, request: &Request) -> AuthzDecision {
        let verdict = self.decide(request);
        AuthzDecision {
            explanation: self.explain(&verdict, request),
            allowed: verdict.allowed,
            action: verdict.action,
            decided_by: verdict.decided_by(),
        }
    }

    fn explain(&self, verdict: &Verdict, request: &Request) -> String {
        let dest = &request.destination;
        let workload = workload_name(&dest.namespace, &dest.labels);
        let applicable: Vec<&AuthorizationPolicy> = self
            .applicable_positions(&dest.namespace, &dest.labels)
            .into_iter()
            .map(|i| self.policy(i))
            .collect();
        let notes: Vec<String> = applicable
            .iter()
            .filter_map(|p| match (p.action, p.dry_run) {
                (Action::Custom, _) => Some(format!(
                    "CUSTOM {} not evaluated (external authorizer)",
                    name(p)
                )),
                (_, true) => Some(format!("dry-run {} not enforced", name(p))),
                (Action::Audit, _) => Some(format!("AUDIT {} decides nothing", name(p))),
                _ => None,
            })
            .collect();
        let notes = if notes.is_empty() {
            String::new()
        } else {
            format!(" ({})", notes.join("; "))
        };
        let enforcing = |action: Action| {
            self.applicable_positions(&dest.namespace, &dest.labels)
                .into_iter()
                .filter(move |&i| {
                    let p = self.policy(i);
                    p.action == action && !p.dry_run
                })
        };
        let by = verdict
            .decided_by()
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        match verdict.action {
            AuthzAction::Deny => format!("denied: {} matched DENY {by}{notes}", request.describe()),
            AuthzAction::Allow => {
                format!("allowed: {} matched ALLOW {by}{notes}", request.describe())
            }
            AuthzAction::NoPolicies => {
                let denies = match enforcing(Action::Deny).count() {
                    0 => "no DENY policy applies either".to_owned(),
                    n => format!("none of its {n} DENY policies matched"),
                };
                format!(
                    "allowed: no ALLOW policy applies to {workload} and {denies} {}{notes}",
                    request.describe()
                )
            }
            AuthzAction::NoAllowMatch => {
                let misses: Vec<String> = enforcing(Action::Allow)
                    .map(|i| {
                        let policy = self.policy(i);
                        format!(
                            "{} at {}:{}: {}",
                            name(policy),
                            policy.meta.file.display(),
                            policy.meta.line,
                            self.misses(i, request).join("; ")
                        )
                    })
                    .collect();
                format!(
                    "denied: {} ALLOW polic{} apply to {workload} and none matched {}: {}{notes}",
                    misses.len(),
                    if misses.len() == 1 { "y" } else { "ies" },
                    request.describe(),
                    misses.join(" | ")
                )
            }
        }
    }

    /// The first rule of the policy at `position` that matches `request`.
    fn matching_rule(&self, position: usize, request: &Request) -> Option<usize> {
        self.generated(position, request.protocol)
            .iter()
            .position(|g| g.as_ref().is_ok_and(|rule| rule.matches(request)))
    }

    /// Why no rule of the policy at `position` matches `request`, one reason per rule.
    fn misses(&self, position: usize, request: &Request) -> Vec<String> {
        if self.policy(position).rules.is_empty() {
            return vec!["it has no rules, so it matches nothing".into()];
        }
        self.generated(position, request.protocol)
            .iter()
            .enumerate()
            .filter_map(|(i, g)| match g {
                Err(Dropped(why)) => Some(format!("rule[{i}] is dropped on this TCP port ({why})")),
                Ok(rule) => rule
                    .check(request)
                    .err()
                    .map(|why| format!("rule[{i}]: {why}")),
            })
            .collect()
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

//! `meshproof verify`: intended (profile) against configured (manifests), with no mesh running.
//! Istio's decision is predicted from the AuthorizationPolicies for every request of every pair an
//! intent names and of a default-deny sample of the other pairs ([`sample`]), mutual TLS is
//! required where the profile requires it, and every workload manifest passes admission.

pub mod sample;

use std::fmt;

use serde::Serialize;

use crate::checks::{self, intents, mtls};
use crate::configured::Configured;
use crate::intents::{IntentIndex, calls_between};
use crate::policy::gatekeeper::{EnforcementAction, WEBHOOK_POINT};
use crate::policy::istio::{MeshPolicies, PolicyIndex};
use crate::profile::Profile;
use crate::results::CheckResult;
pub use sample::Sampling;

pub const ADMISSION_AUDIT: &str = "admission.audit";
pub const UNSUPPORTED: &str = "policy.unsupported";

/// Every verdict, and how much of the intent matrix they cover.
#[derive(Debug)]
pub struct Verification {
    pub results: Vec<CheckResult>,
    pub coverage: Coverage,
}

/// How much of the intent matrix `verify` judged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Coverage {
    pub sampling: Sampling,
    /// Caller → callee pairs an intent names (all judged).
    pub intended_pairs: usize,
    /// Pairs promised deny only by default: judged, and in the whole mesh.
    pub default_deny_judged: usize,
    pub default_deny_total: u64,
    /// Requests judged (every endpoint and method of every judged pair).
    pub requests: usize,
}

impl fmt::Display for Coverage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} requests: {} pairs an intent names, {} of {} default-deny pairs",
            self.requests, self.intended_pairs, self.default_deny_judged, self.default_deny_total
        )?;
        match self.sampling {
            Sampling::Exhaustive => f.write_str(" (exhaustive)"),
            _ if self.default_deny_total == self.default_deny_judged as u64 => {
                f.write_str(" (the sample is every pair)")
            }
            Sampling::DefaultDeny => write!(
                f,
                " (sampled: up to {} callers per callee, {} callees per caller)",
                sample::CALLERS_PER_CALLEE,
                sample::CALLEES_PER_CALLER
            ),
        }
    }
}

pub fn verify(profile: &Profile, configured: &Configured, sampling: Sampling) -> Verification {
    // Judging intents and auditing admission (Rego) share nothing and each takes a good part of
    // the time on a large mesh: they run side by side.
    let ((mut out, coverage), admission) = std::thread::scope(|s| {
        let intents = s.spawn(|| judge_intents(profile, &configured.policies, sampling));
        let admission = profile.admission.is_some().then(|| {
            checks::verdict(
                ADMISSION_AUDIT,
                &profile.name,
                admission_audit(profile, configured),
            )
        });
        // A panic while judging is re-raised here, as it would be without the thread.
        let intents = intents
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (intents, admission)
    });
    out.push(checks::verdict(
        mtls::STRICT,
        &profile.name,
        mtls::strict(profile, &configured.policies),
    ));
    out.push(checks::verdict(
        mtls::DESTINATION_RULE,
        &profile.name,
        mtls::destination_rules(profile, &configured.policies),
    ));
    out.extend(admission);
    // A field the evaluator does not model could change a decision: it is a finding, not a footnote.
    for u in &configured.policies.unsupported {
        out.push(CheckResult {
            check: UNSUPPORTED.into(),
            subject: format!("{}:{}", u.file.display(), u.line),
            status: crate::results::Status::Failed,
            summary: format!("{u:?}"),
            evidence: Vec::new(),
        });
    }
    Verification {
        results: out,
        coverage,
    }
}

/// `intent.static` for every request of the pairs [`sample::plan`] chooses, caller-major as in
/// the intent matrix.
fn judge_intents(
    profile: &Profile,
    policies: &MeshPolicies,
    sampling: Sampling,
) -> (Vec<CheckResult>, Coverage) {
    let policies = PolicyIndex::new(policies);
    let identities: Vec<_> = profile
        .services
        .iter()
        .map(|s| profile.lab_identity(s))
        .collect();
    let plan = sample::plan(profile, &identities, &policies, sampling);
    let intents = IntentIndex::new(profile);
    let mut calls = Vec::new();
    for &(a, b) in &plan.pairs {
        if let Some(principal) = &identities[a] {
            let services = &profile.services;
            calls_between(&intents, &services[a], principal, &services[b], &mut calls);
        }
    }
    let coverage = Coverage {
        sampling,
        intended_pairs: plan.intended,
        default_deny_judged: plan.default_deny_judged,
        default_deny_total: plan.default_deny_total,
        requests: calls.len(),
    };
    let verdicts = calls
        .iter()
        .map(|call| intents::judge_static(&policies, call))
        .collect();
    (verdicts, coverage)
}

/// `admission.audit` — every constraint the profile promises is configured, enforced (`deny`), and
/// every workload object of the manifests passes it.
pub fn admission_audit(
    profile: &Profile,
    configured: &Configured,
) -> Result<(String, Vec<(String, String)>), String> {
    let Some(promised) = &profile.admission else {
        return Ok(("no admission policy promised".into(), Vec::new()));
    };
    let Some(admission) = &configured.admission else {
        return Err(format!(
            "no ConstraintTemplate in {}: the profile promises {} admission policies",
            configured.dir.display(),
            promised.policies.len()
        ));
    };
    for policy in &promised.policies {
        match admission.constraint(&policy.name) {
            None => {
                return Err(format!(
                    "constraint {} ({}) is missing from {}",
                    policy.name,
                    policy.kind,
                    configured.dir.display()
                ));
            }
            Some(c)
                if !c
                    .enforcement
                    .actions_at(WEBHOOK_POINT)
                    .contains(&EnforcementAction::Deny) =>
            {
                let actions: Vec<&str> = c
                    .enforcement
                    .actions_at(WEBHOOK_POINT)
                    .iter()
                    .map(|a| a.as_str())
                    .collect();
                return Err(format!(
                    "constraint {} enforces [{}] at admission, not deny ({}:{}): violations would be admitted",
                    policy.name,
                    actions.join(", "),
                    c.file.display(),
                    c.line
                ));
            }
            Some(_) => {}
        }
    }
    let findings = admission.audit(&configured.manifests);
    if let Some(f) = findings.first() {
        return Err(format!(
            "{} {} ({}:{}) violates [{}] {}",
            f.object.kind,
            f.object.name,
            f.file.display(),
            f.line,
            f.constraint,
            f.message
        ));
    }
    let workloads = configured.manifests.len();
    Ok((
        format!(
            "{} constraints enforced, {workloads} objects audited clean",
            promised.policies.len()
        ),
        Vec::new(),
    ))
}

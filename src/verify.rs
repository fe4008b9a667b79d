//! `meshproof verify`: intended (profile) against configured (manifests), with no mesh running.
//! Istio's decision is predicted from the AuthorizationPolicies for every request of every pair an
//! intent names and of a default-deny sample of the other pairs ([`sample`]), mutual TLS is
//! required where the profile requires it, and every workload manifest passes admission.

pub mod sample;

use std::fmt;
use std::ops::Range;

use serde::Serialize;

use crate::checks::{self, mtls};
use crate::configured::Configured;
use crate::intents::{IntentIndex, calls_between};
use crate::policy::gatekeeper::{Admission, AuditFinding, EnforcementAction, WEBHOOK_POINT};
use crate::policy::istio::PolicyIndex;
use crate::profile::Profile;
use crate::results::CheckResult;
use crate::spiffe::SpiffeId;
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
    let policies = PolicyIndex::new(&configured.policies);
    let identities: Vec<Option<SpiffeId>> = profile
        .services
        .iter()
        .map(|s| profile.lab_identity(s))
        .collect();
    let plan = sample::plan(profile, &identities, &policies, sampling);
    let intents = IntentIndex::new(profile);
    let admission = promised_admission(profile, configured);
    let audited = match &admission {
        Ok(Some(_)) => configured.manifests.len(),
        _ => 0,
    };
    // Judging requests and auditing objects (Rego) are independent and each is a good part of
    // the time on a large mesh: both are cut into units that every core takes in turn. Rego
    // engines cannot cross threads, so each thread builds its own Admission on its first audit.
    let units = units(plan.pairs.len(), audited);
    let done = crate::cores::in_order(
        &units,
        || None,
        |own: &mut Option<Result<Admission, String>>, unit| match unit {
            Unit::Judge(range) => {
                let pairs = &plan.pairs[range.clone()];
                Done::Verdicts(judge_pairs(
                    profile,
                    &identities,
                    &intents,
                    &policies,
                    pairs,
                ))
            }
            Unit::Audit(range) => {
                let own = own.get_or_insert_with(|| {
                    Admission::from_manifests(&configured.manifests).map_err(|e| e.to_string())
                });
                Done::Findings(
                    own.as_ref()
                        .map(|a| a.audit(&configured.manifests[range.clone()]))
                        .map_err(Clone::clone),
                )
            }
        },
    );
    let mut out = Vec::new();
    let mut audits = Vec::new();
    for d in done {
        match d {
            Done::Verdicts(v) => out.extend(v),
            Done::Findings(f) => audits.push(f),
        }
    }
    let coverage = Coverage {
        sampling,
        intended_pairs: plan.intended,
        default_deny_judged: plan.default_deny_judged,
        default_deny_total: plan.default_deny_total,
        requests: out.len(),
    };
    let findings: Result<Vec<AuditFinding>, String> = audits
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map(|parts| parts.into_iter().flatten().collect());
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
    let admission = match admission {
        Ok(None) => None,
        Ok(Some(_)) => Some(findings.and_then(|f| audit_outcome(profile, configured, &f))),
        Err(e) => Some(Err(e)),
    };
    if let Some(outcome) = admission {
        out.push(checks::verdict(ADMISSION_AUDIT, &profile.name, outcome));
    }
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

/// `intent.static` for every request of `pairs`.
fn judge_pairs(
    profile: &Profile,
    identities: &[Option<SpiffeId>],
    intents: &IntentIndex<'_>,
    policies: &PolicyIndex<'_>,
    pairs: &[(usize, usize)],
) -> Vec<CheckResult> {
    let services = &profile.services;
    let mut calls = Vec::new();
    for &(a, b) in pairs {
        if let Some(principal) = &identities[a] {
            calls_between(intents, &services[a], principal, &services[b], &mut calls);
        }
    }
    calls
        .iter()
        .map(|call| checks::intents::judge_static(policies, call))
        .collect()
}

/// Caller → callee pairs judged per unit, and objects audited per unit: small enough that the
/// threads finish together, large enough that taking a unit costs nothing next to doing it.
const PAIRS_PER_UNIT: usize = 256;
const OBJECTS_PER_UNIT: usize = 64;

enum Unit {
    Judge(Range<usize>),
    Audit(Range<usize>),
}

enum Done {
    Verdicts(Vec<CheckResult>),
    Findings(Result<Vec<AuditFinding>, String>),
}

/// Audits first: an object costs more than a request, so the cheap units fill the end.
fn units(pairs: usize, objects: usize) -> Vec<Unit> {
    let ranges = |n: usize, per: usize| {
        (0..n)
            .step_by(per)
            .map(move |start| start..(start + per).min(n))
    };
    ranges(objects, OBJECTS_PER_UNIT)
        .map(Unit::Audit)
        .chain(ranges(pairs, PAIRS_PER_UNIT).map(Unit::Judge))
        .collect()
}

/// `admission.audit` — every constraint the profile promises is configured, enforced (`deny`), and
/// every workload object of the manifests passes it.
pub fn admission_audit(
    profile: &Profile,
    configured: &Configured,
) -> Result<(String, Vec<(String, String)>), String> {
    match promised_admission(profile, configured)? {
        None => Ok(("no admission policy promised".into(), Vec::new())),
        Some(admission) => {
            audit_outcome(profile, configured, &admission.audit(&configured.manifests))
        }
    }
}

/// The configured admission, once every constraint the profile promises is in it and enforced at
/// admission; `None` when the profile promises none.
fn promised_admission<'c>(
    profile: &Profile,
    configured: &'c Configured,
) -> Result<Option<&'c Admission>, String> {
    let Some(promised) = &profile.admission else {
        return Ok(None);
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
    Ok(Some(admission))
}

/// The verdict on the audit's findings: the first one, or a clean bill.
fn audit_outcome(
    profile: &Profile,
    configured: &Configured,
    findings: &[AuditFinding],
) -> Result<(String, Vec<(String, String)>), String> {
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
    let promised = profile.admission.as_ref().map_or(0, |a| a.policies.len());
    let workloads = configured.manifests.len();
    Ok((
        format!("{promised} constraints enforced, {workloads} objects audited clean"),
        Vec::new(),
    ))
}

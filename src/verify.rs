//! `meshproof verify`: intended (profile) against configured (manifests), with no mesh running.
//! Every request of the intent matrix is predicted from the AuthorizationPolicies, mutual TLS is
//! required where the profile requires it, and every workload manifest passes admission.

use crate::checks::{self, intents, mtls};
use crate::configured::Configured;
use crate::policy::gatekeeper::{EnforcementAction, WEBHOOK_POINT};
use crate::profile::Profile;
use crate::results::CheckResult;

pub const ADMISSION_AUDIT: &str = "admission.audit";
pub const UNSUPPORTED: &str = "policy.unsupported";

pub fn verify(profile: &Profile, configured: &Configured) -> Vec<CheckResult> {
    let mut out = Vec::new();
    for call in crate::intents::matrix(profile) {
        out.push(intents::judge_static(profile, &configured.policies, &call));
    }
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
    if profile.admission.is_some() {
        out.push(checks::verdict(
            ADMISSION_AUDIT,
            &profile.name,
            admission_audit(profile, configured),
        ));
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
    out
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

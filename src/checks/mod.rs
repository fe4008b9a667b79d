//! Checks: pure functions from what a target showed (observations) to verdicts with evidence.
//! They never talk to a target themselves, so the same check judges the lab, kind or a cluster.

pub mod identity;
pub mod ingress;
pub mod intents;
pub mod live;
pub mod mtls;
pub mod pki;
pub mod renewal;
pub mod spire;

use crate::results::{CheckResult, Status};

/// Builds a [`CheckResult`]; `Ok` carries evidence, `Err` the finding.
pub fn verdict(
    check: &str,
    subject: &str,
    outcome: Result<(String, Vec<(String, String)>), String>,
) -> CheckResult {
    match outcome {
        Ok((summary, evidence)) => CheckResult {
            check: check.to_owned(),
            subject: subject.to_owned(),
            status: Status::Passed,
            summary,
            evidence,
        },
        Err(finding) => CheckResult {
            check: check.to_owned(),
            subject: subject.to_owned(),
            status: Status::Failed,
            summary: finding,
            evidence: Vec::new(),
        },
    }
}

pub fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

//! Verdicts on observations from a running data plane.
//!
//! `intent.live` — security contract: a request of the intent matrix, actually sent from the
//! caller's sidecar with the caller's SVID, was served (2xx, and the callee's app saw exactly the
//! caller's SPIFFE ID) if and only if the profile allows it, and refused by the callee's RBAC
//! (403 `RBAC: access denied`) otherwise; and the observation equals the static prediction from
//! the manifests. Any other outcome (a reset, a 503, a TLS failure between honest sidecars) is a
//! failure, never counted as a denial.
//!
//! `mtls.refuses` — a request to a workload's inbound listener with no client certificate, in
//! plaintext, from a foreign CA, with an expired certificate or from a foreign trust domain was
//! sent and refused (TLS alert, reset or empty reply), and a valid SVID from the trust domain
//! completes the handshake (the positive control that makes the refusals meaningful).

use crate::intents::ExpectedCall;
use crate::probe::{Observation, Outcome};
use crate::profile::Decision;
use crate::results::CheckResult;

pub const LIVE: &str = "intent.live";
pub const REFUSES: &str = "mtls.refuses";

type Verdict = Result<(String, Vec<(String, String)>), String>;

fn word(d: Decision) -> &'static str {
    match d {
        Decision::Allow => "allow",
        Decision::Deny => "deny",
    }
}

/// What the data plane decided, if the outcome is one an honest mesh produces.
pub fn observed_decision(observation: &Observation) -> Option<Decision> {
    match &observation.outcome {
        o if o.is_success() => Some(Decision::Allow),
        o if o.is_rbac_denied() => Some(Decision::Deny),
        _ => None,
    }
}

/// Judges one observed call. The verdict carries the call and the observation, pass or fail.
pub fn judge_call(
    call: &ExpectedCall,
    predicted: Decision,
    decided_by: &str,
    observation: &Observation,
) -> CheckResult {
    judge(call, predicted, decided_by, observation, None)
}

/// [`judge_call`] where the callee's app cannot report the identity it was handed (on a cluster
/// the probe workloads run http-echo): a served call is judged on the decision alone, and the
/// evidence says the peer was not attributed, and why.
pub fn judge_call_unattributed(
    call: &ExpectedCall,
    predicted: Decision,
    decided_by: &str,
    observation: &Observation,
    why: &str,
) -> CheckResult {
    judge(call, predicted, decided_by, observation, Some(why))
}

fn judge(
    call: &ExpectedCall,
    predicted: Decision,
    decided_by: &str,
    observation: &Observation,
    unattributed: Option<&str>,
) -> CheckResult {
    let seen = format!(
        "{} → {} (latency {:.1} ms)",
        call.label(),
        observation.outcome,
        observation.latency.as_secs_f64() * 1e3
    );
    let observed = observed_decision(observation);
    let outcome = match observed {
        None => Err(format!(
            "{seen}: neither served nor refused by RBAC; the sidecars between honest workloads failed"
        )),
        Some(Decision::Allow)
            if unattributed.is_none()
                && observation.peer_seen.as_deref() != Some(&call.principal.to_string()) =>
        {
            Err(format!(
                "{seen}: served, but the callee saw the caller as {:?}, not {}",
                observation.peer_seen, call.principal
            ))
        }
        Some(o) if o != call.expected => {
            let kind = if o == Decision::Allow {
                "WIDENED ACCESS"
            } else {
                "narrowed access"
            };
            Err(format!(
                "{kind} observed: {seen}; promised {}",
                word(call.expected)
            ))
        }
        Some(o) if o != predicted => Err(format!(
            "static and live disagree: {seen}, but the manifests predict {} ({decided_by})",
            word(predicted)
        )),
        Some(o) => Ok((
            format!("{seen}: {} as promised and predicted", word(o)),
            Vec::new(),
        )),
    };
    let mut evidence =
        super::intents::evidence(call, observed.unwrap_or(Decision::Deny), decided_by);
    evidence.push(("outcome".into(), observation.outcome.to_string()));
    evidence.push((
        "latency_ms".into(),
        format!("{:.2}", observation.latency.as_secs_f64() * 1e3),
    ));
    evidence.push(("mtls".into(), "true".into()));
    if let Some(peer) = &observation.peer_seen {
        evidence.push(("peer_seen".into(), peer.clone()));
    } else if let Some(why) = unattributed {
        evidence.push(("peer_seen".into(), format!("not attributed: {why}")));
    }
    let mut result = super::verdict(LIVE, &call.label(), outcome);
    result.evidence = evidence;
    result
}

/// A request that must have been refused at the transport (mTLS) layer.
pub fn judge_refused(what: &str, observation: &Observation) -> Verdict {
    match &observation.outcome {
        Outcome::ConnectFailed(e) => Err(format!(
            "{what}: could not even connect ({e}): the probe proves nothing"
        )),
        Outcome::TlsRejected { .. } | Outcome::Reset | Outcome::NoResponse => Ok((
            format!("{what}: refused ({})", observation.outcome),
            vec![("outcome".into(), observation.outcome.to_string())],
        )),
        other => Err(format!(
            "{what}: ACCEPTED by the sidecar ({other}); it must be refused at the TLS layer"
        )),
    }
}

/// The positive control: a valid SVID completes the handshake (whatever RBAC then decides).
pub fn judge_handshake(what: &str, observation: &Observation) -> Verdict {
    match &observation.outcome {
        Outcome::Http { status, .. } => Ok((
            format!("{what}: handshake completed (HTTP {status})"),
            Vec::new(),
        )),
        other => Err(format!(
            "{what}: a valid SVID was refused ({other}); refusals of bad ones prove nothing"
        )),
    }
}

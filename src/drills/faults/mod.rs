//! Each drill's fault and the recovery steps that act on it, one file per drill.
//!
//! # Contract
//!
//! [`inject`] applies the drill's fault to its lab and records what it did as steps of the
//! inject phase; it returns once the fault is in place (e.g. every sidecar serves the faulty
//! certificate), or an error when it could not be applied. [`recover`] runs one recovery step
//! and returns what it did, or why it did not work; a step that does not work is recorded and
//! the drill goes on (the missing recovery then shows in the measurements). Neither ever undoes
//! anything: the undo is [`super::env::DrillEnv::restore`]'s alone, so it works the same after
//! success, failure or an interruption.

mod admission;
mod emergency_override;
mod expired_intermediate;
mod plaintext;
mod policy_drift;
mod rotation;
mod spire_agent;
mod spire_server;

use std::sync::Arc;

use super::engine::Recorder;
use super::env::DrillEnv;
use super::report::DrillReport;
use super::schema::{Drill, FaultKind, StepKind, StepSpec};

pub use admission::failure_mode;

/// Applies the drill's fault.
pub async fn inject(drill: &Drill, env: &Arc<DrillEnv>, rec: &Recorder) -> Result<(), String> {
    match &drill.fault.kind {
        FaultKind::ExpiredIntermediate => expired_intermediate::inject(env, rec).await,
        FaultKind::RotateIntermediate { pause, validity } => {
            rotation::inject(drill, env, rec, *pause, *validity).await
        }
        FaultKind::SpireServerOutage => spire_server::inject(env, rec).await,
        FaultKind::SpireAgentOutage { service } => spire_agent::inject(env, rec, service).await,
        FaultKind::PolicyDrift { policies, .. } => policy_drift::inject(env, rec, policies).await,
        FaultKind::EmergencyOverride {
            policies,
            expires_after,
            ..
        } => emergency_override::inject(env, rec, policies, *expires_after).await,
        FaultKind::PlaintextClient { to, path, every } => {
            plaintext::inject(env, rec, to, path, *every).await
        }
        FaultKind::AdmissionUnavailable { .. } => admission::inject(env, rec).await,
    }
}

/// Runs one recovery step.
pub async fn recover(
    drill: &Drill,
    env: &Arc<DrillEnv>,
    step: &StepSpec,
) -> Result<String, String> {
    match &step.kind {
        StepKind::NewIntermediate { validity } => {
            expired_intermediate::new_intermediate(drill, env, *validity)
        }
        StepKind::UpdateCaSecret => expired_intermediate::update_ca_secret(env),
        StepKind::ReloadControlPlane => expired_intermediate::reload_control_plane(env),
        StepKind::ReissueWorkloads => expired_intermediate::reissue_workloads(env).await,
        StepKind::Validate => expired_intermediate::validate(env).await,
        StepKind::RevertPolicy => policy_drift::revert(env).await,
        StepKind::RestartSpireServer => spire_server::restart(env).await,
        StepKind::RestartSpireAgent => match &drill.fault.kind {
            FaultKind::SpireAgentOutage { service } => spire_agent::restart(env, service).await,
            _ => Err("no agent outage to recover from".into()),
        },
        StepKind::StopFault => plaintext::stop(env),
        StepKind::RestartAdmission => admission::restart(env).await,
    }
}

/// Findings only this kind of drill can state (added to the generic ones).
pub fn findings(drill: &Drill, report: &DrillReport) -> Vec<String> {
    match &drill.fault.kind {
        FaultKind::EmergencyOverride { .. } => emergency_override::findings(report),
        _ => Vec::new(),
    }
}

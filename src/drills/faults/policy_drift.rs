//! Drill: allow-all policy drift (TradePulse runbook: "ensure new policies do not widen access
//! unexpectedly"). Extra Istio objects — typically an AuthorizationPolicy with `rules: [{}]` —
//! are pushed to the sidecars they select, the way istiod would push them; a request the profile
//! denies is then served, which the drill reports as widened access. Recovery: revert the drift
//! (the runbook's "Compare recent mesh configuration commits" → revert), i.e. push the configured
//! policies again.

use std::sync::Arc;

use super::super::engine::Recorder;
use super::super::env::DrillEnv;
use crate::policy::istio::MeshPolicies;

/// Pushes the configured policies plus `extra`.
pub async fn apply(env: &DrillEnv, extra: &MeshPolicies) -> Result<String, String> {
    let m = env.mesh()?;
    let mut next = m
        .policies
        .lock()
        .map_err(|_| "policy state poisoned")?
        .clone();
    next.authorization_policies
        .extend(extra.authorization_policies.iter().cloned());
    next.peer_authentications
        .extend(extra.peer_authentications.iter().cloned());
    let objects: Vec<String> = extra
        .authorization_policies
        .iter()
        .map(|p| format!("{} ({})", p.meta.display_name(), p.action))
        .chain(
            extra
                .peer_authentications
                .iter()
                .map(|p| format!("{} ({})", p.meta.display_name(), p.mode)),
        )
        .collect();
    let pushed = env.push_policies(&next).await?;
    if pushed.is_empty() {
        return Err(format!(
            "{} changes no sidecar's policy",
            objects.join(", ")
        ));
    }
    Ok(format!(
        "{} pushed to {}",
        objects.join(", "),
        pushed.join(", ")
    ))
}

pub async fn inject(
    env: &Arc<DrillEnv>,
    rec: &Recorder,
    extra: &MeshPolicies,
) -> Result<(), String> {
    rec.step("apply the drifted policy", None, apply(env, extra))
        .await?;
    Ok(())
}

/// Pushes the configured policies again.
pub async fn revert(env: &DrillEnv) -> Result<String, String> {
    let m = env.mesh()?;
    let pushed = env.push_policies(&m.original_policies).await?;
    Ok(if pushed.is_empty() {
        "nothing to revert: every sidecar already enforces the configured policy".into()
    } else {
        format!("configured policy pushed again to {}", pushed.join(", "))
    })
}

//! Drill: emergency access override (TradePulse runbook, "Troubleshooting and Incident
//! Response": "Mitigate – Temporarily grant scoped emergency access via short-lived
//! AuthorizationPolicy overrides", then "Recover – Revert overrides"). The grant is pushed, must
//! take effect (time to detect = time until the data plane serves it), must stay within its
//! scope (every other denied probe stays denied), and must be reverted when it expires (time to
//! recover counts from the expiry). Access still granted after that is lingering access, a
//! finding of its own.

use std::sync::Arc;
use std::time::Duration;

use super::super::engine::Recorder;
use super::super::env::DrillEnv;
use super::super::report::DrillReport;
use super::policy_drift::apply;
use crate::policy::istio::MeshPolicies;

pub async fn inject(
    env: &Arc<DrillEnv>,
    rec: &Recorder,
    grant: &MeshPolicies,
    expires_after: Duration,
) -> Result<(), String> {
    rec.step(
        "grant scoped emergency access",
        Some("4. Mitigate – short-lived AuthorizationPolicy override"),
        async {
            let detail = apply(env, grant).await?;
            env.fact(
                "override_expires_after",
                crate::duration::format(expires_after),
            );
            Ok(format!("{detail}; expires after {expires_after:?}"))
        },
    )
    .await?;
    Ok(())
}

/// Lingering access: the grant still served once recovery should have revoked it.
pub fn findings(report: &DrillReport) -> Vec<String> {
    let Some(recovery) = report.recovery_started_ms else {
        return Vec::new();
    };
    let bound = report.bounds.max_time_to_recover_ms.unwrap_or(0);
    let mut out = Vec::new();
    for w in &report.widened_access {
        if w.last_seen_ms > recovery + bound {
            out.push(format!(
                "lingering access: {} was still served {:.1} s after the override expired (revert bound {:.1} s)",
                w.request,
                (w.last_seen_ms - recovery) as f64 / 1e3,
                bound as f64 / 1e3
            ));
        }
    }
    out
}

//! Drill: SPIRE agent outage past SVID expiry (SomaAgentHub, section 3), and the
//! health-passes-while-broken trap. The agent serving one workload is killed; that workload's
//! sidecar keeps the SVID it holds and keeps answering `/ready`, and `spire-server healthcheck`
//! keeps passing — until the SVID expires and every handshake with the workload fails. Only a
//! check that exercises the identity sees it. Recovery: start the agent again (with an expired
//! agent SVID, join-token attestation needs a fresh token for the same node alias); the sidecar
//! re-opens its SDS stream and receives a new SVID.

use std::sync::Arc;

use time::OffsetDateTime;

use super::super::engine::Recorder;
use super::super::env::DrillEnv;

pub async fn inject(env: &Arc<DrillEnv>, rec: &Recorder, service: &str) -> Result<(), String> {
    let s = env.spire()?;
    let agent = s
        .lab
        .read()
        .await
        .workload(service)
        .map(|w| w.caller.agent)
        .ok_or_else(|| format!("SPIRE registers no workload for {service}"))?;
    let held = match env.mesh() {
        Ok(m) => m
            .mesh
            .read()
            .await
            .caller(service)
            .map(|w| (w.sidecar.admin(), w.identity.spiffe_id.to_string())),
        Err(_) => None,
    };
    if let Some((admin, id)) = held {
        let now = OffsetDateTime::now_utc();
        if let Ok(leaves) = admin.served_leaves().await {
            if let Some(t) = leaves
                .iter()
                .filter(|l| l.uri_sans.contains(&id))
                .filter_map(|l| l.expiration_time.as_deref())
                .filter_map(|t| {
                    OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
                })
                .max()
            {
                env.fact(
                    "svid_expiry",
                    format!("{service}'s sidecar holds an SVID valid until {} (+{:.1}s after injection)", crate::checks::rfc3339(t), (t - now).as_seconds_f64()),
                );
            }
        }
    }
    let before = s
        .lab
        .read()
        .await
        .agent_spiffe_id(agent)
        .unwrap_or_default();
    env.fact("agent_before", before);
    rec.step(
        &format!("kill spire-agent {agent} (serves {service})"),
        None,
        async {
            s.lab
                .write()
                .await
                .stop_agent(agent)
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!(
                "spire-agent {agent} killed; {service}'s sidecar keeps its last SVID"
            ))
        },
    )
    .await?;
    // Past expiry means the agent's own SVID too: held until it has run out, the restart is a
    // re-attestation with a fresh join token, as on a node that was down that long.
    let lab = s.lab.read().await;
    let own = lab.agent_spiffe_id(agent).unwrap_or_default();
    let expires = lab
        .agents()
        .await
        .ok()
        .and_then(|agents| agents.into_iter().find(|a| a.spiffe_id == own))
        .and_then(|a| a.x509svid_expires_at);
    if let Some(expires) = expires {
        let left = (expires - OffsetDateTime::now_utc()).max(time::Duration::ZERO);
        let left = std::time::Duration::try_from(left).unwrap_or_default();
        env.hold_fault_until(std::time::Instant::now() + left + HOLD_PAST_AGENT_EXPIRY);
        env.fact(
            "agent_svid_expiry",
            format!(
                "spire-agent {agent}'s own SVID ran out at {} (+{:.1}s after injection); the outage is held past it",
                crate::checks::rfc3339(expires),
                left.as_secs_f64()
            ),
        );
    }
    Ok(())
}

/// How long past the agent's own SVID expiry the outage lasts.
const HOLD_PAST_AGENT_EXPIRY: std::time::Duration = std::time::Duration::from_secs(1);

pub async fn restart(env: &DrillEnv, service: &str) -> Result<String, String> {
    let s = env.spire()?;
    let mut lab = s.lab.write().await;
    let agent = lab
        .workload(service)
        .map(|w| w.caller.agent)
        .ok_or_else(|| format!("SPIRE registers no workload for {service}"))?;
    let before = lab.agent_spiffe_id(agent).unwrap_or_default();
    let took = lab.start_agent(agent).await.map_err(|e| e.to_string())?;
    let after = lab.agent_spiffe_id(agent).unwrap_or_default();
    let how = if after == before {
        "resumed on its cached SVID".to_owned()
    } else {
        "re-attested with a fresh join token (its own SVID had expired)".to_owned()
    };
    env.fact("agent_after", after);
    Ok(format!(
        "spire-agent {agent} {how}; healthy after {:.1} s",
        took.as_secs_f64()
    ))
}

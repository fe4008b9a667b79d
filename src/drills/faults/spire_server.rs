//! Drill: SPIRE server outage (SomaAgentHub, section 3). `spire-server` is killed. Agents keep
//! serving the SVIDs they hold, so workloads keep talking until those expire; nothing new can
//! be registered meanwhile (a new workload cannot get an identity). Recovery: start the server
//! again (the `disk` key manager and sqlite datastore keep its CA and entries).

use std::sync::Arc;

use time::OffsetDateTime;

use super::super::engine::Recorder;
use super::super::env::DrillEnv;

pub async fn inject(env: &Arc<DrillEnv>, rec: &Recorder) -> Result<(), String> {
    let s = env.spire()?;
    // How long the identities in use outlive the injection: the outage must stay shorter for
    // "existing SVIDs keep working" to hold.
    let now = OffsetDateTime::now_utc();
    let mut remaining = std::collections::BTreeSet::new();
    if let Ok(m) = env.mesh() {
        let mesh = m.mesh.read().await;
        for w in mesh.workloads.values() {
            let id = w.identity.spiffe_id.to_string();
            if let Ok(leaves) = w.sidecar.admin().served_leaves().await {
                for leaf in leaves.iter().filter(|l| l.uri_sans.contains(&id)) {
                    let until = leaf.expiration_time.as_deref().and_then(|t| {
                        OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                            .ok()
                    });
                    if let Some(t) = until {
                        remaining.insert(format!(
                            "{} until +{:.1}s",
                            w.identity.label(),
                            (t - now).as_seconds_f64()
                        ));
                    }
                }
            }
        }
    }
    if !remaining.is_empty() {
        env.fact(
            "svids_at_injection",
            remaining.into_iter().collect::<Vec<_>>().join(", "),
        );
    }
    rec.step("kill spire-server", None, async {
        s.lab
            .write()
            .await
            .stop_server()
            .await
            .map_err(|e| e.to_string())?;
        Ok("spire-server killed (SIGKILL) and reaped; agents keep their cached SVIDs".into())
    })
    .await?;
    Ok(())
}

pub async fn restart(env: &DrillEnv) -> Result<String, String> {
    let s = env.spire()?;
    let took = s
        .lab
        .write()
        .await
        .start_server()
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "spire-server restarted on its datastore and keys; healthcheck passed after {:.1} s",
        took.as_secs_f64()
    ))
}

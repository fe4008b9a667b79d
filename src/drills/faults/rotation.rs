//! Drill: a planned rotation of the mesh intermediate with overlap (TradePulse runbook,
//! "Rotating Mesh Certificates"). A new intermediate from the same corporate root is prepared,
//! written to the plug-in CA secret and loaded by the control plane while the old one is still
//! valid; workloads are then re-issued one at a time, `pause` apart, so the probes cross the mixed
//! state (some sidecars on the old intermediate, some on the new) that the overlap exists for.
//! The trust bundle (the root) holds for both, so not one request may fail.

use std::sync::Arc;
use std::time::Duration;

use super::super::engine::Recorder;
use super::super::env::{DrillEnv, SERVE_TIMEOUT, Signer};
use super::super::schema::Drill;
use super::expired_intermediate::{
    new_intermediate, reissue_one, reload_control_plane, update_ca_secret,
};

pub async fn inject(
    drill: &Drill,
    env: &Arc<DrillEnv>,
    rec: &Recorder,
    pause: Duration,
    validity: Option<Duration>,
) -> Result<(), String> {
    let m = env.mesh()?;
    let old = m.control_plane()?.original.clone();
    rec.step(
        "prepare new intermediate",
        Some("2. Prepare new intermediate"),
        async { new_intermediate(drill, env, validity) },
    )
    .await?;
    rec.step(
        "update istio-ca-secret",
        Some("3. Update Istio secret"),
        async { update_ca_secret(env) },
    )
    .await?;
    rec.step(
        "restart control plane",
        Some("4. Restart control plane"),
        async { reload_control_plane(env) },
    )
    .await?;
    let signer = m.control_plane()?.signer.clone();
    let Signer::Valid(new) = &signer else {
        return Err("the control plane did not load the new intermediate".into());
    };
    let overlap_from = new.intermediate().not_before();
    let overlap_to = old.intermediate().not_after();
    env.fact(
        "overlap",
        format!(
            "old intermediate {} valid until {}, new intermediate {} from {}: both valid for {:.1} days",
            old.intermediate().serial_hex(),
            crate::checks::rfc3339(overlap_to),
            new.intermediate().serial_hex(),
            crate::checks::rfc3339(overlap_from),
            (overlap_to - overlap_from).as_seconds_f64() / 86_400.0
        ),
    );
    env.fact(
        "trust_bundle",
        format!(
            "root {} ({}): both intermediates chain to it, so every sidecar's bundle accepts both during the overlap",
            old.root().serial_hex(),
            if new.shares_root_with(&old) { "shared" } else { "NOT shared" }
        ),
    );
    rec.step(
        "force workload refresh, one workload at a time",
        Some("5. Force workload refresh"),
        async {
            let labels: Vec<String> = m.mesh.read().await.workloads.keys().cloned().collect();
            let mut mixed = 0;
            for (i, label) in labels.iter().enumerate() {
                let mesh = m.mesh.read().await;
                let serial = reissue_one(&mesh, &signer, label)?;
                mesh.wait_serving(&[(label.clone(), serial)], SERVE_TIMEOUT)
                    .await
                    .map_err(|e| e.to_string())?;
                drop(mesh);
                if i + 1 < labels.len() {
                    mixed += 1;
                    // The pause is the observation window of a mixed mesh, not a wait for a
                    // condition: probes run across it.
                    tokio::time::sleep(pause).await;
                }
            }
            env.fact(
                "mixed_states",
                format!("{mixed} states with workloads on both intermediates, {pause:?} each"),
            );
            Ok(format!(
                "{} workloads moved to intermediate {}, {pause:?} apart",
                labels.len(),
                signer.serial()
            ))
        },
    )
    .await?;
    Ok(())
}

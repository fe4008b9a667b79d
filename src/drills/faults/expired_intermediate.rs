//! Drill: the mesh intermediate has expired (istio-ca). Every workload's chain ends in an expired
//! intermediate, so sidecars refuse each other's handshakes. Recovery is the TradePulse
//! runbook's rotation procedure, step by step: prepare a new intermediate → update the plug-in
//! CA secret → reload the control plane → re-issue every workload → validate what each sidecar
//! serves (`istioctl proxy-config secret`). The steps also serve the rotation drill.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use super::super::engine::Recorder;
use super::super::env::{DrillEnv, SERVE_TIMEOUT, Signer};
use super::super::schema::Drill;
use crate::pki::Chaos;
use crate::target::lab::sidecar::Credentials;

pub async fn inject(env: &Arc<DrillEnv>, rec: &Recorder) -> Result<(), String> {
    rec.step("the mesh intermediate expires", None, async {
        let m = env.mesh()?;
        let mesh = m.mesh.read().await;
        let first = mesh
            .workloads
            .values()
            .next()
            .ok_or("the mesh has no workload")?;
        let mut cp = m.control_plane()?;
        let pki = match &cp.signer {
            Signer::Valid(pki) | Signer::Expired { pki, .. } => pki.clone(),
        };
        // The lab PKI issues an expired intermediate only inside a chain (it never hands out its
        // key), so the secret gets the expired certificate and keeps its key file.
        let chaos = pki
            .issue_chaos(
                Chaos::ExpiredIntermediate,
                &first.identity.spiffe_id.to_string(),
                OffsetDateTime::now_utc(),
            )
            .map_err(|e| e.to_string())?;
        let expired = chaos.intermediate();
        let chain = format!("{}{}", expired.pem(), pki.root().pem());
        for (file, text) in [
            ("ca-cert.pem", expired.pem()),
            ("cert-chain.pem", chain.as_str()),
        ] {
            std::fs::write(cp.secret.join(file), text)
                .map_err(|e| format!("writing {file}: {e}"))?;
        }
        let serial = expired.serial_hex().to_owned();
        cp.signer = Signer::Expired {
            pki,
            intermediate_serial: serial.clone(),
        };
        env.fact(
            "expired_intermediate",
            format!(
                "serial {serial}, notAfter {} (one day before injection)",
                crate::checks::rfc3339(expired.not_after())
            ),
        );
        Ok(format!(
            "the control plane signs with intermediate {serial}, expired {}",
            crate::checks::rfc3339(expired.not_after())
        ))
    })
    .await?;
    rec.step(
        "workloads receive chains to the expired intermediate",
        None,
        reissue_workloads(env),
    )
    .await?;
    Ok(())
}

/// Runbook 2, "Prepare new intermediate": from the corporate root, valid `validity` (default: the
/// profile's intermediate validity).
pub fn new_intermediate(
    drill: &Drill,
    env: &DrillEnv,
    validity: Option<Duration>,
) -> Result<String, String> {
    let m = env.mesh()?;
    let mut cp = m.control_plane()?;
    let validity = validity.unwrap_or(drill.profile.ca.intermediate_validity);
    let next = cp
        .original
        .new_intermediate(validity, OffsetDateTime::now_utc())
        .map_err(|e| e.to_string())?;
    let detail = format!(
        "intermediate {} valid {} – {} ({}), same root {}",
        next.intermediate().serial_hex(),
        crate::checks::rfc3339(next.intermediate().not_before()),
        crate::checks::rfc3339(next.intermediate().not_after()),
        crate::duration::format(validity),
        next.root().serial_hex()
    );
    cp.prepared = Some(next);
    Ok(detail)
}

/// Runbook 3, "Update Istio secret": the plug-in CA files get the prepared intermediate and key.
pub fn update_ca_secret(env: &DrillEnv) -> Result<String, String> {
    let m = env.mesh()?;
    let cp = m.control_plane()?;
    let prepared = cp
        .prepared
        .as_ref()
        .ok_or("no prepared intermediate to put in the secret")?;
    let files = prepared
        .write_plugin_ca(&cp.secret)
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "{} now holds intermediate {} (key 0600)",
        files
            .ca_cert
            .parent()
            .map_or_else(String::new, |p| p.display().to_string()),
        prepared.intermediate().serial_hex()
    ))
}

/// Runbook 4, "Restart control plane": it signs with whatever the secret holds from now on.
pub fn reload_control_plane(env: &DrillEnv) -> Result<String, String> {
    let m = env.mesh()?;
    let mut cp = m.control_plane()?;
    let held = std::fs::read_to_string(cp.secret.join("ca-cert.pem"))
        .map_err(|e| format!("reading the secret: {e}"))?;
    let held = held.trim();
    if let Some(prepared) = cp
        .prepared
        .clone()
        .filter(|p| p.intermediate().pem().trim() == held)
    {
        let serial = prepared.intermediate().serial_hex().to_owned();
        cp.signer = Signer::Valid(prepared);
        cp.prepared = None;
        return Ok(format!(
            "the control plane loaded intermediate {serial} from the secret"
        ));
    }
    if cp.original.intermediate().pem().trim() == held {
        let original = cp.original.clone();
        cp.signer = Signer::Valid(original);
        return Ok("the control plane loaded the original intermediate from the secret".into());
    }
    Err(format!(
        "the secret still holds intermediate {}: the control plane keeps signing with it",
        cp.signer.serial()
    ))
}

/// Runbook 5, "Force workload refresh": every workload gets a certificate from the signer, and
/// each sidecar is seen serving it.
pub async fn reissue_workloads(env: &DrillEnv) -> Result<String, String> {
    let m = env.mesh()?;
    let signer = m.control_plane()?.signer.clone();
    let mesh = m.mesh.read().await;
    let labels: Vec<String> = mesh.workloads.keys().cloned().collect();
    let mut serials = Vec::new();
    for label in &labels {
        serials.push((label.clone(), reissue_one(&mesh, &signer, label)?));
    }
    let waited = mesh
        .wait_serving(&serials, SERVE_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "{} workloads re-issued from intermediate {}{}; every sidecar served its new leaf within {:.1} ms",
        labels.len(),
        signer.serial(),
        if matches!(signer, Signer::Expired { .. }) {
            " (expired)"
        } else {
            ""
        },
        waited.as_secs_f64() * 1e3
    ))
}

/// Issues `label` a certificate from `signer` and publishes it; returns the leaf serial.
pub fn reissue_one(
    mesh: &crate::target::lab::mesh::LabMesh,
    signer: &Signer,
    label: &str,
) -> Result<String, String> {
    let now = OffsetDateTime::now_utc();
    match signer {
        Signer::Valid(pki) => mesh
            .reissue(label, pki, now)
            .map(|s| s.serial_hex().to_owned())
            .map_err(|e| e.to_string()),
        Signer::Expired { pki, .. } => {
            let id = mesh
                .workloads
                .get(label)
                .map(|w| w.identity.spiffe_id.to_string())
                .ok_or_else(|| format!("no workload {label}"))?;
            let chaos = pki
                .issue_chaos(Chaos::ExpiredIntermediate, &id, now)
                .map_err(|e| e.to_string())?;
            let credentials = Credentials::new(
                chaos.chain_pem(),
                chaos.key().secret_pem(),
                chaos.root().pem(),
            );
            mesh.push_credentials(label, &credentials)
                .map_err(|e| e.to_string())?;
            Ok(chaos.leaf().serial_hex().to_owned())
        }
    }
}

/// Runbook 6, "Validate – istioctl proxy-config secret": every sidecar serves the leaf it was
/// given, and that leaf's chain goes through the intermediate the control plane signs with.
pub async fn validate(env: &DrillEnv) -> Result<String, String> {
    let m = env.mesh()?;
    let signer = m.control_plane()?.signer.clone();
    if let Signer::Expired {
        intermediate_serial,
        ..
    } = &signer
    {
        return Err(format!(
            "the control plane still signs with the expired intermediate {intermediate_serial}"
        ));
    }
    let want = signer.serial();
    let deadline = tokio::time::Instant::now() + SERVE_TIMEOUT;
    loop {
        let state = m
            .mesh
            .read()
            .await
            .state()
            .await
            .map_err(|e| e.to_string())?;
        let stale: Vec<String> = state
            .values()
            .filter(|w| {
                w.intermediate_serial.as_deref() != Some(want.as_str())
                    || w.serving_serial.is_none()
            })
            .map(|w| {
                format!(
                    "{} (intermediate {})",
                    w.label,
                    w.intermediate_serial.as_deref().unwrap_or("?")
                )
            })
            .collect();
        if stale.is_empty() {
            let until = state
                .values()
                .find_map(|w| w.intermediate_not_after.clone())
                .unwrap_or_default();
            return Ok(format!(
                "{} sidecars serve leaves of intermediate {want} (valid until {until})",
                state.len()
            ));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "after {SERVE_TIMEOUT:?} still on another intermediate: {}",
                stale.join(", ")
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

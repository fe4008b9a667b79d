//! Steps of the renewal scenario in `features/rotation.feature`: a workload certificate renewed
//! by its certificate source at half-life, observed under traffic and read back from the
//! sidecar's admin `/certs` (the lab's `istioctl proxy-config secret`).
//!
//! Lab-CA profiles: the mesh's renewal task ([`crate::target::lab::renewal`]) renews every SVID
//! half-way through its (scaled) lifetime; the verdict ([`crate::checks::renewal`]) rests on its
//! log and on `/certs`. SPIRE profiles: SPIRE's agent renews on its own schedule; the verdict
//! rests on `/certs` before and after (renewed before expiry, no call failed), and the point in
//! the old SVID's lifetime where the new one was first seen is reported.

use std::time::Duration;

use cucumber::{then, when};

use super::{MeshWorld, harness_error};
use crate::checks;
use crate::checks::renewal as renewal_check;
use crate::intents::ExpectedCall;
use crate::probe::Probe;
use crate::profile::Decision;
use crate::target::lab::mesh::LabMesh;
use crate::target::lab::mesh_spire;
use crate::target::lab::renewal::Renewal;

/// Calls sent before and after the renewal, around those sent while waiting for it.
const CALLS_AROUND: usize = 5;
/// Pause between calls while waiting.
const CALL_EVERY: Duration = Duration::from_millis(100);
/// The longest a scenario waits for a lab-CA renewal.
const MAX_WAIT: Duration = Duration::from_secs(120);

type Verdict = Result<(String, Vec<(String, String)>), String>;

#[when("an allowed caller keeps calling a callee until the callee's certificate is renewed")]
async fn calls_until_renewed(world: &mut MeshWorld) {
    let ctx = world.ctx();
    let profile = world.profile();
    let mesh = world.mesh();
    let Some(call) = crate::intents::matrix(&profile)
        .into_iter()
        .find(|c| c.expected == Decision::Allow)
    else {
        harness_error!("{} allows no call to keep flowing", profile.name);
    };
    let Some(callee) = mesh.caller(&call.to) else {
        harness_error!("no lab workload for {}", call.to)
    };
    let subject = callee.identity.spiffe_id.to_string();
    let verdict = match ctx.lab.renewal(&profile) {
        Some(renewal) => lab_ca_renewal(&mesh, &renewal, &call, ctx.lab.ttl_scale()).await,
        None => spire_renewal(world, &mesh, &call).await,
    };
    world.pending = Some(checks::verdict("rotation.workload", &subject, verdict));
}

#[then("it was renewed on schedule, before it expired, and no call failed")]
fn renewed_in_time(world: &mut MeshWorld) {
    let Some(result) = world.pending.take() else {
        harness_error!("no renewal was observed")
    };
    world.record(result);
}

async fn lab_ca_renewal(
    mesh: &LabMesh,
    renewal: &Renewal,
    call: &ExpectedCall,
    scale: crate::pki::TtlScale,
) -> Verdict {
    let Some(callee) = mesh.caller(&call.to) else {
        harness_error!("no lab workload for {}", call.to)
    };
    // The callee's next renewal is at most half a TTL away (a failed one is retried sooner).
    let bound = renewal.ttl();
    if bound / 2 > MAX_WAIT {
        harness_error!(
            "at TTL scale {scale} the lab TTL is {bound:?}: a renewal at half-life is more than \
             {MAX_WAIT:?} away (set {} to a larger factor)",
            crate::pki::scale::ENV
        );
    }
    let label = callee.identity.label();
    let probe = probe(mesh, call);
    let seen = renewal.records().len();
    let mut traffic = renewal_check::Traffic {
        call: call.label(),
        ..Default::default()
    };
    let mut send = async || {
        let o = probe.send().await;
        traffic.sent += 1;
        if !o.outcome.is_success() {
            traffic.failed.push(o.outcome.to_string());
        }
    };
    for _ in 0..CALLS_AROUND {
        send().await;
    }
    let next = renewal.next_of(&label, seen, bound);
    tokio::pin!(next);
    let record = loop {
        tokio::select! {
            record = &mut next => break record,
            () = tokio::time::sleep(CALL_EVERY) => send().await,
        }
    };
    for _ in 0..CALLS_AROUND {
        send().await;
    }
    let Some(record) = record else {
        return Err(format!(
            "{label}: no renewal within {bound:?} (one lab TTL); renewal failures: {:?}",
            renewal.failures()
        ));
    };
    let served = callee
        .sidecar
        .served_leaf()
        .await
        .unwrap_or_else(|e| harness_error!("{e}"));
    renewal_check::judge_lab_ca(
        &record,
        &renewal.records(),
        &renewal.failures(),
        served.as_ref(),
        &traffic,
        &scale.to_string(),
    )
}

/// SPIRE renews on its own: keep calling until the callee's sidecar serves a new SVID (bounded
/// by twice the lab's SVID TTL), then judge it against the old one's validity from `/certs`.
async fn spire_renewal(world: &MeshWorld, mesh: &LabMesh, call: &ExpectedCall) -> Verdict {
    let ctx = world.ctx();
    let profile = world.profile();
    let Some(callee) = mesh.caller(&call.to) else {
        harness_error!("no lab workload for {}", call.to)
    };
    let spire = ctx
        .lab
        .spire(&profile)
        .await
        .unwrap_or_else(|e| harness_error!("{e}"));
    let ttl = spire.read().await.config().x509_svid_ttl;
    let Some(before) = callee
        .sidecar
        .served_leaf()
        .await
        .unwrap_or_else(|e| harness_error!("{e}"))
    else {
        harness_error!("the sidecar of {} serves no SVID", call.to)
    };
    let started = unix_now();
    let r = mesh_spire::calls_across_renewal(mesh, call, ttl * 2)
        .await
        .unwrap_or_else(|e| harness_error!("{e}"));
    let seen = started + r.waited.as_secs_f64();
    let parse = |t: Option<&str>| t.and_then(crate::report::text::parse_rfc3339);
    let (Some(from), Some(to)) = (
        parse(before.valid_from.as_deref()),
        parse(before.expiration_time.as_deref()),
    ) else {
        harness_error!("admin /certs shows no validity for {}", r.spiffe_id)
    };
    let (from, to) = (from as f64, to as f64);
    // When the new SVID was first seen served, as a share of the old one's validity window
    // (notBefore backdated by SPIRE): reported, not judged — SPIRE's agent renews on its own
    // schedule, observed here only to within its sync interval.
    let fraction = (seen - from) / (to - from).max(1.0);
    match &r.serial_after {
        None => Err(format!(
            "{}: SPIRE did not renew serial {} within {:?}",
            r.spiffe_id,
            r.serial_before,
            ttl * 2
        )),
        Some(_) if !r.failed.is_empty() => Err(format!(
            "{}: renewed, but {} of {} calls failed: {}",
            r.spiffe_id,
            r.failed.len(),
            r.sent,
            r.failed.join("; ")
        )),
        Some(after) if seen >= to => Err(format!(
            "{}: serial {after} was served only after serial {} expired ({})",
            r.spiffe_id,
            r.serial_before,
            before.expiration_time.as_deref().unwrap_or("?")
        )),
        Some(after) => Ok((
            format!(
                "{}: SPIRE renewed serial {} → {after}, served {fraction:.2} into the old SVID's \
                 lifetime, before it expired, without restart; {} calls {}, 0 failed",
                r.spiffe_id,
                r.serial_before,
                r.sent,
                call.label()
            ),
            vec![
                ("spiffe_id".into(), r.spiffe_id.clone()),
                ("serial_before".into(), r.serial_before.clone()),
                ("serial".into(), after.clone()),
                (
                    "not_before".into(),
                    r.not_before.clone().unwrap_or_default(),
                ),
                ("not_after".into(), r.not_after.clone().unwrap_or_default()),
                ("lifetime_fraction".into(), format!("{fraction:.3}")),
                ("picked_up_ms".into(), r.waited.as_millis().to_string()),
                (
                    "source".into(),
                    "envoy admin /certs (SPIRE agent SDS)".into(),
                ),
            ],
        )),
    }
}

fn unix_now() -> f64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as f64 / 1e9
}

fn probe(mesh: &LabMesh, call: &ExpectedCall) -> crate::probe::PreparedProbe {
    let Some(outbound) = mesh
        .caller(&call.from)
        .and_then(|w| w.sidecar.outbound_addr(&call.to))
    else {
        harness_error!("{} has no route to {}", call.from, call.to)
    };
    Probe::via_sidecar(outbound, call.to.clone())
        .method(call.method.clone())
        .path(call.path.clone())
        .prepare()
        .unwrap_or_else(|e| harness_error!("{e}"))
}

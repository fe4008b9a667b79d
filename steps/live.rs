use std::sync::Arc;
use std::time::Duration;

use cucumber::{given, then, when};

use super::{MeshWorld, harness_error};
use crate::checks::{self, intents, live};
use crate::pki::Chaos;
use crate::policy::istio::PolicyIndex;
use crate::probe::{Probe, ProbeIdentity};
use crate::profile::{Decision, IdentityProvider};
use crate::results::{CheckResult, Status};
use crate::target::kube::KubeTarget;
use crate::target::lab::mesh_spire;
use crate::target::{LiveMesh, on_cluster};

/// Why a served call on a cluster carries no peer identity: the rendered probe workloads answer
/// with http-echo, which does not echo the identity its sidecar handed it.
const UNATTRIBUTED: &str =
    "the cluster's probe app (http-echo) does not report the caller identity its sidecar saw";

// "the lab mesh" is the older wording, still accepted for features that name the lab.
#[given(regex = r"^the (?:lab )?mesh is running for it$")]
async fn mesh_running(world: &mut MeshWorld) {
    let ctx = world.ctx();
    let profile = world.profile();
    let configured = world.configured();
    match ctx.live(&profile, &configured).await {
        Ok(live) => {
            if let LiveMesh::Lab(mesh) = &live {
                world.mesh = Some(mesh.clone());
            }
            world.live = Some(live);
        }
        Err(e) => harness_error!("{e}"),
    }
}

#[when(expr = "{string} calls {string} on every endpoint through its sidecar")]
async fn calls_every_endpoint(world: &mut MeshWorld, from: String, to: String) {
    let mesh = world.live();
    let profile = world.profile();
    for call in crate::intents::matrix(&profile)
        .into_iter()
        .filter(|c| c.from == from && c.to == to)
    {
        match mesh.call(&profile, &call).await {
            Ok(observation) if observation.outcome.attempted() => {
                world.observations.push((call, observation))
            }
            Ok(observation) => harness_error!(
                "{}: the probe could not be sent: {}",
                call.label(),
                observation.outcome
            ),
            Err(e) => harness_error!("{}: {e}", call.label()),
        }
    }
    if world.observations.is_empty() {
        harness_error!("the intent matrix has no request from {from} to {to}");
    }
}

#[then("every call was decided as the profile promises, and as the manifests predict")]
fn decided_as_promised(world: &mut MeshWorld) {
    let configured = world.configured();
    let attributed = matches!(world.live(), LiveMesh::Lab(_));
    let policies = PolicyIndex::new(&configured.policies);
    let mut failures = Vec::new();
    for (call, observation) in std::mem::take(&mut world.observations) {
        let decision = intents::predict(&policies, &call);
        let predicted = if decision.allowed {
            Decision::Allow
        } else {
            Decision::Deny
        };
        let decided_by = intents::decided_by(&decision);
        let result = if attributed {
            live::judge_call(&call, predicted, &decided_by, &observation)
        } else {
            live::judge_call_unattributed(&call, predicted, &decided_by, &observation, UNATTRIBUTED)
        };
        if result.status == Status::Failed {
            failures.push(result.summary.clone());
        }
        world.checks.push(result);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[then(
    expr = "{string} refuses plaintext, no client certificate, a foreign CA, an expired certificate and a foreign trust domain"
)]
async fn refuses_bad_peers(world: &mut MeshWorld, service: String) {
    if let LiveMesh::Kube(kube) = world.live() {
        return refuses_bad_peers_on_cluster(world, &kube, service).await;
    }
    let ctx = world.ctx();
    let profile = world.profile();
    let mesh = world.mesh();
    let pki = ctx
        .lab
        .pki(&profile)
        .unwrap_or_else(|e| harness_error!("{e}"));
    // Any other workload's identity serves as the caller; the request must die before RBAC.
    let Some(caller) = profile
        .lab_identities()
        .into_iter()
        .find(|i| i.service != service)
    else {
        harness_error!(
            "{} has no other workload to call {service} from",
            profile.name
        );
    };
    let caller_id = caller.spiffe_id.to_string();
    let chaos = |c: Chaos| match pki.pki.issue_chaos(c, &caller_id, ctx.lab.now()) {
        Ok(svid) => ProbeIdentity::from_chaos(&svid),
        Err(e) => harness_error!("{e}"),
    };
    // The positive control must be a real mesh identity: with SPIRE, the caller workload's
    // current SPIRE-issued SVID, and the callee judged against SPIRE's current bundle.
    let (valid, bundle) = if profile.provider == IdentityProvider::Spire {
        let spire = ctx
            .lab
            .spire(&profile)
            .await
            .unwrap_or_else(|e| harness_error!("{e}"));
        let spire = spire.read().await;
        let fetched = mesh_spire::fetch_svid(&spire, &caller.service)
            .await
            .unwrap_or_else(|e| harness_error!("{e}"));
        let bundle = fetched.bundle.clone();
        (fetched.probe_identity(), bundle)
    } else {
        let Some(valid) = pki.svids.get(&caller_id) else {
            harness_error!("no SVID for {caller_id}")
        };
        (ProbeIdentity::from_svid(valid), mesh.bundle.clone())
    };
    let cases: Vec<(String, ProbeIdentity)> = vec![
        ("plaintext".into(), ProbeIdentity::Plaintext),
        ("no client certificate".into(), ProbeIdentity::None),
        (
            format!("{caller_id} from a foreign CA"),
            chaos(Chaos::ForeignRoot),
        ),
        (
            format!("{caller_id} with an expired intermediate"),
            chaos(Chaos::ExpiredIntermediate),
        ),
        (
            format!(
                "{} (foreign trust domain)",
                Chaos::foreign_trust_domain(profile.trust_domain.as_str())
            ),
            chaos(Chaos::WrongTrustDomain),
        ),
    ];
    let mut failures = Vec::new();
    for (what, identity) in cases {
        let observation = mesh_spire::direct(&mesh, &bundle, &service, identity, "/")
            .await
            .unwrap_or_else(|e| harness_error!("{e}"));
        let result = checks::verdict(
            live::REFUSES,
            &format!("{service} ← {what}"),
            live::judge_refused(&what, &observation),
        );
        if result.status == Status::Failed {
            failures.push(result.summary.clone());
        }
        world.checks.push(result);
    }
    let control = mesh_spire::direct(&mesh, &bundle, &service, valid, "/")
        .await
        .unwrap_or_else(|e| harness_error!("{e}"));
    let result = checks::verdict(
        live::REFUSES,
        &format!("{service} ← {caller_id}"),
        live::judge_handshake(&caller_id, &control),
    );
    if result.status == Status::Failed {
        failures.push(result.summary.clone());
    }
    world.checks.push(result);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

async fn refuses_bad_peers_on_cluster(
    world: &mut MeshWorld,
    kube: &Arc<KubeTarget>,
    service: String,
) {
    let ctx = world.ctx();
    let profile = world.profile();
    let now = ctx.now();
    let peers = {
        let (profile, service) = (profile.clone(), service.clone());
        on_cluster(kube, move |k| {
            crate::target::kube::live::bad_peers(k, &profile, &service, now)
        })
        .await
        .unwrap_or_else(|e| harness_error!("{e}"))
    };
    let mut failures = Vec::new();
    let mut record = |world: &mut MeshWorld, result: CheckResult| {
        if result.status == Status::Failed {
            failures.push(result.summary.clone());
        }
        world.checks.push(result);
    };
    for (what, observation) in &peers.sent {
        let result = checks::verdict(
            live::REFUSES,
            &format!("{service} ← {what}"),
            live::judge_refused(what, observation),
        );
        record(world, result);
    }
    // Named in the results, never counted as refused: nothing was sent.
    for (what, why) in &peers.not_produced {
        record(
            world,
            CheckResult {
                check: live::REFUSES.to_owned(),
                subject: format!("{service} ← {what}"),
                status: Status::Skipped,
                summary: format!("{what}: {why}"),
                evidence: Vec::new(),
            },
        );
    }
    let (caller_id, control) = &peers.control;
    let result = checks::verdict(
        live::REFUSES,
        &format!("{service} ← {caller_id}"),
        live::judge_handshake(caller_id, control),
    );
    record(world, result);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[then(expr = "the sidecar of {string} serves the X.509-SVID the CA issued it")]
async fn serves_its_svid(world: &mut MeshWorld, service: String) {
    if let LiveMesh::Kube(kube) = world.live() {
        return serves_its_svid_on_cluster(world, &kube, service).await;
    }
    let ctx = world.ctx();
    let profile = world.profile();
    let mesh = world.mesh();
    let Some(workload) = mesh.caller(&service) else {
        harness_error!("no lab workload for {service}")
    };
    if profile.provider == IdentityProvider::Spire {
        let spire = ctx
            .lab
            .spire(&profile)
            .await
            .unwrap_or_else(|e| harness_error!("{e}"));
        let spire = spire.read().await;
        let seen = mesh_spire::served_svid(&mesh, &spire, &service)
            .await
            .unwrap_or_else(|e| harness_error!("{e}"));
        let c = &seen.served;
        let outcome = match (&seen.chains_to_spire, seen.matches) {
            (Ok(()), true) => Ok((
                format!(
                    "serves {}, serial {}, until {}, issued by SPIRE authority {}",
                    seen.spiffe_id,
                    c.serial_hex,
                    c.expiration_time.as_deref().unwrap_or("?"),
                    seen.authority_id.as_deref().unwrap_or("?")
                ),
                vec![
                    ("spiffe_id".into(), seen.spiffe_id.clone()),
                    ("serial".into(), c.serial_hex.clone()),
                    (
                        "not_before".into(),
                        c.valid_from.clone().unwrap_or_default(),
                    ),
                    (
                        "not_after".into(),
                        c.expiration_time.clone().unwrap_or_default(),
                    ),
                    (
                        "authority_id".into(),
                        seen.authority_id.clone().unwrap_or_default(),
                    ),
                    (
                        "source".into(),
                        "envoy admin /certs; SPIRE Workload API".into(),
                    ),
                ],
            )),
            (_, false) => Err(format!(
                "serves {} with serial {}, but SPIRE issued {}",
                seen.spiffe_id,
                c.serial_hex,
                seen.issued_serials.join(" / ")
            )),
            (Err(e), true) => Err(format!(
                "serves {} serial {}, which does not chain to the SPIRE server's bundle: {e}",
                seen.spiffe_id, c.serial_hex
            )),
        };
        world.record(checks::verdict("identity.served", &service, outcome));
        return;
    }
    let pki = ctx
        .lab
        .pki(&profile)
        .unwrap_or_else(|e| harness_error!("{e}"));
    let id = workload.identity.spiffe_id.to_string();
    let newest_serial = || {
        pki.svids
            .get(&id)
            .map(|svid| crate::target::lab::envoy::normalize_serial(svid.serial_hex()))
    };
    // The renewal task may issue a new SVID while /certs is read: the served one must be the
    // newest issued either just before or just after that read.
    let Some(before) = newest_serial() else {
        harness_error!("no SVID issued to {id}")
    };
    let served = workload
        .sidecar
        .admin()
        .served_leaves()
        .await
        .unwrap_or_else(|e| harness_error!("{e}"));
    let after = newest_serial().unwrap_or_else(|| before.clone());
    let is_issued = |serial: &str| {
        let serial = crate::target::lab::envoy::normalize_serial(serial);
        serial == before || serial == after
    };
    let outcome = match served.iter().find(|c| c.uri_sans.iter().any(|u| u == &id)) {
        Some(c) if is_issued(&c.serial_hex) => Ok((
            format!(
                "serves {id}, serial {}, until {}",
                c.serial_hex,
                c.expiration_time.as_deref().unwrap_or("?")
            ),
            vec![
                ("spiffe_id".into(), id.clone()),
                ("serial".into(), c.serial_hex.clone()),
                (
                    "not_before".into(),
                    c.valid_from.clone().unwrap_or_default(),
                ),
                (
                    "not_after".into(),
                    c.expiration_time.clone().unwrap_or_default(),
                ),
                ("source".into(), "envoy admin /certs".into()),
            ],
        )),
        Some(c) => Err(format!(
            "serves {id} with serial {}, but the CA issued {after}",
            c.serial_hex
        )),
        None => Err(format!(
            "serves no certificate for {id} (admin /certs shows {:?})",
            served.iter().map(|c| &c.uri_sans).collect::<Vec<_>>()
        )),
    };
    world.record(checks::verdict("identity.served", &service, outcome));
}

/// On a cluster the harness did not issue the sidecar's certificate (istiod or SPIRE did): the
/// served chain must name the service's identity and chain to the mesh's trust bundle.
async fn serves_its_svid_on_cluster(
    world: &mut MeshWorld,
    kube: &Arc<KubeTarget>,
    service: String,
) {
    let ctx = world.ctx();
    let profile = world.profile();
    let Some(identity) = crate::target::kube::target::deployed_identities(&profile)
        .into_iter()
        .find(|i| i.service == service)
    else {
        harness_error!("{} deploys no workload for {service}", profile.name)
    };
    let secrets = {
        let (profile, service) = (profile.clone(), service.clone());
        on_cluster(kube, move |k| k.sidecar_secrets(&profile, &service))
            .await
            .unwrap_or_else(|e| harness_error!("{e}"))
    };
    let bundle = ctx
        .target()
        .trust_bundle(&profile)
        .unwrap_or_else(|e| harness_error!("{e}"));
    let outcome = crate::checks::identity::svid(
        &secrets.chain,
        &bundle,
        &identity.spiffe_id,
        profile.ca.workload_ttl,
        ctx.now(),
    )
    .map(|(summary, mut evidence)| {
        evidence.push(("source".into(), secrets.source.clone()));
        (format!("{service} serves {summary}"), evidence)
    });
    world.record(checks::verdict("identity.served", &service, outcome));
}

#[when("the lab CA rotates the certificate of a callee while an allowed caller keeps calling it")]
async fn rotate_under_load(world: &mut MeshWorld) {
    let ctx = world.ctx();
    let profile = world.profile();
    let mesh = world.mesh();
    let Some(call) = crate::intents::matrix(&profile)
        .into_iter()
        .find(|c| c.expected == Decision::Allow)
    else {
        harness_error!(
            "{} allows no call to keep flowing during rotation",
            profile.name
        );
    };
    let Some(callee) = mesh.caller(&call.to) else {
        harness_error!("no lab workload for {}", call.to)
    };
    if profile.provider == IdentityProvider::Spire {
        // SPIRE renews on its own (at half of the SVID's lifetime): keep calling until the
        // callee's sidecar serves the renewed SVID, bounded by twice the lab's SVID TTL.
        let bound = {
            let spire = ctx
                .lab
                .spire(&profile)
                .await
                .unwrap_or_else(|e| harness_error!("{e}"));
            let ttl = spire.read().await.config().x509_svid_ttl;
            ttl * 2
        };
        let r = mesh_spire::calls_across_renewal(&mesh, &call, bound)
            .await
            .unwrap_or_else(|e| harness_error!("{e}"));
        let id = r.spiffe_id.clone();
        let outcome = match &r.serial_after {
            Some(after) if r.failed.is_empty() => Ok((
                format!(
                    "{id}: SPIRE renewed serial {} → {after}, served {:.1} s into the calls without restart; {} calls {}, 0 failed",
                    r.serial_before,
                    r.waited.as_secs_f64(),
                    r.sent,
                    call.label()
                ),
                vec![
                    ("spiffe_id".into(), id.clone()),
                    ("serial_before".into(), r.serial_before.clone()),
                    ("serial".into(), after.clone()),
                    (
                        "not_before".into(),
                        r.not_before.clone().unwrap_or_default(),
                    ),
                    ("not_after".into(), r.not_after.clone().unwrap_or_default()),
                    (
                        "picked_up_ms".into(),
                        format!("{:.1}", r.waited.as_secs_f64() * 1e3),
                    ),
                ],
            )),
            Some(_) => Err(format!(
                "{id}: renewed, but {} of {} calls failed during renewal: {}",
                r.failed.len(),
                r.sent,
                r.failed.join("; ")
            )),
            None => Err(format!(
                "{id}: SPIRE did not renew serial {} within {bound:?} ({} calls, {} failed)",
                r.serial_before,
                r.sent,
                r.failed.len()
            )),
        };
        world.pending = Some(checks::verdict("rotation.workload", &id, outcome));
        return;
    }
    let pki = ctx
        .lab
        .pki(&profile)
        .unwrap_or_else(|e| harness_error!("{e}"));
    let id = callee.identity.spiffe_id.to_string();
    let before = pki
        .svids
        .get(&id)
        .map(|s| s.serial_hex().to_owned())
        .unwrap_or_default();
    let fresh = pki
        .pki
        .issue_workload_svid(&id, ctx.lab.now())
        .unwrap_or_else(|e| harness_error!("{e}"));
    let caller = mesh
        .caller(&call.from)
        .and_then(|w| w.sidecar.outbound_addr(&call.to));
    let Some(outbound) = caller else {
        harness_error!("{} has no route to {}", call.from, call.to)
    };
    let probe = Probe::via_sidecar(outbound, call.to.clone())
        .method(call.method.clone())
        .path(call.path.clone());
    let prepared = probe.prepare().unwrap_or_else(|e| harness_error!("{e}"));
    // Probes run before, during and after the swap; the sidecar must never drop a request.
    let mut sent = 0;
    let mut failed = Vec::new();
    let observe = async |sent: &mut usize, failed: &mut Vec<String>| {
        let o = prepared.send().await;
        *sent += 1;
        if !o.outcome.is_success() {
            failed.push(o.outcome.to_string());
        }
    };
    for _ in 0..5 {
        observe(&mut sent, &mut failed).await;
    }
    callee
        .sidecar
        .rotate(&crate::target::lab::sidecar::Credentials::from_svid(&fresh))
        .unwrap_or_else(|e| harness_error!("{e}"));
    let picked_up = callee
        .sidecar
        .wait_for_serial(fresh.serial_hex(), Duration::from_secs(10))
        .await;
    for _ in 0..5 {
        observe(&mut sent, &mut failed).await;
    }
    let outcome = match picked_up {
        Ok(after) if failed.is_empty() => Ok((
            format!(
                "{id}: serial {before} → {} picked up in {:.1} ms without restart; {sent} calls {}, 0 failed",
                fresh.serial_hex(),
                after.as_secs_f64() * 1e3,
                call.label()
            ),
            vec![
                ("spiffe_id".into(), id.clone()),
                ("serial_before".into(), before.clone()),
                ("serial".into(), fresh.serial_hex().to_owned()),
                ("not_before".into(), checks::rfc3339(fresh.not_before())),
                ("not_after".into(), checks::rfc3339(fresh.not_after())),
                (
                    "picked_up_ms".into(),
                    format!("{:.1}", after.as_secs_f64() * 1e3),
                ),
            ],
        )),
        Ok(_) => Err(format!(
            "{id}: rotated, but {} of {sent} calls failed during rotation: {}",
            failed.len(),
            failed.join("; ")
        )),
        Err(e) => Err(format!("{id}: the new certificate was not served: {e}")),
    };
    world.pending = Some(checks::verdict("rotation.workload", &id, outcome));
}

#[then("the sidecar serves the new certificate and no call failed")]
fn rotation_held(world: &mut MeshWorld) {
    let Some(result) = world.pending.take() else {
        harness_error!("no rotation was performed")
    };
    world.record(result);
}

#[then("the callees' Envoy RBAC counters account for every allowed and denied call")]
async fn rbac_counters(world: &mut MeshWorld) {
    if let LiveMesh::Kube(kube) = world.live() {
        return request_counters_on_cluster(world, &kube).await;
    }
    let profile = world.profile();
    let mesh = world.mesh();
    let mut failures = Vec::new();
    for callee in profile
        .services
        .iter()
        .filter(|s| s.role != crate::profile::Role::Ingress)
    {
        let Some(workload) = mesh.caller(&callee.name) else {
            continue;
        };
        let before = workload
            .sidecar
            .admin()
            .rbac(None)
            .await
            .unwrap_or_else(|e| harness_error!("{e}"));
        let calls: Vec<_> = crate::intents::matrix(&profile)
            .into_iter()
            .filter(|c| c.to == callee.name)
            .collect();
        let (mut allowed, mut denied) = (0u64, 0u64);
        for call in &calls {
            let o = mesh
                .call(call)
                .await
                .unwrap_or_else(|e| harness_error!("{e}"));
            match live::observed_decision(&o) {
                Some(Decision::Allow) => allowed += 1,
                Some(Decision::Deny) => denied += 1,
                None => {}
            }
        }
        let after = workload
            .sidecar
            .admin()
            .rbac(None)
            .await
            .unwrap_or_else(|e| harness_error!("{e}"));
        // Other scenarios may call concurrently, so counters grow by at least our own calls.
        let (da, dd) = (
            after.allowed.saturating_sub(before.allowed),
            after.denied.saturating_sub(before.denied),
        );
        let outcome = if denied > 0 && dd < denied {
            Err(format!(
                "{}: {denied} calls were refused but rbac.denied grew by {dd}",
                callee.name
            ))
        } else if allowed > 0 && da < allowed && after.allowed == 0 {
            Err(format!(
                "{}: {allowed} calls were served but rbac.allowed is 0",
                callee.name
            ))
        } else {
            Ok((
                format!(
                    "{}: envoy_http_rbac_denied +{dd} (≥ {denied} refused), allowed +{da}",
                    callee.name
                ),
                vec![
                    ("rbac_allowed".into(), after.allowed.to_string()),
                    ("rbac_denied".into(), after.denied.to_string()),
                ],
            ))
        };
        let result = checks::verdict("metrics.rbac", &callee.name, outcome);
        if result.status == Status::Failed {
            failures.push(result.summary.clone());
        }
        world.checks.push(result);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// On a cluster Istio exports Envoy's RBAC decisions as `istio_requests_total` with the response
/// code (403 for a denial), as the destination sidecar reports it: the metric the TradePulse
/// runbook alerts on.
async fn request_counters_on_cluster(world: &mut MeshWorld, kube: &Arc<KubeTarget>) {
    use crate::target::kube::live::request_counts;
    let profile = world.profile();
    let mesh = world.live();
    let mut failures = Vec::new();
    for callee in profile
        .services
        .iter()
        .filter(|s| s.role != crate::profile::Role::Ingress)
    {
        let counts = || {
            let (profile, name) = (profile.clone(), callee.name.clone());
            on_cluster(kube, move |k| request_counts(k, &profile, &name))
        };
        let before = counts().await.unwrap_or_else(|e| harness_error!("{e}"));
        let (mut allowed, mut denied) = (0u64, 0u64);
        for call in crate::intents::matrix(&profile)
            .into_iter()
            .filter(|c| c.to == callee.name)
        {
            let o = mesh
                .call(&profile, &call)
                .await
                .unwrap_or_else(|e| harness_error!("{e}"));
            match live::observed_decision(&o) {
                Some(Decision::Allow) => allowed += 1,
                Some(Decision::Deny) => denied += 1,
                None => {}
            }
        }
        let after = counts().await.unwrap_or_else(|e| harness_error!("{e}"));
        // Other scenarios may call concurrently, so counters grow by at least our own calls.
        let (served, refused) = (
            after.served.saturating_sub(before.served),
            after.refused.saturating_sub(before.refused),
        );
        let outcome = if refused < denied {
            Err(format!(
                "{}: {denied} calls were refused but istio_requests_total{{response_code=\"403\"}} grew by {refused}",
                callee.name
            ))
        } else if served < allowed {
            Err(format!(
                "{}: {allowed} calls were served but istio_requests_total (2xx) grew by {served}",
                callee.name
            ))
        } else {
            Ok((
                format!(
                    "{}: istio_requests_total 403 +{refused} (≥ {denied} refused), 2xx +{served} (≥ {allowed} served)",
                    callee.name
                ),
                vec![
                    ("requests_2xx".into(), after.served.to_string()),
                    ("requests_403".into(), after.refused.to_string()),
                ],
            ))
        };
        let result = checks::verdict("metrics.rbac", &callee.name, outcome);
        if result.status == Status::Failed {
            failures.push(result.summary.clone());
        }
        world.checks.push(result);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[then(
    expr = "the sidecar of {string} is ready and serves every listener its configuration defines"
)]
async fn sidecar_ready(world: &mut MeshWorld, service: String) {
    let profile = world.profile();
    let mesh = world.mesh();
    let Some(workload) = mesh.caller(&service) else {
        harness_error!("no lab workload for {service}")
    };
    let admin = workload.sidecar.admin();
    let ready = admin.ready().await;
    let listeners = admin
        .listeners()
        .await
        .unwrap_or_else(|e| harness_error!("{e}"));
    // The inbound listener plus one outbound listener per other service of the profile.
    let expected = 1 + mesh.serving.keys().filter(|s| **s != service).count();
    let outcome = match ready {
        Ok(true) if listeners.len() >= expected => Ok((
            format!(
                "{service}: Envoy {} ready, {} listeners bound (lab: configuration compiled in process by meshproof, standing in for istiod)",
                mesh.envoy_version,
                listeners.len()
            ),
            listeners
                .iter()
                .map(|l| (l.name.clone(), l.addr.to_string()))
                .collect(),
        )),
        Ok(true) => Err(format!(
            "{service}: only {} of {expected} listeners are bound",
            listeners.len()
        )),
        Ok(false) => Err(format!("{service}: the sidecar is not ready")),
        Err(e) => Err(format!("{service}: {e}")),
    };
    world.record(checks::verdict(
        "control-plane.health",
        &format!("{service} ({})", profile.name),
        outcome,
    ));
}

#[then("every control-plane component of its stack reports ready")]
async fn components_ready(world: &mut MeshWorld) {
    let ctx = world.ctx();
    let profile = world.profile();
    let Some(kube) = ctx.kube() else {
        harness_error!(
            "component health is read from a cluster's controllers: the scenario needs @kube"
        )
    };
    let health = {
        let profile = profile.clone();
        on_cluster(kube, move |k| k.health(&profile))
            .await
            .unwrap_or_else(|e| harness_error!("{e}"))
    };
    let mut failures = Vec::new();
    for h in health {
        let c = &h.component;
        let subject = format!("{} ({})", c.role, profile.name);
        let what = format!("{} {}/{}", c.kind.resource(), c.namespace, c.name);
        let outcome = if h.healthy {
            Ok((
                format!("{what}: {}", h.detail),
                vec![
                    ("desired".into(), h.desired.to_string()),
                    ("ready".into(), h.ready.to_string()),
                    ("updated".into(), h.updated.to_string()),
                ],
            ))
        } else {
            Err(format!("{what} is not ready: {}", h.detail))
        };
        let result = checks::verdict("control-plane.health", &subject, outcome);
        if result.status == Status::Failed {
            failures.push(result.summary.clone());
        }
        world.checks.push(result);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

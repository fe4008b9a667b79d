use std::time::{Duration, Instant};

use cucumber::{given, then};

use super::{MeshWorld, harness_error};
use crate::checks::{self, identity, spire};
use crate::target::lab::spire::SpireError;

#[given("its SPIRE server and agents are running")]
async fn spire_running(world: &mut MeshWorld) {
    let ctx = world.ctx();
    let profile = world.profile();
    match ctx.lab.spire(&profile).await {
        Ok(lab) => world.spire = Some(lab),
        Err(e) => harness_error!("{e}"),
    }
}

#[then("the SPIRE server is healthy and holds every registration entry of the profile")]
async fn server_healthy(world: &mut MeshWorld) {
    let profile = world.profile();
    let lab = world.spire();
    let lab = lab.read().await;
    let health = lab
        .healthcheck()
        .await
        .unwrap_or_else(|e| harness_error!("{e}"));
    let entries = lab
        .entries()
        .await
        .unwrap_or_else(|e| harness_error!("{e}"));
    let promised = profile
        .spire
        .as_ref()
        .map(|s| s.entries.clone())
        .unwrap_or_default();
    let missing: Vec<String> = promised
        .iter()
        .map(|e| e.spiffe_id.to_string())
        .filter(|id| !entries.iter().any(|x| &x.spiffe_id == id))
        .collect();
    let outcome = if !health.healthy {
        Err(format!(
            "spire-server healthcheck fails: {}",
            health.message
        ))
    } else if !missing.is_empty() {
        Err(format!("no registration entry for {}", missing.join(", ")))
    } else {
        Ok((
            format!(
                "healthy; {} entries, every one of the profile's {} present",
                entries.len(),
                promised.len()
            ),
            entries
                .iter()
                .map(|e| (e.spiffe_id.clone(), e.selectors.join(" ")))
                .collect(),
        ))
    };
    world.record(checks::verdict(spire::SERVER, &profile.name, outcome));
}

#[then("every SPIRE agent is attested and healthy")]
async fn agents_attested(world: &mut MeshWorld) {
    let ctx = world.ctx();
    let profile = world.profile();
    let lab = world.spire();
    let lab = lab.read().await;
    let agents = lab.agents().await.unwrap_or_else(|e| harness_error!("{e}"));
    let mut problems = Vec::new();
    for i in 0..lab.agent_count() {
        match lab.agent_healthcheck(i).await {
            Ok(h) if h.healthy => {}
            Ok(h) => problems.push(format!("agent {i} is unhealthy: {}", h.message)),
            Err(e) => problems.push(format!("agent {i}: {e}")),
        }
    }
    let now = ctx.lab.now().max(time::OffsetDateTime::now_utc());
    for a in &agents {
        if a.banned {
            problems.push(format!("{} is banned", a.spiffe_id));
        }
        if a.x509svid_expires_at.is_some_and(|t| t < now) {
            problems.push(format!(
                "{}'s own SVID has expired: it stopped renewing",
                a.spiffe_id
            ));
        }
    }
    if agents.len() < lab.agent_count() {
        problems.push(format!(
            "{} agents started but the server lists {}",
            lab.agent_count(),
            agents.len()
        ));
    }
    let outcome = if problems.is_empty() {
        Ok((
            format!(
                "{} agents attested ({}) and healthy",
                agents.len(),
                agents
                    .first()
                    .map(|a| a.attestation_type.as_str())
                    .unwrap_or("?")
            ),
            agents
                .iter()
                .map(|a| (a.spiffe_id.clone(), a.x509svid_serial_number.clone()))
                .collect(),
        ))
    } else {
        Err(problems.join("; "))
    };
    world.record(checks::verdict(spire::AGENTS, &profile.name, outcome));
}

#[then(expr = "{string} fetches an X.509-SVID for exactly its registered SPIFFE ID")]
async fn workload_svid(world: &mut MeshWorld, service: String) {
    let lab = world.spire();
    let lab = lab.read().await;
    let Some(workload) = lab.workload(&service) else {
        harness_error!("the SPIRE lab registered no workload for {service}");
    };
    let bundle = lab
        .trust_bundle()
        .await
        .unwrap_or_else(|e| harness_error!("{e}"));
    let outcome = match lab.fetch_x509(&workload.caller).await {
        Ok(svids) => match svids.iter().find(|s| s.spiffe_id == workload.spiffe_id) {
            Some(svid) => identity::svid(
                &svid.chain_der,
                &bundle,
                &workload.spiffe_id,
                workload.lab_ttl,
                time::OffsetDateTime::now_utc(),
            )
            .map(|(summary, evidence)| {
                (
                    format!(
                        "{summary} (lab TTL {}, profile TTL {})",
                        crate::duration::format(workload.lab_ttl),
                        crate::duration::format(workload.profile_ttl)
                    ),
                    evidence,
                )
            }),
            None => Err(format!(
                "fetched {:?}, not {}",
                svids
                    .iter()
                    .map(|s| s.spiffe_id.to_string())
                    .collect::<Vec<_>>(),
                workload.spiffe_id
            )),
        },
        Err(e) => Err(format!("{} got no SVID: {e}", workload.spiffe_id)),
    };
    world.record(checks::verdict(spire::SVID, &service, outcome));
}

#[then("a workload with no registration entry gets no SVID")]
async fn unregistered(world: &mut MeshWorld) {
    let profile = world.profile();
    let lab = world.spire();
    let lab = lab.read().await;
    let caller = lab
        .new_caller("unregistered", 0)
        .unwrap_or_else(|e| harness_error!("{e}"));
    let outcome = match lab.fetch_x509(&caller).await {
        Err(e @ SpireError::NoIdentity { .. }) => Ok((format!("refused: {e}"), Vec::new())),
        Err(e) => harness_error!("the fetch failed for another reason: {e}"),
        Ok(svids) => Err(format!(
            "an unregistered workload was issued {:?}",
            svids
                .iter()
                .map(|s| s.spiffe_id.to_string())
                .collect::<Vec<_>>()
        )),
    };
    world.record(checks::verdict(
        spire::SVID,
        &format!("{} unregistered workload", profile.name),
        outcome,
    ));
}

#[then(expr = "SPIRE renews the SVID of {string} before it expires")]
async fn renewal(world: &mut MeshWorld, service: String) {
    let lab = world.spire();
    let lab = lab.read().await;
    let Some(workload) = lab.workload(&service) else {
        harness_error!("no SPIRE workload for {service}")
    };
    let first = lab
        .fetch_x509(&workload.caller)
        .await
        .unwrap_or_else(|e| harness_error!("{e}"));
    let Some(first) = first
        .into_iter()
        .find(|s| s.spiffe_id == workload.spiffe_id)
    else {
        harness_error!("{service} holds no SVID to renew");
    };
    let Some((_, expires)) = first.validity() else {
        harness_error!("the SVID has no validity")
    };
    let started = Instant::now();
    // Bounded by the SVID's own lifetime: a renewal after expiry is a failure, not a wait.
    let deadline = workload.lab_ttl + Duration::from_secs(15);
    let outcome = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = time::OffsetDateTime::now_utc();
        if let Ok(svids) = lab.fetch_x509(&workload.caller).await
            && let Some(next) = svids
                .into_iter()
                .find(|s| s.spiffe_id == workload.spiffe_id && s.serial_hex() != first.serial_hex())
        {
            break if now < expires {
                let margin = expires - now;
                Ok((
                    format!(
                        "serial {} → {} after {:.1} s, {:.1} s before expiry (lab TTL {})",
                        first.serial_hex(),
                        next.serial_hex(),
                        started.elapsed().as_secs_f64(),
                        margin.as_seconds_f64(),
                        crate::duration::format(workload.lab_ttl)
                    ),
                    vec![
                        ("spiffe_id".into(), workload.spiffe_id.to_string()),
                        ("serial_before".into(), first.serial_hex()),
                        ("serial".into(), next.serial_hex()),
                        ("margin_s".into(), format!("{:.1}", margin.as_seconds_f64())),
                    ],
                ))
            } else {
                Err(format!(
                    "renewed only after the old SVID expired ({})",
                    checks::rfc3339(expires)
                ))
            };
        }
        if started.elapsed() > deadline {
            break Err(format!(
                "no new SVID within {:?} (old one expires {})",
                deadline,
                checks::rfc3339(expires)
            ));
        }
    };
    world.record(checks::verdict(spire::RENEWAL, &service, outcome));
}

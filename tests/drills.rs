//! Game-day drills on the lab: every drill in `scenarios/` passes, and breaking its recovery or
//! its undo makes it fail (proof of sensitivity); an interrupted drill undoes its fault and leaves
//! no process behind, in process (cancel token) and end to end (SIGINT to `meshproof drill`).
//!
//! Needs Envoy, and SPIRE for the SPIRE drills (`scripts/setup` installs both). Without them a
//! drill is a harness error, which fails these tests unless the component is optional here:
//! SPIRE drills are skipped with a message when SPIRE is not installed and
//! MESHPROOF_REQUIRE_SPIRE is not 1. Drills run one at a time (they measure time; two at once on a
//! small machine would measure each other). Measurements are printed: run with `--nocapture`.

use std::sync::{Mutex, MutexGuard};

use meshproof::drills::{self, CancelToken, Drill, DrillReport, DrillStatus, RunOptions, Sabotage};
use meshproof::drills::timeline::Phase;
use meshproof::target::lab::Lab;

/// Drills measure time: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn drill(name: &str) -> Drill {
    drills::find(&drills::scenarios_dir(), name).unwrap_or_else(|e| panic!("{e}"))
}

fn spire_missing(d: &Drill) -> bool {
    if !d.needs_spire() {
        return false;
    }
    match meshproof::target::lab::spire::SpireBinaries::locate() {
        Ok(_) => false,
        Err(e) => {
            assert!(
                std::env::var("MESHPROOF_REQUIRE_SPIRE").as_deref() != Ok("1"),
                "MESHPROOF_REQUIRE_SPIRE=1 but SPIRE is not installed: {e}"
            );
            println!("spire not installed: run scripts/setup ({e})");
            true
        }
    }
}

async fn run(d: &Drill, sabotage: &[Sabotage]) -> DrillReport {
    let lab = Lab::new(time::OffsetDateTime::now_utc()).unwrap();
    let options = RunOptions {
        sabotage: sabotage.to_vec(),
        ..RunOptions::default()
    };
    let report = drills::run_with_cancel(d, &lab, &options, &CancelToken::new()).await;
    print(&report);
    report
}

fn print(r: &DrillReport) {
    println!(
        "[{}{}] {:?}: detect {:?} ms, recover {:?} ms, {} of {} requests failed; ttl: {}",
        r.name,
        if r.sabotage.is_empty() { String::new() } else { format!(" {:?}", r.sabotage) },
        r.status,
        r.time_to_detect_ms,
        r.time_to_recover_ms,
        r.failed_requests,
        r.requests,
        r.ttls
            .iter()
            .map(|t| format!("{} {}", t.what, t.lab))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for p in &r.phases {
        println!("    {:<11} {:>6}–{:<6} ms", p.phase.name(), p.started_ms, p.ended_ms.unwrap_or(0));
        for s in &p.steps {
            println!("        {} {} ({} ms): {}", if s.ok { "✓" } else { "✗" }, s.name, s.ended_ms.saturating_sub(s.started_ms), s.detail);
        }
    }
    for f in &r.findings {
        println!("    finding: {f}");
    }
    if let Some(e) = &r.error {
        println!("    error: {e}");
    }
    for (k, v) in &r.facts {
        println!("    {k}: {v}");
    }
    for h in &r.health_green_while_broken {
        println!("    health green while broken: {h}");
    }
}

/// The drill passes; with its recovery skipped it fails for the missing recovery (and its undo
/// still restores everything); with its undo broken it fails on the undo. An undo only has
/// something to do where the recovery did not already restore the before-state, so for drills
/// whose recovery restores it the undo is broken on top of a skipped recovery.
async fn passes_and_is_sensitive(name: &str) -> Option<DrillReport> {
    let _serial = serial();
    let d = drill(name);
    if spire_missing(&d) {
        return None;
    }
    let ok = run(&d, &[]).await;
    assert_eq!(ok.status, DrillStatus::Passed, "{name}: {:?} {:?}", ok.findings, ok.error);
    assert!(ok.undo.verified && ok.undo.leftover_processes.is_empty(), "{name}: {:?}", ok.undo);
    let expects_failure = d.detection.expect == meshproof::drills::schema::Expect::Failure;
    if expects_failure {
        let skipped = run(&d, &[Sabotage::SkipRecovery]).await;
        assert_eq!(skipped.status, DrillStatus::Failed, "{name} without recovery must fail");
        assert!(
            skipped.findings.iter().any(|f| f.contains("no sustained healthy window") || f.contains("lingering access")),
            "{name} without recovery fails for the missing recovery: {:?}",
            skipped.findings
        );
        assert!(skipped.undo.verified, "{name}: {:?}", skipped.undo.differences);
    }
    let sabotage: &[Sabotage] = if expects_failure { &[Sabotage::SkipRecovery, Sabotage::BreakUndo] } else { &[Sabotage::BreakUndo] };
    let broken = run(&d, sabotage).await;
    assert_eq!(broken.status, DrillStatus::Failed, "{name} with a broken undo must fail");
    assert!(
        broken.findings.iter().any(|f| f.starts_with("undo incomplete")),
        "{name} with a broken undo fails on the undo: {:?}",
        broken.findings
    );
    assert!(broken.undo.leftover_processes.is_empty(), "{:?}", broken.undo.leftover_processes);
    Some(ok)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_intermediate() {
    let Some(r) = passes_and_is_sensitive("expired-intermediate").await else { return };
    // Recovery is the runbook's procedure, in its order, every step done.
    let recover = r.phases.iter().find(|p| p.phase == Phase::Recover).unwrap();
    let steps: Vec<&str> = recover.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(steps, ["newIntermediate", "updateCaSecret", "reloadControlPlane", "reissueWorkloads", "validate"]);
    assert!(recover.steps.iter().all(|s| s.ok), "{:?}", recover.steps);
    assert!(r.detected_by.as_deref().unwrap_or("").contains("Expired"), "{:?}", r.detected_by);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intermediate_rotation() {
    let Some(r) = passes_and_is_sensitive("intermediate-rotation").await else { return };
    assert_eq!(r.failed_requests, 0);
    assert!(r.requests > 50, "the rotation ran under traffic: {} requests", r.requests);
    assert!(r.facts.get("trust_bundle").is_some_and(|f| f.contains("shared")), "{:?}", r.facts);
    assert!(r.facts.contains_key("overlap"), "{:?}", r.facts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_all_drift() {
    let Some(r) = passes_and_is_sensitive("allow-all-drift").await else { return };
    // The denied request that became allowed is reported as widened access, with the promise.
    assert!(
        r.widened_access.iter().any(|w| w.request == "ingestion → execution GET /quotes/probe"),
        "{:?}",
        r.widened_access
    );
    assert_eq!(r.failed_requests, 0, "allowed traffic did not notice the pushes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emergency_override() {
    let Some(r) = passes_and_is_sensitive("emergency-override").await else { return };
    // The grant took effect, and only the grant.
    assert_eq!(r.widened_access.len(), 1, "{:?}", r.widened_access);
    assert_eq!(r.widened_access[0].request, "observability → execution GET /quotes/probe");
    // Revoked after expiry: nothing served once the recovery window began.
    let recovered = r.recovered_at_ms.unwrap();
    assert!(r.widened_access[0].last_seen_ms <= recovered, "{:?}", r.widened_access);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emergency_override_left_in_place_is_lingering_access() {
    let _serial = serial();
    let d = drill("emergency-override");
    let r = run(&d, &[Sabotage::SkipRecovery]).await;
    assert_eq!(r.status, DrillStatus::Failed);
    assert!(
        r.findings.iter().any(|f| f.starts_with("lingering access: observability → execution GET /quotes/probe")),
        "{:?}",
        r.findings
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_client() {
    let Some(r) = passes_and_is_sensitive("plaintext-client").await else { return };
    let attack = r.probes.iter().find(|p| p.id == "plaintext-client").unwrap();
    assert!(attack.sent > 10 && attack.unhealthy == 0, "every plaintext attempt refused: {attack:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_unavailable() {
    let Some(r) = passes_and_is_sensitive("admission-unavailable").await else { return };
    let mode = r.facts.get("admission_failure_mode").cloned().unwrap_or_default();
    assert!(mode.contains("fails OPEN") && mode.contains("failurePolicy Ignore (Gatekeeper's default)"), "{mode}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_with_failure_policy_fail_fails_closed() {
    let _serial = serial();
    let path = drills::scenarios_dir().join("admission-unavailable.yaml");
    let text = std::fs::read_to_string(&path).unwrap().replace("    holdFor: 2s", "    holdFor: 2s\n    failurePolicy: Fail");
    let d = drills::parse(&path, &text).unwrap();
    let r = run(&d, &[]).await;
    assert_eq!(r.status, DrillStatus::Passed, "{:?}", r.findings);
    let mode = r.facts.get("admission_failure_mode").cloned().unwrap_or_default();
    assert!(mode.contains("fails CLOSED"), "{mode}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spire_server_outage() {
    let Some(r) = passes_and_is_sensitive("spire-server-outage").await else { return };
    // Existing SVIDs kept working: not one data-plane request failed during the outage.
    assert_eq!(r.failed_requests, 0);
    let register = r.probes.iter().find(|p| p.id == "register").unwrap();
    assert!(register.unhealthy > 0, "a new workload could not be registered during the outage");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spire_agent_outage() {
    let Some(r) = passes_and_is_sensitive("spire-agent-outage").await else { return };
    // The trap: the server's healthcheck and the sidecar's /ready stayed green while broken.
    assert_eq!(r.health_green_while_broken.len(), 2, "{:?}", r.health_green_while_broken);
}

/// The trap itself: a drill that trusts health checks never detects the expired identity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_alone_miss_an_expired_svid() {
    let _serial = serial();
    let path = drills::scenarios_dir().join("spire-agent-outage.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("probes: [api]", "probes: [server-health, sidecar-ready]");
    let d = drills::parse(&path, &text).unwrap();
    if spire_missing(&d) {
        return;
    }
    let r = run(&d, &[]).await;
    assert_eq!(r.status, DrillStatus::Failed);
    assert!(
        r.findings.iter().any(|f| f.contains("was not detected") && f.contains("health checks stayed green")),
        "{:?}",
        r.findings
    );
}

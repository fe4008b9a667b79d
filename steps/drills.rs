//! Steps of `features/drills.feature`: run a game-day drill from `scenarios/` on the lab and
//! judge each aspect of its result. The drill is library code ([`crate::drills`]); the When step
//! records its check `drill.<name>` (with every measurement as evidence) and each Then step
//! asserts one aspect of that check's verdict.

use cucumber::{then, when};

use super::{MeshWorld, harness_error};
use crate::drills::{self, DrillStatus, RunOptions};

#[when(expr = "the drill {string} runs on the lab")]
async fn drill_runs(world: &mut MeshWorld, name: String) {
    let ctx = world.ctx();
    let drill = match drills::find(&drills::scenarios_dir(), &name) {
        Ok(d) => d,
        Err(e) => harness_error!("{e}"),
    };
    // A profile of this run with the same name brings the manifests the run judges (--manifests);
    // otherwise the drill uses its profile's own.
    let mut options = RunOptions::default();
    if let Some(p) = ctx.profiles.iter().find(|p| p.name == drill.profile.name) {
        options.configured = ctx.configured(p).ok();
    }
    world.profile = Some(drill.profile.clone());
    let report = drills::run(&drill, &ctx.lab, &options).await;
    let check = drills::check_result(&drill, &report);
    world.checks.push(check.clone());
    if let Ok(mut all) = ctx.drills.lock() {
        all.push(report.clone());
    }
    match report.status {
        DrillStatus::Error => harness_error!("{}", check.summary),
        DrillStatus::Interrupted => harness_error!("{}", check.summary),
        DrillStatus::Passed | DrillStatus::Failed => world.pending = Some(check),
    }
}

/// The evidence value `key` of the drill's check.
fn evidence(world: &MeshWorld, key: &str) -> String {
    let Some(check) = &world.pending else {
        harness_error!("no drill ran: the scenario needs `When the drill \"NAME\" runs on the lab`")
    };
    check
        .evidence
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// Asserts the drill's verdict on one aspect (`verdict.<aspect>` is `ok: …` or `FAIL: …`).
fn aspect(world: &MeshWorld, name: &str) {
    let verdict = evidence(world, &format!("verdict.{name}"));
    assert!(
        verdict.starts_with("ok: "),
        "{}",
        verdict.trim_start_matches("FAIL: ")
    );
}

#[then("the fault is detected within the drill's bound")]
fn detected(world: &mut MeshWorld) {
    aspect(world, "detect");
}

#[then("no failing signal appears while it runs")]
fn nothing_failed(world: &mut MeshWorld) {
    aspect(world, "detect");
}

#[then("the lab recovers within the drill's bound")]
fn recovered(world: &mut MeshWorld) {
    aspect(world, "recover");
}

#[then("no more requests fail than the drill allows")]
fn failed_requests(world: &mut MeshWorld) {
    aspect(world, "failed_requests");
}

#[then("the undo restores the state recorded before the fault, leaving no process behind")]
fn undone(world: &mut MeshWorld) {
    aspect(world, "undo");
}

#[then("the drill has no other finding")]
fn nothing_else(world: &mut MeshWorld) {
    aspect(world, "other");
}

#[then("the access it widened is reported as widened access")]
fn widened(world: &mut MeshWorld) {
    let widened = evidence(world, "widened_access");
    assert!(!widened.is_empty(), "no widened access was reported");
}

#[then("health checks stayed green while the workload's identity had expired")]
fn health_trap(world: &mut MeshWorld) {
    let green = evidence(world, "health_green_while_broken");
    assert!(
        !green.is_empty(),
        "no health check was seen passing while the mesh was broken"
    );
}

#[then(expr = "the result states that admission fails {word}")]
fn admission_mode(world: &mut MeshWorld, mode: String) {
    let stated = evidence(world, "admission_failure_mode");
    let wanted = format!("fails {}", mode.to_uppercase());
    assert!(stated.contains(&wanted), "the result says: {stated:?}");
}

//! Game-day drills: inject a fault into the lab, measure how long the mesh takes to show it and to
//! recover from it (by the runbook's own procedure), then undo everything and prove it.
//!
//! # Contract
//!
//! A drill is data (`scenarios/<name>.yaml`, see [`schema`]): steady-state probes, one fault,
//! the signal that counts as detection, recovery steps, bounds and what the undo must restore.
//! [`run`] / [`run_with_cancel`] execute it on a lab of its own ([`env`]), never on the run's
//! shared mesh, in phases recorded on a [`timeline`]:
//!
//! 1. **setup** — the drill's lab comes up; its observable state is recorded (the before-state);
//! 2. **steady** — every probe runs continuously from here to the end (on loopback, each at its
//!    own interval); a sustained healthy window must be seen before anything is touched;
//! 3. **inject** — the fault; **detect** — first failing signal (time to detect);
//! 4. **recover** — the recovery steps, then the first sustained healthy window (time to
//!    recover); failed requests are counted from the injection on;
//! 5. **verify-undo** — always, whether the drill passed, failed, errored after injection or was
//!    cancelled (Ctrl-C in [`run`], a [`CancelToken`] in [`run_with_cancel`]): every difference
//!    from the before-state is undone and the state is recorded again and compared. If the drill's
//!    future is dropped before that can run, a guard restores synchronously what can be restored
//!    without awaiting ([`env::SyncUndo`]);
//! 6. **teardown** — every process the drill started is stopped and reaped, its directory removed,
//!    and `/proc` is checked for anything left behind.
//!
//! The result is a [`DrillReport`] (serializable, the whole timeline) and a
//! [`crate::results::CheckResult`] `drill.<name>` ([`check_result`]). A drill passes only if the
//! fault was detected within its bound (or, for a change that must not fail anything, nothing
//! failed), recovery was sustained within its bound, no more requests failed than allowed, the
//! undo restored every aspect it must, and no process was left.
//!
//! [`Sabotage`] exists for proof of sensitivity only: it skips the recovery or breaks the undo,
//! and the drill must then fail.

pub mod engine;
pub mod env;
mod faults;
pub mod probes;
pub mod report;
pub mod schema;
pub mod timeline;
pub mod webhook;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::watch;

pub use report::{DrillReport, DrillStatus};
pub use schema::{Drill, load, parse};

use crate::configured::Configured;
use crate::error::{SourceError, SourceErrors};
use crate::target::lab::Lab;
use engine::{Marks, Recorder};
use env::{DrillEnv, SyncUndo, UndoAction};
use timeline::{Phase, Timeline};

/// Deliberate breakage, for proof of sensitivity only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sabotage {
    /// Every recovery step is skipped (and recorded as skipped).
    SkipRecovery,
    /// The first undo action that would restore something is skipped.
    BreakUndo,
}

/// Something that happened in a drill, as it happens (for progress output and tests).
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    pub drill: String,
    pub phase: Phase,
    pub at_ms: u64,
    pub message: String,
}

pub type Observer = Arc<dyn Fn(&Event) + Send + Sync>;

#[derive(Clone, Default)]
pub struct RunOptions {
    /// Deliberate breakage (proof of sensitivity only); empty for a real drill.
    pub sabotage: Vec<Sabotage>,
    /// Called for every phase, step and detection as it happens.
    pub observer: Option<Observer>,
    /// The configured manifests to build the drill's lab from [default: the drill profile's own
    /// manifests folder].
    pub configured: Option<Arc<Configured>>,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("sabotage", &self.sabotage)
            .field("observer", &self.observer.is_some())
            .finish_non_exhaustive()
    }
}

/// Stops a drill: [`run_with_cancel`] then undoes, verifies and returns an interrupted report.
#[derive(Clone, Debug)]
pub struct CancelToken(Arc<watch::Sender<bool>>);

impl Default for CancelToken {
    fn default() -> Self {
        CancelToken(Arc::new(watch::channel(false).0))
    }
}

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self) {
        self.0.send_replace(true);
    }

    pub fn is_cancelled(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once [`CancelToken::cancel`] was called (at once if it already was).
    pub async fn cancelled(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }
}

/// `scenarios/` of the working directory when it has one, else of the checkout meshproof was
/// built from.
pub fn scenarios_dir() -> PathBuf {
    let local = PathBuf::from("scenarios");
    if local.is_dir() {
        local
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
    }
}

/// Every drill in `dir` (`*.yaml`), by file name; every problem of every file in one error.
pub fn load_dir(dir: &Path) -> Result<Vec<Drill>, SourceErrors> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        SourceErrors(vec![
            SourceError::new(dir, 0, 0, format!("cannot read drills: {e}"))
                .expected("a scenarios/ folder of <name>.yaml drills"),
        ])
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let mut drills = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        match load(&file) {
            Ok(d) => drills.push(d),
            Err(SourceErrors(mut e)) => errors.append(&mut e),
        }
    }
    let mut names = std::collections::BTreeSet::new();
    for d in &drills {
        if !names.insert(d.name.clone()) {
            errors.push(
                SourceError::new(
                    &d.file,
                    d.line,
                    1,
                    format!("drill name \"{}\" is used by another file", d.name),
                )
                .expected("one file per drill name"),
            );
        }
    }
    if errors.is_empty() {
        Ok(drills)
    } else {
        Err(SourceErrors(errors))
    }
}

/// The drill called `name` in `dir` (`<dir>/<name>.yaml`, or a path to a drill file).
pub fn find(dir: &Path, name: &str) -> Result<Drill, SourceErrors> {
    let as_path = Path::new(name);
    if as_path.is_file() {
        return load(as_path);
    }
    let file = dir.join(format!("{name}.yaml"));
    if file.is_file() {
        return load(&file);
    }
    let known: Vec<String> = load_dir(dir)
        .map(|ds| ds.into_iter().map(|d| d.name).collect())
        .unwrap_or_default();
    Err(SourceErrors(vec![
        SourceError::new(&file, 0, 0, format!("no drill named \"{name}\"")).expected(
            if known.is_empty() {
                "a drill name or a path to a drill file".to_owned()
            } else {
                known.join(", ")
            },
        ),
    ]))
}

/// Runs `drill` and undoes it, also on Ctrl-C (see the module docs).
pub async fn run(drill: &Drill, lab: &Lab, options: &RunOptions) -> DrillReport {
    let token = CancelToken::new();
    let watcher = cancel_on_ctrl_c(token.clone());
    let report = run_with_cancel(drill, lab, options, &token).await;
    watcher.abort();
    report
}

/// A task that cancels `token` on Ctrl-C; abort it when the drills are done.
pub fn cancel_on_ctrl_c(token: CancelToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            token.cancel();
        }
    })
}

/// Runs `drill`, undoing and verifying when `cancel` fires (see the module docs).
pub async fn run_with_cancel(
    drill: &Drill,
    lab: &Lab,
    options: &RunOptions,
    cancel: &CancelToken,
) -> DrillReport {
    let started = OffsetDateTime::now_utc();
    let t0 = Instant::now();
    let timeline = Arc::new(Mutex::new(Timeline::new(t0)));
    let rec = Recorder {
        timeline: timeline.clone(),
        drill: drill.name.clone(),
        observer: options.observer.clone(),
    };
    let marks = Mutex::new(Marks::default());
    rec.begin(Phase::Setup);
    let finish =
        |error: Option<String>, interrupted: bool, undo: report::UndoReport, facts, attack| {
            rec.with(|t| {
                let now = t.now_ms();
                t.end_current(now);
            });
            let (phases, samples) =
                rec.with(|t| (t.phases.clone(), std::mem::take(&mut t.samples)));
            report::build(
                drill,
                report::Measured {
                    started: crate::checks::rfc3339(started),
                    duration: t0.elapsed(),
                    phases,
                    samples,
                    marks: marks.lock().map(|m| m.clone()).unwrap_or_default(),
                    facts,
                    attack_probes: attack,
                    undo,
                    interrupted,
                    error,
                    sabotage: options.sabotage.clone(),
                },
            )
        };
    let empty_undo = || report::UndoReport {
        checks: drill.undo.clone(),
        actions: Vec::new(),
        verified: true,
        differences: Vec::new(),
        before: None,
        after: None,
        leftover_processes: Vec::new(),
    };

    let configured = match &options.configured {
        Some(c) => c.clone(),
        None => match crate::configured::load(
            &drill.profile,
            &crate::configured::default_dir(&drill.profile),
        ) {
            Ok(c) => Arc::new(c),
            Err(e) => {
                return finish(
                    Some(e.to_string()),
                    false,
                    empty_undo(),
                    Default::default(),
                    Vec::new(),
                );
            }
        },
    };
    let started_env = tokio::select! {
        biased;
        _ = cancel.cancelled() => None,
        env = DrillEnv::start(drill, lab, configured) => Some(env),
    };
    let env = match started_env {
        None => return finish(None, true, empty_undo(), Default::default(), Vec::new()),
        Some(Err(e)) => {
            return finish(Some(e), false, empty_undo(), Default::default(), Vec::new());
        }
        Some(Ok(env)) => Arc::new(env),
    };
    let markers = {
        let mut m = vec![env.workdir.display().to_string()];
        if let Some(s) = &env.spire {
            m.push(s.root.display().to_string());
        }
        m
    };
    let before = match env.snapshot().await {
        Ok(s) => s,
        Err(e) => {
            let leftover = teardown(&rec, env, &markers).await;
            let mut undo = empty_undo();
            undo.leftover_processes = leftover;
            return finish(
                Some(format!("recording the state before the fault: {e}")),
                false,
                undo,
                Default::default(),
                Vec::new(),
            );
        }
    };
    rec.with(|t| {
        t.step(timeline::StepRecord {
            name: "record the state before the fault".into(),
            runbook: None,
            started_ms: t.now_ms(),
            ended_ms: t.now_ms(),
            ok: true,
            detail: format!(
                "{} workload(s), {:?}",
                before.workloads.len(),
                before.processes
            ),
        })
    });
    let sync_undo = SyncUndo::new(env.clone());
    let probes = probes::ProbeRunner::start(&drill.probes, env.clone(), timeline.clone());

    let outcome = tokio::select! {
        r = engine::body(drill, &env, &rec, options, &marks, cancel) => Some(r),
        _ = cancel.cancelled() => None,
    };
    let interrupted = outcome.is_none() || cancel.is_cancelled();
    let error = outcome.and_then(Result::err);

    rec.begin(Phase::VerifyUndo);
    let mut actions: Vec<UndoAction> = env
        .restore(&before, options.sabotage.contains(&Sabotage::BreakUndo))
        .await;
    // The probes ran through the undo (its failures count); they stop before the state is
    // compared, so nothing they do meanwhile (a registration in flight) is mistaken for residue.
    probes.stop().await;
    actions.extend(env.remove_stray_entries().await);
    {
        // Recorded once done, each ending where the next began.
        let mut at = rec
            .now_ms()
            .saturating_sub(actions.iter().map(|a| a.took_ms).sum());
        for a in &actions {
            rec.record_span(&a.name, at, at + a.took_ms, &a.result);
            at += a.took_ms;
        }
    }
    let after = env.snapshot().await;
    let (differences, after) = match after {
        Ok(after) => (after.differences(&before, &drill.undo), Some(after)),
        Err(e) => (
            vec![format!(
                "the state after the undo could not be recorded: {e}"
            )],
            None,
        ),
    };
    let verified = differences.is_empty() && actions.iter().all(|a| a.result.is_ok());
    sync_undo.disarm();
    let facts = env.facts();
    let attack = env.attack_probes();
    drop(sync_undo);
    let leftover = teardown(&rec, env, &markers).await;
    let undo = report::UndoReport {
        checks: drill.undo.clone(),
        actions,
        verified,
        differences,
        before: Some(before),
        after,
        leftover_processes: leftover,
    };
    finish(error, interrupted, undo, facts, attack)
}

/// Stops the drill's lab and returns any of its processes still running afterwards.
async fn teardown(rec: &Recorder, env: Arc<DrillEnv>, markers: &[String]) -> Vec<String> {
    rec.begin(Phase::Teardown);
    let started = rec.now_ms();
    env.end_fault_tasks().await;
    match Arc::try_unwrap(env) {
        Ok(env) => env.shutdown().await,
        // Someone still holds the environment (cannot happen once the probes stopped); dropping
        // this reference still kills every process once the last one goes.
        Err(env) => drop(env),
    }
    let left: Vec<String> = env::lab_processes(markers)
        .into_iter()
        .map(|(comm, cmd)| format!("{comm}: {cmd}"))
        .collect();
    let result = if left.is_empty() {
        Ok("every lab process stopped and reaped; directory removed".to_owned())
    } else {
        Err(format!("{} process(es) left", left.len()))
    };
    rec.record("stop the drill's lab", None, started, &result);
    left
}

/// The drill's report as check `drill.<name>`.
pub fn check_result(drill: &Drill, report: &DrillReport) -> crate::results::CheckResult {
    report::check_result(drill, report)
}

/// The drill's report as a scenario of a run, for the existing reports.
pub fn scenario_result(drill: &Drill, report: &DrillReport) -> crate::results::ScenarioResult {
    report::scenario_result(drill, report)
}

pub mod cli;

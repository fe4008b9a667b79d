//! The drill engine: steady → inject → detect → recover, driven by the timeline the probes fill.
//! (Verify-undo and teardown are [`super::run_with_cancel`]'s, so they happen whatever the body
//! did, including when it was interrupted.)
//!
//! # Contract
//!
//! * **steady**: waits (bounded by the steady duration + [`SETTLE_BOUND`]) for a sustained healthy
//!   window as long as `steady.duration` in which every probe except the fault's own traffic is
//!   healthy. If there is none, nothing is injected and the drill is a harness error: a mesh that
//!   is not healthy before the fault cannot show what the fault does.
//! * **inject**: applies the fault; its start is the origin of time to detect.
//! * **detect**: polls for the first unhealthy result of a detection probe at or after the
//!   injection, bounded by `maxTimeToDetect` plus a margin (so an over-bound detection is still
//!   measured), and holds the fault for `holdFor` when the drill asks for it, and as long as the
//!   fault itself asks (bounded: see [`super::env::DrillEnv::hold_fault_until`]).
//! * **recover**: runs the recovery steps in order (each recorded with its start, end and
//!   result; a failing step does not stop the others), then polls for the first sustained healthy
//!   window at or after the start of the phase, bounded by `maxTimeToRecover` + `sustained` + a
//!   margin. Its start is the end of time to recover.
//!
//! Every wait polls the timeline every [`POLL`] and names what it waited for when it gives up.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::env::DrillEnv;
use super::faults;
use super::schema::{Drill, Expect, Role};
use super::timeline::{Phase, StepRecord, Timeline, first_failure, sustained_window};
use super::{Event, Observer, RunOptions, Sabotage};

/// How often the engine looks at the timeline.
pub const POLL: Duration = Duration::from_millis(10);
/// Extra time the steady phase may take to see its window (first probes, cold connections).
pub const SETTLE_BOUND: Duration = Duration::from_secs(15);
/// Least margin past a bound before the engine stops waiting for detection or recovery.
const MIN_MARGIN: Duration = Duration::from_secs(2);

/// Records phases and steps, and tells the observer.
#[derive(Clone)]
pub struct Recorder {
    pub timeline: Arc<Mutex<Timeline>>,
    pub drill: String,
    pub observer: Option<Observer>,
}

impl Recorder {
    pub fn with<R>(&self, f: impl FnOnce(&mut Timeline) -> R) -> R {
        let mut t = self
            .timeline
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut t)
    }

    pub fn now_ms(&self) -> u64 {
        self.with(|t| t.now_ms())
    }

    pub fn begin(&self, phase: Phase) {
        let at_ms = self.with(|t| {
            t.begin(phase);
            t.now_ms()
        });
        self.tell(phase, at_ms, format!("{} begins", phase.name()));
    }

    fn tell(&self, phase: Phase, at_ms: u64, message: String) {
        if let Some(observer) = &self.observer {
            observer(&Event {
                drill: self.drill.clone(),
                phase,
                at_ms,
                message,
            });
        }
    }

    /// Runs `work` as a step of the phase in progress and records it.
    pub async fn step(
        &self,
        name: &str,
        runbook: Option<&str>,
        work: impl Future<Output = Result<String, String>>,
    ) -> Result<String, String> {
        let started_ms = self.now_ms();
        let result = work.await;
        self.record(name, runbook, started_ms, &result);
        result
    }

    pub fn record(
        &self,
        name: &str,
        runbook: Option<&str>,
        started_ms: u64,
        result: &Result<String, String>,
    ) {
        let ended_ms = self.now_ms();
        self.record_step(name, runbook, started_ms, ended_ms, result);
    }

    /// Records a step that ran from `started_ms` to `ended_ms`.
    pub fn record_span(
        &self,
        name: &str,
        started_ms: u64,
        ended_ms: u64,
        result: &Result<String, String>,
    ) {
        self.record_step(name, None, started_ms, ended_ms, result);
    }

    fn record_step(
        &self,
        name: &str,
        runbook: Option<&str>,
        started_ms: u64,
        ended_ms: u64,
        result: &Result<String, String>,
    ) {
        let phase = self.with(|t| {
            t.step(StepRecord {
                name: name.to_owned(),
                runbook: runbook.map(str::to_owned),
                started_ms,
                ended_ms,
                ok: result.is_ok(),
                detail: match result {
                    Ok(d) | Err(d) => d.clone(),
                },
            });
            t.current()
        });
        let verdict = match result {
            Ok(d) => format!("{name}: {d}"),
            Err(e) => format!("{name} FAILED: {e}"),
        };
        self.tell(phase, ended_ms, verdict);
    }
}

/// The moments the verdict is computed from, kept outside the body so an interruption keeps them.
#[derive(Clone, Debug, Default)]
pub struct Marks {
    pub injected_at: Option<u64>,
    pub detected: Option<(u64, String)>,
    pub recovery_started: Option<u64>,
    pub recovered_at: Option<u64>,
}

fn margin(bound: Duration) -> Duration {
    (bound / 2).max(MIN_MARGIN)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Steady → inject → detect → recover. `Err` means the harness could not run the drill.
pub async fn body(
    drill: &Drill,
    env: &Arc<DrillEnv>,
    rec: &Recorder,
    options: &RunOptions,
    marks: &Mutex<Marks>,
    cancel: &super::CancelToken,
) -> Result<(), String> {
    let mark = |f: &dyn Fn(&mut Marks)| {
        let mut m = marks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut m);
    };

    // Steady: every probe healthy for a whole steady window before anything is touched.
    rec.begin(Phase::Steady);
    let steady_start = rec.now_ms();
    let steady_set: BTreeSet<String> = drill
        .probes
        .iter()
        .filter(|p| p.role != Role::Attack)
        .map(|p| p.id.clone())
        .collect();
    let deadline = tokio::time::Instant::now() + drill.steady + SETTLE_BOUND;
    loop {
        let window = rec.with(|t| {
            sustained_window(
                &t.samples,
                &steady_set,
                steady_start,
                ms(drill.steady),
                drill.min_samples,
            )
        });
        if window.is_some() {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            let latest = rec.with(|t| {
                let mut unhealthy: Vec<String> = Vec::new();
                for id in &steady_set {
                    if let Some(s) = t.samples.iter().rev().find(|s| &s.probe == id) {
                        if !s.healthy {
                            unhealthy.push(format!("{id}: {}", s.outcome));
                        }
                    } else {
                        unhealthy.push(format!("{id}: no result"));
                    }
                }
                unhealthy
            });
            return Err(format!(
                "the lab was not steady before the fault: no {:?} window with every probe healthy within {:?} ({})",
                drill.steady,
                drill.steady + SETTLE_BOUND,
                latest.join("; ")
            ));
        }
        tokio::time::sleep(POLL).await;
    }

    // A cancellation is seen at every await (the caller races the body against it) and, where
    // the body runs on without awaiting, before each phase and each step.
    if cancel.is_cancelled() {
        return Ok(());
    }
    // Inject.
    rec.begin(Phase::Inject);
    let injected_at = rec.now_ms();
    mark(&|m| m.injected_at = Some(injected_at));
    faults::inject(drill, env, rec)
        .await
        .map_err(|e| format!("the fault could not be injected: {e}"))?;

    // Detect (and hold).
    rec.begin(Phase::Detect);
    let detection = drill.detection_probes();
    let now = tokio::time::Instant::now();
    let since_injection = Duration::from_millis(rec.now_ms().saturating_sub(injected_at));
    let hold_until = now
        + drill
            .fault
            .hold_for
            .unwrap_or_default()
            .saturating_sub(since_injection);
    let detect_until = match (drill.detection.expect, drill.bounds.max_time_to_detect) {
        (Expect::Failure, Some(bound)) => {
            now + (bound + margin(bound)).saturating_sub(since_injection)
        }
        _ => now,
    };
    loop {
        if cancel.is_cancelled() {
            return Ok(());
        }
        if marks.lock().map(|m| m.detected.is_none()).unwrap_or(true) {
            let found = rec.with(|t| {
                first_failure(&t.samples, &detection, injected_at)
                    .map(|s| (s.at_ms, format!("{}: {}", s.probe, s.outcome)))
            });
            if let Some(found) = found {
                rec.with(|t| {
                    t.step(StepRecord {
                        name: "first failing signal".into(),
                        runbook: Some("1. Detection".into()),
                        started_ms: found.0,
                        ended_ms: found.0,
                        ok: true,
                        detail: found.1.clone(),
                    })
                });
                rec.tell(
                    Phase::Detect,
                    found.0,
                    format!(
                        "detected {} ms after injection: {}",
                        found.0.saturating_sub(injected_at),
                        found.1
                    ),
                );
                mark(&|m| m.detected = Some(found.clone()));
            }
        }
        let detected = marks.lock().map(|m| m.detected.is_some()).unwrap_or(false);
        let now = tokio::time::Instant::now();
        let done_detecting =
            detected || now >= detect_until || drill.detection.expect == Expect::None;
        // A fault may ask to be held longer than the drill says, once it knows (e.g. until an
        // agent's own SVID has run out).
        let held = env.hold_until().is_none_or(|until| now >= until.into());
        if done_detecting && now >= hold_until && held {
            break;
        }
        tokio::time::sleep(POLL).await;
    }

    if cancel.is_cancelled() {
        return Ok(());
    }
    // Recover.
    rec.begin(Phase::Recover);
    let recovery_started = rec.now_ms();
    mark(&|m| m.recovery_started = Some(recovery_started));
    for step in &drill.recovery {
        if cancel.is_cancelled() {
            return Ok(());
        }
        if options.sabotage.contains(&Sabotage::SkipRecovery) {
            let started = rec.now_ms();
            rec.record(
                step.kind.name(),
                step.runbook.as_deref(),
                started,
                &Err("skipped (sabotage: recovery skipped)".into()),
            );
            continue;
        }
        let _ = rec
            .step(
                step.kind.name(),
                step.runbook.as_deref(),
                faults::recover(drill, env, step),
            )
            .await;
    }
    let recovery_set = drill.recovery_probes();
    let bound = drill
        .bounds
        .max_time_to_recover
        .unwrap_or(Duration::from_secs(10));
    let started = Duration::from_millis(rec.now_ms().saturating_sub(recovery_started));
    let deadline = tokio::time::Instant::now()
        + (bound + drill.sustained + margin(bound)).saturating_sub(started);
    loop {
        let window = rec.with(|t| {
            sustained_window(
                &t.samples,
                &recovery_set,
                recovery_started,
                ms(drill.sustained),
                drill.min_samples,
            )
        });
        if let Some(start) = window {
            mark(&|m| m.recovered_at = Some(start));
            rec.tell(
                Phase::Recover,
                start,
                format!(
                    "healthy since {} ms after recovery began",
                    start.saturating_sub(recovery_started)
                ),
            );
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            rec.tell(
                Phase::Recover,
                rec.now_ms(),
                format!(
                    "no sustained healthy window within {:?}",
                    bound + drill.sustained + margin(bound)
                ),
            );
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

//! A drill's timeline: every phase (with its steps) and every probe result, stamped in
//! milliseconds since the drill started, and the pure functions that turn it into time to detect,
//! time to recover and failed requests.
//!
//! # Contract
//!
//! [`Timeline`] only records; nothing here talks to a target or decides a verdict. The
//! measurements are defined once, here, and used both live (to end a phase) and in reports:
//!
//! * [`first_failure`]: the first unhealthy result of one of `probes` at or after `from_ms`;
//! * [`sustained_window`]: the start of the first *sustained healthy window* at or after
//!   `from_ms` — after the last unhealthy result of any of `probes`, the moment the last of them
//!   has reported healthy again, provided that every one of them then reports healthy at least
//!   `min_samples` times and a result arrives `sustained_ms` or more after that moment with no
//!   unhealthy result in between;
//! * [`failed`]: how many results of the given probes were unhealthy in a time range.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use serde::Serialize;

/// The phases every drill goes through, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The drill's lab comes up (not measured).
    Setup,
    /// Every probe must be healthy before anything is touched.
    Steady,
    /// The fault is applied.
    Inject,
    /// Waiting for the first failing signal (and holding the fault).
    Detect,
    /// The recovery steps, then waiting for a sustained healthy window.
    Recover,
    /// Every fault undone and the state compared with the one recorded before.
    VerifyUndo,
    /// The drill's lab is taken down.
    Teardown,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Setup => "setup",
            Phase::Steady => "steady",
            Phase::Inject => "inject",
            Phase::Detect => "detect",
            Phase::Recover => "recover",
            Phase::VerifyUndo => "verify-undo",
            Phase::Teardown => "teardown",
        }
    }
}

/// One step inside a phase (a runbook step of the recovery, an undo action, ...).
#[derive(Clone, Debug, Serialize)]
pub struct StepRecord {
    pub name: String,
    /// The runbook's words for it, where the drill gives them.
    pub runbook: Option<String>,
    pub started_ms: u64,
    pub ended_ms: u64,
    pub ok: bool,
    pub detail: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct PhaseRecord {
    pub phase: Phase,
    pub started_ms: u64,
    pub ended_ms: Option<u64>,
    pub steps: Vec<StepRecord>,
}

/// One probe result.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    pub probe: String,
    /// When the probe was sent.
    pub at_ms: u64,
    pub latency_ms: f64,
    pub phase: Phase,
    pub healthy: bool,
    /// A request the profile denies was served: access wider than promised.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub widened: bool,
    pub outcome: String,
}

/// The record of one drill run.
#[derive(Debug)]
pub struct Timeline {
    started: Instant,
    pub phases: Vec<PhaseRecord>,
    pub samples: Vec<Sample>,
}

impl Timeline {
    pub fn new(started: Instant) -> Self {
        Timeline {
            started,
            phases: Vec::new(),
            samples: Vec::new(),
        }
    }

    pub fn now_ms(&self) -> u64 {
        ms(self.started.elapsed())
    }

    /// Milliseconds since the drill started at `at`.
    pub fn ms_at(&self, at: Instant) -> u64 {
        ms(at.saturating_duration_since(self.started))
    }

    /// The phase in progress (the last one begun).
    pub fn current(&self) -> Phase {
        self.phases.last().map_or(Phase::Setup, |p| p.phase)
    }

    /// Ends the phase in progress and begins `phase`.
    pub fn begin(&mut self, phase: Phase) {
        let now = self.now_ms();
        self.end_current(now);
        self.phases.push(PhaseRecord {
            phase,
            started_ms: now,
            ended_ms: None,
            steps: Vec::new(),
        });
    }

    pub fn end_current(&mut self, now: u64) {
        if let Some(last) = self.phases.last_mut() {
            if last.ended_ms.is_none() {
                last.ended_ms = Some(now);
            }
        }
    }

    /// Records a finished step in the phase in progress.
    pub fn step(&mut self, step: StepRecord) {
        if let Some(last) = self.phases.last_mut() {
            last.steps.push(step);
        }
    }

    pub fn phase(&self, phase: Phase) -> Option<&PhaseRecord> {
        self.phases.iter().find(|p| p.phase == phase)
    }

    pub fn push(&mut self, sample: Sample) {
        self.samples.push(sample);
    }
}

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The first unhealthy result of one of `probes` at or after `from_ms`.
pub fn first_failure<'a>(
    samples: &'a [Sample],
    probes: &BTreeSet<String>,
    from_ms: u64,
) -> Option<&'a Sample> {
    samples
        .iter()
        .filter(|s| s.at_ms >= from_ms && probes.contains(&s.probe) && !s.healthy)
        .min_by_key(|s| s.at_ms)
}

/// The start of the first sustained healthy window at or after `from_ms` (see the module docs).
pub fn sustained_window(
    samples: &[Sample],
    probes: &BTreeSet<String>,
    from_ms: u64,
    sustained_ms: u64,
    min_samples: usize,
) -> Option<u64> {
    if probes.is_empty() {
        return Some(from_ms);
    }
    let mut relevant: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at_ms >= from_ms && probes.contains(&s.probe))
        .collect();
    relevant.sort_by_key(|s| s.at_ms);
    let mut first_healthy: BTreeMap<&str, u64> = BTreeMap::new();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for s in relevant {
        if !s.healthy {
            first_healthy.clear();
            counts.clear();
            continue;
        }
        first_healthy.entry(&s.probe).or_insert(s.at_ms);
        *counts.entry(&s.probe).or_default() += 1;
        if first_healthy.len() < probes.len() {
            continue;
        }
        let start = first_healthy.values().copied().max().unwrap_or(s.at_ms);
        let enough = counts.values().all(|n| *n >= min_samples);
        if enough && s.at_ms.saturating_sub(start) >= sustained_ms {
            return Some(start);
        }
    }
    None
}

/// Unhealthy results of `probes` in `[from_ms, to_ms)`.
pub fn failed(samples: &[Sample], probes: &BTreeSet<String>, from_ms: u64, to_ms: u64) -> u64 {
    samples
        .iter()
        .filter(|s| {
            s.at_ms >= from_ms && s.at_ms < to_ms && probes.contains(&s.probe) && !s.healthy
        })
        .count() as u64
}

/// Results of `probes` in `[from_ms, to_ms)`.
pub fn sent(samples: &[Sample], probes: &BTreeSet<String>, from_ms: u64, to_ms: u64) -> u64 {
    samples
        .iter()
        .filter(|s| s.at_ms >= from_ms && s.at_ms < to_ms && probes.contains(&s.probe))
        .count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(probe: &str, at_ms: u64, healthy: bool) -> Sample {
        Sample {
            probe: probe.into(),
            at_ms,
            latency_ms: 1.0,
            phase: Phase::Recover,
            healthy,
            widened: false,
            outcome: String::new(),
        }
    }

    fn set(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn detection_is_the_first_failure_of_a_detection_probe_after_injection() {
        let samples = vec![
            sample("a", 10, false),
            sample("b", 20, false),
            sample("a", 30, true),
            sample("a", 40, false),
        ];
        assert_eq!(
            first_failure(&samples, &set(&["a"]), 15).map(|s| s.at_ms),
            Some(40)
        );
        assert_eq!(
            first_failure(&samples, &set(&["a", "b"]), 15).map(|s| s.at_ms),
            Some(20)
        );
        assert!(first_failure(&samples, &set(&["c"]), 0).is_none());
    }

    #[test]
    fn a_window_starts_when_the_last_probe_turns_healthy_and_must_hold() {
        let ab = set(&["a", "b"]);
        let mut samples = vec![
            sample("a", 100, false),
            sample("a", 150, true),
            sample("b", 160, false),
            sample("a", 200, true),
            sample("b", 300, true), // both healthy since 300 (a since 200, after b's failure)
            sample("a", 350, true),
            sample("b", 500, true),
            sample("a", 1290, true),
        ];
        // Not yet 1000 ms after 300.
        assert_eq!(sustained_window(&samples, &ab, 0, 1000, 2), None);
        samples.push(sample("a", 1300, true));
        assert_eq!(sustained_window(&samples, &ab, 0, 1000, 2), Some(300));
        // Each probe needs its minimum of healthy results inside the window.
        assert_eq!(sustained_window(&samples, &ab, 0, 1000, 3), None);
    }

    #[test]
    fn a_failure_inside_the_window_starts_it_over_and_the_first_window_counts() {
        let a = set(&["a"]);
        let samples = vec![
            sample("a", 0, true),
            sample("a", 400, false),
            sample("a", 500, true),
            sample("a", 1000, true),
            sample("a", 1600, true),
            sample("a", 1700, false),
            sample("a", 1800, true),
            sample("a", 3000, true),
        ];
        assert_eq!(sustained_window(&samples, &a, 0, 1000, 2), Some(500));
        assert_eq!(sustained_window(&samples, &a, 1650, 1000, 2), Some(1800));
    }

    #[test]
    fn failures_are_counted_per_range() {
        let samples = vec![
            sample("a", 0, false),
            sample("a", 10, false),
            sample("b", 20, false),
        ];
        assert_eq!(failed(&samples, &set(&["a"]), 5, 100), 1);
        assert_eq!(failed(&samples, &set(&["a", "b"]), 0, 100), 3);
        assert_eq!(sent(&samples, &set(&["a"]), 0, 100), 2);
    }
}

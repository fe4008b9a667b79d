//! `meshproof drill NAME…|--all`: what the command line does, as a library function the binary
//! calls ([`main`]).
//!
//! # Contract
//!
//! Loads the named drills (or every drill in the scenarios folder), runs them one after another
//! on a lab of their own, prints one progress line per phase and step to stderr (unless quiet) and
//! one result line per drill to stdout, writes the run's reports (the usual `junit.xml`,
//! `results.json`, … with one scenario per drill; `results.json` also holds every
//! [`DrillReport`] with its whole timeline under `drills`) to `--out` or `reports/<run-id>/`, and returns the exit code: 0 every drill
//! passed, 1 a drill failed, 2 a drill could not run (bad input, missing tool), 130 interrupted
//! (Ctrl-C: the drill in progress was undone first; the rest did not run).

use std::path::PathBuf;
use std::sync::Arc;

use time::OffsetDateTime;

use super::{CancelToken, Drill, DrillReport, DrillStatus, RunOptions, scenarios_dir};
use crate::results::RunResults;
use crate::target::lab::Lab;

/// The arguments of `meshproof drill`.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Drill names (or paths to drill files); ignored with `all`.
    pub names: Vec<String>,
    pub all: bool,
    /// Where drills live [default: `scenarios/`].
    pub scenarios: Option<PathBuf>,
    /// Report folder [default: `reports/<run-id>`].
    pub out: Option<PathBuf>,
    /// No per-phase progress lines.
    pub quiet: bool,
}

/// Runs `meshproof drill`; returns the process exit code.
pub fn main(options: Options) -> u8 {
    let dir = options.scenarios.clone().unwrap_or_else(scenarios_dir);
    let drills: Result<Vec<Drill>, _> = if options.all {
        super::load_dir(&dir)
    } else if options.names.is_empty() {
        eprintln!("error: name a drill or pass --all");
        return 2;
    } else {
        options.names.iter().map(|n| super::find(&dir, n)).collect()
    };
    let drills = match drills {
        Ok(d) if d.is_empty() => {
            eprintln!("error: {}: no drills", dir.display());
            return 2;
        }
        Ok(d) => d,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return 2;
        }
    };
    runtime.block_on(run_all(drills, options))
}

async fn run_all(drills: Vec<Drill>, options: Options) -> u8 {
    let now = OffsetDateTime::now_utc();
    let started = std::time::Instant::now();
    let lab = match Lab::new(now) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: lab: {e}");
            return 2;
        }
    };
    let observer: Option<super::Observer> = if options.quiet {
        None
    } else {
        Some(Arc::new(|e: &super::Event| {
            eprintln!("  {:>7} ms  {:<11} {}", e.at_ms, e.phase.name(), e.message);
        }))
    };
    let run_options = RunOptions {
        observer,
        ..RunOptions::default()
    };
    // One watcher for the whole command: a Ctrl-C between two drills stops the rest too.
    let token = CancelToken::new();
    let watcher = super::cancel_on_ctrl_c(token.clone());
    let mut reports: Vec<(Drill, DrillReport)> = Vec::new();
    for drill in drills {
        if token.is_cancelled() {
            break;
        }
        if !options.quiet {
            eprintln!(
                "drill {} ({}): {}",
                drill.name,
                drill.profile.name,
                drill.fault.kind.name()
            );
        }
        let report = super::run_with_cancel(&drill, &lab, &run_options, &token).await;
        if report.status == DrillStatus::Interrupted {
            eprintln!(
                "interrupted: the drill's fault was undone ({})",
                if report.undo.verified {
                    "verified"
                } else {
                    "NOT verified"
                }
            );
        }
        println!("{}", line(&report));
        let interrupted = report.status == DrillStatus::Interrupted;
        reports.push((drill, report));
        if interrupted {
            break;
        }
    }
    watcher.abort();
    let interrupted = token.is_cancelled();
    let results = RunResults {
        run_id: crate::runner::run_id(now),
        meshproof_version: env!("CARGO_PKG_VERSION").to_owned(),
        target: "lab".to_owned(),
        started: crate::checks::rfc3339(now),
        duration: started.elapsed(),
        tags: Some("@drills".into()),
        profiles: Vec::new(),
        versions: [("meshproof".to_owned(), env!("CARGO_PKG_VERSION").to_owned())]
            .into_iter()
            .chain(lab.envoy_version().map(|v| ("envoy".to_owned(), v)))
            .collect(),
        scenarios: reports
            .iter()
            .map(|(d, r)| super::scenario_result(d, r))
            .collect(),
        harness_errors: Vec::new(),
        bench: None,
        drills: reports.iter().map(|(_, r)| r.clone()).collect(),
    };
    let dir = options
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("reports").join(&results.run_id));
    if let Err(e) = crate::report::write_all(&results, &dir) {
        eprintln!("error: cannot write reports to {}: {e}", dir.display());
        return 2;
    }
    println!("reports: {}", dir.display());
    let statuses: Vec<DrillStatus> = results.drills.iter().map(|r| r.status).collect();
    if interrupted || statuses.contains(&DrillStatus::Interrupted) {
        130
    } else if statuses.contains(&DrillStatus::Error) {
        2
    } else if statuses.contains(&DrillStatus::Failed) {
        1
    } else {
        0
    }
}

fn line(r: &DrillReport) -> String {
    let t = |v: Option<u64>| v.map_or_else(|| "—".to_owned(), |v| format!("{v} ms"));
    let head = format!(
        "{:<11} {} · {}: detect {}, recover {}, {} failed of {}",
        match r.status {
            DrillStatus::Passed => "PASS",
            DrillStatus::Failed => "FAIL",
            DrillStatus::Error => "ERROR",
            DrillStatus::Interrupted => "INTERRUPTED",
        },
        r.profile,
        r.name,
        t(r.time_to_detect_ms),
        t(r.time_to_recover_ms),
        r.failed_requests,
        r.requests
    );
    match (&r.error, r.findings.is_empty()) {
        (Some(e), _) => format!("{head}\n    {e}"),
        (None, false) => format!("{head}\n    {}", r.findings.join("\n    ")),
        (None, true) => head,
    }
}

//! `meshproof bench`: how fast meshproof verifies, measured in one run on one machine, side by
//! side with what users would otherwise run.
//!
//! [`run_all`] measures, each figure as the median of several repetitions with the smallest and
//! largest sample beside it:
//!
//! 1. [`lab`] — the full lab run of the bundled profiles through [`crate::runner::run`], cold and
//!    warm, the lab mesh start-up, and the run's peak memory (this process and its Envoys);
//! 2. [`probes`] — probes per second through Envoy mTLS, new connection and keep-alive, beside
//!    the raw rustls handshake rate and an Envoy direct-response rate (the ceilings);
//! 3. [`scaling`] — static `verify` on synthetic profiles ([`synthetic`]) of growing size;
//! 4. [`admission`] — in-process Rego beside `gator test`, `gator verify` and `gator bench`;
//! 5. report generation for 10,000 results ([`crate::report::bench_generate`]).
//!
//! The result is a [`BenchReport`] (serializable, with two SVG plots for the HTML report) judged
//! against the targets ([`TargetCheck`]); [`render_table`] prints it.
//!
//! Nothing here asserts on time: a section that cannot run (no Envoy, no gator) says why in its
//! [`Section`], and the rest still runs. Measure on a quiet machine with a release build
//! ([`procfs::Machine::build`] records which it was).

pub mod admission;
pub mod lab;
pub mod probes;
pub mod procfs;
pub mod scaling;
pub mod stats;
pub mod svg;
pub mod synthetic;
mod table;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

pub use stats::Stat;

/// The scenarios a "full lab run" times: the runbook checklist, without the game-day drills.
pub const CHECKLIST_TAGS: &str = "not @drills";
pub use table::{render_html, render_markdown, render_table};

/// The parts of the benchmark, for `--only`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Part {
    Lab,
    Probes,
    Verify,
    Admission,
    Report,
}

impl Part {
    pub const ALL: [Part; 5] = [
        Part::Lab,
        Part::Probes,
        Part::Verify,
        Part::Admission,
        Part::Report,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Part::Lab => "lab",
            Part::Probes => "probes",
            Part::Verify => "verify",
            Part::Admission => "admission",
            Part::Report => "report",
        }
    }

    pub fn parse(text: &str) -> Option<Part> {
        Part::ALL.into_iter().find(|p| p.name() == text.trim())
    }
}

/// What to measure and how much.
#[derive(Clone, Debug, Serialize)]
pub struct BenchOptions {
    pub parts: Vec<Part>,
    /// Profiles of the lab runs (default: every bundled profile).
    pub profiles: Vec<PathBuf>,
    /// Features of the lab runs (default: the project's `features/`).
    pub features: PathBuf,
    /// Repetitions of every micro-benchmark (probes, verify, admission, report).
    pub repetitions: usize,
    /// Warm lab runs in this process.
    pub lab_runs: usize,
    /// Cold lab runs as new `meshproof run` processes (0 skips; needs `meshproof_bin`).
    pub cold_processes: usize,
    /// The `meshproof` binary for cold runs (the CLI passes its own executable).
    pub meshproof_bin: Option<PathBuf>,
    /// Lab mesh start-up repetitions per profile.
    pub startup_runs: usize,
    /// Sample the peak memory of one more full lab run.
    pub memory: bool,
    /// Run each feature file alone once, to see what each costs by itself.
    pub per_feature: bool,
    /// New-connection probes per sample.
    pub probes: usize,
    /// Keep-alive requests per sample.
    pub keepalive_requests: usize,
    /// Concurrent probe workers for the concurrent rows.
    pub concurrency: usize,
    /// Services of the synthetic profiles.
    pub verify_sizes: Vec<usize>,
    pub intents_per_service: usize,
    /// A verify size projected to take longer than this (all repetitions) is not attempted.
    pub verify_budget: Duration,
    /// Results in the synthetic report run.
    pub report_results: usize,
    /// Objects in the amortised `gator test` run.
    pub admission_objects: usize,
    pub gator: Option<PathBuf>,
    pub gator_bench_iterations: usize,
    /// Print what is being measured to stderr as it goes.
    pub progress: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            parts: Part::ALL.to_vec(),
            profiles: crate::profile::resolve("all").unwrap_or_default(),
            features: default_features(),
            repetitions: 5,
            lab_runs: 4,
            cold_processes: 3,
            meshproof_bin: None,
            startup_runs: 3,
            memory: true,
            per_feature: true,
            probes: 300,
            keepalive_requests: 3000,
            concurrency: 4,
            verify_sizes: vec![100, 300, 1000, 5000],
            intents_per_service: 10,
            verify_budget: Duration::from_secs(300),
            report_results: 10_000,
            admission_objects: 200,
            gator: None,
            gator_bench_iterations: 1000,
            progress: true,
        }
    }
}

impl BenchOptions {
    /// Tiny sizes that exercise every code path in seconds (for tests; the figures mean nothing).
    pub fn smoke() -> Self {
        BenchOptions {
            repetitions: 2,
            lab_runs: 1,
            cold_processes: 0,
            startup_runs: 1,
            memory: true,
            per_feature: true,
            probes: 10,
            keepalive_requests: 20,
            concurrency: 2,
            verify_sizes: vec![4, 12],
            intents_per_service: 3,
            verify_budget: Duration::from_secs(60),
            report_results: 40,
            admission_objects: 12,
            gator_bench_iterations: 5,
            progress: false,
            ..BenchOptions::default()
        }
    }
}

/// The project's `features/` (as `meshproof run` finds it).
pub fn default_features() -> PathBuf {
    let local = PathBuf::from("features");
    if local.is_dir() {
        local
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("features")
    }
}

/// One part's outcome.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome", content = "value")]
pub enum Section<T> {
    Measured(T),
    /// Not asked for (`--only`).
    NotRun,
    /// Could not run: why (a missing tool, a failed setup).
    Failed(String),
}

impl<T> Section<T> {
    pub fn measured(&self) -> Option<&T> {
        match self {
            Section::Measured(t) => Some(t),
            _ => None,
        }
    }
}

/// Report generation for a synthetic run.
#[derive(Clone, Debug, Serialize)]
pub struct ReportBench {
    pub results: usize,
    /// Seconds to write every format and the signed evidence bundle.
    pub seconds: Stat,
}

/// One of the targets, judged.
#[derive(Clone, Debug, Serialize)]
pub struct TargetCheck {
    pub name: String,
    /// The target, e.g. `≤ 10 s`.
    pub target: String,
    /// What was measured, e.g. `12.3 s`.
    pub measured: String,
    /// `None` when the figure is missing.
    pub met: Option<bool>,
    /// What bounds the figure, as measured in this run.
    pub bound: String,
}

/// SVG plots for the HTML report (self-contained `<svg>` elements).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Plots {
    pub verify_scaling: Option<String>,
    pub probe_rates: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub meshproof_version: String,
    /// RFC 3339, UTC.
    pub started: String,
    pub wall_seconds: f64,
    pub machine: procfs::Machine,
    /// 1-minute load average when the run ended.
    pub load_average_end: f64,
    pub envoy_version: Option<String>,
    pub options: BenchOptions,
    pub lab: Section<lab::LabBench>,
    pub probes: Section<probes::ProbeBench>,
    pub verify: Section<scaling::ScalingBench>,
    pub admission: Section<admission::AdmissionBench>,
    pub report: Section<ReportBench>,
    pub targets: Vec<TargetCheck>,
    pub plots: Plots,
}

fn say(options: &BenchOptions, what: &str) {
    if options.progress {
        eprintln!("bench: {what}");
    }
}

/// Runs every part in `options.parts`, in an order that keeps them from disturbing each other:
/// the lab (memory included) first, before the synthetic verify grows the heap.
///
/// Drive it from a current-thread Tokio runtime, as `meshproof run` drives the lab, so the lab
/// figures are the ones users get; it works on any runtime.
pub async fn run_all(options: BenchOptions) -> BenchReport {
    let started = Instant::now();
    let started_at = crate::checks::rfc3339(time::OffsetDateTime::now_utc());
    let machine = procfs::Machine::detect();
    let wants = |p: Part| options.parts.contains(&p);
    let envoy_version = crate::target::lab::envoy::EnvoyBinary::locate()
        .ok()
        .map(|b| b.version().to_owned());

    let lab = if wants(Part::Lab) {
        let o = lab::LabOptions {
            profiles: options.profiles.clone(),
            features: options.features.clone(),
            tags: Some(CHECKLIST_TAGS.to_owned()),
            warm_runs: options.lab_runs,
            cold_processes: options.cold_processes,
            meshproof_bin: options.meshproof_bin.clone(),
            startup_runs: options.startup_runs,
            memory: options.memory,
            per_feature: options.per_feature,
        };
        match lab::measure(&o, |w| say(&options, w)).await {
            Ok(b) => Section::Measured(b),
            Err(e) => Section::Failed(e),
        }
    } else {
        Section::NotRun
    };

    let probes = if wants(Part::Probes) {
        say(
            &options,
            "probes: starting Envoys and the raw rustls server",
        );
        let o = probes::ProbeOptions {
            probes: options.probes,
            keepalive_requests: options.keepalive_requests,
            concurrency: options.concurrency,
            repetitions: options.repetitions,
        };
        match probes::measure(&o).await {
            Ok(b) => Section::Measured(b),
            Err(e) => Section::Failed(e),
        }
    } else {
        Section::NotRun
    };

    let admission = if wants(Part::Admission) {
        say(&options, "admission: in-process Rego and gator");
        let o = admission::AdmissionOptions {
            repetitions: options.repetitions,
            many_objects: options.admission_objects,
            gator: options.gator.clone(),
            gator_bench_iterations: options.gator_bench_iterations,
        };
        match admission::measure(&o) {
            Ok(b) => Section::Measured(b),
            Err(e) => Section::Failed(e),
        }
    } else {
        Section::NotRun
    };

    let report = if wants(Part::Report) {
        say(
            &options,
            &format!("report: generating {} results", options.report_results),
        );
        let mut samples = Vec::new();
        let mut failure = None;
        for _ in 0..options.repetitions.max(1) {
            match crate::report::bench_generate(options.report_results) {
                Ok(d) => samples.push(d),
                Err(e) => {
                    failure = Some(e.to_string());
                    break;
                }
            }
        }
        match failure {
            Some(e) => Section::Failed(e),
            None => Section::Measured(ReportBench {
                results: options.report_results,
                seconds: Stat::of_durations(&samples),
            }),
        }
    } else {
        Section::NotRun
    };

    let verify = if wants(Part::Verify) {
        let o = scaling::ScalingOptions {
            sizes: options.verify_sizes.clone(),
            intents_per_service: options.intents_per_service,
            repetitions: options.repetitions,
            budget: options.verify_budget,
        };
        Section::Measured(scaling::measure(&o, |w| say(&options, w)))
    } else {
        Section::NotRun
    };

    let mut report = BenchReport {
        meshproof_version: env!("CARGO_PKG_VERSION").to_owned(),
        started: started_at,
        wall_seconds: 0.0,
        machine,
        load_average_end: 0.0,
        envoy_version,
        options,
        lab,
        probes,
        verify,
        admission,
        report,
        targets: Vec::new(),
        plots: Plots::default(),
    };
    report.targets = targets(&report);
    report.plots = Plots {
        verify_scaling: report.verify.measured().map(svg::verify_scaling),
        probe_rates: report.probes.measured().map(svg::probe_rates),
    };
    report.wall_seconds = started.elapsed().as_secs_f64();
    report.load_average_end = procfs::load_average().unwrap_or(0.0);
    report
}

/// What the lab run's wall time is made of: the critical path (scenarios run concurrently, so
/// the wall is at least the longest one) against the CPU it used.
fn lab_bound(l: &lab::LabBench) -> String {
    use stats::num;
    let wall = l.checklist_seconds();
    let cores = procfs::Machine::detect().cpus.max(1) as f64;
    let cpu = l.cpu_seconds.median;
    let mut text = match l.per_feature.first() {
        Some(f) => format!(
            "the slowest feature alone takes {} s ({}, slowest scenario {})",
            num(f.wall_seconds),
            f.feature,
            f.slowest
                .as_ref()
                .map(|(s, n)| format!("{} s: {n}", num(*s)))
                .unwrap_or_default()
        ),
        None => match l.last.slowest.first() {
            Some((s, name)) => format!("longest scenario {} s ({name})", num(*s)),
            None => "no scenario".into(),
        },
    };
    text.push_str(&format!(
        "; CPU {} s of the {} core-seconds the wall allowed ({:.0} %): {}",
        num(cpu),
        num(wall * cores),
        cpu / (wall * cores) * 100.0,
        if cpu < 0.6 * wall * cores {
            "waiting (real-time TTLs, process start-up), not computing, dominates"
        } else {
            "CPU-bound"
        }
    ));
    if !l.all_passed {
        text.push_str("; NOT every scenario passed, so the time is not a checklist pass");
    }
    text
}

/// The four targets, judged on this report's figures.
pub fn targets(report: &BenchReport) -> Vec<TargetCheck> {
    use stats::num;
    let mut out = Vec::new();

    let lab = report.lab.measured();
    out.push(TargetCheck {
        name: "full lab checklist, both profiles".into(),
        target: "≤ 10 s wall on 2 cores".into(),
        measured: lab
            .map(|l| {
                format!(
                    "{} s warm median (cold {} s)",
                    num(l.checklist_seconds()),
                    num(l.cold_in_process.median)
                )
            })
            .unwrap_or_else(|| "not measured".into()),
        met: lab.map(|l| l.all_passed && l.checklist_seconds() <= 10.0),
        bound: lab.map(lab_bound).unwrap_or_default(),
    });

    let probes = report.probes.measured();
    let ratio = probes.and_then(|p| {
        p.ratio(
            probes::ProbePath::EnvoyEcho,
            probes::ProbePath::RawRustls,
            probes::ProbeMode::NewConnection,
            1,
        )
    });
    out.push(TargetCheck {
        name: "new-connection probe rate through Envoy".into(),
        target: "≥ 0.5 × raw rustls handshake rate".into(),
        measured: match (probes, ratio) {
            (Some(p), Some(r)) => {
                let rate = |path| {
                    p.row(path, probes::ProbeMode::NewConnection, 1)
                        .map(|row| num(row.rate.median))
                        .unwrap_or_default()
                };
                format!(
                    "{:.2} × ({} /s vs {} /s, sequential)",
                    r,
                    rate(probes::ProbePath::EnvoyEcho),
                    rate(probes::ProbePath::RawRustls)
                )
            }
            _ => "not measured".into(),
        },
        met: ratio.map(|r| r >= 0.5),
        bound: probes
            .and_then(|p| {
                let direct = p.ratio(
                    probes::ProbePath::EnvoyDirect,
                    probes::ProbePath::RawRustls,
                    probes::ProbeMode::NewConnection,
                    1,
                )?;
                Some(format!(
                    "Envoy's own TLS termination: a direct-response Envoy reaches {:.2} × the raw rate, so the echo app costs the rest",
                    direct
                ))
            })
            .unwrap_or_default(),
    });

    let verify = report.verify.measured();
    let thousand = verify.and_then(|v| v.point(1000));
    out.push(TargetCheck {
        name: "static verify, 1,000 services".into(),
        target: "≤ 1 s and close to linear".into(),
        measured: match (thousand, verify) {
            (Some(p), Some(v)) if p.measured => format!(
                "{} s; time ∝ services^{}",
                num(p.total.median),
                v.exponent
                    .map(|k| format!("{k:.2}"))
                    .unwrap_or_else(|| "?".into())
            ),
            (Some(p), _) => format!(
                "not run ({}); projected {} s",
                p.skipped.clone().unwrap_or_default(),
                p.projected_seconds.map(num).unwrap_or_else(|| "?".into())
            ),
            _ => "not measured".into(),
        },
        met: match (thousand, verify) {
            (Some(p), Some(v)) if p.measured => Some(
                p.total.median <= 1.0 && p.not_passed == 0 && v.exponent.is_some_and(|k| k <= 1.2),
            ),
            (Some(_), _) => Some(false),
            _ => None,
        },
        bound: thousand
            .filter(|p| p.measured)
            .map(|p| {
                format!(
                    "{}; verify {} s of {} s, load {} s, parse {} s",
                    p.coverage
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                    num(p.verify.median),
                    num(p.total.median),
                    num(p.load.median),
                    num(p.parse.median)
                )
            })
            .unwrap_or_default(),
    });

    let admission = report.admission.measured();
    let speedup = admission.and_then(admission::AdmissionBench::speedup_vs_invocation);
    out.push(TargetCheck {
        name: "in-process admission vs invoking gator".into(),
        target: "≥ 10 × faster per object".into(),
        measured: match (admission, speedup) {
            (Some(a), Some(s)) => format!(
                "{} × ({} µs vs {} µs per object, {} objects per gator test); {} × against one gator test of {} objects",
                num(s),
                num(a.in_process_us.median),
                a.gator_test.as_ref().map(|g| num(g.per_object_us)).unwrap_or_default(),
                a.objects,
                a.speedup_vs_amortised().map(num).unwrap_or_else(|| "?".into()),
                a.gator_test_many.as_ref().map(|g| g.objects).unwrap_or(0),
            ),
            (Some(a), None) => a.gator_missing.clone().unwrap_or_else(|| "gator not measured".into()),
            _ => "not measured".into(),
        },
        met: speedup.map(|s| s >= 10.0),
        bound: admission
            .map(|a| match (&a.gator_bench, a.speedup_vs_engine()) {
                (Some(b), Some(e)) => format!(
                    "gator's process start-up and template compilation (setup {} ms); engine against engine (gator bench, {} per review) in process is {} ×",
                    b.setup_us.map(|u| num(u / 1000.0)).unwrap_or_else(|| "?".into()),
                    b.mean_us.map(|u| format!("{} µs", num(u))).unwrap_or_default(),
                    num(e)
                ),
                _ => String::new(),
            })
            .unwrap_or_default(),
    });
    out
}

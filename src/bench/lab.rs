//! The full lab run ([`crate::runner::run`]: every feature, both bundled profiles, real Envoy
//! sidecars), cold and warm, its peak memory, and how long the lab meshes take to start.
//!
//! * **cold, in process** — the first run in this process: Envoy processes spawned for the first
//!   time, lazily-initialised state (crypto providers, compiled regexes) built. One sample per
//!   process by nature.
//! * **cold, new process** — `meshproof run --quiet --out <tmp>` as a child process, several
//!   times: what a user waits for (process start and report writing included).
//! * **warm** — further runs in this process. Each still starts its own Envoys (a run owns its
//!   lab), so "warm" means warm caches and initialised state, not a mesh kept running.
//! * **memory** — one more run with a sampler: this process's `VmHWM` (reset first through
//!   `/proc/self/clear_refs`, so earlier work does not count) and its children's RSS (the
//!   Envoys, SPIRE when the features start it), summed at the peak sample.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::procfs::{self, ChildPeak, ChildSampler};
use super::stats::Stat;
use crate::results::{RunResults, Status};
use crate::runner::{self, RunOptions};

#[derive(Clone, Debug, Serialize)]
pub struct LabOptions {
    pub profiles: Vec<PathBuf>,
    pub features: PathBuf,
    /// Which scenarios make "the checklist" (a cucumber tag expression). The game-day drills
    /// (`@drills`) are not part of it: they are timed by their own scenarios, a minute or two each.
    pub tags: Option<String>,
    /// Warm runs in this process.
    pub warm_runs: usize,
    /// Cold runs as new `meshproof run` processes (needs `meshproof_bin`).
    pub cold_processes: usize,
    pub meshproof_bin: Option<PathBuf>,
    /// Mesh start-up repetitions per profile (0 skips).
    pub startup_runs: usize,
    /// Measure peak memory in one extra run.
    pub memory: bool,
    /// Diagnostic: run each feature file alone once (what each costs by itself).
    pub per_feature: bool,
}

/// What one run did.
#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    pub scenarios: usize,
    pub passed: usize,
    pub not_passed: usize,
    /// Of those not passed: failed, skipped (a step without definition), harness error.
    pub failed: usize,
    pub skipped: usize,
    pub errors: usize,
    pub harness_errors: usize,
    /// Up to five scenarios that did not pass.
    pub failing: Vec<String>,
    /// The ten slowest scenarios: (seconds, `file:line name`).
    pub slowest: Vec<(f64, String)>,
    /// Seconds per feature file (sum of its scenarios; scenarios run concurrently, so these
    /// add up to more than the wall time).
    pub by_feature: BTreeMap<String, f64>,
}

impl RunSummary {
    fn of(results: &RunResults) -> RunSummary {
        let passed = results
            .scenarios
            .iter()
            .filter(|s| s.status == Status::Passed)
            .count();
        let failing = results
            .scenarios
            .iter()
            .filter(|s| s.status != Status::Passed)
            .take(5)
            .map(|s| format!("{}:{} {} ({:?})", s.file, s.line, s.name, s.status))
            .collect();
        let mut slowest: Vec<(f64, String)> = results
            .scenarios
            .iter()
            .map(|s| {
                (
                    s.duration.as_secs_f64(),
                    format!("{}:{} {}", s.file, s.line, s.name),
                )
            })
            .collect();
        slowest.sort_by(|a, b| b.0.total_cmp(&a.0));
        slowest.truncate(10);
        let mut by_feature = BTreeMap::new();
        for s in &results.scenarios {
            *by_feature.entry(s.file.clone()).or_insert(0.0) += s.duration.as_secs_f64();
        }
        let count = |status: Status| {
            results
                .scenarios
                .iter()
                .filter(|s| s.status == status)
                .count()
        };
        RunSummary {
            scenarios: results.scenarios.len(),
            passed,
            not_passed: results.scenarios.len() - passed,
            failed: count(Status::Failed),
            skipped: count(Status::Skipped),
            errors: count(Status::Error),
            harness_errors: results.harness_errors.len(),
            failing,
            slowest,
            by_feature,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct MemoryBench {
    /// Wall seconds of the sampled run (not part of the timing figures).
    pub wall_seconds: f64,
    /// `VmHWM` of this process over the run, in KiB, and whether it could be reset first (if
    /// not, it is the peak of the whole process's life so far).
    pub own_hwm_kib: u64,
    pub own_hwm_reset: bool,
    /// RSS of this process before the run, in KiB.
    pub own_rss_before_kib: u64,
    pub children: ChildPeak,
}

impl MemoryBench {
    /// This process's peak plus its children's peak summed RSS, in KiB.
    pub fn total_kib(&self) -> u64 {
        self.own_hwm_kib + self.children.peak_rss_sum_kib
    }

    /// The same with the children's PSS (shared binary pages counted once), in KiB.
    pub fn total_pss_kib(&self) -> u64 {
        self.own_hwm_kib + self.children.peak_pss_sum_kib
    }
}

/// One feature file run alone (both profiles), once.
#[derive(Clone, Debug, Serialize)]
pub struct FeatureRun {
    pub feature: String,
    pub wall_seconds: f64,
    pub cpu_seconds: f64,
    pub scenarios: usize,
    pub not_passed: usize,
    /// Its slowest scenario: (seconds, name).
    pub slowest: Option<(f64, String)>,
}

#[derive(Clone, Debug, Serialize)]
pub struct MeshStartup {
    pub profile: String,
    pub workloads: usize,
    /// Seconds until the profile's lab mesh is ready (`Lab::mesh`): its identity provider
    /// (SPIRE server and agents, for a SPIRE profile) and every sidecar, per repetition.
    pub seconds: Stat,
    /// The sidecars' part of it: first Envoy spawned to the last one ready (with its SVID).
    pub sidecars: Stat,
}

#[derive(Clone, Debug, Serialize)]
pub struct LabBench {
    pub profiles: Vec<String>,
    pub features: Vec<String>,
    /// Wall seconds.
    pub cold_in_process: Stat,
    pub cold_process: Option<Stat>,
    pub cold_process_note: Option<String>,
    pub warm: Stat,
    /// CPU seconds (this process + its reaped children: Envoy, SPIRE) per in-process run.
    pub cpu_seconds: Stat,
    /// The runner's own duration of each in-process run (cold then warm), seconds.
    pub runner_seconds: Stat,
    /// The last in-process run.
    pub last: RunSummary,
    /// Whether every in-process run passed every scenario.
    pub all_passed: bool,
    pub startup: Vec<MeshStartup>,
    pub memory: Option<MemoryBench>,
    /// Each feature file alone, slowest first.
    pub per_feature: Vec<FeatureRun>,
}

impl LabBench {
    /// The figure the ≤ 10 s target is judged on: the warm median when there is one, else cold.
    pub fn checklist_seconds(&self) -> f64 {
        if self.warm.n() > 0 {
            self.warm.median
        } else {
            self.cold_in_process.median
        }
    }
}

fn options_for(o: &LabOptions) -> RunOptions {
    RunOptions {
        profiles: o.profiles.clone(),
        features: o.features.clone(),
        tags: o.tags.clone(),
        progress: false,
        retries: 0,
        manifests: None,
    }
}

/// One in-process run: (wall, CPU seconds of this process and its reaped children, results).
async fn one_run(o: &LabOptions) -> Result<(Duration, f64, RunResults), String> {
    let cpu = || procfs::cpu_seconds().map(|(own, children)| own + children);
    let cpu_before = cpu();
    let started = Instant::now();
    let results = runner::run(options_for(o))
        .await
        .map_err(|e| format!("lab run: {e}"))?;
    let wall = started.elapsed();
    let used = match (cpu_before, cpu()) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    };
    Ok((wall, used, results))
}

fn feature_files(dir: &std::path::Path) -> Vec<String> {
    if dir.is_file() {
        return vec![dir.display().to_string()];
    }
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "feature"))
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// `meshproof run` in a new process, timed; Ok(wall) only when it exits 0.
fn cold_process(bin: &std::path::Path, o: &LabOptions) -> Result<Duration, String> {
    let out = super::probes::Scratch::new("run")?;
    let mut command = Command::new(bin);
    command
        .arg("run")
        .arg("--quiet")
        .arg("--out")
        .arg(out.path());
    command.arg("--features").arg(&o.features);
    if let Some(tags) = &o.tags {
        command.arg("--tags").arg(tags);
    }
    if o.profiles.len() == 1 {
        command.arg("--profile").arg(&o.profiles[0]);
    }
    let started = Instant::now();
    let output = command
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    let wall = started.elapsed();
    if output.status.success() {
        Ok(wall)
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let last = stderr
            .lines()
            .chain(stdout.lines())
            .rfind(|l| !l.trim().is_empty())
            .unwrap_or("")
            .chars()
            .take(300)
            .collect::<String>();
        Err(format!(
            "`{} run` exited {}: {last}",
            bin.display(),
            output.status
        ))
    }
}

async fn mesh_startup(o: &LabOptions) -> Result<Vec<MeshStartup>, String> {
    let mut out = Vec::new();
    let loaded = runner::load_profiles(&o.profiles).map_err(|e| e.to_string())?;
    for (profile, _) in loaded {
        let configured = Arc::new(
            crate::configured::load(&profile, &crate::configured::default_dir(&profile))
                .map_err(|e| e.to_string())?,
        );
        let mut samples = Vec::new();
        let mut sidecars = Vec::new();
        let mut workloads = 0;
        for _ in 0..o.startup_runs {
            let lab = crate::target::lab::Lab::new(time::OffsetDateTime::now_utc())
                .map_err(|e| format!("lab: {e}"))?;
            // The CA and SVIDs are built before timing: this is Envoy start-up.
            crate::target::lab::Lab::pki(&lab, &profile).map_err(|e| e.to_string())?;
            let started = Instant::now();
            let mesh = lab
                .mesh(&profile, &configured)
                .await
                .map_err(|e| e.to_string())?;
            samples.push(started.elapsed());
            sidecars.push(mesh.started_in);
            workloads = mesh.workloads.len();
            drop(mesh);
            drop(lab);
        }
        out.push(MeshStartup {
            profile: profile.name.clone(),
            workloads,
            seconds: Stat::of_durations(&samples),
            sidecars: Stat::of_durations(&sidecars),
        });
    }
    Ok(out)
}

pub async fn measure(o: &LabOptions, mut progress: impl FnMut(&str)) -> Result<LabBench, String> {
    let loaded = runner::load_profiles(&o.profiles).map_err(|e| e.to_string())?;
    let profiles: Vec<String> = loaded.iter().map(|(p, _)| p.name.clone()).collect();
    progress("lab: cold run (first in this process)");
    let (cold, cold_cpu, results) = one_run(o).await?;
    let mut cpu = vec![cold_cpu];
    let mut all_passed = RunSummary::of(&results).not_passed == 0;
    let mut runner_seconds = vec![results.duration];
    let mut last = RunSummary::of(&results);
    let mut warm = Vec::new();
    for i in 0..o.warm_runs {
        progress(&format!("lab: warm run {}/{}", i + 1, o.warm_runs));
        let (wall, used, results) = one_run(o).await?;
        cpu.push(used);
        let summary = RunSummary::of(&results);
        all_passed &= summary.not_passed == 0;
        runner_seconds.push(results.duration);
        warm.push(wall);
        last = summary;
    }

    let mut cold_process_note = None;
    let cold_process = match (&o.meshproof_bin, o.cold_processes) {
        (_, 0) => None,
        (None, _) => {
            cold_process_note = Some("no meshproof binary to start (pass --bin)".into());
            None
        }
        (Some(bin), n) => {
            let mut walls = Vec::new();
            for i in 0..n {
                progress(&format!("lab: cold run in a new process {}/{n}", i + 1));
                match cold_process(bin, o) {
                    Ok(w) => walls.push(w),
                    Err(e) => {
                        cold_process_note = Some(e);
                        break;
                    }
                }
            }
            (!walls.is_empty()).then(|| Stat::of_durations(&walls))
        }
    };

    let startup = if o.startup_runs > 0 {
        progress("lab: mesh start-up per profile");
        mesh_startup(o).await?
    } else {
        Vec::new()
    };

    let memory = if o.memory {
        progress("lab: memory run");
        let before = procfs::own_memory().map(|m| m.rss_kib).unwrap_or(0);
        let reset = procfs::reset_own_peak();
        let sampler = ChildSampler::start(Duration::from_millis(50));
        let started = Instant::now();
        let outcome = one_run(o).await;
        let wall = started.elapsed();
        let children = sampler.finish();
        let own = procfs::own_memory().map(|m| m.hwm_kib).unwrap_or(0);
        let (_, _, results) = outcome?;
        all_passed &= RunSummary::of(&results).not_passed == 0;
        Some(MemoryBench {
            wall_seconds: wall.as_secs_f64(),
            own_hwm_kib: own,
            own_hwm_reset: reset,
            own_rss_before_kib: before,
            children,
        })
    } else {
        None
    };

    let mut per_feature = Vec::new();
    if o.per_feature && o.features.is_dir() {
        for file in feature_files(&o.features) {
            progress(&format!("lab: {file} alone"));
            let alone = LabOptions {
                features: o.features.join(&file),
                ..o.clone()
            };
            let (wall, cpu, results) = one_run(&alone).await?;
            let summary = RunSummary::of(&results);
            per_feature.push(FeatureRun {
                feature: file,
                wall_seconds: wall.as_secs_f64(),
                cpu_seconds: cpu,
                scenarios: summary.scenarios,
                not_passed: summary.not_passed,
                slowest: summary.slowest.first().cloned(),
            });
        }
        per_feature.sort_by(|a, b| b.wall_seconds.total_cmp(&a.wall_seconds));
    }

    Ok(LabBench {
        per_feature,
        profiles,
        features: feature_files(&o.features),
        cold_in_process: Stat::of_durations(&[cold]),
        cold_process,
        cold_process_note,
        warm: Stat::of_durations(&warm),
        cpu_seconds: Stat::of(cpu),
        runner_seconds: Stat::of_durations(&runner_seconds),
        last,
        all_passed,
        startup,
        memory,
    })
}

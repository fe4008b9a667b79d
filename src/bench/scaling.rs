//! Static `verify` on synthetic profiles (see [`super::synthetic`]): the scaling curve.
//!
//! Each repetition does what `meshproof verify` does for one profile: parse and validate the
//! profile text, load the rendered manifests folder (Istio policies + Gatekeeper objects), and
//! judge every verdict ([`crate::verify::verify`], with its default-deny sample). Generating and
//! rendering the synthetic profile is setup and is not part of the figure.
//!
//! A size is only attempted when its memory and time, projected along the curve measured so far,
//! fit in half of `MemAvailable` and in the budget; otherwise the point is reported as projected
//! from the measured ones, never as measured.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::procfs;
use super::stats::{Stat, fitted_exponent};
use super::synthetic::SyntheticMesh;
use crate::results::Status;
use crate::verify::{Coverage, Sampling};

#[derive(Clone, Debug, Serialize)]
pub struct ScalingOptions {
    pub sizes: Vec<usize>,
    pub intents_per_service: usize,
    pub repetitions: usize,
    /// A size whose projected time (all repetitions) exceeds this is not attempted.
    pub budget: Duration,
}

/// One size of the curve.
#[derive(Clone, Debug, Serialize)]
pub struct ScalingPoint {
    pub services: usize,
    pub intents: usize,
    /// What verify judged: pairs, default-deny sample, requests (`None` when not measured).
    pub coverage: Option<Coverage>,
    /// Measured, or skipped with the reason and projections.
    pub measured: bool,
    pub skipped: Option<String>,
    /// Verdicts `verify` returned, and how many did not pass (must be 0: the manifests are a
    /// faithful render).
    pub verdicts: usize,
    pub not_passed: usize,
    /// Seconds per phase and in total (parse + load + verify).
    pub parse: Stat,
    pub load: Stat,
    pub verify: Stat,
    pub total: Stat,
    /// Generating and rendering the synthetic manifests (setup, seconds, once).
    pub setup_seconds: f64,
    /// Manifest files the render was written to.
    pub manifest_files: usize,
    /// Peak RSS growth over the process's RSS before the first repetition, in KiB.
    pub peak_memory_kib: Option<u64>,
    /// For a skipped point: projected seconds and KiB.
    pub projected_seconds: Option<f64>,
    pub projected_memory_kib: Option<u64>,
}

impl ScalingPoint {
    /// Median total per service, in milliseconds.
    pub fn ms_per_service(&self) -> Option<f64> {
        (self.measured && self.services > 0)
            .then(|| self.total.median * 1000.0 / self.services as f64)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ScalingBench {
    pub options: ScalingOptions,
    pub points: Vec<ScalingPoint>,
    /// k of `time ∝ services^k`, fitted over the measured points (1 = linear).
    pub exponent: Option<f64>,
}

impl ScalingBench {
    pub fn point(&self, services: usize) -> Option<&ScalingPoint> {
        self.points.iter().find(|p| p.services == services)
    }
}

fn skipped(services: usize, k: usize, reason: String) -> ScalingPoint {
    ScalingPoint {
        services,
        intents: services * k.min(services.saturating_sub(1)),
        coverage: None,
        measured: false,
        skipped: Some(reason),
        verdicts: 0,
        not_passed: 0,
        parse: Stat::default(),
        load: Stat::default(),
        verify: Stat::default(),
        total: Stat::default(),
        setup_seconds: 0.0,
        manifest_files: 0,
        peak_memory_kib: None,
        projected_seconds: None,
        projected_memory_kib: None,
    }
}

/// Projects (seconds, KiB) for `services` from the measured points, along the fitted exponent
/// through the largest measured point (quadratic when only one point is known: the worst this
/// code has ever been).
fn project(points: &[ScalingPoint], services: usize) -> (Option<f64>, Option<u64>) {
    let measured: Vec<&ScalingPoint> = points.iter().filter(|p| p.measured).collect();
    let Some(last) = measured.iter().max_by_key(|p| p.services) else {
        return (None, None);
    };
    let curve: Vec<(f64, f64)> = measured
        .iter()
        .map(|p| (p.services as f64, p.total.median))
        .collect();
    let k = fitted_exponent(&curve).unwrap_or(2.0).max(1.0);
    let growth = (services as f64 / last.services as f64).powf(k);
    let seconds = last.total.median * growth;
    let memory = last.peak_memory_kib.map(|m| (m as f64 * growth) as u64);
    (Some(seconds), memory)
}

/// Seconds to parse, load and verify, and what verify returned.
struct Repetition {
    parse: f64,
    load: f64,
    verify: f64,
    verdicts: usize,
    not_passed: usize,
    coverage: Coverage,
}

fn one_repetition(mesh: &SyntheticMesh) -> Result<Repetition, String> {
    let t0 = Instant::now();
    let profile = crate::profile::parse(&mesh.profile_path, &mesh.yaml)
        .map_err(|e| format!("synthetic profile: {e}"))?;
    let t1 = Instant::now();
    let configured = crate::configured::load(&profile, &mesh.dir)
        .map_err(|e| format!("synthetic manifests: {e}"))?;
    let t2 = Instant::now();
    let verification = crate::verify::verify(&profile, &configured, Sampling::DefaultDeny);
    let t3 = Instant::now();
    let not_passed = verification
        .results
        .iter()
        .filter(|r| r.status != Status::Passed)
        .count();
    let verdicts = verification.results.len();
    drop(configured);
    Ok(Repetition {
        parse: (t1 - t0).as_secs_f64(),
        load: (t2 - t1).as_secs_f64(),
        verify: (t3 - t2).as_secs_f64(),
        verdicts,
        not_passed,
        coverage: verification.coverage,
    })
}

pub fn measure(options: &ScalingOptions, mut progress: impl FnMut(&str)) -> ScalingBench {
    let k = options.intents_per_service;
    let mut points: Vec<ScalingPoint> = Vec::new();
    let mut sizes = options.sizes.clone();
    sizes.sort_unstable();
    sizes.dedup();
    let scratch = match super::probes::Scratch::new("verify") {
        Ok(s) => s,
        Err(e) => {
            return ScalingBench {
                options: options.clone(),
                points: sizes
                    .iter()
                    .map(|&n| skipped(n, k, format!("no scratch folder: {e}")))
                    .collect(),
                exponent: None,
            };
        }
    };
    for &n in &sizes {
        if n < 2 {
            points.push(skipped(n, k, "needs at least 2 services".into()));
            continue;
        }
        let (projected_seconds, projected_memory) = project(&points, n);
        let skip = |reason: String| {
            let mut p = skipped(n, k, reason);
            p.projected_seconds = projected_seconds;
            p.projected_memory_kib = projected_memory;
            p
        };
        // Generating, parsing and rendering is linear and cheap next to verify: done first, so
        // a profile the loader refuses is reported as such whatever the projections say.
        let setup = Instant::now();
        let mesh = match SyntheticMesh::create(scratch.path(), n, k) {
            Ok(m) => m,
            Err(e) => {
                points.push(skip(format!("not run: {e}")));
                continue;
            }
        };
        let setup_seconds = setup.elapsed().as_secs_f64();
        if let (Some(need), Some(have)) = (projected_memory, procfs::mem_available_kib()) {
            if need > have / 2 {
                points.push(skip(format!(
                    "not run: projected to need ~{} MiB, more than half of the {} MiB available",
                    need / 1024,
                    have / 1024
                )));
                continue;
            }
        }
        let mut repetitions = options.repetitions.max(1);
        if let Some(seconds) = projected_seconds {
            if seconds > options.budget.as_secs_f64() {
                points.push(skip(format!(
                    "not run: projected {:.0} s for one repetition exceeds the {} s budget",
                    seconds,
                    options.budget.as_secs()
                )));
                continue;
            }
            let fit = (options.budget.as_secs_f64() / seconds.max(1e-9)).floor() as usize;
            repetitions = repetitions.min(fit.max(1));
        }
        progress(&format!(
            "verify: {n} services, {repetitions} repetition(s)"
        ));
        let baseline = procfs::own_memory().map(|m| m.rss_kib);
        let reset = procfs::reset_own_peak();
        let (mut parse, mut load, mut verify, mut total) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut last = None;
        let mut failure = None;
        for _ in 0..repetitions {
            match one_repetition(&mesh) {
                Ok(r) => {
                    parse.push(r.parse);
                    load.push(r.load);
                    verify.push(r.verify);
                    total.push(r.parse + r.load + r.verify);
                    last = Some(r);
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let peak = match (reset, baseline, procfs::own_memory()) {
            (true, Some(base), Some(now)) => Some(now.hwm_kib.saturating_sub(base)),
            _ => None,
        };
        let last = match (failure, last) {
            (None, Some(last)) => last,
            (failure, _) => {
                points.push(skipped(n, k, failure.unwrap_or_else(|| "not run".into())));
                continue;
            }
        };
        points.push(ScalingPoint {
            services: n,
            intents: mesh.intents,
            coverage: Some(last.coverage),
            measured: true,
            skipped: None,
            verdicts: last.verdicts,
            not_passed: last.not_passed,
            parse: Stat::of(parse),
            load: Stat::of(load),
            verify: Stat::of(verify),
            total: Stat::of(total),
            setup_seconds,
            manifest_files: mesh.manifest_files,
            peak_memory_kib: peak,
            projected_seconds: None,
            projected_memory_kib: None,
        });
    }
    let curve: Vec<(f64, f64)> = points
        .iter()
        .filter(|p| p.measured)
        .map(|p| (p.services as f64, p.total.median))
        .collect();
    ScalingBench {
        options: options.clone(),
        exponent: fitted_exponent(&curve),
        points,
    }
}

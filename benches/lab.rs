//! The full lab run: every feature, both bundled profiles, real Envoy sidecars, through
//! `meshproof::runner::run` on a current-thread runtime (as `meshproof run` drives it). Each
//! sample is one whole run (seconds), so criterion's minimum of 10 samples takes minutes.
//! Needs Envoy (and SPIRE for the @spire features); without them the run fails and this says so.

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use meshproof::runner::{self, RunOptions};

fn lab(c: &mut Criterion) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("no runtime: {e}");
            return;
        }
    };
    let profiles = meshproof::profile::resolve("all").unwrap_or_default();
    let features = meshproof::bench::default_features();
    let options = || RunOptions {
        profiles: profiles.clone(),
        features: features.clone(),
        tags: None,
        progress: false,
        retries: 0,
        manifests: None,
    };
    if let Err(e) = runtime.block_on(runner::run(options())) {
        eprintln!("the lab cannot run here: {e}");
        return;
    }
    let mut group = c.benchmark_group("lab");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(120));
    group.bench_function("full run, both profiles", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let started = Instant::now();
                match runtime.block_on(runner::run(options())) {
                    Ok(results) if results.exit_code() == 0 => total += started.elapsed(),
                    Ok(results) => {
                        eprintln!("the lab run did not pass (exit {})", results.exit_code());
                        total += started.elapsed();
                    }
                    Err(e) => {
                        eprintln!("lab run: {e}");
                        total += Duration::from_secs(3600);
                    }
                }
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, lab);
criterion_main!(benches);

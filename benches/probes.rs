//! Probes through Envoy mTLS, one per iteration, beside their ceilings: the raw rustls
//! handshake (in-process server) and an Envoy direct response; new connection and keep-alive.
//! Needs Envoy (scripts/setup installs it); without it this bench says so and measures nothing.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use meshproof::bench::probes::{ProbeLab, ProbeMode, ProbePath};

fn probes(c: &mut Criterion) {
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
    let lab = match runtime.block_on(ProbeLab::start()) {
        Ok(lab) => lab,
        Err(e) => {
            eprintln!("probe lab not started (is Envoy installed? run scripts/setup): {e}");
            return;
        }
    };
    for mode in [ProbeMode::NewConnection, ProbeMode::KeepAlive] {
        let mut group = c.benchmark_group(format!("probe {}", mode.label()));
        group.measurement_time(Duration::from_secs(5));
        for path in [
            ProbePath::RawRustls,
            ProbePath::EnvoyDirect,
            ProbePath::EnvoyEcho,
            ProbePath::IntentPath,
        ] {
            group.bench_function(BenchmarkId::from_parameter(path.short()), |b| {
                b.iter_custom(|iters| {
                    let n = usize::try_from(iters).unwrap_or(usize::MAX);
                    match runtime.block_on(lab.run(path, mode, n, 1)) {
                        Ok((_, 0, secs)) => Duration::from_secs_f64(secs),
                        Ok((_, failed, _)) => {
                            eprintln!("{}: {failed} probes failed", path.label());
                            Duration::from_secs(3600)
                        }
                        Err(e) => {
                            eprintln!("{e}");
                            Duration::from_secs(3600)
                        }
                    }
                })
            });
        }
        group.finish();
    }
    runtime.block_on(lab.shutdown());
}

criterion_group!(benches, probes);
criterion_main!(benches);

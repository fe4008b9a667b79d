//! Report generation (every format and the signed evidence bundle) for synthetic runs of 1,000
//! and 10,000 check results; only the writing is timed (`meshproof::report::bench_generate`).

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

fn report(c: &mut Criterion) {
    let mut group = c.benchmark_group("report");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(30));
    for results in [1_000usize, 10_000] {
        group.throughput(Throughput::Elements(results as u64));
        group.bench_function(BenchmarkId::from_parameter(results), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    match meshproof::report::bench_generate(results) {
                        Ok(d) => total += d,
                        Err(e) => {
                            eprintln!("report generation failed: {e}");
                            return Duration::from_secs(3600);
                        }
                    }
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group!(benches, report);
criterion_main!(benches);

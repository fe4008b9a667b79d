//! Static `verify` (parse the profile, load the rendered manifests, judge every verdict with the
//! default-deny sample) on synthetic profiles of growing size; see `meshproof::bench::synthetic`.
//! `meshproof bench --parts verify` runs the full curve (100 to 5,000 services) with its memory
//! and time guards; this criterion bench keeps to 100 and 1,000 services.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use meshproof::bench::synthetic::SyntheticMesh;

fn verify(c: &mut Criterion) {
    let scratch =
        std::env::temp_dir().join(format!("meshproof-criterion-verify-{}", std::process::id()));
    let mut group = c.benchmark_group("verify");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    for services in [100usize, 1000] {
        let mesh = match SyntheticMesh::create(&scratch, services, 10) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("synthetic profile of {services} services: {e}");
                continue;
            }
        };
        group.throughput(Throughput::Elements(services as u64));
        group.bench_with_input(BenchmarkId::from_parameter(services), &mesh, |b, mesh| {
            b.iter(|| {
                let Ok(profile) = meshproof::profile::parse(&mesh.profile_path, &mesh.yaml) else {
                    return 0;
                };
                let Ok(configured) = meshproof::configured::load(&profile, &mesh.dir) else {
                    return 0;
                };
                let verification = meshproof::verify::verify(
                    &profile,
                    &configured,
                    meshproof::verify::Sampling::DefaultDeny,
                );
                black_box(verification.results).len()
            })
        });
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&scratch);
}

criterion_group!(benches, verify);
criterion_main!(benches);

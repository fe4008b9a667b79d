//! In-process admission: every SomaAgentHub constraint (rendered from its profile) against each
//! of the runbook's pods and the profile's Deployments, per object. `meshproof bench` puts this
//! beside `gator test`, `gator verify` and `gator bench` in the same run.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use meshproof::policy::gatekeeper::{Admission, Operation, render_templates};

fn admission(c: &mut Criterion) {
    let Some(path) = meshproof::profile::resolve("soma-agent-hub")
        .ok()
        .and_then(|p| p.into_iter().next())
    else {
        eprintln!("no soma-agent-hub profile");
        return;
    };
    let Ok(profile) = meshproof::profile::load(&path) else {
        eprintln!("soma-agent-hub profile does not load");
        return;
    };
    let Ok(admission) =
        Admission::from_objects(Path::new("<rendered>"), &render_templates(&profile))
    else {
        eprintln!("rendered templates do not load");
        return;
    };
    let Ok(objects) = meshproof::bench::admission::base_objects(&profile) else {
        eprintln!("objects do not load");
        return;
    };
    let mut group = c.benchmark_group("admission");
    group.throughput(Throughput::Elements(objects.len() as u64));
    group.bench_function("review every object (in process)", |b| {
        b.iter(|| {
            for (_, object) in &objects {
                black_box(admission.review(black_box(object), Operation::Create));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, admission);
criterion_main!(benches);

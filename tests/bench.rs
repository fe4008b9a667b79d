//! `meshproof bench` code paths with tiny sizes: every part runs and produces well-formed,
//! correct results (every verify verdict passes, every probe gets its 200, gator agrees). No
//! assertion here is about time: the figures of a smoke run mean nothing.
//!
//! Needs Envoy for the lab and probe parts and gator for the comparison; without them those parts
//! must say why, unless MESHPROOF_REQUIRE_ENVOY=1 / MESHPROOF_REQUIRE_GATOR=1, where they must
//! have been measured.
//!
//! The full benchmark is the ignored `full_benchmark_prints_the_table` (use a release build):
//! `cargo test --release --test bench -- --ignored --nocapture`.

use std::path::PathBuf;

use meshproof::bench::{self, BenchOptions, BenchReport, Part, Section};

fn required(var: &str) -> bool {
    std::env::var(var).as_deref() == Ok("1")
}

fn smoke_options() -> BenchOptions {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    BenchOptions {
        // One profile and one feature with live scenarios keep the lab part short.
        profiles: vec![root.join("manifests/tradepulse/profile.yaml")],
        features: root.join("features/mtls.feature"),
        ..BenchOptions::smoke()
    }
}

fn needs_tool<T>(section: &Section<T>, what: &str, tool: &str, require: &str) {
    match section {
        Section::Measured(_) => {}
        Section::Failed(e) if !required(require) && e.to_lowercase().contains(tool) => {
            eprintln!("*** {what} not measured ({e}); {require} is not set ***");
        }
        Section::Failed(e) => panic!("{what} failed: {e}"),
        Section::NotRun => panic!("{what} was not run"),
    }
}

fn check_report(report: &BenchReport) {
    // Static verify: every size measured, every verdict passes (the manifests are a render).
    let verify = report.verify.measured().expect("verify measured");
    assert_eq!(verify.points.len(), 2);
    for p in &verify.points {
        assert!(p.measured, "{} services: {:?}", p.services, p.skipped);
        assert!(p.verdicts > 0);
        assert_eq!(p.not_passed, 0, "{} services", p.services);
        assert_eq!(p.total.n(), 2);
        assert!(p.total.median > 0.0);
    }

    let report_gen = report
        .report
        .measured()
        .expect("report generation measured");
    assert_eq!(report_gen.results, 40);
    assert_eq!(report_gen.seconds.n(), 2);

    let admission = report.admission.measured().expect("admission measured");
    assert_eq!(admission.constraints, 4);
    assert!(admission.objects >= 4);
    assert!(admission.violations >= 4, "the runbook's bad pods violate");
    match (&admission.gator_test, &admission.gator_missing) {
        (Some(_), _) => {
            for run in [
                &admission.gator_test,
                &admission.gator_test_many,
                &admission.gator_verify,
            ]
            .into_iter()
            .flatten()
            {
                assert_eq!(run.agrees, Some(true), "{}: {:?}", run.command, run.note);
            }
            assert!(admission.gator_bench.is_some(), "gator bench output read");
        }
        (None, Some(why)) => {
            assert!(
                !required("MESHPROOF_REQUIRE_GATOR"),
                "gator required: {why}"
            );
            eprintln!("*** gator not measured: {why} ***");
        }
        (None, None) => panic!("no gator figures and no reason"),
    }

    needs_tool(&report.probes, "probes", "envoy", "MESHPROOF_REQUIRE_ENVOY");
    if let Some(p) = report.probes.measured() {
        assert_eq!(p.rows.len(), 16, "4 paths × 2 modes × 2 concurrencies");
        for row in &p.rows {
            assert_eq!(row.failed, 0, "{row:?}");
            assert!(row.sent > 0 && row.rate.median > 0.0, "{row:?}");
        }
    }

    needs_tool(&report.lab, "lab", "envoy", "MESHPROOF_REQUIRE_ENVOY");
    if let Some(l) = report.lab.measured() {
        assert!(l.all_passed, "{:?}", l.last.failing);
        assert!(l.last.scenarios > 0);
        assert_eq!(l.warm.n(), 1);
        assert_eq!(l.startup.len(), 1);
        let memory = l.memory.as_ref().expect("memory sampled");
        assert!(memory.own_hwm_kib > 0);
        assert!(
            memory.children.by_name.contains_key("envoy"),
            "{:?}",
            memory.children
        );
    }

    assert_eq!(report.targets.len(), 4);
    let table = bench::render_table(report);
    for heading in [
        "1. Full lab run",
        "2. Probes",
        "3. Static verify",
        "4. Admission",
        "5. Report generation",
        "Targets",
    ] {
        assert!(table.contains(heading), "{heading} missing:\n{table}");
    }
    let markdown = bench::render_markdown(report);
    assert!(markdown.contains("| services |"), "{markdown}");
    let svgs = [&report.plots.verify_scaling, &report.plots.probe_rates];
    for svg in svgs.into_iter().flatten() {
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<svg").count(), 1);
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    }
    assert!(report.plots.verify_scaling.is_some());
    assert_eq!(
        report.plots.probe_rates.is_some(),
        report.probes.measured().is_some()
    );
    let json = serde_json::to_string(report).expect("the report serializes");
    assert!(json.contains("\"verify\""));
    println!("{table}");
}

#[test]
fn every_benchmark_part_runs_with_tiny_sizes() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let report = runtime.block_on(bench::run_all(smoke_options()));
    check_report(&report);
}

#[test]
fn parts_not_asked_for_are_not_run() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let options = BenchOptions {
        parts: vec![Part::Report],
        ..smoke_options()
    };
    let report = runtime.block_on(bench::run_all(options));
    assert!(report.report.measured().is_some());
    assert!(matches!(report.lab, Section::NotRun));
    assert!(matches!(report.verify, Section::NotRun));
    assert!(report.plots.verify_scaling.is_none());
    let table = bench::render_table(&report);
    assert!(table.contains("not run (--only)"), "{table}");
}

/// The whole benchmark with the default sizes; prints the table and writes it (Markdown and
/// JSON) to `target/bench/`. Parts can be chosen with MESHPROOF_BENCH_ONLY=lab,probes,…, verify
/// sizes with MESHPROOF_BENCH_VERIFY_SIZES=100,1000, repetitions with MESHPROOF_BENCH_REPS, and
/// the binary for cold-process runs with MESHPROOF_BENCH_BIN (default: target/release/meshproof).
#[test]
#[ignore = "the full benchmark takes minutes; run it on a quiet machine with --release"]
fn full_benchmark_prints_the_table() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut options = BenchOptions::default();
    if let Ok(only) = std::env::var("MESHPROOF_BENCH_ONLY") {
        options.parts = only.split(',').filter_map(Part::parse).collect();
    }
    if let Ok(sizes) = std::env::var("MESHPROOF_BENCH_VERIFY_SIZES") {
        options.verify_sizes = sizes
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect();
    }
    if let Some(reps) = std::env::var("MESHPROOF_BENCH_REPS")
        .ok()
        .and_then(|r| r.parse().ok())
    {
        options.repetitions = reps;
    }
    let bin = std::env::var_os("MESHPROOF_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/release/meshproof"));
    options.meshproof_bin = bin.is_file().then_some(bin);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let report = runtime.block_on(bench::run_all(options));
    let table = bench::render_table(&report);
    println!("{table}");
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out).expect("target/bench");
    std::fs::write(out.join("table.txt"), &table).expect("write table");
    std::fs::write(out.join("table.md"), bench::render_markdown(&report)).expect("write md");
    std::fs::write(
        out.join("bench.json"),
        serde_json::to_string_pretty(&report).expect("json"),
    )
    .expect("write json");
    for (name, svg) in [
        ("verify-scaling.svg", &report.plots.verify_scaling),
        ("probe-rates.svg", &report.plots.probe_rates),
    ] {
        if let Some(svg) = svg {
            std::fs::write(out.join(name), svg).expect("write svg");
        }
    }
}

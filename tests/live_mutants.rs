//! The live lab run against broken manifests: every mutant that changes traffic fails the run with
//! exit 1, and the failure quotes the request that was really sent and what came back. Needs Envoy
//! (scripts/setup installs it); without it the run is a harness error (exit 2), which also fails.

mod common;

use common::{meshproof, mutant, mutations};

fn live_run(profile: &str, manifests: &std::path::Path, tags: &str) -> (Option<i32>, String) {
    let out = tempfile::tempdir().unwrap();
    let o = meshproof(&[
        "run",
        "--profile",
        profile,
        "--manifests",
        manifests.to_str().unwrap(),
        "--tags",
        tags,
        "--out",
        out.path().to_str().unwrap(),
        "-q",
    ]);
    (
        o.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

fn assert_live_failure(profile: &str, dir: &std::path::Path, tags: &str, naming: &[&str]) {
    let (code, text) = live_run(profile, dir, tags);
    assert_eq!(code, Some(1), "the live run must fail (exit 1):\n{text}");
    for n in naming {
        assert!(text.contains(n), "the failure quotes {n:?}:\n{text}");
    }
}

#[test]
fn healthy_manifests_pass_live() {
    let dir = mutant("tradepulse", |_, t| t);
    let (code, text) = live_run("tradepulse", dir.path(), "@live");
    assert_eq!(code, Some(0), "{text}");
}

#[test]
fn allow_all_is_observed_as_widened_access() {
    let dir = mutant("tradepulse", mutations::allow_all());
    assert_live_failure(
        "tradepulse",
        dir.path(),
        "@live and @intents",
        &[
            "WIDENED ACCESS observed",
            "ingestion → execution GET /quotes/probe → HTTP 200",
        ],
    );
}

#[test]
fn permissive_is_observed_accepting_plaintext() {
    let dir = mutant("tradepulse", mutations::permissive());
    assert_live_failure(
        "tradepulse",
        dir.path(),
        "@live and @mtls",
        &["plaintext: ACCEPTED by the sidecar"],
    );
}

#[test]
fn a_deleted_allow_rule_is_observed_as_narrowed_access() {
    let dir = mutant("tradepulse", mutations::deleted_allow_rule());
    assert_live_failure(
        "tradepulse",
        dir.path(),
        "@live and @intents",
        &[
            "narrowed access observed",
            "strategy → execution GET /quotes/probe → HTTP 403",
        ],
    );
}

#[test]
fn a_path_typo_is_observed() {
    let dir = mutant("tradepulse", mutations::path_typo());
    assert_live_failure(
        "tradepulse",
        dir.path(),
        "@live and @intents",
        &["strategy → execution GET /quotes/probe → HTTP 403"],
    );
}

#[test]
fn a_wrong_principal_is_observed() {
    let dir = mutant("soma-agent-hub", mutations::wrong_principal());
    assert_live_failure(
        "soma-agent-hub",
        dir.path(),
        "@live and @intents",
        &["gateway-api → orchestrator GET /ready → HTTP 403"],
    );
}

#[test]
fn baseline_comparison_lists_widened_access_first() {
    let healthy = tempfile::tempdir().unwrap();
    let run =
        |manifests: &std::path::Path, out: &std::path::Path, baseline: Option<&std::path::Path>| {
            let mut args = vec![
                "run",
                "--profile",
                "tradepulse",
                "--tags",
                "@intents and @static",
                "-q",
                "--manifests",
            ];
            args.push(manifests.to_str().unwrap());
            args.extend(["--out", out.to_str().unwrap()]);
            if let Some(b) = baseline {
                args.extend(["--baseline", b.to_str().unwrap()]);
            }
            meshproof(&args)
        };
    let good = mutant("tradepulse", |_, t| t);
    assert_eq!(
        run(good.path(), healthy.path(), None).status.code(),
        Some(0)
    );
    let bad = mutant("tradepulse", mutations::allow_all());
    let now = tempfile::tempdir().unwrap();
    let o = run(bad.path(), now.path(), Some(healthy.path()));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("WIDENED  intent.static ingestion → execution GET /quotes/probe"),
        "{stdout}"
    );
    let md = std::fs::read_to_string(now.path().join("regressions.md")).unwrap();
    let widened = md.find("Widened access").unwrap();
    let newly = md.find("Newly failing").unwrap();
    assert!(widened < newly, "widened access is listed first:\n{md}");
}

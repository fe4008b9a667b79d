//! The `meshproof` binary as CI uses it: exit codes (0 passed, 1 a check failed, 2 the harness could
//! not run), one-line errors naming file and line, and no key material in output or reports.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn meshproof(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshproof"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("meshproof runs")
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Writes a mutated copy of a bundled profile into `dir`.
fn mutant(dir: &Path, name: &str, from: &str, to: &str) -> PathBuf {
    let original =
        std::fs::read_to_string(root().join("manifests").join(name).join("profile.yaml")).unwrap();
    assert!(original.contains(from), "anchor {from:?}");
    let path = dir.join("profile.yaml");
    std::fs::write(&path, original.replacen(from, to, 1)).unwrap();
    path
}

fn assert_one_line_error(o: &Output, file: &Path, naming: &str) {
    let (_, err) = text(o);
    assert_eq!(
        o.status.code(),
        Some(2),
        "exit 2 for bad input; stderr: {err}"
    );
    let first = err.lines().next().unwrap_or_default();
    assert!(
        first.contains(&format!("{}:", file.display())),
        "names the file: {first}"
    );
    let line: u32 = first
        .trim_start_matches("error: ")
        .trim_start_matches(&format!("{}:", file.display()))
        .split(':')
        .next()
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    assert!(line > 0, "names a line: {first}");
    assert!(
        first.contains(naming),
        "says what is wrong ({naming}): {first}"
    );
    assert!(!err.contains("panicked"), "never a panic: {err}");
}

#[test]
fn profile_check_passes_both_bundled_profiles() {
    let o = meshproof(
        &[
            "profile",
            "check",
            "manifests/tradepulse/profile.yaml",
            "manifests/soma-agent-hub/profile.yaml",
        ],
        &root(),
    );
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(
        out.contains("profile tradepulse, 5 services, 21 identities"),
        "{out}"
    );
}

#[test]
fn each_class_of_malformed_profile_exits_2_with_file_and_line() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "bad yaml",
            "  trustDomain: tradepulse\n",
            "  trustDomain: [tradepulse\n",
            "expected",
        ),
        (
            "unknown key",
            "  mtls: STRICT\n",
            "  mtls: STRICT\n  mtlz: STRICT\n",
            "unknown field `mtlz`",
        ),
        (
            "unknown service",
            "{ from: ui, to: strategy,",
            "{ from: ui, to: stratgy,",
            "unknown service \"stratgy\"",
        ),
        (
            "bad spiffe id",
            "  trustDomain: tradepulse\n",
            "  trustDomain: Trade_Pulse\n",
            "trustDomain",
        ),
        ("bad ttl", "ttl: 12h", "ttl: 0h", "ca.workload.ttl is zero"),
    ];
    for (class, from, to, naming) in cases {
        let dir = tempfile::tempdir().unwrap();
        let file = mutant(dir.path(), "tradepulse", from, to);
        for args in [
            vec!["profile", "check", file.to_str().unwrap()],
            vec!["run", "--profile", file.to_str().unwrap(), "-q"],
        ] {
            let o = meshproof(&args, &root());
            eprintln!("{class}: {}", text(&o).1.lines().next().unwrap_or_default());
            assert_one_line_error(&o, &file, naming);
        }
    }
}

#[test]
fn a_profile_breaking_its_spiffe_schema_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = mutant(
        dir.path(),
        "soma-agent-hub",
        "spiffeId: spiffe://soma-agent-hub.local/ns/soma-agent-hub/sa/gateway-api",
        "spiffeId: spiffe://soma-agent-hub.local/sa/gateway-api",
    );
    assert_one_line_error(
        &meshproof(&["profile", "check", file.to_str().unwrap()], &root()),
        &file,
        "breaks the profile's schema",
    );
}

#[test]
fn an_unknown_profile_name_or_bad_tag_expression_exits_2() {
    let o = meshproof(&["run", "--profile", "nope", "-q"], &root());
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o)
            .1
            .contains("expected all, tradepulse, soma-agent-hub"),
        "{}",
        text(&o).1
    );
    let o = meshproof(&["run", "--tags", "@pki and and", "-q"], &root());
    assert_eq!(o.status.code(), Some(2), "{}", text(&o).1);
    assert!(text(&o).1.contains("--tags"));
}

#[test]
fn a_failing_check_exits_1_and_passing_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let feature = dir.path().join("broken.feature");
    std::fs::write(
        &feature,
        "Feature: a check that must fail\n  Scenario: a valid ID is not refused\n    Then \"spiffe://tradepulse/prod/ui\" is refused as a SPIFFE ID, naming \"scheme\"\n",
    )
    .unwrap();
    let out = dir.path().join("reports");
    let o = meshproof(
        &[
            "run",
            "--features",
            feature.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "-q",
        ],
        &root(),
    );
    let (stdout, _) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("was accepted"),
        "the failure says why: {stdout}"
    );
    let junit = std::fs::read_to_string(out.join("junit.xml")).unwrap();
    assert!(junit.contains("<failure"), "{junit}");
}

#[test]
fn a_step_without_definition_is_not_a_pass() {
    let dir = tempfile::tempdir().unwrap();
    let feature = dir.path().join("typo.feature");
    std::fs::write(
        &feature,
        "Feature: typo\n  Scenario: unmatched\n    Then the mesh is secure, trust me\n",
    )
    .unwrap();
    let o = meshproof(
        &[
            "run",
            "--features",
            feature.to_str().unwrap(),
            "--out",
            dir.path().join("r").to_str().unwrap(),
            "-q",
        ],
        &root(),
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o).0);
}

#[test]
fn full_run_writes_junit_naming_every_service_and_no_key_material() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = meshproof(&["run", "--out", out.to_str().unwrap()], &root());
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stdout}{stderr}");
    let junit = std::fs::read_to_string(out.join("junit.xml")).unwrap();
    for service in [
        "ingestion",
        "strategy/optimizer",
        "strategy/backtester",
        "execution",
        "ui",
        "observability",
        "gateway-api",
        "orchestrator",
        "policy-engine",
        "identity-service",
        "ingress-gateway",
        "test-service",
    ] {
        assert!(junit.contains(service), "junit.xml names {service}");
    }
    let mut pending = vec![out.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let body = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
                assert!(
                    !body.contains("PRIVATE KEY"),
                    "{} holds key material",
                    path.display()
                );
            }
        }
    }
    assert!(!stdout.contains("PRIVATE KEY") && !stderr.contains("PRIVATE KEY"));
}

#[test]
fn pki_init_writes_plugin_ca_files_with_private_keys_0600_and_prints_no_key() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let o = meshproof(
        &[
            "pki",
            "init",
            "--profile",
            "tradepulse",
            "--out",
            dir.path().to_str().unwrap(),
        ],
        &root(),
    );
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stdout}{stderr}");
    assert!(!stdout.contains("PRIVATE KEY"));
    let cacerts = dir.path().join("tradepulse/cacerts");
    for file in [
        "ca-cert.pem",
        "ca-key.pem",
        "root-cert.pem",
        "cert-chain.pem",
    ] {
        assert!(cacerts.join(file).is_file(), "{file}");
    }
    let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(cacerts.join("ca-key.pem")), 0o600);
    assert_eq!(
        mode(
            dir.path()
                .join("tradepulse/workloads/strategy_optimizer@prod/key.pem")
        ),
        0o600
    );
}

#[test]
fn a_run_signed_with_a_given_key_verifies_against_that_key_only() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("release.key");
    let made = Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&key)
        .status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("openssl not available: skipping the signing-key round trip");
        return;
    }
    let out = dir.path().join("run");
    let o = meshproof(
        &[
            "run",
            "--tags",
            "@static and @identity",
            "-q",
            "--signing-key",
            key.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &root(),
    );
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stdout}{stderr}");
    let public = stdout
        .lines()
        .find_map(|l| l.split("signed by ").nth(1))
        .expect("the public key is printed")
        .trim()
        .to_owned();
    let ok = meshproof(
        &[
            "evidence",
            "verify",
            out.to_str().unwrap(),
            "--public-key",
            &public,
        ],
        &root(),
    );
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok).0);
    let other = "0".repeat(64);
    let bad = meshproof(
        &[
            "evidence",
            "verify",
            out.to_str().unwrap(),
            "--public-key",
            &other,
        ],
        &root(),
    );
    assert_eq!(
        bad.status.code(),
        Some(1),
        "a bundle checked against another key must fail: {}",
        text(&bad).0
    );
}

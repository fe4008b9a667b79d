//! Cross-check: Gatekeeper's own `gator` CLI must reach the same decisions, with the same messages,
//! as meshproof's in-process evaluation (`meshproof::policy::gatekeeper`), for the SomaAgentHub
//! runbook's four pods and the ConstraintTemplates and constraints rendered from its profile.
//!
//! gator is found through `MESHPROOF_GATOR`, then `PATH`, then `$MESHPROOF_CACHE/bin` (default
//! `~/.cache/meshproof/bin`, where `scripts/install/gator.sh` puts it). Without gator these tests
//! say so loudly and pass, unless `MESHPROOF_REQUIRE_GATOR=1`, where they fail.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use meshproof::policy::gatekeeper::{Admission, Operation, RUNBOOK_PODS, render_templates};
use meshproof::profile;
use serde_json::{Value, json};

fn find_gator() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("MESHPROOF_GATOR") {
        return Some(PathBuf::from(path));
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("gator");
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    let cache = std::env::var_os("MESHPROOF_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/meshproof")))?;
    let cached = cache.join("bin/gator");
    cached.is_file().then_some(cached)
}

/// gator, or `None` after saying loudly that the cross-check did not run.
fn gator() -> Option<PathBuf> {
    let found = find_gator();
    if found.is_none() {
        let message = "gator not installed: run scripts/setup (or set MESHPROOF_GATOR); \
                       the Gatekeeper cross-check did NOT run";
        // Straight to the process's stderr: libtest captures eprintln! of passing tests, and this
        // line must reach the CI log.
        let _ = writeln!(std::io::stderr(), "\n*** {message} ***\n");
        if std::env::var("MESHPROOF_REQUIRE_GATOR").as_deref() == Ok("1") {
            panic!("{message} (MESHPROOF_REQUIRE_GATOR=1)");
        }
    }
    found
}

struct Fixture {
    dir: tempfile::TempDir,
    admission: Admission,
    /// Constraint name → (template file, constraint file), relative to `dir`.
    constraints: BTreeMap<String, (String, String)>,
}

fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create dir");
    }
    std::fs::write(path, text).expect("write fixture");
}

/// The rendered SomaAgentHub policies and the runbook pods, written where gator can read them.
fn fixture() -> Fixture {
    let path = profile::manifests_root().join("soma-agent-hub/profile.yaml");
    let profile = profile::load(&path).unwrap_or_else(|e| panic!("profile: {e}"));
    let objects = render_templates(&profile);
    let admission = Admission::from_objects(Path::new("<rendered>"), &objects)
        .unwrap_or_else(|e| panic!("rendered policies: {e}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let mut template_files = BTreeMap::new();
    let mut constraints = BTreeMap::new();
    for object in &objects {
        let name = object["metadata"]["name"]
            .as_str()
            .expect("name")
            .to_owned();
        let yaml = serde_saphyr::to_string(object).expect("yaml");
        if object["kind"] == "ConstraintTemplate" {
            let kind = object["spec"]["crd"]["spec"]["names"]["kind"]
                .as_str()
                .expect("kind")
                .to_owned();
            let file = format!("policies/template-{name}.yaml");
            write(&dir.path().join(&file), &yaml);
            template_files.insert(kind, file);
        } else {
            let kind = object["kind"].as_str().expect("kind");
            let file = format!("policies/constraint-{name}.yaml");
            write(&dir.path().join(&file), &yaml);
            constraints.insert(name, (template_files[kind].clone(), file));
        }
    }
    for (name, text) in cases() {
        write(&dir.path().join(format!("objects/{name}.yaml")), &text);
    }
    Fixture {
        dir,
        admission,
        constraints,
    }
}

/// The objects both engines judge: the runbook's four pods verbatim, then workloads that exercise
/// the parts of the templates the runbook does not (pod templates, init and ephemeral containers,
/// partial resources, missing labels).
fn cases() -> Vec<(String, String)> {
    let container = |name: &str, image: &str| {
        json!({"name": name, "image": image, "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "500m", "memory": "512Mi"}}})
    };
    let labels = json!({"app": "test", "version": "v1"});
    let extras = [
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "bad-deployment", "namespace": "soma-agent-hub"},
            "spec": {"selector": {"matchLabels": {"app": "test"}}, "template": {
                "metadata": {"labels": {"app": "test"}},
                "spec": {"containers": [
                    {"name": "web", "image": "docker.io/nginx:1", "securityContext": {"privileged": true},
                     "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "1Gi"}}}]}}},
        }),
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "sneaky-init", "namespace": "soma-agent-hub", "labels": labels},
            "spec": {
                "initContainers": [{"name": "setup", "image": "quay.io/setup:1",
                    "securityContext": {"privileged": true}}],
                "containers": [container("app", "docker.io/alpine:latest")],
                "ephemeralContainers": [{"name": "debugger", "image": "ghcr.io/shell:1"}],
            },
        }),
        json!({
            "apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "nightly", "namespace": "soma-agent-hub"},
            "spec": {"schedule": "0 0 * * *", "jobTemplate": {"spec": {"template": {
                "metadata": {"labels": labels},
                "spec": {"restartPolicy": "Never",
                         "containers": [container("job", "docker.io/busybox:1")]}}}}},
        }),
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "elsewhere", "namespace": "other", "labels": {"app": "x"}},
            "spec": {"containers": [{"name": "app", "image": "evil.example/x:1",
                     "securityContext": {"privileged": true}}]},
        }),
    ];
    let mut out: Vec<(String, String)> = RUNBOOK_PODS
        .iter()
        .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
        .collect();
    for object in extras {
        let name = object["metadata"]["name"]
            .as_str()
            .expect("name")
            .to_owned();
        out.push((name, serde_saphyr::to_string(&object).expect("yaml")));
    }
    out
}

fn object(name: &str) -> Value {
    let (_, text) = cases().into_iter().find(|(n, _)| n == name).expect("case");
    serde_saphyr::from_str(&text).expect("case YAML")
}

/// `(constraint, message)` of every violation meshproof finds for one case.
fn in_process(admission: &Admission, name: &str) -> Vec<(String, String)> {
    let result = admission.review(&object(name), Operation::Create);
    assert!(result.error.is_none(), "{name}: {result:?}");
    let mut found: Vec<(String, String)> = result
        .denials
        .iter()
        .chain(&result.warnings)
        .chain(&result.dry_run)
        .map(|v| (v.constraint.clone(), v.message.clone()))
        .collect();
    found.sort();
    found
}

fn run(gator: &Path, args: &[&str], dir: &Path) -> (i32, String, String) {
    let output = Command::new(gator)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", gator.display()));
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `gator verify` with a Suite whose assertions are meshproof's own decisions: for every
/// constraint and runbook pod, whether it is violated (`yes`/`no`), how often, and with which
/// exact messages. gator passes the suite only if Gatekeeper agrees on all of them.
#[test]
fn gator_verify_agrees_with_the_in_process_decisions() {
    let Some(gator) = gator() else { return };
    let fixture = fixture();
    let mut tests = Vec::new();
    let mut runbook_denials = 0;
    for (constraint, (template_file, constraint_file)) in &fixture.constraints {
        let mut suite_cases = Vec::new();
        for (name, _) in cases() {
            let messages: Vec<String> = in_process(&fixture.admission, &name)
                .into_iter()
                .filter(|(c, _)| c == constraint)
                .map(|(_, m)| m)
                .collect();
            if RUNBOOK_PODS.iter().any(|(n, _)| *n == name) {
                runbook_denials += messages.len();
            }
            let mut assertions = vec![
                json!({"violations": if messages.is_empty() { "no" } else { "yes" }}),
                json!({"violations": messages.len()}),
            ];
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for m in &messages {
                *counts.entry(m.as_str()).or_default() += 1;
            }
            for (message, count) in counts {
                assertions.push(json!({
                    "message": format!("^{}$", regex::escape(message)),
                    "violations": count,
                }));
            }
            suite_cases.push(json!({
                "name": name,
                "object": format!("objects/{name}.yaml"),
                "assertions": assertions,
            }));
        }
        tests.push(json!({
            "name": constraint,
            "template": template_file,
            "constraint": constraint_file,
            "cases": suite_cases,
        }));
    }
    // The runbook's three bad pods are denied: 1 + 1 + 2 (requests and limits).
    assert_eq!(runbook_denials, 4);
    let suite = json!({
        "kind": "Suite",
        "apiVersion": "test.gatekeeper.sh/v1alpha1",
        "metadata": {"name": "meshproof-soma-agent-hub-runbook"},
        "tests": tests,
    });
    let suite_file = fixture.dir.path().join("suite.yaml");
    write(
        &suite_file,
        &serde_saphyr::to_string(&suite).expect("suite yaml"),
    );
    let (code, stdout, stderr) = run(&gator, &["verify", "-v", "suite.yaml"], fixture.dir.path());
    println!("{stdout}{stderr}");
    assert_eq!(
        code, 0,
        "gator verify disagrees with meshproof (or could not run the suite):\n{stdout}\n{stderr}"
    );
    // Every case ran (a suite gator silently ignored would also exit 0).
    for constraint in fixture.constraints.keys() {
        assert!(
            stdout.contains(&format!("--- PASS: {constraint}\t")),
            "gator did not run the test for {constraint}:\n{stdout}"
        );
    }
    let passed = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("--- PASS: "))
        .count();
    assert_eq!(
        passed,
        fixture.constraints.len() * (cases().len() + 1),
        "{stdout}"
    );

    // The cross-check has teeth: one flipped expectation makes gator fail the suite.
    let mut flipped = suite;
    flipped["tests"][0]["cases"][3]["assertions"] = json!([{"violations": "yes"}]);
    write(
        &fixture.dir.path().join("flipped.yaml"),
        &serde_saphyr::to_string(&flipped).expect("suite yaml"),
    );
    let (code, stdout, stderr) = run(
        &gator,
        &["verify", "-v", "flipped.yaml"],
        fixture.dir.path(),
    );
    println!("{stdout}{stderr}");
    assert!(
        stdout.contains("--- FAIL: good-pod"),
        "the flipped case did not fail:\n{stdout}\n{stderr}"
    );
    assert_ne!(
        code, 0,
        "gator accepted a wrong expectation:\n{stdout}\n{stderr}"
    );
}

/// `gator test` on each runbook pod against all rendered policies: the same constraints, the same
/// messages, and a non-zero exit exactly for the pods meshproof denies.
#[test]
fn gator_test_reports_the_same_violations() {
    let Some(gator) = gator() else { return };
    let fixture = fixture();
    for (name, _) in cases() {
        let object = format!("objects/{name}.yaml");
        let (code, stdout, stderr) = run(
            &gator,
            &["test", "-f", "policies", "-f", &object, "-o", "json"],
            fixture.dir.path(),
        );
        let expected = in_process(&fixture.admission, &name);
        let results: Value = if stdout.trim().is_empty() {
            json!([])
        } else {
            serde_json::from_str(&stdout).unwrap_or_else(|e| {
                panic!("{name}: gator output is not JSON ({e}):\n{stdout}\n{stderr}")
            })
        };
        let mut reported: Vec<(String, String)> = results
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|r| {
                let constraint = r
                    .pointer("/constraint/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let message = r.get("msg").and_then(Value::as_str).unwrap_or_default();
                (constraint.to_owned(), message.to_owned())
            })
            .collect();
        reported.sort();
        assert_eq!(reported, expected, "{name}: gator said\n{stdout}\n{stderr}");
        let denied = !expected.is_empty();
        assert_eq!(code != 0, denied, "{name}: gator exit {code}\n{stderr}");
    }
}

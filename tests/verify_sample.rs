//! `verify`'s default-deny sample on a mesh too large to judge every pair of (60 services, 10
//! intents each: 3,540 pairs, 488 of them judged): each mutant is still caught, by the sample
//! the module docs of `meshproof::verify::sample` say catches it, and the healthy render passes.

use std::path::Path;

use meshproof::bench::synthetic::SyntheticMesh;
use meshproof::results::{CheckResult, Status};
use meshproof::verify::{Sampling, Verification};

const SERVICES: usize = 60;

fn principal(i: usize) -> String {
    format!("synthetic.local/ns/team-{:04}/sa/svc-{i:05}", i / 10)
}

fn mesh() -> (tempfile::TempDir, SyntheticMesh) {
    let scratch = tempfile::tempdir().unwrap();
    let mesh = SyntheticMesh::create(scratch.path(), SERVICES, 10).unwrap();
    (scratch, mesh)
}

fn verify(mesh: &SyntheticMesh, sampling: Sampling) -> Verification {
    let profile = meshproof::profile::parse(&mesh.profile_path, &mesh.yaml).unwrap();
    let configured = meshproof::configured::load(&profile, &mesh.dir).unwrap();
    meshproof::verify::verify(&profile, &configured, sampling)
}

fn failed(v: &Verification) -> Vec<&CheckResult> {
    v.results
        .iter()
        .filter(|r| r.status != Status::Passed)
        .collect()
}

/// Rewrites the document of `file` whose text contains `marker`.
fn edit_document(dir: &Path, file: &str, marker: &str, edit: impl Fn(&str) -> String) {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(marker), "{file} has no {marker:?}");
    let docs: Vec<String> = text
        .split("\n---\n")
        .map(|d| {
            if d.contains(marker) {
                edit(d)
            } else {
                d.to_owned()
            }
        })
        .collect();
    std::fs::write(&path, docs.join("\n---\n")).unwrap();
}

fn append(dir: &Path, file: &str, yaml: &str) {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{text}---\n{yaml}")).unwrap();
}

fn widened_into(v: &Verification, callee: &str) -> usize {
    failed(v)
        .iter()
        .filter(|r| r.summary.starts_with("WIDENED ACCESS") && r.subject.contains(callee))
        .count()
}

#[test]
fn the_healthy_render_passes_and_only_a_sample_of_default_deny_pairs_is_judged() {
    let (_scratch, mesh) = mesh();
    let v = verify(&mesh, Sampling::DefaultDeny);
    assert!(failed(&v).is_empty(), "{:?}", failed(&v));
    let c = &v.coverage;
    assert_eq!(c.intended_pairs, SERVICES * 10);
    assert_eq!(
        c.default_deny_total,
        (SERVICES * (SERVICES - 1) - SERVICES * 10) as u64
    );
    assert!(
        (c.default_deny_judged as u64) < c.default_deny_total / 4,
        "{c:?}"
    );
    assert_eq!(
        v.results
            .iter()
            .filter(|r| r.check == "intent.static")
            .count(),
        c.requests
    );
}

#[test]
fn an_allow_all_in_one_namespace_widens_every_callee_of_it() {
    let (_scratch, mesh) = mesh();
    append(
        &mesh.dir,
        "authorization-policies.yaml",
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: allow-all\n  namespace: team-0003\nspec:\n  rules:\n  - {}\n",
    );
    let v = verify(&mesh, Sampling::DefaultDeny);
    for callee in 30..40 {
        let name = format!("→ svc-{callee:05} ");
        assert!(widened_into(&v, &name) > 0, "no widened access into {name}");
    }
    assert!(
        failed(&v)
            .iter()
            .all(|r| r.summary.contains("team-0003/allow-all"))
    );
}

#[test]
fn a_mesh_wide_allow_all_widens_every_callee() {
    let (_scratch, mesh) = mesh();
    append(
        &mesh.dir,
        "authorization-policies.yaml",
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: allow-all\n  namespace: istio-system\nspec:\n  rules:\n  - {}\n",
    );
    let v = verify(&mesh, Sampling::DefaultDeny);
    for callee in 0..SERVICES {
        let name = format!("→ svc-{callee:05} ");
        assert!(widened_into(&v, &name) > 0, "no widened access into {name}");
    }
}

#[test]
fn a_wrong_principal_is_narrowed_for_the_caller_and_widened_for_the_one_named() {
    let (_scratch, mesh) = mesh();
    // svc-00030 allows svc-00029 (an intent); the policy names svc-00045 instead, which has no
    // intent to svc-00030 and is neither its neighbour nor near it in profile order.
    edit_document(
        &mesh.dir,
        "authorization-policies.yaml",
        "name: svc-00030-intents",
        |d| d.replace(&principal(29), &principal(45)),
    );
    let v = verify(&mesh, Sampling::DefaultDeny);
    let summaries: Vec<&str> = failed(&v).iter().map(|r| r.summary.as_str()).collect();
    assert!(
        summaries
            .iter()
            .any(|s| s.starts_with("narrowed access: svc-00029 → svc-00030")),
        "{summaries:#?}"
    );
    assert!(
        summaries
            .iter()
            .any(|s| s.starts_with("WIDENED ACCESS: svc-00045 → svc-00030")),
        "{summaries:#?}"
    );
}

#[test]
fn a_namespace_wide_policy_naming_a_far_caller_widens_it_into_every_workload_there() {
    let (_scratch, mesh) = mesh();
    append(
        &mesh.dir,
        "authorization-policies.yaml",
        &format!(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: too-wide\n  namespace: team-0003\nspec:\n  rules:\n  - from:\n    - source:\n        principals: [\"{}\"]\n",
            principal(1)
        ),
    );
    let v = verify(&mesh, Sampling::DefaultDeny);
    for callee in 30..40 {
        let subject = format!("svc-00001 → svc-{callee:05} ");
        assert!(
            failed(&v).iter().any(
                |r| r.subject.starts_with(&subject) && r.summary.contains("team-0003/too-wide")
            ),
            "{subject} not caught"
        );
    }
}

#[test]
fn a_wildcard_principal_is_followed_to_the_callers_it_matches() {
    let (_scratch, mesh) = mesh();
    edit_document(
        &mesh.dir,
        "authorization-policies.yaml",
        "name: svc-00030-intents",
        |d| d.replacen(&principal(29), "synthetic.local/ns/team-0005/*", 1),
    );
    let v = verify(&mesh, Sampling::DefaultDeny);
    assert!(
        failed(&v).iter().any(|r| {
            r.summary.starts_with("WIDENED ACCESS: svc-0005") && r.subject.contains("→ svc-00030 ")
        }),
        "{:#?}",
        failed(&v)
    );
}

#[test]
fn a_deleted_allow_rule_is_narrowed_access() {
    let (_scratch, mesh) = mesh();
    edit_document(
        &mesh.dir,
        "authorization-policies.yaml",
        "name: svc-00030-intents",
        |d| {
            let rule = format!(
                "  - from:\n    - source:\n        principals:\n        - {}\n",
                principal(29)
            );
            let start = d.find(&rule).expect("the rule for svc-00029");
            let end = d[start + rule.len()..]
                .find("  - from:")
                .map_or(d.len(), |e| start + rule.len() + e);
            format!("{}{}", &d[..start], &d[end..])
        },
    );
    let v = verify(&mesh, Sampling::DefaultDeny);
    assert!(
        failed(&v).iter().any(|r| r
            .summary
            .starts_with("narrowed access: svc-00029 → svc-00030")),
        "{:#?}",
        failed(&v)
    );
}

#[test]
fn exhaustive_judges_every_pair_and_agrees_with_the_sample() {
    let (_scratch, mesh) = mesh();
    append(
        &mesh.dir,
        "authorization-policies.yaml",
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: allow-all\n  namespace: team-0003\nspec:\n  rules:\n  - {}\n",
    );
    let sampled = verify(&mesh, Sampling::DefaultDeny);
    let every = verify(&mesh, Sampling::Exhaustive);
    assert_eq!(
        every.coverage.default_deny_judged as u64,
        every.coverage.default_deny_total
    );
    // Every failure the sample found is one the exhaustive run found too.
    let all: Vec<&str> = failed(&every).iter().map(|r| r.subject.as_str()).collect();
    for r in failed(&sampled) {
        assert!(all.contains(&r.subject.as_str()), "{}", r.subject);
    }
    assert!(failed(&every).len() > failed(&sampled).len());
}

#[test]
fn the_cli_says_how_much_it_judged() {
    for (args, expect) in [
        (
            &["--profile", "tradepulse"][..],
            "(the sample is every pair)",
        ),
        (
            &["--profile", "tradepulse", "--exhaustive"][..],
            "(exhaustive)",
        ),
    ] {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_meshproof"))
            .arg("verify")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(0), "{out}");
        assert!(out.contains(expect), "{out}");
        assert!(out.contains("default-deny pairs"), "{out}");
    }
}

//! `meshproof verify` against broken manifests: each mutant of the rendered manifests is caught,
//! and the failure names what broke. The healthy manifests pass. Also: the committed manifests are
//! exactly a fresh render of their profile.

use std::path::Path;

mod common;

use common::{drop_document, meshproof, mutant, mutations, replace, root};

fn verify(profile: &str, dir: &Path) -> (Option<i32>, String) {
    let o = meshproof(&[
        "verify",
        "--profile",
        profile,
        "--manifests",
        dir.to_str().unwrap(),
    ]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code(), text)
}

fn assert_caught(profile: &str, dir: &Path, naming: &[&str]) {
    let (code, text) = verify(profile, dir);
    assert_eq!(code, Some(1), "verify must fail (exit 1):\n{text}");
    for n in naming {
        assert!(text.contains(n), "the failure names {n:?}:\n{text}");
    }
}

#[test]
fn healthy_manifests_pass_for_both_profiles() {
    for profile in ["tradepulse", "soma-agent-hub"] {
        let dir = mutant(profile, |_, t| t);
        let (code, text) = verify(profile, dir.path());
        assert_eq!(code, Some(0), "{text}");
    }
}

#[test]
fn an_allow_all_policy_is_widened_access() {
    let dir = mutant("tradepulse", mutations::allow_all());
    assert_caught(
        "tradepulse",
        dir.path(),
        &[
            "WIDENED ACCESS",
            "ingestion → execution",
            "execution/allow-all",
        ],
    );
}

#[test]
fn permissive_mtls_is_caught() {
    let dir = mutant("tradepulse", mutations::permissive());
    assert_caught(
        "tradepulse",
        dir.path(),
        &["mtls.strict", "PERMISSIVE", "mesh-system/default"],
    );
}

#[test]
fn a_deleted_allow_rule_is_narrowed_access() {
    let dir = mutant("tradepulse", mutations::deleted_allow_rule());
    assert_caught(
        "tradepulse",
        dir.path(),
        &["narrowed access", "strategy → execution GET /quotes/probe"],
    );
}

#[test]
fn a_path_typo_is_caught() {
    let dir = mutant("tradepulse", mutations::path_typo());
    assert_caught(
        "tradepulse",
        dir.path(),
        &["strategy → execution GET /quotes/probe"],
    );
}

#[test]
fn a_wrong_principal_is_caught() {
    let dir = mutant("soma-agent-hub", mutations::wrong_principal());
    assert_caught(
        "soma-agent-hub",
        dir.path(),
        &["gateway-api → orchestrator"],
    );
}

#[test]
fn a_removed_constraint_is_caught() {
    let dir = mutant(
        "soma-agent-hub",
        drop_document("gatekeeper.yaml", "name: soma-registry-policy"),
    );
    assert_caught(
        "soma-agent-hub",
        dir.path(),
        &["admission.audit", "soma-registry-policy", "missing"],
    );
}

#[test]
fn a_dryrun_constraint_is_caught() {
    let dir = mutant(
        "soma-agent-hub",
        replace(
            "gatekeeper.yaml",
            "  enforcementAction: deny\n",
            "  enforcementAction: dryrun\n",
        ),
    );
    assert_caught(
        "soma-agent-hub",
        dir.path(),
        &["soma-registry-policy", "dryrun"],
    );
}

#[test]
fn a_template_with_a_rego_error_is_a_load_error_naming_file_and_line() {
    let dir = mutant(
        "soma-agent-hub",
        replace(
            "gatekeeper.yaml",
            "          allowed(image) if {\n",
            "          allowed(image) iff {\n",
        ),
    );
    let (code, text) = verify("soma-agent-hub", dir.path());
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("gatekeeper.yaml:"),
        "names the file and line: {text}"
    );
    assert!(!text.contains("panicked"), "{text}");
}

#[test]
fn the_runbook_pods_get_the_runbook_outcomes_through_the_cli() {
    let cases = [
        (
            "bad-registry",
            1,
            "admission webhook \"validation.gatekeeper.sh\" denied the request: [soma-registry-policy] Image 'evil-registry.com/malware:latest' from disallowed registry",
        ),
        (
            "bad-privileged",
            1,
            "Container 'app' is running in privileged mode",
        ),
        (
            "bad-resources",
            1,
            "Container 'app' missing resource requests",
        ),
        ("good-pod", 0, "admitted"),
    ];
    for (pod, code, text) in cases {
        let file = format!("manifests/soma-agent-hub/cases/{pod}.yaml");
        let o = meshproof(&["admit", "--profile", "soma-agent-hub", &file]);
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(
            o.status.code(),
            Some(code),
            "{pod}: {out}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(out.contains(text), "{pod}: {out}");
    }
}

#[test]
fn committed_manifests_equal_a_fresh_render() {
    for profile in ["tradepulse", "soma-agent-hub"] {
        let dir = tempfile::tempdir().unwrap();
        let o = meshproof(&[
            "render",
            "--profile",
            profile,
            "--out",
            dir.path().to_str().unwrap(),
        ]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let fresh = entry.unwrap().path();
            let name = fresh.file_name().unwrap();
            let committed = root().join("manifests").join(profile).join(name);
            assert_eq!(
                std::fs::read_to_string(&committed).unwrap_or_default(),
                std::fs::read_to_string(&fresh).unwrap(),
                "{} differs from a fresh render: run `meshproof render --profile {profile} --out manifests/{profile}`",
                committed.display()
            );
        }
    }
}

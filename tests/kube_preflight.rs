//! Preflight through the fake tools in tests/fakes/: every missing or unusable tool is named at
//! once, with the version found and how to install it, as a typed error whose exit code is 2.

#[path = "fakes/harness.rs"]
mod fakes;

use fakes::Fakes;
use meshproof::target::kube::preflight::{self, PreflightError};
use meshproof::target::kube::tool::{Program, Toolbox};
use meshproof::target::kube::{KubeError, TargetKind, Timeouts};

fn check(fakes: &Fakes, target: TargetKind) -> Result<preflight::Preflight, PreflightError> {
    preflight::check(&fakes.toolbox(), target, Timeouts::default().call())
}

#[test]
fn preflight_with_every_fake_tool_reports_their_versions() {
    let fakes = Fakes::new();
    let report = check(&fakes, TargetKind::Kind).expect("everything is there");
    let versions: Vec<(String, String)> = report.versions();
    assert_eq!(
        versions,
        [
            ("docker", "client 28.2.2, engine 28.2.2"),
            ("kind", "0.33.0"),
            ("kubectl", "1.37.2"),
            ("helm", "3.22.0"),
            ("istioctl", "1.31.1"),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    assert!(report.has(Program::Istioctl));
}

#[test]
fn preflight_with_fake_tools_missing_names_every_one_with_how_to_install_it() {
    let fakes = Fakes::with(&["docker", "kubectl"]).docker_engine_down();
    let err = check(&fakes, TargetKind::Kind).expect_err("kind, helm and the engine are missing");
    let named: Vec<&str> = err.problems.iter().map(|p| p.program).collect();
    assert_eq!(named, ["docker", "kind", "helm"], "istioctl is optional");
    let text = err.to_string();
    assert!(
        text.starts_with("preflight for --target kind: 3 required tool(s) missing or unusable"),
        "{text}"
    );
    assert!(text.contains("docker: client 28.2.2 found at"), "{text}");
    assert!(
        text.contains("no Docker engine answers (Cannot connect to the Docker daemon"),
        "{text}"
    );
    assert!(text.contains("kind: kind not found"), "{text}");
    assert!(
        text.contains("go install sigs.k8s.io/kind@v0.33.0"),
        "{text}"
    );
    assert!(text.contains("helm: helm not found"), "{text}");
    assert!(
        text.contains("https://get.helm.sh/helm-v3.22.0-linux-amd64.tar.gz"),
        "{text}"
    );
    assert!(!text.contains("kubectl:"), "kubectl is fine: {text}");
    assert_eq!(KubeError::from(err).exit_code(), 2);
}

#[test]
fn preflight_with_no_tools_at_all_names_all_four_required_ones() {
    let fakes = Fakes::with(&[]);
    let err = check(&fakes, TargetKind::Kind).expect_err("nothing installed");
    let named: Vec<&str> = err.problems.iter().map(|p| p.program).collect();
    assert_eq!(named, ["docker", "kind", "kubectl", "helm"]);
    for problem in &err.problems {
        let text = problem.problem.as_deref().unwrap_or_default();
        assert!(text.contains("install:"), "{text}");
        assert!(
            text.contains(&format!("MESHPROOF_{}", problem.program.to_uppercase())),
            "{text}"
        );
    }
    // No tool was run: there was nothing to run.
    assert!(fakes.lines().is_empty());
}

#[test]
fn preflight_with_a_too_old_fake_kind_names_the_minimum() {
    let fakes = Fakes::new();
    fakes.rule("kind version", 0, "kind v0.20.0 go1.20.4 linux/amd64\n", "");
    let err = check(&fakes, TargetKind::Kind).expect_err("too old");
    let text = err.to_string();
    assert!(text.contains("kind: 0.20.0 found at"), "{text}");
    assert!(text.contains("older than the minimum 0.27.0"), "{text}");
}

#[test]
fn preflight_for_an_existing_cluster_through_fakes_needs_only_kubectl() {
    let fakes = Fakes::with(&["kubectl"]);
    let report = check(&fakes, TargetKind::Cluster).expect("kubectl is enough");
    assert_eq!(report.target, "cluster");
    let optional: Vec<(&str, bool)> = report
        .tools
        .iter()
        .map(|t| (t.program, t.problem.is_none()))
        .collect();
    assert_eq!(
        optional,
        [("kubectl", true), ("helm", false), ("istioctl", false)]
    );
    assert_eq!(fakes.lines(), ["kubectl version --client -o json"]);
}

#[test]
fn preflight_uses_an_explicit_tool_path_over_the_search_path() {
    let fakes = Fakes::with(&[]);
    let tools = Toolbox::with_search_path(vec![fakes.bin.clone()])
        .program(
            Program::Kubectl,
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fakes/kubectl"),
        )
        .env("MESHPROOF_FAKE_LOG", &fakes.log)
        .build();
    let report = preflight::check(&tools, TargetKind::Cluster, Timeouts::default().call())
        .expect("kubectl from its override");
    assert_eq!(
        report.versions(),
        [("kubectl".to_owned(), "1.37.2".to_owned())]
    );
    let missing = Toolbox::with_search_path(Vec::new())
        .program(Program::Kubectl, "/nonexistent/kubectl")
        .build();
    let err = preflight::check(&missing, TargetKind::Cluster, Timeouts::default().call())
        .expect_err("a bad override is reported");
    assert!(
        err.to_string()
            .contains("MESHPROOF_KUBECTL=/nonexistent/kubectl is not an executable file"),
        "{err}"
    );
}

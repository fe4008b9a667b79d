//! `meshproof run --target kind|cluster` end to end, through the fake `docker`, `kind`, `helm`,
//! `istioctl` and `kubectl` of tests/fakes/ placed first on PATH (there is no Docker engine here,
//! so no real kind cluster). The fakes record every call; canned answers stand in for the
//! cluster: each probe pod's curl answers as the profile's intents say (or, for the mutant, with
//! one widened access), Gatekeeper's webhook denies the runbook's bad pods, and every controller
//! reports ready. The tests show which scenarios ran, which the target filtered out, and the exit
//! code.

#[path = "fakes/harness.rs"]
mod fakes;

use std::path::Path;
use std::process::{Command, Output};

use fakes::{Fakes, profile, root};
use meshproof::profile::Decision;

const MARKER: &str = "@@meshproof";

/// Runs the real `meshproof` binary with the fakes first on PATH.
fn meshproof(fakes: &Fakes, args: &[&str]) -> (Option<i32>, String, String) {
    let path = format!("{}:/usr/bin:/bin", fakes.bin.display());
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_meshproof"))
        .args(args)
        .current_dir(root())
        .env("PATH", path)
        .env("MESHPROOF_FAKE_LOG", &fakes.log)
        .env("MESHPROOF_FAKE_RULES", &fakes.rules)
        .env("MESHPROOF_FAKE_STATE", fakes.path("state"))
        .env("MESHPROOF_FAKE_DENY", fakes.path("deny"))
        .output()
        .expect("meshproof runs");
    (
        status.code(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// Every probe pod's curl answers as the profile promises: 200 from the callee's app for an
/// allowed request, Envoy's RBAC 403 otherwise. `widen` answers 200 to one denied request.
fn cluster_answers_as_promised(fakes: &Fakes, profile_name: &str, widen: Option<(&str, &str)>) {
    let profile = profile(profile_name);
    for service in &profile.services {
        fakes.rule(
            &format!(
                "kubectl * get service {} -n {} -o jsonpath=*",
                service.name, service.namespace
            ),
            0,
            "10.96.0.20",
            "",
        );
    }
    for call in meshproof::intents::matrix(&profile) {
        let from = profile.service(&call.from).expect("caller");
        let to = profile.service(&call.to).expect("callee");
        let widened = widen == Some((call.from.as_str(), call.to.as_str()));
        let (code, body) = if call.expected == Decision::Allow || widened {
            (200, call.to.clone())
        } else {
            (403, "RBAC: access denied".to_owned())
        };
        fakes.rule(
            &format!(
                "kubectl * exec -n {} deploy/{} -c probe -- curl * -X {} * http://{}.{}.svc.cluster.local:{}{}",
                from.namespace, from.name, call.method, to.name, to.namespace, call.port, call.path
            ),
            0,
            &format!("{body}\n{MARKER} http_code={code} exitcode=0 time_total=0.003\n"),
            "",
        );
    }
}

/// Every sidecar's inbound listener refuses what is not a mesh identity the way Envoy does
/// (plaintext reset, TLS without or with a bad client certificate failed), and a caller's own
/// sidecar gets through (RBAC then answers 403 for `/`).
fn sidecars_refuse_bad_peers(fakes: &Fakes) {
    let outside = "kubectl * exec*-n meshproof-outside outside-probe -c probe -- ";
    fakes.rule(
        &format!("{outside}curl * http://*"),
        0,
        &format!("\n{MARKER} http_code=000 exitcode=56 time_total=0.002\n"),
        "curl: (56) Recv failure: Connection reset by peer\n",
    );
    fakes.rule(
        &format!("{outside}curl * https://*"),
        0,
        &format!("\n{MARKER} http_code=000 exitcode=35 time_total=0.002\n"),
        "curl: (35) OpenSSL/3.3.2: error:0A00045C:SSL routines::tlsv13 alert certificate required\n",
    );
    fakes.rule(
        &format!("{outside}sh -c *"),
        0,
        &format!("\n{MARKER} http_code=000 exitcode=56 time_total=0.002\n"),
        "curl: (56) OpenSSL SSL_read: error:0A000418:SSL routines::tlsv1 alert unknown ca\n",
    );
    fakes.rule(
        "kubectl * exec -n * deploy/* -c probe -- curl * http://*.svc.cluster.local:*/",
        0,
        &format!("RBAC: access denied\n{MARKER} http_code=403 exitcode=0 time_total=0.003\n"),
        "",
    );
}

/// Every Deployment, DaemonSet and StatefulSet reports all replicas updated and ready.
fn controllers_ready(fakes: &Fakes) {
    let ready = r#"{"metadata":{"generation":1},"spec":{"replicas":1},"status":{"observedGeneration":1,"readyReplicas":1,"updatedReplicas":1,"availableReplicas":1,"desiredNumberScheduled":2,"numberReady":2,"updatedNumberScheduled":2,"numberAvailable":2}}"#;
    for kind in ["deployment", "daemonset", "statefulset"] {
        fakes.rule(&format!("kubectl * get {kind} * -o json"), 0, ready, "");
    }
}

/// Gatekeeper's webhook denies the runbook's three bad pods with the runbook's messages.
fn gatekeeper_denies_the_runbook_pods(fakes: &Fakes) {
    let dir = fakes.path("deny");
    std::fs::create_dir_all(&dir).expect("deny dir");
    for (pod, constraint, message) in [
        (
            "bad-registry",
            "soma-registry-policy",
            "Image 'evil-registry.com/malware:latest' from disallowed registry",
        ),
        (
            "bad-privileged",
            "soma-block-privileged",
            "Container 'app' is running in privileged mode",
        ),
        (
            "bad-resources",
            "soma-required-resources",
            "Container 'app' missing resource requests",
        ),
    ] {
        std::fs::write(
            dir.join(pod),
            format!(
                "Error from server (Forbidden): error when creating \"STDIN\": admission webhook \
                 \"validation.gatekeeper.sh\" denied the request: [{constraint}] {message}\n"
            ),
        )
        .expect("denial");
    }
}

fn results(out: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(out.join("results.json")).expect("results.json");
    serde_json::from_str(&text).expect("results.json is JSON")
}

/// (name, status) of every scenario that ran.
fn ran(results: &serde_json::Value) -> Vec<(String, String)> {
    results["scenarios"]
        .as_array()
        .expect("scenarios")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or_default().to_owned(),
                s["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[test]
fn run_target_kind_through_fake_tools_creates_installs_checks_and_deletes_a_cluster_per_profile() {
    let fakes = Fakes::new();
    cluster_answers_as_promised(&fakes, "tradepulse", None);
    cluster_answers_as_promised(&fakes, "soma-agent-hub", None);
    controllers_ready(&fakes);
    gatekeeper_denies_the_runbook_pods(&fakes);
    let out = fakes.path("out");
    let (code, stdout, stderr) = meshproof(
        &fakes,
        &[
            "run",
            "--target",
            "kind",
            "--tags",
            "@intents or @control-plane or @admission",
            "--out",
            &out.display().to_string(),
            "-q",
        ],
    );
    let text = format!("{stdout}\n{stderr}");
    eprintln!("{text}");
    assert_eq!(code, Some(0), "every selected scenario passes:\n{text}");

    // Filtered: the lab-only sidecar-listener scenario, named with why; never counted.
    assert!(
        stderr.contains("not run  features/control_plane.feature:10")
            && stderr.contains("@lab: needs the lab's own sidecars"),
        "{stderr}"
    );
    let listing = std::fs::read_to_string(out.join("applicability.md")).expect("applicability.md");
    assert!(listing.contains("## Not run on this target"), "{listing}");
    assert!(
        out.join("evidence/artifacts/applicability.md").exists(),
        "the listing is part of the signed evidence"
    );

    // Ran: static and live intents, the runbook's pods through the API server's dry run, and
    // component health read from the controllers, on both profiles.
    let results = results(&out);
    assert_eq!(results["target"], "kind");
    let ran = ran(&results);
    let passed = |needle: &str| {
        ran.iter()
            .filter(|(name, status)| name.contains(needle) && status == "passed")
            .count()
    };
    assert!(passed("behaves as the profile promises, through real sidecars") >= 20);
    assert!(passed("is configured as the profile promises") >= 20);
    assert_eq!(passed("every control-plane component reports ready"), 2);
    assert_eq!(passed("the runbook's bad-registry is denied"), 1);
    assert_eq!(passed("the runbook's good-pod is admitted"), 1);
    assert!(
        ran.iter()
            .all(|(name, _)| !name.contains("is running with its configuration")),
        "the @lab scenario must not run on kind"
    );

    // One cluster per profile: created, installed, checked, deleted.
    let lines = fakes.lines();
    for name in ["tradepulse", "soma-agent-hub"] {
        let created = lines
            .iter()
            .find(|l| l.starts_with("kind create cluster --name meshproof-") && l.contains(name))
            .unwrap_or_else(|| panic!("no cluster created for {name}:\n{}", lines.join("\n")));
        let cluster = created.split(' ').nth(4).expect("cluster name").to_owned();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("kind delete cluster --name {cluster} "))),
            "{cluster} deleted"
        );
        assert!(!fakes.cluster_exists(&cluster), "{cluster} is gone");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("helm upgrade --install istiod")),
        "istiod installed"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("create --dry-run=server -o json -f -")),
        "admission went to the API server"
    );
}

#[test]
fn run_target_kind_through_fake_tools_sends_every_bad_peer_with_its_key_on_stdin_only() {
    let fakes = Fakes::new();
    cluster_answers_as_promised(&fakes, "tradepulse", None);
    sidecars_refuse_bad_peers(&fakes);
    let out = fakes.path("out");
    let (code, stdout, stderr) = meshproof(
        &fakes,
        &[
            "run",
            "--target",
            "kind",
            "--profile",
            "tradepulse",
            "--tags",
            "@mtls and @live",
            "--out",
            &out.display().to_string(),
            "-q",
        ],
    );
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let results = results(&out);
    let checks: Vec<&serde_json::Value> = results["scenarios"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["checks"].as_array().into_iter().flatten())
        .collect();
    // Five sidecars × (five bad peers + the control), every one sent: this run installed the CA.
    assert_eq!(checks.len(), 30, "{checks:#?}");
    assert!(
        checks.iter().all(|c| c["status"] == "passed"),
        "{checks:#?}"
    );
    for what in [
        "plaintext",
        "no client certificate",
        "from a foreign CA",
        "with an expired intermediate",
        "(foreign trust domain)",
    ] {
        assert_eq!(
            checks
                .iter()
                .filter(|c| c["subject"].as_str().is_some_and(|s| s.contains(what)))
                .count(),
            5,
            "{what}"
        );
    }
    // The throwaway client keys went to the pod on stdin, never on a command line.
    let lines = fakes.lines();
    assert!(lines.iter().all(|l| !l.contains("PRIVATE KEY")));
    let sent_with_stdin = lines.iter().filter(|l| l.contains(" exec -i ")).count();
    assert_eq!(sent_with_stdin, 15, "three client certificates per sidecar");
    // (Calls at the same time share the fakes' stdin numbering, so not every one is kept.)
    assert!(
        fakes
            .stdins()
            .iter()
            .any(|(_, text)| text.contains("PRIVATE KEY") && text.contains("CERTIFICATE")),
        "the chain and its key went on stdin"
    );
}

/// Every sidecar serves what stock Istio's CA issues, `spiffe://<td>/ns/<ns>/sa/<sa>`, from a
/// CA whose root istiod publishes in `istio-ca-root-cert`.
fn sidecars_serve_istio_identities(fakes: &Fakes, profile_name: &str) {
    use meshproof::report::text::base64;
    let profile = profile(profile_name);
    let now = time::OffsetDateTime::now_utc();
    let pki =
        meshproof::pki::Pki::generate(&meshproof::target::lab::ca_spec(&profile), now).expect("CA");
    fakes.rule(
        &format!(
            "kubectl * get configmap istio-ca-root-cert -n {} -o jsonpath=*",
            profile.control_plane_namespace
        ),
        0,
        pki.root().pem(),
        "",
    );
    for service in &profile.services {
        let (ns, name) = (&service.namespace, &service.name);
        let pod = format!("{name}-7d4b9c-x2x9z");
        fakes.rule(
            &format!("kubectl * get pods -n {ns} -l app={name} -o json"),
            0,
            &format!(r#"{{"items":[{{"metadata":{{"name":"{pod}"}}}}]}}"#),
            "",
        );
        let istio_id = format!(
            "spiffe://{}/ns/{ns}/sa/{}",
            profile.trust_domain.as_str(),
            service.service_account
        );
        let svid = pki.issue_workload_svid(&istio_id, now).expect("SVID");
        let dump = serde_json::json!({ "dynamicActiveSecrets": [
            { "name": "default", "secret": { "tlsCertificate": {
                "certificateChain": { "inlineBytes": base64(svid.chain_pem().as_bytes()) } } } },
            { "name": "ROOTCA", "secret": { "validationContext": {
                "trustedCa": { "inlineBytes": base64(pki.root().pem().as_bytes()) } } } } ] });
        fakes.rule(
            &format!("istioctl * proxy-config secret {pod}.{ns} -o json"),
            0,
            &dump.to_string(),
            "",
        );
    }
}

#[test]
fn run_target_kind_through_fake_tools_reports_that_istio_ids_break_the_tradepulse_schema() {
    let fakes = Fakes::new();
    sidecars_serve_istio_identities(&fakes, "tradepulse");
    let out = fakes.path("out");
    let (code, stdout, stderr) = meshproof(
        &fakes,
        &[
            "run",
            "--target",
            "kind",
            "--profile",
            "tradepulse",
            "--tags",
            "@identity and @checklist",
            "--out",
            &out.display().to_string(),
            "-q",
        ],
    );
    let text = format!("{stdout}\n{stderr}");
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains(
            "SVID identifies spiffe://tradepulse/ns/strategy/sa/strategy, expected spiffe://tradepulse/prod/strategy"
        ),
        "{text}"
    );
    let ran = ran(&results(&out));
    // On a cluster @each-identity has only the identities with a workload: five services, prod.
    let presents = ran
        .iter()
        .filter(|(n, _)| n.contains("presents a valid X.509-SVID"))
        .count();
    assert_eq!(presents, 5, "{ran:?}");
    assert!(ran.iter().all(|(_, status)| status == "failed"), "{ran:?}");
}

#[test]
fn run_target_kind_through_fake_tools_fails_with_exit_1_on_widened_access() {
    let fakes = Fakes::new();
    cluster_answers_as_promised(&fakes, "tradepulse", Some(("ingestion", "execution")));
    let out = fakes.path("out");
    let (code, stdout, stderr) = meshproof(
        &fakes,
        &[
            "run",
            "--target",
            "kind",
            "--profile",
            "tradepulse",
            "--tags",
            "@intents and @live",
            "--out",
            &out.display().to_string(),
            "-q",
        ],
    );
    let text = format!("{stdout}\n{stderr}");
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains(
            "WIDENED ACCESS observed: ingestion → execution GET /quotes/probe → HTTP 200"
        ),
        "{text}"
    );
    let failed: Vec<_> = ran(&results(&out))
        .into_iter()
        .filter(|(_, status)| status == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].0.contains("ingestion → execution"), "{failed:?}");
}

#[test]
fn run_target_kind_reuse_through_fake_tools_leaves_the_existing_cluster_running() {
    let fakes = Fakes::new();
    fakes.existing_cluster("meshproof-tradepulse");
    let out = fakes.path("out");
    let (code, stdout, stderr) = meshproof(
        &fakes,
        &[
            "run",
            "--target",
            "kind",
            "--profile",
            "tradepulse",
            "--reuse",
            "--tags",
            "@intents and @static",
            "--out",
            &out.display().to_string(),
            "-q",
        ],
    );
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let lines = fakes.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("kind export kubeconfig --name meshproof-tradepulse ")),
        "{}",
        lines.join("\n")
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("kind create") || l.starts_with("kind delete"))
    );
    assert!(fakes.cluster_exists("meshproof-tradepulse"));
}

#[test]
fn run_target_kind_through_fake_tools_names_a_missing_tool_and_exits_2() {
    let fakes = Fakes::with(&["docker", "kind", "kubectl", "istioctl"]);
    let (code, _, stderr) = meshproof(&fakes, &["run", "--target", "kind", "-q"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("helm"), "{stderr}");
    assert!(
        !fakes.lines().iter().any(|l| l.starts_with("kind create")),
        "no cluster is created before the preflight passes"
    );
}

/// A features folder with one @destructive scenario that a cluster could otherwise run.
fn destructive_feature(fakes: &Fakes) -> std::path::PathBuf {
    let dir = fakes.path("features");
    std::fs::create_dir_all(&dir).expect("features dir");
    std::fs::write(
        dir.join("faults.feature"),
        "@destructive\nFeature: A fault on the cluster\n\n  \
         Scenario Outline: <profile> · the stack reports ready after a fault\n    \
         Given the profile \"<profile>\"\n    \
         Then every control-plane component of its stack reports ready\n\n    \
         @each-profile\n    Examples:\n      | profile |\n",
    )
    .expect("feature");
    dir
}

#[test]
fn run_target_cluster_through_fake_kubectl_refuses_destructive_scenarios_without_allow_destructive()
{
    let fakes = Fakes::new();
    controllers_ready(&fakes);
    let features = destructive_feature(&fakes);
    let features = features.display().to_string();
    let out = fakes.path("out");
    let out = out.display().to_string();
    let base = [
        "run",
        "--target",
        "cluster",
        "--context",
        "staging",
        "--profile",
        "tradepulse",
        "--features",
        &features,
        "--out",
        &out,
        "-q",
    ];

    let (code, _, stderr) = meshproof(&fakes, &base);
    assert_eq!(
        code,
        Some(2),
        "nothing ran, so nothing was proven:\n{stderr}"
    );
    assert!(
        stderr.contains("not run  ")
            && stderr.contains(
                "@destructive: refused on an existing cluster without --allow-destructive"
            ),
        "{stderr}"
    );
    let lines = fakes.lines();
    assert!(
        !lines.iter().any(|l| l.contains(" get deployment ")),
        "the refused scenario touched the cluster:\n{}",
        lines.join("\n")
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("kind ") || l.starts_with("helm upgrade")),
        "an existing cluster is never created or installed on"
    );

    let mut allowed = base.to_vec();
    allowed.push("--allow-destructive");
    let (code, _, stderr) = meshproof(&fakes, &allowed);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        fakes.lines().iter().any(
            |l| l.starts_with("kubectl --context staging get deployment istiod -n mesh-system")
        ),
        "{}",
        fakes.lines().join("\n")
    );
}

#[test]
fn run_rejects_options_of_another_target_with_exit_2() {
    let fakes = Fakes::new();
    for (args, flag) in [
        (
            &["run", "--target", "kind", "--context", "x"][..],
            "--context",
        ),
        (&["run", "--target", "cluster", "--keep"][..], "--keep"),
        (&["run", "--allow-destructive"][..], "--allow-destructive"),
    ] {
        let (code, _, stderr) = meshproof(&fakes, args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
    assert!(fakes.lines().is_empty(), "no tool was called");
}

//! Installing a profile's stack, through the fake `helm` and `kubectl` in tests/fakes/: the
//! exact command sequence for both bundled profiles, the CA key only ever on stdin, retries on
//! eventual consistency, named timeouts, and a failure half-way still deleting the kind cluster.

#[path = "fakes/harness.rs"]
mod fakes;

use fakes::{Fakes, configured, display, kind_config, profile};
use meshproof::target::kube::install::{self, ChartSource, InstallOptions};
use meshproof::target::kube::kind::{ClusterGuard, KindOptions};
use meshproof::target::kube::probe::ProbeConfig;
use meshproof::target::kube::wait::Backoff;
use meshproof::target::kube::{KubeError, KubeTarget, Kubectl, Timeouts, preflight};
use meshproof::target::kube::{TargetKind, tool::Program};

const KUBECONFIG: &str = "/run/meshproof/kubeconfig";

fn kubectl(fakes: &Fakes) -> Kubectl {
    Kubectl::new(
        fakes.toolbox(),
        Some(KUBECONFIG.into()),
        Some("kind-t".into()),
        Timeouts::default(),
    )
    .with_backoff(Backoff::immediate())
}

fn options(fakes: &Fakes) -> InstallOptions {
    InstallOptions {
        workdir: fakes.workdir.clone(),
        charts: ChartSource::Repositories,
        now: time::OffsetDateTime::now_utc(),
        restart_after_ca_change: false,
    }
}

fn k(args: &str) -> String {
    format!("kubectl --kubeconfig {KUBECONFIG} --context kind-t {args}")
}

const APPLY: &str = "apply --server-side --field-manager meshproof --force-conflicts -f -";

/// `[release, chart, repo, version, namespace]`, and extra flags before `--wait`.
fn helm(fakes: &Fakes, profile: &str, chart: [&str; 5], extra: &str) -> String {
    let [release, chart, repo, version, ns] = chart;
    format!(
        "helm upgrade --install {release} {chart} --repo {repo} --version {version} --namespace {ns} --create-namespace \
         --kubeconfig {KUBECONFIG} --kube-context kind-t --values {}/{profile}/values-{release}.json {extra}--wait --timeout 600s",
        display(&fakes.workdir)
    )
}

const ISTIO: &str = "https://istio-release.storage.googleapis.com/charts";
const SPIRE: &str = "https://spiffe.github.io/helm-charts-hardened/";
const GATEKEEPER: &str = "https://open-policy-agent.github.io/gatekeeper/charts";

#[test]
fn stack_install_through_fake_helm_and_kubectl_records_the_exact_sequence_for_soma_agent_hub() {
    let fakes = Fakes::new();
    let profile = profile("soma-agent-hub");
    let configured = configured(&profile);
    let installed = install::install(&kubectl(&fakes), &profile, &configured, &options(&fakes))
        .expect("installed");
    let p = "soma-agent-hub";
    let mut expected = vec![
        k(APPLY), // istio-system, spire-system
        k(APPLY), // SPIRE's upstream CA secret (stdin)
        helm(
            &fakes,
            p,
            ["istio-base", "base", ISTIO, "1.31.1", "istio-system"],
            "",
        ),
        helm(
            &fakes,
            p,
            ["spire-crds", "spire-crds", SPIRE, "0.6.0", "spire-system"],
            "",
        ),
        helm(
            &fakes,
            p,
            ["spire", "spire", SPIRE, "0.25.0", "spire-system"],
            "",
        ),
        helm(
            &fakes,
            p,
            ["istiod", "istiod", ISTIO, "1.31.1", "istio-system"],
            "",
        ),
        helm(
            &fakes,
            p,
            [
                "istio-ingressgateway",
                "gateway",
                ISTIO,
                "1.31.1",
                "istio-system",
            ],
            r"--set-string podAnnotations.inject\.istio\.io/templates=gateway\,spire ",
        ),
        helm(
            &fakes,
            p,
            [
                "gatekeeper",
                "gatekeeper",
                GATEKEEPER,
                "3.23.1",
                "gatekeeper-system",
            ],
            "",
        ),
        k(APPLY), // namespaces
        k(APPLY), // Istio policy
        k(APPLY), // ConstraintTemplates
    ];
    for template in [
        "k8srequiredregistry",
        "k8sblockprivileged",
        "k8srequiredresources",
        "k8srequiredlabels",
    ] {
        expected.push(k(&format!(
            "wait --for=jsonpath={{.status.created}}=true constrainttemplate/{template} --timeout=120s"
        )));
    }
    expected.push(k(APPLY)); // constraints
    expected.push(k(APPLY)); // ClusterSPIFFEIDs
    expected.push(k(APPLY)); // workloads
    for deployment in [
        "gateway-api",
        "orchestrator",
        "policy-engine",
        "identity-service",
        "test-service",
    ] {
        expected.push(k(&format!(
            "rollout status deployment/{deployment} -n soma-agent-hub --timeout=300s"
        )));
    }
    assert_eq!(fakes.lines(), expected);
    assert_eq!(installed.workloads.len(), 5);

    // What each apply carried, in order.
    let stdins = fakes.stdins();
    let kinds_of = |text: &str| -> Vec<String> {
        let list: serde_json::Value = serde_json::from_str(text).expect("JSON list");
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|o| o["kind"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(kinds_of(&stdins[0].1), ["Namespace", "Namespace"]);
    let secret: serde_json::Value = serde_json::from_str(&stdins[1].1).expect("secret");
    assert_eq!(secret["metadata"]["name"], "meshproof-upstream-ca");
    assert_eq!(secret["metadata"]["namespace"], "spire-system");
    let keys: Vec<&String> = secret["data"].as_object().expect("data").keys().collect();
    assert_eq!(keys, ["bundle", "certificate", "key"]);
    // SPIRE's upstream is a root that allows SPIRE's own authority below it.
    assert_eq!(secret["data"]["certificate"], secret["data"]["bundle"]);
    let pem =
        meshproof::report::text::from_base64(secret["data"]["certificate"].as_str().expect("b64"))
            .expect("base64");
    let der =
        meshproof::spiffe::parse_pem_chain(&String::from_utf8(pem).expect("PEM")).expect("cert");
    let (_, root) = x509_parser::parse_x509_certificate(&der[0]).expect("DER");
    assert_eq!(root.subject(), root.issuer());
    let bc = root
        .basic_constraints()
        .expect("ext")
        .expect("basicConstraints");
    assert_eq!(bc.value.path_len_constraint, Some(1));
    match &installed.ca {
        install::InstalledCa::SpireUpstream { root_der } => assert_eq!(root_der, &der[0]),
        other => panic!("expected SPIRE's upstream, got {other:?}"),
    }
    let key_b64 = secret["data"]["key"].as_str().expect("key");
    assert!(
        !std::fs::read_to_string(&fakes.log)
            .expect("log")
            .contains(key_b64)
    );
    assert!(kinds_of(&stdins[2].1).iter().all(|k| k == "Namespace"));
    assert!(kinds_of(&stdins[3].1).iter().all(|k| {
        [
            "PeerAuthentication",
            "AuthorizationPolicy",
            "DestinationRule",
        ]
        .contains(&k.as_str())
    }));
    assert!(
        kinds_of(&stdins[4].1)
            .iter()
            .all(|k| k == "ConstraintTemplate")
    );
    assert_eq!(kinds_of(&stdins[5].1).len(), 4); // the four constraints
    assert!(
        kinds_of(&stdins[6].1)
            .iter()
            .all(|k| k == "ClusterSPIFFEID")
    );
    assert!(kinds_of(&stdins[7].1).contains(&"Deployment".to_owned()));

    // The values the charts were given.
    let values = |release: &str| -> serde_json::Value {
        let path = fakes.workdir.join(p).join(format!("values-{release}.json"));
        serde_json::from_str(&std::fs::read_to_string(path).expect("values")).expect("JSON")
    };
    let istiod = values("istiod");
    assert_eq!(istiod["meshConfig"]["trustDomain"], "soma-agent-hub.local");
    assert_eq!(
        istiod["sidecarInjectorWebhook"]["defaultTemplates"][1],
        "spire"
    );
    let spire = values("spire");
    assert_eq!(
        spire["global"]["spire"]["trustDomain"],
        "soma-agent-hub.local"
    );
    assert_eq!(spire["global"]["spire"]["clusterName"], "soma-cluster");
    assert_eq!(
        spire["spire-server"]["controllerManager"]["watchClassless"],
        true
    );
    assert_eq!(
        spire["spire-server"]["upstreamAuthority"]["disk"]["secret"]["name"],
        "meshproof-upstream-ca"
    );
    let gateway = values("istio-ingressgateway");
    assert_eq!(gateway["service"]["type"], "ClusterIP");
    assert_eq!(
        gateway["serviceAccount"]["name"],
        "istio-ingressgateway-service-account"
    );
}

#[test]
fn stack_install_through_fake_helm_and_kubectl_records_the_exact_sequence_for_tradepulse() {
    let fakes = Fakes::new();
    let profile = profile("tradepulse");
    let configured = configured(&profile);
    install::install(&kubectl(&fakes), &profile, &configured, &options(&fakes)).expect("installed");
    let p = "tradepulse";
    let mut expected = vec![
        k(APPLY), // mesh-system
        k(APPLY), // cacerts (stdin)
        helm(
            &fakes,
            p,
            ["istio-base", "base", ISTIO, "1.31.1", "mesh-system"],
            "",
        ),
        helm(
            &fakes,
            p,
            ["istiod", "istiod", ISTIO, "1.31.1", "mesh-system"],
            "",
        ),
        k(APPLY), // namespaces
        k(APPLY), // Istio policy
        k(APPLY), // workloads
    ];
    for (deployment, ns) in [
        ("ingestion", "ingestion"),
        ("strategy", "strategy"),
        ("execution", "execution"),
        ("ui", "ui"),
        ("observability", "observability"),
    ] {
        expected.push(k(&format!(
            "rollout status deployment/{deployment} -n {ns} --timeout=300s"
        )));
    }
    assert_eq!(fakes.lines(), expected);
    let istiod: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fakes.workdir.join(p).join("values-istiod.json")).expect("values"),
    )
    .expect("JSON");
    assert_eq!(istiod["meshConfig"]["trustDomain"], "tradepulse");
    assert_eq!(istiod["global"]["istioNamespace"], "mesh-system");
    assert!(istiod.get("sidecarInjectorWebhook").is_none());
}

#[test]
fn cacerts_key_through_fake_kubectl_goes_on_stdin_never_on_a_command_line_or_in_a_record() {
    let fakes = Fakes::new();
    let profile = profile("tradepulse");
    let configured = configured(&profile);
    let kubectl = kubectl(&fakes);
    let installed =
        install::install(&kubectl, &profile, &configured, &options(&fakes)).expect("installed");
    let plugin_dir = installed
        .ca
        .plugin_dir()
        .expect("istio-ca profiles get plug-in CA files");
    let key = std::fs::read(plugin_dir.join("ca-key.pem")).expect("key");
    let key_b64 = meshproof::report::text::base64(&key);
    let key_pem = String::from_utf8(key).expect("PEM");

    // On stdin of the second call, as the cacerts secret in the control-plane namespace.
    let stdin = fakes.stdin_of(1).expect("the secret went on stdin");
    let secret: serde_json::Value = serde_json::from_str(&stdin).expect("secret JSON");
    assert_eq!(secret["kind"], "Secret");
    assert_eq!(secret["metadata"]["name"], "cacerts");
    assert_eq!(secret["metadata"]["namespace"], "mesh-system");
    assert_eq!(secret["data"]["ca-key.pem"], key_b64.as_str());
    for file in ["ca-cert.pem", "root-cert.pem", "cert-chain.pem"] {
        assert!(secret["data"][file].is_string(), "{file}");
    }

    // Nowhere else: not in any argv, record, progress line, or values file.
    let log = std::fs::read_to_string(&fakes.log).expect("log");
    for needle in [key_b64.as_str(), key_pem.trim(), "PRIVATE KEY"] {
        assert!(!log.contains(needle), "argv holds key material");
        for record in kubectl.tools().records() {
            let text = serde_json::to_string(&record).expect("record");
            assert!(!text.contains(needle), "record holds key material: {text}");
        }
        for line in fakes.progress() {
            assert!(
                !line.contains(needle),
                "progress holds key material: {line}"
            );
        }
    }
    let record = &kubectl.tools().records()[1];
    assert_eq!(
        record.stdin.as_deref(),
        Some(format!("Secret mesh-system/cacerts: secret ({} bytes)", stdin.len()).as_str())
    );
    // The key file the harness keeps is its owner's only.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(plugin_dir.join("ca-key.pem"))
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn install_failure_through_fake_helm_still_deletes_the_kind_cluster() {
    let fakes = Fakes::new();
    fakes.rule(
        "helm upgrade --install istiod *",
        1,
        "",
        "Error: INSTALLATION FAILED: unable to build kubernetes objects from release manifest: resource mapping not found for name: \"istiod\"\n",
    );
    let tools = fakes.toolbox();
    let timeouts = Timeouts::default();
    let checked = preflight::check(&tools, TargetKind::Kind, timeouts.call()).expect("preflight");
    let guard = ClusterGuard::up(
        &tools,
        &KindOptions {
            name: "meshproof-tradepulse-fail".into(),
            config: kind_config(),
            reuse: false,
            keep: false,
            images: None,
            workdir: fakes.workdir.clone(),
        },
        &timeouts,
    )
    .expect("cluster up");
    let target = KubeTarget::kind(guard, checked, ProbeConfig::default());
    let profile = profile("tradepulse");
    let err = target
        .install(&profile, &configured(&profile), &options(&fakes))
        .expect_err("istiod fails");
    let text = err.to_string();
    assert!(
        text.contains("helm upgrade --install istiod istiod"),
        "{text}"
    );
    assert!(text.contains("INSTALLATION FAILED"), "{text}");
    drop(target); // what an early return does
    let lines = fakes.lines();
    assert_eq!(
        lines.last().map(String::as_str),
        Some(
            format!(
                "kind delete cluster --name meshproof-tradepulse-fail --kubeconfig {}/kubeconfig",
                display(&fakes.workdir)
            )
            .as_str()
        )
    );
    assert!(
        !lines.iter().any(|l| l.contains("rollout status")),
        "nothing after the failure"
    );
    assert!(!fakes.cluster_exists("meshproof-tradepulse-fail"));
}

#[test]
fn helm_timeout_through_fake_helm_is_named_in_the_error() {
    let fakes = Fakes::new();
    fakes.rule(
        "helm upgrade --install gatekeeper *",
        1,
        "",
        "Error: INSTALLATION FAILED: context deadline exceeded\n",
    );
    let profile = profile("soma-agent-hub");
    let err = install::install(
        &kubectl(&fakes),
        &profile,
        &configured(&profile),
        &options(&fakes),
    )
    .expect_err("times out");
    match &err {
        KubeError::Timeout { timeout, .. } => assert_eq!(timeout.name, "helm-install"),
        other => panic!("expected a named timeout, got {other}"),
    }
    let text = err.to_string();
    assert!(text.contains("helm release gatekeeper"), "{text}");
    assert!(text.contains("MESHPROOF_TIMEOUT_HELM_INSTALL"), "{text}");
}

#[test]
fn rollout_timeout_through_fake_kubectl_is_named_in_the_error() {
    let fakes = Fakes::new();
    fakes.rule(
        "kubectl * rollout status deployment/strategy *",
        1,
        "Waiting for deployment \"strategy\" rollout to finish: 0 of 1 updated replicas are available...\n",
        "error: timed out waiting for the condition\n",
    );
    let profile = profile("tradepulse");
    let err = install::install(
        &kubectl(&fakes),
        &profile,
        &configured(&profile),
        &options(&fakes),
    )
    .expect_err("times out");
    let text = err.to_string();
    assert!(
        text.contains("rollout of deployment/strategy in strategy"),
        "{text}"
    );
    assert!(text.contains("timeout 'rollout' (5m"), "{text}");
}

#[test]
fn transient_apply_failure_through_fake_kubectl_is_retried_with_backoff() {
    let fakes = Fakes::new();
    fakes.rule_times(
        "kubectl * apply *",
        1,
        "",
        "error: resource mapping not found for name: \"soma-registry-policy\" namespace: \"\": no matches for kind \"K8sRequiredRegistry\" in version \"constraints.gatekeeper.sh/v1beta1\"\nensure CRDs are installed first\n",
        Some(2),
    );
    let kubectl = kubectl(&fakes);
    kubectl
        .apply(
            "Gatekeeper constraints",
            &[serde_json::json!({ "kind": "K8sRequiredRegistry" })],
        )
        .expect("third attempt succeeds");
    let applies = fakes
        .lines()
        .iter()
        .filter(|l| l.contains(" apply "))
        .count();
    assert_eq!(applies, 3);
    let retries: Vec<String> = fakes
        .progress()
        .into_iter()
        .filter(|l| l.contains("retrying in"))
        .collect();
    assert_eq!(retries.len(), 2, "{retries:?}");
}

#[test]
fn final_apply_failure_through_fake_kubectl_is_not_retried() {
    let fakes = Fakes::new();
    fakes.rule(
        "kubectl * apply *",
        1,
        "",
        "The Deployment \"ui\" is invalid: spec.template.spec.containers[0].image: Required value\n",
    );
    let err = kubectl(&fakes)
        .apply("workloads", &[serde_json::json!({ "kind": "Deployment" })])
        .expect_err("invalid");
    assert!(err.to_string().contains("Required value"), "{err}");
    assert_eq!(fakes.lines().len(), 1);
}

#[test]
fn charts_from_a_folder_through_fake_helm_use_the_pinned_archives() {
    let fakes = Fakes::new();
    let profile = profile("tradepulse");
    let mut opts = options(&fakes);
    opts.charts = ChartSource::Directory("/charts".into());
    install::install(&kubectl(&fakes), &profile, &configured(&profile), &opts).expect("installed");
    let helm: Vec<Vec<String>> = fakes
        .calls()
        .into_iter()
        .filter(|c| c[0] == Program::Helm.name())
        .collect();
    assert_eq!(helm[0][4], "/charts/base-1.31.1.tgz");
    assert_eq!(helm[1][4], "/charts/istiod-1.31.1.tgz");
    assert!(!helm.iter().flatten().any(|a| a == "--repo"));
}

#[test]
fn reused_cluster_through_fake_kubectl_restarts_the_ca_holders_and_workloads() {
    let fakes = Fakes::new();
    let profile = profile("tradepulse");
    let mut opts = options(&fakes);
    opts.restart_after_ca_change = true;
    install::install(&kubectl(&fakes), &profile, &configured(&profile), &opts).expect("installed");
    let lines = fakes.lines();
    let restart_istiod = k("rollout restart deployment/istiod -n mesh-system");
    let at = lines
        .iter()
        .position(|l| *l == restart_istiod)
        .expect("istiod restarted");
    assert!(lines[at - 1].starts_with("helm upgrade --install istiod"));
    assert_eq!(
        lines[at + 1],
        k("rollout status deployment/istiod -n mesh-system --timeout=300s")
    );
    assert!(lines.contains(&k("rollout restart deployment/ui -n ui")));
}

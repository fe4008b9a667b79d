//! Observations on a cluster, through the fake `kubectl` / `istioctl` in tests/fakes/ answering
//! like the real ones: probes (`kubectl exec … curl`), admission (`create --dry-run=server`),
//! sidecar certificates (pilot-agent / istioctl config dumps), the trust bundle and mesh CA,
//! component health, metrics through the API server proxy, and faults with their undo.

#[path = "fakes/harness.rs"]
mod fakes;

use fakes::{Fakes, profile};
use meshproof::probe::Outcome;
use meshproof::profile::Decision;
use meshproof::report::text::base64;
use meshproof::target::Target;
use meshproof::target::kube::faults::{self, Fault, Gate, PluginCaMaterial};
use meshproof::target::kube::probe::{KubeRequest, ProbeConfig};
use meshproof::target::kube::target::ClusterRun;
use meshproof::target::kube::wait::Backoff;
use meshproof::target::kube::{KubeError, KubeTarget, Kubectl, TargetKind, Timeouts, preflight};

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

fn k(args: &str) -> String {
    format!("kubectl --kubeconfig {KUBECONFIG} --context kind-t {args}")
}

/// A cluster target over the fakes (the `kubectl version` calls of preflight and the
/// reachability check come first in the log).
fn cluster(fakes: &Fakes, allow_destructive: bool) -> KubeTarget {
    let kubectl = kubectl(fakes);
    let checked = preflight::check(
        kubectl.tools(),
        TargetKind::Cluster,
        Timeouts::default().call(),
    )
    .expect("preflight");
    KubeTarget::cluster(kubectl, checked, ProbeConfig::default(), allow_destructive)
        .expect("reachable")
}

/// The calls after the target was set up.
fn calls_after_setup(fakes: &Fakes) -> Vec<String> {
    fakes
        .lines()
        .into_iter()
        .filter(|l| !l.contains(" version "))
        .filter(|l| !l.starts_with("helm version") && !l.starts_with("istioctl version"))
        .collect()
}

#[test]
fn probe_through_fake_kubectl_exec_reads_an_rbac_denial_into_the_observation() {
    let fakes = Fakes::new();
    fakes.rule(
        "kubectl * get service execution -n execution -o jsonpath={.spec.clusterIP}",
        0,
        "10.96.14.2",
        "",
    );
    fakes.rule(
        "kubectl * exec -n ui deploy/ui -c probe -- curl *",
        0,
        "RBAC: access denied\n@@meshproof http_code=403 exitcode=0 time_total=0.002817\n",
        "",
    );
    let target = cluster(&fakes, false);
    let profile = profile("tradepulse");
    let call = meshproof::intents::matrix(&profile)
        .into_iter()
        .find(|c| c.from == "ui" && c.to == "execution" && c.method == "POST")
        .expect("ui → execution POST is in the matrix");
    assert_eq!(call.expected, Decision::Deny);
    let observation = target.call(&profile, &call).expect("sent");
    assert!(
        observation.outcome.is_rbac_denied(),
        "{}",
        observation.outcome
    );
    assert_eq!(observation.sent.target.to_string(), "10.96.14.2:8080");
    assert_eq!(observation.sent.method, "POST");
    assert_eq!(observation.sent.path, call.path);
    assert_eq!(observation.latency.as_micros(), 2817);
    let exec = calls_after_setup(&fakes)
        .into_iter()
        .find(|l| l.contains(" exec "))
        .expect("exec recorded");
    assert_eq!(
        exec,
        k(&format!(
            "exec -n ui deploy/ui -c probe -- curl -sS -o - -X POST --max-time 10 \
             -w \\n@@meshproof http_code=%{{http_code}} exitcode=%{{exitcode}} time_total=%{{time_total}}\\n \
             http://execution.execution.svc.cluster.local:8080{}",
            call.path
        ))
    );
}

#[test]
fn probe_through_fake_kubectl_reads_a_reset_of_plaintext_from_outside_the_mesh() {
    let fakes = Fakes::new();
    fakes.rule("kubectl * get service gateway-api *", 0, "10.96.0.77", "");
    fakes.rule(
        "kubectl * exec -n meshproof-outside outside-probe -c probe -- curl *",
        56,
        "\n@@meshproof http_code=000 exitcode=56 time_total=0.001\n",
        "curl: (56) Recv failure: Connection reset by peer\ncommand terminated with exit code 56\n",
    );
    let target = cluster(&fakes, false);
    target.outside_probe().expect("outside pod ready");
    let observation = target
        .send(&KubeRequest {
            from: "outside-probe".into(),
            from_namespace: "meshproof-outside".into(),
            service: "gateway-api".into(),
            namespace: "soma-agent-hub".into(),
            port: 10000,
            method: "GET".into(),
            path: "/ready".into(),
        })
        .expect("sent");
    assert_eq!(observation.outcome, Outcome::Reset);
    assert!(observation.outcome.is_refused());
    let lines = calls_after_setup(&fakes);
    assert_eq!(
        lines[..2],
        [
            k("apply --server-side --field-manager meshproof --force-conflicts -f -"),
            k("wait --for=condition=Ready pod/outside-probe -n meshproof-outside --timeout=300s"),
        ]
    );
    let pod: serde_json::Value = serde_json::from_str(&fakes.stdins()[0].1).expect("list");
    assert_eq!(
        pod["items"][0]["metadata"]["labels"]["istio-injection"],
        "disabled"
    );
    assert_eq!(
        pod["items"][1]["spec"]["containers"][0]["image"],
        "docker.io/curlimages/curl:8.11.1"
    );
}

#[test]
fn probe_through_fake_kubectl_without_a_curl_report_is_a_harness_error() {
    let fakes = Fakes::new();
    fakes.rule("kubectl * get service strategy *", 0, "10.96.3.3", "");
    fakes.rule(
        "kubectl * exec *",
        1,
        "",
        "Error from server (NotFound): deployments.apps \"ingestion\" not found\n",
    );
    let target = cluster(&fakes, false);
    let profile = profile("tradepulse");
    let call = meshproof::intents::matrix(&profile)
        .into_iter()
        .find(|c| c.from == "ingestion" && c.to == "strategy")
        .expect("in the matrix");
    let err = target.call(&profile, &call).expect_err("no probe pod");
    assert!(matches!(err, KubeError::Tool(_)));
    assert!(
        err.to_string()
            .contains("deployments.apps \"ingestion\" not found"),
        "{err}"
    );
}

fn case(name: &str) -> serde_json::Value {
    let path = fakes::root().join(format!("manifests/soma-agent-hub/cases/{name}.yaml"));
    serde_saphyr::from_str(&std::fs::read_to_string(path).expect("case")).expect("YAML")
}

#[test]
fn admission_through_fake_kubectl_dry_run_reads_the_gatekeeper_denial() {
    let fakes = Fakes::new();
    fakes.rule(
        "kubectl * create --dry-run=server -o json -f -",
        1,
        "",
        "Error from server (Forbidden): error when creating \"STDIN\": admission webhook \"validation.gatekeeper.sh\" denied the request: [soma-registry-policy] Image 'evil-registry.com/malware:latest' from disallowed registry\n",
    );
    let target = cluster(&fakes, false);
    let object = case("bad-registry");
    let result = target.admission(&object).expect("decided");
    assert!(!result.allowed);
    let lines: Vec<String> = result.denials.iter().map(|v| v.gatekeeper_line()).collect();
    assert_eq!(
        lines,
        [
            "[soma-registry-policy] Image 'evil-registry.com/malware:latest' from disallowed registry"
        ]
    );
    // The object went on stdin, as JSON.
    let (_, stdin) = fakes.stdins().pop().expect("stdin");
    let sent: serde_json::Value = serde_json::from_str(&stdin).expect("JSON");
    assert_eq!(sent, object);
}

#[test]
fn admission_through_fake_kubectl_dry_run_admits_the_good_pod() {
    let fakes = Fakes::new();
    let target = cluster(&fakes, false);
    let result = target.admission(&case("good-pod")).expect("decided");
    assert!(result.allowed);
    assert!(result.denials.is_empty());
}

#[test]
fn admission_through_fake_kubectl_that_is_not_a_decision_is_a_harness_error() {
    let fakes = Fakes::new();
    fakes.rule(
        "kubectl * create --dry-run=server *",
        1,
        "",
        "Error from server (NotFound): error when creating \"STDIN\": namespaces \"soma-agent-hub\" not found\n",
    );
    let err = cluster(&fakes, false)
        .admission(&case("good-pod"))
        .expect_err("not a decision");
    assert!(
        err.to_string()
            .contains("namespaces \"soma-agent-hub\" not found"),
        "{err}"
    );
}

/// A CA, the SVID it issued to ui@prod, and both as Envoy would dump them.
struct Issued {
    pki: meshproof::pki::Pki,
    svid: meshproof::pki::Svid,
}

fn issued() -> Issued {
    let spec = meshproof::pki::CaSpec::runbook("tradepulse", "TradePulse");
    let now = time::OffsetDateTime::now_utc();
    let pki = meshproof::pki::Pki::generate(&spec, now).expect("pki");
    let svid = pki
        .issue_workload_svid("spiffe://tradepulse/prod/ui", now)
        .expect("svid");
    Issued { pki, svid }
}

fn envoy_dump(issued: &Issued) -> String {
    serde_json::json!({ "configs": [{
    "@type": "type.googleapis.com/envoy.admin.v3.SecretsConfigDump",
    "dynamic_active_secrets": [
        { "name": "default", "secret": { "name": "default", "tls_certificate": {
            "certificate_chain": { "inline_bytes": base64(issued.svid.chain_pem().as_bytes()) },
            "private_key": { "inline_bytes": base64(b"[redacted]") } } } },
        { "name": "ROOTCA", "secret": { "name": "ROOTCA", "validation_context": {
            "trusted_ca": { "inline_bytes": base64(issued.pki.root().pem().as_bytes()) } } } }
    ]}]})
    .to_string()
}

#[test]
fn sidecar_certificate_through_fake_kubectl_pilot_agent_passes_the_svid_check() {
    let fakes = Fakes::with(&["kubectl", "helm"]); // no istioctl: pilot-agent it is
    let issued = issued();
    fakes.rule(
        "kubectl * get pods -n ui -l app=ui -o json",
        0,
        r#"{"items":[{"metadata":{"name":"ui-6c9f7b-x2x9q"}}]}"#,
        "",
    );
    fakes.rule(
        "kubectl * exec -n ui ui-6c9f7b-x2x9q -c istio-proxy -- pilot-agent request GET config_dump?resource=dynamic_active_secrets",
        0,
        &envoy_dump(&issued),
        "",
    );
    fakes.rule(
        // A backslash in an argument is matched by `\\` in the fake's glob.
        r"kubectl * get configmap istio-ca-root-cert -n mesh-system -o jsonpath={.data.root-cert\\.pem}",
        0,
        issued.pki.root().pem(),
        "",
    );
    let target = cluster(&fakes, false);
    let profile = profile("tradepulse");
    let identity = profile
        .lab_identities()
        .into_iter()
        .find(|i| i.service == "ui" && i.workload.is_none())
        .expect("ui@prod");
    let chain = target
        .workload_certificate(&profile, &identity)
        .expect("read");
    assert_eq!(chain.chain.len(), 2);
    assert_eq!(chain.chain[0], issued.svid.der());
    assert!(
        chain
            .source
            .contains("pilot-agent config dump of ui/ui-6c9f7b-x2x9q"),
        "{}",
        chain.source
    );
    let bundle = target.trust_bundle(&profile).expect("bundle");
    let verdict = meshproof::checks::identity::svid(
        &chain.chain,
        &bundle,
        &identity.spiffe_id,
        profile.ca.workload_ttl,
        time::OffsetDateTime::now_utc(),
    );
    assert!(verdict.is_ok(), "{verdict:?}");
}

#[test]
fn sidecar_certificate_through_fake_istioctl_when_it_is_installed() {
    let fakes = Fakes::new();
    let issued = issued();
    fakes.rule(
        "kubectl * get pods -n ui -l app=ui -o json",
        0,
        r#"{"items":[{"metadata":{"name":"ui-1"}}]}"#,
        "",
    );
    let dump = serde_json::json!({ "dynamicActiveSecrets": [
        { "name": "default", "secret": { "tlsCertificate": {
            "certificateChain": { "inlineBytes": base64(issued.svid.chain_pem().as_bytes()) } } } }
    ]});
    fakes.rule(
        "istioctl --kubeconfig /run/meshproof/kubeconfig --context kind-t proxy-config secret ui-1.ui -o json",
        0,
        &dump.to_string(),
        "",
    );
    let target = cluster(&fakes, false);
    let secrets = target
        .sidecar_secrets(&profile("tradepulse"), "ui")
        .expect("read");
    assert_eq!(secrets.chain[0], issued.svid.der());
    assert!(
        secrets.source.starts_with("istioctl proxy-config secret"),
        "{}",
        secrets.source
    );
}

#[test]
fn workload_certificate_of_an_identity_without_a_pod_says_so() {
    let fakes = Fakes::new();
    let target = cluster(&fakes, false);
    let profile = profile("tradepulse");
    let identity = profile
        .identities()
        .into_iter()
        .find(|i| i.service == "strategy" && i.workload.as_deref() == Some("optimizer"))
        .expect("strategy/optimizer");
    let err = target
        .workload_certificate(&profile, &identity)
        .expect_err("not deployed");
    assert!(
        err.to_string()
            .contains("no workload of it runs on the cluster"),
        "{err}"
    );
}

#[test]
fn mesh_ca_through_fake_kubectl_reads_only_the_public_fields_of_cacerts() {
    let fakes = Fakes::new();
    let issued = issued();
    let field = |key: &str, pem: &str| {
        fakes.rule(
            &format!(
                "kubectl * get secret cacerts -n mesh-system -o jsonpath={{.data.{}}}",
                key.replace('.', "\\\\.")
            ),
            0,
            &base64(pem.as_bytes()),
            "",
        );
    };
    field("ca-cert.pem", issued.pki.intermediate().pem());
    field("root-cert.pem", issued.pki.root().pem());
    let target = cluster(&fakes, false);
    let ca = target.mesh_ca(&profile("tradepulse")).expect("read");
    assert_eq!(ca.intermediate_der, issued.pki.intermediate().der());
    assert_eq!(ca.root_der, issued.pki.root().der());
    assert_eq!(
        ca.plugin_dir, None,
        "an existing cluster's CA files are not ours"
    );
    let lines = calls_after_setup(&fakes);
    assert_eq!(
        lines,
        [
            k(r"get secret cacerts -n mesh-system -o jsonpath={.data.ca-cert\.pem}"),
            k(r"get secret cacerts -n mesh-system -o jsonpath={.data.root-cert\.pem}"),
        ]
    );
    assert!(!fakes.lines().iter().any(|l| l.contains("ca-key")));
}

fn status(kind: &str, ready: i64, desired: i64) -> String {
    let status = match kind {
        "daemonset" => {
            serde_json::json!({ "observedGeneration": 1, "desiredNumberScheduled": desired,
            "numberReady": ready, "updatedNumberScheduled": desired, "numberAvailable": ready })
        }
        _ => serde_json::json!({ "observedGeneration": 1, "readyReplicas": ready,
            "updatedReplicas": desired, "availableReplicas": ready }),
    };
    serde_json::json!({ "metadata": { "generation": 1 }, "spec": { "replicas": desired }, "status": status })
        .to_string()
}

#[test]
fn health_through_fake_kubectl_reads_every_component_of_the_soma_agent_hub_stack() {
    let fakes = Fakes::new();
    for (kind, ns, name, ready, desired) in [
        ("deployment", "istio-system", "istiod", 1, 1),
        ("deployment", "istio-system", "istio-ingressgateway", 1, 1),
        (
            "deployment",
            "gatekeeper-system",
            "gatekeeper-controller-manager",
            3,
            3,
        ),
        ("deployment", "gatekeeper-system", "gatekeeper-audit", 1, 1),
        ("statefulset", "spire-system", "spire-server", 1, 1),
        ("daemonset", "spire-system", "spire-agent", 1, 2),
        ("daemonset", "spire-system", "spire-spiffe-csi-driver", 2, 2),
    ] {
        fakes.rule(
            &format!("kubectl * get {kind} {name} -n {ns} -o json"),
            0,
            &status(kind, ready, desired),
            "",
        );
    }
    let target = cluster(&fakes, false);
    let health = target.health(&profile("soma-agent-hub")).expect("read");
    let summary: Vec<(String, bool, String)> = health
        .iter()
        .map(|h| (h.component.name.clone(), h.healthy, h.detail.clone()))
        .collect();
    assert_eq!(
        summary,
        [
            ("istiod", true, "1/1 ready, 1 updated"),
            ("istio-ingressgateway", true, "1/1 ready, 1 updated"),
            (
                "gatekeeper-controller-manager",
                true,
                "3/3 ready, 3 updated"
            ),
            ("gatekeeper-audit", true, "1/1 ready, 1 updated"),
            ("spire-server", true, "1/1 ready, 1 updated"),
            ("spire-agent", false, "1/2 ready, 1/2 available"),
            ("spire-spiffe-csi-driver", true, "2/2 ready, 2 updated"),
        ]
        .map(|(a, b, c)| (a.to_owned(), b, c.to_owned()))
    );
}

#[test]
fn metrics_through_fake_kubectl_are_read_through_the_api_server_pod_proxy() {
    let fakes = Fakes::new();
    fakes.rule(
        "kubectl * get pods -n mesh-system -l app=istiod -o json",
        0,
        r#"{"items":[{"metadata":{"name":"istiod-7f8b9c-q4z2w"}}]}"#,
        "",
    );
    fakes.rule(
        "kubectl * get --raw /api/v1/namespaces/mesh-system/pods/istiod-7f8b9c-q4z2w:15014/proxy/metrics",
        0,
        "# TYPE citadel_server_root_cert_expiry_timestamp gauge\ncitadel_server_root_cert_expiry_timestamp 2.0871e+09\npilot_xds_pushes{type=\"cds\"} 12\n",
        "",
    );
    let target = cluster(&fakes, false);
    let scraped = target.metrics(&profile("tradepulse"));
    assert_eq!(scraped.len(), 1, "tradepulse runs istiod only");
    let (endpoint, samples) = &scraped[0];
    assert_eq!(endpoint.component, "istiod");
    let samples = samples.as_ref().expect("scraped");
    assert_eq!(
        meshproof::target::kube::metrics::sum(samples, "pilot_xds_pushes", &[("type", "cds")]),
        12.0
    );
    assert_eq!(
        calls_after_setup(&fakes),
        [
            k("get pods -n mesh-system -l app=istiod -o json"),
            k(
                "get --raw /api/v1/namespaces/mesh-system/pods/istiod-7f8b9c-q4z2w:15014/proxy/metrics"
            ),
        ]
    );
}

#[test]
fn fault_replace_plugin_ca_through_fake_kubectl_records_the_before_state_and_restores_it() {
    let fakes = Fakes::new();
    let before = serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": { "name": "cacerts", "namespace": "mesh-system", "resourceVersion": "4711",
            "uid": "3f1c", "creationTimestamp": "2026-11-22T21:00:00Z", "managedFields": [{}] },
        "data": { "ca-key.pem": "T0xEIEtFWSBCWVRFUw==", "ca-cert.pem": "T0xEIENFUlQ=" }
    });
    fakes.rule(
        "kubectl * get secret cacerts -n mesh-system -o jsonpath={.metadata.name}",
        0,
        "cacerts",
        "",
    );
    fakes.rule(
        "kubectl * get secret cacerts -n mesh-system -o json",
        0,
        &before.to_string(),
        "",
    );
    let dir = tempfile::tempdir().expect("dir");
    let other = issued().pki.write_plugin_ca(dir.path()).expect("files");
    let material = PluginCaMaterial::from_files(&other).expect("material");
    let kubectl = kubectl(&fakes);
    let gate = Gate {
        target: TargetKind::Kind,
        allow_destructive: false,
    };
    let fault = Fault::ReplacePluginCa {
        namespace: "mesh-system".into(),
        material,
    };
    let undo = faults::inject(&kubectl, gate, &fault).expect("injected");
    let restored = undo.restore().expect("restored");
    assert!(restored.what.contains("mesh-system/cacerts"));
    assert_eq!(
        fakes.lines(),
        [
            k("get secret cacerts -n mesh-system -o jsonpath={.metadata.name}"),
            k("get secret cacerts -n mesh-system -o json"),
            k("apply --server-side --field-manager meshproof --force-conflicts -f -"),
            k("rollout restart deployment/istiod -n mesh-system"),
            k("rollout status deployment/istiod -n mesh-system --timeout=300s"),
            k("replace -f -"),
            k("rollout restart deployment/istiod -n mesh-system"),
            k("rollout status deployment/istiod -n mesh-system --timeout=300s"),
        ]
    );
    let stdins = fakes.stdins();
    let injected: serde_json::Value = serde_json::from_str(&stdins[0].1).expect("fault secret");
    let new_key = std::fs::read(&other.ca_key).expect("key");
    assert_eq!(injected["data"]["ca-key.pem"], base64(&new_key).as_str());
    let restored: serde_json::Value = serde_json::from_str(&stdins[1].1).expect("restored secret");
    assert_eq!(restored["data"]["ca-key.pem"], "T0xEIEtFWSBCWVRFUw==");
    assert!(restored["metadata"].get("resourceVersion").is_none());
    assert!(restored["metadata"].get("managedFields").is_none());
    // Neither key is in an argv or a record.
    let log = std::fs::read_to_string(&fakes.log).expect("log");
    assert!(!log.contains("T0xEIEtFWSBCWVRFUw==") && !log.contains(&base64(&new_key)));
    let records = serde_json::to_string(&kubectl.tools().records()).expect("records");
    assert!(!records.contains("T0xEIEtFWSBCWVRFUw=="));
    assert!(records.contains("(restore): secret ("), "{records}");
}

#[test]
fn fault_on_an_existing_cluster_through_fake_kubectl_is_refused_without_allow_destructive() {
    let fakes = Fakes::new();
    let target = cluster(&fakes, false);
    let err = target
        .inject(&Fault::DeletePod {
            namespace: "spire-system".into(),
            name: "spire-server-0".into(),
        })
        .expect_err("refused");
    assert!(matches!(err, KubeError::DestructiveRefused { .. }));
    assert!(err.to_string().contains("--allow-destructive"), "{err}");
    assert!(calls_after_setup(&fakes).is_empty(), "nothing was touched");
}

#[test]
fn fault_delete_pod_through_fake_kubectl_waits_for_its_statefulset_to_recover() {
    let fakes = Fakes::new();
    fakes.rule(
        "kubectl * get pod spire-server-0 -n spire-system -o json",
        0,
        r#"{"metadata":{"name":"spire-server-0","ownerReferences":[{"kind":"StatefulSet","name":"spire-server"}]}}"#,
        "",
    );
    let target = cluster(&fakes, true);
    let undo = target
        .inject(&Fault::DeletePod {
            namespace: "spire-system".into(),
            name: "spire-server-0".into(),
        })
        .expect("allowed");
    undo.restore().expect("recovered");
    assert_eq!(
        calls_after_setup(&fakes),
        [
            k("get pod spire-server-0 -n spire-system -o json"),
            k("delete pod spire-server-0 -n spire-system --wait=false"),
            k("wait --for=delete pod/spire-server-0 -n spire-system --timeout=300s"),
            k("rollout status statefulset/spire-server -n spire-system --timeout=300s"),
        ]
    );
}

#[test]
fn fault_undo_dropped_through_fake_kubectl_restores_anyway() {
    let fakes = Fakes::new();
    fakes.rule(
        "kubectl * get peerauthentication default -n mesh-system -o jsonpath={.metadata.name}",
        0,
        "default",
        "",
    );
    fakes.rule(
        "kubectl * get peerauthentication default -n mesh-system -o json",
        0,
        r#"{"apiVersion":"security.istio.io/v1","kind":"PeerAuthentication","metadata":{"name":"default","namespace":"mesh-system","resourceVersion":"9"},"spec":{"mtls":{"mode":"STRICT"}}}"#,
        "",
    );
    let kubectl = kubectl(&fakes);
    let gate = Gate {
        target: TargetKind::Kind,
        allow_destructive: false,
    };
    {
        let _undo = faults::inject(
            &kubectl,
            gate,
            &Fault::Patch {
                kind: "peerauthentication".into(),
                name: "default".into(),
                namespace: Some("mesh-system".into()),
                patch: serde_json::json!({ "spec": { "mtls": { "mode": "PERMISSIVE" } } }),
            },
        )
        .expect("injected");
        // The drill fails here and never calls restore.
    }
    let lines = fakes.lines();
    assert_eq!(
        lines[2],
        k(
            r#"patch peerauthentication default -n mesh-system --type merge -p {"spec":{"mtls":{"mode":"PERMISSIVE"}}}"#
        )
    );
    assert_eq!(lines[3], k("replace -f -"));
    let restored: serde_json::Value = serde_json::from_str(&fakes.stdins()[0].1).expect("restored");
    assert_eq!(restored["spec"]["mtls"]["mode"], "STRICT");
    assert!(
        fakes
            .progress()
            .iter()
            .any(|l| l.contains("was not restored by its drill")),
        "{:?}",
        fakes.progress()
    );
}

#[test]
fn cluster_target_through_fake_kubectl_that_cannot_be_reached_is_a_harness_error() {
    let fakes = Fakes::new();
    fakes.rule(
        "kubectl --context staging version -o json",
        1,
        r#"{"clientVersion":{"gitVersion":"v1.37.2"}}"#,
        "Unable to connect to the server: dial tcp 10.20.0.1:6443: i/o timeout\n",
    );
    let err = KubeTarget::connect(
        &fakes.toolbox(),
        &ClusterRun {
            context: Some("staging".into()),
            kubeconfig: None,
            allow_destructive: false,
            probes: ProbeConfig::default(),
        },
        &Timeouts::default(),
    )
    .expect_err("unreachable");
    let text = err.to_string();
    assert!(
        text.contains("--context staging: the cluster cannot be reached"),
        "{text}"
    );
    assert!(text.contains("i/o timeout"), "{text}");
    assert_eq!(err.exit_code(), 2);
}

#[test]
fn mesh_ca_of_a_spire_profile_through_fake_kubectl_is_the_upstream_root_over_spires_authority() {
    let fakes = Fakes::with(&["kubectl"]);
    let issued = issued(); // root = the upstream, intermediate = SPIRE's authority
    fakes.rule(
        "kubectl * get secret meshproof-upstream-ca -n spire-system -o jsonpath={.data.certificate}",
        0,
        &base64(issued.pki.root().pem().as_bytes()),
        "",
    );
    fakes.rule(
        "kubectl * get pods -n soma-agent-hub -l app=gateway-api -o json",
        0,
        r#"{"items":[{"metadata":{"name":"gateway-api-5b7d-8kq2p"}}]}"#,
        "",
    );
    fakes.rule(
        "kubectl * exec -n soma-agent-hub gateway-api-5b7d-8kq2p -c istio-proxy -- pilot-agent *",
        0,
        &envoy_dump(&issued),
        "",
    );
    let target = cluster(&fakes, false);
    let ca = target.mesh_ca(&profile("soma-agent-hub")).expect("read");
    assert_eq!(ca.root_der, issued.pki.root().der());
    assert_eq!(ca.intermediate_der, issued.pki.intermediate().der());
    assert_eq!(ca.plugin_dir, None);
    assert!(
        !fakes.lines().iter().any(|l| l.contains(".data.key")),
        "the key is never read"
    );
}

//! The kube code that needs no kubelet, against a real Kubernetes API server: etcd (Debian's
//! package) and kube-apiserver v1.37.0 with kubectl v1.37.2 (built by scripts/install/kube.sh at
//! the versions pinned in src/target/kube/versions.rs), started on loopback in a temporary
//! directory with a self-signed serving certificate and a static admin token.
//!
//! What runs for real: server-side apply of the rendered manifests phase by phase, reading them
//! back, `kubectl wait` and `rollout status`, server-side dry-run admission (a
//! ValidatingAdmissionPolicy's denial included), component health from controller status,
//! the CA reads, and faults injected by patch and by CA swap, each restored and compared with the
//! state recorded before.
//!
//! What stands in: nothing here runs pods, and kube-controller-manager is not built. A small
//! watch-driven stand-in for the Deployment controller writes each Deployment's status through
//! the status subresource (as the controller does once its replicas are ready), and Istio's CRDs
//! are registered without schemas (as the istio-base chart would register them).
//!
//! Gated like the other real-tool tests: without the binaries it prints why and passes, unless
//! MESHPROOF_REQUIRE_KUBE=1 (scripts/test) makes that a failure.

use std::io::Read as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use meshproof::pki::Pki;
use meshproof::target::Target as _;
use meshproof::target::kube::faults::{self, Fault, Gate, PluginCaMaterial};
use meshproof::target::kube::probe::ProbeConfig;
use meshproof::target::kube::tool::{Program, Timeout, Toolbox};
use meshproof::target::kube::wait::Backoff;
use meshproof::target::kube::{
    KubeError, KubeTarget, Kubectl, TargetKind, Timeouts, admission, health, install, preflight,
};

const REQUIRE: &str = "MESHPROOF_REQUIRE_KUBE";

struct Binaries {
    etcd: PathBuf,
    apiserver: PathBuf,
    kubectl: PathBuf,
}

fn cache_bin(name: &str) -> PathBuf {
    let cache = std::env::var_os("MESHPROOF_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/meshproof")))
        .unwrap_or_default();
    cache.join("bin").join(name)
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// `MESHPROOF_<VAR>`, then the install cache (the pinned build), then PATH.
fn find(var: &str, name: &str) -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(var).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("{var}={} is not a file", path.display()))
        };
    }
    let cached = cache_bin(name);
    if cached.is_file() {
        return Ok(cached);
    }
    on_path(name).ok_or_else(|| format!("{name} not found ({var}, {}, PATH)", cached.display()))
}

fn binaries() -> Result<Binaries, String> {
    let found = (
        find("MESHPROOF_ETCD", "etcd"),
        find("MESHPROOF_KUBE_APISERVER", "kube-apiserver"),
        find("MESHPROOF_KUBECTL", "kubectl"),
    );
    match found {
        (Ok(etcd), Ok(apiserver), Ok(kubectl)) => Ok(Binaries {
            etcd,
            apiserver,
            kubectl,
        }),
        (a, b, c) => Err([a.err(), b.err(), c.err()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("; ")),
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// etcd, kube-apiserver and the Deployment-status stand-in; all stopped on drop.
struct ApiServer {
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    kubectl: PathBuf,
    children: Vec<(&'static str, Child)>,
}

impl ApiServer {
    /// The server, or `None` (with the reason printed) when the binaries are missing and
    /// MESHPROOF_REQUIRE_KUBE is not set.
    fn start_or_skip() -> Option<ApiServer> {
        match binaries() {
            Ok(b) => Some(ApiServer::start(&b)),
            Err(missing) if std::env::var(REQUIRE).is_ok_and(|v| v == "1") => {
                panic!("{REQUIRE}=1 but {missing}: run scripts/setup (scripts/install/kube.sh)")
            }
            Err(missing) => {
                eprintln!(
                    "NOT RUN: {missing}; scripts/setup installs them (scripts/install/kube.sh)"
                );
                None
            }
        }
    }

    fn start(b: &Binaries) -> ApiServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let base = dir.path().to_path_buf();
        let path = |rel: &str| base.join(rel);
        let (client, peer, secure) = (free_port(), free_port(), free_port());
        let token = random_hex();
        std::fs::write(
            path("tokens.csv"),
            format!("{token},meshproof-admin,meshproof-admin,system:masters\n"),
        )
        .expect("token file");
        // The serving certificate, self-signed, so kubectl verifies the server from the start.
        let serving =
            rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
                .expect("serving certificate");
        std::fs::write(path("serving.crt"), serving.cert.pem()).expect("serving.crt");
        std::fs::write(path("serving.key"), serving.signing_key.serialize_pem())
            .expect("serving.key");
        let key = rcgen::KeyPair::generate().expect("service-account key");
        std::fs::write(path("sa.key"), key.serialize_pem()).expect("sa.key");
        std::fs::write(path("sa.pub"), key.public_key_pem()).expect("sa.pub");
        std::fs::write(
            path("kubeconfig"),
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: real\n\
                 clusters: [{{name: real, cluster: {{server: \"https://127.0.0.1:{secure}\", certificate-authority: \"{}\"}}}}]\n\
                 users: [{{name: admin, user: {{token: \"{token}\"}}}}]\n\
                 contexts: [{{name: real, context: {{cluster: real, user: admin}}}}]\n",
                path("serving.crt").display()
            ),
        )
        .expect("kubeconfig");
        let mut server = ApiServer {
            kubeconfig: path("kubeconfig"),
            kubectl: b.kubectl.clone(),
            children: Vec::new(),
            dir,
        };
        let peer_url = format!("http://127.0.0.1:{peer}");
        let client_url = format!("http://127.0.0.1:{client}");
        server.spawn(
            "etcd",
            Command::new(&b.etcd).args([
                "--name",
                "meshproof",
                "--data-dir",
                &path("etcd").display().to_string(),
                "--listen-client-urls",
                &client_url,
                "--advertise-client-urls",
                &client_url,
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
                "--initial-cluster",
                &format!("meshproof={peer_url}"),
            ]),
        );
        let sa_key = path("sa.key").display().to_string();
        server.spawn(
            "kube-apiserver",
            Command::new(&b.apiserver).args([
                &format!("--etcd-servers={client_url}"),
                "--bind-address=127.0.0.1",
                &format!("--secure-port={secure}"),
                &format!("--tls-cert-file={}", path("serving.crt").display()),
                &format!("--tls-private-key-file={}", path("serving.key").display()),
                &format!("--token-auth-file={}", path("tokens.csv").display()),
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc",
                &format!("--service-account-key-file={}", path("sa.pub").display()),
                &format!("--service-account-signing-key-file={sa_key}"),
                "--service-cluster-ip-range=10.96.0.0/16",
                // As kind runs it; the runbook's privileged pod must reach admission.
                "--allow-privileged=true",
                // Its token controller lives in kube-controller-manager, which is not running.
                "--disable-admission-plugins=ServiceAccount",
                "--profiling=false",
            ]),
        );
        server.wait_ready();
        server.start_deployment_controller();
        server
    }

    fn spawn(&mut self, name: &'static str, command: &mut Command) {
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log"))).expect("log");
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{name} does not start: {e}"));
        self.children.push((name, child));
    }

    fn log_tail(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.dir.path().join(format!("{name}.log")))
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// meshproof's own kubectl wrapper, bound to this server.
    fn kubectl(&self) -> Kubectl {
        Kubectl::new(
            self.toolbox(),
            Some(self.kubeconfig.clone()),
            None,
            Timeouts::default(),
        )
        .with_backoff(Backoff::default())
    }

    fn toolbox(&self) -> Toolbox {
        Toolbox::with_search_path(Vec::new())
            .program(Program::Kubectl, &self.kubectl)
            .build()
    }

    /// `/readyz` until it answers `ok`, with exponential backoff inside a bounded budget (the
    /// server answers 500 while its post-start hooks run); a process that exits is reported with
    /// its log at once.
    fn wait_ready(&mut self) {
        let kubectl = self.kubectl();
        let call = kubectl.call(
            ["get", "--raw", "/readyz"],
            Timeout::new("call", Duration::from_secs(10)),
        );
        let budget = Duration::from_secs(180);
        let started = std::time::Instant::now();
        let mut pause = Backoff::default().first;
        loop {
            for (name, child) in &mut self.children {
                if let Ok(Some(status)) = child.try_wait() {
                    let log = self.dir.path().join(format!("{name}.log"));
                    panic!(
                        "{name} exited ({status}) during startup:\n{}",
                        std::fs::read_to_string(log).unwrap_or_default()
                    );
                }
            }
            match kubectl.tools().run(&call) {
                Ok(out) if out.success() && out.stdout.trim() == "ok" => return,
                last if started.elapsed() + pause > budget => panic!(
                    "kube-apiserver not ready within {budget:?}: {last:?}\n{}",
                    self.log_tail("kube-apiserver")
                ),
                _ => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Backoff::default().max);
                }
            }
        }
    }

    /// Stands in for kube-controller-manager's Deployment controller: on every watch event of a
    /// Deployment whose spec generation is newer than its status, writes the status the
    /// controller writes once every replica is updated and available.
    fn start_deployment_controller(&mut self) {
        let mut watch = Command::new(&self.kubectl)
            .args(["--kubeconfig", &self.kubeconfig.display().to_string()])
            .args([
                "get",
                "deployments",
                "-A",
                "--watch",
                "--output-watch-events",
                "-o",
                "json",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl watch starts");
        let stdout = watch.stdout.take().expect("watch stdout");
        let (kubectl, kubeconfig) = (self.kubectl.clone(), self.kubeconfig.clone());
        std::thread::spawn(move || {
            let events = serde_json::Deserializer::from_reader(stdout).into_iter::<Value>();
            for event in events.map_while(Result::ok) {
                let d = &event["object"];
                let generation = d.pointer("/metadata/generation").and_then(Value::as_i64);
                let observed = d
                    .pointer("/status/observedGeneration")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                let Some(generation) = generation.filter(|g| *g > observed) else {
                    continue;
                };
                let replicas = d
                    .pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1);
                let status = json!({ "status": {
                    "observedGeneration": generation, "replicas": replicas,
                    "updatedReplicas": replicas, "readyReplicas": replicas,
                    "availableReplicas": replicas } });
                let _ = Command::new(&kubectl)
                    .args(["--kubeconfig", &kubeconfig.display().to_string()])
                    .args([
                        "patch",
                        "deployment",
                        d["metadata"]["name"].as_str().unwrap_or_default(),
                        "-n",
                        d["metadata"]["namespace"].as_str().unwrap_or_default(),
                        "--subresource=status",
                        "--type=merge",
                        "-p",
                        &status.to_string(),
                    ])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        });
        self.children.push(("deployment-controller", watch));
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        // The watch first, then the API server, then its store.
        for (_, child) in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Asks `attempt` until it gives an answer, with exponential backoff, within a bounded budget
/// (for what the API server makes effective asynchronously).
fn eventually<T>(what: &str, mut attempt: impl FnMut() -> Option<T>) -> T {
    let budget = Duration::from_secs(60);
    let started = std::time::Instant::now();
    let mut pause = Backoff::default().first;
    loop {
        if let Some(answer) = attempt() {
            return answer;
        }
        assert!(
            started.elapsed() + pause < budget,
            "{what}: no answer within {budget:?}"
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(Backoff::default().max);
    }
}

fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("/dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tradepulse() -> (
    meshproof::profile::Profile,
    meshproof::configured::Configured,
) {
    let profile = meshproof::profile::load(&root().join("manifests/tradepulse/profile.yaml"))
        .expect("profile");
    let configured =
        meshproof::configured::load(&profile, &meshproof::configured::default_dir(&profile))
            .expect("manifests");
    (profile, configured)
}

/// Istio's CRDs as the istio-base chart registers them, without their schemas.
fn istio_crds() -> Vec<Value> {
    [
        ("security.istio.io", "AuthorizationPolicy", "authorizationpolicies"),
        ("security.istio.io", "PeerAuthentication", "peerauthentications"),
        ("networking.istio.io", "DestinationRule", "destinationrules"),
    ]
    .iter()
    .map(|(group, kind, plural)| {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": { "name": format!("{plural}.{group}") },
            "spec": { "group": group, "scope": "Namespaced",
                "names": { "kind": kind, "plural": plural, "singular": kind.to_lowercase(), "listKind": format!("{kind}List") },
                "versions": [{ "name": "v1", "served": true, "storage": true,
                    "schema": { "openAPIV3Schema": { "type": "object", "x-kubernetes-preserve-unknown-fields": true } } }] }
        })
    })
    .collect()
}

/// Whether every field of `expected` is in `actual` with the same value (the server adds
/// defaults, never removes what was applied).
fn contains(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => e
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|av| contains(av, v))),
        (Value::Array(a), Value::Array(e)) => {
            a.len() == e.len() && a.iter().zip(e).all(|(av, ev)| contains(av, ev))
        }
        (a, e) => a == e,
    }
}

fn name_ns(object: &Value) -> (String, Option<String>) {
    (
        object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        object["metadata"]["namespace"].as_str().map(str::to_owned),
    )
}

fn plugin_ca(pki: &Pki, dir: &Path) -> PluginCaMaterial {
    let files = pki.write_plugin_ca(dir).expect("plug-in CA files");
    PluginCaMaterial::from_files(&files).expect("material")
}

/// The `cacerts` Secret from plug-in CA material (it goes to kubectl on stdin only).
fn cacerts(namespace: &str, m: &PluginCaMaterial) -> Value {
    let b64 = |bytes: &[u8]| meshproof::report::text::base64(bytes);
    json!({ "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": { "name": "cacerts", "namespace": namespace },
        "data": { "ca-cert.pem": b64(m.ca_cert_pem.as_bytes()), "ca-key.pem": b64(m.ca_key_pem.expose()),
                  "root-cert.pem": b64(m.root_cert_pem.as_bytes()), "cert-chain.pem": b64(m.cert_chain_pem.as_bytes()) } })
}

#[test]
fn kube_code_against_a_real_kube_apiserver_and_etcd() {
    let Some(server) = ApiServer::start_or_skip() else {
        return;
    };
    let kubectl = server.kubectl();
    let (profile, configured) = tradepulse();
    let version = kubectl.server_version().expect("server version");
    assert_eq!(
        version,
        format!("v{}", meshproof::target::kube::versions::KUBERNETES)
    );

    // Istio's CRDs first (the istio-base chart's job), each waited for until Established.
    kubectl
        .apply(
            "Istio CRDs (stand-in for the istio-base chart)",
            &istio_crds(),
        )
        .expect("CRDs applied");
    for crd in istio_crds() {
        let (name, _) = name_ns(&crd);
        kubectl
            .wait_for(
                &format!("crd/{name}"),
                None,
                "condition=Established",
                kubectl.timeouts().established(),
            )
            .expect("CRD established");
    }

    // The control-plane namespace (install's first step: the rendered manifests put the mesh-wide
    // PeerAuthentication there), then the rendered manifests, server-side applied phase by
    // phase; every Deployment rolled out.
    kubectl
        .apply(
            "control-plane namespace",
            &[json!({ "apiVersion": "v1", "kind": "Namespace",
                "metadata": { "name": profile.control_plane_namespace } })],
        )
        .expect("namespace");
    let rolled_out = install::apply_manifests(&kubectl, &configured).expect("manifests applied");
    let deployments: Vec<&Value> = configured
        .manifests
        .iter()
        .map(|m| &m.object)
        .filter(|o| o["kind"] == "Deployment")
        .collect();
    assert_eq!(rolled_out.len(), deployments.len(), "{rolled_out:?}");
    assert!(
        rolled_out.contains(&"Deployment execution/execution".to_owned()),
        "{rolled_out:?}"
    );

    // Read back: what the server holds is what was rendered, owned by meshproof's field manager.
    let mut read_back = 0;
    for object in configured.manifests.iter().map(|m| &m.object) {
        let kind = object["kind"].as_str().unwrap_or_default();
        if ![
            "AuthorizationPolicy",
            "PeerAuthentication",
            "DestinationRule",
            "Deployment",
            "Service",
        ]
        .contains(&kind)
        {
            continue;
        }
        let (name, ns) = name_ns(object);
        let mut args = vec!["get".to_owned(), kind.to_lowercase(), name.clone()];
        if let Some(ns) = &ns {
            args.extend(["-n".to_owned(), ns.clone()]);
        }
        args.extend(["-o", "json", "--show-managed-fields"].map(str::to_owned));
        let out = kubectl
            .run_ok(&kubectl.call(args, kubectl.timeouts().call()))
            .expect("read back");
        let held: Value = serde_json::from_str(&out.stdout).expect("JSON");
        assert!(
            contains(&held["spec"], &object["spec"]),
            "{kind} {name}: {held}"
        );
        let managers: Vec<&str> = held["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| f["operation"] == "Apply")
            .filter_map(|f| f["manager"].as_str())
            .collect();
        assert_eq!(managers, ["meshproof"], "{kind} {name}");
        read_back += 1;
    }
    assert!(read_back >= 25, "only {read_back} objects read back");

    // Admission by server-side dry run: admitted and not persisted; a ValidatingAdmissionPolicy
    // denial read as a denial; a missing namespace is an error, not a decision.
    let pod = |name: &str, ns: &str, privileged: bool| {
        json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": name, "namespace": ns },
            "spec": { "containers": [{ "name": "app", "image": "docker.io/hashicorp/http-echo:1.0.0",
                "securityContext": { "privileged": privileged } }] } })
    };
    let admitted = admission::review(&kubectl, &pod("dry", "strategy", true)).expect("decision");
    assert!(
        admitted.allowed && admitted.denials.is_empty(),
        "{admitted:?}"
    );
    assert_eq!(
        kubectl
            .get_field("pod", "dry", Some("strategy"), "{.metadata.name}")
            .expect("get"),
        None,
        "a dry run persists nothing"
    );
    let policy = json!({ "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": { "name": "block-privileged" },
        "spec": { "failurePolicy": "Fail",
            "matchConstraints": { "resourceRules": [{ "apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"] }] },
            "validations": [{ "expression": "object.spec.containers.all(c, !has(c.securityContext) || !has(c.securityContext.privileged) || !c.securityContext.privileged)",
                "messageExpression": "\"Container '\" + object.spec.containers[0].name + \"' is running in privileged mode\"" }] } });
    let binding = json!({ "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": { "name": "block-privileged" },
        "spec": { "policyName": "block-privileged", "validationActions": ["Deny"] } });
    kubectl
        .apply("admission policy", &[policy, binding])
        .expect("policy applied");
    // The API server takes a policy into effect asynchronously: retried like any eventual read.
    let denied = eventually("the policy denies a privileged pod", || {
        admission::review(&kubectl, &pod("bad-privileged", "strategy", true))
            .ok()
            .filter(|r| !r.allowed)
    });
    let lines: Vec<String> = denied.denials.iter().map(|v| v.gatekeeper_line()).collect();
    assert_eq!(
        lines,
        ["[block-privileged] Container 'app' is running in privileged mode"]
    );
    let missing = admission::review(&kubectl, &pod("p", "no-such-namespace", false));
    assert!(
        matches!(&missing, Err(KubeError::Tool(e)) if e.to_string().contains("NotFound")),
        "{missing:?}"
    );

    // Component health from controller status, through the cluster target.
    let tools = server.toolbox();
    let ready_tools = preflight::check(&tools, TargetKind::Cluster, Timeouts::default().call())
        .expect("preflight: kubectl is enough for a cluster");
    let target = KubeTarget::cluster(kubectl.clone(), ready_tools, ProbeConfig::default(), false)
        .expect("the cluster answers");
    let stand_ins: Vec<Value> = health::expected_components(&profile)
        .iter()
        .map(|c| {
            json!({ "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": { "name": c.name, "namespace": c.namespace },
                "spec": { "replicas": 1, "selector": { "matchLabels": { "app": c.name } },
                    "template": { "metadata": { "labels": { "app": c.name } },
                        "spec": { "containers": [{ "name": "discovery", "image": "docker.io/istio/pilot:1.31.1" }] } } } })
        })
        .collect();
    kubectl
        .apply("control-plane stand-ins", &stand_ins)
        .expect("stand-ins");
    kubectl
        .rollout_status(
            "deployment/istiod",
            &profile.control_plane_namespace,
            kubectl.timeouts().rollout(),
        )
        .expect("istiod stand-in rolled out");
    let health = target.health(&profile).expect("health read");
    assert!(health.iter().all(|h| h.healthy), "{health:?}");
    let unready = json!({ "status": { "readyReplicas": 0, "availableReplicas": 0 } });
    kubectl
        .run_ok(&kubectl.call(
            [
                "patch",
                "deployment",
                "istiod",
                "-n",
                &profile.control_plane_namespace,
                "--subresource=status",
                "--type=merge",
                "-p",
                &unready.to_string(),
            ],
            kubectl.timeouts().call(),
        ))
        .expect("status written");
    let istiod = target
        .health(&profile)
        .expect("health read")
        .into_iter()
        .find(|h| h.component.name == "istiod")
        .expect("istiod");
    assert!(!istiod.healthy);
    assert_eq!(istiod.detail, "0/1 ready, 0/1 available");

    // The CA as the mesh reads it: cacerts (the key on stdin only) and istiod's root ConfigMap.
    let now = time::OffsetDateTime::now_utc();
    let spec = meshproof::target::lab::ca_spec(&profile);
    let mesh = Pki::generate(&spec, now).expect("mesh CA");
    let ns = profile.control_plane_namespace.clone();
    let material = plugin_ca(&mesh, &server.dir.path().join("mesh-ca"));
    kubectl
        .apply_secret("cacerts", &cacerts(&ns, &material))
        .expect("cacerts");
    kubectl
        .apply(
            "istio-ca-root-cert",
            &[json!({ "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": "istio-ca-root-cert", "namespace": ns },
            "data": { "root-cert.pem": mesh.root().pem() } })],
        )
        .expect("root ConfigMap");
    let ca = target.mesh_ca(&profile).expect("mesh CA read");
    assert_eq!(ca.intermediate_der, mesh.intermediate().der());
    assert_eq!(ca.root_der, mesh.root().der());
    assert!(
        ca.plugin_dir.is_none(),
        "an existing cluster exposes no files"
    );
    target.trust_bundle(&profile).expect("trust bundle read");
    let keys = target.ca_secret_keys(&profile).expect("key names read");
    let mut held = keys.keys.clone();
    held.sort();
    assert_eq!(
        held,
        [
            "ca-cert.pem",
            "ca-key.pem",
            "cert-chain.pem",
            "root-cert.pem"
        ]
    );

    // Faults: refused on an existing cluster unless allowed; injected by patch and restored to
    // exactly the state recorded before.
    let policy = configured
        .manifests
        .iter()
        .map(|m| &m.object)
        .find(|o| o["kind"] == "AuthorizationPolicy" && o["spec"]["rules"].is_array())
        .expect("an ALLOW policy");
    let (name, pns) = name_ns(policy);
    let read = || {
        kubectl
            .get_json("authorizationpolicy", Some(&name), pns.as_deref())
            .expect("policy read")
    };
    let before = read();
    let drift = Fault::Patch {
        kind: "authorizationpolicy".into(),
        name: name.clone(),
        namespace: pns.clone(),
        patch: json!({ "spec": { "rules": [{}] } }),
    };
    let refused = faults::inject(
        &kubectl,
        Gate {
            target: TargetKind::Cluster,
            allow_destructive: false,
        },
        &drift,
    );
    assert!(
        matches!(refused, Err(KubeError::DestructiveRefused { .. })),
        "{refused:?}"
    );
    assert_eq!(
        read()["spec"],
        before["spec"],
        "a refused fault changes nothing"
    );
    let allowed = Gate {
        target: TargetKind::Cluster,
        allow_destructive: true,
    };
    let undo = faults::inject(&kubectl, allowed, &drift).expect("injected");
    assert_eq!(
        read()["spec"]["rules"],
        json!([{}]),
        "allow-all is in place"
    );
    undo.restore().expect("restored");
    let after = read();
    assert_eq!(after["spec"], before["spec"]);
    assert_eq!(after["metadata"]["labels"], before["metadata"]["labels"]);

    // The CA drill: other material swapped in (istiod restarted and rolled out), then the
    // recorded secret written back.
    let other = Pki::generate(&spec, now).expect("other CA");
    let swap = Fault::ReplacePluginCa {
        namespace: ns.clone(),
        material: plugin_ca(&other, &server.dir.path().join("other-ca")),
    };
    // istiod ready again, so the drill's rollouts have something to wait for.
    kubectl
        .run_ok(&kubectl.call(
            ["rollout", "restart", "deployment/istiod", "-n", &ns],
            kubectl.timeouts().call(),
        ))
        .expect("restart");
    kubectl
        .rollout_status("deployment/istiod", &ns, kubectl.timeouts().rollout())
        .expect("istiod rolled out");
    let undo = faults::inject(&kubectl, allowed, &swap).expect("CA swapped");
    assert_eq!(
        target.mesh_ca(&profile).expect("read").intermediate_der,
        other.intermediate().der()
    );
    undo.restore().expect("CA restored");
    assert_eq!(
        target.mesh_ca(&profile).expect("read").intermediate_der,
        mesh.intermediate().der()
    );

    // The CLI on the same server: the checklist's CA and control-plane scenarios, as the
    // pre-release gate runs them (helm and istioctl absent: an existing cluster needs neither).
    let out = server.dir.path().join("reports");
    let run = Command::new(env!("CARGO_BIN_EXE_meshproof"))
        .current_dir(root())
        .env("MESHPROOF_KUBECTL", &server.kubectl)
        .env("PATH", "/usr/bin:/bin")
        .args(["run", "--target", "cluster", "--kubeconfig"])
        .arg(&server.kubeconfig)
        .args([
            "--profile",
            "tradepulse",
            "--tags",
            "@pki or @control-plane",
            "-q",
            "--out",
        ])
        .arg(&out)
        .output()
        .expect("meshproof runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(run.status.code(), Some(0), "{text}");
    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).expect("results"))
            .expect("JSON");
    let checks: Vec<&str> = results["scenarios"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["checks"].as_array().into_iter().flatten())
        .filter_map(|c| c["check"].as_str())
        .collect();
    for check in [
        "pki.hierarchy",
        "pki.rotation-policy",
        "pki.plugin-ca",
        "control-plane.health",
    ] {
        assert!(
            checks.contains(&check),
            "{check} did not run: {checks:?}\n{text}"
        );
    }
    assert!(
        text.contains("not run  features/pki.feature"),
        "the @lab sensitivity scenario is named as not run:\n{text}"
    );

    // Everything the harness sent, as recorded: never a private key.
    let records = format!("{:?}", kubectl.tools().records());
    assert!(!records.contains("PRIVATE KEY"), "a key reached a record");
    assert!(
        records.contains("secret ("),
        "the CA went on stdin as a secret: {records}"
    );
}

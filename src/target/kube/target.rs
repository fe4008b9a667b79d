//! [`KubeTarget`]: the [`Target`] trait on a Kubernetes cluster, plus the live observations the
//! steps need (probes, admission, sidecar certificates, health, metrics, faults).
//!
//! Two ways to get one:
//! * [`KubeTarget::kind`] — the run's own kind cluster ([`ClusterGuard`]); [`KubeTarget::install`]
//!   installs each profile's stack; dropping the target (or [`KubeTarget::finish`]) deletes the
//!   cluster unless kept or reused. Faults are allowed.
//! * [`KubeTarget::cluster`] — an existing cluster reached by a kubeconfig context; nothing is
//!   installed, and faults are refused unless destructive scenarios are allowed.
//!
//! Reads, for the trait:
//! * trust bundle — istiod's `istio-ca-root-cert` ConfigMap (`root-cert.pem`) in the control-plane
//!   namespace; SPIRE's `spire-bundle` ConfigMap (`bundle.crt`) for SPIRE profiles;
//! * workload certificate — what the identity's sidecar serves ([`super::certs`]);
//! * mesh CA — the public half of the plug-in CA secret (`ca-cert.pem`, `root-cert.pem` of
//!   `cacerts`; `certificate`, `bundle` of SPIRE's upstream secret), read field by field so the
//!   key never leaves the cluster. `plugin_dir` is the harness's own copy when this run
//!   installed the CA, `None` on an existing cluster.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::applicability::TargetKind;
use super::certs::{self, CertSource, SidecarSecrets};
use super::faults::{self, Fault, Gate, Undo};
use super::health::{self, Health};
use super::install::{
    self, CACERTS_SECRET, InstallOptions, SPIRE_NAMESPACE, SPIRE_UPSTREAM_SECRET,
};
use super::kind::{ClusterGuard, KindOptions};
use super::kubectl::Kubectl;
use super::metrics::{self, Endpoint, Sample};
use super::preflight::{self as preflight_check, Preflight};
use super::probe::{KubeProber, KubeRequest, ProbeConfig};
use super::tool::{Program, Record, Toolbox};
use super::wait::Timeouts;
use super::{KubeError, versions};
use crate::configured::Configured;
use crate::intents::ExpectedCall;
use crate::pki::Pki;
use crate::policy::gatekeeper::AdmissionResult;
use crate::probe::Observation;
use crate::profile::{Identity, IdentityProvider, Profile};
use crate::spiffe::TrustBundle;
use crate::target::{MeshCa, PresentedChain, Target, TargetError};

/// What this run installed for a profile.
#[derive(Debug)]
struct InstalledProfile {
    plugin_dir: Option<PathBuf>,
    /// The plug-in CA this run gave Istio (istio-ca profiles): it lets the mTLS checks present
    /// certificates the mesh's own CA would never issue (an expired intermediate, a foreign trust
    /// domain). Held in memory for the run, like the lab's CA.
    pki: Option<Arc<Pki>>,
}

/// The identities that have a workload on a cluster: the rendered probe workloads deploy one
/// pod per service (ingress gateways included), in the profile's lab environment, without
/// workload qualifiers. Identities of other environments or qualifiers (`strategy/optimizer@dev`)
/// exist only as promises there; the lab issues them, a cluster does not.
pub fn deployed_identities(profile: &Profile) -> Vec<Identity> {
    profile
        .lab_identities()
        .into_iter()
        .filter(|i| i.workload.is_none())
        .collect()
}

/// The key names of the Secret the mesh's CA is read from (never the values).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaSecret {
    /// `namespace/name`.
    pub secret: String,
    /// The keys the CA needs.
    pub expected: Vec<&'static str>,
    /// The keys the Secret holds.
    pub keys: Vec<String>,
}

/// How `--target kind` wants its cluster (the CLI's flags).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KindRun {
    /// The run's id (`reports/<run-id>`); the cluster is `meshproof-<profile>-<run id>` unless
    /// `name` is given.
    pub run_id: String,
    /// The profile installed on this cluster (one profile per cluster: each brings its own
    /// Istio, trust domain and CA).
    pub profile: String,
    /// An explicit cluster name (with `reuse`, the cluster to reuse).
    pub name: Option<String>,
    /// `kind/cluster.yaml`.
    pub config: PathBuf,
    pub reuse: bool,
    pub keep: bool,
    /// A folder of image archives to preload.
    pub images: Option<PathBuf>,
    pub probes: ProbeConfig,
}

/// How `--target cluster` reaches its cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterRun {
    /// The kubeconfig context (`--context NAME`); `None`: the current context.
    pub context: Option<String>,
    /// `--kubeconfig FILE`; `None`: kubectl's default.
    pub kubeconfig: Option<PathBuf>,
    pub allow_destructive: bool,
    pub probes: ProbeConfig,
}

/// A private (0700) directory for the run's kubeconfig, values files and CA files, removed when
/// the target is dropped (after the cluster is deleted).
#[derive(Debug)]
struct Workdir(PathBuf);

impl Workdir {
    fn create() -> Result<Workdir, KubeError> {
        use std::os::unix::fs::DirBuilderExt as _;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let dir =
            std::env::temp_dir().join(format!("meshproof-kube-{}-{nanos}", std::process::id()));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(KubeError::io(format!("creating {}", dir.display())))?;
        Ok(Workdir(dir))
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A Kubernetes cluster as a target (see the module docs).
#[derive(Debug)]
pub struct KubeTarget {
    kind: TargetKind,
    kubectl: Kubectl,
    prober: KubeProber,
    cert_source: CertSource,
    gate: Gate,
    preflight: Preflight,
    installed: Mutex<HashMap<String, InstalledProfile>>,
    /// Whether the outside-the-mesh probe pod was created (once per run, on first use).
    outside_ready: Mutex<bool>,
    /// Dropped before the working directory (it holds the kubeconfig the delete needs).
    guard: Option<ClusterGuard>,
    /// Whether the cluster was found rather than created (a reused kind cluster).
    reused: bool,
    workdir: Option<Workdir>,
}

impl KubeTarget {
    /// `--target kind`: preflight (every missing tool named, exit 2), then the cluster is
    /// created (or reused) in a private working directory. The returned target deletes it when
    /// dropped or [`finish`](Self::finish)ed, unless kept or reused.
    pub fn start_kind(
        tools: &Toolbox,
        run: &KindRun,
        timeouts: &Timeouts,
    ) -> Result<Self, KubeError> {
        let preflight = preflight_check::check(tools, TargetKind::Kind, timeouts.call())?;
        let workdir = Workdir::create()?;
        let name = run.name.clone().unwrap_or_else(|| {
            super::kind::cluster_name(&format!("{}-{}", run.profile, run.run_id))
        });
        let guard = ClusterGuard::up(
            tools,
            &KindOptions {
                name,
                config: run.config.clone(),
                reuse: run.reuse,
                keep: run.keep,
                images: run.images.clone(),
                workdir: workdir.0.clone(),
            },
            timeouts,
        )?;
        let mut target = Self::kind(guard, preflight, run.probes.clone());
        target.workdir = Some(workdir);
        Ok(target)
    }

    /// `--target cluster`: preflight (kubectl), then the context must answer.
    pub fn connect(
        tools: &Toolbox,
        run: &ClusterRun,
        timeouts: &Timeouts,
    ) -> Result<Self, KubeError> {
        let preflight = preflight_check::check(tools, TargetKind::Cluster, timeouts.call())?;
        let kubectl = Kubectl::new(
            tools.clone(),
            run.kubeconfig.clone(),
            run.context.clone(),
            timeouts.clone(),
        );
        Self::cluster(
            kubectl,
            preflight,
            run.probes.clone(),
            run.allow_destructive,
        )
    }

    /// The options [`install`](Self::install) needs, with the target's private working
    /// directory and charts from the pinned repositories.
    pub fn install_options(&self, now: time::OffsetDateTime) -> Result<InstallOptions, KubeError> {
        let workdir = self.workdir.as_ref().ok_or_else(|| KubeError::Input {
            what: "install options".into(),
            reason: "this target has no working directory (built without start_kind): pass InstallOptions yourself".into(),
        })?;
        Ok(InstallOptions {
            workdir: workdir.0.clone(),
            charts: install::ChartSource::Repositories,
            now,
            restart_after_ca_change: self.reused,
        })
    }

    /// The run's own kind cluster.
    pub fn kind(guard: ClusterGuard, preflight: Preflight, probes: ProbeConfig) -> Self {
        let kubectl = guard.kubectl();
        let reused = !guard.created();
        let mut target = Self::new(
            TargetKind::Kind,
            kubectl,
            preflight,
            probes,
            Gate {
                target: TargetKind::Kind,
                allow_destructive: true,
            },
            Some(guard),
        );
        target.reused = reused;
        target
    }

    /// An existing cluster: the context must answer (`kubectl version`), else the target
    /// cannot be reached (exit 2).
    pub fn cluster(
        kubectl: Kubectl,
        preflight: Preflight,
        probes: ProbeConfig,
        allow_destructive: bool,
    ) -> Result<Self, KubeError> {
        let server = kubectl.server_version().map_err(|e| KubeError::Input {
            what: format!(
                "--context {}",
                kubectl.context().unwrap_or("(current context)")
            ),
            reason: format!("the cluster cannot be reached: {e}"),
        })?;
        kubectl
            .tools()
            .say(&format!("cluster: reached Kubernetes {server}"));
        Ok(Self::new(
            TargetKind::Cluster,
            kubectl,
            preflight,
            probes,
            Gate {
                target: TargetKind::Cluster,
                allow_destructive,
            },
            None,
        ))
    }

    fn new(
        kind: TargetKind,
        kubectl: Kubectl,
        preflight: Preflight,
        probes: ProbeConfig,
        gate: Gate,
        guard: Option<ClusterGuard>,
    ) -> Self {
        let cert_source = if preflight.has(Program::Istioctl) {
            CertSource::Istioctl
        } else {
            CertSource::PilotAgent
        };
        KubeTarget {
            kind,
            prober: KubeProber::new(kubectl.clone(), probes),
            kubectl,
            cert_source,
            gate,
            preflight,
            installed: Mutex::new(HashMap::new()),
            outside_ready: Mutex::new(false),
            guard,
            reused: false,
            workdir: None,
        }
    }

    pub fn kind_of(&self) -> TargetKind {
        self.kind
    }

    pub fn kubectl(&self) -> &Kubectl {
        &self.kubectl
    }

    /// Installs `profile`'s stack (kind only: an existing cluster is used as it is).
    pub fn install(
        &self,
        profile: &Profile,
        configured: &Configured,
        options: &InstallOptions,
    ) -> Result<(), KubeError> {
        if self.kind != TargetKind::Kind {
            return Err(KubeError::Input {
                what: format!("installing {} on --target {}", profile.name, self.kind),
                reason: "the cluster target never installs; it checks what is there".into(),
            });
        }
        let installed = install::install(&self.kubectl, profile, configured, options)?;
        let plugin_dir = installed.ca.plugin_dir().map(|p| p.to_path_buf());
        let pki = match installed.ca {
            install::InstalledCa::PluginCa { pki, .. } => Some(Arc::new(pki)),
            install::InstalledCa::SpireUpstream { .. } => None,
        };
        if let Ok(mut map) = self.installed.lock() {
            map.insert(profile.name.clone(), InstalledProfile { plugin_dir, pki });
        }
        Ok(())
    }

    /// The plug-in CA this run installed for `profile`, if it installed one.
    pub fn installed_ca(&self, profile: &Profile) -> Option<Arc<Pki>> {
        self.installed
            .lock()
            .ok()
            .and_then(|m| m.get(&profile.name).and_then(|i| i.pki.clone()))
    }

    /// Ends the run: deletes the kind cluster unless kept or reused, then the working
    /// directory. On an existing cluster, removes the outside-the-mesh probe namespace if this
    /// run created it, so a read-mostly run leaves nothing behind.
    pub fn finish(mut self) -> Result<(), KubeError> {
        match self.guard.take() {
            Some(guard) => guard.finish(),
            None if self.outside_created() => {
                self.kubectl
                    .delete("namespace", &self.prober.config().outside_namespace, None)
            }
            None => Ok(()),
        }
    }

    fn outside_created(&self) -> bool {
        self.outside_ready.lock().map(|r| *r).unwrap_or(false)
    }

    /// The cluster's name (kind) or context (cluster), for reports.
    pub fn cluster_label(&self) -> String {
        match &self.guard {
            Some(guard) => format!("kind cluster {}", guard.name()),
            None => format!("context {}", self.kubectl.context().unwrap_or("(current)")),
        }
    }

    /// Every command the run issued (evidence).
    pub fn records(&self) -> Vec<Record> {
        self.kubectl.tools().records()
    }

    /// Pinned versions and the tools found, for results metadata.
    pub fn versions(&self) -> BTreeMap<String, String> {
        let mut out: BTreeMap<String, String> = versions::TABLE
            .iter()
            .map(|p| (format!("pinned {}", p.component), p.version.to_owned()))
            .collect();
        for (tool, version) in self.preflight.versions() {
            out.insert(tool, version);
        }
        out
    }

    /// Sends one intent-matrix request from the caller's probe workload.
    pub fn call(&self, profile: &Profile, call: &ExpectedCall) -> Result<Observation, KubeError> {
        self.prober.send(&KubeRequest::for_call(profile, call)?)
    }

    /// Sends any request (e.g. from the outside-the-mesh pod).
    pub fn send(&self, request: &KubeRequest) -> Result<Observation, KubeError> {
        self.prober.send(request)
    }

    /// [`outside_probe`](Self::outside_probe) once per run.
    pub fn ensure_outside_probe(&self) -> Result<(), KubeError> {
        let mut ready = self.outside_ready.lock().map_err(|_| KubeError::Input {
            what: "the outside-the-mesh probe pod".into(),
            reason: "its state was poisoned by an earlier failure".into(),
        })?;
        if !*ready {
            self.outside_probe()?;
            *ready = true;
        }
        Ok(())
    }

    /// Sends a request from the outside-the-mesh pod (see [`KubeProber::send_outside`]).
    pub fn send_outside(
        &self,
        service: &str,
        namespace: &str,
        port: u16,
        path: &str,
        peer: &super::probe::OutsidePeer,
    ) -> Result<Observation, KubeError> {
        self.ensure_outside_probe()?;
        self.prober
            .send_outside(service, namespace, port, path, peer)
    }

    /// Creates the pod used for requests from outside the mesh, and waits until it is Ready.
    pub fn outside_probe(&self) -> Result<(), KubeError> {
        let manifests = self.prober.outside_pod_manifests();
        self.kubectl
            .apply("outside-the-mesh probe pod", &manifests)?;
        let ns = manifests
            .first()
            .and_then(|m| m.pointer("/metadata/name"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        self.kubectl.wait_for(
            "pod/outside-probe",
            Some(&ns),
            "condition=Ready",
            self.kubectl.timeouts().rollout(),
        )
    }

    /// Submits an object for admission (server-side dry run).
    pub fn admission(&self, object: &Value) -> Result<AdmissionResult, KubeError> {
        super::admission::review(&self.kubectl, object)
    }

    /// What the sidecar of `service` serves.
    pub fn sidecar_secrets(
        &self,
        profile: &Profile,
        service: &str,
    ) -> Result<SidecarSecrets, KubeError> {
        let svc = profile.service(service).ok_or_else(|| KubeError::Input {
            what: format!("service {service}"),
            reason: format!("not in profile {}", profile.name),
        })?;
        let pod = self
            .kubectl
            .pod_name(&svc.namespace, &format!("app={}", svc.name))?;
        certs::read(&self.kubectl, &svc.namespace, &pod, self.cert_source)
    }

    /// The health of every component `profile`'s stack runs.
    pub fn health(&self, profile: &Profile) -> Result<Vec<Health>, KubeError> {
        health::expected_components(profile)
            .iter()
            .map(|c| health::read(&self.kubectl, c))
            .collect()
    }

    /// Scrapes every control-plane metrics endpoint of `profile`'s stack.
    pub fn metrics(&self, profile: &Profile) -> Vec<(Endpoint, Result<Vec<Sample>, KubeError>)> {
        metrics::endpoints(profile)
            .into_iter()
            .map(|e| {
                let samples = metrics::scrape(&self.kubectl, &e);
                (e, samples)
            })
            .collect()
    }

    /// The key names of the CA Secret of `profile`'s stack: Istio's plug-in CA `cacerts`, or
    /// SPIRE's upstream authority. A go-template prints the names only, so no value leaves the
    /// cluster.
    pub fn ca_secret_keys(&self, profile: &Profile) -> Result<CaSecret, KubeError> {
        let (namespace, name, expected) = match profile.provider {
            IdentityProvider::IstioCa => (
                profile.control_plane_namespace.as_str(),
                CACERTS_SECRET,
                vec![
                    "ca-cert.pem",
                    "ca-key.pem",
                    "root-cert.pem",
                    "cert-chain.pem",
                ],
            ),
            IdentityProvider::Spire => (
                SPIRE_NAMESPACE,
                SPIRE_UPSTREAM_SECRET,
                vec!["certificate", "key", "bundle"],
            ),
        };
        let template = "go-template={{range $k, $v := .data}}{{$k}}{{\"\\n\"}}{{end}}";
        let call = self.kubectl.call(
            ["get", "secret", name, "-n", namespace, "-o", template],
            self.kubectl.timeouts().call(),
        );
        let keys = self
            .kubectl
            .run_ok(&call)?
            .stdout
            .lines()
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(CaSecret {
            secret: format!("{namespace}/{name}"),
            expected,
            keys,
        })
    }

    /// Injects a fault (refused on an existing cluster unless destructive scenarios are allowed).
    pub fn inject(&self, fault: &Fault) -> Result<Undo, KubeError> {
        faults::inject(&self.kubectl, self.gate, fault)
    }

    fn error(&self, error: KubeError) -> TargetError {
        TargetError {
            target: self.kind.name().to_owned(),
            message: error.to_string(),
        }
    }

    /// A PEM field of an object, base64-decoded when it comes from a Secret.
    fn pem_field(
        &self,
        kind: &str,
        name: &str,
        namespace: &str,
        key: &str,
    ) -> Result<String, KubeError> {
        let jsonpath = format!("{{.data.{}}}", key.replace('.', "\\."));
        let value = self
            .kubectl
            .get_field(kind, name, Some(namespace), &jsonpath)?
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| KubeError::Input {
                what: format!("{kind} {namespace}/{name}"),
                reason: format!("missing, or has no {key}"),
            })?;
        if kind != "secret" {
            return Ok(value);
        }
        crate::report::text::from_base64(value.trim())
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                KubeError::parse(format!("{kind} {namespace}/{name} {key}"), "not base64 PEM")
            })
    }

    /// SPIRE's active X.509 authority: the intermediate in the chain the first mesh workload's
    /// sidecar serves (with an UpstreamAuthority, SPIRE sends its authority with every SVID).
    fn spire_authority(&self, profile: &Profile) -> Result<Vec<u8>, KubeError> {
        let service = profile
            .services
            .iter()
            .find(|s| s.role == crate::profile::Role::Workload)
            .ok_or_else(|| KubeError::Input {
                what: format!("profile {}", profile.name),
                reason: "has no workload whose sidecar could show SPIRE's authority".into(),
            })?;
        let secrets = self.sidecar_secrets(profile, &service.name)?;
        secrets.chain.get(1).cloned().ok_or_else(|| {
            KubeError::parse(
                secrets.source,
                "the SVID chain holds no intermediate: is SPIRE's UpstreamAuthority configured?",
            )
        })
    }

    fn one_der(&self, pem: &str, what: &str) -> Result<Vec<u8>, KubeError> {
        crate::spiffe::parse_pem_chain(pem)
            .map_err(|e| KubeError::parse(what, e.to_string()))?
            .into_iter()
            .next()
            .ok_or_else(|| KubeError::parse(what, "no certificate"))
    }
}

impl Drop for KubeTarget {
    fn drop(&mut self) {
        // The cluster first: its delete needs the kubeconfig in the working directory.
        drop(self.guard.take());
        drop(self.workdir.take());
    }
}

impl Target for KubeTarget {
    fn name(&self) -> &str {
        self.kind.name()
    }

    fn trust_bundle(&self, profile: &Profile) -> Result<TrustBundle, TargetError> {
        let pem = match profile.provider {
            IdentityProvider::IstioCa => self.pem_field(
                "configmap",
                "istio-ca-root-cert",
                &profile.control_plane_namespace,
                "root-cert.pem",
            ),
            IdentityProvider::Spire => {
                self.pem_field("configmap", "spire-bundle", SPIRE_NAMESPACE, "bundle.crt")
            }
        }
        .map_err(|e| self.error(e))?;
        TrustBundle::from_pem(profile.trust_domain.clone(), &pem).map_err(|e| TargetError {
            target: self.kind.name().to_owned(),
            message: format!("trust bundle of {}: {e}", profile.name),
        })
    }

    fn workload_certificate(
        &self,
        profile: &Profile,
        identity: &Identity,
    ) -> Result<PresentedChain, TargetError> {
        let deployed = identity.workload.is_none()
            && (identity.environment.is_none() || identity.environment == profile.lab_environment);
        if !deployed {
            return Err(self.error(KubeError::Input {
                what: format!("identity {}", identity.label()),
                reason: format!(
                    "no workload of it runs on the cluster: the probe workloads deploy one pod per service, in environment {}",
                    profile.lab_environment.as_deref().unwrap_or("(none)")
                ),
            }));
        }
        self.sidecar_secrets(profile, &identity.service)
            .map(|s| s.presented())
            .map_err(|e| self.error(e))
    }

    fn mesh_ca(&self, profile: &Profile) -> Result<MeshCa, TargetError> {
        let read = |name: &str, namespace: &str, key: &str| -> Result<Vec<u8>, KubeError> {
            let pem = self.pem_field("secret", name, namespace, key)?;
            self.one_der(&pem, &format!("secret {namespace}/{name} {key}"))
        };
        let (root_der, intermediate_der) = match profile.provider {
            IdentityProvider::IstioCa => {
                let ns = profile.control_plane_namespace.as_str();
                let intermediate =
                    read(CACERTS_SECRET, ns, "ca-cert.pem").map_err(|e| self.error(e))?;
                let root = read(CACERTS_SECRET, ns, "root-cert.pem").map_err(|e| self.error(e))?;
                (root, intermediate)
            }
            IdentityProvider::Spire => {
                // The upstream root, and SPIRE's own active authority as workloads present it.
                let root = read(SPIRE_UPSTREAM_SECRET, SPIRE_NAMESPACE, "certificate")
                    .map_err(|e| self.error(e))?;
                let authority = self.spire_authority(profile).map_err(|e| self.error(e))?;
                (root, authority)
            }
        };
        let plugin_dir = self
            .installed
            .lock()
            .ok()
            .and_then(|m| m.get(&profile.name).and_then(|i| i.plugin_dir.clone()));
        Ok(MeshCa {
            root_der,
            intermediate_der,
            plugin_dir,
        })
    }
}

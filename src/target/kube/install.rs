//! Installs a profile's stack on a cluster, at the versions pinned in [`super::versions`]:
//!
//! 1. the control-plane namespace (and `spire-system` for SPIRE profiles);
//! 2. the harness's own CA, from the profile's CA policy: for istio-ca profiles the
//!    [`crate::pki`] hierarchy as Istio's plug-in CA secret `cacerts` (`ca-cert.pem`,
//!    `ca-key.pem`, `root-cert.pem`, `cert-chain.pem`) in the control-plane namespace; for SPIRE
//!    profiles a root ([`super::spire_upstream`]) as SPIRE's disk UpstreamAuthority (secret
//!    `meshproof-upstream-ca`: `certificate`, `key`, `bundle`), under which SPIRE mints its own
//!    rotating authority. Either secret goes to kubectl on stdin only;
//! 3. Istio with helm: `base`, then (SPIRE profiles) `spire-crds` and `spire` with the
//!    controller manager watching the rendered ClusterSPIFFEIDs, then `istiod` with
//!    `meshConfig.trustDomain` from the profile (and, for SPIRE, the `spire` injection template
//!    that mounts the SPIFFE CSI driver's Workload API socket into every sidecar), then the
//!    `gateway` chart when the profile has an ingress service;
//! 4. Gatekeeper with helm when the profile has admission policies;
//! 5. the configured manifests, server-side applied in dependency order: namespaces, Istio
//!    policies, ConstraintTemplates (each waited for until Gatekeeper has created its CRD), their
//!    constraints, SPIRE registrations, then workloads; then every Deployment's rollout.
//!
//! helm runs with `--wait --timeout` (watch-based readiness, named `helm-install`); kubectl
//! waits are `kubectl wait` / `rollout status` (named `established` / `rollout`); calls that
//! race eventual consistency are retried with backoff inside the `eventual` budget.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use time::OffsetDateTime;

use super::KubeError;
use super::kubectl::{Kubectl, describe};
use super::tool::{Call, Program, SecretBytes};
use super::versions;
use super::wait::Timeouts;
use crate::configured::Configured;
use crate::pki::Pki;
use crate::profile::{IdentityProvider, Profile, Role};

/// Istio's plug-in CA secret.
pub const CACERTS_SECRET: &str = "cacerts";
/// SPIRE's disk UpstreamAuthority secret.
pub const SPIRE_UPSTREAM_SECRET: &str = "meshproof-upstream-ca";
/// Where the SPIRE chart is installed (the runbook's namespace).
pub const SPIRE_NAMESPACE: &str = "spire-system";
/// Where the Gatekeeper chart is installed.
pub const GATEKEEPER_NAMESPACE: &str = "gatekeeper-system";
/// The ingress gateway's helm release (the runbook's name).
pub const INGRESS_RELEASE: &str = "istio-ingressgateway";

/// Where charts come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChartSource {
    /// `--repo URL CHART --version V` (the pinned repositories).
    Repositories,
    /// `DIR/CHART-VERSION.tgz` (air-gapped: `helm pull CHART --repo URL --version V -d DIR`).
    Directory(PathBuf),
}

#[derive(Clone, Debug)]
pub struct InstallOptions {
    /// A private (0700) directory: values files and the plug-in CA files live here.
    pub workdir: PathBuf,
    pub charts: ChartSource,
    /// The CA's notion of now.
    pub now: OffsetDateTime,
    /// The cluster was reused: its istiod / SPIRE server and workloads hold an earlier run's CA,
    /// so they are restarted after the new CA is in place.
    pub restart_after_ca_change: bool,
}

/// One helm release to install.
#[derive(Clone, Debug, PartialEq)]
pub struct Release {
    pub name: &'static str,
    pub chart: &'static str,
    pub repo: &'static str,
    pub version: &'static str,
    pub namespace: String,
    /// Written to `WORKDIR/values-<release>.json` and passed with `--values`.
    pub values: Value,
    /// Extra `--set-string` pairs (none carry secrets).
    pub set_string: Vec<(String, String)>,
}

/// The CA the mesh was given.
#[derive(Debug)]
pub enum InstalledCa {
    /// Istio's plug-in CA: the hierarchy, and its files as the harness wrote them (key `0600`).
    PluginCa { pki: Pki, plugin_dir: PathBuf },
    /// SPIRE's upstream root (DER); its key was sent to the cluster and dropped.
    SpireUpstream { root_der: Vec<u8> },
}

impl InstalledCa {
    /// The plug-in CA directory, for istio-ca profiles.
    pub fn plugin_dir(&self) -> Option<&Path> {
        match self {
            InstalledCa::PluginCa { plugin_dir, .. } => Some(plugin_dir),
            InstalledCa::SpireUpstream { .. } => None,
        }
    }
}

/// What was installed for a profile.
#[derive(Debug)]
pub struct Installed {
    pub profile: String,
    pub ca: InstalledCa,
    pub releases: Vec<Release>,
    /// `Deployment ns/name` of every workload rolled out.
    pub workloads: Vec<String>,
}

/// The helm releases a profile needs, in install order (without the SPIRE pair's position
/// logic: see [`install`]).
pub fn releases(profile: &Profile) -> Vec<Release> {
    let ns = profile.control_plane_namespace.clone();
    let spire = profile.provider == IdentityProvider::Spire;
    let mut out = vec![Release {
        name: "istio-base",
        chart: "base",
        repo: versions::ISTIO_REPO,
        version: versions::ISTIO,
        namespace: ns.clone(),
        values: json!({ "global": { "istioNamespace": ns } }),
        set_string: Vec::new(),
    }];
    if spire {
        out.push(Release {
            name: "spire-crds",
            chart: "spire-crds",
            repo: versions::SPIRE_REPO,
            version: versions::SPIRE_CRDS_CHART,
            namespace: SPIRE_NAMESPACE.into(),
            values: json!({}),
            set_string: Vec::new(),
        });
        out.push(Release {
            name: "spire",
            chart: "spire",
            repo: versions::SPIRE_REPO,
            version: versions::SPIRE_CHART,
            namespace: SPIRE_NAMESPACE.into(),
            values: spire_values(profile),
            set_string: Vec::new(),
        });
    }
    out.push(Release {
        name: "istiod",
        chart: "istiod",
        repo: versions::ISTIO_REPO,
        version: versions::ISTIO,
        namespace: ns.clone(),
        values: istiod_values(profile),
        set_string: Vec::new(),
    });
    if let Some(ingress) = profile.services.iter().find(|s| s.role == Role::Ingress) {
        let mut set_string = Vec::new();
        if spire {
            set_string.push((
                r"podAnnotations.inject\.istio\.io/templates".to_owned(),
                r"gateway\,spire".to_owned(),
            ));
        }
        out.push(Release {
            name: INGRESS_RELEASE,
            chart: "gateway",
            repo: versions::ISTIO_REPO,
            version: versions::ISTIO,
            namespace: ingress.namespace.clone(),
            values: json!({
                // kind has no load balancer: helm --wait would wait for an address forever.
                "service": { "type": "ClusterIP" },
                "serviceAccount": { "name": ingress.service_account },
                // The rendered ClusterSPIFFEID and policies select the profile's service name.
                "labels": { "app": ingress.name },
            }),
            set_string,
        });
    }
    if profile.admission.is_some() {
        out.push(Release {
            name: "gatekeeper",
            chart: "gatekeeper",
            repo: versions::GATEKEEPER_REPO,
            version: versions::GATEKEEPER,
            namespace: GATEKEEPER_NAMESPACE.into(),
            values: json!({}),
            set_string: Vec::new(),
        });
    }
    out
}

fn istiod_values(profile: &Profile) -> Value {
    let mut values = json!({
        "global": { "istioNamespace": profile.control_plane_namespace },
        "meshConfig": { "trustDomain": profile.trust_domain.as_str() },
    });
    if profile.provider == IdentityProvider::Spire {
        // Istio's SPIRE integration: every sidecar gets the SPIFFE CSI driver's Workload API
        // socket, and Envoy takes its SVID from SPIRE instead of istiod.
        values["sidecarInjectorWebhook"] = json!({
            "defaultTemplates": ["sidecar", "spire"],
            "templates": {
                "spire": "spec:\n  containers:\n  - name: istio-proxy\n    volumeMounts:\n    - name: workload-socket\n      mountPath: /run/secrets/workload-spiffe-uds\n      readOnly: true\n  volumes:\n  - name: workload-socket\n    csi:\n      driver: \"csi.spiffe.io\"\n      readOnly: true\n"
            }
        });
    }
    values
}

fn spire_values(profile: &Profile) -> Value {
    let cluster = profile
        .spire
        .as_ref()
        .map(|s| s.cluster.clone())
        .unwrap_or_else(|| profile.name.clone());
    json!({
        "global": { "spire": {
            "clusterName": cluster,
            "trustDomain": profile.trust_domain.as_str(),
        }},
        "spire-server": {
            "ca_subject": {
                "organization": profile.ca.organization,
                "common_name": profile.trust_domain.as_str(),
            },
            "upstreamAuthority": { "disk": {
                "enabled": true,
                "secret": { "create": false, "name": SPIRE_UPSTREAM_SECRET },
            }},
            "controllerManager": {
                // The rendered ClusterSPIFFEIDs carry no className.
                "watchClassless": true,
                // Only the profile's registrations: an unregistered workload must get no SVID.
                "identities": { "clusterSPIFFEIDs": {
                    "default": { "enabled": false },
                    "test-keys": { "enabled": false },
                    "oidc-discovery-provider": { "enabled": false },
                }},
            },
            "telemetry": { "prometheus": { "enabled": true } },
        },
        "spire-agent": { "telemetry": { "prometheus": { "enabled": true } } },
    })
}

/// The helm command line for `release` (values file path given).
pub fn helm_args(
    release: &Release,
    values_file: &Path,
    charts: &ChartSource,
    kubectl: &Kubectl,
    timeouts: &Timeouts,
) -> Vec<String> {
    let mut args = vec![
        "upgrade".to_owned(),
        "--install".to_owned(),
        release.name.to_owned(),
    ];
    match charts {
        ChartSource::Repositories => {
            args.push(release.chart.to_owned());
            args.push("--repo".to_owned());
            args.push(release.repo.to_owned());
            args.push("--version".to_owned());
            args.push(release.version.to_owned());
        }
        ChartSource::Directory(dir) => {
            args.push(
                dir.join(format!("{}-{}.tgz", release.chart, release.version))
                    .display()
                    .to_string(),
            );
        }
    }
    args.extend([
        "--namespace".to_owned(),
        release.namespace.clone(),
        "--create-namespace".to_owned(),
    ]);
    args.extend(kubectl.connection_args(Program::Helm));
    args.push("--values".to_owned());
    args.push(values_file.display().to_string());
    for (key, value) in &release.set_string {
        args.push("--set-string".to_owned());
        args.push(format!("{key}={value}"));
    }
    args.extend([
        "--wait".to_owned(),
        "--timeout".to_owned(),
        Timeouts::flag(timeouts.helm_install),
    ]);
    args
}

/// Installs everything `profile` needs on the cluster `kubectl` reaches (see the module docs).
pub fn install(
    kubectl: &Kubectl,
    profile: &Profile,
    configured: &Configured,
    options: &InstallOptions,
) -> Result<Installed, KubeError> {
    let tools = kubectl.tools();
    let timeouts = kubectl.timeouts();
    let workdir = options.workdir.join(&profile.name);
    create_private_dir(&workdir)?;
    tools.say(&format!(
        "install: {} (trust domain {}, identity {:?}, Istio {}, control plane in {})",
        profile.name,
        profile.trust_domain.as_str(),
        profile.provider,
        versions::ISTIO,
        profile.control_plane_namespace
    ));

    // 1. namespaces the charts and secrets go into.
    let mut namespaces = vec![namespace(&profile.control_plane_namespace)];
    if profile.provider == IdentityProvider::Spire {
        namespaces.push(namespace(SPIRE_NAMESPACE));
    }
    kubectl.apply("control-plane namespaces", &namespaces)?;

    // 2. the harness's CA.
    let (secret, ca) = match profile.provider {
        IdentityProvider::IstioCa => {
            let pki = Pki::generate(&crate::target::lab::ca_spec(profile), options.now)?;
            let plugin_dir = workdir.join("cacerts");
            let files = pki.write_plugin_ca(&plugin_dir)?;
            let read = |path: &Path| -> Result<Vec<u8>, KubeError> {
                std::fs::read(path).map_err(KubeError::io(format!("reading {}", path.display())))
            };
            let key = SecretBytes::new(read(&files.ca_key)?);
            let secret = secret_object(
                CACERTS_SECRET,
                &profile.control_plane_namespace,
                &[
                    ("ca-cert.pem", &read(&files.ca_cert)?),
                    ("ca-key.pem", key.expose()),
                    ("root-cert.pem", &read(&files.root_cert)?),
                    ("cert-chain.pem", &read(&files.cert_chain)?),
                ],
            );
            (secret, InstalledCa::PluginCa { pki, plugin_dir })
        }
        IdentityProvider::Spire => {
            let root = super::spire_upstream::generate(profile, options.now)?;
            let secret = secret_object(
                SPIRE_UPSTREAM_SECRET,
                SPIRE_NAMESPACE,
                &[
                    ("certificate", root.cert_pem.as_bytes()),
                    ("key", root.key_pem.expose()),
                    ("bundle", root.cert_pem.as_bytes()),
                ],
            );
            (
                secret,
                InstalledCa::SpireUpstream {
                    root_der: root.cert_der,
                },
            )
        }
    };
    kubectl.apply_secret(
        &format!(
            "Secret {}/{}",
            secret["metadata"]["namespace"].as_str().unwrap_or_default(),
            secret["metadata"]["name"].as_str().unwrap_or_default()
        ),
        &secret,
    )?;
    drop(secret);

    // 3-4. charts.
    let releases = releases(profile);
    for release in &releases {
        let values_file = workdir.join(format!("values-{}.json", release.name));
        let text = serde_json::to_string_pretty(&release.values)
            .map_err(|e| KubeError::parse(release.name, e.to_string()))?;
        std::fs::write(&values_file, text)
            .map_err(KubeError::io(format!("writing {}", values_file.display())))?;
        tools.say(&format!(
            "helm: {} {} {} into {} ({})",
            release.name,
            release.chart,
            release.version,
            release.namespace,
            timeouts.helm_install()
        ));
        let args = helm_args(release, &values_file, &options.charts, kubectl, timeouts);
        // helm's own --timeout is the limit; the process gets a minute more to report it.
        let limit = super::tool::Timeout::new(
            "helm-install",
            timeouts.helm_install + std::time::Duration::from_secs(60),
        );
        let call = Call::new(Program::Helm, args, limit);
        let out = tools.run(&call)?;
        if !out.success() {
            if out.stderr.contains("context deadline exceeded") || out.stderr.contains("timed out")
            {
                return Err(KubeError::Timeout {
                    what: format!(
                        "helm release {} ({}) not ready: {}",
                        release.name,
                        release.chart,
                        super::tool::excerpt(&out.stderr)
                    ),
                    timeout: timeouts.helm_install(),
                });
            }
            return Err(KubeError::Tool(super::tool::failed(&call, &out)));
        }
        if options.restart_after_ca_change {
            // A reused cluster's CA holders loaded the previous run's CA at startup.
            let holder = match release.name {
                "istiod" => Some(("deployment/istiod", release.namespace.as_str())),
                "spire" => Some(("statefulset/spire-server", SPIRE_NAMESPACE)),
                _ => None,
            };
            if let Some((resource, namespace)) = holder {
                restart(kubectl, resource, namespace)?;
            }
        }
    }

    // 5. the configured manifests, in dependency order.
    let workloads = apply_manifests(kubectl, configured)?;
    if options.restart_after_ca_change {
        // Their sidecars hold certificates from the previous run's CA.
        for workload in &workloads {
            if let Some((namespace, name)) = workload
                .strip_prefix("Deployment ")
                .and_then(|w| w.split_once('/'))
            {
                restart(kubectl, &format!("deployment/{name}"), namespace)?;
            }
        }
    }
    Ok(Installed {
        profile: profile.name.clone(),
        ca,
        releases,
        workloads,
    })
}

/// The phases of [`apply_manifests`], by object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Namespaces,
    IstioPolicy,
    ConstraintTemplates,
    Constraints,
    SpireRegistrations,
    Workloads,
}

impl Phase {
    pub fn of(object: &Value) -> Phase {
        let kind = object["kind"].as_str().unwrap_or_default();
        let api = object["apiVersion"].as_str().unwrap_or_default();
        if kind == "Namespace" {
            Phase::Namespaces
        } else if api.contains("istio.io/") {
            Phase::IstioPolicy
        } else if kind == "ConstraintTemplate" {
            Phase::ConstraintTemplates
        } else if api.starts_with("constraints.gatekeeper.sh/") {
            Phase::Constraints
        } else if api.starts_with("spire.spiffe.io/") {
            Phase::SpireRegistrations
        } else {
            Phase::Workloads
        }
    }

    fn label(self) -> &'static str {
        match self {
            Phase::Namespaces => "namespaces",
            Phase::IstioPolicy => "Istio security policy",
            Phase::ConstraintTemplates => "Gatekeeper ConstraintTemplates",
            Phase::Constraints => "Gatekeeper constraints",
            Phase::SpireRegistrations => "SPIRE registrations",
            Phase::Workloads => "workloads",
        }
    }
}

/// Server-side applies the configured manifests phase by phase, waits for every
/// ConstraintTemplate's CRD before its constraints, and for every Deployment's rollout after.
/// Returns `Deployment ns/name` for each Deployment rolled out.
pub fn apply_manifests(
    kubectl: &Kubectl,
    configured: &Configured,
) -> Result<Vec<String>, KubeError> {
    let timeouts = kubectl.timeouts();
    let mut phases: std::collections::BTreeMap<Phase, Vec<Value>> = Default::default();
    for manifest in &configured.manifests {
        phases
            .entry(Phase::of(&manifest.object))
            .or_default()
            .push(manifest.object.clone());
    }
    let mut rolled_out = Vec::new();
    for (phase, objects) in &phases {
        kubectl.apply(phase.label(), objects)?;
        if *phase == Phase::ConstraintTemplates {
            for template in objects {
                let name = template
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                kubectl.wait_for(
                    &format!("constrainttemplate/{name}"),
                    None,
                    "jsonpath={.status.created}=true",
                    timeouts.established(),
                )?;
            }
        }
        if *phase == Phase::Workloads {
            for object in objects.iter().filter(|o| o["kind"] == "Deployment") {
                let name = object
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let namespace = object
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or("default");
                kubectl.rollout_status(
                    &format!("deployment/{name}"),
                    namespace,
                    timeouts.rollout(),
                )?;
                rolled_out.push(describe(object));
            }
        }
    }
    Ok(rolled_out)
}

/// `rollout restart`, then the rollout, within the `rollout` timeout.
fn restart(kubectl: &Kubectl, resource: &str, namespace: &str) -> Result<(), KubeError> {
    kubectl.run_ok(&kubectl.call(
        ["rollout", "restart", resource, "-n", namespace],
        kubectl.timeouts().call(),
    ))?;
    kubectl.rollout_status(resource, namespace, kubectl.timeouts().rollout())
}

fn namespace(name: &str) -> Value {
    json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name } })
}

/// An Opaque Secret with base64 data. The caller must send it on stdin only.
fn secret_object(name: &str, namespace: &str, data: &[(&str, &[u8])]) -> Value {
    let mut map = serde_json::Map::new();
    for (key, bytes) in data {
        map.insert(
            (*key).to_owned(),
            Value::String(crate::report::text::base64(bytes)),
        );
    }
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": { "app.kubernetes.io/managed-by": "meshproof" },
        },
        "data": map,
    })
}

fn create_private_dir(dir: &Path) -> Result<(), KubeError> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(KubeError::io(format!("creating {}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_are_phased_by_what_they_depend_on() {
        let of = |api: &str, kind: &str| Phase::of(&json!({ "apiVersion": api, "kind": kind }));
        assert_eq!(of("v1", "Namespace"), Phase::Namespaces);
        assert_eq!(
            of("security.istio.io/v1", "AuthorizationPolicy"),
            Phase::IstioPolicy
        );
        assert_eq!(
            of("networking.istio.io/v1", "DestinationRule"),
            Phase::IstioPolicy
        );
        assert_eq!(
            of("templates.gatekeeper.sh/v1", "ConstraintTemplate"),
            Phase::ConstraintTemplates
        );
        assert_eq!(
            of("constraints.gatekeeper.sh/v1beta1", "K8sRequiredLabels"),
            Phase::Constraints
        );
        assert_eq!(
            of("spire.spiffe.io/v1alpha1", "ClusterSPIFFEID"),
            Phase::SpireRegistrations
        );
        assert_eq!(of("apps/v1", "Deployment"), Phase::Workloads);
        assert!(Phase::Constraints > Phase::ConstraintTemplates);
        assert!(Phase::Workloads > Phase::SpireRegistrations);
    }
}

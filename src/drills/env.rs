//! The lab a drill acts on, its recorded state, and the undo that restores it.
//!
//! # Contract
//!
//! [`DrillEnv::start`] brings up, in a private (0700) directory of its own, exactly what the
//! drill's probes and fault need: the profile's lab mesh (real Envoy sidecars, RBAC compiled from
//! the configured manifests) with the lab CA's SVIDs and the lab control plane (the signing
//! intermediate and Istio's plug-in CA secret) — or, when the drill runs SPIRE, its own SPIRE
//! server and agents and the same mesh with every sidecar fed by its agent
//! ([`crate::target::lab::mesh_spire`]) — and/or the admission webhook. A drill never touches the
//! run's shared mesh or SPIRE: other scenarios keep running on theirs, and nothing a fault does
//! can leak into them.
//!
//! [`DrillEnv::snapshot`] records what is observable: the serial each sidecar serves, the
//! intermediate in each workload's chain and the one the control plane signs with, a digest of the
//! RBAC each Envoy enforces and its mTLS mode, readiness, SPIRE server/agent health and
//! registration entries, whether the webhook answers, and how many lab processes run.
//!
//! [`DrillEnv::restore`] undoes whatever differs from a snapshot, observation by observation (so
//! it also undoes a half-applied fault after an interruption): stops the fault's own traffic,
//! restarts the admission webhook and SPIRE processes (agents whose own SVID ran out meanwhile
//! re-attest), restores the control plane's intermediate and secret, pushes the original RBAC to every
//! sidecar that enforces something else, and gives every workload back its original certificate;
//! [`DrillEnv::remove_stray_entries`] (once the probes stopped) deletes registration entries a
//! probe left.
//! [`SyncUndo`] is the last resort when that async undo cannot run (the drill's future was
//! dropped): it restores what can be restored without awaiting (certificates, the secret) and
//! stops the fault's traffic; the processes go with the environment.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::RwLock;
use tokio::task::JoinHandle;

use super::schema::{Drill, FailurePolicy, FaultKind, ProbeKind, UndoCheck};
use super::webhook::{ApiServer, Webhook};
use crate::configured::Configured;
use crate::pki::Pki;
use crate::policy::gatekeeper::Admission;
use crate::policy::istio::MeshPolicies;
use crate::profile::Profile;
use crate::target::Target as _;
use crate::target::lab::Lab;
use crate::target::lab::mesh::{LabMesh, WorkloadState};
use crate::target::lab::sidecar::Credentials;
use crate::target::lab::spire::{SpireLab, SpireLabConfig};

/// Bound on waiting for a pushed certificate to be served.
pub const SERVE_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a fault may ask to be held beyond the drill's own `holdFor`.
pub const MAX_HOLD: Duration = Duration::from_secs(60);
/// Bound on a retiring sidecar finishing the requests it holds.
pub const DRAIN_BOUND: Duration = Duration::from_secs(2);

static SEQ: AtomicU64 = AtomicU64::new(0);

/// Who signs workload certificates in the lab control plane.
#[derive(Clone, Debug)]
pub enum Signer {
    /// A valid intermediate.
    Valid(Pki),
    /// The intermediate has expired: whatever is issued chains to an expired intermediate.
    Expired {
        pki: Pki,
        intermediate_serial: String,
    },
}

impl Signer {
    pub fn serial(&self) -> String {
        match self {
            Signer::Valid(pki) => pki.intermediate().serial_hex().to_owned(),
            Signer::Expired {
                intermediate_serial,
                ..
            } => intermediate_serial.clone(),
        }
    }
}

/// The lab's istiod as far as certificates go: the intermediate it signs with, the plug-in CA
/// secret it loads from, and an intermediate prepared for rotation.
#[derive(Debug)]
pub struct ControlPlane {
    pub signer: Signer,
    pub prepared: Option<Pki>,
    /// Istio's plug-in CA files (`istio-ca-secret` / `cacerts`).
    pub secret: PathBuf,
    pub original: Pki,
}

pub struct MeshEnv {
    pub mesh: RwLock<LabMesh>,
    /// The Istio policies in force now.
    pub policies: Mutex<MeshPolicies>,
    pub original_policies: MeshPolicies,
    /// Every workload's credentials before the drill (the undo puts them back); empty for a
    /// SPIRE-fed mesh, whose certificates come from SPIRE.
    pub original_credentials: BTreeMap<String, Credentials>,
    /// The lab CA's control plane; `None` for a SPIRE-fed mesh.
    pub control_plane: Option<Mutex<ControlPlane>>,
}

impl MeshEnv {
    /// The lab CA's control plane, locked.
    pub fn control_plane(&self) -> Result<std::sync::MutexGuard<'_, ControlPlane>, String> {
        self.control_plane.as_ref().map(lock).ok_or_else(|| {
            "this drill's mesh takes its certificates from SPIRE, not the lab CA".to_owned()
        })
    }
}

pub struct SpireEnv {
    pub lab: RwLock<SpireLab>,
    /// Entries a probe created and could not remove yet.
    pub stray_entries: Mutex<BTreeSet<String>>,
    /// The lab's directory (every SPIRE process names it on its command line).
    pub root: PathBuf,
}

pub struct AdmissionEnv {
    pub admission: Arc<Admission>,
    pub webhook: tokio::sync::Mutex<Option<Webhook>>,
    pub addr: SocketAddr,
    pub api: ApiServer,
    /// Admission cases by name: the object to submit.
    pub cases: BTreeMap<String, Value>,
}

/// Traffic the fault itself sends, recorded in the timeline under its own probe id.
pub struct AttackProbe {
    pub id: String,
    pub describe: String,
}

pub struct DrillEnv {
    pub profile: Arc<Profile>,
    pub configured: Arc<Configured>,
    pub workdir: PathBuf,
    pub mesh: Option<MeshEnv>,
    pub spire: Option<SpireEnv>,
    pub admission: Option<AdmissionEnv>,
    /// Background tasks the fault started (e.g. a plaintext client); aborted by the undo.
    pub fault_tasks: Mutex<Vec<JoinHandle<()>>>,
    pub attack_probes: Mutex<Vec<AttackProbe>>,
    /// Facts a fault or step learned, for the report (`key → value`).
    pub facts: Mutex<BTreeMap<String, String>>,
    /// Until when the fault asked to be held (see [`DrillEnv::hold_fault_until`]).
    hold: Mutex<Option<std::time::Instant>>,
    /// Removes the working directory (it holds keys) however the environment ends; the last
    /// field, so it goes after every process that writes there.
    _workdir: RemoveDirOnDrop,
}

/// Removes a directory when dropped.
struct RemoveDirOnDrop(PathBuf);

impl Drop for RemoveDirOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl std::fmt::Debug for DrillEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DrillEnv")
            .field("profile", &self.profile.name)
            .field("workdir", &self.workdir)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means another task panicked while holding it; the data is still the
    // best record there is.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl DrillEnv {
    pub async fn start(
        drill: &Drill,
        lab: &Lab,
        configured: Arc<Configured>,
    ) -> Result<DrillEnv, String> {
        let profile = drill.profile.clone();
        let workdir = std::env::temp_dir().join(format!(
            "meshproof-drill-{}-{}-{}",
            std::process::id(),
            drill.name,
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&workdir)
                .map_err(|e| format!("{}: {e}", workdir.display()))?;
        }
        let mut env = DrillEnv {
            profile: profile.clone(),
            configured: configured.clone(),
            workdir: workdir.clone(),
            mesh: None,
            spire: None,
            admission: None,
            fault_tasks: Mutex::new(Vec::new()),
            attack_probes: Mutex::new(Vec::new()),
            facts: Mutex::new(BTreeMap::new()),
            hold: Mutex::new(None),
            _workdir: RemoveDirOnDrop(workdir.clone()),
        };
        // SPIRE first: a drill that runs SPIRE runs its mesh on SPIRE-issued identities.
        if drill.needs_spire() {
            let config = SpireLabConfig {
                ca_ttl: drill.lab.ca_ttl,
                x509_svid_ttl: drill.lab.svid_ttl,
                ..SpireLabConfig::default()
            };
            let spire = SpireLab::start(&profile, config)
                .await
                .map_err(|e| format!("starting SPIRE: {e}"))?;
            let root = spire
                .agent_socket(0)
                .and_then(|s| s.ancestors().nth(3))
                .map(Path::to_path_buf)
                .unwrap_or_default();
            env.spire = Some(SpireEnv {
                lab: RwLock::new(spire),
                stray_entries: Mutex::new(BTreeSet::new()),
                root,
            });
        }
        if drill.needs_mesh() {
            if let Some(s) = &env.spire {
                let started = {
                    let spire = s.lab.read().await;
                    crate::target::lab::mesh_spire::start(&profile, &configured, &spire).await
                };
                let started =
                    started.map_err(|e| format!("starting the drill's SPIRE-fed mesh: {e}"))?;
                env.mesh = Some(MeshEnv {
                    mesh: RwLock::new(started.mesh),
                    policies: Mutex::new(configured.policies.clone()),
                    original_policies: configured.policies.clone(),
                    original_credentials: BTreeMap::new(),
                    control_plane: None,
                });
            } else {
                let pki = lab.pki(&profile).map_err(|e| e.to_string())?;
                let bundle = lab.trust_bundle(&profile).map_err(|e| e.to_string())?;
                let mesh =
                    LabMesh::start(&profile, &configured, &pki, bundle, &workdir.join("mesh"))
                        .await
                        .map_err(|e| format!("starting the drill's lab mesh: {e}"))?;
                let mut original_credentials = BTreeMap::new();
                for label in mesh.workloads.keys() {
                    original_credentials.insert(
                        label.clone(),
                        mesh.current_credentials(label).map_err(|e| e.to_string())?,
                    );
                }
                let secret = workdir.join("cacerts");
                pki.pki
                    .write_plugin_ca(&secret)
                    .map_err(|e| format!("writing the plug-in CA secret: {e}"))?;
                env.mesh = Some(MeshEnv {
                    mesh: RwLock::new(mesh),
                    policies: Mutex::new(configured.policies.clone()),
                    original_policies: configured.policies.clone(),
                    original_credentials,
                    control_plane: Some(Mutex::new(ControlPlane {
                        signer: Signer::Valid(pki.pki.clone()),
                        prepared: None,
                        secret,
                        original: pki.pki.clone(),
                    })),
                });
            }
        }
        if drill.needs_admission() {
            let admission = configured.admission.clone().ok_or_else(|| {
                format!(
                    "{}: no ConstraintTemplates to serve admission from",
                    configured.dir.display()
                )
            })?;
            let admission = Arc::new(admission);
            let webhook = Webhook::start(admission.clone(), SocketAddr::from(([127, 0, 0, 1], 0)))
                .await
                .map_err(|e| format!("starting the admission webhook: {e}"))?;
            let failure_policy = match drill.fault.kind {
                FaultKind::AdmissionUnavailable { failure_policy } => failure_policy,
                _ => FailurePolicy::Ignore,
            };
            let mut cases = BTreeMap::new();
            for probe in &drill.probes {
                if let ProbeKind::Admission { case, file, .. } = &probe.kind {
                    let objects = crate::policy::gatekeeper::load_manifests(&[file])
                        .map_err(|e| e.to_string())?;
                    let object = objects
                        .into_iter()
                        .next()
                        .ok_or_else(|| format!("{}: no object", file.display()))?;
                    cases.insert(case.clone(), object.object);
                }
            }
            env.admission = Some(AdmissionEnv {
                admission,
                addr: webhook.addr(),
                api: ApiServer {
                    webhook: webhook.addr(),
                    timeout: drill.lab.webhook_timeout,
                    failure_policy,
                },
                webhook: tokio::sync::Mutex::new(Some(webhook)),
                cases,
            });
        }
        Ok(env)
    }

    pub fn mesh(&self) -> Result<&MeshEnv, String> {
        self.mesh
            .as_ref()
            .ok_or_else(|| "this drill runs no lab mesh".to_owned())
    }

    pub fn spire(&self) -> Result<&SpireEnv, String> {
        self.spire
            .as_ref()
            .ok_or_else(|| "this drill runs no SPIRE".to_owned())
    }

    pub fn admission(&self) -> Result<&AdmissionEnv, String> {
        self.admission
            .as_ref()
            .ok_or_else(|| "this drill runs no admission webhook".to_owned())
    }

    pub fn fact(&self, key: &str, value: impl Into<String>) {
        lock(&self.facts).insert(key.to_owned(), value.into());
    }

    pub fn facts(&self) -> BTreeMap<String, String> {
        lock(&self.facts).clone()
    }

    pub fn add_fault_task(&self, task: JoinHandle<()>) {
        lock(&self.fault_tasks).push(task);
    }

    pub fn attack_probes(&self) -> Vec<(String, String)> {
        lock(&self.attack_probes)
            .iter()
            .map(|a| (a.id.clone(), a.describe.clone()))
            .collect()
    }

    pub fn add_attack_probe(&self, id: &str, describe: String) {
        lock(&self.attack_probes).push(AttackProbe {
            id: id.to_owned(),
            describe,
        });
    }

    /// Deletes the registration entries probes created and could not remove (run once the probes
    /// have stopped, so none is being created meanwhile). Returns what it did.
    pub async fn remove_stray_entries(&self) -> Vec<UndoAction> {
        let mut actions = Actions {
            list: Vec::new(),
            last: std::time::Instant::now(),
        };
        let Some(s) = &self.spire else {
            return actions.list;
        };
        let stray: Vec<String> = lock(&s.stray_entries).iter().cloned().collect();
        let lab = s.lab.read().await;
        for id in stray {
            let result = lab
                .delete_entry(&id)
                .await
                .map(|()| "deleted".to_owned())
                .map_err(|e| e.to_string());
            if result.is_ok() {
                lock(&s.stray_entries).remove(&id);
            }
            actions.push(
                format!("delete registration entry {id} a probe left"),
                result,
            );
        }
        actions.list
    }

    /// Asks the engine to keep the fault in place at least until `until`, at most [`MAX_HOLD`]
    /// from now (a fault that learns its own timing, e.g. when an agent's SVID runs out).
    pub fn hold_fault_until(&self, until: std::time::Instant) {
        let cap = std::time::Instant::now() + MAX_HOLD;
        *lock(&self.hold) = Some(until.min(cap));
    }

    pub fn hold_until(&self) -> Option<std::time::Instant> {
        *lock(&self.hold)
    }

    /// How many background tasks of the fault are still running.
    pub fn running_fault_tasks(&self) -> usize {
        lock(&self.fault_tasks)
            .iter()
            .filter(|t| !t.is_finished())
            .count()
    }

    /// Stops every background task of the fault; returns how many were running.
    pub fn stop_fault_tasks(&self) -> usize {
        let tasks: Vec<JoinHandle<()>> = lock(&self.fault_tasks).drain(..).collect();
        let running = tasks.iter().filter(|t| !t.is_finished()).count();
        for task in tasks {
            task.abort();
        }
        running
    }

    /// Makes every sidecar enforce `policies` (a control-plane push, see
    /// [`crate::target::lab::mesh`]); only sidecars whose RBAC or mTLS mode changes are touched.
    /// Returns the labels pushed to.
    pub async fn push_policies(&self, policies: &MeshPolicies) -> Result<Vec<String>, String> {
        let m = self.mesh()?;
        let current = lock(&m.policies).clone();
        let mut changed = Vec::new();
        {
            let mesh = m.mesh.read().await;
            for label in mesh.workloads.keys() {
                let now = mesh
                    .sidecar_spec(&self.profile, &current, label)
                    .map_err(|e| e.to_string())?;
                let next = mesh
                    .sidecar_spec(&self.profile, policies, label)
                    .map_err(|e| e.to_string())?;
                if now.http_rbac != next.http_rbac || now.mtls != next.mtls {
                    changed.push(label.clone());
                }
            }
        }
        for label in &changed {
            self.push_spec(label, policies).await?;
        }
        *lock(&m.policies) = policies.clone();
        Ok(changed)
    }

    /// Restarts `label`'s sidecar with the spec `policies` give it, without dropping traffic.
    async fn push_spec(&self, label: &str, policies: &MeshPolicies) -> Result<(), String> {
        let m = self.mesh()?;
        let replacement = {
            let mesh = m.mesh.read().await;
            let spec = mesh
                .sidecar_spec(&self.profile, policies, label)
                .map_err(|e| e.to_string())?;
            let credentials = mesh.current_credentials(label).map_err(|e| e.to_string())?;
            mesh.start_replacement(label, &spec, &credentials)
                .await
                .map_err(|e| e.to_string())?
        };
        let old = m
            .mesh
            .write()
            .await
            .swap_sidecar(label, replacement)
            .map_err(|e| e.to_string())?;
        LabMesh::retire_sidecar(old, DRAIN_BOUND)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// What is observable now (see the module docs).
    pub async fn snapshot(&self) -> Result<StateSnapshot, String> {
        let mut snapshot = StateSnapshot::default();
        if let Some(m) = &self.mesh {
            let mesh = m.mesh.read().await;
            snapshot.workloads = mesh.state().await.map_err(|e| e.to_string())?;
            if let Some(cp) = &m.control_plane {
                let cp = lock(cp);
                let secret =
                    std::fs::read_to_string(cp.secret.join("ca-cert.pem")).unwrap_or_default();
                let secret_serial = crate::spiffe::parse_pem_chain(&secret)
                    .ok()
                    .and_then(|d| d.first().and_then(|d| crate::pki::serial_hex(d).ok()));
                snapshot.control_plane = Some(ControlPlaneState {
                    signing_intermediate: cp.signer.serial(),
                    signing_intermediate_expired: matches!(cp.signer, Signer::Expired { .. }),
                    secret_intermediate: secret_serial.unwrap_or_default(),
                });
            }
        }
        if let Some(s) = &self.spire {
            let lab = s.lab.read().await;
            let server = lab.healthcheck().await.map(|h| h.healthy).unwrap_or(false);
            let mut agents = Vec::new();
            for i in 0..lab.agent_count() {
                agents.push(AgentState {
                    alias: lab
                        .agent_alias(i)
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                    healthy: lab
                        .agent_healthcheck(i)
                        .await
                        .map(|h| h.healthy)
                        .unwrap_or(false),
                });
            }
            let entries = if server {
                lab.entries()
                    .await
                    .map(|es| {
                        es.into_iter()
                            .map(|e| {
                                format!(
                                    "{} parent {} [{}]",
                                    e.spiffe_id,
                                    e.parent_id,
                                    e.selectors.join(" ")
                                )
                            })
                            .filter(|e| !e.contains("/spire/agent/"))
                            .collect()
                    })
                    .unwrap_or_default()
            } else {
                BTreeSet::new()
            };
            let mut sidecars = BTreeMap::new();
            if let Some(m) = &self.mesh {
                let mesh = m.mesh.read().await;
                for (label, w) in &mesh.workloads {
                    let id = w.identity.spiffe_id.to_string();
                    sidecars.insert(
                        label.clone(),
                        serves_valid_svid(w.sidecar.admin(), &id).await,
                    );
                }
            }
            snapshot.spire = Some(SpireState {
                server_healthy: server,
                agents,
                entries,
                sidecars_serving_valid_svid: sidecars,
            });
        }
        if let Some(a) = &self.admission {
            let running = a.webhook.lock().await.is_some();
            let answers = running && tokio::net::TcpStream::connect(a.addr).await.is_ok();
            snapshot.admission = Some(AdmissionState {
                webhook_answers: answers,
                failure_policy: format!("{:?}", a.api.failure_policy),
            });
        }
        snapshot.processes = self.processes();
        snapshot.fault_traffic = self.running_fault_tasks();
        Ok(snapshot)
    }

    /// Lab processes (Envoy, SPIRE) whose command line names this drill's directories.
    pub fn processes(&self) -> ProcessCount {
        let mut markers = vec![self.workdir.display().to_string()];
        if let Some(s) = &self.spire {
            markers.push(s.root.display().to_string());
        }
        count_processes(&markers)
    }

    /// Undoes whatever differs from `before` (see the module docs). With `sabotage`, the first
    /// action that would restore something is skipped (proof that the verification notices).
    pub async fn restore(&self, before: &StateSnapshot, sabotage: bool) -> Vec<UndoAction> {
        let mut actions = Actions {
            list: Vec::new(),
            last: std::time::Instant::now(),
        };
        let mut skip = sabotage;
        let running = self.running_fault_tasks();
        if running > 0 {
            if std::mem::take(&mut skip) {
                actions.push(
                    "stop the fault's own traffic".into(),
                    Err("skipped (sabotage: broken undo)".into()),
                );
            } else {
                let stopped = self.stop_fault_tasks();
                actions.push(
                    "stop the fault's own traffic".into(),
                    Ok(format!("{stopped} task(s) stopped")),
                );
            }
        }
        if let Some(a) = &self.admission {
            let mut webhook = a.webhook.lock().await;
            if webhook.is_none() {
                if std::mem::take(&mut skip) {
                    actions.push(
                        "restart the admission webhook".into(),
                        Err("skipped (sabotage: broken undo)".into()),
                    );
                } else {
                    let started = Webhook::start(a.admission.clone(), a.addr).await;
                    let result = match started {
                        Ok(w) => {
                            *webhook = Some(w);
                            Ok(format!("listening on {} again", a.addr))
                        }
                        Err(e) => Err(format!("cannot listen on {}: {e}", a.addr)),
                    };
                    actions.push("restart the admission webhook".into(), result);
                }
            }
        }
        if let Some(s) = &self.spire {
            let mut lab = s.lab.write().await;
            let healthy = lab.healthcheck().await.map(|h| h.healthy).unwrap_or(false);
            if !healthy {
                if std::mem::take(&mut skip) {
                    actions.push(
                        "restart spire-server".into(),
                        Err("skipped (sabotage: broken undo)".into()),
                    );
                } else {
                    let _ = lab.stop_server().await;
                    let result = lab
                        .start_server()
                        .await
                        .map(|d| format!("healthy in {d:?}"))
                        .map_err(|e| e.to_string());
                    actions.push("restart spire-server".into(), result);
                }
            }
            // An agent whose own SVID ran out while the server was away cannot renew it (join
            // tokens do not re-attest): it is restarted, which re-attests it with a fresh token.
            let listed = lab.agents().await.unwrap_or_default();
            // A healthy agent with time left renews its own SVID now that the server is back.
            let soon = OffsetDateTime::now_utc() + time::Duration::seconds(2);
            for i in 0..lab.agent_count() {
                let healthy = lab
                    .agent_healthcheck(i)
                    .await
                    .map(|h| h.healthy)
                    .unwrap_or(false);
                let id = lab.agent_spiffe_id(i).unwrap_or_default();
                let expiring = listed
                    .iter()
                    .any(|a| a.spiffe_id == id && a.expired_at(soon));
                if healthy && !expiring {
                    continue;
                }
                let name = format!("restart spire-agent {i}");
                if std::mem::take(&mut skip) {
                    actions.push(name, Err("skipped (sabotage: broken undo)".into()));
                    continue;
                }
                let _ = lab.stop_agent(i).await;
                let result = lab
                    .start_agent(i)
                    .await
                    .map(|d| {
                        format!(
                            "{} ({}); attested and healthy in {:.1} s",
                            if healthy {
                                "its SVID was about to expire"
                            } else {
                                "it was not healthy"
                            },
                            lab.agent_spiffe_id(i).unwrap_or_default(),
                            d.as_secs_f64()
                        )
                    })
                    .map_err(|e| e.to_string());
                actions.push(name, result);
            }
            drop(lab);
            // SPIRE-fed sidecars re-open their SDS streams on their own; the undo waits (bounded)
            // until each serves a valid SVID again, so the comparison judges a settled state. A
            // sidecar whose agent is down cannot get one: that is reported, not waited for.
            if let (Some(spire_before), Some(m)) = (&before.spire, &self.mesh) {
                let mesh = m.mesh.read().await;
                for (label, w) in &mesh.workloads {
                    let wanted = spire_before
                        .sidecars_serving_valid_svid
                        .get(label)
                        .copied()
                        .unwrap_or(false);
                    if !wanted {
                        continue;
                    }
                    let name = format!("wait for {label}'s sidecar to serve a valid SVID");
                    let agent = {
                        let lab = s.lab.read().await;
                        let agent = lab.workload(&w.identity.service).map(|w| w.caller.agent);
                        match agent {
                            Some(i) => lab
                                .agent_healthcheck(i)
                                .await
                                .map(|h| h.healthy)
                                .unwrap_or(false)
                                .then_some(i)
                                .ok_or(i),
                            None => Ok(0),
                        }
                    };
                    if let Err(i) = agent {
                        actions.push(
                            name,
                            Err(format!(
                                "its agent {i} is not healthy, so it cannot get one"
                            )),
                        );
                        continue;
                    }
                    let id = w.identity.spiffe_id.to_string();
                    let admin = w.sidecar.admin();
                    let bound = SERVE_TIMEOUT.saturating_mul(4);
                    let deadline = tokio::time::Instant::now() + bound;
                    let agent = agent.unwrap_or(0);
                    let mut ok = serves_valid_svid(admin, &id).await;
                    let mut agent_up = true;
                    while !ok && agent_up && tokio::time::Instant::now() < deadline {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        ok = serves_valid_svid(admin, &id).await;
                        // An agent that dies meanwhile (its own SVID ran out) ends the wait.
                        agent_up = s
                            .lab
                            .read()
                            .await
                            .agent_healthcheck(agent)
                            .await
                            .map(|h| h.healthy)
                            .unwrap_or(false);
                    }
                    if !ok {
                        let why = if agent_up {
                            format!("still no valid SVID for {id} after {bound:?}")
                        } else {
                            format!("its agent {agent} went down, so it cannot get one")
                        };
                        actions.push(name, Err(why));
                    }
                }
            }
        }
        if let Some(m) = &self.mesh {
            // The control plane first, so nothing re-issues from a faulty signer meanwhile.
            let cp_state = before.control_plane.clone().unwrap_or_default();
            let restore_cp = m.control_plane.as_ref().is_some_and(|cp| {
                let cp = lock(cp);
                cp.signer.serial() != cp_state.signing_intermediate || cp.prepared.is_some() || {
                    let secret =
                        std::fs::read_to_string(cp.secret.join("ca-cert.pem")).unwrap_or_default();
                    !secret.contains(cp.original.intermediate().pem().trim())
                }
            });
            if restore_cp {
                if std::mem::take(&mut skip) {
                    actions.push(
                        "restore the control plane's intermediate and secret".into(),
                        Err("skipped (sabotage: broken undo)".into()),
                    );
                } else if let Ok(mut cp) = m.control_plane() {
                    let original = cp.original.clone();
                    let result = original
                        .write_plugin_ca(&cp.secret)
                        .map(|_| {
                            format!(
                                "signing with intermediate {} again",
                                original.intermediate().serial_hex()
                            )
                        })
                        .map_err(|e| e.to_string());
                    cp.signer = Signer::Valid(original);
                    cp.prepared = None;
                    actions.push(
                        "restore the control plane's intermediate and secret".into(),
                        result,
                    );
                }
            }
            let now = match m.mesh.read().await.state().await {
                Ok(s) => s,
                Err(e) => {
                    actions.push("read the mesh state".into(), Err(e.to_string()));
                    BTreeMap::new()
                }
            };
            let mut pushed = Vec::new();
            for (label, state) in &now {
                let Some(was) = before.workloads.get(label) else {
                    continue;
                };
                if state.rbac_sha256 == was.rbac_sha256 && state.mtls == was.mtls {
                    continue;
                }
                if std::mem::take(&mut skip) {
                    actions.push(
                        format!("push the original policy to {label}"),
                        Err("skipped (sabotage: broken undo)".into()),
                    );
                    continue;
                }
                let result = self
                    .push_spec(label, &m.original_policies)
                    .await
                    .map(|()| "RBAC and mTLS as configured".to_owned());
                pushed.push(label.clone());
                actions.push(format!("push the original policy to {label}"), result);
            }
            *lock(&m.policies) = m.original_policies.clone();
            for (label, state) in &now {
                let Some(was) = before.workloads.get(label) else {
                    continue;
                };
                if state.serving_serial == was.serving_serial
                    && state.intermediate_serial == was.intermediate_serial
                {
                    continue;
                }
                let Some(credentials) = m.original_credentials.get(label) else {
                    continue;
                };
                if std::mem::take(&mut skip) {
                    actions.push(
                        format!("give {label} its original certificate"),
                        Err("skipped (sabotage: broken undo)".into()),
                    );
                    continue;
                }
                let mesh = m.mesh.read().await;
                let result = match mesh.push_credentials(label, credentials) {
                    Ok(()) => match &was.serving_serial {
                        Some(serial) => mesh
                            .wait_serving(&[(label.clone(), serial.clone())], SERVE_TIMEOUT)
                            .await
                            .map(|d| {
                                format!(
                                    "serves serial {serial} again after {:.1} ms",
                                    d.as_secs_f64() * 1e3
                                )
                            })
                            .map_err(|e| e.to_string()),
                        None => Ok("credentials restored".into()),
                    },
                    Err(e) => Err(e.to_string()),
                };
                actions.push(format!("give {label} its original certificate"), result);
            }
        }
        actions.list
    }

    /// Stops every background task of the fault and waits until each has ended.
    pub async fn end_fault_tasks(&self) {
        let tasks: Vec<JoinHandle<()>> = lock(&self.fault_tasks).drain(..).collect();
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
    }

    /// Stops everything the environment started and removes its directory.
    pub async fn shutdown(self) {
        self.stop_fault_tasks();
        if let Some(a) = self.admission {
            if let Some(w) = a.webhook.lock().await.take() {
                w.stop();
            }
        }
        // Sidecars first: SPIRE-fed ones live in the SPIRE lab's directory tree.
        if let Some(m) = self.mesh {
            m.mesh.into_inner().shutdown().await;
        }
        if let Some(s) = self.spire {
            let _ = s.lab.into_inner().shutdown().await;
        }
        let _ = std::fs::remove_dir_all(&self.workdir);
    }
}

/// Whether an Envoy serves a leaf for `id` that has not expired, per its admin `/certs`.
pub async fn serves_valid_svid(admin: crate::target::lab::envoy::AdminClient, id: &str) -> bool {
    let Ok(leaves) = admin.served_leaves().await else {
        return false;
    };
    let now = OffsetDateTime::now_utc();
    leaves.iter().any(|c| {
        c.uri_sans.iter().any(|u| u == id)
            && c.expiration_time
                .as_deref()
                .and_then(|t| {
                    OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
                })
                .is_some_and(|t| t > now)
    })
}

/// One undo action and how it went.
#[derive(Clone, Debug, Serialize)]
pub struct UndoAction {
    pub name: String,
    pub result: Result<String, String>,
    pub took_ms: u64,
}

/// Undo actions as they are done, each timed from the end of the previous one.
struct Actions {
    list: Vec<UndoAction>,
    last: std::time::Instant,
}

impl Actions {
    fn push(&mut self, name: String, result: Result<String, String>) {
        let took_ms = u64::try_from(self.last.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last = std::time::Instant::now();
        self.list.push(UndoAction {
            name,
            result,
            took_ms,
        });
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ControlPlaneState {
    pub signing_intermediate: String,
    pub signing_intermediate_expired: bool,
    /// The intermediate in the plug-in CA secret.
    pub secret_intermediate: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AgentState {
    pub alias: String,
    pub healthy: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SpireState {
    pub server_healthy: bool,
    pub agents: Vec<AgentState>,
    /// Workload registration entries: `spiffe_id parent <alias> [selectors]`.
    pub entries: BTreeSet<String>,
    pub sidecars_serving_valid_svid: BTreeMap<String, bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AdmissionState {
    pub webhook_answers: bool,
    pub failure_policy: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProcessCount {
    pub envoy: usize,
    pub spire_server: usize,
    pub spire_agent: usize,
}

/// The observable state of a drill's lab (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StateSnapshot {
    pub control_plane: Option<ControlPlaneState>,
    pub workloads: BTreeMap<String, WorkloadState>,
    pub spire: Option<SpireState>,
    pub admission: Option<AdmissionState>,
    pub processes: ProcessCount,
    /// Background traffic the fault started that is still running (e.g. a plaintext client).
    pub fault_traffic: usize,
}

impl StateSnapshot {
    /// What differs from `before` in the aspects `checks` names, one line each.
    pub fn differences(&self, before: &StateSnapshot, checks: &[UndoCheck]) -> Vec<String> {
        let mut out = Vec::new();
        let mut field = |what: String, was: &dyn std::fmt::Debug, now: &dyn std::fmt::Debug| {
            let (was, now) = (format!("{was:?}"), format!("{now:?}"));
            if was != now {
                out.push(format!("{what}: {now}, before {was}"));
            }
        };
        for check in checks {
            match check {
                UndoCheck::Serials => {
                    for (label, was) in &before.workloads {
                        let now = self
                            .workloads
                            .get(label)
                            .and_then(|w| w.serving_serial.clone());
                        field(format!("{label} serves serial"), &was.serving_serial, &now);
                    }
                }
                UndoCheck::Intermediates => {
                    for (label, was) in &before.workloads {
                        let now = self
                            .workloads
                            .get(label)
                            .and_then(|w| w.intermediate_serial.clone());
                        field(
                            format!("{label}'s chain has intermediate"),
                            &was.intermediate_serial,
                            &now,
                        );
                    }
                    let was = before.control_plane.clone().unwrap_or_default();
                    let now = self.control_plane.clone().unwrap_or_default();
                    field(
                        "the control plane signs with".into(),
                        &was.signing_intermediate,
                        &now.signing_intermediate,
                    );
                    field(
                        "the plug-in CA secret holds".into(),
                        &was.secret_intermediate,
                        &now.secret_intermediate,
                    );
                }
                UndoCheck::Policies => {
                    for (label, was) in &before.workloads {
                        let now = self.workloads.get(label);
                        field(
                            format!("{label} enforces RBAC digest"),
                            &was.rbac_sha256,
                            &now.map(|w| w.rbac_sha256.clone()).unwrap_or_default(),
                        );
                        field(
                            format!("{label} mTLS mode"),
                            &was.mtls,
                            &now.map(|w| w.mtls.clone()).unwrap_or_default(),
                        );
                    }
                }
                UndoCheck::Processes => {
                    for (label, was) in &before.workloads {
                        let now = self.workloads.get(label).is_some_and(|w| w.ready);
                        field(format!("{label}'s sidecar ready"), &was.ready, &now);
                    }
                    field("lab processes".into(), &before.processes, &self.processes);
                    field(
                        "fault traffic running".into(),
                        &before.fault_traffic,
                        &self.fault_traffic,
                    );
                }
                UndoCheck::Spire => {
                    let was = before.spire.clone().unwrap_or_default();
                    let now = self.spire.clone().unwrap_or_default();
                    field(
                        "spire-server healthy".into(),
                        &was.server_healthy,
                        &now.server_healthy,
                    );
                    field("spire agents".into(), &was.agents, &now.agents);
                    field("registration entries".into(), &was.entries, &now.entries);
                    field(
                        "SPIRE-fed sidecars serving a valid SVID".into(),
                        &was.sidecars_serving_valid_svid,
                        &now.sidecars_serving_valid_svid,
                    );
                }
                UndoCheck::Admission => {
                    field("admission".into(), &before.admission, &self.admission);
                }
            }
        }
        out
    }
}

/// Counts Envoy and SPIRE processes whose command line contains one of `markers`. Only
/// long-running processes count (`spire-server run`, `spire-agent run`, Envoy); the CLIs the
/// probes run come and go.
pub fn count_processes(markers: &[String]) -> ProcessCount {
    let mut count = ProcessCount::default();
    for (comm, cmdline) in lab_processes(markers) {
        let mut args = cmdline.split_whitespace();
        let program = args.next().unwrap_or_default();
        let runs = args.next() == Some("run");
        if program.ends_with("spire-server") && runs {
            count.spire_server += 1;
        } else if program.ends_with("spire-agent") && runs {
            count.spire_agent += 1;
        } else if comm.contains("envoy") {
            count.envoy += 1;
        }
    }
    count
}

/// `(comm, cmdline)` of every running process whose command line contains one of `markers`.
pub fn lab_processes(markers: &[String]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if !markers
            .iter()
            .any(|m| !m.is_empty() && cmdline.contains(m.as_str()))
        {
            continue;
        }
        // A zombie has an empty command line and is already gone for every purpose here.
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        if stat
            .split(") ")
            .nth(1)
            .is_some_and(|rest| rest.starts_with('Z'))
        {
            continue;
        }
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        out.push((comm.trim().to_owned(), cmdline.trim().to_owned()));
    }
    out
}

/// The last-resort undo when the drill's future is dropped before its async undo ran: what can
/// be restored without awaiting is restored on drop.
pub struct SyncUndo {
    env: Arc<DrillEnv>,
    armed: AtomicBool,
}

impl SyncUndo {
    pub fn new(env: Arc<DrillEnv>) -> Self {
        SyncUndo {
            env,
            armed: AtomicBool::new(true),
        }
    }

    /// The async undo ran to its end: nothing to do on drop.
    pub fn disarm(&self) {
        self.armed.store(false, Ordering::SeqCst);
    }
}

impl Drop for SyncUndo {
    fn drop(&mut self) {
        if !self.armed.load(Ordering::SeqCst) {
            return;
        }
        self.env.stop_fault_tasks();
        if let Some(m) = &self.env.mesh {
            if let Some(cp) = &m.control_plane {
                let mut cp = lock(cp);
                let original = cp.original.clone();
                let _ = original.write_plugin_ca(&cp.secret);
                cp.signer = Signer::Valid(original);
                cp.prepared = None;
            }
            // Certificates are a file swap the running Envoys pick up without help; policies
            // need a restart, which the dropped environment takes down with every sidecar.
            if let Ok(mesh) = m.mesh.try_read() {
                for (label, credentials) in &m.original_credentials {
                    let _ = mesh.push_credentials(label, credentials);
                }
            }
        }
    }
}

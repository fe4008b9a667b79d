//! The lab mesh with SPIRE identities: the same sidecars, policies and routes as
//! [`LabMesh::start`], but every sidecar takes its SVID and trust bundle from a SPIRE agent's SDS
//! API instead of the lab CA's files — the SomaAgentHub runbook's identity layer, observed live.
//!
//! # Contract
//!
//! * [`start`] builds a [`LabMesh`] (the type every live step already uses) for a profile whose
//!   SPIRE lab is running: one echo app and one sidecar per lab identity, with the RBAC and
//!   PeerAuthentication mode compiled from the configured manifests exactly as
//!   [`LabMesh::start`] compiles them, and an outbound route to every other service. Each
//!   sidecar's Envoy runs as its workload's uid/gid ([`Isolation::Uid`], the harness runs as
//!   root), so the agent's `unix` attestor matches it to the workload's registration entry; its
//!   bootstrap, log and admin address live in a directory of that uid inside the SPIRE lab's
//!   tree (removed with the lab), and the Envoy binary is reached through
//!   [`SpireLab::expose_binary`]. No private key is ever written to disk: the agent streams it
//!   to Envoy. `start` returns once every sidecar serves an SVID for its own SPIFFE ID, with
//!   the time each took ([`SidecarStart`]). The mesh's [`LabMesh::bundle`] is the SPIRE
//!   server's bundle at that moment (see "Known limits").
//! * A lab identity without a SPIRE registration, or a lab without uid isolation, is an error
//!   naming what is missing: such a sidecar could never get an identity, and starting it anyway
//!   would only move the failure to the first call.
//! * Probes that need a client identity: [`fetch_svid`] runs `spire-agent api fetch x509 -write`
//!   as a registered workload and returns its current SVID with the key, in memory only (the
//!   directory SPIRE writes into is the workload's own, 0700, and is removed before returning),
//!   plus the bundle delivered with it. [`direct`] is [`LabMesh::direct`] with a caller-given
//!   bundle, so a probe validates the callee against SPIRE's *current* roots.
//! * Observations for the live checks: [`served_svid`] sets what a sidecar serves (admin
//!   `/certs`) against what SPIRE issued the same workload (Workload API, just before and just
//!   after), with the issuing authority; [`calls_across_renewal`] keeps an allowed call flowing
//!   while SPIRE renews the callee's SVID and reports both serials, the wait and every failure.
//!
//! Known limits: [`LabMesh::bundle`] is a snapshot, and the lab's SPIRE CA rotates by itself
//! (`ca_ttl` 120 s: the next authority is published at half-life and signs from 5/6 of it), so a
//! harness-side probe that validates a sidecar after that must use [`direct`] with a fresh bundle
//! (the sidecars themselves get the new bundle from their agent). Without root
//! ([`Isolation::Path`]) there is no uid to give a sidecar, so [`start`] refuses; the profile's
//! privileged ports (the ingress gateway's 80) are bound with `CAP_NET_BIND_SERVICE` granted
//! through `setpriv` (see [`super::envoy`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use time::OffsetDateTime;

use super::echo::EchoServer;
use super::envoy::{EnvoyBinary, EnvoyError, RunAs, ServedCert, normalize_serial};
use super::mesh::{LabMesh, Placement, Workload, address_plan};
use super::sidecar::{MtlsMode, Sidecar, SidecarError, SidecarSpec, SpireAgentSds, Upstream};
use super::spire::{Isolation, LabWorkload, SpireError, SpireLab, cli};
use crate::configured::Configured;
use crate::intents::ExpectedCall;
use crate::policy::istio::{self, Labels};
use crate::probe::{KeyPem, Observation, Probe, ProbeIdentity, ServerTrust};
use crate::profile::{Identity, Profile};
use crate::spiffe::{SpiffeId, TrustBundle, parse_pem_chain, validate_x509_svid_for};

/// Bound on one `spire-agent api fetch x509` run.
const FETCH_BOUND: Duration = Duration::from_secs(20);
/// Calls sent before and after a renewal, around the ones sent while waiting for it.
const CALLS_AROUND_RENEWAL: usize = 5;
/// Pause between calls while waiting for a renewal.
const RENEWAL_CALL_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum MeshSpireError {
    #[error("{0}")]
    Spire(#[from] SpireError),
    #[error("{0}")]
    Envoy(#[from] EnvoyError),
    #[error("{0}")]
    Sidecar(#[from] SidecarError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Setup(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> MeshSpireError {
    let what = what.into();
    move |source| MeshSpireError::Io { what, source }
}

/// How one SPIRE-fed sidecar came up.
#[derive(Clone, Debug, Serialize)]
pub struct SidecarStart {
    pub label: String,
    pub spiffe_id: String,
    pub uid: u32,
    pub gid: u32,
    /// The agent whose SDS API feeds it.
    pub agent: usize,
    /// The registration entry its SVID comes from.
    pub entry_id: String,
    /// Envoy spawned → admin `/ready` answered 200.
    #[serde(serialize_with = "ser_millis", rename = "ready_ms")]
    pub ready: Duration,
    /// Envoy spawned → `/certs` shows an SVID for its SPIFFE ID (time to first SVID).
    #[serde(serialize_with = "ser_millis", rename = "first_svid_ms")]
    pub first_svid: Duration,
    /// The first SVID's serial, as `/certs` shows it.
    pub serial_hex: String,
}

fn ser_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1e3)
}

/// A started SPIRE-fed mesh and how each sidecar came up.
#[derive(Debug)]
pub struct SpireMesh {
    pub mesh: LabMesh,
    pub sidecars: Vec<SidecarStart>,
}

/// Starts the profile's live mesh with every sidecar fed by `spire`'s agents (see the module
/// docs).
pub async fn start(
    profile: &Profile,
    configured: &Configured,
    spire: &SpireLab,
) -> Result<SpireMesh, MeshSpireError> {
    let started = Instant::now();
    if spire.isolation() != Isolation::Uid {
        return Err(MeshSpireError::Setup(format!(
            "SPIRE-fed sidecars run as their workload's uid, which needs the harness to run as \
             root; this SPIRE lab tells workloads apart by {:?} isolation",
            spire.isolation()
        )));
    }
    let located = EnvoyBinary::locate()?;
    // The located binary may sit under a home directory other uids cannot enter.
    let envoy = EnvoyBinary::at(spire.expose_binary(located.path())?)?;
    let identities = profile.lab_identities();
    let registered: Vec<LabWorkload> = identities
        .iter()
        .map(|identity| {
            spire
                .workloads()
                .iter()
                .find(|w| w.spiffe_id == identity.spiffe_id)
                .cloned()
                .ok_or_else(|| {
                    MeshSpireError::Setup(format!(
                        "{} ({}) has no SPIRE registration entry: its sidecar could never get \
                         an SVID (registered: {})",
                        identity.spiffe_id,
                        identity.label(),
                        spire
                            .workloads()
                            .iter()
                            .map(|w| w.spiffe_id.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })
        })
        .collect::<Result<_, _>>()?;
    // Each workload listens where `LabMesh::start` would put it.
    let (plan, serving) = address_plan(profile, &identities).map_err(MeshSpireError::Setup)?;

    // Echo apps and specs first, then every sidecar at once: Envoy start-up and the first SDS
    // fetch from the agent dominate, and they overlap (as pods start on a node).
    let mut prepared = Vec::new();
    for ((identity, ip, inbound_port), registration) in plan.iter().zip(&registered) {
        let echo = EchoServer::start(identity.label(), SocketAddr::new(*ip, 0))
            .await
            .map_err(io(format!("starting the echo app of {}", identity.label())))?;
        let spec = sidecar_spec(
            profile,
            configured,
            identity,
            *ip,
            *inbound_port,
            echo.addr(),
            &plan,
        )?;
        let caller = &registration.caller;
        let socket = spire.agent_socket(caller.agent).ok_or_else(|| {
            MeshSpireError::Setup(format!(
                "{}: the SPIRE lab has no agent {}",
                identity.label(),
                caller.agent
            ))
        })?;
        let agent = SpireAgentSds {
            socket: socket.to_owned(),
            spiffe_id: identity.spiffe_id.clone(),
            trust_domain: spire.trust_domain().clone(),
        };
        let run_as = RunAs {
            uid: caller.uid,
            gid: caller.gid,
        };
        let dir = fresh_dir(&spire.caller_dir(caller)?, "sidecar");
        prepared.push((identity, registration, echo, spec, agent, run_as, dir));
    }
    let envoy = &envoy;
    let started_all = futures::future::join_all(prepared.into_iter().map(
        |(identity, registration, echo, spec, agent, run_as, dir)| async move {
            let spawned = Instant::now();
            let sidecar = Sidecar::start_spire(envoy, &spec, &agent, Some(run_as), &dir).await?;
            let (leaf, _) = sidecar.wait_for_svid(spire.config().wait).await?;
            let start = SidecarStart {
                label: identity.label(),
                spiffe_id: identity.spiffe_id.to_string(),
                uid: run_as.uid,
                gid: run_as.gid,
                agent: registration.caller.agent,
                entry_id: registration.entry_id.clone(),
                ready: sidecar.envoy().ready_in(),
                first_svid: spawned.elapsed(),
                serial_hex: leaf.serial_hex,
            };
            let workload = Workload {
                identity: identity.clone(),
                sidecar,
                echo,
            };
            Ok::<_, MeshSpireError>((start, workload))
        },
    ))
    .await;
    let mut workloads = BTreeMap::new();
    let mut starts = Vec::new();
    let mut failure = None;
    for outcome in started_all {
        match outcome {
            Ok((start, workload)) => {
                workloads.insert(start.label.clone(), workload);
                starts.push(start);
            }
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    if let Some(e) = failure {
        // The sidecars that did start are dropped here, which stops them.
        return Err(e);
    }
    let bundle = spire.trust_bundle().await?;
    Ok(SpireMesh {
        mesh: LabMesh {
            profile: profile.name.clone(),
            workloads,
            serving,
            bundle,
            envoy_version: envoy.version().to_owned(),
            started_in: started.elapsed(),
        },
        sidecars: starts,
    })
}

/// The spec `LabMesh::start` would give `identity` (same RBAC, mTLS mode and upstreams).
fn sidecar_spec(
    profile: &Profile,
    configured: &Configured,
    identity: &Identity,
    ip: IpAddr,
    inbound_port: u16,
    app: SocketAddr,
    plan: &[Placement],
) -> Result<SidecarSpec, MeshSpireError> {
    let service = profile
        .service(&identity.service)
        .ok_or_else(|| MeshSpireError::Setup(format!("unknown service {}", identity.service)))?;
    let port = service.ports.first().map_or(0, |p| p.port);
    let workload_labels: Labels = [("app".to_owned(), service.name.clone())].into();
    let rbac = istio::envoy_rbac(
        &configured.policies,
        &service.namespace,
        &workload_labels,
        true,
    );
    let (mode, _) = istio::mtls_mode(
        &configured.policies,
        &service.namespace,
        &workload_labels,
        port,
    );
    let mut spec = SidecarSpec::new(identity.label(), identity.spiffe_id.clone(), ip, app);
    spec.inbound_port = inbound_port;
    spec.mtls = match mode {
        istio::MtlsMode::Strict => MtlsMode::Strict,
        // PERMISSIVE, UNSET (Istio's default is PERMISSIVE) and DISABLE all accept plaintext.
        _ => MtlsMode::Permissive,
    };
    // HTTP RBAC only, as `LabMesh::start` applies it (every lab port serves HTTP).
    spec.http_rbac = rbac.http;
    spec.upstreams = plan
        .iter()
        .filter(|(callee, ..)| callee.workload.is_none() && callee.service != identity.service)
        .map(|(callee, callee_ip, callee_port)| Upstream {
            name: callee.service.clone(),
            address: SocketAddr::new(*callee_ip, *callee_port),
            spiffe_id: callee.spiffe_id.clone(),
            sni: None,
            listen_port: 0,
        })
        .collect();
    Ok(spec)
}

/// `<parent>/<stem>`, or `<stem>-2`, `-3`, … if taken.
fn fresh_dir(parent: &Path, stem: &str) -> PathBuf {
    let first = parent.join(stem);
    if !first.exists() {
        return first;
    }
    (2u32..)
        .map(|n| parent.join(format!("{stem}-{n}")))
        .find(|d| !d.exists())
        .unwrap_or(first)
}

// ---------------------------------------------------------------------------------------------
// Client identities for harness probes

/// A workload's current X.509-SVID with its key (in memory only), as the Workload API handed
/// it out. `Debug` never shows the key.
#[derive(Clone, Debug)]
pub struct FetchedSvid {
    pub spiffe_id: SpiffeId,
    /// Leaf first, then any intermediates (PEM).
    pub chain_pem: String,
    key: KeyPem,
    /// The bundle of the SVID's trust domain delivered with it.
    pub bundle: TrustBundle,
    pub serial_hex: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl FetchedSvid {
    /// The private key: secret; never log it or write it to a report.
    pub fn key(&self) -> &KeyPem {
        &self.key
    }

    /// The SVID as a probe's client identity.
    pub fn probe_identity(&self) -> ProbeIdentity {
        ProbeIdentity::Svid {
            chain_pem: self.chain_pem.clone(),
            key_pem: self.key.clone(),
        }
    }
}

/// Removes a directory when dropped (it held a private key).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

static FETCH_SEQ: AtomicU64 = AtomicU64::new(0);

/// The current SVID of the registered workload serving `service` (see the module docs): what a
/// harness probe presents when it must be a real mesh identity, e.g. the positive control of the
/// mTLS refusal check.
pub async fn fetch_svid(spire: &SpireLab, service: &str) -> Result<FetchedSvid, MeshSpireError> {
    let workload = spire.workload(service).ok_or_else(|| {
        MeshSpireError::Setup(format!("no SPIRE registration for service {service}"))
    })?;
    fetch_svid_of(spire, workload).await
}

/// [`fetch_svid`] for a given registered workload.
pub async fn fetch_svid_of(
    spire: &SpireLab,
    workload: &LabWorkload,
) -> Result<FetchedSvid, MeshSpireError> {
    let caller = &workload.caller;
    let socket = spire.agent_socket(caller.agent).ok_or_else(|| {
        MeshSpireError::Setup(format!(
            "{}: the SPIRE lab has no agent {}",
            caller.label, caller.agent
        ))
    })?;
    let home = spire.caller_dir(caller)?;
    let dir = home.join(format!(
        "fetch-{}",
        FETCH_SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(io(format!("creating {}", dir.display())))?;
    let _cleanup = RemoveOnDrop(dir.clone());
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io(format!("chmod 700 {}", dir.display())))?;
    if caller.switch_user {
        std::os::unix::fs::chown(&dir, Some(caller.uid), Some(caller.gid)).map_err(io(format!(
            "chown {} to uid {}",
            dir.display(),
            caller.uid
        )))?;
    }
    let mut command = tokio::process::Command::new(&caller.exe);
    command
        .args(["api", "fetch", "x509", "-socketPath"])
        .arg(socket)
        .args(["-timeout", "5s", "-write"])
        .arg(&dir)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if caller.switch_user {
        command.uid(caller.uid).gid(caller.gid);
    }
    let what = format!(
        "spire-agent api fetch x509 -write (as {}, uid {})",
        caller.label, caller.uid
    );
    let output = tokio::time::timeout(FETCH_BOUND, command.output())
        .await
        .map_err(|_| MeshSpireError::Setup(format!("{what}: no answer after {FETCH_BOUND:?}")))?
        .map_err(io(what.clone()))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        let message = format!(
            "{}\n{}",
            stdout.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .trim()
        .to_owned();
        if message.contains("no identity issued") {
            return Err(SpireError::NoIdentity {
                caller: caller.label.clone(),
                agent: caller.agent,
                message,
            }
            .into());
        }
        return Err(MeshSpireError::Setup(format!(
            "{what}: {}: {message}",
            output.status
        )));
    }
    let ids = cli::parse_fetched_ids(&stdout);
    let want = workload.spiffe_id.to_string();
    let index = ids.iter().position(|id| *id == want).ok_or_else(|| {
        MeshSpireError::Setup(format!(
            "{what}: no SVID for {want} among [{}]",
            ids.join(", ")
        ))
    })?;
    let read = |name: String| {
        let path = dir.join(&name);
        std::fs::read_to_string(&path).map_err(io(format!("reading {}", path.display())))
    };
    let chain_pem = read(format!("svid.{index}.pem"))?;
    let key = KeyPem::new(read(format!("svid.{index}.key"))?);
    let bundle_pem = read(format!("bundle.{index}.pem"))?;
    let bundle = TrustBundle::from_pem(workload.spiffe_id.trust_domain().clone(), &bundle_pem)
        .map_err(|e| MeshSpireError::Setup(format!("{what}: bundle: {e}")))?;
    let chain = parse_pem_chain(&chain_pem)
        .map_err(|e| MeshSpireError::Setup(format!("{what}: SVID: {e}")))?;
    let leaf = chain
        .first()
        .ok_or_else(|| MeshSpireError::Setup(format!("{what}: empty SVID chain")))?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| MeshSpireError::Setup(format!("{what}: SVID leaf: {e}")))?;
    let validity = cert.validity();
    Ok(FetchedSvid {
        spiffe_id: workload.spiffe_id.clone(),
        chain_pem,
        key,
        bundle,
        serial_hex: normalize_serial(&crate::pki::serial_hex(leaf).unwrap_or_default()),
        not_before: validity.not_before.to_datetime(),
        not_after: validity.not_after.to_datetime(),
    })
}

/// [`LabMesh::direct`], validating the callee against `bundle` instead of the mesh's snapshot:
/// a request straight to `service`'s inbound listener from the harness's own client.
pub async fn direct(
    mesh: &LabMesh,
    bundle: &TrustBundle,
    service: &str,
    identity: ProbeIdentity,
    path: &str,
) -> Result<Observation, String> {
    let callee = mesh
        .caller(service)
        .ok_or_else(|| format!("no lab workload for {service}"))?;
    let trust = match identity {
        ProbeIdentity::Plaintext => None,
        _ => Some(ServerTrust::new(
            bundle.clone(),
            Some(callee.identity.spiffe_id.clone()),
        )),
    };
    Probe::new(callee.sidecar.inbound_addr(), identity, trust)
        .path(path)
        .send()
        .await
        .map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------------
// Observations for the live checks

/// What a SPIRE-fed sidecar serves, set against what SPIRE issued its workload.
#[derive(Clone, Debug)]
pub struct ServedSvid {
    pub spiffe_id: String,
    /// The leaf Envoy serves for the workload's SPIFFE ID (admin `/certs`).
    pub served: ServedCert,
    /// Serials the Workload API handed the same workload just before and just after `/certs`
    /// was read (two, unless SPIRE renewed in between).
    pub issued_serials: Vec<String>,
    /// The served serial is one of them.
    pub matches: bool,
    /// The SPIRE authority that signed the issued SVID with the served serial (its AKI).
    pub authority_id: Option<String>,
    /// That SVID validates against the SPIRE server's current bundle, for exactly its ID.
    pub chains_to_spire: Result<(), String>,
}

/// Reads what `service`'s sidecar serves and what SPIRE issued its workload (see
/// [`ServedSvid`]).
pub async fn served_svid(
    mesh: &LabMesh,
    spire: &SpireLab,
    service: &str,
) -> Result<ServedSvid, MeshSpireError> {
    let workload = mesh
        .caller(service)
        .ok_or_else(|| MeshSpireError::Setup(format!("no lab workload for {service}")))?;
    let id = &workload.identity.spiffe_id;
    let registration = spire
        .workloads()
        .iter()
        .find(|w| &w.spiffe_id == id)
        .ok_or_else(|| MeshSpireError::Setup(format!("no SPIRE registration for {id}")))?;
    let before = spire.fetch_x509(&registration.caller).await?;
    let served = workload.sidecar.served_leaf().await?.ok_or_else(|| {
        MeshSpireError::Setup(format!(
            "the sidecar of {service} serves no certificate for {id}"
        ))
    })?;
    let after = spire.fetch_x509(&registration.caller).await?;
    let issued: Vec<_> = before
        .iter()
        .chain(&after)
        .filter(|s| &s.spiffe_id == id)
        .collect();
    let mut issued_serials: Vec<String> = issued.iter().map(|s| s.serial_hex()).collect();
    issued_serials.dedup();
    let matching = issued
        .iter()
        .find(|s| normalize_serial(&s.serial_hex()) == served.serial_hex);
    let server_bundle = spire.trust_bundle().await?;
    let chains_to_spire = match matching {
        Some(svid) => validate_x509_svid_for(
            &svid.chain_der,
            &server_bundle,
            OffsetDateTime::now_utc(),
            Some(id),
        )
        .map(|_| ())
        .map_err(|e| e.to_string()),
        None => Err("the served serial is not one SPIRE issued".into()),
    };
    Ok(ServedSvid {
        spiffe_id: id.to_string(),
        matches: matching.is_some(),
        authority_id: matching.and_then(|s| s.authority_id()),
        served,
        issued_serials,
        chains_to_spire,
    })
}

/// An allowed call kept flowing while SPIRE renewed the callee's SVID.
#[derive(Clone, Debug, Serialize)]
pub struct RenewalUnderLoad {
    /// The callee's SPIFFE ID.
    pub spiffe_id: String,
    pub serial_before: String,
    /// `None`: no renewal was served within the bound.
    pub serial_after: Option<String>,
    pub not_before: Option<String>,
    pub not_after: Option<String>,
    /// From the first call to the callee's sidecar serving the new serial.
    #[serde(serialize_with = "ser_millis", rename = "waited_ms")]
    pub waited: Duration,
    pub sent: usize,
    /// Every call that did not succeed, as its outcome.
    pub failed: Vec<String>,
}

/// Sends `call` through the caller's sidecar before, during (every 100 ms) and after SPIRE
/// renews the callee's SVID, until the callee's sidecar serves a new serial or `bound` passes.
/// SPIRE renews at half of an SVID's lifetime, so a bound of the lab's SVID TTL always sees one.
pub async fn calls_across_renewal(
    mesh: &LabMesh,
    call: &ExpectedCall,
    bound: Duration,
) -> Result<RenewalUnderLoad, MeshSpireError> {
    let callee = mesh
        .caller(&call.to)
        .ok_or_else(|| MeshSpireError::Setup(format!("no lab workload for {}", call.to)))?;
    let outbound = mesh
        .caller(&call.from)
        .and_then(|w| w.sidecar.outbound_addr(&call.to))
        .ok_or_else(|| {
            MeshSpireError::Setup(format!("{} has no route to {}", call.from, call.to))
        })?;
    let probe = Probe::via_sidecar(outbound, call.to.clone())
        .method(call.method.clone())
        .path(call.path.clone())
        .prepare()
        .map_err(|e| MeshSpireError::Setup(e.to_string()))?;
    let before = callee.sidecar.served_leaf().await?.ok_or_else(|| {
        MeshSpireError::Setup(format!(
            "the sidecar of {} serves no certificate for {}",
            call.to, callee.identity.spiffe_id
        ))
    })?;
    let mut sent = 0;
    let mut failed = Vec::new();
    let mut send = async || {
        let o = probe.send().await;
        sent += 1;
        if !o.outcome.is_success() {
            failed.push(o.outcome.to_string());
        }
    };
    let started = Instant::now();
    for _ in 0..CALLS_AROUND_RENEWAL {
        send().await;
    }
    let mut renewed = None;
    while started.elapsed() < bound {
        send().await;
        if let Some(leaf) = callee.sidecar.served_leaf().await? {
            if leaf.serial_hex != before.serial_hex {
                renewed = Some(leaf);
                break;
            }
        }
        tokio::time::sleep(RENEWAL_CALL_EVERY).await;
    }
    let waited = started.elapsed();
    for _ in 0..CALLS_AROUND_RENEWAL {
        send().await;
    }
    Ok(RenewalUnderLoad {
        spiffe_id: callee.identity.spiffe_id.to_string(),
        serial_before: before.serial_hex,
        serial_after: renewed.as_ref().map(|l| l.serial_hex.clone()),
        not_before: renewed.as_ref().and_then(|l| l.valid_from.clone()),
        not_after: renewed.as_ref().and_then(|l| l.expiration_time.clone()),
        waited,
        sent,
        failed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_dir_never_reuses_a_directory() {
        let parent = tempfile_dir();
        let first = fresh_dir(&parent, "sidecar");
        assert_eq!(first, parent.join("sidecar"));
        std::fs::create_dir(&first).unwrap();
        assert_eq!(fresh_dir(&parent, "sidecar"), parent.join("sidecar-2"));
        let _ = std::fs::remove_dir_all(&parent);
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "meshproof-mesh-spire-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}

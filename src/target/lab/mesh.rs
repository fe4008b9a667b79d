//! The lab's live mesh for one profile: a real Envoy sidecar per lab identity, configured from the
//! *configured* manifests the way istiod would configure it, and an echo app behind each.
//!
//! * Certificates: the profile's lab CA (corporate root → mesh intermediate) issues each workload
//!   its SVID, delivered by file-based SDS (rotation is a directory swap, never a restart).
//! * Inbound: mTLS required per the PeerAuthentication in force for the workload (STRICT refuses
//!   plaintext; a PERMISSIVE mutant accepts it, observably), peers validated with Envoy's SPIFFE
//!   validator against the profile's trust bundle, then the RBAC filters compiled from the
//!   AuthorizationPolicies that apply to the workload ([`crate::policy::istio::envoy_rbac`]).
//! * Outbound: every workload can reach every other service through its own sidecar, allowed or
//!   not — the callee's Envoy decides, exactly as in a mesh. (Denied routes must exist, or a
//!   denial would be a missing route rather than a refusal.)
//!
//! Calls in the intent matrix go the Istio way: the caller "app" (the harness) speaks plaintext to
//! the caller's sidecar, which originates mTLS with the caller's SVID. Negative probes (no client
//! certificate, plaintext, foreign CA, expired, wrong trust domain) go straight to a callee's
//! inbound listener from the harness's own client, since no honest sidecar would send them.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use super::LabPki;
use super::echo::EchoServer;
use super::envoy::EnvoyBinary;
use super::sidecar::{Credentials, MtlsMode, Sidecar, SidecarSpec, Upstream};
use crate::configured::Configured;
use crate::intents::ExpectedCall;
use crate::policy::istio::{self, Labels};
use crate::probe::{Observation, Probe, ProbeIdentity, ServerTrust};
use crate::profile::{Identity, Profile};
use crate::spiffe::{SpiffeId, TrustBundle};

/// One workload of the lab mesh.
pub struct Workload {
    pub identity: Identity,
    pub sidecar: Sidecar,
    pub echo: EchoServer,
}

pub struct LabMesh {
    pub profile: String,
    /// By identity label (`strategy/optimizer@prod`).
    pub workloads: BTreeMap<String, Workload>,
    /// Service name → the label of the workload that serves it.
    pub serving: BTreeMap<String, String>,
    pub bundle: TrustBundle,
    pub envoy_version: String,
    pub started_in: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    #[error("{0}")]
    Envoy(#[from] super::envoy::EnvoyError),
    #[error("{0}")]
    Sidecar(#[from] super::sidecar::SidecarError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Setup(String),
}

/// An identity, its workload's loopback address and its inbound port.
pub(super) type Placement = (Identity, IpAddr, u16);

/// Where each identity's workload listens: on its service's real port (AuthorizationPolicy
/// `ports` match the destination port, as in a pod), on its own loopback address in a /24 of its
/// own per mesh; and which workload serves each service (the one without a qualifier).
pub(super) fn address_plan(
    profile: &Profile,
    identities: &[Identity],
) -> Result<(Vec<Placement>, BTreeMap<String, String>), String> {
    let ports: Vec<u16> = identities
        .iter()
        .map(|i| {
            profile
                .service(&i.service)
                .and_then(|s| s.ports.first())
                .map_or(8080, |p| p.port)
        })
        .collect();
    let subnet = free_subnet(&ports)?;
    let plan = identities
        .iter()
        .zip(&ports)
        .enumerate()
        .map(|(i, (identity, port))| (identity.clone(), host(subnet, i), *port))
        .collect();
    let serving = identities
        .iter()
        .filter(|i| i.workload.is_none())
        .map(|i| (i.service.clone(), i.label()))
        .collect();
    Ok((plan, serving))
}

/// `127.a.b.(i+1)`: the i-th workload's address in the run's subnet.
fn host(subnet: [u8; 3], i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        subnet[0],
        subnet[1],
        subnet[2],
        (i + 1) as u8,
    ))
}

/// A /24 inside 127.0.0.0/8 (never 127.0.0.0/24) where every workload's port is free, so runs in
/// parallel on one machine do not collide. Derived from the process id and a per-process count
/// of meshes (Envoy binds listeners with `SO_REUSEPORT`, so two meshes started at once on one
/// subnet would both bind and share each other's connections), then probed.
fn free_subnet(ports: &[u16]) -> Result<[u8; 3], String> {
    static MESHES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    if ports.len() > 250 {
        return Err(format!("{} workloads do not fit in one /24", ports.len()));
    }
    let nth = MESHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let seed = (std::process::id() as usize).wrapping_add(nth.wrapping_mul(104_729));
    for attempt in 0..64 {
        let n = (seed
            .wrapping_mul(2_654_435_761)
            .wrapping_add(attempt * 7919))
            % (254 * 254);
        let subnet = [127, 1 + (n / 254) as u8, 1 + (n % 254) as u8];
        let free = ports.iter().enumerate().all(|(i, port)| {
            std::net::TcpListener::bind(SocketAddr::new(host(subnet, i), *port)).is_ok()
        });
        if free {
            return Ok(subnet);
        }
    }
    Err("no free loopback /24 for the lab's workloads (is 127.0.0.0/8 routed to lo?)".into())
}

fn labels(service: &str) -> Labels {
    [("app".to_owned(), service.to_owned())].into()
}

impl std::fmt::Debug for LabMesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabMesh")
            .field("profile", &self.profile)
            .field("workloads", &self.workloads.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl LabMesh {
    /// Starts the mesh with every workload's initial SVID from `pki` (the profile's TTL, issued
    /// when the lab PKI was built): for meshes nothing renews, like a drill's.
    pub async fn start(
        profile: &Profile,
        configured: &Configured,
        pki: &LabPki,
        bundle: TrustBundle,
        workdir: &Path,
    ) -> Result<LabMesh, MeshError> {
        let initial = |identity: &Identity| {
            pki.svids
                .initial(&identity.spiffe_id.to_string())
                .map(Credentials::from_svid)
                .ok_or_else(|| {
                    MeshError::Setup(format!(
                        "the lab CA issued no SVID to {}",
                        identity.spiffe_id
                    ))
                })
        };
        LabMesh::start_with(profile, configured, initial, bundle, workdir).await
    }

    /// Starts the mesh with the credentials `credentials` gives each lab identity.
    pub async fn start_with(
        profile: &Profile,
        configured: &Configured,
        credentials: impl Fn(&Identity) -> Result<Credentials, MeshError>,
        bundle: TrustBundle,
        workdir: &Path,
    ) -> Result<LabMesh, MeshError> {
        let started = Instant::now();
        let envoy = EnvoyBinary::locate()?;
        let identities = profile.lab_identities();
        let (plan, serving) = address_plan(profile, &identities).map_err(MeshError::Setup)?;

        let mut workloads = BTreeMap::new();
        for (identity, ip, inbound_port) in &plan {
            let service = profile
                .service(&identity.service)
                .ok_or_else(|| MeshError::Setup(format!("unknown service {}", identity.service)))?;
            let echo = EchoServer::start(identity.label(), SocketAddr::new(*ip, 0))
                .await
                .map_err(|source| MeshError::Io {
                    what: format!("starting the echo app of {}", identity.label()),
                    source,
                })?;
            let port = service.ports.first().map(|p| p.port).unwrap_or(0);
            let workload_labels = labels(&service.name);
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
            let mut spec = SidecarSpec::new(
                identity.label(),
                identity.spiffe_id.clone(),
                *ip,
                echo.addr(),
            );
            spec.inbound_port = *inbound_port;
            spec.mtls = match mode {
                istio::MtlsMode::Strict => MtlsMode::Strict,
                // PERMISSIVE, UNSET (Istio's default is PERMISSIVE) and DISABLE all accept plaintext.
                _ => MtlsMode::Permissive,
            };
            // Every lab port serves HTTP, so the HTTP RBAC filters enforce; `rbac.network` is what
            // istiod puts on TCP filter chains (HTTP-only rules dropped), and on an HTTP listener it
            // would refuse every connection the HTTP rules allow.
            spec.http_rbac = rbac.http;
            spec.upstreams = plan
                .iter()
                .filter(|(callee, ..)| {
                    callee.workload.is_none() && callee.service != identity.service
                })
                .map(|(callee, callee_ip, callee_port)| Upstream {
                    name: callee.service.clone(),
                    address: SocketAddr::new(*callee_ip, *callee_port),
                    spiffe_id: callee.spiffe_id.clone(),
                    sni: None,
                    listen_port: 0,
                })
                .collect();
            let dir = workdir.join(identity.label().replace(['/', '@'], "_"));
            let sidecar = Sidecar::start(&envoy, &spec, &credentials(identity)?, &dir).await?;
            workloads.insert(
                identity.label(),
                Workload {
                    identity: identity.clone(),
                    sidecar,
                    echo,
                },
            );
        }
        let mesh = LabMesh {
            profile: profile.name.clone(),
            workloads,
            serving,
            bundle,
            envoy_version: envoy.version().to_owned(),
            started_in: started.elapsed(),
        };
        mesh.wire_apps();
        Ok(mesh)
    }

    /// Points every echo app at its own sidecar's outbound listeners, so an app asked to call on
    /// (see [`super::echo`]) goes through its sidecar, as a workload's traffic does in a mesh.
    pub fn wire_apps(&self) {
        for workload in self.workloads.values() {
            workload
                .echo
                .set_routes(workload.sidecar.outbound_addrs().clone());
        }
    }

    /// The workload that sends as `caller` (the base identity of a service).
    pub fn caller(&self, service: &str) -> Option<&Workload> {
        self.serving
            .get(service)
            .and_then(|label| self.workloads.get(label))
    }

    /// A call of the intent matrix, the Istio way: through the caller's own sidecar.
    pub async fn call(&self, call: &ExpectedCall) -> Result<Observation, String> {
        let caller = self
            .caller(&call.from)
            .ok_or_else(|| format!("no lab workload for {}", call.from))?;
        let outbound = caller
            .sidecar
            .outbound_addr(&call.to)
            .ok_or_else(|| format!("{} has no route to {}", call.from, call.to))?;
        Probe::via_sidecar(outbound, call.to.clone())
            .method(call.method.clone())
            .path(call.path.clone())
            .send()
            .await
            .map_err(|e| e.to_string())
    }

    /// A request straight to `service`'s inbound listener from the harness's own client.
    pub async fn direct(
        &self,
        service: &str,
        identity: ProbeIdentity,
        path: &str,
    ) -> Result<Observation, String> {
        let callee = self
            .caller(service)
            .ok_or_else(|| format!("no lab workload for {service}"))?;
        let trust = match identity {
            ProbeIdentity::Plaintext => None,
            _ => Some(ServerTrust::new(
                self.bundle.clone(),
                Some(callee.identity.spiffe_id.clone()),
            )),
        };
        Probe::new(callee.sidecar.inbound_addr(), identity, trust)
            .path(path)
            .send()
            .await
            .map_err(|e| e.to_string())
    }

    pub fn spiffe_id(&self, service: &str) -> Option<&SpiffeId> {
        self.caller(service).map(|w| &w.identity.spiffe_id)
    }

    pub async fn shutdown(self) {
        for (_, workload) in self.workloads {
            let _ = workload.sidecar.shutdown().await;
            drop(workload.echo);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Changes a control plane would push, and the state drills record to prove their undo.
//
// Istio pushes a new RBAC or PeerAuthentication to a running sidecar over xDS without dropping
// a connection. The lab's sidecars are configured statically, so a push is emulated the way a
// zero-downtime restart works: a replacement Envoy binds the *same* inbound address next to the
// old one (Envoy sets SO_REUSEPORT on listeners), becomes ready, is swapped in, and only then is
// the old Envoy told to stop listening and given a bounded time to finish the requests it holds
// before it is stopped. Certificates are pushed without any restart (SDS directory swap).

/// How often a retiring sidecar is asked whether it still holds connections.
const RETIRE_POLL: Duration = Duration::from_millis(5);

/// One workload's sidecar as observed right now: what a drill records before a fault and compares
/// after its undo.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct WorkloadState {
    pub label: String,
    pub spiffe_id: String,
    /// Serial of the leaf Envoy serves (admin `/certs`), normalised as
    /// [`super::envoy::normalize_serial`] prints it.
    pub serving_serial: Option<String>,
    /// Serial and notAfter of the intermediate in the chain the sidecar was given (its SDS
    /// `cert-chain.pem`), as [`crate::pki::serial_hex`] prints it; `None` for a SPIRE-fed
    /// sidecar, whose chain exists only in Envoy's memory.
    pub intermediate_serial: Option<String>,
    pub intermediate_not_after: Option<String>,
    /// SHA-256 over the inbound listener's RBAC filters as the running Envoy holds them (admin
    /// `/config_dump`): equal digests mean equal enforced policy.
    pub rbac_sha256: String,
    /// `STRICT` (one mTLS filter chain) or `PERMISSIVE` (a plaintext chain too), from the same
    /// config dump.
    pub mtls: String,
    /// Admin `/ready` answered 200.
    pub ready: bool,
}

impl LabMesh {
    /// The spec istiod's configuration would give workload `label` under `policies` (the same
    /// translation [`LabMesh::start`] applies), keeping the workload's current addresses.
    pub fn sidecar_spec(
        &self,
        profile: &Profile,
        policies: &istio::MeshPolicies,
        label: &str,
    ) -> Result<SidecarSpec, MeshError> {
        let workload = self.workload(label)?;
        let identity = &workload.identity;
        let service = profile
            .service(&identity.service)
            .ok_or_else(|| MeshError::Setup(format!("unknown service {}", identity.service)))?;
        let port = service.ports.first().map(|p| p.port).unwrap_or(0);
        let workload_labels = labels(&service.name);
        let rbac = istio::envoy_rbac(policies, &service.namespace, &workload_labels, true);
        let (mode, _) = istio::mtls_mode(policies, &service.namespace, &workload_labels, port);
        let inbound = workload.sidecar.inbound_addr();
        let mut spec = SidecarSpec::new(
            identity.label(),
            identity.spiffe_id.clone(),
            inbound.ip(),
            workload.echo.addr(),
        );
        spec.inbound_port = inbound.port();
        spec.mtls = match mode {
            istio::MtlsMode::Strict => MtlsMode::Strict,
            _ => MtlsMode::Permissive,
        };
        spec.http_rbac = rbac.http;
        spec.upstreams = self
            .workloads
            .values()
            .filter(|callee| {
                callee.identity.workload.is_none() && callee.identity.service != identity.service
            })
            .map(|callee| Upstream {
                name: callee.identity.service.clone(),
                address: callee.sidecar.inbound_addr(),
                spiffe_id: callee.identity.spiffe_id.clone(),
                sni: None,
                listen_port: 0,
            })
            .collect();
        Ok(spec)
    }

    /// The credentials workload `label`'s sidecar holds now, read back from its SDS directory
    /// (the key stays in memory only, inside [`Credentials`], whose `Debug` redacts it).
    pub fn current_credentials(&self, label: &str) -> Result<Credentials, MeshError> {
        let sds = self.workload(label)?.sidecar.sds();
        let read = |path: std::path::PathBuf| {
            std::fs::read_to_string(&path).map_err(|source| MeshError::Io {
                what: format!("reading {}", path.display()),
                source,
            })
        };
        Ok(Credentials::new(
            read(sds.cert_chain_path())?,
            read(sds.key_path())?,
            read(sds.root_cert_path())?,
        ))
    }

    /// Starts a replacement sidecar for `label` from `spec` and `credentials` next to the running
    /// one (same inbound address), in a fresh directory beside the current one, and waits until it
    /// is ready. Nothing changes for callers until [`LabMesh::swap_sidecar`].
    pub async fn start_replacement(
        &self,
        label: &str,
        spec: &SidecarSpec,
        credentials: &Credentials,
    ) -> Result<Sidecar, MeshError> {
        let workload = self.workload(label)?;
        let current = workload.sidecar.envoy().workdir();
        let parent = current.parent().unwrap_or(current);
        let base = label.replace(['/', '@'], "_");
        let dir = (1..)
            .map(|n| parent.join(format!("{base}.push{n}")))
            .find(|d| !d.exists())
            .ok_or_else(|| MeshError::Setup("no free directory for a replacement".into()))?;
        let envoy = EnvoyBinary::locate()?;
        Ok(Sidecar::start(&envoy, spec, credentials, &dir).await?)
    }

    /// Puts `replacement` in place of `label`'s sidecar and returns the old one, still running:
    /// hand it to [`LabMesh::retire_sidecar`].
    pub fn swap_sidecar(
        &mut self,
        label: &str,
        replacement: Sidecar,
    ) -> Result<Sidecar, MeshError> {
        let workload = self
            .workloads
            .get_mut(label)
            .ok_or_else(|| MeshError::Setup(format!("no lab workload {label}")))?;
        // The replacement's outbound listeners have ports of their own.
        workload
            .echo
            .set_routes(replacement.outbound_addrs().clone());
        Ok(std::mem::replace(&mut workload.sidecar, replacement))
    }

    /// Retires a sidecar that was swapped out, without failing a request: admin
    /// `POST /healthcheck/fail` makes every connection manager drain-close (each HTTP/1 response
    /// carries `Connection: close`, so callers stop reusing the connections they hold open, after
    /// the request in progress), `POST /drain_listeners` stops accepting (new connections reach
    /// the replacement), and the connections still open get up to `bound` to close before Envoy is
    /// stopped and reaped. Returns how long the drain took.
    pub async fn retire_sidecar(old: Sidecar, bound: Duration) -> Result<Duration, MeshError> {
        let started = Instant::now();
        let admin = old.admin();
        // A failed admin request only means Envoy is already gone; stopping it is what matters.
        let _ = admin_post(admin.addr(), "/healthcheck/fail").await;
        let _ = admin_post(admin.addr(), "/drain_listeners").await;
        while started.elapsed() < bound {
            let open = admin
                .get_json("/stats?format=json&filter=^listener\\..*downstream_cx_active$")
                .await
                .map(|v| {
                    super::envoy::parse_stats(&v)
                        .iter()
                        .filter(|(name, _)| !name.starts_with("listener.admin"))
                        .map(|(_, v)| *v)
                        .sum::<u64>()
                })
                .unwrap_or(0);
            if open == 0 {
                break;
            }
            tokio::time::sleep(RETIRE_POLL).await;
        }
        let drained = started.elapsed();
        old.shutdown().await?;
        Ok(drained)
    }

    /// Issues `label` a new SVID from `pki` (for its own SPIFFE ID, with the CA spec's workload
    /// TTL) and publishes it to the running sidecar. Returns the SVID; see
    /// [`LabMesh::wait_serving`] to see it served.
    pub fn reissue(
        &self,
        label: &str,
        pki: &crate::pki::Pki,
        now: time::OffsetDateTime,
    ) -> Result<crate::pki::Svid, MeshError> {
        let workload = self.workload(label)?;
        let svid = pki
            .issue_workload_svid(&workload.identity.spiffe_id.to_string(), now)
            .map_err(|e| MeshError::Setup(format!("issuing {label}'s SVID: {e}")))?;
        workload.sidecar.rotate(&Credentials::from_svid(&svid))?;
        Ok(svid)
    }

    /// [`LabMesh::reissue`] for every workload, in label order: every SVID re-issued from the
    /// given intermediate.
    pub fn reissue_all(
        &self,
        pki: &crate::pki::Pki,
        now: time::OffsetDateTime,
    ) -> Result<Vec<(String, crate::pki::Svid)>, MeshError> {
        self.workloads
            .keys()
            .map(|label| Ok((label.clone(), self.reissue(label, pki, now)?)))
            .collect()
    }

    /// Publishes `credentials` to `label`'s running sidecar (no restart).
    pub fn push_credentials(
        &self,
        label: &str,
        credentials: &Credentials,
    ) -> Result<(), MeshError> {
        self.workload(label)?.sidecar.rotate(credentials)?;
        Ok(())
    }

    /// Waits until every `(label, serial)` is served by that workload's sidecar; returns the
    /// longest wait.
    pub async fn wait_serving(
        &self,
        serials: &[(String, String)],
        timeout: Duration,
    ) -> Result<Duration, MeshError> {
        let mut longest = Duration::ZERO;
        for (label, serial) in serials {
            let waited = self
                .workload(label)?
                .sidecar
                .wait_for_serial(serial, timeout)
                .await?;
            longest = longest.max(waited);
        }
        Ok(longest)
    }

    /// What workload `label`'s sidecar serves and enforces right now (see [`WorkloadState`]).
    pub async fn workload_state(&self, label: &str) -> Result<WorkloadState, MeshError> {
        let workload = self.workload(label)?;
        let admin = workload.sidecar.admin();
        let ready = admin.ready().await.unwrap_or(false);
        let serving_serial = admin
            .served_leaves()
            .await?
            .into_iter()
            .find(|c| {
                c.uri_sans
                    .iter()
                    .any(|u| *u == workload.identity.spiffe_id.to_string())
            })
            .map(|c| super::envoy::normalize_serial(&c.serial_hex));
        // The chain a file-fed sidecar was given; a SPIRE-fed one holds its chain in memory only.
        let ders = match workload.sidecar.cert_source() {
            super::sidecar::CertSource::File(sds) => {
                let chain = std::fs::read_to_string(sds.cert_chain_path()).map_err(|source| {
                    MeshError::Io {
                        what: format!("reading {label}'s certificate chain"),
                        source,
                    }
                })?;
                crate::spiffe::parse_pem_chain(&chain)
                    .map_err(|e| MeshError::Setup(format!("{label}'s certificate chain: {e}")))?
            }
            super::sidecar::CertSource::SpireAgent(_) => Vec::new(),
        };
        let intermediate = ders.get(1);
        let intermediate_serial = intermediate.and_then(|d| crate::pki::serial_hex(d).ok());
        let intermediate_not_after = intermediate.and_then(|d| {
            let (_, cert) = x509_parser::parse_x509_certificate(d).ok()?;
            Some(crate::checks::rfc3339(
                cert.validity().not_after.to_datetime(),
            ))
        });
        let dump = admin
            .get_json("/config_dump?resource=static_listeners")
            .await?;
        let (rbac_sha256, mtls) = inbound_policy(&dump);
        Ok(WorkloadState {
            label: label.to_owned(),
            spiffe_id: workload.identity.spiffe_id.to_string(),
            serving_serial,
            intermediate_serial,
            intermediate_not_after,
            rbac_sha256,
            mtls,
            ready,
        })
    }

    /// [`LabMesh::workload_state`] of every workload, by label.
    pub async fn state(&self) -> Result<BTreeMap<String, WorkloadState>, MeshError> {
        let mut out = BTreeMap::new();
        for label in self.workloads.keys() {
            out.insert(label.clone(), self.workload_state(label).await?);
        }
        Ok(out)
    }

    /// The pids of every sidecar's Envoy, by label.
    pub fn envoy_pids(&self) -> BTreeMap<String, u32> {
        self.workloads
            .iter()
            .map(|(label, w)| (label.clone(), w.sidecar.envoy().pid()))
            .collect()
    }

    fn workload(&self, label: &str) -> Result<&Workload, MeshError> {
        self.workloads
            .get(label)
            .ok_or_else(|| MeshError::Setup(format!("no lab workload {label}")))
    }
}

/// The inbound listener's RBAC filters (digest) and mTLS mode from an Envoy
/// `/config_dump?resource=static_listeners`.
fn inbound_policy(dump: &serde_json::Value) -> (String, String) {
    use sha2::Digest as _;
    let listener = dump["configs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| &c["listener"])
        .find(|l| l["name"] == super::sidecar::INBOUND);
    let Some(listener) = listener else {
        return (String::new(), "NO INBOUND LISTENER".into());
    };
    let chains = listener["filter_chains"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    let mut rbac = Vec::new();
    for chain in chains {
        for filter in chain["filters"].as_array().into_iter().flatten() {
            if filter["name"] == "envoy.filters.network.rbac" {
                rbac.push(filter.clone());
            }
            let http = &filter["typed_config"]["http_filters"];
            for f in http.as_array().into_iter().flatten() {
                if f["name"] == "envoy.filters.http.rbac" {
                    rbac.push(f.clone());
                }
            }
        }
    }
    let text = serde_json::to_string(&rbac).unwrap_or_default();
    let digest = sha2::Sha256::digest(text.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let mtls = if chains.len() > 1 {
        "PERMISSIVE"
    } else {
        "STRICT"
    };
    (hex, mtls.into())
}

/// `POST path` to an Envoy admin listener (mutating admin endpoints refuse GET). Returns the
/// status code.
async fn admin_post(addr: SocketAddr, path: &str) -> Result<u16, String> {
    use http_body_util::Empty;
    use hyper::body::Bytes;
    let post = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| format!("handshake: {e}"))?;
        let conn_task = tokio::spawn(conn);
        let request = hyper::Request::post(path)
            .header(hyper::header::HOST, addr.to_string())
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("request: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("POST {path}: {e}"))?;
        conn_task.abort();
        Ok(response.status().as_u16())
    };
    tokio::time::timeout(Duration::from_secs(5), post)
        .await
        .map_err(|_| format!("POST {path}: timed out after 5s"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meshes_started_one_after_another_get_different_loopback_subnets() {
        let ports = [18080u16, 18081];
        let a = free_subnet(&ports).unwrap();
        let b = free_subnet(&ports).unwrap();
        assert_eq!(a[0], 127);
        assert!(a[1] >= 1 && a[2] >= 1, "{a:?}");
        assert_ne!(a, b);
        assert_eq!(host(a, 0), IpAddr::V4(Ipv4Addr::new(127, a[1], a[2], 1)));
    }
}

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
/// parallel on one machine do not collide. Derived from the process id, then probed.
fn free_subnet(ports: &[u16]) -> Result<[u8; 3], String> {
    if ports.len() > 250 {
        return Err(format!("{} workloads do not fit in one /24", ports.len()));
    }
    let seed = std::process::id() as usize;
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
    pub async fn start(
        profile: &Profile,
        configured: &Configured,
        pki: &LabPki,
        bundle: TrustBundle,
        workdir: &Path,
    ) -> Result<LabMesh, MeshError> {
        let started = Instant::now();
        let envoy = EnvoyBinary::locate()?;
        let identities = profile.lab_identities();
        // Each workload listens on its service's real port (AuthorizationPolicy `ports` match the
        // destination port, as in a pod) on its own loopback address, in a /24 of its own per run.
        let ports: Vec<u16> = identities
            .iter()
            .map(|i| {
                profile
                    .service(&i.service)
                    .and_then(|s| s.ports.first())
                    .map_or(8080, |p| p.port)
            })
            .collect();
        let subnet = free_subnet(&ports).map_err(MeshError::Setup)?;
        let plan: Vec<(Identity, IpAddr, u16)> = identities
            .iter()
            .zip(&ports)
            .enumerate()
            .map(|(i, (identity, port))| (identity.clone(), host(subnet, i), *port))
            .collect();
        let serving: BTreeMap<String, String> = identities
            .iter()
            .filter(|i| i.workload.is_none())
            .map(|i| (i.service.clone(), i.label()))
            .collect();

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
            let svid = pki
                .svids
                .get(&identity.spiffe_id.to_string())
                .ok_or_else(|| {
                    MeshError::Setup(format!(
                        "the lab CA issued no SVID to {}",
                        identity.spiffe_id
                    ))
                })?;
            let dir = workdir.join(identity.label().replace(['/', '@'], "_"));
            let sidecar =
                Sidecar::start(&envoy, &spec, &Credentials::from_svid(svid), &dir).await?;
            workloads.insert(
                identity.label(),
                Workload {
                    identity: identity.clone(),
                    sidecar,
                    echo,
                },
            );
        }
        Ok(LabMesh {
            profile: profile.name.clone(),
            workloads,
            serving,
            bundle,
            envoy_version: envoy.version().to_owned(),
            started_in: started.elapsed(),
        })
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

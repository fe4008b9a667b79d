//! One Envoy sidecar per workload, configured the way istiod configures Istio's sidecars.
//!
//! # Contract
//!
//! A [`SidecarSpec`] becomes an Envoy bootstrap ([`bootstrap`], pure, unit-tested) and a running
//! Envoy ([`Sidecar::start`]) on the workload's own loopback address:
//!
//! * **Inbound** listener `inbound` on `ip:inbound_port`: TLS 1.2–1.3 that **requires a client
//!   certificate**, validated either by Envoy's SPIFFE validator (one bundle per trust domain: a
//!   peer is checked against its own trust domain's roots only, and an unknown trust domain fails
//!   the handshake) or by a plain `trusted_ca` ([`PeerValidation`]). The workload's certificate
//!   and the validation context come from its [`CertSource`]: file-based SDS ([`SdsDir`], so a
//!   rotation is a directory swap, never a restart), or a SPIRE agent's SDS API (below). Then,
//!   in order: the given network RBAC filters, the HTTP connection manager with
//!   `forward_client_cert_details: SANITIZE_SET` and
//!   `set_current_client_cert_details { uri: true }` (the app sees the caller's SPIFFE ID in
//!   `x-forwarded-client-cert`, and nothing a caller forged), the given HTTP RBAC filters, and the
//!   router to the app. [`MtlsMode::Permissive`] adds a TLS inspector and a second, plaintext
//!   filter chain — exactly what makes a PERMISSIVE mutant observable.
//! * **Outbound**: one plaintext listener per allowed upstream, on the workload's own IP (the
//!   "app → sidecar" hop Istio's iptables redirect provides), that originates mTLS with the
//!   workload's SVID to the callee's inbound address and accepts only the callee's exact SPIFFE
//!   ID (URI SAN, through the same validator). Connections leave from the workload's IP, so the
//!   callee sees the caller's address, as between pods.
//! * **Admin** on `127.0.0.1`, port chosen by the OS (like Istio's localhost-only 15000).
//!
//! Ports given as 0 are chosen by the OS when Envoy binds them and read back from the admin
//! `/listeners` once Envoy is ready, so parallel runs never race for a port. Give a fixed
//! `inbound_port` (see [`reserve_port`]) when callers must be configured before the callee
//! starts (cycles in the call graph).
//!
//! RBAC configs are accepted as-is: each HTTP entry is the `typed_config` of an
//! `envoy.filters.http.rbac` filter (or a whole `HttpFilter` with `name` + `typed_config`), each
//! network entry likewise for `envoy.filters.network.rbac`. They are applied in the given order.
//!
//! Loopback addresses: on Linux all of `127.0.0.0/8` is local, so every workload gets its own
//! `127.0.1.x` without root. Where that is not so (macOS without `ifconfig lo0 alias`),
//! [`workload_ip`] falls back to `127.0.0.1`; workloads are then told apart by port only and a
//! source-address check cannot tell them apart.
//!
//! Key material: the private key goes from [`Credentials`] straight into the SDS directory
//! (`key.pem`, `0600`); [`Credentials`]' `Debug` redacts it, and no error here quotes it.
//!
//! # SPIRE-fed sidecars
//!
//! [`Sidecar::start_spire`] starts the same sidecar ([`bootstrap_with`] and
//! [`CertSource::SpireAgent`]) with its identity from a SPIRE agent, as a SPIRE-integrated Istio
//! or Envoy deployment runs: a static `spire_agent` cluster to the agent's Unix socket (gRPC over
//! HTTP/2), the certificate as the SDS secret named by the workload's SPIFFE ID, and the
//! validation context as the secret `spiffe://<trust domain>`, which the agent answers with
//! Envoy's SPIFFE validator holding that one trust domain's bundle (the same semantics as
//! [`PeerValidation::Spiffe`]: only peers of the trust domain; an unknown trust domain fails).
//! [`PeerValidation::TrustedCa`] asks the agent for a plain `trusted_ca` instead (node metadata
//! `disable_spiffe_cert_validation: true`, SPIRE's own switch). The outbound clusters still pin
//! the callee's exact SPIFFE ID on top of the agent's validation context. Renewals and bundle
//! changes are pushed by the agent over the open SDS stream: no restart, no file, no key on disk
//! anywhere (the agent only hands the SVID to a process its `unix` attestor matches to the
//! registration entry, so Envoy runs as the workload's uid/gid: [`super::envoy::RunAs`]).
//! Federated bundles ([`SidecarSpec::federated`]) are refused with this source: with SPIRE they
//! come from SPIRE's own federation, not from files.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::envoy::{
    AdminClient, EnvoyBinary, EnvoyError, EnvoyLaunch, EnvoyProcess, RunAs, ServedCert,
};
use super::sds::{SdsDir, SdsError, SdsGeneration};
use super::spire::{sds_certificate, sds_cluster, sds_validation_context};
use crate::spiffe::{SpiffeId, TrustDomain};

pub(super) const TLS_SOCKET: &str = "envoy.transport_sockets.tls";
pub(super) const DOWNSTREAM_TLS: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";
pub(super) const UPSTREAM_TLS: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
const SPIFFE_VALIDATOR: &str = "envoy.tls.cert_validator.spiffe";
const SPIFFE_VALIDATOR_TYPE: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig";
pub(super) const HCM: &str = "envoy.filters.network.http_connection_manager";
pub(super) const HCM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
pub(super) const HTTP_RBAC: &str = "envoy.filters.http.rbac";
const NETWORK_RBAC: &str = "envoy.filters.network.rbac";
const ROUTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";

/// The inbound listener's name (and its HTTP connection manager's `stat_prefix`, so its RBAC
/// counters are `http.inbound.rbac.*`).
pub const INBOUND: &str = "inbound";
/// The app cluster's name.
pub const APP_CLUSTER: &str = "inbound|app";
/// Per-sidecar bound on open downstream connections (far above what a lab run uses).
pub const MAX_DOWNSTREAM_CONNECTIONS: u64 = 10_000;

/// The outbound listener's (and cluster's) name for upstream `name`.
pub fn outbound_name(name: &str) -> String {
    format!("outbound|{name}")
}

/// Istio's PeerAuthentication modes that change what the inbound listener accepts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MtlsMode {
    /// mTLS only: a client without a certificate, or speaking plaintext, is refused.
    #[default]
    Strict,
    /// mTLS or plaintext (a TLS inspector picks the filter chain).
    Permissive,
}

/// How the inbound listener, and outbound clusters, validate peer certificates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PeerValidation {
    /// Envoy's SPIFFE validator: the own trust domain's bundle (from the SDS directory) plus
    /// `federated` bundles; a peer is checked against its own trust domain's roots only.
    #[default]
    Spiffe,
    /// `trusted_ca` with the own bundle: any chain to those roots passes, whatever trust domain
    /// its URI SAN names (what a misconfigured mesh does).
    TrustedCa,
}

/// An upstream the workload may call through its sidecar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// Short name, e.g. the callee's service name; names the listener and cluster.
    pub name: String,
    /// The callee sidecar's inbound address.
    pub address: SocketAddr,
    /// The identity the callee must present.
    pub spiffe_id: SpiffeId,
    /// SNI to send (Istio sends `outbound_.<port>_._.<host>`); none by default.
    pub sni: Option<String>,
    /// Where the outbound listener binds on the workload's IP; 0 lets the OS choose.
    pub listen_port: u16,
}

/// Everything that shapes one sidecar.
#[derive(Clone, Debug)]
pub struct SidecarSpec {
    /// Workload label; names the directory, the Envoy node and errors.
    pub name: String,
    /// The workload's identity (its certificate must carry it).
    pub spiffe_id: SpiffeId,
    /// The workload's loopback address (see [`workload_ip`]).
    pub ip: IpAddr,
    /// Inbound listener port; 0 lets the OS choose.
    pub inbound_port: u16,
    /// Where the app listens (plaintext, reached only through the sidecar).
    pub app: SocketAddr,
    pub mtls: MtlsMode,
    pub validation: PeerValidation,
    /// Roots of other trust domains (PEM), for the SPIFFE validator.
    pub federated: Vec<(TrustDomain, String)>,
    /// HTTP RBAC filters in order (typed configs, or whole `HttpFilter`s).
    pub http_rbac: Vec<Value>,
    /// Network RBAC filters in order (typed configs, or whole `Filter`s).
    pub network_rbac: Vec<Value>,
    pub upstreams: Vec<Upstream>,
}

impl SidecarSpec {
    /// A STRICT, SPIFFE-validating sidecar with no policy and no upstreams.
    pub fn new(name: impl Into<String>, spiffe_id: SpiffeId, ip: IpAddr, app: SocketAddr) -> Self {
        SidecarSpec {
            name: name.into(),
            spiffe_id,
            ip,
            inbound_port: 0,
            app,
            mtls: MtlsMode::Strict,
            validation: PeerValidation::Spiffe,
            federated: Vec::new(),
            http_rbac: Vec::new(),
            network_rbac: Vec::new(),
            upstreams: Vec::new(),
        }
    }
}

/// A workload's certificate chain (leaf first), private key and own trust bundle, all PEM.
#[derive(Clone)]
pub struct Credentials {
    pub chain_pem: String,
    key_pem: String,
    pub bundle_pem: String,
}

impl Credentials {
    pub fn new(
        chain_pem: impl Into<String>,
        key_pem: String,
        bundle_pem: impl Into<String>,
    ) -> Self {
        Credentials {
            chain_pem: chain_pem.into(),
            key_pem,
            bundle_pem: bundle_pem.into(),
        }
    }

    /// An SVID from the lab PKI, trusting the root it chains to.
    pub fn from_svid(svid: &crate::pki::Svid) -> Self {
        Credentials::new(svid.chain_pem(), svid.key().secret_pem(), svid.root().pem())
    }

    /// The private key PEM: secret, write it only to a `0600` file.
    pub fn secret_key_pem(&self) -> &str {
        &self.key_pem
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("chain_pem", &format!("{} bytes", self.chain_pem.len()))
            .field("key_pem", &"redacted")
            .field("bundle_pem", &format!("{} bytes", self.bundle_pem.len()))
            .finish()
    }
}

/// A SPIRE agent's SDS API, as a sidecar's certificate source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpireAgentSds {
    /// The agent's Workload API / SDS Unix socket.
    pub socket: PathBuf,
    /// The SVID to ask for (the SDS resource name). The agent serves it only to a process its
    /// attestor matches to that ID's registration entry.
    pub spiffe_id: SpiffeId,
    /// The trust domain whose bundle validates peers (the `spiffe://<td>` resource).
    pub trust_domain: TrustDomain,
}

/// Where a sidecar's certificate and peer-validation context come from.
#[derive(Clone, Copy, Debug)]
pub enum CertSource<'a> {
    /// File-based SDS from a secret directory the harness writes (the lab CA's SVIDs).
    File(&'a SdsDir),
    /// SDS over gRPC from a SPIRE agent; nothing on disk.
    SpireAgent(&'a SpireAgentSds),
}

#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    #[error("sidecar {name}: {source}")]
    Envoy {
        name: String,
        source: Box<EnvoyError>,
    },
    #[error("sidecar {name}: {source}")]
    Sds { name: String, source: SdsError },
    #[error("sidecar {name}: {message}")]
    Other { name: String, message: String },
}

/// The loopback address of workload number `index` (0-based): `127.0.1.<index + 1>` where such
/// addresses can be bound (Linux, no root needed), otherwise `127.0.0.1` (see the module docs).
pub fn workload_ip(index: u8) -> IpAddr {
    let preferred = IpAddr::V4(Ipv4Addr::new(127, 0, 1, index.saturating_add(1)));
    if std::net::TcpListener::bind((preferred, 0)).is_ok() {
        preferred
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    }
}

/// A port that was free on `ip` a moment ago. The OS may hand it to someone else before Envoy
/// binds it; prefer port 0 unless the port must be known in advance.
pub fn reserve_port(ip: IpAddr) -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind((ip, 0))?.local_addr()?.port())
}

/// A running sidecar: an Envoy with its SDS directory.
#[derive(Debug)]
pub struct Sidecar {
    name: String,
    spiffe_id: SpiffeId,
    mtls: MtlsMode,
    envoy: EnvoyProcess,
    /// For a SPIRE-fed sidecar: an empty directory nothing writes to (see [`Sidecar::sds`]).
    sds: SdsDir,
    spire: Option<SpireAgentSds>,
    run_as: Option<RunAs>,
    inbound: SocketAddr,
    outbound: BTreeMap<String, SocketAddr>,
}

impl Sidecar {
    /// Writes the credentials into `dir/sds`, the bootstrap into `dir`, starts Envoy and waits
    /// until it is ready and every listener is bound.
    pub async fn start(
        bin: &EnvoyBinary,
        spec: &SidecarSpec,
        credentials: &Credentials,
        dir: &Path,
    ) -> Result<Sidecar, SidecarError> {
        let sds_err = |source| SidecarError::Sds {
            name: spec.name.clone(),
            source,
        };
        let sds = SdsDir::create(dir.join("sds")).map_err(sds_err)?;
        sds.write(
            &credentials.chain_pem,
            &credentials.key_pem,
            &credentials.bundle_pem,
        )
        .map_err(sds_err)?;
        let bundles = write_federated_bundles(spec, dir)?;
        sds.set_validation_context(&validation_context(spec, &sds, &bundles))
            .map_err(sds_err)?;
        let config = bootstrap(spec, &sds);
        Sidecar::launch(bin, spec, config, dir, sds, None, None).await
    }

    /// Starts a sidecar whose certificate and validation context come from a SPIRE agent's SDS
    /// API (see the module docs), running Envoy as `run_as` (the workload's uid/gid, so the
    /// agent's `unix` attestor matches it to its entry; `None` keeps the harness's own user,
    /// e.g. for `unix:path` selectors). `dir` (bootstrap, logs, admin address) must be reachable
    /// by that user; it holds no key. Returns once Envoy is ready and every listener is bound,
    /// which Envoy reaches after the first SDS answer or its initial fetch timeout (15 s): use
    /// [`Sidecar::wait_for_svid`] to know the SVID is really served.
    pub async fn start_spire(
        bin: &EnvoyBinary,
        spec: &SidecarSpec,
        agent: &SpireAgentSds,
        run_as: Option<RunAs>,
        dir: &Path,
    ) -> Result<Sidecar, SidecarError> {
        if !spec.federated.is_empty() {
            return Err(SidecarError::Other {
                name: spec.name.clone(),
                message: "federated bundles from files cannot be combined with a SPIRE agent \
                          source: with SPIRE they come from SPIRE's own federation"
                    .into(),
            });
        }
        // Kept only so that [`Sidecar::sds`] has something to return: never written, never
        // read by Envoy.
        let sds = SdsDir::create(dir.join("sds")).map_err(|source| SidecarError::Sds {
            name: spec.name.clone(),
            source,
        })?;
        let config = bootstrap_with(spec, CertSource::SpireAgent(agent));
        Sidecar::launch(bin, spec, config, dir, sds, Some(agent.clone()), run_as).await
    }

    async fn launch(
        bin: &EnvoyBinary,
        spec: &SidecarSpec,
        config: Value,
        dir: &Path,
        sds: SdsDir,
        spire: Option<SpireAgentSds>,
        run_as: Option<RunAs>,
    ) -> Result<Sidecar, SidecarError> {
        let mut launch = EnvoyLaunch::new(&spec.name, config, dir);
        launch.run_as = run_as;
        let envoy =
            EnvoyProcess::start(bin, launch)
                .await
                .map_err(|source| SidecarError::Envoy {
                    name: spec.name.clone(),
                    source: Box::new(source),
                })?;
        let listeners = envoy
            .admin()
            .listeners()
            .await
            .map_err(|source| SidecarError::Envoy {
                name: spec.name.clone(),
                source: Box::new(source),
            })?;
        let find = |listener: &str| {
            listeners
                .iter()
                .find(|l| l.name == listener)
                .map(|l| l.addr)
                .ok_or_else(|| SidecarError::Other {
                    name: spec.name.clone(),
                    message: format!("Envoy is ready but reports no listener {listener:?}"),
                })
        };
        let inbound = find(INBOUND)?;
        let mut outbound = BTreeMap::new();
        for upstream in &spec.upstreams {
            outbound.insert(upstream.name.clone(), find(&outbound_name(&upstream.name))?);
        }
        Ok(Sidecar {
            name: spec.name.clone(),
            spiffe_id: spec.spiffe_id.clone(),
            mtls: spec.mtls,
            envoy,
            sds,
            spire,
            run_as,
            inbound,
            outbound,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.spiffe_id
    }

    pub fn mtls(&self) -> MtlsMode {
        self.mtls
    }

    /// The inbound (mTLS) listener's address: what other workloads call.
    pub fn inbound_addr(&self) -> SocketAddr {
        self.inbound
    }

    /// The plaintext outbound listener for `upstream`: what this workload's app calls.
    pub fn outbound_addr(&self, upstream: &str) -> Option<SocketAddr> {
        self.outbound.get(upstream).copied()
    }

    /// Every outbound listener, by upstream name.
    pub fn outbound_addrs(&self) -> &BTreeMap<String, SocketAddr> {
        &self.outbound
    }

    pub fn admin(&self) -> AdminClient {
        self.envoy.admin()
    }

    pub fn envoy(&self) -> &EnvoyProcess {
        &self.envoy
    }

    /// The file-based SDS directory. For a SPIRE-fed sidecar ([`Sidecar::cert_source`]) it is
    /// an empty directory nothing writes to and Envoy never reads: its certificate exists only
    /// in Envoy's memory, so reading files from here fails (not found).
    pub fn sds(&self) -> &SdsDir {
        &self.sds
    }

    /// Where this sidecar's certificate and validation context come from.
    pub fn cert_source(&self) -> CertSource<'_> {
        match &self.spire {
            Some(agent) => CertSource::SpireAgent(agent),
            None => CertSource::File(&self.sds),
        }
    }

    /// The uid/gid Envoy runs as, when not the harness's own.
    pub fn run_as(&self) -> Option<RunAs> {
        self.run_as
    }

    /// Publishes new credentials to the running Envoy (a `..data` swap; no restart). Use
    /// [`Sidecar::wait_for_serial`] to see Envoy serve them. A SPIRE-fed sidecar refuses: its
    /// certificates come from the agent, and renew when SPIRE renews them.
    pub fn rotate(&self, credentials: &Credentials) -> Result<SdsGeneration, SidecarError> {
        if let Some(agent) = &self.spire {
            return Err(SidecarError::Other {
                name: self.name.clone(),
                message: format!(
                    "its certificate comes from the SPIRE agent at {} over SDS; it cannot be \
                     rotated from files (SPIRE renews it; a new SVID needs SPIRE)",
                    agent.socket.display()
                ),
            });
        }
        self.sds
            .write(
                &credentials.chain_pem,
                &credentials.key_pem,
                &credentials.bundle_pem,
            )
            .map_err(|source| SidecarError::Sds {
                name: self.name.clone(),
                source,
            })
    }

    /// Polls `/certs` until the served leaf has `serial_hex` (as [`crate::pki::Svid::serial_hex`]
    /// prints it); returns how long that took, or an error naming the serial still served.
    pub async fn wait_for_serial(
        &self,
        serial_hex: &str,
        timeout: Duration,
    ) -> Result<Duration, SidecarError> {
        let want = super::envoy::normalize_serial(serial_hex);
        let started = Instant::now();
        loop {
            let last = match self.admin().served_leaves().await {
                Ok(leaves) if leaves.iter().any(|c| c.serial_hex == want) => {
                    return Ok(started.elapsed());
                }
                Ok(leaves) => leaves
                    .iter()
                    .map(|c| c.serial_hex.clone())
                    .collect::<Vec<_>>()
                    .join(", "),
                Err(e) => e.to_string(),
            };
            if started.elapsed() >= timeout {
                return Err(SidecarError::Other {
                    name: self.name.clone(),
                    message: format!(
                        "after {timeout:?} /certs still serves serial(s) [{last}], not {want}"
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The leaf Envoy serves for this sidecar's own SPIFFE ID (admin `/certs`), if any yet.
    pub async fn served_leaf(&self) -> Result<Option<ServedCert>, SidecarError> {
        let id = self.spiffe_id.to_string();
        let leaves = self
            .admin()
            .served_leaves()
            .await
            .map_err(|source| SidecarError::Envoy {
                name: self.name.clone(),
                source: Box::new(source),
            })?;
        Ok(leaves.into_iter().find(|c| c.uri_sans.contains(&id)))
    }

    /// Polls `/certs` until Envoy serves a leaf for this sidecar's own SPIFFE ID (a SPIRE-fed
    /// sidecar: until the agent's first SDS answer). Returns it and how long that took.
    pub async fn wait_for_svid(
        &self,
        timeout: Duration,
    ) -> Result<(ServedCert, Duration), SidecarError> {
        self.wait_for_leaf(timeout, "a certificate", |_| true).await
    }

    /// Polls `/certs` until the served leaf's serial is no longer `serial_hex` (a renewal pushed
    /// by the certificate source). Returns the new leaf and how long that took.
    pub async fn wait_for_serial_change(
        &self,
        serial_hex: &str,
        timeout: Duration,
    ) -> Result<(ServedCert, Duration), SidecarError> {
        let old = super::envoy::normalize_serial(serial_hex);
        self.wait_for_leaf(
            timeout,
            &format!("a serial other than {old}"),
            |c: &ServedCert| c.serial_hex != old,
        )
        .await
    }

    async fn wait_for_leaf(
        &self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&ServedCert) -> bool,
    ) -> Result<(ServedCert, Duration), SidecarError> {
        let started = Instant::now();
        loop {
            let last = match self.served_leaf().await {
                Ok(Some(leaf)) if done(&leaf) => return Ok((leaf, started.elapsed())),
                Ok(Some(leaf)) => format!("serial {}", leaf.serial_hex),
                Ok(None) => "no certificate for its SPIFFE ID".to_owned(),
                Err(e) => e.to_string(),
            };
            if started.elapsed() >= timeout {
                return Err(SidecarError::Other {
                    name: self.name.clone(),
                    message: format!(
                        "after {timeout:?} /certs shows {last} for {}, not {what}",
                        self.spiffe_id
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops Envoy and waits for it to be reaped.
    pub async fn shutdown(self) -> Result<(), SidecarError> {
        let name = self.name.clone();
        self.envoy
            .shutdown()
            .await
            .map(|_| ())
            .map_err(|source| SidecarError::Envoy {
                name,
                source: Box::new(source),
            })
    }
}

/// Writes each federated trust domain's roots to `dir/bundles/<td>.pem`.
fn write_federated_bundles(
    spec: &SidecarSpec,
    dir: &Path,
) -> Result<Vec<(TrustDomain, PathBuf)>, SidecarError> {
    let mut out = Vec::new();
    if spec.federated.is_empty() {
        return Ok(out);
    }
    let bundle_dir = dir.join("bundles");
    let err = |message: String| SidecarError::Other {
        name: spec.name.clone(),
        message,
    };
    std::fs::create_dir_all(&bundle_dir)
        .map_err(|e| err(format!("creating {}: {e}", bundle_dir.display())))?;
    for (td, pem) in &spec.federated {
        let path = bundle_dir.join(format!("{}.pem", td.as_str()));
        std::fs::write(&path, pem).map_err(|e| err(format!("writing {}: {e}", path.display())))?;
        out.push((td.clone(), path));
    }
    Ok(out)
}

/// The `CertificateValidationContext` the SDS directory serves as `ROOTCA`.
pub fn validation_context(
    spec: &SidecarSpec,
    sds: &SdsDir,
    federated: &[(TrustDomain, PathBuf)],
) -> Value {
    match spec.validation {
        PeerValidation::TrustedCa => json!({
            "trusted_ca": { "filename": sds.root_cert_path() },
            "watched_directory": { "path": sds.path() },
        }),
        PeerValidation::Spiffe => spiffe_validation(spec.spiffe_id.trust_domain(), sds, federated),
    }
}

/// Envoy's SPIFFE validator with `own`'s bundle from `sds` plus the `federated` bundles.
pub(super) fn spiffe_validation(
    own: &TrustDomain,
    sds: &SdsDir,
    federated: &[(TrustDomain, PathBuf)],
) -> Value {
    let mut domains = vec![json!({
        "name": own.as_str(),
        "trust_bundle": { "filename": sds.root_cert_path() },
    })];
    for (td, path) in federated {
        if td != own {
            domains.push(json!({
                "name": td.as_str(),
                "trust_bundle": { "filename": path },
            }));
        }
    }
    json!({
        "custom_validator_config": {
            "name": SPIFFE_VALIDATOR,
            "typed_config": {
                "@type": SPIFFE_VALIDATOR_TYPE,
                "trust_domains": domains,
            }
        }
    })
}

pub(super) fn socket_address(ip: IpAddr, port: u16) -> Value {
    json!({ "socket_address": { "address": ip.to_string(), "port_value": port } })
}

pub(super) fn common_tls_context(
    source: CertSource<'_>,
    default_validation: Option<Value>,
) -> Value {
    let (certificate, validation) = match source {
        CertSource::File(sds) => (sds.cert_secret_config(), sds.validation_secret_config()),
        CertSource::SpireAgent(agent) => (
            sds_certificate(&agent.spiffe_id),
            sds_validation_context(&agent.trust_domain),
        ),
    };
    let mut context = json!({
        "tls_params": {
            "tls_minimum_protocol_version": "TLSv1_2",
            "tls_maximum_protocol_version": "TLSv1_3",
        },
        "tls_certificate_sds_secret_configs": [certificate],
    });
    match default_validation {
        Some(default) => {
            context["combined_validation_context"] = json!({
                "default_validation_context": default,
                "validation_context_sds_secret_config": validation,
            });
        }
        None => {
            context["validation_context_sds_secret_config"] = validation;
        }
    }
    context
}

/// `value` as a filter: itself when it already has `typed_config`, else wrapped under `name`.
pub(super) fn as_filter(name: &str, value: &Value) -> Value {
    if value.get("typed_config").is_some() {
        value.clone()
    } else {
        json!({ "name": name, "typed_config": value })
    }
}

pub(super) fn router() -> Value {
    json!({ "name": "envoy.filters.http.router", "typed_config": { "@type": ROUTER_TYPE } })
}

fn route_to(cluster: &str) -> Value {
    json!({
        "name": cluster,
        "virtual_hosts": [{
            "name": cluster,
            "domains": ["*"],
            "routes": [{ "match": { "prefix": "/" }, "route": { "cluster": cluster } }],
        }]
    })
}

fn inbound_filters(spec: &SidecarSpec) -> Vec<Value> {
    let mut http_filters: Vec<Value> = spec
        .http_rbac
        .iter()
        .map(|v| as_filter(HTTP_RBAC, v))
        .collect();
    http_filters.push(router());
    let mut filters: Vec<Value> = spec
        .network_rbac
        .iter()
        .map(|v| as_filter(NETWORK_RBAC, v))
        .collect();
    filters.push(json!({
        "name": HCM,
        "typed_config": {
            "@type": HCM_TYPE,
            "stat_prefix": INBOUND,
            "codec_type": "AUTO",
            // Replace whatever XFCC a caller sent with what this sidecar verified.
            "forward_client_cert_details": "SANITIZE_SET",
            "set_current_client_cert_details": { "uri": true },
            "route_config": route_to(APP_CLUSTER),
            "http_filters": http_filters,
        }
    }));
    filters
}

/// The Envoy bootstrap for `spec`, reading its secrets from `sds`.
pub fn bootstrap(spec: &SidecarSpec, sds: &SdsDir) -> Value {
    bootstrap_with(spec, CertSource::File(sds))
}

/// The Envoy bootstrap for `spec`, with its secrets from `source` (see the module docs).
pub fn bootstrap_with(spec: &SidecarSpec, source: CertSource<'_>) -> Value {
    let downstream_tls = json!({
        "name": TLS_SOCKET,
        "typed_config": {
            "@type": DOWNSTREAM_TLS,
            "require_client_certificate": true,
            "common_tls_context": common_tls_context(source, None),
        }
    });
    let mut tls_chain = json!({
        "name": "inbound-mtls",
        "filters": inbound_filters(spec),
        "transport_socket": downstream_tls,
    });
    let mut inbound = json!({
        "name": INBOUND,
        "address": socket_address(spec.ip, spec.inbound_port),
    });
    match spec.mtls {
        MtlsMode::Strict => inbound["filter_chains"] = json!([tls_chain]),
        MtlsMode::Permissive => {
            tls_chain["filter_chain_match"] = json!({ "transport_protocol": "tls" });
            let plaintext = json!({
                "name": "inbound-plaintext",
                "filter_chain_match": { "transport_protocol": "raw_buffer" },
                "filters": inbound_filters(spec),
            });
            inbound["listener_filters"] = json!([{
                "name": "envoy.filters.listener.tls_inspector",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
                }
            }]);
            inbound["filter_chains"] = json!([tls_chain, plaintext]);
        }
    }

    let mut listeners = vec![inbound];
    let mut clusters = vec![json!({
        "name": APP_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "2s",
        "load_assignment": endpoint(APP_CLUSTER, spec.app),
    })];
    for upstream in &spec.upstreams {
        let name = outbound_name(&upstream.name);
        listeners.push(json!({
            "name": name,
            "address": socket_address(spec.ip, upstream.listen_port),
            "filter_chains": [{
                "filters": [{
                    "name": HCM,
                    "typed_config": {
                        "@type": HCM_TYPE,
                        "stat_prefix": format!("outbound_{}", upstream.name),
                        "codec_type": "AUTO",
                        "route_config": route_to(&name),
                        "http_filters": [router()],
                    }
                }]
            }]
        }));
        let exact_id = json!({
            "match_typed_subject_alt_names": [{
                "san_type": "URI",
                "matcher": { "exact": upstream.spiffe_id.to_string() },
            }]
        });
        let mut upstream_tls = json!({
            "@type": UPSTREAM_TLS,
            "common_tls_context": common_tls_context(source, Some(exact_id)),
        });
        if let Some(sni) = &upstream.sni {
            upstream_tls["sni"] = json!(sni);
        }
        clusters.push(json!({
            "name": name,
            "type": "STATIC",
            "connect_timeout": "2s",
            "load_assignment": endpoint(&name, upstream.address),
            // Leave from the workload's own address, as a pod would.
            "upstream_bind_config": { "source_address": { "address": spec.ip.to_string(), "port_value": 0 } },
            "transport_socket": { "name": TLS_SOCKET, "typed_config": upstream_tls },
        }));
    }

    let mut node = json!({ "id": spec.name, "cluster": spec.name });
    if let CertSource::SpireAgent(agent) = source {
        clusters.insert(0, sds_cluster(&agent.socket));
        // SPIRE's own switch between its SPIFFE validator and a plain `trusted_ca`; explicit
        // either way, so the agent's configured default does not decide.
        node["metadata"] = json!({
            "disable_spiffe_cert_validation": spec.validation == PeerValidation::TrustedCa,
        });
    }
    json!({
        "node": node,
        "admin": { "address": socket_address(IpAddr::V4(Ipv4Addr::LOCALHOST), 0) },
        "static_resources": { "listeners": listeners, "clusters": clusters },
        "overload_manager": overload_manager(),
    })
}

/// A bound on downstream connections: Envoy warns at start-up without one, and a quiet log keeps
/// the tail quoted in start-up errors to the point.
pub(super) fn overload_manager() -> Value {
    json!({
        "resource_monitors": [{
            "name": "envoy.resource_monitors.global_downstream_max_connections",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                "max_active_downstream_connections": MAX_DOWNSTREAM_CONNECTIONS,
            }
        }]
    })
}

pub(super) fn endpoint(cluster: &str, addr: SocketAddr) -> Value {
    json!({
        "cluster_name": cluster,
        "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": socket_address(addr.ip(), addr.port()) } }] }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(mtls: MtlsMode) -> SidecarSpec {
        let mut spec = SidecarSpec::new(
            "b",
            SpiffeId::parse("spiffe://td/ns/b/sa/b").unwrap(),
            "127.0.1.3".parse().unwrap(),
            "127.0.1.3:8080".parse().unwrap(),
        );
        spec.mtls = mtls;
        spec.http_rbac = vec![json!({"@type": "x.RBAC", "rules": {}})];
        spec.upstreams = vec![Upstream {
            name: "c".into(),
            address: "127.0.1.4:9000".parse().unwrap(),
            spiffe_id: SpiffeId::parse("spiffe://td/ns/c/sa/c").unwrap(),
            sni: None,
            listen_port: 0,
        }];
        spec
    }

    fn scratch() -> SdsDir {
        let dir = std::env::temp_dir().join(format!(
            "meshproof-sidecar-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        SdsDir::create(dir).unwrap()
    }

    #[test]
    fn strict_inbound_requires_client_certs_and_has_one_chain() {
        let sds = scratch();
        let b = bootstrap(&spec(MtlsMode::Strict), &sds);
        let inbound = &b["static_resources"]["listeners"][0];
        assert_eq!(inbound["name"], INBOUND);
        let chains = inbound["filter_chains"].as_array().unwrap();
        assert_eq!(chains.len(), 1);
        let tls = &chains[0]["transport_socket"]["typed_config"];
        assert_eq!(tls["require_client_certificate"], true);
        let filters = chains[0]["filters"].as_array().unwrap();
        let hcm = &filters.last().unwrap()["typed_config"];
        assert_eq!(hcm["forward_client_cert_details"], "SANITIZE_SET");
        let http = hcm["http_filters"].as_array().unwrap();
        assert_eq!(http[0]["name"], HTTP_RBAC);
        assert_eq!(http[0]["typed_config"]["@type"], "x.RBAC");
        assert_eq!(http.last().unwrap()["name"], "envoy.filters.http.router");
        let _ = std::fs::remove_dir_all(sds.path());
    }

    #[test]
    fn permissive_adds_a_plaintext_chain_behind_a_tls_inspector() {
        let sds = scratch();
        let b = bootstrap(&spec(MtlsMode::Permissive), &sds);
        let inbound = &b["static_resources"]["listeners"][0];
        let chains = inbound["filter_chains"].as_array().unwrap();
        assert_eq!(chains.len(), 2);
        assert_eq!(
            chains[1]["filter_chain_match"]["transport_protocol"],
            "raw_buffer"
        );
        assert!(chains[1].get("transport_socket").is_none());
        assert_eq!(
            inbound["listener_filters"][0]["name"],
            "envoy.filters.listener.tls_inspector"
        );
        let _ = std::fs::remove_dir_all(sds.path());
    }

    #[test]
    fn outbound_cluster_pins_the_callee_identity() {
        let sds = scratch();
        let b = bootstrap(&spec(MtlsMode::Strict), &sds);
        let cluster = &b["static_resources"]["clusters"][1];
        assert_eq!(cluster["name"], "outbound|c");
        let ctx = &cluster["transport_socket"]["typed_config"]["common_tls_context"];
        let san = &ctx["combined_validation_context"]["default_validation_context"]["match_typed_subject_alt_names"]
            [0];
        assert_eq!(san["san_type"], "URI");
        assert_eq!(san["matcher"]["exact"], "spiffe://td/ns/c/sa/c");
        let _ = std::fs::remove_dir_all(sds.path());
    }

    #[test]
    fn spiffe_validation_lists_own_and_federated_domains() {
        let sds = scratch();
        let fed = vec![(
            TrustDomain::parse("other").unwrap(),
            PathBuf::from("/b/other.pem"),
        )];
        let v = validation_context(&spec(MtlsMode::Strict), &sds, &fed);
        let domains = &v["custom_validator_config"]["typed_config"]["trust_domains"];
        assert_eq!(domains[0]["name"], "td");
        assert_eq!(domains[1]["name"], "other");
        let _ = std::fs::remove_dir_all(sds.path());
    }

    fn agent() -> SpireAgentSds {
        SpireAgentSds {
            socket: PathBuf::from("/lab/public/agent-0/api.sock"),
            spiffe_id: SpiffeId::parse("spiffe://td/ns/b/sa/b").unwrap(),
            trust_domain: TrustDomain::parse("td").unwrap(),
        }
    }

    #[test]
    fn spire_source_takes_certificate_and_bundle_from_the_agent() {
        let agent = agent();
        let b = bootstrap_with(&spec(MtlsMode::Strict), CertSource::SpireAgent(&agent));
        let clusters = b["static_resources"]["clusters"].as_array().unwrap();
        assert_eq!(clusters[0]["name"], "spire_agent");
        assert_eq!(
            clusters[0]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
                ["pipe"]["path"],
            "/lab/public/agent-0/api.sock"
        );
        let inbound = &b["static_resources"]["listeners"][0]["filter_chains"][0]["transport_socket"]
            ["typed_config"];
        assert_eq!(inbound["require_client_certificate"], true);
        let ctx = &inbound["common_tls_context"];
        let cert = &ctx["tls_certificate_sds_secret_configs"][0];
        assert_eq!(cert["name"], "spiffe://td/ns/b/sa/b");
        assert_eq!(
            cert["sds_config"]["api_config_source"]["grpc_services"][0]["envoy_grpc"]["cluster_name"],
            "spire_agent"
        );
        assert_eq!(
            ctx["validation_context_sds_secret_config"]["name"],
            "spiffe://td"
        );
        // Outbound: the agent's validation context plus the callee's exact ID.
        let out = &clusters.iter().find(|c| c["name"] == "outbound|c").unwrap()["transport_socket"]
            ["typed_config"]["common_tls_context"];
        let combined = &out["combined_validation_context"];
        assert_eq!(
            combined["validation_context_sds_secret_config"]["name"],
            "spiffe://td"
        );
        assert_eq!(
            combined["default_validation_context"]["match_typed_subject_alt_names"][0]["matcher"]["exact"],
            "spiffe://td/ns/c/sa/c"
        );
        assert_eq!(
            b["node"]["metadata"]["disable_spiffe_cert_validation"],
            false
        );
        // Nothing on disk: no file is named anywhere.
        let text = b.to_string();
        assert!(
            !text.contains("filename") && !text.contains(".pem"),
            "{text}"
        );
    }

    #[test]
    fn trusted_ca_validation_asks_the_agent_for_a_plain_bundle() {
        let agent = agent();
        let mut spec = spec(MtlsMode::Strict);
        spec.validation = PeerValidation::TrustedCa;
        let b = bootstrap_with(&spec, CertSource::SpireAgent(&agent));
        assert_eq!(
            b["node"]["metadata"]["disable_spiffe_cert_validation"],
            true
        );
        // The file source is unchanged by the refactor: no agent cluster, no metadata.
        let sds = scratch();
        let f = bootstrap(&spec, &sds);
        assert!(f["node"].get("metadata").is_none());
        assert_eq!(f["static_resources"]["clusters"][0]["name"], APP_CLUSTER);
        let _ = std::fs::remove_dir_all(sds.path());
    }

    #[test]
    fn credentials_debug_redacts_the_key() {
        let c = Credentials::new("chain", "-----BEGIN PRIVATE KEY-----SECRET".into(), "root");
        assert!(!format!("{c:?}").contains("SECRET"));
    }
}

//! Probe rates through Envoy mTLS, beside their ceilings, measured in one run on one machine:
//!
//! * **raw rustls** — the same mutual-TLS handshake (P-256 SVIDs from the lab CA, the probe's
//!   SPIFFE-aware verifier on the client, a client-certificate-requiring server) against an
//!   in-process rustls + hyper server on its own thread: the ceiling of a new-connection probe.
//! * **Envoy direct** — an Envoy built from the lab's own sidecar bootstrap whose route answers
//!   itself (`direct_response`): what Envoy's TLS and HTTP cost without an app behind it.
//! * **Envoy → echo** — a lab sidecar with its echo app: what one intent probe straight to an
//!   inbound listener costs (the lab's negative probes go this way).
//! * **intent path** — app → caller's sidecar (plaintext) → mTLS → callee's sidecar → echo: how
//!   [`crate::target::lab::mesh::LabMesh::call`] sends every probe of the intent matrix.
//!
//! Each path is measured with a **new connection per probe** ([`crate::probe::Probe`], exactly
//! as the lab sends it: full handshake, no resumption, `Connection: close`) and with
//! **keep-alive** (one connection per worker, many requests), sequentially and with `N`
//! concurrent workers. Repetitions interleave the rows, so drift on the machine spreads evenly.
//! The harness's client runs on the caller's runtime; each Envoy runs with `--concurrency 1`,
//! as the lab runs them, and the raw server gets its own thread so the comparison is fair.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::stats::{Stat, ratio};
use crate::pki::{CaSpec, Pki, Svid};
use crate::probe::{PreparedProbe, Probe, ProbeIdentity, ServerTrust, SpiffeServerVerifier};
use crate::spiffe::{SpiffeId, TrustBundle, TrustDomain};
use crate::target::lab::echo::EchoServer;
use crate::target::lab::envoy::{EnvoyBinary, EnvoyLaunch, EnvoyProcess};
use crate::target::lab::sds::SdsDir;
use crate::target::lab::sidecar::{
    self, Credentials, INBOUND, Sidecar, SidecarSpec, Upstream, validation_context,
};

const TRUST_DOMAIN: &str = "bench.local";

/// How much to measure.
#[derive(Clone, Debug, Serialize)]
pub struct ProbeOptions {
    /// New-connection probes per sample.
    pub probes: usize,
    /// Keep-alive requests per sample.
    pub keepalive_requests: usize,
    /// Concurrent workers for the concurrent rows (1 measures sequential only).
    pub concurrency: usize,
    pub repetitions: usize,
}

/// Where a probe goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbePath {
    RawRustls,
    EnvoyDirect,
    EnvoyEcho,
    IntentPath,
}

impl ProbePath {
    pub fn label(self) -> &'static str {
        match self {
            ProbePath::RawRustls => "raw rustls (in-process server)",
            ProbePath::EnvoyDirect => "Envoy direct response",
            ProbePath::EnvoyEcho => "Envoy → echo app",
            ProbePath::IntentPath => "intent path: app → sidecar → mTLS → sidecar → echo",
        }
    }

    pub fn short(self) -> &'static str {
        match self {
            ProbePath::RawRustls => "raw rustls",
            ProbePath::EnvoyDirect => "Envoy direct",
            ProbePath::EnvoyEcho => "Envoy→echo",
            ProbePath::IntentPath => "intent path",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeMode {
    /// A new connection (and, with TLS, a full handshake) per probe.
    NewConnection,
    /// One connection per worker, many requests.
    KeepAlive,
}

impl ProbeMode {
    pub fn label(self) -> &'static str {
        match self {
            ProbeMode::NewConnection => "new connection",
            ProbeMode::KeepAlive => "keep-alive",
        }
    }
}

/// One measured row: probes per second.
#[derive(Clone, Debug, Serialize)]
pub struct ProbeRow {
    pub path: ProbePath,
    pub mode: ProbeMode,
    pub concurrency: usize,
    /// Successful probes (HTTP 200) per second.
    pub rate: Stat,
    /// Probes sent over all samples, and how many did not get a 200.
    pub sent: usize,
    pub failed: usize,
    /// CPU per successful probe, in microseconds, of the server side (the Envoys on the path, or
    /// the raw server's thread) and of this process (the client, and the echo app where the
    /// path has one), over all samples. USER_HZ accounting: ±10 ms per sample.
    pub server_cpu_us: Option<f64>,
    pub client_cpu_us: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProbeBench {
    pub options: ProbeOptions,
    pub envoy_version: String,
    /// Start-to-`/ready` of each Envoy this section started, in seconds.
    pub envoy_ready: Stat,
    pub rows: Vec<ProbeRow>,
}

impl ProbeBench {
    pub fn row(&self, path: ProbePath, mode: ProbeMode, concurrency: usize) -> Option<&ProbeRow> {
        self.rows
            .iter()
            .find(|r| r.path == path && r.mode == mode && r.concurrency == concurrency)
    }

    /// Median rate of `path` over median rate of `base`, same mode and concurrency.
    pub fn ratio(
        &self,
        path: ProbePath,
        base: ProbePath,
        mode: ProbeMode,
        concurrency: usize,
    ) -> Option<f64> {
        ratio(
            self.row(path, mode, concurrency)?.rate.median,
            self.row(base, mode, concurrency)?.rate.median,
        )
    }
}

/// A scratch directory removed on drop (it holds private keys).
pub(crate) struct Scratch(pub PathBuf);

impl Scratch {
    pub(crate) fn new(what: &str) -> Result<Scratch, String> {
        use std::os::unix::fs::DirBuilderExt;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "meshproof-bench-{what}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Scratch(dir))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn id(name: &str) -> Result<SpiffeId, String> {
    SpiffeId::parse(&format!("spiffe://{TRUST_DOMAIN}/ns/bench/sa/{name}"))
        .map_err(|e| format!("spiffe id for {name}: {e}"))
}

struct Ca {
    pki: Pki,
    bundle: TrustBundle,
}

impl Ca {
    fn new() -> Result<Ca, String> {
        let now = OffsetDateTime::now_utc();
        let pki = Pki::generate(&CaSpec::runbook(TRUST_DOMAIN, "meshproof bench"), now)
            .map_err(|e| format!("bench CA: {e}"))?;
        let td = TrustDomain::parse(TRUST_DOMAIN).map_err(|e| e.to_string())?;
        let bundle = TrustBundle::from_der(td, [pki.root().der().to_vec()])
            .map_err(|e| format!("bench bundle: {e}"))?;
        Ok(Ca { pki, bundle })
    }

    fn svid(&self, name: &str) -> Result<Svid, String> {
        self.pki
            .issue_svid(
                &id(name)?.to_string(),
                Duration::from_secs(3600),
                OffsetDateTime::now_utc(),
            )
            .map_err(|e| format!("SVID for {name}: {e}"))
    }

    fn trust(&self, server: &str) -> Result<ServerTrust, String> {
        Ok(ServerTrust::new(self.bundle.clone(), Some(id(server)?)))
    }
}

/// The in-process rustls + hyper server, on its own thread and runtime.
struct RawServer {
    addr: SocketAddr,
    /// The server thread's `/proc/…/task/<tid>/stat`, for its CPU time.
    thread_stat: Option<String>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RawServer {
    fn start(ca: &Ca, server: &Svid) -> Result<RawServer, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let roots = Arc::new(crate::probe::root_store(&ca.bundle));
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| format!("raw server verifier: {e}"))?;
        let chain: Vec<CertificateDer<'static>> = server
            .chain_der()
            .into_iter()
            .map(|d| CertificateDer::from(d.to_vec()))
            .collect();
        let key = PrivateKeyDer::from_pem_slice(server.key().secret_pem().as_bytes())
            .map_err(|_| "raw server: unusable private key".to_owned())?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("raw server: {e}"))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| format!("raw server: {e}"))?;
        // As the probe disables resumption, the server issues no tickets: every handshake is full.
        config.send_tls13_tickets = 0;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| format!("raw server bind: {e}"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("raw server: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("raw server: {e}"))?;
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let (stat_tx, stat_rx) = std::sync::mpsc::channel::<Option<String>>();
        let thread = std::thread::Builder::new()
            .name("bench-raw-rustls".into())
            .spawn(move || {
                let _ = stat_tx.send(super::procfs::own_thread_stat());
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    loop {
                        tokio::select! {
                            _ = &mut stopped => break,
                            accepted = listener.accept() => {
                                let Ok((tcp, _)) = accepted else { continue };
                                let _ = tcp.set_nodelay(true);
                                let acceptor = acceptor.clone();
                                tokio::spawn(async move {
                                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                                    let service = hyper::service::service_fn(|_req| async {
                                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                            http_body_util::Full::new(Bytes::from_static(b"{}")),
                                        ))
                                    });
                                    let _ = hyper::server::conn::http1::Builder::new()
                                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                                        .await;
                                });
                            }
                        }
                    }
                });
            })
            .map_err(|e| format!("raw server thread: {e}"))?;
        let thread_stat = stat_rx.recv_timeout(Duration::from_secs(5)).ok().flatten();
        Ok(RawServer {
            addr,
            thread_stat,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Turns every inbound route of a sidecar bootstrap into a `direct_response` (200, `{}`).
/// Returns how many routes were replaced.
pub fn make_direct_response(bootstrap: &mut Value) -> usize {
    let mut replaced = 0;
    let Some(listeners) = bootstrap
        .pointer_mut("/static_resources/listeners")
        .and_then(Value::as_array_mut)
    else {
        return 0;
    };
    for listener in listeners.iter_mut().filter(|l| l["name"] == INBOUND) {
        let Some(chains) = listener
            .get_mut("filter_chains")
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for chain in chains {
            let Some(filters) = chain.get_mut("filters").and_then(Value::as_array_mut) else {
                continue;
            };
            for filter in filters {
                let Some(hosts) = filter
                    .pointer_mut("/typed_config/route_config/virtual_hosts")
                    .and_then(Value::as_array_mut)
                else {
                    continue;
                };
                for host in hosts {
                    if let Some(routes) = host.get_mut("routes").and_then(Value::as_array_mut) {
                        for route in routes {
                            *route = json!({
                                "match": { "prefix": "/" },
                                "direct_response": { "status": 200, "body": { "inline_string": "{}" } }
                            });
                            replaced += 1;
                        }
                    }
                }
            }
        }
    }
    replaced
}

/// An Envoy with the lab sidecar's inbound listener (same TLS, same SPIFFE validation) whose
/// route answers directly.
async fn start_direct(
    bin: &EnvoyBinary,
    svid: &Svid,
    dir: &Path,
) -> Result<(EnvoyProcess, SocketAddr), String> {
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    // The app address is never used: every route answers directly.
    let spec = SidecarSpec::new(
        "direct",
        id("direct")?,
        loopback,
        SocketAddr::new(loopback, 9),
    );
    let credentials = Credentials::from_svid(svid);
    let sds = SdsDir::create(dir.join("sds")).map_err(|e| e.to_string())?;
    sds.write(
        &credentials.chain_pem,
        credentials.secret_key_pem(),
        &credentials.bundle_pem,
    )
    .map_err(|e| e.to_string())?;
    sds.set_validation_context(&validation_context(&spec, &sds, &[]))
        .map_err(|e| e.to_string())?;
    let mut config = sidecar::bootstrap(&spec, &sds);
    if make_direct_response(&mut config) == 0 {
        return Err("the sidecar bootstrap has no inbound route to turn into a direct response (its layout changed)".into());
    }
    let envoy = EnvoyProcess::start(bin, EnvoyLaunch::new("direct", config, dir))
        .await
        .map_err(|e| e.to_string())?;
    let listeners = envoy.admin().listeners().await.map_err(|e| e.to_string())?;
    let addr = listeners
        .iter()
        .find(|l| l.name == INBOUND)
        .map(|l| l.addr)
        .ok_or_else(|| "direct-response Envoy reports no inbound listener".to_owned())?;
    Ok((envoy, addr))
}

/// How one worker sends.
#[derive(Clone)]
enum Driver {
    /// The lab's own probe, a new connection each time.
    NewConnection(PreparedProbe),
    /// One connection, many requests.
    KeepAlive {
        addr: SocketAddr,
        tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
        host: String,
        path: String,
    },
}

/// `(ok, failed)` after `n` probes.
async fn drive(driver: Driver, n: usize) -> (usize, usize) {
    match driver {
        Driver::NewConnection(probe) => {
            let mut ok = 0;
            for _ in 0..n {
                let obs = probe.send().await;
                if matches!(obs.outcome, crate::probe::Outcome::Http { status: 200, .. }) {
                    ok += 1;
                }
            }
            (ok, n - ok)
        }
        Driver::KeepAlive {
            addr,
            tls,
            host,
            path,
        } => match keepalive(addr, tls, &host, &path, n).await {
            Ok(ok) => (ok, n - ok),
            Err(_) => (0, n),
        },
    }
}

async fn keepalive(
    addr: SocketAddr,
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    host: &str,
    path: &str,
    n: usize,
) -> Result<usize, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    match tls {
        Some((config, name)) => {
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| e.to_string())?;
            requests(hyper_util::rt::TokioIo::new(stream), host, path, n).await
        }
        None => requests(hyper_util::rt::TokioIo::new(tcp), host, path, n).await,
    }
}

async fn requests<I>(io: I, host: &str, path: &str, n: usize) -> Result<usize, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(connection);
    let mut ok = 0;
    for _ in 0..n {
        let request = hyper::Request::get(path)
            .header(hyper::header::HOST, host)
            .header(hyper::header::USER_AGENT, "meshproof-bench")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        // HTTP/1 takes one request at a time: after a response the connection task must first
        // mark itself idle again, or the next send fails at once with "not ready".
        if sender.ready().await.is_err() {
            break;
        }
        let response = match sender.send_request(request).await {
            Ok(r) => r,
            Err(_) => break,
        };
        let status = response.status();
        if response.into_body().collect().await.is_err() {
            break;
        }
        if status == hyper::StatusCode::OK {
            ok += 1;
        }
    }
    drop(sender);
    driver.abort();
    Ok(ok)
}

/// One sample: `total` probes over `concurrency` workers; returns (ok, failed, seconds).
async fn sample(driver: &Driver, total: usize, concurrency: usize) -> (usize, usize, f64) {
    let concurrency = concurrency.max(1);
    let per = total.div_ceil(concurrency).max(1);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        tasks.push(tokio::spawn(drive(driver.clone(), per)));
    }
    let (mut ok, mut failed) = (0, 0);
    for task in tasks {
        match task.await {
            Ok((o, f)) => {
                ok += o;
                failed += f;
            }
            Err(_) => failed += per,
        }
    }
    (ok, failed, started.elapsed().as_secs_f64())
}

fn client_tls(
    ca: &Ca,
    client: &Svid,
    server: &str,
    target: SocketAddr,
) -> Result<(Arc<rustls::ClientConfig>, ServerName<'static>), String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier =
        SpiffeServerVerifier::new(ca.bundle.clone(), Some(id(server)?), None, provider.clone());
    let chain: Vec<CertificateDer<'static>> = client
        .chain_der()
        .into_iter()
        .map(|d| CertificateDer::from(d.to_vec()))
        .collect();
    let key = PrivateKeyDer::from_pem_slice(client.key().secret_pem().as_bytes())
        .map_err(|_| "client: unusable private key".to_owned())?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(chain, key)
        .map_err(|e| e.to_string())?;
    config.resumption = rustls::client::Resumption::disabled();
    Ok((Arc::new(config), ServerName::IpAddress(target.ip().into())))
}

struct Target {
    path: ProbePath,
    new_connection: Driver,
    keepalive: Driver,
    /// `stat` files of the server-side processes or threads.
    server_stats: Vec<String>,
}

fn cpu_sum(paths: &[String]) -> Option<f64> {
    if paths.is_empty() {
        return None;
    }
    paths.iter().map(|p| super::procfs::cpu_of(p)).sum()
}

/// The servers every probe path needs, started and checked: the raw rustls server, the
/// direct-response Envoy, the echo app behind its sidecar, and a caller sidecar in front.
pub struct ProbeLab {
    targets: Vec<Target>,
    raw_stat: Vec<String>,
    envoy_version: String,
    envoy_ready: Stat,
    a: Sidecar,
    b: Sidecar,
    direct: EnvoyProcess,
    echo: EchoServer,
    raw: RawServer,
    scratch: Scratch,
}

impl ProbeLab {
    /// Starts everything and sends 20 warm-up probes on every path and mode; any failure is an
    /// error (a rate of failures is no rate).
    pub async fn start() -> Result<ProbeLab, String> {
        let bin = EnvoyBinary::locate().map_err(|e| e.to_string())?;
        let scratch = Scratch::new("probes")?;
        let ca = Ca::new()?;
        let client = ca.svid("client")?;
        let client_identity = ProbeIdentity::from_svid(&client);
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);

        let raw = RawServer::start(&ca, &ca.svid("raw")?)?;
        let (direct, direct_addr) =
            start_direct(&bin, &ca.svid("direct")?, &scratch.path().join("direct")).await?;

        let echo = EchoServer::start("echo", SocketAddr::new(loopback, 0))
            .await
            .map_err(|e| format!("echo app: {e}"))?;
        let b_svid = ca.svid("echo")?;
        let b_spec = SidecarSpec::new("echo", id("echo")?, loopback, echo.addr());
        let b = Sidecar::start(
            &bin,
            &b_spec,
            &Credentials::from_svid(&b_svid),
            &scratch.path().join("echo"),
        )
        .await
        .map_err(|e| e.to_string())?;
        let a_svid = ca.svid("caller")?;
        let mut a_spec = SidecarSpec::new(
            "caller",
            id("caller")?,
            loopback,
            SocketAddr::new(loopback, 9),
        );
        a_spec.upstreams = vec![Upstream {
            name: "echo".into(),
            address: b.inbound_addr(),
            spiffe_id: id("echo")?,
            sni: None,
            listen_port: 0,
        }];
        let a = Sidecar::start(
            &bin,
            &a_spec,
            &Credentials::from_svid(&a_svid),
            &scratch.path().join("caller"),
        )
        .await
        .map_err(|e| e.to_string())?;
        let outbound = a
            .outbound_addr("echo")
            .ok_or_else(|| "the caller sidecar has no outbound listener to echo".to_owned())?;
        let envoy_ready = Stat::of_durations(&[
            direct.ready_in(),
            b.envoy().ready_in(),
            a.envoy().ready_in(),
        ]);

        let mtls_probe = |addr: SocketAddr, server: &str| -> Result<PreparedProbe, String> {
            Probe::new(addr, client_identity.clone(), Some(ca.trust(server)?))
                .path("/bench")
                .prepare()
                .map_err(|e| e.to_string())
        };
        let keepalive_tls = |addr: SocketAddr, server: &str| -> Result<Driver, String> {
            Ok(Driver::KeepAlive {
                addr,
                tls: Some(client_tls(&ca, &client, server, addr)?),
                host: server.to_owned(),
                path: "/bench".into(),
            })
        };
        let envoy_stat = |pid: u32| format!("/proc/{pid}/stat");
        let raw_stat: Vec<String> = raw.thread_stat.iter().cloned().collect();
        let targets = vec![
            Target {
                server_stats: raw_stat.clone(),
                path: ProbePath::RawRustls,
                new_connection: Driver::NewConnection(mtls_probe(raw.addr, "raw")?),
                keepalive: keepalive_tls(raw.addr, "raw")?,
            },
            Target {
                server_stats: vec![envoy_stat(direct.pid())],
                path: ProbePath::EnvoyDirect,
                new_connection: Driver::NewConnection(mtls_probe(direct_addr, "direct")?),
                keepalive: keepalive_tls(direct_addr, "direct")?,
            },
            Target {
                server_stats: vec![envoy_stat(b.envoy().pid())],
                path: ProbePath::EnvoyEcho,
                new_connection: Driver::NewConnection(mtls_probe(b.inbound_addr(), "echo")?),
                keepalive: keepalive_tls(b.inbound_addr(), "echo")?,
            },
            Target {
                server_stats: vec![envoy_stat(a.envoy().pid()), envoy_stat(b.envoy().pid())],
                path: ProbePath::IntentPath,
                new_connection: Driver::NewConnection(
                    Probe::via_sidecar(outbound, "echo")
                        .path("/bench")
                        .prepare()
                        .map_err(|e| e.to_string())?,
                ),
                keepalive: Driver::KeepAlive {
                    addr: outbound,
                    tls: None,
                    host: "echo".into(),
                    path: "/bench".into(),
                },
            },
        ];

        // Every path must work before anything is timed.
        for t in &targets {
            for (mode, driver) in [
                (ProbeMode::NewConnection, &t.new_connection),
                (ProbeMode::KeepAlive, &t.keepalive),
            ] {
                let (ok, failed) = drive(driver.clone(), 20).await;
                if failed > 0 {
                    return Err(format!(
                        "{} ({}): {failed} of {} warm-up probes failed ({ok} ok)",
                        t.path.label(),
                        mode.label(),
                        ok + failed
                    ));
                }
            }
        }

        Ok(ProbeLab {
            targets,
            raw_stat,
            envoy_version: bin.version().to_owned(),
            envoy_ready,
            a,
            b,
            direct,
            echo,
            raw,
            scratch,
        })
    }

    /// Envoy's version and each Envoy's start-to-ready time, in seconds.
    pub fn envoys(&self) -> (&str, &Stat) {
        (&self.envoy_version, &self.envoy_ready)
    }

    /// `total` probes on `path` over `concurrency` workers: (ok, failed, seconds).
    pub async fn run(
        &self,
        path: ProbePath,
        mode: ProbeMode,
        total: usize,
        concurrency: usize,
    ) -> Result<(usize, usize, f64), String> {
        let t = self
            .targets
            .iter()
            .find(|t| t.path == path)
            .ok_or_else(|| format!("no target {path:?}"))?;
        let driver = match mode {
            ProbeMode::NewConnection => &t.new_connection,
            ProbeMode::KeepAlive => &t.keepalive,
        };
        Ok(sample(driver, total, concurrency).await)
    }

    /// Stops every Envoy and server and removes the scratch folder.
    pub async fn shutdown(self) {
        let _ = self.a.shutdown().await;
        let _ = self.b.shutdown().await;
        let _ = self.direct.shutdown().await;
        drop(self.echo);
        drop(self.raw);
        drop(self.scratch);
    }
}

/// Starts the servers, measures every row, stops everything.
pub async fn measure(options: &ProbeOptions) -> Result<ProbeBench, String> {
    let lab = ProbeLab::start().await?;
    let targets = &lab.targets;
    let raw_stat = &lab.raw_stat;
    let mut concurrencies = vec![1];
    if options.concurrency > 1 {
        concurrencies.push(options.concurrency);
    }
    struct Acc {
        path: ProbePath,
        mode: ProbeMode,
        concurrency: usize,
        rates: Vec<f64>,
        sent: usize,
        failed: usize,
        ok: usize,
        server_cpu: Option<f64>,
        client_cpu: Option<f64>,
    }
    let mut accs: Vec<Acc> = Vec::new();
    for mode in [ProbeMode::NewConnection, ProbeMode::KeepAlive] {
        for &concurrency in &concurrencies {
            for t in targets {
                accs.push(Acc {
                    path: t.path,
                    mode,
                    concurrency,
                    rates: Vec::new(),
                    sent: 0,
                    failed: 0,
                    ok: 0,
                    server_cpu: Some(0.0),
                    client_cpu: Some(0.0),
                });
            }
        }
    }
    for _ in 0..options.repetitions.max(1) {
        for acc in &mut accs {
            let Some(t) = targets.iter().find(|t| t.path == acc.path) else {
                continue;
            };
            let (driver, total) = match acc.mode {
                ProbeMode::NewConnection => (&t.new_connection, options.probes.max(1)),
                ProbeMode::KeepAlive => (&t.keepalive, options.keepalive_requests.max(1)),
            };
            let own = || super::procfs::cpu_of("/proc/self/stat");
            let (server_before, own_before, raw_before) =
                (cpu_sum(&t.server_stats), own(), cpu_sum(raw_stat));
            let (ok, failed, secs) = sample(driver, total, acc.concurrency).await;
            let (server_after, own_after, raw_after) =
                (cpu_sum(&t.server_stats), own(), cpu_sum(raw_stat));
            acc.rates
                .push(if secs > 0.0 { ok as f64 / secs } else { 0.0 });
            acc.sent += ok + failed;
            acc.failed += failed;
            acc.ok += ok;
            acc.server_cpu = match (acc.server_cpu, server_before, server_after) {
                (Some(sum), Some(a), Some(b)) => Some(sum + (b - a)),
                _ => None,
            };
            // This process minus the raw server's thread: the client (and the echo app).
            acc.client_cpu = match (acc.client_cpu, own_before, own_after) {
                (Some(sum), Some(a), Some(b)) => {
                    let raw = match (raw_before, raw_after) {
                        (Some(x), Some(y)) => y - x,
                        _ => 0.0,
                    };
                    Some(sum + (b - a) - raw)
                }
                _ => None,
            };
        }
    }
    let rows = accs
        .into_iter()
        .map(|a| ProbeRow {
            path: a.path,
            mode: a.mode,
            concurrency: a.concurrency,
            rate: Stat::of(a.rates),
            sent: a.sent,
            failed: a.failed,
            server_cpu_us: a
                .server_cpu
                .filter(|_| a.ok > 0)
                .map(|c| c * 1e6 / a.ok as f64),
            client_cpu_us: a
                .client_cpu
                .filter(|_| a.ok > 0)
                .map(|c| c * 1e6 / a.ok as f64),
        })
        .collect();

    let (envoy_version, envoy_ready) = (lab.envoy_version.clone(), lab.envoy_ready.clone());
    lab.shutdown().await;
    Ok(ProbeBench {
        options: options.clone(),
        envoy_version,
        envoy_ready,
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sidecar_bootstrap_becomes_a_direct_response() {
        let dir = std::env::temp_dir().join(format!("meshproof-bench-dr-{}", std::process::id()));
        let sds = SdsDir::create(&dir).unwrap();
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let spec = SidecarSpec::new(
            "d",
            id("d").unwrap(),
            loopback,
            SocketAddr::new(loopback, 9),
        );
        let mut b = sidecar::bootstrap(&spec, &sds);
        assert_eq!(make_direct_response(&mut b), 1);
        let text = b.to_string();
        assert!(text.contains("direct_response"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

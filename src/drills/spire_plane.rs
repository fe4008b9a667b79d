//! SPIRE-fed sidecars for the SPIRE drills: a real Envoy per workload that takes its SVID and
//! trust bundle from its SPIRE agent over SDS, as the workload (its own uid, so the agent's
//! `unix` attestor tells it apart), with an echo app behind it.
//!
//! # Contract
//!
//! [`SpirePlane::start`] starts, for every `(service, upstreams)` given, an Envoy with
//!
//! * an inbound listener on `127.0.0.1:<port>` that requires a client certificate, presents the
//!   service's SVID (SDS secret named by its SPIFFE ID) and validates peers with the trust
//!   domain's bundle (SDS `spiffe://<td>`), then hands the request to the echo app with the
//!   caller's SPIFFE ID in `x-forwarded-client-cert`;
//! * one plaintext outbound listener per upstream that originates mTLS with the same SVID and
//!   accepts only the upstream's exact SPIFFE ID.
//!
//! It returns once every Envoy answers `/ready` (which, with SDS-fed listeners, means the agent
//! delivered the SVID), bounded by `wait`. When the agent goes away Envoy keeps the last SVID it
//! was given; when the agent comes back Envoy re-opens its SDS stream with a back-off of at most
//! `sds_retry` (a lab setting, reported with the drill; Envoy's own default is far longer).
//!
//! Needs [`Isolation::Uid`] (running as root); otherwise [`SpirePlane::start`] says so. Every
//! Envoy is killed and reaped by [`SpirePlane::shutdown`] and on drop. No key material passes
//! through this module: the agent streams keys to Envoy over its socket.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::spiffe::{SpiffeId, TrustDomain};
use crate::target::lab::echo::EchoServer;
use crate::target::lab::envoy::{AdminClient, EnvoyBinary};
use crate::target::lab::spire::{
    Isolation, SpireLab, sds_certificate, sds_cluster, sds_validation_context,
};

const HCM: &str = "envoy.filters.network.http_connection_manager";
const HCM_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const TLS: &str = "envoy.transport_sockets.tls";
const POLL: Duration = Duration::from_millis(20);

/// One SPIRE-fed Envoy.
#[derive(Debug)]
pub struct SpireSidecar {
    pub service: String,
    pub spiffe_id: SpiffeId,
    child: Option<Child>,
    pid: u32,
    admin: SocketAddr,
    inbound: SocketAddr,
    outbound: BTreeMap<String, SocketAddr>,
    dir: PathBuf,
}

impl SpireSidecar {
    pub fn admin(&self) -> AdminClient {
        AdminClient::new(self.admin)
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn inbound_addr(&self) -> SocketAddr {
        self.inbound
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    fn kill_now(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => return,
                    Ok(None) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
        }
    }
}

impl Drop for SpireSidecar {
    fn drop(&mut self) {
        self.kill_now();
    }
}

/// The SPIRE-fed sidecars and their apps.
#[derive(Debug, Default)]
pub struct SpirePlane {
    sidecars: BTreeMap<String, SpireSidecar>,
    apps: Vec<EchoServer>,
}

impl SpirePlane {
    pub async fn start(
        lab: &SpireLab,
        plan: &[(String, Vec<String>)],
        sds_retry: Duration,
        wait: Duration,
    ) -> Result<SpirePlane, String> {
        let mut plane = SpirePlane::default();
        if plan.is_empty() {
            return Ok(plane);
        }
        if lab.isolation() != Isolation::Uid {
            return Err(
                "SPIRE-fed sidecars need root: Envoy must run under the workload's own uid for \
                 the agent to attest it (run the SPIRE drills as root)"
                    .into(),
            );
        }
        let envoy = EnvoyBinary::locate().map_err(|e| e.to_string())?;
        // The cached binary may sit under a home directory other uids cannot enter.
        let bin = lab.expose_binary(envoy.path()).map_err(|e| e.to_string())?;
        // Every inbound port is fixed first, so callers can be configured before callees start.
        let mut inbound = BTreeMap::new();
        for (service, _) in plan {
            let port = crate::target::lab::sidecar::reserve_port(IpAddr::V4(Ipv4Addr::LOCALHOST))
                .map_err(|e| format!("reserving a port for {service}: {e}"))?;
            inbound.insert(service.clone(), SocketAddr::from(([127, 0, 0, 1], port)));
        }
        let td = lab.trust_domain().clone();
        for (service, upstreams) in plan {
            let workload = lab
                .workload(service)
                .ok_or_else(|| format!("SPIRE registers no workload for {service}"))?;
            let caller = &workload.caller;
            let socket = lab
                .agent_socket(caller.agent)
                .ok_or_else(|| format!("no agent {} for {service}", caller.agent))?
                .to_path_buf();
            let app = EchoServer::start(service.clone(), SocketAddr::from(([127, 0, 0, 1], 0)))
                .await
                .map_err(|e| format!("starting {service}'s app: {e}"))?;
            let mut ups = Vec::new();
            for up in upstreams {
                let addr = inbound
                    .get(up)
                    .copied()
                    .ok_or_else(|| format!("{up} is not part of the SPIRE plane"))?;
                let id = lab
                    .workload(up)
                    .map(|w| w.spiffe_id.clone())
                    .ok_or_else(|| format!("SPIRE registers no workload for {up}"))?;
                ups.push((up.clone(), addr, id));
            }
            let listen = inbound
                .get(service)
                .copied()
                .ok_or_else(|| format!("no port for {service}"))?;
            let config = bootstrap(
                service,
                &workload.spiffe_id,
                &td,
                &socket,
                listen,
                app.addr(),
                &ups,
                sds_retry,
            );
            let dir = lab.caller_dir(caller).map_err(|e| e.to_string())?;
            let sidecar = spawn(
                &bin,
                service,
                &workload.spiffe_id,
                &config,
                &dir,
                (caller.uid, caller.gid),
                listen,
                wait,
            )
            .await?;
            plane.apps.push(app);
            plane.sidecars.insert(service.clone(), sidecar);
        }
        Ok(plane)
    }

    pub fn sidecar(&self, service: &str) -> Option<&SpireSidecar> {
        self.sidecars.get(service)
    }

    /// The plaintext listener through which `from`'s app calls `to`.
    pub fn outbound(&self, from: &str, to: &str) -> Option<SocketAddr> {
        self.sidecars.get(from)?.outbound.get(to).copied()
    }

    pub fn sidecars(&self) -> impl Iterator<Item = &SpireSidecar> {
        self.sidecars.values()
    }

    /// Kills and reaps every Envoy and stops the apps.
    pub async fn shutdown(mut self) {
        for sidecar in self.sidecars.values_mut() {
            if let Some(mut child) = sidecar.child.take() {
                let _ = child.kill().await;
            }
        }
        self.apps.clear();
    }
}

#[allow(clippy::too_many_arguments)]
async fn spawn(
    bin: &Path,
    service: &str,
    spiffe_id: &SpiffeId,
    config: &Value,
    dir: &Path,
    (uid, gid): (u32, u32),
    inbound: SocketAddr,
    wait: Duration,
) -> Result<SpireSidecar, String> {
    let io = |what: &str, e: std::io::Error| format!("{service}'s SPIRE sidecar: {what}: {e}");
    let bootstrap_path = dir.join("bootstrap.json");
    let admin_path = dir.join("admin-address");
    let _ = std::fs::remove_file(&admin_path);
    let text = serde_json::to_vec_pretty(config).map_err(|e| format!("bootstrap: {e}"))?;
    std::fs::write(&bootstrap_path, text).map_err(|e| io("writing the bootstrap", e))?;
    let stderr = std::fs::File::create(dir.join("envoy.stderr"))
        .map_err(|e| io("creating envoy.stderr", e))?;
    let child = Command::new(bin)
        .arg("-c")
        .arg(&bootstrap_path)
        .args(["--disable-hot-restart", "--concurrency", "1", "--log-level", "warning"])
        .arg("--base-id")
        .arg(base_id().to_string())
        .arg("--admin-address-path")
        .arg(&admin_path)
        .arg("--log-path")
        .arg(dir.join("envoy.log"))
        .current_dir(dir)
        .uid(uid)
        .gid(gid)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| io("spawning envoy", e))?;
    let pid = child.id().unwrap_or(0);
    let mut sidecar = SpireSidecar {
        service: service.to_owned(),
        spiffe_id: spiffe_id.clone(),
        child: Some(child),
        pid,
        admin: SocketAddr::from(([127, 0, 0, 1], 0)),
        inbound,
        outbound: BTreeMap::new(),
        dir: dir.to_path_buf(),
    };
    let started = Instant::now();
    let mut last = "no admin address yet".to_owned();
    loop {
        if let Some(child) = sidecar.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "{service}'s SPIRE sidecar exited ({status}): {}",
                    sidecar.log_tail()
                ));
            }
        }
        if let Ok(text) = std::fs::read_to_string(&admin_path) {
            if let Ok(addr) = text.trim().parse::<SocketAddr>() {
                sidecar.admin = addr;
                match AdminClient::new(addr).get("/ready").await {
                    Ok((200, _)) => break,
                    Ok((status, body)) => last = format!("/ready {status} {}", body.trim()),
                    Err(e) => last = e.to_string(),
                }
            }
        }
        if started.elapsed() > wait {
            return Err(format!(
                "{service}'s SPIRE sidecar not ready after {wait:?} (waited for the agent to deliver its SVID over SDS; last: {last}): {}",
                sidecar.log_tail()
            ));
        }
        tokio::time::sleep(POLL).await;
    }
    let listeners = sidecar
        .admin()
        .listeners()
        .await
        .map_err(|e| e.to_string())?;
    for l in listeners {
        if let Some(up) = l.name.strip_prefix("outbound|") {
            sidecar.outbound.insert(up.to_owned(), l.addr);
        }
    }
    Ok(sidecar)
}

fn base_id() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(500);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) % 1000;
    let id = (u64::from(std::process::id()) * 1000 + u64::from(n)) % u64::from(u32::MAX / 10);
    u32::try_from(id).unwrap_or(n)
}

/// An SDS secret config whose gRPC stream to the agent re-opens within `retry` at most.
fn sds(secret: Value, retry: Duration) -> Value {
    let mut secret = secret;
    let max = retry.as_secs_f64().max(0.05);
    let base = (max / 5.0).max(0.01);
    if let Some(services) = secret["sds_config"]["api_config_source"]["grpc_services"].as_array_mut() {
        for service in services {
            service["envoy_grpc"]["retry_policy"] = json!({
                "retry_back_off": {
                    "base_interval": format!("{base:.3}s"),
                    "max_interval": format!("{max:.3}s"),
                }
            });
        }
    }
    secret
}

#[allow(clippy::too_many_arguments)]
fn bootstrap(
    service: &str,
    id: &SpiffeId,
    td: &TrustDomain,
    socket: &Path,
    inbound: SocketAddr,
    app: SocketAddr,
    upstreams: &[(String, SocketAddr, SpiffeId)],
    retry: Duration,
) -> Value {
    let cert = sds(sds_certificate(id), retry);
    let bundle = sds(sds_validation_context(td), retry);
    let address = |a: SocketAddr| json!({ "socket_address": { "address": a.ip().to_string(), "port_value": a.port() } });
    let endpoint = |name: &str, a: SocketAddr| json!({
        "cluster_name": name,
        "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": address(a) } }] }],
    });
    let router = json!({ "name": "envoy.filters.http.router", "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" } });
    let route = |cluster: &str| json!({
        "name": cluster,
        "virtual_hosts": [{ "name": cluster, "domains": ["*"], "routes": [{ "match": { "prefix": "/" }, "route": { "cluster": cluster } }] }],
    });
    let mut listeners = vec![json!({
        "name": "inbound",
        "address": address(inbound),
        "filter_chains": [{
            "filters": [{
                "name": HCM,
                "typed_config": {
                    "@type": HCM_TYPE,
                    "stat_prefix": "inbound",
                    "forward_client_cert_details": "SANITIZE_SET",
                    "set_current_client_cert_details": { "uri": true },
                    "route_config": route("app"),
                    "http_filters": [router.clone()],
                }
            }],
            "transport_socket": {
                "name": TLS,
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                    "require_client_certificate": true,
                    "common_tls_context": {
                        "tls_certificate_sds_secret_configs": [cert.clone()],
                        "validation_context_sds_secret_config": bundle.clone(),
                    }
                }
            }
        }]
    })];
    let mut clusters = vec![
        sds_cluster(socket),
        json!({ "name": "app", "type": "STATIC", "connect_timeout": "1s", "load_assignment": endpoint("app", app) }),
    ];
    for (name, addr, peer) in upstreams {
        let cluster = format!("outbound|{name}");
        listeners.push(json!({
            "name": cluster,
            "address": address(SocketAddr::from(([127, 0, 0, 1], 0))),
            "filter_chains": [{ "filters": [{
                "name": HCM,
                "typed_config": {
                    "@type": HCM_TYPE,
                    "stat_prefix": format!("outbound_{name}"),
                    "route_config": route(&cluster),
                    "http_filters": [router.clone()],
                }
            }] }]
        }));
        clusters.push(json!({
            "name": cluster,
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": endpoint(&cluster, *addr),
            "transport_socket": {
                "name": TLS,
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                    "common_tls_context": {
                        "tls_certificate_sds_secret_configs": [cert.clone()],
                        "combined_validation_context": {
                            "default_validation_context": {
                                "match_typed_subject_alt_names": [{ "san_type": "URI", "matcher": { "exact": peer.to_string() } }]
                            },
                            "validation_context_sds_secret_config": bundle.clone(),
                        }
                    }
                }
            }
        }));
    }
    json!({
        "node": { "id": service, "cluster": "spire-drill" },
        "admin": { "address": address(SocketAddr::from(([127, 0, 0, 1], 0))) },
        "static_resources": { "listeners": listeners, "clusters": clusters },
        "overload_manager": {
            "resource_monitors": [{
                "name": "envoy.resource_monitors.global_downstream_max_connections",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                    "max_active_downstream_connections": 10000,
                }
            }]
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sds_streams_get_a_bounded_retry() {
        let td = TrustDomain::parse("td").unwrap();
        let id = SpiffeId::parse("spiffe://td/ns/a/sa/a").unwrap();
        let peer = SpiffeId::parse("spiffe://td/ns/b/sa/b").unwrap();
        let b = bootstrap(
            "a",
            &id,
            &td,
            Path::new("/s/api.sock"),
            "127.0.0.1:1000".parse().unwrap(),
            "127.0.0.1:1001".parse().unwrap(),
            &[("b".into(), "127.0.0.1:1002".parse().unwrap(), peer)],
            Duration::from_secs(1),
        );
        let inbound = &b["static_resources"]["listeners"][0]["filter_chains"][0]["transport_socket"]["typed_config"];
        assert_eq!(inbound["require_client_certificate"], true);
        let cert = &inbound["common_tls_context"]["tls_certificate_sds_secret_configs"][0];
        assert_eq!(cert["name"], "spiffe://td/ns/a/sa/a");
        let retry = &cert["sds_config"]["api_config_source"]["grpc_services"][0]["envoy_grpc"]["retry_policy"]["retry_back_off"];
        assert_eq!(retry["max_interval"], "1.000s");
        let up = &b["static_resources"]["clusters"][2]["transport_socket"]["typed_config"]["common_tls_context"];
        assert_eq!(
            up["combined_validation_context"]["default_validation_context"]["match_typed_subject_alt_names"][0]["matcher"]["exact"],
            "spiffe://td/ns/b/sa/b"
        );
    }
}

//! The lab's ingress gateway: a real Envoy where external traffic enters the mesh, configured
//! the way istiod configures `istio-ingressgateway` for a Gateway + VirtualService.
//!
//! # Contract
//!
//! A [`GatewaySpec`] becomes an Envoy bootstrap ([`bootstrap`], pure, unit-tested) and a running
//! Envoy ([`IngressGateway::start`]):
//!
//! * **External side**: one listener on `ip:port` (the ingress service's HTTPS port) that
//!   terminates **server-only TLS** (no client certificate is asked for: external clients have
//!   none) with a certificate for the external host names, issued by a *public* CA that is not
//!   the mesh's ([`crate::pki::PublicCa`]: a mesh root never vouches for a host name, and the
//!   host certificate is never a mesh identity). A TLS inspector reads the SNI and the only
//!   filter chain matches the spec's host names, so a ClientHello for another name, or plaintext,
//!   matches nothing and Envoy closes the connection before any certificate is shown. The
//!   virtual host also matches only those names (with or without `:port`): another `Host` is
//!   answered `404` by the gateway itself. Whatever `x-forwarded-client-cert` an external client
//!   sends is removed (`SANITIZE`). Every reply the gateway makes itself carries
//!   [`LOCAL_REPLY_HEADER`], so a refusal by the gateway is told apart from one by the mesh. Then the gateway's own HTTP RBAC filters (the
//!   AuthorizationPolicies that select the ingress workload, as istiod applies them to a gateway)
//!   and the router.
//! * **Mesh side**: every request goes to one upstream, the service the profile lets the ingress
//!   call (SomaAgentHub: gateway-api), over **mTLS with the gateway's own SVID** — from the lab CA
//!   through file-based SDS, or from a SPIRE agent's SDS API with Envoy running as the ingress
//!   workload's uid ([`GatewayIdentity`]) — accepting only the upstream's exact SPIFFE ID, and
//!   leaving from the ingress workload's address. Whether the upstream lets the gateway in is its
//!   own sidecar's RBAC, compiled from the manifests: nothing here decides it.
//! * **Misconfigurations a test must be able to show**: [`ExternalTls::Disabled`] (a Gateway
//!   server with `protocol: HTTP` on the HTTPS port: plaintext accepted) and a host `"*"` (a
//!   Gateway with `hosts: ["*"]`: any SNI and any `Host` reach the mesh). They exist so the
//!   ingress checks can be shown to catch them; the lab's own gateway uses neither.
//!
//! Key material: the host key goes into a private SDS directory (`key.pem`, `0600`, handed to the
//! gateway's uid when Envoy runs as one), the SVID key likewise or not at all (SPIRE streams it
//! to Envoy). Errors name files and listeners, never key material.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::envoy::{AdminClient, EnvoyBinary, EnvoyError, EnvoyLaunch, EnvoyProcess, RunAs};
use super::mesh::LabMesh;
use super::sds::{SdsDir, SdsError};
use super::sidecar::{
    self, CertSource, Credentials, DOWNSTREAM_TLS, HCM, HCM_TYPE, HTTP_RBAC, SpireAgentSds,
    TLS_SOCKET, UPSTREAM_TLS, Upstream,
};
use crate::configured::Configured;
use crate::pki::ServerCert;
use crate::policy::istio;
use crate::profile::{Decision, Profile, Role};
use crate::spiffe::SpiffeId;

/// The external listener's name.
pub const LISTENER: &str = "ingress-https";
/// The external HTTP connection manager's `stat_prefix` (counters `http.ingress.*`).
pub const STAT_PREFIX: &str = "ingress";
/// The response header the gateway puts on the replies it makes itself (its own RBAC denials,
/// `404` for an unknown host), naming the gateway: a reply without it came from the mesh.
pub const LOCAL_REPLY_HEADER: &str = "x-meshproof-local-reply";

/// How the external listener speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExternalTls {
    /// Server-only TLS for the spec's hosts (Istio `tls.mode: SIMPLE`).
    #[default]
    Simple,
    /// Plaintext HTTP on the port (a misconfiguration, see the module docs).
    Disabled,
}

/// Everything that shapes the gateway.
#[derive(Clone, Debug)]
pub struct GatewaySpec {
    /// Names the Envoy node, its directory and errors.
    pub name: String,
    /// The profile's ingress service.
    pub service: String,
    /// The gateway's mesh identity (its SVID must carry it).
    pub spiffe_id: SpiffeId,
    /// The ingress workload's address: the external listener binds it, upstream calls leave from
    /// it.
    pub ip: IpAddr,
    pub port: u16,
    /// External host names; `"*"` matches any (a misconfiguration).
    pub hosts: Vec<String>,
    pub tls: ExternalTls,
    /// HTTP RBAC filters of the AuthorizationPolicies that select the ingress workload.
    pub http_rbac: Vec<Value>,
    /// The one service external requests are routed to, and the identity it must present.
    pub upstream: Upstream,
}

impl GatewaySpec {
    /// The gateway istiod would configure for `profile`'s ingress service in front of `mesh`,
    /// serving `host`: on the ingress workload's address and the service's `https` port (443 when
    /// it names none), routing to the one service the profile allows the ingress to call, under
    /// the configured AuthorizationPolicies that select the ingress workload.
    pub fn for_profile(
        profile: &Profile,
        configured: &Configured,
        mesh: &LabMesh,
        host: &str,
    ) -> Result<GatewaySpec, GatewayError> {
        let fail = |message: String| GatewayError::Other {
            name: profile.name.clone(),
            message,
        };
        let service = profile
            .services
            .iter()
            .find(|s| s.role == Role::Ingress)
            .ok_or_else(|| {
                fail("the profile has no ingress gateway (no service with role: ingress)".into())
            })?;
        let mut upstreams: Vec<&str> = profile
            .intents
            .iter()
            .filter(|i| i.from == service.name && i.decision == Decision::Allow)
            .map(|i| i.to.as_str())
            .collect();
        upstreams.dedup();
        let [upstream] = upstreams[..] else {
            return Err(fail(format!(
                "{} routes to the one service the profile allows it to call, but it allows {upstreams:?}",
                service.name
            )));
        };
        let (Some(gateway), Some(callee)) = (mesh.caller(&service.name), mesh.caller(upstream))
        else {
            return Err(fail(format!(
                "the lab mesh runs no workload for {} or {upstream}",
                service.name
            )));
        };
        let labels = [("app".to_owned(), service.name.clone())].into();
        let rbac = istio::envoy_rbac(&configured.policies, &service.namespace, &labels, true);
        Ok(GatewaySpec {
            name: format!("{}-external", service.name),
            service: service.name.clone(),
            spiffe_id: gateway.identity.spiffe_id.clone(),
            ip: gateway.sidecar.inbound_addr().ip(),
            port: service
                .ports
                .iter()
                .find(|p| p.name == "https")
                .map_or(443, |p| p.port),
            hosts: vec![host.to_owned()],
            tls: ExternalTls::Simple,
            http_rbac: rbac.http,
            upstream: Upstream {
                name: upstream.to_owned(),
                address: callee.sidecar.inbound_addr(),
                spiffe_id: callee.identity.spiffe_id.clone(),
                sni: None,
                listen_port: 0,
            },
        })
    }

    fn any_host(&self) -> bool {
        self.hosts.iter().any(|h| h == "*")
    }
}

/// Where the gateway's own SVID comes from.
#[derive(Clone, Copy, Debug)]
pub enum GatewayIdentity<'a> {
    /// The lab CA's SVID, delivered by file-based SDS.
    File(&'a Credentials),
    /// A SPIRE agent's SDS API, with Envoy running as the ingress workload's uid/gid.
    Spire {
        agent: &'a SpireAgentSds,
        run_as: RunAs,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("ingress gateway {name}: {source}")]
    Envoy {
        name: String,
        source: Box<EnvoyError>,
    },
    #[error("ingress gateway {name}: {source}")]
    Sds { name: String, source: SdsError },
    #[error("ingress gateway {name}: {message}")]
    Other { name: String, message: String },
}

/// A running ingress gateway.
#[derive(Debug)]
pub struct IngressGateway {
    spec: GatewaySpec,
    envoy: EnvoyProcess,
    addr: SocketAddr,
    server_cert: ServerCert,
}

impl IngressGateway {
    /// Writes the host certificate (and a file-fed SVID) into `dir`, starts Envoy with
    /// [`bootstrap`] and waits until it is ready and the external listener is bound.
    pub async fn start(
        bin: &EnvoyBinary,
        spec: GatewaySpec,
        server_cert: &ServerCert,
        identity: GatewayIdentity<'_>,
        dir: &Path,
    ) -> Result<IngressGateway, GatewayError> {
        let name = spec.name.clone();
        // Envoy binds with SO_REUSEPORT: a second gateway on a taken address would start fine and
        // silently share the first one's connections.
        if spec.port != 0 {
            std::net::TcpListener::bind((spec.ip, spec.port)).map_err(|e| GatewayError::Other {
                name: name.clone(),
                message: format!("{}:{} cannot be bound: {e}", spec.ip, spec.port),
            })?;
        }
        let sds_err = |source| GatewayError::Sds {
            name: name.clone(),
            source,
        };
        let public = SdsDir::create(dir.join("host-cert")).map_err(sds_err)?;
        // The host key is not a mesh secret's shape (no bundle): the public root stands in the
        // bundle slot, where nothing reads it (the external listener validates no client).
        public
            .write(
                server_cert.cert().pem(),
                &server_cert.key().secret_pem(),
                server_cert.root().pem(),
            )
            .map_err(sds_err)?;
        let own_sds;
        let (source, run_as) = match identity {
            GatewayIdentity::File(credentials) => {
                own_sds = SdsDir::create(dir.join("svid")).map_err(sds_err)?;
                own_sds
                    .write(
                        &credentials.chain_pem,
                        credentials.secret_key_pem(),
                        &credentials.bundle_pem,
                    )
                    .map_err(sds_err)?;
                let validation =
                    sidecar::spiffe_validation(spec.spiffe_id.trust_domain(), &own_sds, &[]);
                own_sds
                    .set_validation_context(&validation)
                    .map_err(sds_err)?;
                (CertSource::File(&own_sds), None)
            }
            GatewayIdentity::Spire { agent, run_as } => {
                public.hand_to(run_as.uid, run_as.gid).map_err(sds_err)?;
                (CertSource::SpireAgent(agent), Some(run_as))
            }
        };
        let mut launch = EnvoyLaunch::new(&spec.name, bootstrap(&spec, &public, source), dir);
        launch.run_as = run_as;
        let envoy_err = |source| GatewayError::Envoy {
            name: name.clone(),
            source: Box::new(source),
        };
        let envoy = EnvoyProcess::start(bin, launch).await.map_err(envoy_err)?;
        let addr = envoy
            .admin()
            .listeners()
            .await
            .map_err(envoy_err)?
            .into_iter()
            .find(|l| l.name == LISTENER)
            .map(|l| l.addr)
            .ok_or_else(|| GatewayError::Other {
                name: name.clone(),
                message: format!("Envoy is ready but reports no listener {LISTENER:?}"),
            })?;
        Ok(IngressGateway {
            spec,
            envoy,
            addr,
            server_cert: server_cert.clone(),
        })
    }

    /// The external listener: where external clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn spec(&self) -> &GatewaySpec {
        &self.spec
    }

    /// The first external host name.
    pub fn host(&self) -> &str {
        self.spec.hosts.first().map_or("", String::as_str)
    }

    /// The certificate the gateway presents to external clients (its root is what they trust).
    pub fn server_cert(&self) -> &ServerCert {
        &self.server_cert
    }

    pub fn admin(&self) -> AdminClient {
        self.envoy.admin()
    }

    pub fn envoy(&self) -> &EnvoyProcess {
        &self.envoy
    }

    /// Stops Envoy and waits for it to be reaped.
    pub async fn shutdown(self) -> Result<(), GatewayError> {
        let name = self.spec.name.clone();
        self.envoy
            .shutdown()
            .await
            .map(|_| ())
            .map_err(|source| GatewayError::Envoy {
                name,
                source: Box::new(source),
            })
    }
}

/// The Envoy bootstrap for `spec`: the host certificate from `public`, the gateway's SVID and
/// peer validation from `identity` (see the module docs).
pub fn bootstrap(spec: &GatewaySpec, public: &SdsDir, identity: CertSource<'_>) -> Value {
    let upstream = sidecar::outbound_name(&spec.upstream.name);
    let domains: Vec<String> = if spec.any_host() {
        vec!["*".into()]
    } else {
        spec.hosts
            .iter()
            .flat_map(|h| [h.clone(), format!("{h}:{}", spec.port)])
            .collect()
    };
    let mut http_filters: Vec<Value> = spec
        .http_rbac
        .iter()
        .map(|v| sidecar::as_filter(HTTP_RBAC, v))
        .collect();
    http_filters.push(sidecar::router());
    let hcm = json!({
        "name": HCM,
        "typed_config": {
            "@type": HCM_TYPE,
            "stat_prefix": STAT_PREFIX,
            "codec_type": "AUTO",
            // An external client's claim to a mesh identity is dropped, never forwarded.
            "forward_client_cert_details": "SANITIZE",
            "local_reply_config": {
                "mappers": [{
                    "filter": { "not_health_check_filter": {} },
                    "headers_to_add": [{
                        "header": { "key": LOCAL_REPLY_HEADER, "value": spec.name },
                        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                    }],
                }]
            },
            "route_config": {
                "name": LISTENER,
                "virtual_hosts": [{
                    "name": "external",
                    "domains": domains,
                    "routes": [{ "match": { "prefix": "/" }, "route": { "cluster": upstream } }],
                }]
            },
            "http_filters": http_filters,
        }
    });
    let mut listener = json!({
        "name": LISTENER,
        "address": sidecar::socket_address(spec.ip, spec.port),
    });
    match spec.tls {
        ExternalTls::Simple => {
            let mut chain = json!({
                "name": "external-tls",
                "filters": [hcm],
                "transport_socket": {
                    "name": TLS_SOCKET,
                    "typed_config": {
                        "@type": DOWNSTREAM_TLS,
                        "require_client_certificate": false,
                        "common_tls_context": {
                            "tls_params": {
                                "tls_minimum_protocol_version": "TLSv1_2",
                                "tls_maximum_protocol_version": "TLSv1_3",
                            },
                            "alpn_protocols": ["h2", "http/1.1"],
                            "tls_certificate_sds_secret_configs": [public.cert_secret_config()],
                        }
                    }
                }
            });
            if !spec.any_host() {
                chain["filter_chain_match"] = json!({ "server_names": spec.hosts });
            }
            listener["listener_filters"] = json!([{
                "name": "envoy.filters.listener.tls_inspector",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
                }
            }]);
            listener["filter_chains"] = json!([chain]);
        }
        ExternalTls::Disabled => {
            listener["filter_chains"] = json!([{ "name": "external-plaintext", "filters": [hcm] }]);
        }
    }
    let exact_id = json!({
        "match_typed_subject_alt_names": [{
            "san_type": "URI",
            "matcher": { "exact": spec.upstream.spiffe_id.to_string() },
        }]
    });
    let mut clusters = vec![json!({
        "name": upstream,
        "type": "STATIC",
        "connect_timeout": "2s",
        "load_assignment": sidecar::endpoint(&upstream, spec.upstream.address),
        "upstream_bind_config": { "source_address": { "address": spec.ip.to_string(), "port_value": 0 } },
        "transport_socket": {
            "name": TLS_SOCKET,
            "typed_config": {
                "@type": UPSTREAM_TLS,
                "common_tls_context": sidecar::common_tls_context(identity, Some(exact_id)),
            }
        },
    })];
    let mut node = json!({ "id": spec.name, "cluster": spec.name });
    if let CertSource::SpireAgent(agent) = identity {
        clusters.insert(0, super::spire::sds_cluster(&agent.socket));
        node["metadata"] = json!({ "disable_spiffe_cert_validation": false });
    }
    json!({
        "node": node,
        "admin": { "address": sidecar::socket_address(IpAddr::V4(Ipv4Addr::LOCALHOST), 0) },
        "static_resources": { "listeners": [listener], "clusters": clusters },
        "overload_manager": sidecar::overload_manager(),
    })
}

/// A directory for a gateway's files that does not exist yet: `<parent>/<stem>`, or
/// `<stem>-2`, `-3`, … when taken.
pub fn fresh_dir(parent: &Path, stem: &str) -> PathBuf {
    let first = parent.join(stem);
    if !first.exists() {
        return first;
    }
    (2u32..)
        .map(|n| parent.join(format!("{stem}-{n}")))
        .find(|d| !d.exists())
        .unwrap_or(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> GatewaySpec {
        GatewaySpec {
            name: "ingress".into(),
            service: "ingress".into(),
            spiffe_id: SpiffeId::parse("spiffe://td/ns/istio-system/sa/ingress").unwrap(),
            ip: "127.0.3.1".parse().unwrap(),
            port: 443,
            hosts: vec!["api.example".into()],
            tls: ExternalTls::Simple,
            http_rbac: vec![json!({"@type": "x.RBAC", "rules": {}})],
            upstream: Upstream {
                name: "gateway-api".into(),
                address: "127.0.3.2:10000".parse().unwrap(),
                spiffe_id: SpiffeId::parse("spiffe://td/ns/app/sa/gateway-api").unwrap(),
                sni: None,
                listen_port: 0,
            },
        }
    }

    fn scratch() -> SdsDir {
        let dir = std::env::temp_dir().join(format!(
            "meshproof-ingress-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        SdsDir::create(dir).unwrap()
    }

    #[test]
    fn external_side_is_server_only_tls_for_the_hosts_only() {
        let sds = scratch();
        let b = bootstrap(&spec(), &sds, CertSource::File(&sds));
        let listener = &b["static_resources"]["listeners"][0];
        assert_eq!(listener["name"], LISTENER);
        assert_eq!(
            listener["listener_filters"][0]["name"],
            "envoy.filters.listener.tls_inspector"
        );
        let chains = listener["filter_chains"].as_array().unwrap();
        assert_eq!(chains.len(), 1, "no fallback chain for other names");
        assert_eq!(
            chains[0]["filter_chain_match"]["server_names"],
            json!(["api.example"])
        );
        let tls = &chains[0]["transport_socket"]["typed_config"];
        assert_eq!(tls["require_client_certificate"], false);
        assert!(
            tls["common_tls_context"]
                .get("validation_context_sds_secret_config")
                .is_none()
        );
        let hcm = &chains[0]["filters"][0]["typed_config"];
        assert_eq!(hcm["forward_client_cert_details"], "SANITIZE");
        assert_eq!(
            hcm["route_config"]["virtual_hosts"][0]["domains"],
            json!(["api.example", "api.example:443"])
        );
        assert_eq!(hcm["http_filters"][0]["name"], HTTP_RBAC);
        let _ = std::fs::remove_dir_all(sds.path());
    }

    #[test]
    fn mesh_side_is_mtls_pinned_to_the_upstream_identity() {
        let sds = scratch();
        let b = bootstrap(&spec(), &sds, CertSource::File(&sds));
        let cluster = &b["static_resources"]["clusters"][0];
        assert_eq!(cluster["name"], "outbound|gateway-api");
        assert_eq!(
            cluster["upstream_bind_config"]["source_address"]["address"],
            "127.0.3.1"
        );
        let ctx = &cluster["transport_socket"]["typed_config"]["common_tls_context"];
        assert_eq!(
            ctx["combined_validation_context"]["default_validation_context"]["match_typed_subject_alt_names"]
                [0]["matcher"]["exact"],
            "spiffe://td/ns/app/sa/gateway-api"
        );
        assert!(ctx["tls_certificate_sds_secret_configs"][0].is_object());
        let _ = std::fs::remove_dir_all(sds.path());
    }

    #[test]
    fn misconfigurations_are_what_they_claim() {
        let sds = scratch();
        let mut plaintext = spec();
        plaintext.tls = ExternalTls::Disabled;
        let b = bootstrap(&plaintext, &sds, CertSource::File(&sds));
        let listener = &b["static_resources"]["listeners"][0];
        assert!(listener.get("listener_filters").is_none());
        assert!(
            listener["filter_chains"][0]
                .get("transport_socket")
                .is_none()
        );
        let mut any = spec();
        any.hosts = vec!["*".into()];
        let b = bootstrap(&any, &sds, CertSource::File(&sds));
        let chain = &b["static_resources"]["listeners"][0]["filter_chains"][0];
        assert!(chain.get("filter_chain_match").is_none());
        assert_eq!(
            chain["filters"][0]["typed_config"]["route_config"]["virtual_hosts"][0]["domains"],
            json!(["*"])
        );
        let _ = std::fs::remove_dir_all(sds.path());
    }
}

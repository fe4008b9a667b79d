//! Envoy configuration fragments that make a sidecar take its identity from a SPIRE agent over the
//! agent's SDS v3 API (the same socket as the Workload API).
//!
//! # Contract
//!
//! Pure functions returning `serde_json` fragments for the sidecar bootstrap builder (which owns
//! the rest of the bootstrap):
//!
//! * [`sds_cluster`]: a static cluster named [`SDS_CLUSTER`] whose single endpoint is the agent's
//!   Unix socket (a `pipe` address), speaking HTTP/2 because SDS is gRPC.
//! * [`sds_certificate`]: an `SdsSecretConfig` for `tls_certificate_sds_secret_configs`, named by
//!   the workload's SPIFFE ID. The agent only serves an SVID under that name to a caller whose
//!   attested selectors match the registration entry for that ID; any other caller gets
//!   `workload is not authorized for the requested identities`, so Envoy simply never warms.
//! * [`sds_validation_context`]: an `SdsSecretConfig` for `validation_context_sds_secret_config`,
//!   named `spiffe://<trust domain>`: the agent answers with that trust domain's bundle (as a
//!   SPIFFE certificate validator when Envoy advertises support for it, else as `trusted_ca`).
//!   [`SDS_DEFAULT_BUNDLE`] (`ROOTCA`) names the agent's own trust domain's bundle without
//!   spelling it out.
//!
//! No fragment names a file or carries key material: the agent streams the certificate and key to
//! Envoy over the socket, and pushes renewals the same way (no restart, no file swap).

use serde_json::{Value, json};

use crate::spiffe::{SpiffeId, TrustDomain};

/// The cluster name every SDS config source points at.
pub const SDS_CLUSTER: &str = "spire_agent";
/// The agent's default name for its own trust domain's bundle (`sds.default_bundle_name`).
pub const SDS_DEFAULT_BUNDLE: &str = "ROOTCA";
/// The agent's default name for the first SVID of the caller (`sds.default_svid_name`).
pub const SDS_DEFAULT_SVID: &str = "default";

/// The Envoy cluster that reaches the SPIRE agent's SDS API over its Unix socket.
pub fn sds_cluster(agent_socket: &std::path::Path) -> Value {
    json!({
        "name": SDS_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "1s",
        // gRPC needs HTTP/2 to the upstream; a cluster without this speaks HTTP/1.1 and every SDS
        // stream fails with a protocol error.
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": { "http2_protocol_options": {} }
            }
        },
        "load_assignment": {
            "cluster_name": SDS_CLUSTER,
            "endpoints": [{
                "lb_endpoints": [{
                    "endpoint": {
                        "address": { "pipe": { "path": agent_socket.to_string_lossy() } }
                    }
                }]
            }]
        }
    })
}

/// The gRPC config source shared by both secret configs.
fn sds_config_source() -> Value {
    json!({
        "resource_api_version": "V3",
        "api_config_source": {
            "api_type": "GRPC",
            "transport_api_version": "V3",
            "grpc_services": [{ "envoy_grpc": { "cluster_name": SDS_CLUSTER } }]
        }
    })
}

/// An `SdsSecretConfig` for `tls_certificate_sds_secret_configs`: the SVID for `spiffe_id`.
pub fn sds_certificate(spiffe_id: &SpiffeId) -> Value {
    sds_secret(&spiffe_id.to_string())
}

/// An `SdsSecretConfig` for `validation_context_sds_secret_config`: the bundle of `trust_domain`,
/// named `spiffe://<trust domain>` as the agent expects.
pub fn sds_validation_context(trust_domain: &TrustDomain) -> Value {
    sds_secret(&trust_domain.id().to_string())
}

/// An `SdsSecretConfig` for any resource name (e.g. [`SDS_DEFAULT_BUNDLE`]).
pub fn sds_secret(name: &str) -> Value {
    json!({ "name": name, "sds_config": sds_config_source() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_is_http2_over_the_agent_pipe() {
        let cluster = sds_cluster(std::path::Path::new("/run/spire/agent-0/api.sock"));
        assert_eq!(cluster["name"], SDS_CLUSTER);
        assert_eq!(
            cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["pipe"]
                ["path"],
            "/run/spire/agent-0/api.sock"
        );
        assert!(
            cluster["typed_extension_protocol_options"]
                ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["explicit_http_config"]
                ["http2_protocol_options"]
                .is_object()
        );
    }

    #[test]
    fn secrets_are_named_by_spiffe_id_and_trust_domain_id() {
        let id = SpiffeId::parse("spiffe://soma-agent-hub.local/ns/soma-agent-hub/sa/orchestrator")
            .unwrap();
        let cert = sds_certificate(&id);
        assert_eq!(cert["name"], id.to_string());
        assert_eq!(
            cert["sds_config"]["api_config_source"]["grpc_services"][0]["envoy_grpc"]["cluster_name"],
            SDS_CLUSTER
        );
        let validation = sds_validation_context(id.trust_domain());
        assert_eq!(validation["name"], "spiffe://soma-agent-hub.local");
        assert_eq!(validation["sds_config"]["resource_api_version"], "V3");
    }
}

//! Steps of `features/ingress.feature`: requests from outside the mesh, through the profile's
//! ingress gateway (a real Envoy, see [`crate::target::lab::ingress`]).

use std::sync::Arc;

use cucumber::{given, then, when};

use super::{MeshWorld, harness_error};
use crate::checks::{self, ingress as judge};
use crate::target::lab::echo::{FORWARD_HEADER, XFCC_HEADER};
use crate::target::lab::external::{ExternalObservation, ExternalRequest};
use crate::target::lab::ingress::IngressGateway;

/// A host name the gateway does not serve (reserved for examples, RFC 2606).
const OTHER_HOST: &str = "not-served.example";

async fn gateway(world: &MeshWorld) -> Arc<IngressGateway> {
    let ctx = world.ctx();
    let profile = world.profile();
    let configured = world.configured();
    ctx.lab
        .ingress(&profile, &configured)
        .await
        .unwrap_or_else(|e| harness_error!("{e}"))
}

/// An HTTPS request for the gateway's host, trusting the public root only.
fn https(gateway: &IngressGateway) -> ExternalRequest {
    ExternalRequest::https(
        gateway.addr(),
        gateway.host(),
        vec![gateway.server_cert().root().der().to_vec()],
    )
}

async fn send(request: ExternalRequest) -> ExternalObservation {
    request
        .send()
        .await
        .unwrap_or_else(|e| harness_error!("{e}"))
}

fn subject(gateway: &IngressGateway, what: &str) -> String {
    format!("{} ← {what}", gateway.spec().name)
}

#[given("its ingress gateway serves the external host")]
async fn gateway_serves(world: &mut MeshWorld) {
    let gateway = gateway(world).await;
    if !gateway.admin().ready().await.unwrap_or(false) {
        harness_error!("the ingress gateway's Envoy is not ready");
    }
}

#[when(expr = "an external client sends {string} to the external host, forwarded through {string}")]
async fn external_chain(world: &mut MeshWorld, request: String, chain: String) {
    let Some((method, path)) = request.split_once(' ') else {
        harness_error!("{request:?}: expected \"METHOD /path\"")
    };
    let services: Vec<&str> = chain.split('→').map(str::trim).collect();
    let gateway = gateway(world).await;
    let mesh = world.mesh();
    if services.first().copied() != Some(gateway.spec().upstream.name.as_str()) {
        harness_error!(
            "the ingress gateway routes to {}, not to {:?}",
            gateway.spec().upstream.name,
            services.first()
        );
    }
    let hops: Vec<judge::Hop> = services
        .iter()
        .map(|service| match mesh.caller(service) {
            Some(w) => judge::Hop {
                service: w.identity.label(),
                spiffe_id: w.identity.spiffe_id.to_string(),
            },
            None => harness_error!("the lab mesh runs no workload for {service}"),
        })
        .collect();
    let mut request = https(&gateway)
        .method(method)
        .path(path)
        // An outsider's claim to be the last hop must not survive the gateway.
        .header(
            XFCC_HEADER,
            &format!("URI={}", hops.last().map_or("", |h| h.spiffe_id.as_str())),
        );
    if services.len() > 1 {
        request = request.header(FORWARD_HEADER, &services[1..].join(","));
    }
    let observation = send(request).await;
    if !observation.outcome.attempted() {
        harness_error!(
            "the ingress gateway did not accept the connection: {}",
            observation.outcome
        );
    }
    let verdict = judge::judge_chain(
        gateway.host(),
        &gateway.spec().spiffe_id.to_string(),
        &hops,
        &observation,
    );
    world.pending = Some(checks::verdict(
        judge::CHAIN,
        &format!(
            "external → {} → {}",
            gateway.spec().name,
            services.join(" → ")
        ),
        verdict,
    ));
}

#[then("every hop was reached and saw the previous hop's SPIFFE ID")]
fn chain_held(world: &mut MeshWorld) {
    let Some(result) = world.pending.take() else {
        harness_error!("no external request was sent")
    };
    world.record(result);
}

#[then("the ingress gateway refuses an external request without TLS")]
async fn refuses_plaintext(world: &mut MeshWorld) {
    let gateway = gateway(world).await;
    let observation = send(https(&gateway).path("/v1/decide").plaintext()).await;
    let verdict = judge::judge_plaintext_refused(&observation);
    world.record(checks::verdict(
        judge::REFUSES,
        &subject(&gateway, "plaintext HTTP"),
        verdict,
    ));
}

#[then("the ingress gateway refuses a TLS handshake for another host name")]
async fn refuses_other_sni(world: &mut MeshWorld) {
    let gateway = gateway(world).await;
    let observation = send(
        https(&gateway)
            .path("/v1/decide")
            .sni(OTHER_HOST)
            .host(OTHER_HOST),
    )
    .await;
    let verdict = judge::judge_other_sni_refused(OTHER_HOST, &observation);
    world.record(checks::verdict(
        judge::REFUSES,
        &subject(&gateway, &format!("TLS for {OTHER_HOST}")),
        verdict,
    ));
}

#[then("the ingress gateway refuses a request for another Host")]
async fn refuses_other_host(world: &mut MeshWorld) {
    let gateway = gateway(world).await;
    let observation = send(https(&gateway).path("/v1/decide").host(OTHER_HOST)).await;
    let verdict = judge::judge_other_host_refused(OTHER_HOST, &observation);
    world.record(checks::verdict(
        judge::REFUSES,
        &subject(&gateway, &format!("Host {OTHER_HOST}")),
        verdict,
    ));
}

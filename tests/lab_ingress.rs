//! The SomaAgentHub ingress gateway, a real Envoy: external HTTPS for the profile's host enters
//! through it and crosses ingress → gateway-api → orchestrator → policy-engine, each hop a real
//! sidecar-to-sidecar mTLS call; and each way a broken configuration would let the wrong thing
//! in is caught: a gateway that speaks plaintext, one that serves any host name, and manifests
//! that no longer let the ingress identity into gateway-api.
//!
//! Needs Envoy (`scripts/setup`); the tests through SPIRE also need SPIRE and root (one uid per
//! workload). Without them a test prints why it did not run and passes, unless
//! MESHPROOF_REQUIRE_ENVOY=1 / MESHPROOF_REQUIRE_SPIRE=1. Figures are printed: run with
//! `--nocapture`.

mod common;

use std::path::Path;
use std::time::Duration;

use time::OffsetDateTime;

use meshproof::checks::ingress as judge;
use meshproof::configured::{self, Configured};
use meshproof::intents::ExpectedCall;
use meshproof::profile::{self, Decision, Profile};
use meshproof::target::Target as _;
use meshproof::target::lab::echo::{FORWARD_HEADER, XFCC_HEADER};
use meshproof::target::lab::envoy::EnvoyBinary;
use meshproof::target::lab::external::{ExternalObservation, ExternalRequest};
use meshproof::target::lab::ingress::{ExternalTls, GatewayIdentity, GatewaySpec, IngressGateway};
use meshproof::target::lab::mesh::LabMesh;
use meshproof::target::lab::sidecar::Credentials;
use meshproof::target::lab::spire::SpireBinaries;
use meshproof::target::lab::{Lab, external_host};

const OTHER_HOST: &str = "not-served.example";
const CHAIN: [&str; 3] = ["gateway-api", "orchestrator", "policy-engine"];

fn required(var: &str) -> bool {
    std::env::var(var).as_deref() == Ok("1")
}

fn envoy() -> Option<EnvoyBinary> {
    match EnvoyBinary::locate() {
        Ok(bin) => Some(bin),
        Err(e) => {
            println!("SKIPPED: envoy not installed: run scripts/setup ({e})");
            assert!(!required("MESHPROOF_REQUIRE_ENVOY"), "{e}");
            None
        }
    }
}

/// SPIRE-fed sidecars run as one uid per workload: SPIRE and root.
fn spire() -> bool {
    if let Err(e) = SpireBinaries::locate() {
        println!("SKIPPED: spire not installed: run scripts/setup ({e})");
        assert!(!required("MESHPROOF_REQUIRE_SPIRE"), "{e}");
        return false;
    }
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|u| u.split_whitespace().next() == Some("0"))
        })
        .unwrap_or(false);
    if !root {
        println!("SKIPPED: SPIRE-fed sidecars need root (one uid per workload)");
        assert!(!required("MESHPROOF_REQUIRE_SPIRE"), "not root");
    }
    root
}

fn soma() -> Profile {
    profile::load(&common::root().join("manifests/soma-agent-hub/profile.yaml")).unwrap()
}

fn manifests(profile: &Profile, dir: &Path) -> Configured {
    configured::load(profile, dir).unwrap_or_else(|e| panic!("{e}"))
}

/// The soma mesh on the lab CA (no SPIRE needed): the same sidecars, RBAC and routes.
async fn lab_ca_mesh(lab: &Lab, profile: &Profile, configured: &Configured, dir: &Path) -> LabMesh {
    let pki = lab.pki(profile).unwrap();
    let bundle = lab.trust_bundle(profile).unwrap();
    LabMesh::start(profile, configured, &pki, bundle, &dir.join("mesh"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A gateway in front of `mesh` as the lab configures it, changed by `mutate`. It binds the
/// ingress workload's HTTPS port: shut one down before starting the next.
async fn gateway(
    bin: &EnvoyBinary,
    lab: &Lab,
    mesh: &LabMesh,
    profile: &Profile,
    configured: &Configured,
    dir: &Path,
    mutate: impl FnOnce(&mut GatewaySpec),
) -> IngressGateway {
    let host = external_host(profile);
    let mut spec = GatewaySpec::for_profile(profile, configured, mesh, &host).unwrap();
    mutate(&mut spec);
    let cert = lab
        .public_ca()
        .unwrap()
        .issue_server_cert(
            &[&host],
            Duration::from_secs(86_400),
            OffsetDateTime::now_utc(),
        )
        .unwrap();
    let pki = lab.pki(profile).unwrap();
    let svid = pki.svids.initial(&spec.spiffe_id.to_string()).unwrap();
    let credentials = Credentials::from_svid(svid);
    let dir = tempfile::tempdir_in(dir).unwrap().keep();
    IngressGateway::start(bin, spec, &cert, GatewayIdentity::File(&credentials), &dir)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

fn https(gateway: &IngressGateway) -> ExternalRequest {
    https_for(gateway, gateway.host())
}

/// HTTPS for `host` to `gateway`, trusting the public root only.
fn https_for(gateway: &IngressGateway, host: &str) -> ExternalRequest {
    ExternalRequest::https(
        gateway.addr(),
        host,
        vec![gateway.server_cert().root().der().to_vec()],
    )
}

/// `POST /v1/decide` through the whole chain.
async fn through_the_chain(gateway: &IngressGateway) -> ExternalObservation {
    https(gateway)
        .method("POST")
        .path("/v1/decide")
        .header(FORWARD_HEADER, &CHAIN[1..].join(","))
        .send()
        .await
        .unwrap()
}

fn hops(mesh: &LabMesh) -> Vec<judge::Hop> {
    CHAIN
        .iter()
        .map(|s| {
            let w = mesh.caller(s).unwrap();
            judge::Hop {
                service: w.identity.label(),
                spiffe_id: w.identity.spiffe_id.to_string(),
            }
        })
        .collect()
}

fn median_ms(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1e3
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_request_crosses_the_chain_through_spire_identities() {
    if envoy().is_none() || !spire() {
        return;
    }
    let profile = soma();
    let configured = manifests(&profile, &configured::default_dir(&profile));
    let lab = Lab::new(OffsetDateTime::now_utc()).unwrap();
    let gateway = lab
        .ingress(&profile, &configured)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mesh = lab.mesh(&profile, &configured).await.unwrap();
    // A forged claim to be policy-engine must not survive the gateway.
    let forged = https(&gateway)
        .method("POST")
        .path("/v1/decide")
        .header(FORWARD_HEADER, &CHAIN[1..].join(","))
        .header(XFCC_HEADER, &format!("URI={}", hops(&mesh)[2].spiffe_id))
        .send()
        .await
        .unwrap();
    let ingress_id = gateway.spec().spiffe_id.to_string();
    let verdict = judge::judge_chain(gateway.host(), &ingress_id, &hops(&mesh), &forged);
    let (summary, _) = verdict.unwrap_or_else(|e| panic!("{e}"));
    println!("{summary}");

    // Figures: the gateway hop (external TLS handshake + the gateway's mTLS call) against the
    // same request from the ingress workload's own sidecar, and the whole chain.
    const N: usize = 50;
    let mut external = Vec::new();
    let mut chain = Vec::new();
    let mut sidecar = Vec::new();
    let call = ExpectedCall {
        method: "GET".into(),
        path: "/ready".into(),
        ..mesh_call(&profile)
    };
    for _ in 0..N {
        let o = https(&gateway).path("/ready").send().await.unwrap();
        assert!(o.outcome.is_success(), "{}", o.outcome);
        external.push(o.latency);
        let o = through_the_chain(&gateway).await;
        assert!(o.outcome.is_success(), "{}", o.outcome);
        chain.push(o.latency);
        let o = mesh.call(&call).await.unwrap();
        assert!(o.outcome.is_success(), "{}", o.outcome);
        sidecar.push(o.latency);
    }
    println!(
        "median over {N}: external HTTPS → gateway → gateway-api GET /ready {:.2} ms (new TLS \
         connection each); ingress sidecar → gateway-api {:.2} ms; external → whole chain \
         POST /v1/decide {:.2} ms",
        median_ms(external),
        median_ms(sidecar),
        median_ms(chain)
    );
}

/// An allowed call of the profile's intent matrix from the ingress (its principal and the rest).
fn mesh_call(profile: &Profile) -> ExpectedCall {
    meshproof::intents::matrix(profile)
        .into_iter()
        .find(|c| {
            c.from == "ingress-gateway" && c.to == "gateway-api" && c.expected == Decision::Allow
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_is_refused_and_a_gateway_without_tls_is_caught() {
    let Some(bin) = envoy() else { return };
    let profile = soma();
    let configured = manifests(&profile, &configured::default_dir(&profile));
    let lab = Lab::new(OffsetDateTime::now_utc()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mesh = lab_ca_mesh(&lab, &profile, &configured, dir.path()).await;
    let healthy = gateway(&bin, &lab, &mesh, &profile, &configured, dir.path(), |_| {}).await;
    let o = https(&healthy)
        .path("/v1/decide")
        .plaintext()
        .send()
        .await
        .unwrap();
    judge::judge_plaintext_refused(&o).unwrap_or_else(|e| panic!("{e}"));
    // The TLS path of the same gateway works: the refusal is about plaintext, not a dead port.
    let o = through_the_chain(&healthy).await;
    judge::judge_chain(
        healthy.host(),
        &healthy.spec().spiffe_id.to_string(),
        &hops(&mesh),
        &o,
    )
    .unwrap_or_else(|e| panic!("{e}"));

    healthy.shutdown().await.unwrap();

    let plaintext = gateway(&bin, &lab, &mesh, &profile, &configured, dir.path(), |s| {
        s.tls = ExternalTls::Disabled;
    })
    .await;
    let o = https(&plaintext)
        .path("/v1/decide")
        .plaintext()
        .send()
        .await
        .unwrap();
    let finding = judge::judge_plaintext_refused(&o).unwrap_err();
    assert!(finding.contains("answered plaintext"), "{finding}");
    println!("caught: {finding}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_host_is_refused_and_a_gateway_for_any_host_is_caught() {
    let Some(bin) = envoy() else { return };
    let profile = soma();
    let configured = manifests(&profile, &configured::default_dir(&profile));
    let lab = Lab::new(OffsetDateTime::now_utc()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mesh = lab_ca_mesh(&lab, &profile, &configured, dir.path()).await;
    let healthy = gateway(&bin, &lab, &mesh, &profile, &configured, dir.path(), |_| {}).await;
    let sni = https(&healthy)
        .path("/v1/decide")
        .sni(OTHER_HOST)
        .host(OTHER_HOST);
    let o = sni.send().await.unwrap();
    judge::judge_other_sni_refused(OTHER_HOST, &o).unwrap_or_else(|e| panic!("{e}"));
    let o = https(&healthy)
        .path("/v1/decide")
        .host(OTHER_HOST)
        .send()
        .await
        .unwrap();
    judge::judge_other_host_refused(OTHER_HOST, &o).unwrap_or_else(|e| panic!("{e}"));
    healthy.shutdown().await.unwrap();

    let any = gateway(&bin, &lab, &mesh, &profile, &configured, dir.path(), |s| {
        s.hosts = vec!["*".into()];
    })
    .await;
    let o = https_for(&any, &external_host(&profile))
        .path("/v1/decide")
        .sni(OTHER_HOST)
        .host(OTHER_HOST)
        .send()
        .await
        .unwrap();
    let finding = judge::judge_other_sni_refused(OTHER_HOST, &o).unwrap_err();
    println!("caught: {finding}");
    let o = https_for(&any, &external_host(&profile))
        .path("/v1/decide")
        .host(OTHER_HOST)
        .send()
        .await
        .unwrap();
    let finding = judge::judge_other_host_refused(OTHER_HOST, &o).unwrap_err();
    assert!(finding.contains("inside the mesh"), "{finding}");
    println!("caught: {finding}");
}

/// The rule of `gateway-api-intents` that lets the ingress identity in.
const INGRESS_RULE: &str = "  - from:
    - source:
        principals:
        - soma-agent-hub.local/ns/istio-system/sa/istio-ingressgateway-service-account
    to:
    - operation:
        methods:
        - GET
        paths:
        - /ready
        ports:
        - \"10000\"
    - operation:
        methods:
        - GET
        - POST
        paths:
        - /v1/*
        ports:
        - \"10000\"
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_rule_for_the_ingress_the_external_call_is_denied_by_rbac() {
    let Some(bin) = envoy() else { return };
    let profile = soma();
    let mutant = common::mutant(
        "soma-agent-hub",
        common::replace("authorization-policies.yaml", INGRESS_RULE, ""),
    );
    let lab = Lab::new(OffsetDateTime::now_utc()).unwrap();
    for (dir, allowed) in [
        (configured::default_dir(&profile), true),
        (mutant.path().to_path_buf(), false),
    ] {
        let configured = manifests(&profile, &dir);
        let work = tempfile::tempdir().unwrap();
        let mesh = lab_ca_mesh(&lab, &profile, &configured, work.path()).await;
        let gw = gateway(
            &bin,
            &lab,
            &mesh,
            &profile,
            &configured,
            work.path(),
            |_| {},
        )
        .await;
        let o = through_the_chain(&gw).await;
        let verdict = judge::judge_chain(
            gw.host(),
            &gw.spec().spiffe_id.to_string(),
            &hops(&mesh),
            &o,
        );
        match (allowed, verdict) {
            (true, Ok(_)) => {}
            (false, Err(finding)) => {
                assert!(o.outcome.is_rbac_denied(), "denied by RBAC: {}", o.outcome);
                assert!(
                    finding.contains("gateway-api refused the ingress gateway"),
                    "{finding}"
                );
                println!("caught: {finding}");
            }
            (_, other) => panic!("manifests {}: {other:?}", dir.display()),
        }
        gw.shutdown().await.unwrap();
        mesh.shutdown().await;
    }
}

#[test]
fn the_feature_run_fails_when_the_manifests_shut_the_ingress_out() {
    if envoy().is_none() || !spire() {
        return;
    }
    let mutant = common::mutant(
        "soma-agent-hub",
        common::replace("authorization-policies.yaml", INGRESS_RULE, ""),
    );
    let out = tempfile::tempdir().unwrap();
    let o = common::meshproof(&[
        "run",
        "--profile",
        "soma-agent-hub",
        "--features",
        "features/ingress.feature",
        "--manifests",
        mutant.path().to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
    ]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains("gateway-api refused the ingress gateway") && text.contains("403"),
        "{text}"
    );
    // The refusals at the gateway itself do not depend on the mesh's rules.
    assert!(
        text.contains("PASS") && text.contains("turns away"),
        "{text}"
    );
}

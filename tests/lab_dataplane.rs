//! The lab data plane against the real Envoy: sidecars, echo apps, SDS rotation and the
//! harness's own probe, proving each promise of the runbook's mTLS/authz section is enforced
//! and that each mutant (PERMISSIVE, trusted_ca instead of SPIFFE validation) is observable.
//!
//! Needs Envoy (`scripts/setup` installs it). Without it every test prints
//! "envoy not installed: run scripts/setup" and passes, unless MESHPROOF_REQUIRE_ENVOY=1.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use time::OffsetDateTime;

use meshproof::pki::{CaSpec, Chaos, Pki, Svid};
use meshproof::probe::{
    Outcome, Probe, ProbeIdentity, RejectedBy, ServerTrust, TlsVersions, Transport,
};
use meshproof::spiffe::{SpiffeId, TrustBundle, TrustDomain};
use meshproof::target::lab::echo::EchoServer;
use meshproof::target::lab::envoy::{EnvoyBinary, normalize_serial};
use meshproof::target::lab::sidecar::{
    Credentials, MtlsMode, PeerValidation, Sidecar, SidecarSpec, Upstream, workload_ip,
};

const TD: &str = "tradepulse";

fn envoy() -> Option<EnvoyBinary> {
    match EnvoyBinary::locate() {
        Ok(bin) => Some(bin),
        Err(e) => {
            eprintln!("envoy not installed: run scripts/setup ({e})");
            assert!(
                std::env::var("MESHPROOF_REQUIRE_ENVOY").as_deref() != Ok("1"),
                "MESHPROOF_REQUIRE_ENVOY=1 but envoy is not installed: {e}"
            );
            None
        }
    }
}

fn id(service: &str) -> SpiffeId {
    SpiffeId::parse(&format!("spiffe://{TD}/prod/{service}")).unwrap()
}

/// The lab CA, generated a day in the past so that an already-expired leaf can be issued.
struct Ca {
    pki: Pki,
    bundle: TrustBundle,
}

impl Ca {
    fn new() -> Ca {
        let past = OffsetDateTime::now_utc() - time::Duration::DAY;
        let pki = Pki::generate(&CaSpec::runbook(TD, "TradePulse"), past).unwrap();
        let bundle =
            TrustBundle::from_der(TrustDomain::parse(TD).unwrap(), [pki.root().der().to_vec()])
                .unwrap();
        Ca { pki, bundle }
    }

    fn svid(&self, service: &str) -> Svid {
        self.pki
            .issue_svid(
                &id(service).to_string(),
                Duration::from_secs(3600),
                OffsetDateTime::now_utc(),
            )
            .unwrap()
    }

    fn trust(&self, server: &str) -> Option<ServerTrust> {
        Some(ServerTrust::new(self.bundle.clone(), Some(id(server))))
    }
}

/// A workload: its echo app and its sidecar.
struct Workload {
    sidecar: Sidecar,
    _app: EchoServer,
}

struct Options {
    mtls: MtlsMode,
    validation: PeerValidation,
    http_rbac: Vec<Value>,
    network_rbac: Vec<Value>,
    upstreams: Vec<Upstream>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mtls: MtlsMode::Strict,
            validation: PeerValidation::Spiffe,
            http_rbac: Vec::new(),
            network_rbac: Vec::new(),
            upstreams: Vec::new(),
        }
    }
}

async fn start(
    bin: &EnvoyBinary,
    dir: &std::path::Path,
    index: u8,
    service: &str,
    svid: &Svid,
    options: Options,
) -> Workload {
    let ip = workload_ip(index);
    let app = EchoServer::start(service, SocketAddr::new(ip, 0))
        .await
        .unwrap();
    let mut spec = SidecarSpec::new(service, id(service), ip, app.addr());
    spec.mtls = options.mtls;
    spec.validation = options.validation;
    spec.http_rbac = options.http_rbac;
    spec.network_rbac = options.network_rbac;
    spec.upstreams = options.upstreams;
    let sidecar = Sidecar::start(
        bin,
        &spec,
        &Credentials::from_svid(svid),
        &dir.join(service),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "sidecar {service}: inbound {} ready in {:?}",
        sidecar.inbound_addr(),
        sidecar.envoy().ready_in()
    );
    Workload { sidecar, _app: app }
}

fn upstream_to(b: &Workload, expected: SpiffeId) -> Upstream {
    Upstream {
        name: "b".into(),
        address: b.sidecar.inbound_addr(),
        spiffe_id: expected,
        sni: None,
        listen_port: 0,
    }
}

/// Istio's `allow a to GET /quotes/*` as istiod compiles it: ALLOW, principal = A's full
/// SPIFFE ID, `/quotes/*` as prefix `/quotes/`.
fn allow_a_get_quotes() -> Value {
    json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
        "rules": {
            "action": "ALLOW",
            "policies": {
                "ns[prod]-policy[b-allow-a]-rule[0]": {
                    "permissions": [{ "and_rules": { "rules": [
                        { "header": { "name": ":method", "string_match": { "exact": "GET" } } },
                        { "url_path": { "path": { "prefix": "/quotes/" } } }
                    ] } }],
                    "principals": [{ "authenticated": {
                        "principal_name": { "exact": id("a").to_string() }
                    } }]
                }
            }
        }
    })
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("meshproof-dataplane-")
        .tempdir()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calls_b_through_its_sidecar_and_b_sees_a() {
    let Some(bin) = envoy() else { return };
    let dir = tempdir();
    let ca = Ca::new();
    let b = start(&bin, dir.path(), 1, "b", &ca.svid("b"), Options::default()).await;
    let a = start(
        &bin,
        dir.path(),
        0,
        "a",
        &ca.svid("a"),
        Options {
            upstreams: vec![upstream_to(&b, id("b"))],
            ..Options::default()
        },
    )
    .await;
    let outbound = a.sidecar.outbound_addr("b").unwrap();
    let obs = Probe::via_sidecar(outbound, "b")
        .path("/quotes/1")
        .send()
        .await
        .unwrap();
    assert!(obs.outcome.is_success(), "{obs:?}");
    assert_eq!(obs.sent.transport, Transport::Plaintext);
    assert_eq!(obs.peer_seen, Some(id("a").to_string()), "{obs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_refuses_a_callee_with_another_identity() {
    let Some(bin) = envoy() else { return };
    let dir = tempdir();
    let ca = Ca::new();
    let b = start(&bin, dir.path(), 1, "b", &ca.svid("b"), Options::default()).await;
    // A's sidecar expects the callee to be "c"; B presents "b": the outbound mTLS must fail.
    let a = start(
        &bin,
        dir.path(),
        0,
        "a",
        &ca.svid("a"),
        Options {
            upstreams: vec![upstream_to(&b, id("c"))],
            ..Options::default()
        },
    )
    .await;
    let obs = Probe::via_sidecar(a.sidecar.outbound_addr("b").unwrap(), "b")
        .send()
        .await
        .unwrap();
    assert!(
        matches!(obs.outcome, Outcome::Http { status: 503, .. }),
        "expected 503 from A's sidecar: {obs:?}"
    );
    let stats = a.sidecar.admin().stats("ssl.").await.unwrap();
    assert!(
        stats.get("cluster.outbound|b.ssl.fail_verify_san").copied() >= Some(1),
        "the refusal must be the SAN check: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_inbound_accepts_a_valid_svid_and_refuses_everything_else() {
    let Some(bin) = envoy() else { return };
    let dir = tempdir();
    let ca = Ca::new();
    let b = start(&bin, dir.path(), 1, "b", &ca.svid("b"), Options::default()).await;
    let target = b.sidecar.inbound_addr();
    let probe = |identity| Probe::new(target, identity, ca.trust("b")).path("/quotes/1");

    // A forged XFCC is replaced by what the sidecar verified (SANITIZE_SET).
    let ok = probe(ProbeIdentity::from_svid(&ca.svid("a")))
        .header(
            "x-forwarded-client-cert",
            format!("By={};URI={}", id("b"), id("admin")),
        )
        .send()
        .await
        .unwrap();
    assert!(ok.outcome.is_success(), "{ok:?}");
    assert_eq!(ok.peer_seen, Some(id("a").to_string()));
    let tls = ok.tls.as_ref().unwrap();
    assert_eq!(tls.server_ids, [id("b").to_string()]);
    assert_eq!(tls.version, "TLSv1_3");
    let ok12 = probe(ProbeIdentity::from_svid(&ca.svid("a")))
        .tls_versions(TlsVersions::Tls12Only)
        .send()
        .await
        .unwrap();
    assert!(ok12.outcome.is_success(), "{ok12:?}");
    assert_eq!(ok12.tls.map(|t| t.version).as_deref(), Some("TLSv1_2"));

    // No client certificate: TLS 1.3 completes the handshake and the alert arrives on read.
    let none = probe(ProbeIdentity::None).send().await.unwrap();
    assert_eq!(none.outcome.server_alert(), Some(116), "{none:?}");
    let none12 = probe(ProbeIdentity::None)
        .tls_versions(TlsVersions::Tls12Only)
        .send()
        .await
        .unwrap();
    assert!(
        matches!(
            none12.outcome,
            Outcome::TlsRejected {
                by: RejectedBy::Server,
                ..
            }
        ),
        "{none12:?}"
    );

    // Plaintext to the mTLS port: no HTTP answer at all.
    let plain = probe(ProbeIdentity::Plaintext).send().await.unwrap();
    assert!(
        matches!(plain.outcome, Outcome::NoResponse | Outcome::Reset),
        "{plain:?}"
    );
    assert!(plain.outcome.attempted());
    eprintln!(
        "plaintext to STRICT: {} ({:?})",
        plain.outcome, plain.detail
    );
    eprintln!("no client cert, TLS 1.2: {}", none12.outcome);

    let now = OffsetDateTime::now_utc();
    let faults: Vec<(&str, ProbeIdentity)> = vec![
        (
            "foreign root",
            ProbeIdentity::from_chaos(
                &ca.pki
                    .issue_chaos(Chaos::ForeignRoot, &id("a").to_string(), now)
                    .unwrap(),
            ),
        ),
        (
            "wrong trust domain",
            ProbeIdentity::from_chaos(
                &ca.pki
                    .issue_chaos(Chaos::WrongTrustDomain, &id("a").to_string(), now)
                    .unwrap(),
            ),
        ),
        (
            "expired leaf",
            ProbeIdentity::from_svid(
                &ca.pki
                    .issue_svid(
                        &id("a").to_string(),
                        Duration::from_secs(3600),
                        now - time::Duration::HOUR * 12,
                    )
                    .unwrap(),
            ),
        ),
    ];
    for (what, identity) in faults {
        let obs = probe(identity).send().await.unwrap();
        assert!(
            matches!(
                obs.outcome,
                Outcome::TlsRejected {
                    by: RejectedBy::Server,
                    ..
                }
            ),
            "{what}: {obs:?}"
        );
        eprintln!("{what}: {}", obs.outcome);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_allows_only_a_to_get_quotes() {
    let Some(bin) = envoy() else { return };
    let dir = tempdir();
    let ca = Ca::new();
    let b = start(
        &bin,
        dir.path(),
        1,
        "b",
        &ca.svid("b"),
        Options {
            http_rbac: vec![allow_a_get_quotes()],
            ..Options::default()
        },
    )
    .await;
    let target = b.sidecar.inbound_addr();
    let (a, c) = (ca.svid("a"), ca.svid("c"));
    let send = |svid: &Svid, method: &str, path: &str| {
        Probe::new(target, ProbeIdentity::from_svid(svid), ca.trust("b"))
            .method(method)
            .path(path)
    };

    let allowed = send(&a, "GET", "/quotes/1").send().await.unwrap();
    assert!(allowed.outcome.is_success(), "{allowed:?}");
    assert_eq!(allowed.peer_seen, Some(id("a").to_string()));

    for (who, method, path) in [
        (&c, "GET", "/quotes/1"),
        (&a, "GET", "/admin"),
        (&a, "GET", "/quotesXYZ"),
        (&a, "POST", "/quotes/1"),
    ] {
        let obs = send(who, method, path).send().await.unwrap();
        assert!(
            obs.outcome.is_rbac_denied(),
            "{} {method} {path}: {obs:?}",
            obs.sent.identity
        );
        assert_eq!(obs.peer_seen, None, "the app must not have been reached");
    }
    let counters = b.sidecar.admin().rbac(Some("inbound")).await.unwrap();
    assert_eq!((counters.allowed, counters.denied), (1, 4), "{counters:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_rbac_denies_a_principal_at_l4() {
    let Some(bin) = envoy() else { return };
    let dir = tempdir();
    let ca = Ca::new();
    let deny_c = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC",
        "stat_prefix": "tcp.",
        "rules": {
            "action": "DENY",
            "policies": {
                "deny-c": {
                    "permissions": [{ "any": true }],
                    "principals": [{ "authenticated": {
                        "principal_name": { "exact": id("c").to_string() }
                    } }]
                }
            }
        }
    });
    let b = start(
        &bin,
        dir.path(),
        1,
        "b",
        &ca.svid("b"),
        Options {
            network_rbac: vec![deny_c],
            ..Options::default()
        },
    )
    .await;
    let send = |svid: &Svid| {
        Probe::new(
            b.sidecar.inbound_addr(),
            ProbeIdentity::from_svid(svid),
            ca.trust("b"),
        )
    };
    let a = send(&ca.svid("a")).send().await.unwrap();
    assert!(a.outcome.is_success(), "{a:?}");
    // L4 denial: the handshake completes, then the connection is closed without an HTTP answer.
    let c = send(&ca.svid("c")).send().await.unwrap();
    assert!(
        matches!(c.outcome, Outcome::NoResponse | Outcome::Reset),
        "{c:?}"
    );
    assert!(c.tls.is_some(), "{c:?}");
    eprintln!("network RBAC denial: {} ({:?})", c.outcome, c.detail);
    let stats = b.sidecar.admin().stats("rbac.").await.unwrap();
    assert_eq!(stats.get("tcp.rbac.denied"), Some(&1), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissive_accepts_plaintext_as_well_as_mtls() {
    let Some(bin) = envoy() else { return };
    let dir = tempdir();
    let ca = Ca::new();
    let b = start(
        &bin,
        dir.path(),
        1,
        "b",
        &ca.svid("b"),
        Options {
            mtls: MtlsMode::Permissive,
            ..Options::default()
        },
    )
    .await;
    let target = b.sidecar.inbound_addr();
    let plain = Probe::new(target, ProbeIdentity::Plaintext, None)
        .send()
        .await
        .unwrap();
    assert!(plain.outcome.is_success(), "{plain:?}");
    assert_eq!(plain.peer_seen, None);
    let mtls = Probe::new(
        target,
        ProbeIdentity::from_svid(&ca.svid("a")),
        ca.trust("b"),
    )
    .send()
    .await
    .unwrap();
    assert!(mtls.outcome.is_success(), "{mtls:?}");
    assert_eq!(mtls.peer_seen, Some(id("a").to_string()));
    // Still mTLS-or-nothing on the TLS chain: TLS without a client certificate is refused.
    let none = Probe::new(target, ProbeIdentity::None, ca.trust("b"))
        .send()
        .await
        .unwrap();
    assert_eq!(none.outcome.server_alert(), Some(116), "{none:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_ca_mutant_accepts_a_wrong_trust_domain_that_spiffe_validation_refuses() {
    let Some(bin) = envoy() else { return };
    let dir = tempdir();
    let ca = Ca::new();
    let b = start(
        &bin,
        dir.path(),
        1,
        "b",
        &ca.svid("b"),
        Options {
            validation: PeerValidation::TrustedCa,
            ..Options::default()
        },
    )
    .await;
    let chaos = ca
        .pki
        .issue_chaos(
            Chaos::WrongTrustDomain,
            &id("a").to_string(),
            OffsetDateTime::now_utc(),
        )
        .unwrap();
    let obs = Probe::new(
        b.sidecar.inbound_addr(),
        ProbeIdentity::from_chaos(&chaos),
        ca.trust("b"),
    )
    .send()
    .await
    .unwrap();
    assert!(obs.outcome.is_success(), "{obs:?}");
    assert_eq!(
        obs.peer_seen.as_deref(),
        chaos.uri_sans().first().map(String::as_str)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_is_picked_up_without_restart_and_without_failed_requests() {
    let Some(bin) = envoy() else { return };
    let dir = tempdir();
    let ca = Ca::new();
    let first = ca.svid("b");
    let b = start(&bin, dir.path(), 1, "b", &first, Options::default()).await;
    let pid = b.sidecar.envoy().pid();
    let served = b.sidecar.admin().served_leaves().await.unwrap();
    assert_eq!(served.len(), 1, "{served:?}");
    assert_eq!(served[0].uri_sans, [id("b").to_string()]);
    assert_eq!(served[0].serial_hex, normalize_serial(first.serial_hex()));
    // The log holds nothing but start-up noise Envoy always prints at warning level.
    let log = std::fs::read_to_string(b.sidecar.envoy().log_path()).unwrap();
    assert!(!log.contains("PRIVATE KEY"), "{log}");
    assert!(
        !log.contains("[error]") && !log.contains("[warning]"),
        "{log}"
    );

    // Probes keep running on new connections throughout the rotation.
    let probe = Probe::new(
        b.sidecar.inbound_addr(),
        ProbeIdentity::from_svid(&ca.svid("a")),
        ca.trust("b"),
    )
    .prepare()
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let background = {
        let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
        tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let obs = probe.send().await;
                sent.fetch_add(1, Ordering::Relaxed);
                if !obs.outcome.is_success() {
                    failed.fetch_add(1, Ordering::Relaxed);
                    failures.push(obs);
                }
            }
            failures
        })
    };
    while sent.load(Ordering::Relaxed) < 5 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }

    // Several rotations, each with probes before and after, so swaps land mid-handshake too.
    let mut second = ca.svid("b");
    for round in 0..3 {
        second = ca.svid("b");
        let swapped = Instant::now();
        b.sidecar.rotate(&Credentials::from_svid(&second)).unwrap();
        let took = b
            .sidecar
            .wait_for_serial(second.serial_hex(), Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        eprintln!(
            "rotation {round}: /certs shows the new serial {took:?} after the swap ({:?} wall)",
            swapped.elapsed()
        );
        let before = sent.load(Ordering::Relaxed);
        while sent.load(Ordering::Relaxed) < before + 5 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let failures = background.await.unwrap();
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "failed probes during rotation: {failures:?}"
    );
    eprintln!(
        "rotation: {} probes, 0 failed",
        sent.load(Ordering::Relaxed)
    );

    // A fresh connection now sees the new certificate, from the same process.
    let obs = Probe::new(
        b.sidecar.inbound_addr(),
        ProbeIdentity::from_svid(&ca.svid("a")),
        ca.trust("b"),
    )
    .send()
    .await
    .unwrap();
    let serial = obs.tls.and_then(|t| t.server_serial_hex);
    assert_eq!(serial.as_deref(), Some(second.serial_hex()));
    assert_eq!(b.sidecar.envoy().pid(), pid);
}

fn process_state(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "<pid> (<comm>) <state> <ppid> ...": comm may contain spaces, so split after ')'.
    let after = stat.rsplit_once(')')?.1.trim().to_owned();
    let comm = stat.split_once('(')?.1.rsplit_once(')')?.0.to_owned();
    Some(format!("{comm} {after}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_lab_leaves_no_envoy_process() {
    let Some(bin) = envoy() else { return };
    let dir = tempdir();
    let ca = Ca::new();
    let b = start(&bin, dir.path(), 1, "b", &ca.svid("b"), Options::default()).await;
    let a = start(
        &bin,
        dir.path(),
        0,
        "a",
        &ca.svid("a"),
        Options {
            upstreams: vec![upstream_to(&b, id("b"))],
            ..Options::default()
        },
    )
    .await;
    let pids = [a.sidecar.envoy().pid(), b.sidecar.envoy().pid()];
    for pid in pids {
        let state = process_state(pid).unwrap();
        assert!(state.starts_with("envoy "), "{pid}: {state}");
    }
    let inbound = b.sidecar.inbound_addr();
    drop(a);
    // The explicit path: shutdown() kills and reaps.
    b.sidecar.shutdown().await.unwrap();
    for pid in pids {
        // Not running, and not even a zombie waiting to be reaped.
        assert_eq!(process_state(pid), None, "pid {pid} still in /proc");
    }
    // And nothing answers where B used to listen: a probe now cannot even be attempted.
    let obs = Probe::new(inbound, ProbeIdentity::Plaintext, None)
        .send()
        .await
        .unwrap();
    assert!(!obs.outcome.attempted(), "{obs:?}");
}

/// Figures for the report, not a pass/fail check: `cargo test --test lab_dataplane -- --ignored
/// --nocapture measure`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run explicitly"]
async fn measure_start_up_and_probe_rates() {
    let Some(bin) = envoy() else { return };
    let dir = tempdir();
    let ca = Ca::new();
    let mut ready = Vec::new();
    let mut workloads = Vec::new();
    for i in 0..5u8 {
        let name = format!("w{i}");
        let w = start(
            &bin,
            dir.path(),
            i,
            &name,
            &ca.svid(&name),
            Options::default(),
        )
        .await;
        ready.push(w.sidecar.envoy().ready_in());
        workloads.push(w);
    }
    eprintln!("start-to-ready: {ready:?}");
    let b = &workloads[1];
    let probe = Probe::new(
        b.sidecar.inbound_addr(),
        ProbeIdentity::from_svid(&ca.svid("a")),
        Some(ServerTrust::new(ca.bundle.clone(), Some(id("w1")))),
    )
    .prepare()
    .unwrap();
    for concurrency in [1usize, 4] {
        let n = 400;
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let probe = probe.clone();
            tasks.push(tokio::spawn(async move {
                let mut ok = 0;
                for _ in 0..n / concurrency {
                    if probe.send().await.outcome.is_success() {
                        ok += 1;
                    }
                }
                ok
            }));
        }
        let mut ok = 0;
        for t in tasks {
            ok += t.await.unwrap();
        }
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "new-connection mTLS probes through Envoy to echo, concurrency {concurrency}: {ok}/{n} ok, {:.0}/s",
            n as f64 / secs
        );
    }
    raw_rustls_handshake_rate(&ca).await;
}

/// The same mTLS handshake (P-256 SVIDs, SPIFFE-aware client verifier) against an in-process
/// rustls server: the ceiling a probe could reach without Envoy and the echo app.
async fn raw_rustls_handshake_rate(ca: &Ca) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::AsyncWriteExt;

    let server = ca.svid("raw");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let roots = Arc::new(meshproof::probe::root_store(&ca.bundle));
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .unwrap();
    let chain: Vec<CertificateDer<'static>> = server
        .chain_der()
        .into_iter()
        .map(|d| CertificateDer::from(d.to_vec()))
        .collect();
    let key = PrivateKeyDer::from_pem_slice(server.key().secret_pem().as_bytes()).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    config.send_tls13_tickets = 0;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let _ = tls
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                        .await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    let probe = Probe::new(
        addr,
        ProbeIdentity::from_svid(&ca.svid("a")),
        Some(ServerTrust::new(ca.bundle.clone(), Some(id("raw")))),
    )
    .prepare()
    .unwrap();
    let n = 400;
    let started = Instant::now();
    let mut ok = 0;
    for _ in 0..n {
        if probe.send().await.outcome.is_success() {
            ok += 1;
        }
    }
    eprintln!(
        "new-connection mTLS probes against in-process rustls (no Envoy), sequential: {ok}/{n} ok, {:.0}/s",
        f64::from(n) / started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_bundle_rotation_is_picked_up_without_restart() {
    let Some(bin) = envoy() else { return };
    for validation in [PeerValidation::Spiffe, PeerValidation::TrustedCa] {
        let dir = tempdir();
        let old = Ca::new();
        let b = start(
            &bin,
            dir.path(),
            1,
            "b",
            &old.svid("b"),
            Options {
                validation: validation.clone(),
                ..Options::default()
            },
        )
        .await;
        let new = Ca::new();
        let client = ProbeIdentity::from_svid(&new.svid("a"));
        let before = Probe::new(b.sidecar.inbound_addr(), client.clone(), old.trust("b"))
            .send()
            .await
            .unwrap();
        assert!(before.outcome.is_refused(), "{validation:?}: {before:?}");
        // The mesh moves to the new CA: B gets a new SVID and trusts the new root.
        let b_new = new.svid("b");
        b.sidecar.rotate(&Credentials::from_svid(&b_new)).unwrap();
        b.sidecar
            .wait_for_serial(b_new.serial_hex(), Duration::from_secs(10))
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let after = loop {
            let obs = Probe::new(b.sidecar.inbound_addr(), client.clone(), new.trust("b"))
                .send()
                .await
                .unwrap();
            if obs.outcome.is_success() || Instant::now() > deadline {
                break obs;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        assert!(after.outcome.is_success(), "{validation:?}: {after:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_bootstrap_fails_fast_and_quotes_envoys_log() {
    use meshproof::target::lab::envoy::{EnvoyError, EnvoyLaunch, EnvoyProcess};
    let Some(bin) = envoy() else { return };
    let dir = tempdir();
    let bootstrap = json!({
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } } },
        "static_resources": { "listeners": [{ "name": "x", "no_such_field": true }] },
    });
    let started = Instant::now();
    let err = EnvoyProcess::start(&bin, EnvoyLaunch::new("bad", bootstrap, dir.path()))
        .await
        .unwrap_err();
    match &err {
        EnvoyError::Exited { tail, .. } => assert!(tail.contains("no_such_field"), "{err}"),
        other => panic!("expected Exited, got {other}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

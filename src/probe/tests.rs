//! Probe classification against an in-process rustls server (no Envoy needed).

use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::pki::{CaSpec, Pki};

const TD: &str = "probe.test";

fn pki() -> Pki {
    Pki::generate(
        &CaSpec::runbook(TD, "Probe Test"),
        OffsetDateTime::now_utc(),
    )
    .unwrap()
}

fn bundle(pki: &Pki) -> TrustBundle {
    TrustBundle::from_der(
        crate::spiffe::TrustDomain::parse(TD).unwrap(),
        [pki.root().der().to_vec()],
    )
    .unwrap()
}

fn id(path: &str) -> SpiffeId {
    SpiffeId::parse(&format!("spiffe://{TD}/{path}")).unwrap()
}

/// A TLS server requiring client certificates from `pki`, answering one fixed response per
/// connection: `{"peer": "<client URI SAN>"}`.
async fn mtls_server(
    pki: &Pki,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> SocketAddr {
    let server = pki
        .issue_svid(
            &id("server").to_string(),
            Duration::from_secs(3600),
            OffsetDateTime::now_utc(),
        )
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let roots = Arc::new(root_store(&bundle(pki)));
    let client_verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .unwrap();
    let chain: Vec<CertificateDer<'static>> = server
        .chain_der()
        .into_iter()
        .map(|d| CertificateDer::from(d.to_vec()))
        .collect();
    let key = PrivateKeyDer::from_pem_slice(server.key().secret_pem().as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let peer = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|leaf| x509_parser::parse_x509_certificate(leaf.as_ref()).ok())
                    .map(|(_, cert)| uri_sans(&cert).join(","))
                    .unwrap_or_default();
                let body = format!("{{\"peer\":\"{peer}\"}}");
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

fn client(pki: &Pki, path: &str) -> ProbeIdentity {
    let svid = pki
        .issue_svid(
            &id(path).to_string(),
            Duration::from_secs(3600),
            OffsetDateTime::now_utc(),
        )
        .unwrap();
    ProbeIdentity::from_svid(&svid)
}

#[tokio::test]
async fn mtls_probe_succeeds_and_reports_the_peer_the_server_saw() {
    let pki = pki();
    let addr = mtls_server(&pki, &[&rustls::version::TLS13]).await;
    let trust = ServerTrust::new(bundle(&pki), Some(id("server")));
    let obs = Probe::new(addr, client(&pki, "a"), Some(trust))
        .path("/quotes/1")
        .send()
        .await
        .unwrap();
    assert!(obs.outcome.is_success(), "{obs:?}");
    let expected = id("a").to_string();
    assert_eq!(obs.peer_seen.as_deref(), Some(expected.as_str()));
    assert_eq!(obs.sent.transport, Transport::Mtls);
    assert!(
        obs.sent.identity.contains(&expected),
        "{}",
        obs.sent.identity
    );
    let tls = obs.tls.unwrap();
    assert_eq!(tls.version, "TLSv1_3");
    assert_eq!(tls.server_ids, [id("server").to_string()]);
}

#[tokio::test]
async fn missing_client_cert_on_tls13_is_alert_116_on_first_read() {
    let pki = pki();
    let addr = mtls_server(&pki, &[&rustls::version::TLS13]).await;
    let trust = ServerTrust::new(bundle(&pki), Some(id("server")));
    let obs = Probe::new(addr, ProbeIdentity::None, Some(trust))
        .send()
        .await
        .unwrap();
    assert_eq!(obs.outcome.server_alert(), Some(116), "{obs:?}");
    // The handshake completed from the client's side: the rejection came on the read.
    assert!(obs.tls.is_some(), "{obs:?}");
}

#[tokio::test]
async fn missing_client_cert_on_tls12_is_rejected_in_the_handshake() {
    let pki = pki();
    let addr = mtls_server(&pki, &[&rustls::version::TLS12]).await;
    let trust = ServerTrust::new(bundle(&pki), Some(id("server")));
    let obs = Probe::new(addr, ProbeIdentity::None, Some(trust))
        .tls_versions(TlsVersions::Tls12Only)
        .send()
        .await
        .unwrap();
    assert!(
        matches!(
            obs.outcome,
            Outcome::TlsRejected {
                by: RejectedBy::Server,
                ..
            }
        ),
        "{obs:?}"
    );
    assert!(obs.tls.is_none());
}

#[tokio::test]
async fn wrong_server_identity_is_rejected_by_the_probe() {
    let pki = pki();
    let addr = mtls_server(&pki, &[&rustls::version::TLS13]).await;
    let trust = ServerTrust::new(bundle(&pki), Some(id("someone-else")));
    let obs = Probe::new(addr, client(&pki, "a"), Some(trust))
        .send()
        .await
        .unwrap();
    match &obs.outcome {
        Outcome::TlsRejected {
            by: RejectedBy::Client,
            description,
            ..
        } => assert!(description.contains("someone-else"), "{description}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn foreign_server_root_is_rejected_by_the_probe() {
    let pki = pki();
    let addr = mtls_server(&pki, &[&rustls::version::TLS13]).await;
    let other = Pki::generate(&CaSpec::runbook(TD, "Other"), OffsetDateTime::now_utc()).unwrap();
    let trust = ServerTrust::new(bundle(&other), None);
    let obs = Probe::new(addr, client(&pki, "a"), Some(trust))
        .send()
        .await
        .unwrap();
    assert!(
        matches!(
            obs.outcome,
            Outcome::TlsRejected {
                by: RejectedBy::Client,
                ..
            }
        ),
        "{obs:?}"
    );
}

#[tokio::test]
async fn plaintext_to_a_tls_port_gets_no_http_response() {
    let pki = pki();
    let addr = mtls_server(&pki, &[&rustls::version::TLS13]).await;
    let obs = Probe::new(addr, ProbeIdentity::Plaintext, None)
        .send()
        .await
        .unwrap();
    assert!(
        matches!(obs.outcome, Outcome::NoResponse | Outcome::Reset),
        "{obs:?}"
    );
    assert!(obs.outcome.attempted() && obs.outcome.is_refused());
}

#[tokio::test]
async fn nothing_listening_is_not_an_attempt() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let target: SocketAddr = ([127, 0, 0, 1], port).into();
    let obs = Probe::new(target, ProbeIdentity::Plaintext, None)
        .send()
        .await
        .unwrap();
    assert!(matches!(obs.outcome, Outcome::ConnectFailed(_)), "{obs:?}");
    assert!(!obs.outcome.attempted());
    assert!(!obs.outcome.is_refused());
}

#[tokio::test]
async fn plaintext_http_response_is_parsed_and_rbac_denial_recognised() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        if let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 19\r\ncontent-type: text/plain\r\n\r\nRBAC: access denied")
                .await;
            // Keep the connection open: the probe must stop on content-length, not on EOF.
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    });
    let obs = Probe::via_sidecar(addr, "b")
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .unwrap();
    assert!(obs.outcome.is_rbac_denied(), "{obs:?}");
    assert!(obs.latency < Duration::from_secs(1), "{:?}", obs.latency);
}

#[test]
fn keys_never_show_in_debug_or_errors() {
    let identity = ProbeIdentity::svid(
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        "-----BEGIN PRIVATE KEY-----\nU0VDUkVUS0VZ\n-----END PRIVATE KEY-----\n",
    );
    let probe = Probe::new(
        "127.0.0.1:1".parse().unwrap(),
        identity,
        Some(ServerTrust::new(TrustBundle::new(), None)),
    );
    assert!(!format!("{probe:?}").contains("U0VDUkVUS0VZ"));
    let err = probe.prepare().unwrap_err();
    assert!(!err.to_string().contains("U0VDUkVUS0VZ"), "{err}");
}

#[test]
fn bad_request_lines_are_refused_before_sending() {
    let probe = Probe::via_sidecar("127.0.0.1:1".parse().unwrap(), "b").path("/a b");
    assert!(matches!(probe.prepare(), Err(ProbeError::Request(_))));
    let probe = Probe::new("127.0.0.1:1".parse().unwrap(), ProbeIdentity::None, None);
    assert!(matches!(probe.prepare(), Err(ProbeError::Request(_))));
}

#[test]
fn header_injection_is_refused() {
    let base = || Probe::via_sidecar("127.0.0.1:1".parse().unwrap(), "b");
    assert!(base().header("x-a", "ok").prepare().is_ok());
    assert!(matches!(
        base().header("x-a", "v\r\nInjected: 1").prepare(),
        Err(ProbeError::Request(_))
    ));
    assert!(matches!(
        base().header("bad name", "v").prepare(),
        Err(ProbeError::Request(_))
    ));
}

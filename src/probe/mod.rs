//! Probes: requests sent from one workload to another, and what was observed.
//!
//! # Contract
//!
//! A [`Probe`] is one HTTP/1.1 request on a **new** connection to `target`, sent as one of:
//!
//! * [`ProbeIdentity::Svid`] — mTLS, presenting the given chain (leaf first, intermediates
//!   after: clients must send the intermediate) and proving possession of its key;
//! * [`ProbeIdentity::None`] — TLS without a client certificate;
//! * [`ProbeIdentity::Plaintext`] — no TLS at all (a caller's app talking to its own sidecar's
//!   outbound listener, or a plaintext attack on an inbound port).
//!
//! With TLS the server must present an X.509-SVID accepted by [`SpiffeServerVerifier`] for the
//! given [`ServerTrust`] (hostname verification cannot work on URI-only SVIDs). The request is
//! always written and the first response bytes read **before** anything is classified: with TLS
//! 1.3 a server that rejects the client certificate completes the handshake first and says so on
//! the client's first read. Session resumption is off: every probe is a full handshake, so the
//! certificate it presents is validated by the server's current configuration every time.
//!
//! [`Probe::send`] returns `Err` only when the probe could not even be built (bad PEM, a method
//! or path that is not a valid request line); everything that happens on the wire is an
//! [`Observation`] whose [`Outcome`] is one of: an HTTP response (`rbac_denied` when it is
//! Envoy's `403 RBAC: access denied`), a TLS rejection (by the server, with its alert, or by
//! this client), a reset, no response, or [`Outcome::ConnectFailed`] — the probe could not be
//! attempted because nothing accepted the connection, which is never a refusal
//! ([`Outcome::attempted`] is false).
//!
//! Secrets: the probe's private key is held in a [`KeyPem`] whose `Debug` prints `redacted`;
//! PEM parse errors are reported as fixed sentences, never with the input. Observations carry
//! what was sent (method, path, identity *label*, transport), never key material.

mod response;
mod verifier;

#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use serde::Serialize;
use time::OffsetDateTime;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::spiffe::{SpiffeId, TrustBundle};

pub use response::{Parsed, Response, parse as parse_response};
pub use verifier::SpiffeServerVerifier;

/// Envoy's RBAC denial body.
pub const RBAC_DENIED_BODY: &str = "RBAC: access denied";
/// How much of a response body an observation keeps.
pub const BODY_EXCERPT_BYTES: usize = 1024;
/// How much of a response a probe reads at most; the rest is ignored (a probe needs the status
/// and the start of the body, and must not buffer without bound).
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// The default overall time limit of one probe.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// A private key in PEM. `Debug` never prints it.
#[derive(Clone)]
pub struct KeyPem(String);

impl KeyPem {
    pub fn new(pem: impl Into<String>) -> Self {
        KeyPem(pem.into())
    }

    /// The PEM text: secret.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for KeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyPem(redacted)")
    }
}

/// Who the probe is.
#[derive(Clone, Debug)]
pub enum ProbeIdentity {
    /// mTLS with this chain (leaf first, then intermediates) and key.
    Svid { chain_pem: String, key_pem: KeyPem },
    /// TLS, no client certificate.
    None,
    /// No TLS.
    Plaintext,
}

impl ProbeIdentity {
    pub fn svid(chain_pem: impl Into<String>, key_pem: impl Into<String>) -> Self {
        ProbeIdentity::Svid {
            chain_pem: chain_pem.into(),
            key_pem: KeyPem::new(key_pem),
        }
    }

    /// A lab SVID.
    pub fn from_svid(svid: &crate::pki::Svid) -> Self {
        ProbeIdentity::svid(svid.chain_pem(), svid.key().secret_pem())
    }

    /// A deliberately broken lab chain.
    pub fn from_chaos(svid: &crate::pki::ChaosSvid) -> Self {
        ProbeIdentity::svid(svid.chain_pem(), svid.key().secret_pem())
    }

    /// How the identity is named in evidence: the leaf's URI SAN(s) and serial, `none` or
    /// `plaintext`.
    pub fn label(&self) -> String {
        match self {
            ProbeIdentity::Svid { chain_pem, .. } => describe_leaf(chain_pem),
            ProbeIdentity::None => "no client certificate".into(),
            ProbeIdentity::Plaintext => "plaintext".into(),
        }
    }

    fn transport(&self) -> Transport {
        match self {
            ProbeIdentity::Svid { .. } => Transport::Mtls,
            ProbeIdentity::None => Transport::Tls,
            ProbeIdentity::Plaintext => Transport::Plaintext,
        }
    }
}

/// `svid <uri> serial <hex>` for the first certificate of a PEM chain.
fn describe_leaf(chain_pem: &str) -> String {
    let Ok(ders) = crate::spiffe::parse_pem_chain(chain_pem) else {
        return "svid (unparseable chain)".into();
    };
    let Some(leaf_der) = ders.first() else {
        return "svid (empty chain)".into();
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf_der) else {
        return "svid (unparseable leaf)".into();
    };
    let uris = uri_sans(&cert);
    let serial = crate::pki::serial_hex(leaf_der).unwrap_or_default();
    if uris.is_empty() {
        format!("svid (no URI SAN) serial {serial}")
    } else {
        format!("svid {} serial {serial}", uris.join(" "))
    }
}

fn uri_sans(cert: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::URI(uri) = name {
                out.push((*uri).to_owned());
            }
        }
    }
    out
}

/// How the probe judges the server it reaches over TLS.
#[derive(Clone, Debug)]
pub struct ServerTrust {
    pub bundle: TrustBundle,
    /// The SPIFFE ID the server must present; `None` accepts any SVID chained to `bundle`.
    pub expected: Option<SpiffeId>,
    /// Validate at this instant instead of the handshake's clock (for fixed-clock labs).
    pub at: Option<OffsetDateTime>,
}

impl ServerTrust {
    pub fn new(bundle: TrustBundle, expected: Option<SpiffeId>) -> Self {
        ServerTrust {
            bundle,
            expected,
            at: None,
        }
    }
}

/// Which TLS versions the probe offers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum TlsVersions {
    #[default]
    Any,
    Tls12Only,
    Tls13Only,
}

/// One request to send (see the module docs).
#[derive(Clone, Debug)]
pub struct Probe {
    pub target: SocketAddr,
    /// SNI to send; without it the target's IP is used as the server name (and no SNI is sent).
    pub sni: Option<String>,
    pub identity: ProbeIdentity,
    /// Required unless the identity is [`ProbeIdentity::Plaintext`].
    pub trust: Option<ServerTrust>,
    pub method: String,
    pub path: String,
    /// `Host` header; the target address when `None`.
    pub host: Option<String>,
    pub tls_versions: TlsVersions,
    /// Overall time limit: connect, handshake, request and response.
    pub timeout: Duration,
    /// Extra request headers, e.g. a forged `x-forwarded-client-cert` to prove the sidecar
    /// replaces it.
    pub headers: Vec<(String, String)>,
}

impl Probe {
    /// `GET /` to `target` as `identity`, judging the server with `trust`.
    pub fn new(target: SocketAddr, identity: ProbeIdentity, trust: Option<ServerTrust>) -> Self {
        Probe {
            target,
            sni: None,
            identity,
            trust,
            method: "GET".into(),
            path: "/".into(),
            host: None,
            tls_versions: TlsVersions::Any,
            timeout: DEFAULT_TIMEOUT,
            headers: Vec::new(),
        }
    }

    /// The Istio-like path: the caller's app talks plaintext to its own sidecar's outbound
    /// listener, which originates mTLS to the callee. `host` names the callee.
    pub fn via_sidecar(outbound: SocketAddr, host: impl Into<String>) -> Self {
        let mut probe = Probe::new(outbound, ProbeIdentity::Plaintext, None);
        probe.host = Some(host.into());
        probe
    }

    pub fn method(mut self, method: impl Into<String>) -> Self {
        self.method = method.into();
        self
    }

    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    pub fn sni(mut self, sni: impl Into<String>) -> Self {
        self.sni = Some(sni.into());
        self
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn tls_versions(mut self, versions: TlsVersions) -> Self {
        self.tls_versions = versions;
        self
    }

    /// Checks and pre-builds everything (TLS config, request bytes) so it can be sent many
    /// times cheaply.
    pub fn prepare(&self) -> Result<PreparedProbe, ProbeError> {
        for (what, text) in [("method", &self.method), ("path", &self.path)] {
            if text.is_empty() || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(ProbeError::Request(format!(
                    "{what} {text:?} cannot go in a request line (empty, whitespace or control characters)"
                )));
            }
        }
        if !self.path.starts_with('/') && self.path != "*" {
            return Err(ProbeError::Request(format!(
                "path {:?} must start with '/'",
                self.path
            )));
        }
        let host = self.host.clone().unwrap_or_else(|| self.target.to_string());
        if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ProbeError::Request(format!(
                "host {host:?} is not a header value"
            )));
        }
        let mut extra = String::new();
        for (name, value) in &self.headers {
            let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
            if name.is_empty() || !name.chars().all(token) {
                return Err(ProbeError::Request(format!(
                    "header name {name:?} is not an HTTP token"
                )));
            }
            if value.chars().any(|c| c == '\r' || c == '\n' || c == '\0') {
                return Err(ProbeError::Request(format!(
                    "header {name} value contains CR, LF or NUL"
                )));
            }
            extra.push_str(&format!("{name}: {value}\r\n"));
        }
        if matches!(self.method.as_str(), "POST" | "PUT" | "PATCH") {
            extra.push_str("Content-Length: 0\r\n");
        }
        let request = format!(
            "{} {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: meshproof-probe\r\nAccept: */*\r\n{extra}Connection: close\r\n\r\n",
            self.method, self.path
        )
        .into_bytes();
        let tls = match &self.identity {
            ProbeIdentity::Plaintext => None,
            identity => Some(self.tls_setup(identity)?),
        };
        Ok(PreparedProbe {
            target: self.target,
            timeout: self.timeout,
            request,
            tls,
            sent: Sent {
                target: self.target,
                method: self.method.clone(),
                path: self.path.clone(),
                identity: self.identity.label(),
                transport: self.identity.transport(),
                sni: self.sni.clone(),
            },
        })
    }

    fn tls_setup(
        &self,
        identity: &ProbeIdentity,
    ) -> Result<(Arc<ClientConfig>, ServerName<'static>), ProbeError> {
        let trust = self.trust.as_ref().ok_or_else(|| {
            ProbeError::Request(
                "a TLS probe needs a ServerTrust (the bundle and expected server SPIFFE ID)".into(),
            )
        })?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = match self.tls_versions {
            TlsVersions::Any => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersions::Tls12Only => &[&rustls::version::TLS12],
            TlsVersions::Tls13Only => &[&rustls::version::TLS13],
        };
        let verifier = SpiffeServerVerifier::new(
            trust.bundle.clone(),
            trust.expected.clone(),
            trust.at,
            provider.clone(),
        );
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(|e| ProbeError::Tls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
        let mut config = match identity {
            ProbeIdentity::Svid { chain_pem, key_pem } => {
                let chain: Vec<CertificateDer<'static>> =
                    CertificateDer::pem_slice_iter(chain_pem.as_bytes())
                        .collect::<Result<_, _>>()
                        .map_err(|_| {
                            ProbeError::Identity("the chain PEM holds an unreadable block".into())
                        })?;
                if chain.is_empty() {
                    return Err(ProbeError::Identity(
                        "the chain PEM holds no certificate".into(),
                    ));
                }
                // The parse error is not quoted: it could describe the key's bytes.
                let key =
                    PrivateKeyDer::from_pem_slice(key_pem.secret().as_bytes()).map_err(|_| {
                        ProbeError::Identity("the key PEM holds no usable private key".into())
                    })?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    ProbeError::Identity(format!("certificate and key are unusable together: {e}"))
                })?
            }
            _ => builder.with_no_client_auth(),
        };
        // Every probe must be a full handshake judged by the server's *current* configuration:
        // a resumed TLS 1.3 session would skip the client certificate (and its validation),
        // so a rotated bundle or a revoked identity could still look accepted.
        config.resumption = rustls::client::Resumption::disabled();
        config.enable_early_data = false;
        let name = match &self.sni {
            Some(sni) => ServerName::try_from(sni.clone())
                .map_err(|_| ProbeError::Request(format!("SNI {sni:?} is not a DNS name")))?,
            None => ServerName::IpAddress(self.target.ip().into()),
        };
        Ok((Arc::new(config), name))
    }

    /// Sends the probe once on a new connection.
    pub async fn send(&self) -> Result<Observation, ProbeError> {
        Ok(self.prepare()?.send().await)
    }
}

/// Why a probe could not be built. Nothing was sent.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("probe identity: {0}")]
    Identity(String),
    #[error("probe request: {0}")]
    Request(String),
    #[error("probe TLS configuration: {0}")]
    Tls(String),
}

/// A probe ready to send (see [`Probe::prepare`]).
#[derive(Clone)]
pub struct PreparedProbe {
    target: SocketAddr,
    timeout: Duration,
    request: Vec<u8>,
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    sent: Sent,
}

impl fmt::Debug for PreparedProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreparedProbe")
            .field("sent", &self.sent)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What was sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Sent {
    pub target: SocketAddr,
    pub method: String,
    pub path: String,
    /// The identity's label (see [`ProbeIdentity::label`]).
    pub identity: String,
    pub transport: Transport,
    pub sni: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// TLS with a client certificate.
    Mtls,
    /// TLS without a client certificate.
    Tls,
    Plaintext,
}

/// Which side ended a TLS handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectedBy {
    /// The server (it sent an alert or closed the connection).
    Server,
    /// This probe (it did not accept the server, or could not negotiate).
    Client,
}

/// What came back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// An HTTP response.
    Http {
        status: u16,
        body_excerpt: String,
        /// `403` with Envoy's `RBAC: access denied` body.
        rbac_denied: bool,
    },
    /// The TLS handshake (or, with TLS 1.3, the first read after it) failed.
    TlsRejected {
        by: RejectedBy,
        /// The TLS alert number when one was received (116 = certificate required).
        alert: Option<u8>,
        description: String,
    },
    /// The peer reset the connection.
    Reset,
    /// The peer closed (or went silent) without any usable reply, e.g. plaintext sent to a TLS
    /// port.
    NoResponse,
    /// Nothing accepted the connection: the probe could not be attempted.
    ConnectFailed(String),
}

impl Outcome {
    /// False when nothing accepted the connection: such a probe proves neither allow nor deny.
    pub fn attempted(&self) -> bool {
        !matches!(self, Outcome::ConnectFailed(_))
    }

    /// A 2xx response.
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Http { status, .. } if (200..300).contains(status))
    }

    /// Envoy's RBAC denial.
    pub fn is_rbac_denied(&self) -> bool {
        matches!(
            self,
            Outcome::Http {
                rbac_denied: true,
                ..
            }
        )
    }

    /// The request was attempted and did not succeed: an RBAC denial, any non-2xx response,
    /// a TLS rejection, a reset or no response.
    pub fn is_refused(&self) -> bool {
        self.attempted() && !self.is_success()
    }

    /// The alert the server sent, if the outcome is a server-side TLS rejection with one.
    pub fn server_alert(&self) -> Option<u8> {
        match self {
            Outcome::TlsRejected {
                by: RejectedBy::Server,
                alert,
                ..
            } => *alert,
            _ => None,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Http {
                status,
                body_excerpt,
                ..
            } => {
                let first = body_excerpt.lines().next().unwrap_or_default();
                let short: String = first.chars().take(80).collect();
                write!(f, "HTTP {status} {short:?}")
            }
            Outcome::TlsRejected {
                by,
                alert,
                description,
            } => {
                let by = match by {
                    RejectedBy::Server => "server",
                    RejectedBy::Client => "client",
                };
                match alert {
                    Some(a) => write!(f, "TLS rejected by {by}: alert {a} ({description})"),
                    None => write!(f, "TLS rejected by {by}: {description}"),
                }
            }
            Outcome::Reset => f.write_str("connection reset"),
            Outcome::NoResponse => f.write_str("no response"),
            Outcome::ConnectFailed(why) => write!(f, "could not connect: {why}"),
        }
    }
}

/// The negotiated TLS session, when there was one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TlsSession {
    /// `TLSv1_3` or `TLSv1_2`.
    pub version: String,
    pub cipher_suite: String,
    /// The server leaf's URI SANs.
    pub server_ids: Vec<String>,
    /// The server leaf's serial (lowercase hex, as [`crate::pki::Svid::serial_hex`]): shows
    /// which certificate a rotating server presented.
    pub server_serial_hex: Option<String>,
}

/// One probe's evidence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Observation {
    pub sent: Sent,
    pub outcome: Outcome,
    /// The `peer` the echo app reported (the identity the callee's sidecar saw).
    pub peer_seen: Option<String>,
    /// The TLS session, if a handshake completed.
    pub tls: Option<TlsSession>,
    /// From connect to classification.
    #[serde(rename = "latency_ms", serialize_with = "as_millis")]
    pub latency: Duration,
    /// More about how the outcome was reached (e.g. which stage timed out).
    pub detail: Option<String>,
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

impl PreparedProbe {
    pub fn sent(&self) -> &Sent {
        &self.sent
    }

    /// Sends once on a new connection and classifies what happened.
    pub async fn send(&self) -> Observation {
        let started = Instant::now();
        let deadline = started + self.timeout;
        let mut obs = Observation {
            sent: self.sent.clone(),
            outcome: Outcome::NoResponse,
            peer_seen: None,
            tls: None,
            latency: Duration::ZERO,
            detail: None,
        };
        let connect = tokio::time::timeout_at(deadline.into(), TcpStream::connect(self.target));
        let tcp = match connect.await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => {
                obs.outcome = Outcome::ConnectFailed(e.to_string());
                obs.latency = started.elapsed();
                return obs;
            }
            Err(_) => {
                obs.outcome = Outcome::ConnectFailed(format!("timed out after {:?}", self.timeout));
                obs.latency = started.elapsed();
                return obs;
            }
        };
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => {
                exchange(tcp, &self.request, deadline, &mut obs).await;
            }
            Some((config, name)) => {
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                let handshake =
                    tokio::time::timeout_at(deadline.into(), connector.connect(name.clone(), tcp));
                match handshake.await {
                    Ok(Ok(tls)) => {
                        let (_, conn) = tls.get_ref();
                        obs.tls = Some(session_of(conn));
                        exchange(tls, &self.request, deadline, &mut obs).await;
                    }
                    Ok(Err(e)) => classify_error(&e, Stage::Handshake, &mut obs),
                    Err(_) => {
                        obs.outcome = Outcome::NoResponse;
                        obs.detail = Some(format!(
                            "timed out after {:?} in the TLS handshake",
                            self.timeout
                        ));
                    }
                }
            }
        }
        obs.latency = started.elapsed();
        obs
    }
}

fn session_of(conn: &rustls::ClientConnection) -> TlsSession {
    let leaf_der = conn.peer_certificates().and_then(|certs| certs.first());
    let server_ids = leaf_der
        .and_then(|der| x509_parser::parse_x509_certificate(der.as_ref()).ok())
        .map(|(_, cert)| uri_sans(&cert))
        .unwrap_or_default();
    let server_serial_hex = leaf_der.and_then(|der| crate::pki::serial_hex(der.as_ref()).ok());
    TlsSession {
        version: conn
            .protocol_version()
            .map(|v| format!("{v:?}"))
            .unwrap_or_default(),
        cipher_suite: conn
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()))
            .unwrap_or_default(),
        server_ids,
        server_serial_hex,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Handshake,
    Write,
    Read { received: usize },
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stage::Handshake => f.write_str("during the TLS handshake"),
            Stage::Write => f.write_str("while sending the request"),
            Stage::Read { received: 0 } => f.write_str("before any response byte"),
            Stage::Read { received } => write!(f, "after {received} response byte(s)"),
        }
    }
}

/// Writes the request, reads until the response is complete, and fills in the outcome.
async fn exchange<S>(mut stream: S, request: &[u8], deadline: Instant, obs: &mut Observation)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let write = async {
        stream.write_all(request).await?;
        stream.flush().await
    };
    match tokio::time::timeout_at(deadline.into(), write).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return classify_error(&e, Stage::Write, obs),
        Err(_) => {
            obs.outcome = Outcome::NoResponse;
            obs.detail = Some("timed out sending the request".into());
            return;
        }
    }
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    loop {
        let read = tokio::time::timeout_at(deadline.into(), stream.read(&mut chunk)).await;
        let at_eof = match read {
            Ok(Ok(0)) => true,
            Ok(Ok(n)) => {
                buf.extend_from_slice(&chunk[..n]);
                // Past the cap, judge what arrived as if the peer had closed.
                buf.len() >= MAX_RESPONSE_BYTES
            }
            Ok(Err(e)) => {
                // A TLS alert or reset after a complete response changes nothing about it.
                if let Parsed::Done(response) = response::parse(&buf, true) {
                    return record_response(response, obs);
                }
                return classify_error(
                    &e,
                    Stage::Read {
                        received: buf.len(),
                    },
                    obs,
                );
            }
            Err(_) => {
                obs.outcome = Outcome::NoResponse;
                obs.detail = Some(format!(
                    "timed out waiting for the response ({} byte(s) received)",
                    buf.len()
                ));
                return;
            }
        };
        if at_eof && buf.is_empty() {
            obs.outcome = Outcome::NoResponse;
            obs.detail = Some("the peer closed the connection without replying".into());
            return;
        }
        match response::parse(&buf, at_eof) {
            Parsed::Done(response) => return record_response(response, obs),
            Parsed::Invalid(why) => {
                obs.outcome = Outcome::NoResponse;
                obs.detail = Some(why);
                return;
            }
            Parsed::Incomplete if at_eof => {
                obs.outcome = Outcome::NoResponse;
                obs.detail = Some("the peer closed the connection mid-response".into());
                return;
            }
            Parsed::Incomplete => {}
        }
    }
}

fn record_response(response: Response, obs: &mut Observation) {
    let body = String::from_utf8_lossy(&response.body);
    let excerpt: String = if body.len() > BODY_EXCERPT_BYTES {
        let mut end = BODY_EXCERPT_BYTES;
        while !body.is_char_boundary(end) {
            end -= 1;
        }
        body[..end].to_owned()
    } else {
        body.clone().into_owned()
    };
    obs.peer_seen = serde_json::from_slice::<serde_json::Value>(&response.body)
        .ok()
        .and_then(|v| v.get("peer").and_then(|p| p.as_str()).map(str::to_owned));
    obs.outcome = Outcome::Http {
        status: response.status,
        rbac_denied: response.status == 403 && body.trim() == RBAC_DENIED_BODY,
        body_excerpt: excerpt,
    };
}

/// Maps an I/O error (possibly wrapping a rustls error) at `stage` to an outcome.
fn classify_error(e: &io::Error, stage: Stage, obs: &mut Observation) {
    if let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        obs.outcome = match tls {
            rustls::Error::AlertReceived(alert) => Outcome::TlsRejected {
                by: RejectedBy::Server,
                alert: Some(u8::from(*alert)),
                description: format!("{alert:?}"),
            },
            other => Outcome::TlsRejected {
                by: RejectedBy::Client,
                alert: None,
                description: other.to_string(),
            },
        };
        obs.detail = Some(format!("TLS error {stage}"));
        return;
    }
    match e.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
            obs.outcome = Outcome::Reset;
            obs.detail = Some(format!("reset {stage}"));
        }
        io::ErrorKind::BrokenPipe => {
            obs.outcome = Outcome::Reset;
            obs.detail = Some(format!("the peer closed its end {stage}"));
        }
        io::ErrorKind::UnexpectedEof if stage == Stage::Handshake => {
            // The server hung up on our ClientHello or certificate without an alert.
            obs.outcome = Outcome::TlsRejected {
                by: RejectedBy::Server,
                alert: None,
                description: "connection closed during the TLS handshake".into(),
            };
        }
        io::ErrorKind::UnexpectedEof => {
            obs.outcome = Outcome::NoResponse;
            obs.detail = Some(format!("the peer closed the connection {stage}"));
        }
        _ => {
            obs.outcome = Outcome::NoResponse;
            obs.detail = Some(format!("{e} {stage}"));
        }
    }
}

/// Roots for rustls's own webpki verifier from a bundle (used by tests and raw handshake
/// measurements; mesh probes use [`SpiffeServerVerifier`]).
pub fn root_store(bundle: &TrustBundle) -> RootCertStore {
    let mut store = RootCertStore::empty();
    for td in bundle.trust_domains() {
        for der in bundle.roots(td).into_iter().flatten() {
            let _ = store.add(CertificateDer::from(der.clone()));
        }
    }
    store
}

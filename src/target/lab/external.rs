//! An external client: what a browser or API client outside the mesh does to reach an ingress
//! gateway — HTTPS with ordinary (WebPKI) server verification, or plaintext.
//!
//! # Contract
//!
//! [`ExternalRequest::send`] opens a **new** connection to `target`, and either
//!
//! * speaks TLS with the given SNI, verifying the server the way rustls verifies any web server:
//!   a chain to one of the given roots (the public CA's, never the mesh's) **and** a DNS name
//!   matching the SNI, and presenting **no client certificate**; or
//! * speaks plaintext HTTP/1.1.
//!
//! It sends one request (`Connection: close`, no body) and reads the response up to
//! [`crate::probe::MAX_RESPONSE_BYTES`] until the server closes, all within `timeout`. Everything
//! that happens on the wire is an [`ExternalObservation`] whose [`Outcome`] says who ended the
//! exchange: an HTTP response, a TLS rejection by the server (it closed the connection or sent an
//! alert during the handshake: nothing was shown to the client) or by this client (e.g. the
//! server showed a certificate for another name), a reset, no response, or nothing listening.
//! `Err` only when the request could not be built (a bad host name or header); nothing was sent
//! then. The client holds no secret.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::echo::EchoReply;
use crate::probe::{MAX_RESPONSE_BYTES, Outcome, Parsed, RejectedBy, parse_response};

/// TLS as an external client speaks it.
#[derive(Clone, Debug)]
pub struct ClientTls {
    /// The name sent as SNI and checked against the server certificate's DNS names.
    pub sni: String,
    /// DER roots the client trusts (the public CA's).
    pub roots: Vec<Vec<u8>>,
}

/// One request from outside the mesh (see the module docs).
#[derive(Clone, Debug)]
pub struct ExternalRequest {
    pub target: SocketAddr,
    /// `None`: plaintext.
    pub tls: Option<ClientTls>,
    pub method: String,
    pub path: String,
    /// The `Host` header.
    pub host: String,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
}

/// The server certificate the client was shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PresentedServerCert {
    pub serial_hex: String,
    pub dns_names: Vec<String>,
    /// URI SANs (a host certificate must have none: it is not a mesh identity).
    pub uris: Vec<String>,
    pub tls_version: String,
}

/// What one external request observed.
#[derive(Clone, Debug, Serialize)]
pub struct ExternalObservation {
    pub outcome: Outcome,
    /// The response headers (names lowercase), when there was a response.
    pub headers: Vec<(String, String)>,
    /// The whole response body, when there was one.
    pub body: String,
    /// The echo app's reply, when the body is one (the request reached the mesh).
    pub reply: Option<EchoReply>,
    pub server_cert: Option<PresentedServerCert>,
    #[serde(rename = "latency_ms", serialize_with = "as_millis")]
    pub latency: Duration,
    pub detail: Option<String>,
}

impl ExternalObservation {
    /// The value of response header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

impl ExternalRequest {
    /// `GET /` with `Host: host`, over TLS with SNI `host` trusting `roots`.
    pub fn https(target: SocketAddr, host: &str, roots: Vec<Vec<u8>>) -> ExternalRequest {
        ExternalRequest {
            target,
            tls: Some(ClientTls {
                sni: host.to_owned(),
                roots,
            }),
            method: "GET".into(),
            path: "/".into(),
            host: host.to_owned(),
            headers: Vec::new(),
            timeout: crate::probe::DEFAULT_TIMEOUT,
        }
    }

    /// The same request in plaintext.
    pub fn plaintext(mut self) -> ExternalRequest {
        self.tls = None;
        self
    }

    pub fn method(mut self, method: &str) -> ExternalRequest {
        self.method = method.to_owned();
        self
    }

    pub fn path(mut self, path: &str) -> ExternalRequest {
        self.path = path.to_owned();
        self
    }

    pub fn host(mut self, host: &str) -> ExternalRequest {
        self.host = host.to_owned();
        self
    }

    /// Sends `sni` instead of the host name in the ClientHello (and expects a certificate for it).
    pub fn sni(mut self, sni: &str) -> ExternalRequest {
        if let Some(tls) = &mut self.tls {
            tls.sni = sni.to_owned();
        }
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> ExternalRequest {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    fn request_bytes(&self) -> Result<Vec<u8>, String> {
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if self.method.is_empty() || !self.method.chars().all(token) {
            return Err(format!("method {:?} is not an HTTP token", self.method));
        }
        if !self.path.starts_with('/')
            || self
                .path
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(format!("path {:?} cannot go in a request line", self.path));
        }
        let mut head = format!("{} {} HTTP/1.1\r\n", self.method, self.path);
        for (name, value) in [("Host", self.host.as_str())]
            .into_iter()
            .chain(self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())))
        {
            if name.is_empty() || !name.chars().all(token) {
                return Err(format!("header name {name:?} is not an HTTP token"));
            }
            if value.chars().any(|c| matches!(c, '\r' | '\n' | '\0')) {
                return Err(format!("header {name} value contains CR, LF or NUL"));
            }
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(
            "User-Agent: meshproof-external\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        Ok(head.into_bytes())
    }

    fn tls_config(tls: &ClientTls) -> Result<(Arc<ClientConfig>, ServerName<'static>), String> {
        let mut roots = RootCertStore::empty();
        for der in &tls.roots {
            roots
                .add(CertificateDer::from(der.clone()))
                .map_err(|e| format!("a trusted root is unusable: {e}"))?;
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        // Each request is judged by the server's current configuration, never a resumed session.
        config.resumption = rustls::client::Resumption::disabled();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name = ServerName::try_from(tls.sni.clone())
            .map_err(|_| format!("SNI {:?} is not a DNS name", tls.sni))?;
        Ok((Arc::new(config), name))
    }

    /// Sends the request once on a new connection (see the module docs).
    pub async fn send(&self) -> Result<ExternalObservation, String> {
        let request = self.request_bytes()?;
        let tls = self.tls.as_ref().map(Self::tls_config).transpose()?;
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut obs = ExternalObservation {
            outcome: Outcome::NoResponse,
            headers: Vec::new(),
            body: String::new(),
            reply: None,
            server_cert: None,
            latency: Duration::ZERO,
            detail: None,
        };
        let tcp = match tokio::time::timeout_at(deadline, TcpStream::connect(self.target)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => {
                obs.outcome = Outcome::ConnectFailed(e.to_string());
                obs.latency = started.elapsed();
                return Ok(obs);
            }
            Err(_) => {
                obs.outcome = Outcome::ConnectFailed(format!("timed out after {:?}", self.timeout));
                obs.latency = started.elapsed();
                return Ok(obs);
            }
        };
        let _ = tcp.set_nodelay(true);
        match tls {
            None => exchange(tcp, &request, deadline, &mut obs).await,
            Some((config, name)) => {
                let connector = tokio_rustls::TlsConnector::from(config);
                match tokio::time::timeout_at(deadline, connector.connect(name, tcp)).await {
                    Ok(Ok(stream)) => {
                        obs.server_cert = presented(stream.get_ref().1);
                        exchange(stream, &request, deadline, &mut obs).await;
                    }
                    Ok(Err(e)) => handshake_failed(&e, &mut obs),
                    Err(_) => obs.detail = Some("timed out in the TLS handshake".into()),
                }
            }
        }
        obs.latency = started.elapsed();
        Ok(obs)
    }
}

fn presented(conn: &rustls::ClientConnection) -> Option<PresentedServerCert> {
    let der = conn.peer_certificates()?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let mut dns_names = Vec::new();
    let mut uris = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(d) => dns_names.push((*d).to_owned()),
                x509_parser::extensions::GeneralName::URI(u) => uris.push((*u).to_owned()),
                _ => {}
            }
        }
    }
    Some(PresentedServerCert {
        serial_hex: crate::pki::serial_hex(der.as_ref()).unwrap_or_default(),
        dns_names,
        uris,
        tls_version: conn
            .protocol_version()
            .map(|v| format!("{v:?}"))
            .unwrap_or_default(),
    })
}

/// Who ended a failed handshake: an alert, or the server hanging up on the ClientHello, is the
/// server; a certificate this client would not accept is the client.
fn handshake_failed(e: &io::Error, obs: &mut ExternalObservation) {
    let tls = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    obs.outcome = match (tls, e.kind()) {
        (Some(rustls::Error::AlertReceived(alert)), _) => Outcome::TlsRejected {
            by: RejectedBy::Server,
            alert: Some(u8::from(*alert)),
            description: format!("{alert:?}"),
        },
        (Some(other), _) => Outcome::TlsRejected {
            by: RejectedBy::Client,
            alert: None,
            description: other.to_string(),
        },
        (
            None,
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe,
        ) => Outcome::TlsRejected {
            by: RejectedBy::Server,
            alert: None,
            description: "the server closed the connection during the TLS handshake".into(),
        },
        (None, _) => Outcome::TlsRejected {
            by: RejectedBy::Client,
            alert: None,
            description: e.to_string(),
        },
    };
}

/// Writes the request and reads until the server closes (the request said `Connection: close`).
async fn exchange<S>(
    mut stream: S,
    request: &[u8],
    deadline: tokio::time::Instant,
    obs: &mut ExternalObservation,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let write = async {
        stream.write_all(request).await?;
        stream.flush().await
    };
    match tokio::time::timeout_at(deadline, write).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            obs.outcome = Outcome::Reset;
            obs.detail = Some(format!("sending the request: {e}"));
            return;
        }
        Err(_) => {
            obs.detail = Some("timed out sending the request".into());
            return;
        }
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let ended = loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0)) => break None,
            Ok(Ok(n)) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() >= MAX_RESPONSE_BYTES {
                    break None;
                }
            }
            // A close without TLS close_notify ends the response like a clean close.
            Ok(Err(e)) => break Some(e),
            Err(_) => {
                obs.detail = Some(format!("timed out with {} byte(s) received", buf.len()));
                break None;
            }
        }
    };
    match parse_response(&buf, true) {
        Parsed::Done(response) => {
            obs.headers = response
                .headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect();
            obs.body = String::from_utf8_lossy(&response.body).into_owned();
            obs.reply = serde_json::from_slice(&response.body).ok();
            let rbac_denied =
                response.status == 403 && obs.body.trim() == crate::probe::RBAC_DENIED_BODY;
            obs.outcome = Outcome::Http {
                status: response.status,
                body_excerpt: obs
                    .body
                    .chars()
                    .take(crate::probe::BODY_EXCERPT_BYTES)
                    .collect(),
                rbac_denied,
            };
        }
        _ if buf.is_empty() => {
            obs.outcome = match ended {
                Some(e) if e.kind() == io::ErrorKind::ConnectionReset => Outcome::Reset,
                _ => Outcome::NoResponse,
            };
            obs.detail = Some("the server closed the connection without replying".into());
        }
        Parsed::Invalid(why) => obs.detail = Some(why),
        Parsed::Incomplete => obs.detail = Some("the server closed mid-response".into()),
    }
}

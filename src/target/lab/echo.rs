//! The lab's workload app: an in-process HTTP/1.1 echo server, the equivalent of Istio's `echo`.
//!
//! # Contract
//!
//! [`EchoServer::start`] binds the given address (port 0 picks a free one; [`EchoServer::addr`]
//! says which) and answers **every** request, whatever its method or path, with a JSON
//! [`EchoReply`]: the service name, the method and path it received, and `peer` — the URI (the
//! caller's SPIFFE ID) from the `x-forwarded-client-cert` header its sidecar set, or `null` when
//! there is none. The app trusts that header because only its sidecar can reach it in the mesh
//! model; the sidecar sanitizes whatever a caller sent (`SANITIZE_SET`).
//!
//! **Calling on, as a service in a chain does.** A request carrying [`FORWARD_HEADER`] (a
//! comma-separated list of service names, at most [`MAX_HOPS`]) makes the app call the first of
//! them with the same method and path, through **its own sidecar's outbound listener** for that
//! service (set with [`EchoServer::set_routes`]), passing the rest of the list on. So every hop
//! of a chain is a real sidecar-to-sidecar mTLS call with the caller's SVID, allowed or refused
//! by the callee's RBAC, and the reply nests what each hop saw ([`Forwarded`]). The app answers
//! with the next hop's status when it is not a success (a service whose dependency refuses it
//! fails too), `502` when the next hop has no route or cannot be reached, `400` for a list that
//! is too long; otherwise `200`. The app reaches only its own sidecar's listeners: which service
//! it may really call is decided by that service's Envoy, never here.
//!
//! The server stops when [`EchoServer::shutdown`] is awaited or the value is dropped: the accept
//! loop and every open connection are aborted together. Request bodies are not read or
//! forwarded, responses from a next hop are read up to [`MAX_FORWARDED_BODY`] bytes, each call on
//! is bounded by [`FORWARD_TIMEOUT`], and the app holds no secrets.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use http_body_util::{BodyExt as _, Empty, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// The XFCC header Envoy sets.
pub const XFCC_HEADER: &str = "x-forwarded-client-cert";
/// The request header that asks the app to call further services (see the module docs).
pub const FORWARD_HEADER: &str = "x-meshproof-forward";
/// The longest list of services one request may ask to be forwarded through.
pub const MAX_HOPS: usize = 8;
/// Bound on one call to the next hop, from connect to the end of its response.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);
/// How much of a next hop's response body the app reads.
pub const MAX_FORWARDED_BODY: usize = 64 * 1024;

/// What the echo app answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EchoReply {
    pub service: String,
    pub method: String,
    pub path: String,
    /// The caller's identity as the sidecar reported it (XFCC `URI=`), if any.
    pub peer: Option<String>,
    /// The call on to the next service, when the request asked for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarded: Option<Box<Forwarded>>,
}

/// What happened when the app called the next service of a chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forwarded {
    /// The service it called.
    pub to: String,
    /// The HTTP status it got (`502` when there was no route or no response).
    pub status: u16,
    /// The next app's own reply, when the call reached it.
    pub reply: Option<EchoReply>,
    /// Otherwise the start of what came back (e.g. Envoy's `RBAC: access denied`) or why
    /// nothing did.
    pub detail: Option<String>,
}

impl EchoReply {
    /// This reply and every reply nested in it, in call order.
    pub fn hops(&self) -> Vec<&EchoReply> {
        let mut out = vec![self];
        let mut next = self.forwarded.as_deref();
        while let Some(f) = next {
            match &f.reply {
                Some(reply) => {
                    out.push(reply);
                    next = reply.forwarded.as_deref();
                }
                None => break,
            }
        }
        out
    }

    /// The deepest call on that did not reach the next app, if any.
    pub fn broken_hop(&self) -> Option<(&EchoReply, &Forwarded)> {
        let last = *self.hops().last()?;
        last.forwarded
            .as_deref()
            .filter(|f| f.reply.is_none())
            .map(|f| (last, f))
    }
}

/// Service name → the app's own sidecar's outbound listener for it.
type Routes = Arc<RwLock<BTreeMap<String, SocketAddr>>>;

/// A running echo app.
#[derive(Debug)]
pub struct EchoServer {
    service: String,
    addr: SocketAddr,
    routes: Routes,
    task: JoinHandle<()>,
}

impl EchoServer {
    /// Binds `bind` and serves until shut down or dropped.
    pub async fn start(service: impl Into<String>, bind: SocketAddr) -> std::io::Result<Self> {
        let service = service.into();
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let routes = Routes::default();
        let task = tokio::spawn(serve(listener, service.clone(), routes.clone()));
        Ok(EchoServer {
            service,
            addr,
            routes,
            task,
        })
    }

    /// The address the app listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    /// Where the app calls each service: its own sidecar's outbound listeners (replaces any
    /// earlier routes, e.g. after the sidecar was replaced).
    pub fn set_routes(&self, routes: BTreeMap<String, SocketAddr>) {
        // A poisoned lock only means a writer panicked; the routes are replaced wholesale.
        let mut guard = self
            .routes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard = routes;
    }

    /// Stops accepting and closes every connection.
    pub async fn shutdown(self) {
        self.task.abort();
        // The value is dropped here; the abort above already did the work. Awaiting the task
        // would only report the cancellation.
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, service: String, routes: Routes) {
    // Connections live in this set, so aborting the accept task drops (and aborts) them all:
    // Envoy keeps upstream connections open, which would otherwise outlive the app.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let service = service.clone();
                let routes = routes.clone();
                connections.spawn(async move {
                    let handler = hyper::service::service_fn(move |req| {
                        let service = service.clone();
                        let routes = routes.clone();
                        async move { Ok::<_, Infallible>(answer(&service, &routes, &req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), handler)
                        .await;
                });
            }
            // Reap finished connections so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn answer(service: &str, routes: &Routes, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let peer = req
        .headers()
        .get_all(XFCC_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(peer_from_xfcc)
        .next_back();
    let path = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
    let mut reply = EchoReply {
        service: service.to_owned(),
        method: req.method().as_str().to_owned(),
        path,
        peer,
        forwarded: None,
    };
    let hops: Vec<String> = req
        .headers()
        .get_all(FORWARD_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let status = match hops.split_first() {
        None => StatusCode::OK,
        Some(_) if hops.len() > MAX_HOPS => StatusCode::BAD_REQUEST,
        Some((next, rest)) => {
            let route = routes
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(next)
                .copied();
            let forwarded = match route {
                Some(outbound) => call_on(outbound, req.method(), &reply.path, next, rest).await,
                None => Forwarded {
                    to: next.clone(),
                    status: StatusCode::BAD_GATEWAY.as_u16(),
                    reply: None,
                    detail: Some(format!("{service}'s sidecar has no route to {next}")),
                },
            };
            let status = StatusCode::from_u16(forwarded.status)
                .ok()
                .filter(|s| !s.is_success())
                .unwrap_or(StatusCode::OK);
            reply.forwarded = Some(Box::new(forwarded));
            status
        }
    };
    let body = serde_json::to_vec(&reply).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

/// Calls `next` through the sidecar's plaintext outbound listener `outbound`.
async fn call_on(
    outbound: SocketAddr,
    method: &hyper::Method,
    path: &str,
    next: &str,
    rest: &[String],
) -> Forwarded {
    let failed = |status: StatusCode, detail: String| Forwarded {
        to: next.to_owned(),
        status: status.as_u16(),
        reply: None,
        detail: Some(detail),
    };
    let call = async {
        let stream = TcpStream::connect(outbound)
            .await
            .map_err(|e| format!("connect {outbound}: {e}"))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| format!("handshake with {outbound}: {e}"))?;
        let conn_task = tokio::spawn(conn);
        let mut request = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(hyper::header::HOST, next);
        if !rest.is_empty() {
            request = request.header(FORWARD_HEADER, rest.join(","));
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("request: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("{method} {path} via {outbound}: {e}"))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_FORWARDED_BODY)
            .collect()
            .await
            .map_err(|e| format!("reading the response: {e}"))?
            .to_bytes();
        conn_task.abort();
        Ok::<_, String>((status, body))
    };
    match tokio::time::timeout(FORWARD_TIMEOUT, call).await {
        Err(_) => failed(
            StatusCode::BAD_GATEWAY,
            format!("no response from {next} within {FORWARD_TIMEOUT:?}"),
        ),
        Ok(Err(e)) => failed(StatusCode::BAD_GATEWAY, e),
        Ok(Ok((status, body))) => match serde_json::from_slice::<EchoReply>(&body) {
            Ok(reply) => Forwarded {
                to: next.to_owned(),
                status: status.as_u16(),
                reply: Some(reply),
                detail: None,
            },
            Err(_) => failed(
                status,
                String::from_utf8_lossy(&body).chars().take(200).collect(),
            ),
        },
    }
}

/// The `URI` of the last element of an XFCC header value (the one the nearest proxy added),
/// e.g. `By=spiffe://td/b;Hash=…;URI=spiffe://td/a` → `spiffe://td/a`. Values may be quoted;
/// elements are separated by `,` and pairs by `;` outside quotes.
pub fn peer_from_xfcc(header: &str) -> Option<String> {
    let element = split_unquoted(header, ',').into_iter().last()?;
    split_unquoted(element, ';').into_iter().find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        if !key.trim().eq_ignore_ascii_case("uri") {
            return None;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .map_or_else(|| value.to_owned(), |v| v.replace("\\\"", "\""));
        (!value.is_empty()).then_some(value)
    })
}

fn split_unquoted(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut in_quotes = false;
    let mut escaped = false;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            c if c == separator && !in_quotes => {
                parts.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xfcc_uri_is_the_peer() {
        let h = "By=spiffe://td/b;Hash=abc;URI=spiffe://td/a";
        assert_eq!(peer_from_xfcc(h).as_deref(), Some("spiffe://td/a"));
        let quoted = r#"By=spiffe://td/b;Hash=abc;Subject="CN=x,O=y";URI=spiffe://td/a"#;
        assert_eq!(peer_from_xfcc(quoted).as_deref(), Some("spiffe://td/a"));
        let two = "URI=spiffe://td/first,By=spiffe://td/b;URI=spiffe://td/second";
        assert_eq!(peer_from_xfcc(two).as_deref(), Some("spiffe://td/second"));
        assert_eq!(peer_from_xfcc("By=spiffe://td/b;Hash=abc"), None);
        assert_eq!(peer_from_xfcc("By=spiffe://td/b;URI="), None);
    }

    #[tokio::test]
    async fn answers_every_request_with_the_echo_json() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let server = EchoServer::start("b", "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let mut stream = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
        stream
            .write_all(
                b"DELETE /quotes/1?x=y HTTP/1.1\r\nHost: b\r\nx-forwarded-client-cert: By=spiffe://td/b;URI=spiffe://td/a\r\nConnection: close\r\n\r\n",
            )
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        let body = response.split("\r\n\r\n").nth(1).unwrap();
        let reply: EchoReply = serde_json::from_str(body).unwrap();
        assert_eq!(
            reply,
            EchoReply {
                service: "b".into(),
                method: "DELETE".into(),
                path: "/quotes/1?x=y".into(),
                peer: Some("spiffe://td/a".into()),
                forwarded: None,
            }
        );
        server.shutdown().await;
    }

    async fn get(addr: SocketAddr, headers: &str) -> (u16, EchoReply) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request =
            format!("POST /v1/decide HTTP/1.1\r\nHost: a\r\n{headers}Connection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let status = response[9..12].parse().unwrap();
        let body = response.split("\r\n\r\n").nth(1).unwrap();
        (status, serde_json::from_str(body).unwrap())
    }

    #[tokio::test]
    async fn forwards_along_the_requested_chain_through_its_routes() {
        let any = "127.0.0.1:0".parse().unwrap();
        let a = EchoServer::start("a", any).await.unwrap();
        let b = EchoServer::start("b", any).await.unwrap();
        let c = EchoServer::start("c", any).await.unwrap();
        a.set_routes([("b".to_owned(), b.addr())].into());
        b.set_routes([("c".to_owned(), c.addr())].into());
        let (status, reply) = get(a.addr(), "x-meshproof-forward: b, c\r\n").await;
        assert_eq!(status, 200);
        let services: Vec<&str> = reply.hops().iter().map(|h| h.service.as_str()).collect();
        assert_eq!(services, ["a", "b", "c"]);
        assert!(
            reply
                .hops()
                .iter()
                .all(|h| h.path == "/v1/decide" && h.method == "POST")
        );
        assert!(reply.broken_hop().is_none());

        // No route from b to a: b answers 502 and the chain says where it broke.
        let (status, reply) = get(a.addr(), "x-meshproof-forward: b,a\r\n").await;
        assert_eq!(status, 502);
        let (at, hop) = reply.broken_hop().unwrap();
        assert_eq!(
            (at.service.as_str(), hop.to.as_str(), hop.status),
            ("b", "a", 502)
        );

        // A route to nothing is a 502 with the reason, never a hang or a success.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        b.set_routes([("c".to_owned(), closed)].into());
        let (status, reply) = get(b.addr(), "x-meshproof-forward: c\r\n").await;
        assert_eq!(status, 502);
        assert!(reply.forwarded.unwrap().detail.unwrap().contains("connect"));

        let too_many = format!("x-meshproof-forward: {}\r\n", ["b"; MAX_HOPS + 1].join(","));
        let (status, reply) = get(a.addr(), &too_many).await;
        assert_eq!(status, 400);
        assert!(reply.forwarded.is_none());
    }
}

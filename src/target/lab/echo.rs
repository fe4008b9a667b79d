//! The lab's workload app: an in-process HTTP/1.1 echo server, the equivalent of Istio's `echo`.
//!
//! # Contract
//!
//! [`EchoServer::start`] binds the given address (port 0 picks a free one; [`EchoServer::addr`]
//! says which) and answers **every** request, whatever its method or path, with `200` and a JSON
//! [`EchoReply`]: the service name, the method and path it received, and `peer` — the URI (the
//! caller's SPIFFE ID) from the `x-forwarded-client-cert` header its sidecar set, or `null` when
//! there is none. The app trusts that header because only its sidecar can reach it in the mesh
//! model; the sidecar sanitizes whatever a caller sent (`SANITIZE_SET`).
//!
//! The server stops when [`EchoServer::shutdown`] is awaited or the value is dropped: the accept
//! loop and every open connection are aborted together. It never reads request bodies beyond what
//! hyper needs to keep the connection usable, and holds no secrets.

use std::convert::Infallible;
use std::net::SocketAddr;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// The XFCC header Envoy sets.
pub const XFCC_HEADER: &str = "x-forwarded-client-cert";

/// What the echo app answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EchoReply {
    pub service: String,
    pub method: String,
    pub path: String,
    /// The caller's identity as the sidecar reported it (XFCC `URI=`), if any.
    pub peer: Option<String>,
}

/// A running echo app.
#[derive(Debug)]
pub struct EchoServer {
    service: String,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl EchoServer {
    /// Binds `bind` and serves until shut down or dropped.
    pub async fn start(service: impl Into<String>, bind: SocketAddr) -> std::io::Result<Self> {
        let service = service.into();
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(serve(listener, service.clone()));
        Ok(EchoServer {
            service,
            addr,
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

async fn serve(listener: TcpListener, service: String) {
    // Connections live in this set, so aborting the accept task drops (and aborts) them all:
    // Envoy keeps upstream connections open, which would otherwise outlive the app.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let service = service.clone();
                connections.spawn(async move {
                    let handler = hyper::service::service_fn(move |req| {
                        let service = service.clone();
                        async move { Ok::<_, Infallible>(answer(&service, &req)) }
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

fn answer(service: &str, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let peer = req
        .headers()
        .get_all(XFCC_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(peer_from_xfcc)
        .next_back();
    let reply = EchoReply {
        service: service.to_owned(),
        method: req.method().as_str().to_owned(),
        path: req
            .uri()
            .path_and_query()
            .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned()),
        peer,
    };
    let body = serde_json::to_vec(&reply).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
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
            }
        );
        server.shutdown().await;
    }
}

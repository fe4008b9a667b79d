//! The lab's admission path for drills: Gatekeeper's validating webhook served over HTTP on
//! loopback, and a client that calls it the way the Kubernetes API server does.
//!
//! # Contract
//!
//! * [`Webhook::start`] serves `POST` `admission.k8s.io/v1` `AdmissionReview`s on `bind`,
//!   deciding each with [`Admission::review`] (the same in-process Gatekeeper every other check
//!   uses) and answering `response.allowed` with Gatekeeper's denial text as
//!   `response.status.message`. [`Webhook::stop`] (or dropping it) closes the listener and every
//!   open connection at once: from then on the port refuses connections, which is what an
//!   unavailable admission engine looks like to the API server.
//! * [`ApiServer::submit`] posts a review with the configured timeout (Kubernetes'
//!   `timeoutSeconds`). When the webhook cannot be reached or does not answer in time, the
//!   webhook's `failurePolicy` decides, exactly as the API server applies it: `Ignore` admits the
//!   object (admission **fails open**; Gatekeeper installs its webhook with this default), `Fail`
//!   rejects it (admission **fails closed**). The outcome says which of the two decided.
//!
//! Objects are never persisted: a "submitted" object is only reviewed.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use super::schema::FailurePolicy;
use crate::policy::gatekeeper::{Admission, Operation};

/// Where the API server posts reviews.
pub const PATH: &str = "/v1/admit";
/// Numbers the reviews the lab API server sends (their `uid`).
static REVIEW_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// The most of a request body the webhook reads.
const MAX_BODY: usize = 1024 * 1024;

/// A running webhook.
#[derive(Debug)]
pub struct Webhook {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Webhook {
    /// Binds `bind` (port 0: any free port) and serves until stopped or dropped.
    pub async fn start(admission: Arc<Admission>, bind: SocketAddr) -> std::io::Result<Webhook> {
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(serve(listener, admission));
        Ok(Webhook { addr, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes the listener and every connection.
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, admission: Arc<Admission>) {
    // Connections live in this set so that stopping the accept loop aborts them too.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let admission = admission.clone();
                connections.spawn(async move {
                    let handler = hyper::service::service_fn(move |req| {
                        let admission = admission.clone();
                        async move { Ok::<_, Infallible>(review(&admission, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), handler)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn review(admission: &Admission, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let reply = |status: u16, body: Value| {
        let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
        *response.status_mut() =
            hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_REQUEST);
        response
    };
    if req.method() != hyper::Method::POST || req.uri().path() != PATH {
        return reply(404, json!({ "error": format!("POST {PATH} only") }));
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return reply(400, json!({ "error": e.to_string() })),
    };
    if body.len() > MAX_BODY {
        return reply(413, json!({ "error": "review too large" }));
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return reply(400, json!({ "error": "not an AdmissionReview" }));
    };
    let object = &request["request"]["object"];
    let uid = request["request"]["uid"].clone();
    let result = admission.review(object, Operation::Create);
    let mut response = json!({ "uid": uid, "allowed": result.allowed });
    if let Some(text) = &result.denial_text {
        response["status"] = json!({ "code": 403, "message": text });
    }
    if !result.warning_texts.is_empty() {
        response["warnings"] = json!(result.warning_texts);
    }
    reply(
        200,
        json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": response,
        }),
    )
}

/// Who decided an admission.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DecidedBy {
    /// The webhook answered.
    Webhook,
    /// The webhook could not be reached; its failure policy decided.
    FailurePolicy,
}

/// What the API server did with a submitted object.
#[derive(Clone, Debug, Serialize)]
pub struct AdmissionOutcome {
    pub allowed: bool,
    pub decided_by: DecidedBy,
    /// Gatekeeper's denial text, or why the webhook could not be reached.
    pub message: String,
    pub latency: Duration,
}

/// The part of the Kubernetes API server that calls validating webhooks.
#[derive(Clone, Copy, Debug)]
pub struct ApiServer {
    pub webhook: SocketAddr,
    pub timeout: Duration,
    pub failure_policy: FailurePolicy,
}

impl ApiServer {
    /// Submits `object` for CREATE.
    pub async fn submit(&self, object: &Value) -> AdmissionOutcome {
        let started = Instant::now();
        let review = json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": format!("meshproof-{}", REVIEW_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)),
                "operation": "CREATE",
                "object": object,
            }
        });
        let answer = tokio::time::timeout(self.timeout, post(self.webhook, review)).await;
        let answered = match answer {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        };
        match answered {
            Ok(value) => AdmissionOutcome {
                allowed: value["response"]["allowed"].as_bool().unwrap_or(false),
                decided_by: DecidedBy::Webhook,
                message: value["response"]["status"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                latency: started.elapsed(),
            },
            Err(reason) => {
                let allowed = self.failure_policy == FailurePolicy::Ignore;
                AdmissionOutcome {
                    allowed,
                    decided_by: DecidedBy::FailurePolicy,
                    message: format!(
                        "failed calling webhook \"validation.gatekeeper.sh\": {reason}; failurePolicy {:?} {}",
                        self.failure_policy,
                        if allowed { "admits it" } else { "rejects it" }
                    ),
                    latency: started.elapsed(),
                }
            }
        }
    }
}

async fn post(addr: SocketAddr, review: Value) -> Result<Value, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
    let conn_task = tokio::spawn(conn);
    let request = Request::post(PATH)
        .header(hyper::header::HOST, addr.to_string())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(review.to_string())))
        .map_err(|e| format!("request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("POST {PATH}: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    conn_task.abort();
    if status != 200 {
        return Err(format!("webhook answered {status}"));
    }
    serde_json::from_slice(&body).map_err(|e| format!("webhook answer is not JSON: {e}"))
}

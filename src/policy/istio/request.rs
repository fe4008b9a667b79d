//! A request (or TCP connection) as the destination's sidecar sees it when it authorizes.

use std::borrow::Cow;
use std::net::IpAddr;

use serde::Serialize;

use super::model::Labels;
use crate::spiffe::SpiffeId;

/// HTTP requests are judged by the HTTP RBAC filter; TCP connections by the network RBAC
/// filter, where HTTP-only fields cannot be evaluated (see [`super::envoy`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum Protocol {
    #[default]
    Http,
    Tcp,
}

/// Who is calling.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Caller {
    /// The peer's SPIFFE ID *without* `spiffe://` (Istio's principal form, e.g.
    /// `cluster.local/ns/default/sa/curl`), or `None` for plaintext / no client certificate.
    pub principal: Option<String>,
    /// The peer's address (`source.ip`; also `remote.ip`, as no proxy headers are modelled).
    pub ip: Option<IpAddr>,
}

/// The workload receiving the request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Workload {
    pub namespace: String,
    pub labels: Labels,
    /// The workload (target/container) port the sidecar receives on.
    pub port: u16,
    /// The address the connection was made to (`destination.ip`), if known.
    pub ip: Option<IpAddr>,
}

/// One request. For [`Protocol::Tcp`] the HTTP fields are ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Request {
    pub source: Caller,
    pub destination: Workload,
    pub protocol: Protocol,
    pub method: String,
    /// The path as the sidecar's RBAC filter sees it (query included; matching ignores it).
    pub path: String,
    /// `:authority` (host, with a port if the client sent one).
    pub host: String,
    /// Other headers, names case-insensitive; repeated names are joined with `,` as Envoy does.
    pub headers: Vec<(String, String)>,
    /// TLS SNI the client sent (`connection.sni`), if any.
    pub sni: Option<String>,
}

impl Request {
    /// An HTTP request with no caller identity (plaintext) yet.
    pub fn http(
        namespace: &str,
        labels: &[(&str, &str)],
        port: u16,
        method: &str,
        path: &str,
    ) -> Request {
        Request {
            destination: Workload {
                namespace: namespace.to_owned(),
                labels: labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                port,
                ip: None,
            },
            method: method.to_owned(),
            path: path.to_owned(),
            ..Request::default()
        }
    }

    /// A TCP connection with no caller identity yet.
    pub fn tcp(namespace: &str, labels: &[(&str, &str)], port: u16) -> Request {
        Request {
            protocol: Protocol::Tcp,
            ..Request::http(namespace, labels, port, "", "")
        }
    }

    /// Sets the caller's principal (`td/ns/x/sa/y` form, no `spiffe://`).
    pub fn from_principal(mut self, principal: &str) -> Request {
        self.source.principal = Some(principal.to_owned());
        self
    }

    /// Sets the caller's principal from a SPIFFE ID.
    pub fn from_spiffe_id(mut self, id: &SpiffeId) -> Request {
        let text = id.to_string();
        self.source.principal = Some(
            text.strip_prefix("spiffe://")
                .map(str::to_owned)
                .unwrap_or(text),
        );
        self
    }

    pub fn from_ip(mut self, ip: IpAddr) -> Request {
        self.source.ip = Some(ip);
        self
    }

    pub fn with_host(mut self, host: &str) -> Request {
        self.host = host.to_owned();
        self
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The peer's URI as Envoy's `authenticated.principal_name` sees it.
    pub fn peer_uri(&self) -> Option<String> {
        self.source
            .principal
            .as_ref()
            .map(|p| format!("spiffe://{p}"))
    }

    /// The value a header matcher sees: pseudo-headers from the request line, other headers
    /// joined with `,`; `None` when absent (and always on TCP). Borrowed unless values are
    /// joined: this runs for every header matcher of every rule of every request decided.
    pub fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        if self.protocol == Protocol::Tcp {
            return None;
        }
        let pseudo = [
            (":method", self.method.as_str()),
            (":path", self.path.as_str()),
            (":authority", self.host.as_str()),
        ];
        if let Some((_, value)) = pseudo
            .iter()
            .find(|(n, v)| n.eq_ignore_ascii_case(name) && !(v.is_empty() && *n == ":authority"))
        {
            return Some(Cow::Borrowed(value));
        }
        let mut values = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str());
        let first = values.next()?;
        Some(match values.next() {
            None => Cow::Borrowed(first),
            Some(second) => {
                let mut joined = format!("{first},{second}");
                for v in values {
                    joined.push(',');
                    joined.push_str(v);
                }
                Cow::Owned(joined)
            }
        })
    }

    /// The path without query or fragment (what Envoy's `url_path` matcher compares).
    pub fn url_path(&self) -> &str {
        let end = self.path.find(['?', '#']).unwrap_or(self.path.len());
        &self.path[..end]
    }

    /// One line for explanations.
    pub fn describe(&self) -> String {
        let who = self
            .peer_uri()
            .unwrap_or_else(|| "a caller without a client certificate".into());
        match self.protocol {
            Protocol::Http => format!(
                "{} {} from {who} to {}:{}",
                self.method,
                self.path,
                workload_name(&self.destination.namespace, &self.destination.labels),
                self.destination.port
            ),
            Protocol::Tcp => format!(
                "TCP from {who} to {}:{}",
                workload_name(&self.destination.namespace, &self.destination.labels),
                self.destination.port
            ),
        }
    }
}

/// `foo{app=httpbin,version=v1}`.
pub fn workload_name(namespace: &str, labels: &Labels) -> String {
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{namespace}{{{}}}", labels.join(","))
}

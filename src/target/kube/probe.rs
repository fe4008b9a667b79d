//! Requests sent from inside the mesh: `kubectl exec` into the caller's pod, container `probe`
//! (curl, rendered into every probe workload), and one curl request to the callee's Service. The
//! caller's app container talks plaintext to its own sidecar, which originates mTLS with the
//! caller's SVID; the callee's sidecar decides. What curl reports becomes the same
//! [`Observation`] the lab's probes produce, so the same checks judge it.
//!
//! ```text
//! kubectl exec -n NS deploy/CALLER -c probe -- curl -sS -o - -X METHOD --max-time 10
//!     -w '\n@@meshproof http_code=%{http_code} exitcode=%{exitcode} time_total=%{time_total}\n'
//!     http://CALLEE.NS.svc.cluster.local:PORT/PATH
//! ```
//!
//! curl's exit code classifies failures: 7 nothing accepted the connection (not attempted),
//! 52 empty reply, 56 reset (what a STRICT sidecar does to plaintext), 28 timed out. A missing
//! marker line means kubectl itself could not run the command: a harness error, not an
//! observation.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::json;

use super::KubeError;
use super::kubectl::Kubectl;
use super::tool::{SecretBytes, Stdin};
use crate::intents::ExpectedCall;
use crate::probe::{
    BODY_EXCERPT_BYTES, Observation, Outcome, RBAC_DENIED_BODY, RejectedBy, Sent, Transport,
};
use crate::profile::Profile;

/// The marker curl prints after the body.
pub const MARKER: &str = "@@meshproof";

/// Where probes are sent from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeConfig {
    /// The container with curl in each probe workload (the renderer's `probe`).
    pub container: String,
    /// Image of the pod used for requests from outside the mesh (no sidecar).
    pub outside_image: String,
    /// Namespace of that pod (created without sidecar injection).
    pub outside_namespace: String,
    /// curl's own `--max-time`.
    pub request_timeout: Duration,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            container: "probe".into(),
            outside_image: super::versions::PROBE_IMAGES
                .get(1)
                .copied()
                .unwrap_or("docker.io/curlimages/curl:8.11.1")
                .into(),
            outside_namespace: "meshproof-outside".into(),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Sends probes through kubectl.
#[derive(Debug)]
pub struct KubeProber {
    kubectl: Kubectl,
    config: ProbeConfig,
    addresses: Mutex<HashMap<(String, String), IpAddr>>,
}

/// One request to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeRequest {
    /// `deploy/NAME` or a pod name.
    pub from: String,
    pub from_namespace: String,
    /// The callee's Service.
    pub service: String,
    pub namespace: String,
    pub port: u16,
    pub method: String,
    pub path: String,
}

impl KubeRequest {
    /// The request an intent-matrix row asks for, from the caller's probe workload.
    pub fn for_call(profile: &Profile, call: &ExpectedCall) -> Result<KubeRequest, KubeError> {
        let unknown = |name: &str| KubeError::Input {
            what: format!("{} → {}", call.from, call.to),
            reason: format!("profile {} has no service {name}", profile.name),
        };
        let from = profile
            .service(&call.from)
            .ok_or_else(|| unknown(&call.from))?;
        let to = profile.service(&call.to).ok_or_else(|| unknown(&call.to))?;
        Ok(KubeRequest {
            from: format!("deploy/{}", from.name),
            from_namespace: from.namespace.clone(),
            service: to.name.clone(),
            namespace: to.namespace.clone(),
            port: call.port,
            method: call.method.clone(),
            path: call.path.clone(),
        })
    }

    pub fn url(&self) -> String {
        format!(
            "http://{}.{}.svc.cluster.local:{}{}",
            self.service, self.namespace, self.port, self.path
        )
    }
}

/// What a request from the outside-the-mesh pod presents to a workload's inbound listener.
#[derive(Clone, Debug)]
pub enum OutsidePeer {
    /// `http://`: no TLS at all.
    Plaintext,
    /// `https://` without a client certificate.
    NoCertificate,
    /// `https://` with a client certificate: `pem` holds the chain and its key, goes to the pod
    /// on kubectl's stdin into a temporary file that is removed right after the request.
    Certificate { label: String, pem: SecretBytes },
}

impl OutsidePeer {
    fn label(&self) -> String {
        match self {
            OutsidePeer::Plaintext => "plaintext".into(),
            OutsidePeer::NoCertificate => "no client certificate".into(),
            OutsidePeer::Certificate { label, .. } => label.clone(),
        }
    }

    fn transport(&self) -> Transport {
        match self {
            OutsidePeer::Plaintext => Transport::Plaintext,
            OutsidePeer::NoCertificate => Transport::Tls,
            OutsidePeer::Certificate { .. } => Transport::Mtls,
        }
    }
}

impl KubeProber {
    pub fn new(kubectl: Kubectl, config: ProbeConfig) -> Self {
        KubeProber {
            kubectl,
            config,
            addresses: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &ProbeConfig {
        &self.config
    }

    /// The curl command run in the probe container.
    pub fn curl_command(&self, request: &KubeRequest) -> Vec<String> {
        self.curl(&request.method, &[], request.url())
    }

    fn curl(&self, method: &str, options: &[&str], url: String) -> Vec<String> {
        let mut command: Vec<String> = ["curl", "-sS", "-o", "-", "-X"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        command.push(method.to_owned());
        command.push("--max-time".into());
        command.push(self.config.request_timeout.as_secs().max(1).to_string());
        command.extend(options.iter().map(|o| (*o).to_owned()));
        command.push("-w".into());
        command.push(format!(
            "\\n{MARKER} http_code=%{{http_code}} exitcode=%{{exitcode}} time_total=%{{time_total}}\\n"
        ));
        command.push(url);
        command
    }

    /// Sends `GET path` from the outside-the-mesh pod (no sidecar: what curl sends is what the
    /// workload's inbound listener sees) to `service`'s pod port, as `peer`. `-k`: the probe
    /// tests whether the server refuses *it*; whether it could verify the server's URI-only
    /// certificate is beside the point.
    pub fn send_outside(
        &self,
        service: &str,
        namespace: &str,
        port: u16,
        path: &str,
        peer: &OutsidePeer,
    ) -> Result<Observation, KubeError> {
        let scheme = match peer {
            OutsidePeer::Plaintext => "http",
            _ => "https",
        };
        let url = format!("{scheme}://{service}.{namespace}.svc.cluster.local:{port}{path}");
        let pod = "outside-probe";
        let ns = &self.config.outside_namespace;
        let timeout = self.kubectl.timeouts().probe();
        let out = match peer {
            OutsidePeer::Plaintext => self.kubectl.exec(
                ns,
                pod,
                &self.config.container,
                &self.curl("GET", &[], url.clone()),
                timeout,
            )?,
            OutsidePeer::NoCertificate => self.kubectl.exec(
                ns,
                pod,
                &self.config.container,
                &self.curl("GET", &["-k"], url.clone()),
                timeout,
            )?,
            OutsidePeer::Certificate { label, pem } => {
                // The curl arguments reach sh as positional parameters: nothing is re-quoted.
                let mut command: Vec<String> = [
                    "sh",
                    "-c",
                    "f=$(mktemp) && cat > \"$f\" && \"$@\" --cert \"$f\"; rm -f \"$f\"",
                    "sh",
                ]
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
                command.extend(self.curl("GET", &["-k"], url.clone()));
                self.kubectl.exec_stdin(
                    ns,
                    pod,
                    &self.config.container,
                    &command,
                    Stdin::Secret {
                        label: format!("client certificate and key of {label}"),
                        bytes: pem.clone(),
                    },
                    timeout,
                )?
            }
        };
        let sent = Sent {
            target: SocketAddr::new(self.address(service, namespace)?, port),
            method: "GET".into(),
            path: path.to_owned(),
            identity: peer.label(),
            transport: peer.transport(),
            sni: None,
        };
        parse_curl(sent, &out.stdout, &out.stderr, out.elapsed).ok_or_else(|| {
            KubeError::Tool(super::tool::ToolError::Failed {
                command: format!(
                    "kubectl exec -n {ns} {pod} -c {} -- curl … {url}",
                    self.config.container
                ),
                status: match out.code {
                    Some(c) => format!("exit {c}, no curl report"),
                    None => "killed, no curl report".into(),
                },
                stderr: super::tool::excerpt(&out.stderr),
            })
        })
    }

    /// Sends `request` once and classifies what came back.
    pub fn send(&self, request: &KubeRequest) -> Result<Observation, KubeError> {
        let target = SocketAddr::new(
            self.address(&request.service, &request.namespace)?,
            request.port,
        );
        let timeouts = self.kubectl.timeouts();
        let out = self.kubectl.exec(
            &request.from_namespace,
            &request.from,
            &self.config.container,
            &self.curl_command(request),
            timeouts.probe(),
        )?;
        let sent = Sent {
            target,
            method: request.method.clone(),
            path: request.path.clone(),
            identity: format!(
                "workload {}/{} through its sidecar",
                request.from_namespace,
                request.from.trim_start_matches("deploy/")
            ),
            transport: Transport::Plaintext,
            sni: None,
        };
        parse_curl(sent, &out.stdout, &out.stderr, out.elapsed).ok_or_else(|| {
            KubeError::Tool(super::tool::ToolError::Failed {
                command: format!(
                    "kubectl exec -n {} {} -c {} -- curl … {}",
                    request.from_namespace,
                    request.from,
                    self.config.container,
                    request.url()
                ),
                status: match out.code {
                    Some(c) => format!("exit {c}, no curl report"),
                    None => "killed, no curl report".into(),
                },
                stderr: super::tool::excerpt(&out.stderr),
            })
        })
    }

    /// The Service's cluster IP (cached), for the observation's target address; `0.0.0.0` for a
    /// headless Service.
    fn address(&self, service: &str, namespace: &str) -> Result<IpAddr, KubeError> {
        let key = (namespace.to_owned(), service.to_owned());
        if let Some(ip) = self
            .addresses
            .lock()
            .ok()
            .and_then(|a| a.get(&key).copied())
        {
            return Ok(ip);
        }
        let ip = self
            .kubectl
            .get_field("service", service, Some(namespace), "{.spec.clusterIP}")?
            .ok_or_else(|| KubeError::Input {
                what: format!("Service {namespace}/{service}"),
                reason: "not found: are the probe workloads applied?".into(),
            })?
            .trim()
            .parse::<IpAddr>()
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        if let Ok(mut addresses) = self.addresses.lock() {
            addresses.insert(key, ip);
        }
        Ok(ip)
    }

    /// The manifests of the pod used for requests from outside the mesh: a namespace with
    /// injection disabled and a curl pod in it (pass both to [`Kubectl::apply`], then wait for
    /// `pod/NAME` Ready).
    pub fn outside_pod_manifests(&self) -> Vec<serde_json::Value> {
        let ns = &self.config.outside_namespace;
        vec![
            json!({ "apiVersion": "v1", "kind": "Namespace",
                "metadata": { "name": ns, "labels": { "istio-injection": "disabled" } } }),
            json!({ "apiVersion": "v1", "kind": "Pod",
                "metadata": { "name": "outside-probe", "namespace": ns,
                    "labels": { "app": "outside-probe", "version": "v1", "sidecar.istio.io/inject": "false" } },
                "spec": { "containers": [{
                    "name": self.config.container,
                    "image": self.config.outside_image,
                    "command": ["sleep", "infinity"],
                    "resources": { "requests": { "cpu": "10m", "memory": "32Mi" },
                                   "limits": { "cpu": "100m", "memory": "64Mi" } },
                    "securityContext": { "privileged": false, "allowPrivilegeEscalation": false }
                }]}
            }),
        ]
    }
}

/// Reads curl's report (see the module docs) into an observation; `None` when there is no
/// report (kubectl could not run curl at all).
pub fn parse_curl(
    sent: Sent,
    stdout: &str,
    stderr: &str,
    elapsed: Duration,
) -> Option<Observation> {
    let marker_at = stdout.rfind(MARKER)?;
    let report = stdout[marker_at + MARKER.len()..].trim();
    let field = |name: &str| {
        report
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    };
    let status: u16 = field("http_code")?.parse().ok()?;
    let exit: i32 = field("exitcode")?.parse().ok()?;
    let latency = field("time_total")
        .and_then(|t| t.parse::<f64>().ok())
        .filter(|t| t.is_finite() && *t >= 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(elapsed);
    // curl's -w output starts with the newline we asked for.
    let body = stdout[..marker_at]
        .strip_suffix('\n')
        .unwrap_or(&stdout[..marker_at]);
    let curl_error = stderr
        .lines()
        .find(|l| l.starts_with("curl:"))
        .unwrap_or_else(|| stderr.trim())
        .to_owned();
    let (outcome, detail) = match exit {
        0 => {
            let mut end = body.len().min(BODY_EXCERPT_BYTES);
            while !body.is_char_boundary(end) {
                end -= 1;
            }
            (
                Outcome::Http {
                    status,
                    rbac_denied: status == 403 && body.trim() == RBAC_DENIED_BODY,
                    body_excerpt: body[..end].to_owned(),
                },
                None,
            )
        }
        7 => (Outcome::ConnectFailed(curl_error.clone()), Some(curl_error)),
        35 => (
            Outcome::TlsRejected {
                by: RejectedBy::Server,
                alert: None,
                description: curl_error.clone(),
            },
            Some(curl_error),
        ),
        56 => (Outcome::Reset, Some(curl_error)),
        52 => (
            Outcome::NoResponse,
            Some(format!("empty reply from the server: {curl_error}")),
        ),
        28 => (
            Outcome::NoResponse,
            Some(format!("timed out: {curl_error}")),
        ),
        other => (
            Outcome::NoResponse,
            Some(format!("curl exit {other}: {curl_error}")),
        ),
    };
    Some(Observation {
        sent,
        outcome,
        peer_seen: None,
        tls: None,
        latency,
        detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent() -> Sent {
        Sent {
            target: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 96, 0, 10)), 8080),
            method: "GET".into(),
            path: "/quotes/probe".into(),
            identity: "workload ui/ui through its sidecar".into(),
            transport: Transport::Plaintext,
            sni: None,
        }
    }

    #[test]
    fn an_envoy_rbac_denial_is_read_as_one() {
        let stdout =
            format!("RBAC: access denied\n{MARKER} http_code=403 exitcode=0 time_total=0.004211\n");
        let obs = parse_curl(sent(), &stdout, "", Duration::from_secs(1)).map(|o| o.outcome);
        assert_eq!(
            obs,
            Some(Outcome::Http {
                status: 403,
                body_excerpt: "RBAC: access denied".into(),
                rbac_denied: true
            })
        );
    }

    #[test]
    fn curl_failures_map_to_outcomes() {
        let report =
            |code: i32| format!("\n{MARKER} http_code=000 exitcode={code} time_total=0.1\n");
        let reset = parse_curl(
            sent(),
            &report(56),
            "curl: (56) Recv failure: Connection reset by peer\n",
            Duration::ZERO,
        );
        assert_eq!(reset.map(|o| o.outcome), Some(Outcome::Reset));
        let refused = parse_curl(
            sent(),
            &report(7),
            "curl: (7) Failed to connect",
            Duration::ZERO,
        );
        assert!(refused.is_some_and(|o| !o.outcome.attempted()));
    }

    #[test]
    fn no_report_means_kubectl_could_not_run_curl() {
        assert!(
            parse_curl(
                sent(),
                "",
                "Error from server (NotFound): deployments.apps \"ui\" not found",
                Duration::ZERO
            )
            .is_none()
        );
    }
}

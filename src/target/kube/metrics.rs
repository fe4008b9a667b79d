//! Metrics where Prometheus would scrape them, read through the API server's pod proxy (no
//! port-forward, no background process):
//!
//! ```text
//! kubectl get --raw /api/v1/namespaces/NS/pods/POD:PORT/proxy/metrics
//! kubectl exec -n NS POD -c istio-proxy -- pilot-agent request GET stats/prometheus   (sidecars)
//! ```
//!
//! istiod serves on 15014, Gatekeeper's controller on 8888, the SPIRE server (telemetry enabled
//! by the install) on 9988; sidecars' Envoy statistics (`envoy_http_rbac_allowed` / `_denied`,
//! `istio_requests_total`) come from pilot-agent.

use std::collections::BTreeMap;

use super::KubeError;
use super::install::{GATEKEEPER_NAMESPACE, SPIRE_NAMESPACE};
use super::kubectl::Kubectl;
use crate::profile::{IdentityProvider, Profile};

/// A metrics endpoint of a control-plane component.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Endpoint {
    pub component: &'static str,
    pub namespace: String,
    /// Label selector of the serving pods.
    pub selector: String,
    pub port: u16,
    pub path: &'static str,
}

/// The endpoints of `profile`'s stack.
pub fn endpoints(profile: &Profile) -> Vec<Endpoint> {
    let mut out = vec![Endpoint {
        component: "istiod",
        namespace: profile.control_plane_namespace.clone(),
        selector: "app=istiod".into(),
        port: 15014,
        path: "/metrics",
    }];
    if profile.admission.is_some() {
        out.push(Endpoint {
            component: "gatekeeper",
            namespace: GATEKEEPER_NAMESPACE.into(),
            selector: "control-plane=controller-manager".into(),
            port: 8888,
            path: "/metrics",
        });
    }
    if profile.provider == IdentityProvider::Spire {
        out.push(Endpoint {
            component: "spire-server",
            namespace: SPIRE_NAMESPACE.into(),
            selector: "app.kubernetes.io/name=server".into(),
            port: 9988,
            path: "/metrics",
        });
    }
    out
}

/// One sample of the Prometheus text format.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Scrapes `endpoint` (its first pod, by name) through the API server proxy.
pub fn scrape(kubectl: &Kubectl, endpoint: &Endpoint) -> Result<Vec<Sample>, KubeError> {
    let pod = kubectl.pod_name(&endpoint.namespace, &endpoint.selector)?;
    let path = format!(
        "/api/v1/namespaces/{}/pods/{pod}:{}/proxy{}",
        endpoint.namespace, endpoint.port, endpoint.path
    );
    let out = kubectl.run_ok(&kubectl.call(["get", "--raw", &path], kubectl.timeouts().call()))?;
    Ok(parse(&out.stdout))
}

/// A sidecar's Envoy statistics in Prometheus form.
pub fn scrape_sidecar(
    kubectl: &Kubectl,
    namespace: &str,
    pod: &str,
) -> Result<Vec<Sample>, KubeError> {
    let command: Vec<String> = ["pilot-agent", "request", "GET", "stats/prometheus"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let out = kubectl.exec(
        namespace,
        pod,
        "istio-proxy",
        &command,
        kubectl.timeouts().call(),
    )?;
    if !out.success() {
        return Err(KubeError::Tool(super::tool::ToolError::Failed {
            command: format!("pilot-agent stats of {namespace}/{pod}"),
            status: out
                .code
                .map(|c| format!("exit {c}"))
                .unwrap_or_else(|| "killed".into()),
            stderr: super::tool::excerpt(&out.stderr),
        }));
    }
    Ok(parse(&out.stdout))
}

/// Parses the Prometheus text exposition format (comments and malformed lines skipped).
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let close = line.rfind('}')?;
            (
                &line[..open],
                parse_labels(&line[open + 1..close])?,
                &line[close + 1..],
            )
        }
        None => {
            let split = line.find(char::is_whitespace)?;
            (&line[..split], BTreeMap::new(), &line[split..])
        }
    };
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

fn parse_labels(text: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(labels);
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        chars.next()?; // '='
        if chars.next()? != '"' {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(key.trim().to_owned(), value);
    }
}

/// The sum of every sample named `name` whose labels include all of `matching`.
pub fn sum(samples: &[Sample], name: &str, matching: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            matching
                .iter()
                .all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v))
        })
        .map(|s| s.value)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_is_parsed_with_labels_and_escapes() {
        let text = "# HELP istio_requests_total x\n# TYPE istio_requests_total counter\n\
            istio_requests_total{response_code=\"403\",source_workload=\"ui\",reporter=\"destination\"} 7\n\
            istio_requests_total{response_code=\"200\",source_workload=\"strategy\"} 12 1700000000000\n\
            envoy_http_rbac_denied{note=\"a \\\"quoted\\\" word\"} 3\n\
            pilot_xds_pushes 42\n";
        let samples = parse(text);
        assert_eq!(samples.len(), 4);
        assert_eq!(
            sum(
                &samples,
                "istio_requests_total",
                &[("response_code", "403")]
            ),
            7.0
        );
        assert_eq!(sum(&samples, "istio_requests_total", &[]), 19.0);
        assert_eq!(samples[2].labels["note"], "a \"quoted\" word");
        assert_eq!(sum(&samples, "pilot_xds_pushes", &[]), 42.0);
    }
}

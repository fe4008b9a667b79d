//! The certificates a sidecar really serves, read from Envoy itself — what
//! `istioctl proxy-config secret` shows:
//!
//! ```text
//! kubectl exec -n NS POD -c istio-proxy -- pilot-agent request GET config_dump?resource=dynamic_active_secrets
//! istioctl proxy-config secret POD.NS -o json          (when istioctl is installed)
//! ```
//!
//! Both print Envoy's secrets config dump: the SDS secret `default` holds the workload's chain
//! (`tls_certificate.certificate_chain.inline_bytes`, base64 of PEM) and `ROOTCA` the trust
//! bundle (`validation_context.trusted_ca.inline_bytes`). Envoy redacts private keys in config
//! dumps; this module reads certificate chains only and never keeps the raw output.

use serde_json::Value;

use super::KubeError;
use super::kubectl::Kubectl;
use super::tool::{Call, Program};
use crate::target::PresentedChain;

/// The SDS secret holding the workload certificate.
pub const WORKLOAD_SECRET: &str = "default";
/// The SDS secret holding the trust bundle.
pub const ROOT_SECRET: &str = "ROOTCA";

/// How to reach the sidecar's secrets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertSource {
    /// `kubectl exec … pilot-agent request GET config_dump…` (needs only kubectl).
    PilotAgent,
    /// `istioctl proxy-config secret POD.NS -o json`.
    Istioctl,
}

/// What a sidecar serves.
#[derive(Clone, Debug)]
pub struct SidecarSecrets {
    /// The workload chain (DER, leaf first), as the sidecar sends it.
    pub chain: Vec<Vec<u8>>,
    /// The roots the sidecar validates peers against (DER).
    pub roots: Vec<Vec<u8>>,
    /// Where it was read from, for evidence.
    pub source: String,
}

impl SidecarSecrets {
    pub fn presented(&self) -> PresentedChain {
        PresentedChain {
            chain: self.chain.clone(),
            source: self.source.clone(),
        }
    }
}

/// Reads the secrets of the sidecar in `pod` (namespace `namespace`).
pub fn read(
    kubectl: &Kubectl,
    namespace: &str,
    pod: &str,
    source: CertSource,
) -> Result<SidecarSecrets, KubeError> {
    let timeouts = kubectl.timeouts();
    let (out, from) = match source {
        CertSource::PilotAgent => {
            let command: Vec<String> = [
                "pilot-agent",
                "request",
                "GET",
                "config_dump?resource=dynamic_active_secrets",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
            let out = kubectl.exec(namespace, pod, "istio-proxy", &command, timeouts.call())?;
            (out, "pilot-agent config dump")
        }
        CertSource::Istioctl => {
            let mut args = kubectl.connection_args(Program::Istioctl);
            args.extend(
                [
                    "proxy-config",
                    "secret",
                    &format!("{pod}.{namespace}"),
                    "-o",
                    "json",
                ]
                .iter()
                .map(|s| (*s).to_owned()),
            );
            let out = kubectl
                .tools()
                .run(&Call::new(Program::Istioctl, args, timeouts.call()).sensitive_output())?;
            (out, "istioctl proxy-config secret")
        }
    };
    let what = format!("{from} of {namespace}/{pod}");
    if !out.success() {
        return Err(KubeError::Tool(super::tool::ToolError::Failed {
            command: what,
            status: out
                .code
                .map(|c| format!("exit {c}"))
                .unwrap_or_else(|| "killed".into()),
            stderr: super::tool::excerpt(&out.stderr),
        }));
    }
    parse(&out.stdout, &what)
}

/// Reads a secrets config dump (Envoy's snake_case or istioctl's camelCase).
pub fn parse(dump: &str, what: &str) -> Result<SidecarSecrets, KubeError> {
    let json: Value =
        serde_json::from_str(dump).map_err(|_| KubeError::parse(what, "not a JSON config dump"))?;
    let mut secrets = Vec::new();
    collect_secrets(&json, &mut secrets);
    let inline = |secret: &Value, path: &[&[&str]]| -> Option<String> {
        let mut node = secret;
        for alternatives in path {
            node = alternatives.iter().find_map(|key| node.get(*key))?;
        }
        node.as_str().map(str::to_owned)
    };
    let mut chain = None;
    let mut roots = Vec::new();
    for (name, secret) in &secrets {
        if name == WORKLOAD_SECRET {
            chain = inline(
                secret,
                &[
                    &["tls_certificate", "tlsCertificate"],
                    &["certificate_chain", "certificateChain"],
                    &["inline_bytes", "inlineBytes"],
                ],
            );
        } else if name == ROOT_SECRET {
            if let Some(b64) = inline(
                secret,
                &[
                    &["validation_context", "validationContext"],
                    &["trusted_ca", "trustedCa"],
                    &["inline_bytes", "inlineBytes"],
                ],
            ) {
                roots = decode_pem_chain(&b64, what)?;
            }
        }
    }
    let Some(chain) = chain else {
        return Err(KubeError::parse(
            what,
            format!(
                "no SDS secret {WORKLOAD_SECRET:?} with a certificate chain (is the sidecar ready?)"
            ),
        ));
    };
    Ok(SidecarSecrets {
        chain: decode_pem_chain(&chain, what)?,
        roots,
        source: format!("{what}, SDS secret {WORKLOAD_SECRET}"),
    })
}

fn decode_pem_chain(b64: &str, what: &str) -> Result<Vec<Vec<u8>>, KubeError> {
    let bytes = crate::report::text::from_base64(b64)
        .ok_or_else(|| KubeError::parse(what, "inline bytes are not base64"))?;
    let pem =
        String::from_utf8(bytes).map_err(|_| KubeError::parse(what, "inline bytes are not PEM"))?;
    let ders =
        crate::spiffe::parse_pem_chain(&pem).map_err(|e| KubeError::parse(what, e.to_string()))?;
    if ders.is_empty() {
        return Err(KubeError::parse(what, "the PEM holds no certificate"));
    }
    Ok(ders)
}

/// Every `{name, secret}` pair in a dump (active secrets, wherever the dump nests them).
fn collect_secrets<'a>(node: &'a Value, out: &mut Vec<(String, &'a Value)>) {
    match node {
        Value::Object(map) => {
            if let (Some(Value::String(name)), Some(secret)) = (map.get("name"), map.get("secret"))
            {
                out.push((name.clone(), secret));
            }
            for (key, value) in map {
                // Warming secrets are not served yet.
                if key != "dynamic_warming_secrets" && key != "dynamicWarmingSecrets" {
                    collect_secrets(value, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_secrets(item, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::text::base64;
    use serde_json::json;

    fn pem_of(pki: &crate::pki::Pki) -> (String, String) {
        let svid = pki
            .issue_workload_svid(
                "spiffe://tradepulse/prod/ui",
                time::OffsetDateTime::now_utc(),
            )
            .expect("issued");
        (svid.chain_pem().to_owned(), pki.root().pem().to_owned())
    }

    #[test]
    fn envoy_and_istioctl_dumps_both_yield_the_served_chain() {
        let spec = crate::pki::CaSpec::runbook("tradepulse", "TradePulse");
        let pki = crate::pki::Pki::generate(&spec, time::OffsetDateTime::now_utc()).expect("pki");
        let (chain, root) = pem_of(&pki);
        let envoy = json!({ "configs": [{
        "@type": "type.googleapis.com/envoy.admin.v3.SecretsConfigDump",
        "dynamic_active_secrets": [
            { "name": "default", "secret": { "name": "default", "tls_certificate": {
                "certificate_chain": { "inline_bytes": base64(chain.as_bytes()) },
                "private_key": { "inline_bytes": base64(b"[redacted]") } } } },
            { "name": "ROOTCA", "secret": { "name": "ROOTCA", "validation_context": {
                "trusted_ca": { "inline_bytes": base64(root.as_bytes()) } } } }
        ]}]});
        let istioctl = json!({ "dynamicActiveSecrets": [
            { "name": "default", "secret": { "tlsCertificate": {
                "certificateChain": { "inlineBytes": base64(chain.as_bytes()) } } } }
        ]});
        for dump in [envoy, istioctl] {
            let read = parse(&dump.to_string(), "test").map_err(|e| e.to_string());
            assert_eq!(read.as_ref().map(|s| s.chain.len()), Ok(2), "{dump}");
        }
    }

    #[test]
    fn a_dump_without_the_workload_secret_says_so() {
        let err = parse(r#"{"configs":[]}"#, "dump")
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert!(err.is_err_and(|e| e.contains("no SDS secret \"default\"")));
    }
}

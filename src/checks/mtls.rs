//! `mtls.strict` — security contract: where the profile requires STRICT mutual TLS, the
//! PeerAuthentication in force for every port of every workload (workload selector, then
//! namespace, then mesh-wide, Istio's precedence) is STRICT, so plaintext and identity-less
//! callers are refused. `mtls.destination-rule` — every service's DestinationRule, where one
//! exists, originates ISTIO_MUTUAL (a DISABLE or SIMPLE rule would send plaintext or drop the
//! client identity).

use crate::policy::istio::{self, ClientTlsMode, MeshPolicies, MtlsMode};
use crate::profile::{self, Profile, Role};

pub const STRICT: &str = "mtls.strict";
pub const DESTINATION_RULE: &str = "mtls.destination-rule";

type Outcome = Result<(String, Vec<(String, String)>), String>;

pub fn strict(profile: &Profile, policies: &MeshPolicies) -> Outcome {
    if profile.mtls != profile::MtlsMode::Strict {
        return Ok(("the profile does not require STRICT".into(), Vec::new()));
    }
    let mut evidence = Vec::new();
    for service in profile.services.iter().filter(|s| s.role != Role::Ingress) {
        let labels = [("app".to_owned(), service.name.clone())].into();
        for port in &service.ports {
            let (mode, by) = istio::mtls_mode(policies, &service.namespace, &labels, port.port);
            let by = by
                .map(|p| {
                    format!(
                        "{}/{} ({}:{})",
                        p.namespace,
                        p.name,
                        p.file.display(),
                        p.line
                    )
                })
                .unwrap_or_else(|| "Istio's default".into());
            if mode != MtlsMode::Strict {
                return Err(format!(
                    "{}:{} accepts {mode} traffic, set by {by}; the profile requires STRICT",
                    service.name, port.port
                ));
            }
            evidence.push((
                format!("{}:{}", service.name, port.port),
                format!("STRICT by {by}"),
            ));
        }
    }
    Ok((
        format!("STRICT on {} workload ports", evidence.len()),
        evidence,
    ))
}

pub fn destination_rules(profile: &Profile, policies: &MeshPolicies) -> Outcome {
    let mut evidence = Vec::new();
    for service in profile.services.iter().filter(|s| s.role != Role::Ingress) {
        let host = format!("{}.{}.svc.cluster.local", service.name, service.namespace);
        match istio::client_tls_mode(policies, &service.namespace, &host) {
            (Some(ClientTlsMode::IstioMutual) | None, by) => {
                let by = by
                    .map(|p| format!("{}/{}", p.namespace, p.name))
                    .unwrap_or_else(|| "auto mTLS".into());
                evidence.push((host, format!("ISTIO_MUTUAL by {by}")));
            }
            (Some(mode), by) => {
                let by = by
                    .map(|p| {
                        format!(
                            "{}/{} ({}:{})",
                            p.namespace,
                            p.name,
                            p.file.display(),
                            p.line
                        )
                    })
                    .unwrap_or_default();
                return Err(format!(
                    "traffic to {host} is originated as {mode} by {by}; expected ISTIO_MUTUAL"
                ));
            }
        }
    }
    Ok((
        format!("{} services originate ISTIO_MUTUAL", evidence.len()),
        evidence,
    ))
}

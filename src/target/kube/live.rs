//! What the live checklist steps observe on a cluster, in the same terms the lab gives them
//! ([`Observation`]s), so the same checks judge both.
//!
//! * **Bad peers** ([`bad_peers`]): requests to a workload's inbound listener from the
//!   outside-the-mesh pod (no sidecar, so what curl sends is what the listener sees): plaintext,
//!   TLS without a client certificate, and client certificates from a foreign CA, with an expired
//!   intermediate and from a foreign trust domain. The last two must chain to the mesh's own
//!   root to mean anything, so they are made only when this run installed the plug-in CA (kind,
//!   istio-ca profiles); otherwise they are listed as not produced, with why. The positive
//!   control is a request from another workload through its sidecar: the mesh's own SVID.
//! * **Request counters** ([`request_counts`]): the callee sidecar's `istio_requests_total` as
//!   the destination reports it (the metric the TradePulse runbook alerts on), split into served
//!   (2xx) and refused (403).

use time::OffsetDateTime;

use super::KubeError;
use super::metrics;
use super::probe::{KubeRequest, OutsidePeer};
use super::target::KubeTarget;
use super::tool::SecretBytes;
use crate::pki::{Chaos, Pki};
use crate::probe::Observation;
use crate::profile::Profile;

/// The requests that must be refused, and the control that must get through.
#[derive(Debug)]
pub struct BadPeers {
    /// (what was presented, what came back).
    pub sent: Vec<(String, Observation)>,
    /// (what could not be presented on this target, why).
    pub not_produced: Vec<(String, String)>,
    /// (the mesh identity used, what came back).
    pub control: (String, Observation),
}

/// Sends every bad peer to `service`'s inbound listener, and the control (see the module docs).
pub fn bad_peers(
    target: &KubeTarget,
    profile: &Profile,
    service: &str,
    now: OffsetDateTime,
) -> Result<BadPeers, KubeError> {
    let callee = profile.service(service).ok_or_else(|| KubeError::Input {
        what: format!("service {service}"),
        reason: format!("not in profile {}", profile.name),
    })?;
    let port = callee
        .ports
        .first()
        .map(|p| p.port)
        .ok_or_else(|| KubeError::Input {
            what: format!("service {service}"),
            reason: "declares no port".into(),
        })?;
    let caller = super::target::deployed_identities(profile)
        .into_iter()
        .find(|i| i.service != service)
        .ok_or_else(|| KubeError::Input {
            what: format!("profile {}", profile.name),
            reason: format!("has no other workload to call {service} from"),
        })?;
    let caller_id = caller.spiffe_id.to_string();
    let send =
        |peer: &OutsidePeer| target.send_outside(&callee.name, &callee.namespace, port, "/", peer);

    let mut sent = vec![
        ("plaintext".to_owned(), send(&OutsidePeer::Plaintext)?),
        (
            "no client certificate".to_owned(),
            send(&OutsidePeer::NoCertificate)?,
        ),
    ];
    // A complete chain under a root of our own: any CA but the mesh's.
    let foreign = Pki::generate(&crate::target::lab::ca_spec(profile), now)?;
    let what = format!("{caller_id} from a foreign CA");
    let pem = certificate(&foreign, Chaos::ForeignRoot, &caller_id, now)?;
    sent.push((what.clone(), send(&certificate_peer(&what, pem))?));

    let mesh_cases = [
        (
            Chaos::ExpiredIntermediate,
            format!("{caller_id} with an expired intermediate"),
        ),
        (
            Chaos::WrongTrustDomain,
            format!(
                "{} (foreign trust domain)",
                Chaos::foreign_trust_domain(profile.trust_domain.as_str())
            ),
        ),
    ];
    let mut not_produced = Vec::new();
    match target.installed_ca(profile) {
        Some(mesh) => {
            for (chaos, what) in mesh_cases {
                let pem = certificate(&mesh, chaos, &caller_id, now)?;
                sent.push((what.clone(), send(&certificate_peer(&what, pem))?));
            }
        }
        None => {
            for (_, what) in mesh_cases {
                not_produced.push((
                    what,
                    "needs the mesh CA's key to sign it, and this run did not install the CA \
                     (an existing cluster, or SPIRE's upstream authority): not sent"
                        .to_owned(),
                ));
            }
        }
    }

    let from = profile
        .service(&caller.service)
        .ok_or_else(|| KubeError::Input {
            what: format!("service {}", caller.service),
            reason: format!("not in profile {}", profile.name),
        })?;
    let control = target.send(&KubeRequest {
        from: format!("deploy/{}", from.name),
        from_namespace: from.namespace.clone(),
        service: callee.name.clone(),
        namespace: callee.namespace.clone(),
        port,
        method: "GET".into(),
        path: "/".into(),
    })?;
    Ok(BadPeers {
        sent,
        not_produced,
        control: (caller_id, control),
    })
}

fn certificate(
    pki: &Pki,
    chaos: Chaos,
    spiffe_id: &str,
    now: OffsetDateTime,
) -> Result<SecretBytes, KubeError> {
    let svid = pki.issue_chaos(chaos, spiffe_id, now)?;
    let mut pem = svid.chain_pem().to_owned();
    pem.push_str(&svid.key().secret_pem());
    Ok(SecretBytes::new(pem.into_bytes()))
}

fn certificate_peer(label: &str, pem: SecretBytes) -> OutsidePeer {
    OutsidePeer::Certificate {
        label: label.to_owned(),
        pem,
    }
}

/// Requests the callee's sidecar has counted, as the destination.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// `istio_requests_total{reporter="destination"}` with a 2xx `response_code`.
    pub served: u64,
    /// … with `response_code="403"`.
    pub refused: u64,
}

/// Reads the counters of `service`'s sidecar.
pub fn request_counts(
    target: &KubeTarget,
    profile: &Profile,
    service: &str,
) -> Result<RequestCounts, KubeError> {
    let svc = profile.service(service).ok_or_else(|| KubeError::Input {
        what: format!("service {service}"),
        reason: format!("not in profile {}", profile.name),
    })?;
    let kubectl = target.kubectl();
    let pod = kubectl.pod_name(&svc.namespace, &format!("app={}", svc.name))?;
    let samples = metrics::scrape_sidecar(kubectl, &svc.namespace, &pod)?;
    let destination: Vec<&metrics::Sample> = samples
        .iter()
        .filter(|s| s.name == "istio_requests_total")
        .filter(|s| s.labels.get("reporter").is_some_and(|r| r == "destination"))
        .collect();
    let count = |keep: &dyn Fn(&str) -> bool| -> u64 {
        destination
            .iter()
            .filter(|s| s.labels.get("response_code").is_some_and(|c| keep(c)))
            .map(|s| s.value.max(0.0) as u64)
            .sum()
    };
    Ok(RequestCounts {
        served: count(&|c| c.starts_with('2')),
        refused: count(&|c| c == "403"),
    })
}

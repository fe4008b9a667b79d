//! Verdicts on what an external client observed at an ingress gateway.
//!
//! `ingress.chain` — security contract: an external HTTPS request for the profile's external host
//! was answered with a certificate for that host name that is not a mesh identity (no URI SAN),
//! and crossed every hop of the runbook's chain: each service's app was reached, and each saw
//! exactly the SPIFFE ID of the hop before it (the first: the ingress gateway's own), as the
//! callee's sidecar verified it over mTLS. A refusal on the way (e.g. a callee's RBAC `403`)
//! fails the check and names the hop that refused whom.
//!
//! `ingress.refuses` — the gateway itself turned away, before anything reached the mesh: a
//! plaintext request on its HTTPS port (no HTTP answer at all), a ClientHello for another host
//! name (the handshake ends on the gateway's side, before it shows any certificate), and a
//! request for another `Host` over the right TLS (a non-2xx answer that no app produced).
//! Nothing accepting the connection proves nothing and is never a pass.

use crate::probe::{Outcome, RejectedBy};
use crate::target::lab::external::ExternalObservation;
use crate::target::lab::ingress::LOCAL_REPLY_HEADER;

pub const CHAIN: &str = "ingress.chain";
pub const REFUSES: &str = "ingress.refuses";

type Verdict = Result<(String, Vec<(String, String)>), String>;

/// One hop of the chain: the service (as its app names itself) and the SPIFFE ID it calls the
/// next hop with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hop {
    pub service: String,
    pub spiffe_id: String,
}

fn latency(o: &ExternalObservation) -> String {
    format!("{:.1}", o.latency.as_secs_f64() * 1e3)
}

/// `ingress.chain` (see the module docs). `gateway_id` is the ingress gateway's SPIFFE ID and
/// `hops` the services after it, in call order.
pub fn judge_chain(host: &str, gateway_id: &str, hops: &[Hop], o: &ExternalObservation) -> Verdict {
    if !o.outcome.attempted() {
        return Err(format!("nothing accepted the connection: {}", o.outcome));
    }
    let Some(cert) = &o.server_cert else {
        return Err(format!(
            "no TLS session with the gateway for {host}: {}",
            o.outcome
        ));
    };
    if !cert.dns_names.iter().any(|d| d == host) || !cert.uris.is_empty() {
        return Err(format!(
            "the gateway presented a certificate for DNS {:?} / URI {:?}, not a host certificate for {host}",
            cert.dns_names, cert.uris
        ));
    }
    let Some(reply) = &o.reply else {
        let who = hops.first().map_or("the mesh", |h| h.service.as_str());
        return Err(match (&o.outcome, o.header(LOCAL_REPLY_HEADER)) {
            (_, Some(gateway)) => format!(
                "the ingress gateway ({gateway}) answered itself, never calling {who}: {}",
                o.outcome
            ),
            (
                Outcome::Http {
                    rbac_denied: true, ..
                },
                None,
            ) => format!(
                "{who} refused the ingress gateway ({gateway_id}): {}",
                o.outcome
            ),
            (other, None) => format!("the request never reached {who}: {other}"),
        });
    };
    if let Some((at, hop)) = reply.broken_hop() {
        let why = hop.detail.as_deref().unwrap_or_default();
        return Err(format!(
            "{} could not call {}: HTTP {} {why:?}",
            at.service, hop.to, hop.status
        ));
    }
    let seen = reply.hops();
    let mut evidence = vec![
        ("host".to_owned(), host.to_owned()),
        ("server_serial".to_owned(), cert.serial_hex.clone()),
        ("tls_version".to_owned(), cert.tls_version.clone()),
        ("from".to_owned(), "external".to_owned()),
        ("latency_ms".to_owned(), latency(o)),
    ];
    let mut previous = gateway_id;
    let mut path = vec![format!("external →TLS→ ingress ({gateway_id})")];
    for (i, want) in hops.iter().enumerate() {
        let Some(got) = seen.get(i) else {
            return Err(format!(
                "the chain ended at {}; {} was never called",
                seen.last().map_or("the gateway", |h| h.service.as_str()),
                want.service
            ));
        };
        if got.service != want.service {
            return Err(format!(
                "hop {} was served by {}, not {}",
                i + 1,
                got.service,
                want.service
            ));
        }
        if got.peer.as_deref() != Some(previous) {
            return Err(format!(
                "{} saw its caller as {:?}, not {previous}",
                got.service, got.peer
            ));
        }
        evidence.push((
            format!("hop{}", i + 1),
            format!("{} ← {previous}", got.service),
        ));
        path.push(format!("{} ({})", got.service, want.spiffe_id));
        previous = &want.spiffe_id;
    }
    if !o.outcome.is_success() {
        return Err(format!(
            "every hop answered, but the gateway returned {}",
            o.outcome
        ));
    }
    Ok((
        format!(
            "https://{host}{} → HTTP 200 in {} ms through {}; each hop saw the one before it over mTLS",
            seen.first().map_or("", |h| h.path.as_str()),
            latency(o),
            path.join(" →mTLS→ ")
        ),
        evidence,
    ))
}

/// `ingress.refuses` for plaintext on the HTTPS port: no HTTP answer at all.
pub fn judge_plaintext_refused(o: &ExternalObservation) -> Verdict {
    match &o.outcome {
        Outcome::ConnectFailed(why) => Err(format!("nothing accepted the connection: {why}")),
        Outcome::Http { status, .. } => Err(format!(
            "the gateway answered plaintext on its HTTPS port with HTTP {status}{}",
            if o.reply.is_some() {
                ", from an app inside the mesh"
            } else {
                ""
            }
        )),
        other => Ok((
            format!("plaintext refused: {other}"),
            vec![
                ("transport".into(), "plaintext".into()),
                ("outcome".into(), other.to_string()),
            ],
        )),
    }
}

/// `ingress.refuses` for a ClientHello naming `sni`, a host the gateway does not serve: the
/// handshake must end on the gateway's side before it shows a certificate.
pub fn judge_other_sni_refused(sni: &str, o: &ExternalObservation) -> Verdict {
    if let Some(cert) = &o.server_cert {
        return Err(format!(
            "the gateway completed a TLS handshake for {sni} with its certificate for {:?}: {}",
            cert.dns_names, o.outcome
        ));
    }
    match &o.outcome {
        Outcome::ConnectFailed(why) => Err(format!("nothing accepted the connection: {why}")),
        Outcome::TlsRejected {
            by: RejectedBy::Client,
            description,
            ..
        } => Err(format!(
            "the gateway showed a certificate for {sni} that this client refused ({description}): \
             it answers a handshake for a host it does not serve"
        )),
        Outcome::Http { status, .. } => Err(format!("SNI {sni} was answered with HTTP {status}")),
        other => Ok((
            format!("TLS for {sni} refused by the gateway: {other}"),
            vec![
                ("sni".into(), sni.to_owned()),
                ("outcome".into(), other.to_string()),
            ],
        )),
    }
}

/// `ingress.refuses` for `Host: host` (a host the gateway does not serve) over TLS for the right
/// name: a non-2xx answer from the gateway, with no app's reply in it.
pub fn judge_other_host_refused(host: &str, o: &ExternalObservation) -> Verdict {
    match (&o.outcome, &o.reply) {
        (Outcome::ConnectFailed(why), _) => Err(format!("nothing accepted the connection: {why}")),
        (_, Some(reply)) => Err(format!(
            "Host {host} reached {} inside the mesh: {}",
            reply.service, o.outcome
        )),
        (outcome, None) if outcome.is_success() => {
            Err(format!("Host {host} was answered {outcome}"))
        }
        (Outcome::Http { status, .. }, None) if o.header(LOCAL_REPLY_HEADER).is_none() => {
            Err(format!(
                "Host {host} was answered HTTP {status} from inside the mesh, not by the gateway"
            ))
        }
        (Outcome::Http { status, .. }, None) => Ok((
            format!("Host {host} answered HTTP {status} by the gateway; no app was reached"),
            vec![
                ("host".into(), host.to_owned()),
                ("outcome".into(), o.outcome.to_string()),
            ],
        )),
        (other, None) => Err(format!(
            "Host {host}: {other}; the gateway should answer it itself (no route), over the TLS it serves"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::lab::echo::{EchoReply, Forwarded};
    use crate::target::lab::external::PresentedServerCert;
    use std::time::Duration;

    const GW: &str = "spiffe://td/ns/istio-system/sa/ingress";
    const API: &str = "spiffe://td/ns/app/sa/api";

    fn reply(service: &str, peer: &str, next: Option<Forwarded>) -> EchoReply {
        EchoReply {
            service: service.into(),
            method: "POST".into(),
            path: "/v1/x".into(),
            peer: Some(peer.into()),
            forwarded: next.map(Box::new),
        }
    }

    fn observed(status: u16, reply: Option<EchoReply>) -> ExternalObservation {
        let local = status == 404 && reply.is_none();
        ExternalObservation {
            outcome: Outcome::Http {
                status,
                body_excerpt: String::new(),
                rbac_denied: status == 403 && reply.is_none(),
            },
            headers: if local {
                vec![(LOCAL_REPLY_HEADER.into(), "gw".into())]
            } else {
                vec![]
            },
            body: String::new(),
            reply,
            server_cert: Some(PresentedServerCert {
                serial_hex: "01".into(),
                dns_names: vec!["h.example".into()],
                uris: vec![],
                tls_version: "TLSv1_3".into(),
            }),
            latency: Duration::from_millis(3),
            detail: None,
        }
    }

    fn hops() -> Vec<Hop> {
        vec![
            Hop {
                service: "api".into(),
                spiffe_id: API.into(),
            },
            Hop {
                service: "orch".into(),
                spiffe_id: "spiffe://td/ns/app/sa/orch".into(),
            },
        ]
    }

    #[test]
    fn a_whole_chain_with_the_right_peers_passes() {
        let orch = reply("orch", API, None);
        let api = reply(
            "api",
            GW,
            Some(Forwarded {
                to: "orch".into(),
                status: 200,
                reply: Some(orch),
                detail: None,
            }),
        );
        let (summary, evidence) =
            judge_chain("h.example", GW, &hops(), &observed(200, Some(api))).unwrap();
        assert!(summary.contains("orch"), "{summary}");
        assert!(evidence.iter().any(|(k, v)| k == "hop2" && v.contains(API)));
    }

    #[test]
    fn refusals_and_wrong_peers_name_the_hop() {
        let denied = judge_chain("h.example", GW, &hops(), &observed(403, None)).unwrap_err();
        assert!(
            denied.contains("api refused the ingress gateway"),
            "{denied}"
        );
        let api = reply(
            "api",
            GW,
            Some(Forwarded {
                to: "orch".into(),
                status: 403,
                reply: None,
                detail: Some("RBAC: access denied".into()),
            }),
        );
        let broken = judge_chain("h.example", GW, &hops(), &observed(403, Some(api))).unwrap_err();
        assert!(
            broken.contains("api could not call orch: HTTP 403"),
            "{broken}"
        );
        let impostor = reply("api", "spiffe://td/ns/x/sa/x", None);
        let wrong =
            judge_chain("h.example", GW, &hops(), &observed(200, Some(impostor))).unwrap_err();
        assert!(wrong.contains("saw its caller"), "{wrong}");
        let short = judge_chain(
            "h.example",
            GW,
            &hops(),
            &observed(200, Some(reply("api", GW, None))),
        )
        .unwrap_err();
        assert!(short.contains("orch was never called"), "{short}");
        let mut mesh_cert = observed(200, None);
        if let Some(c) = mesh_cert.server_cert.as_mut() {
            c.uris = vec![GW.into()];
        }
        assert!(judge_chain("h.example", GW, &hops(), &mesh_cert).is_err());
    }

    #[test]
    fn refusal_checks_fail_on_answers_and_on_nothing_listening() {
        let mut closed = observed(200, None);
        closed.server_cert = None;
        closed.outcome = Outcome::NoResponse;
        assert!(judge_plaintext_refused(&closed).is_ok());
        assert!(judge_plaintext_refused(&observed(200, None)).is_err());
        closed.outcome = Outcome::TlsRejected {
            by: RejectedBy::Server,
            alert: None,
            description: "closed".into(),
        };
        assert!(judge_other_sni_refused("x.example", &closed).is_ok());
        // A certificate shown for another name is the gateway's fault, whoever ended it.
        let mut shown = observed(200, None);
        shown.outcome = Outcome::TlsRejected {
            by: RejectedBy::Client,
            alert: None,
            description: "NotValidForName".into(),
        };
        assert!(judge_other_sni_refused("x.example", &shown).is_err());
        assert!(judge_other_host_refused("x.example", &observed(404, None)).is_ok());
        // A 404 some app inside the mesh made is not the gateway refusing.
        let mut inside = observed(404, None);
        inside.headers.clear();
        assert!(judge_other_host_refused("x.example", &inside).is_err());
        let reached = observed(200, Some(reply("api", GW, None)));
        assert!(judge_other_host_refused("x.example", &reached).is_err());
        let nothing = ExternalObservation {
            outcome: Outcome::ConnectFailed("refused".into()),
            ..closed
        };
        assert!(judge_plaintext_refused(&nothing).is_err());
        assert!(judge_other_sni_refused("x.example", &nothing).is_err());
        assert!(judge_other_host_refused("x.example", &nothing).is_err());
    }
}

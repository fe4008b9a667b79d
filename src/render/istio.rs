//! Istio security resources for a profile.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Value, json};

use crate::profile::{Decision, Intent, MtlsMode, Profile, Role, Service};

/// The namespace Istio treats as mesh-wide: where its control plane runs.
pub fn root_namespace(profile: &Profile) -> &str {
    &profile.control_plane_namespace
}

pub fn peer_authentication(profile: &Profile) -> Vec<Value> {
    let mode = match profile.mtls {
        MtlsMode::Strict => "STRICT",
        MtlsMode::Permissive => "PERMISSIVE",
    };
    vec![json!({
        "apiVersion": "security.istio.io/v1",
        "kind": "PeerAuthentication",
        "metadata": { "name": "default", "namespace": root_namespace(profile) },
        "spec": { "mtls": { "mode": mode } }
    })]
}

pub fn destination_rules(profile: &Profile) -> Vec<Value> {
    profile
        .services
        .iter()
        .filter(|s| s.role != Role::Ingress)
        .map(|s| {
            json!({
                "apiVersion": "networking.istio.io/v1",
                "kind": "DestinationRule",
                "metadata": { "name": s.name, "namespace": s.namespace },
                "spec": {
                    "host": format!("{}.{}.svc.cluster.local", s.name, s.namespace),
                    "trafficPolicy": { "tls": { "mode": "ISTIO_MUTUAL" } }
                }
            })
        })
        .collect()
}

/// Istio principals name a SPIFFE ID without its scheme. A service's workload qualifiers
/// (`strategy/optimizer`) are covered by a suffix-wildcard principal.
fn principals(profile: &Profile, service: &Service, environment: Option<&str>) -> Vec<String> {
    let Ok(id) = profile.schema.render(service, None, environment) else {
        return Vec::new();
    };
    let base = id.to_string().trim_start_matches("spiffe://").to_owned();
    let mut out = vec![base.clone()];
    if !service.workloads.is_empty() {
        out.push(format!("{base}/*"));
    }
    out
}

fn operation(callee: &Service, intent: &Intent) -> Vec<Value> {
    let ports: Vec<String> = callee.ports.iter().map(|p| p.port.to_string()).collect();
    let endpoints: Vec<_> = callee
        .endpoints
        .iter()
        .filter(|e| intent.endpoints.is_empty() || intent.endpoints.contains(&e.name))
        .collect();
    if intent.endpoints.is_empty() && intent.decision == Decision::Deny {
        // "deny every endpoint": match on port only, so the DENY covers paths not listed too.
        return vec![json!({ "operation": { "ports": ports } })];
    }
    endpoints
        .into_iter()
        .map(
            |e| json!({ "operation": { "ports": ports, "paths": [e.path], "methods": e.methods } }),
        )
        .collect()
}

fn rule(
    profile: &Profile,
    caller: &Service,
    callee: &Service,
    intent: &Intent,
    environment: Option<&str>,
) -> Value {
    json!({
        "from": [{ "source": { "principals": principals(profile, caller, environment) } }],
        "to": operation(callee, intent)
    })
}

pub fn authorization_policies(profile: &Profile, environment: Option<&str>) -> Vec<Value> {
    let mut out = Vec::new();
    let namespaces: BTreeSet<&str> = profile
        .services
        .iter()
        .map(|s| s.namespace.as_str())
        .collect();
    for namespace in namespaces {
        // Allow-nothing: an ALLOW policy with no rules, so only explicit ALLOW rules admit traffic.
        out.push(json!({
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": { "name": "allow-nothing", "namespace": namespace },
            "spec": {}
        }));
    }
    // Grouped once, so rendering stays linear in services + intents.
    let by_name: HashMap<&str, &Service> = profile
        .services
        .iter()
        .map(|s| (s.name.as_str(), s))
        .collect();
    let mut by_callee: HashMap<&str, Vec<&Intent>> = HashMap::new();
    for intent in &profile.intents {
        by_callee
            .entry(intent.to.as_str())
            .or_default()
            .push(intent);
    }
    for service in &profile.services {
        let selector = json!({ "matchLabels": { "app": service.name } });
        if service.role == Role::Ingress {
            // The ingress gateway is where external (non-mesh) traffic enters: allow its listener ports.
            let ports: Vec<String> = service.ports.iter().map(|p| p.port.to_string()).collect();
            out.push(json!({
                "apiVersion": "security.istio.io/v1",
                "kind": "AuthorizationPolicy",
                "metadata": { "name": format!("{}-external", service.name), "namespace": service.namespace },
                "spec": { "selector": selector, "action": "ALLOW", "rules": [{ "to": [{ "operation": { "ports": ports } }] }] }
            }));
            continue;
        }
        for (decision, action, suffix) in [
            (Decision::Deny, "DENY", "denied-intents"),
            (Decision::Allow, "ALLOW", "intents"),
        ] {
            let rules: Vec<Value> = by_callee
                .get(service.name.as_str())
                .into_iter()
                .flatten()
                .filter(|i| i.decision == decision)
                .filter_map(|i| {
                    let caller = by_name.get(i.from.as_str())?;
                    Some(rule(profile, caller, service, i, environment))
                })
                .collect();
            if rules.is_empty() {
                continue;
            }
            out.push(json!({
                "apiVersion": "security.istio.io/v1",
                "kind": "AuthorizationPolicy",
                "metadata": { "name": format!("{}-{suffix}", service.name), "namespace": service.namespace },
                "spec": { "selector": selector, "action": action, "rules": rules }
            }));
        }
    }
    out
}

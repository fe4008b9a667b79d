//! The intent matrix: every request a profile makes a promise about, with the decision it promised.
//!
//! For every caller → callee pair of services, every endpoint of the callee and every method:
//! allowed exactly when an allow intent covers that endpoint and the method is one the endpoint
//! serves; everything else is denied (the runbooks' "anything not allowed is denied"). On top, for
//! each endpoint one method it does not serve (denied: access must be as narrow as promised).
//! Static prediction (`verify`) and live probes (lab, kind) judge the same list; `verify` judges
//! every pair an intent names and a default-deny sample of the others (see
//! [`crate::verify::sample`]), built pair by pair with [`calls_between`].

use std::collections::HashMap;

use serde::Serialize;

use crate::profile::{Decision, Endpoint, Intent, Profile, Role, Service};
use crate::spiffe::SpiffeId;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExpectedCall {
    pub from: String,
    pub to: String,
    /// The callee's namespace, where the policies that decide the call live.
    pub to_namespace: String,
    /// The caller's identity in the lab environment.
    pub principal: SpiffeId,
    pub endpoint: String,
    pub method: String,
    /// A concrete path inside the endpoint's pattern (`/quotes/*` → `/quotes/probe`).
    pub path: String,
    pub port: u16,
    pub expected: Decision,
    /// The profile line that promised it, or `None` for the default deny.
    pub intent_line: Option<u32>,
    pub why: String,
}

impl ExpectedCall {
    /// `ui → execution POST /orders/probe`
    pub fn label(&self) -> String {
        format!("{} → {} {} {}", self.from, self.to, self.method, self.path)
    }
}

/// A request path inside an Istio path pattern.
pub fn sample_path(pattern: &str) -> String {
    if let Some(prefix) = pattern.strip_suffix('*') {
        format!("{prefix}probe")
    } else if let Some(suffix) = pattern.strip_prefix('*') {
        format!("/probe{suffix}")
    } else {
        pattern.to_owned()
    }
}

/// A method the endpoint does not serve, to prove access is no wider than promised.
fn unserved_method(endpoint: &Endpoint) -> Option<&'static str> {
    ["DELETE", "PATCH", "PUT", "POST", "GET"]
        .into_iter()
        .find(|m| !endpoint.methods.iter().any(|x| x == m))
}

/// The intents of a profile filed by caller → callee, so finding those of one pair is a lookup,
/// not a scan of every intent.
pub struct IntentIndex<'a> {
    /// caller → callee → intents.
    by_caller: HashMap<&'a str, HashMap<&'a str, Vec<&'a Intent>>>,
}

impl<'a> IntentIndex<'a> {
    pub fn new(profile: &'a Profile) -> IntentIndex<'a> {
        let mut by_caller: HashMap<&str, HashMap<&str, Vec<&Intent>>> = HashMap::new();
        for intent in &profile.intents {
            by_caller
                .entry(intent.from.as_str())
                .or_default()
                .entry(intent.to.as_str())
                .or_default()
                .push(intent);
        }
        IntentIndex { by_caller }
    }

    /// The intents from `from` to `to`, in profile order.
    fn between(&self, from: &str, to: &str) -> &[&'a Intent] {
        self.by_caller
            .get(from)
            .and_then(|callees| callees.get(to))
            .map_or(&[], Vec::as_slice)
    }

    fn covering(
        &self,
        from: &str,
        to: &str,
        endpoint: &str,
        decision: Decision,
    ) -> Option<&'a Intent> {
        self.between(from, to).iter().copied().find(|i| {
            i.decision == decision
                && (i.endpoints.is_empty() || i.endpoints.iter().any(|e| e == endpoint))
        })
    }
}

pub fn matrix(profile: &Profile) -> Vec<ExpectedCall> {
    let intents = IntentIndex::new(profile);
    let mut out = Vec::new();
    for caller in &profile.services {
        let Some(principal) = profile.lab_identity(caller) else {
            continue;
        };
        for callee in &profile.services {
            calls_between(&intents, caller, &principal, callee, &mut out);
        }
    }
    out
}

/// Appends the requests from `caller` (as `principal`) to `callee`: every endpoint and method,
/// plus one unserved method per allowed endpoint. Nothing for a service calling itself or an
/// ingress callee (the ingress gateway is called from outside the mesh).
pub fn calls_between(
    intents: &IntentIndex<'_>,
    caller: &Service,
    principal: &SpiffeId,
    callee: &Service,
    out: &mut Vec<ExpectedCall>,
) {
    if caller.name == callee.name || callee.role == Role::Ingress {
        return;
    }
    for endpoint in &callee.endpoints {
        push_endpoint(intents, caller, callee, endpoint, principal, out);
    }
}

fn push_endpoint(
    intents: &IntentIndex<'_>,
    caller: &Service,
    callee: &Service,
    endpoint: &Endpoint,
    principal: &SpiffeId,
    out: &mut Vec<ExpectedCall>,
) {
    let port = callee.ports.first().map(|p| p.port).unwrap_or(0);
    let allow = intents.covering(&caller.name, &callee.name, &endpoint.name, Decision::Allow);
    let deny = intents.covering(&caller.name, &callee.name, &endpoint.name, Decision::Deny);
    let call =
        |method: &str, expected: Decision, intent: Option<&Intent>, why: String| ExpectedCall {
            from: caller.name.clone(),
            to: callee.name.clone(),
            to_namespace: callee.namespace.clone(),
            principal: principal.clone(),
            endpoint: endpoint.name.clone(),
            method: method.to_owned(),
            path: sample_path(&endpoint.path),
            port,
            expected,
            intent_line: intent.map(|i| i.line),
            why,
        };
    for method in &endpoint.methods {
        out.push(match (allow, deny) {
            (Some(i), _) => call(method, Decision::Allow, Some(i), i.reason.clone()),
            (None, Some(i)) => call(method, Decision::Deny, Some(i), i.reason.clone()),
            (None, None) => call(
                method,
                Decision::Deny,
                None,
                "not allowed, so denied".to_owned(),
            ),
        });
    }
    if allow.is_some() {
        if let Some(method) = unserved_method(endpoint) {
            out.push(call(
                method,
                Decision::Deny,
                None,
                format!(
                    "{} does not serve {method} on {}",
                    callee.name, endpoint.path
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tradepulse() -> Profile {
        crate::profile::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("manifests/tradepulse/profile.yaml"),
        )
        .unwrap()
    }

    #[test]
    fn every_runbook_row_is_in_the_matrix_with_its_decision() {
        let m = matrix(&tradepulse());
        let find = |from: &str, to: &str, path: &str, method: &str| {
            m.iter()
                .find(|c| c.from == from && c.to == to && c.path == path && c.method == method)
                .map(|c| c.expected)
        };
        assert_eq!(
            find("strategy", "execution", "/quotes/probe", "GET"),
            Some(Decision::Allow)
        );
        assert_eq!(
            find("strategy", "execution", "/orders/probe", "POST"),
            Some(Decision::Deny)
        );
        assert_eq!(
            find("ui", "execution", "/oms/probe", "GET"),
            Some(Decision::Deny)
        );
        assert_eq!(
            find("observability", "ui", "/metrics", "GET"),
            Some(Decision::Allow)
        );
        assert_eq!(
            find("ingestion", "strategy", "/features/probe", "POST"),
            Some(Decision::Allow)
        );
        // Narrowness: the endpoint serves POST only, so DELETE is denied even for the allowed caller.
        assert_eq!(
            find("ingestion", "strategy", "/features/probe", "DELETE"),
            Some(Decision::Deny)
        );
    }

    #[test]
    fn sample_paths_fall_inside_their_patterns() {
        assert_eq!(sample_path("/quotes/*"), "/quotes/probe");
        assert_eq!(sample_path("/ready"), "/ready");
        assert_eq!(sample_path("*/health"), "/probe/health");
    }
}

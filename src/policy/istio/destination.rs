//! The TLS a client sidecar originates towards a host, decided by DestinationRules as istiod
//! looks them up (`PushContext.destinationRule`), reduced to what meshproof models:
//!
//! 1. rules in the client's namespace (unless it is the root namespace) visible there (`exportTo`
//!    empty, `*`, `.` or naming it), then
//! 2. rules in the service's namespace (read from `<svc>.<ns>.svc.<domain>`) exported to the
//!    client's namespace (`exportTo` empty, `*`, or naming it), then
//! 3. rules in the root namespace exported to the client's namespace.
//!
//! Within a step the most specific host wins (exact over wildcard, longer wildcard first); among
//! rules for the same host the oldest one with a `trafficPolicy` decides (istiod merges the
//! others' subsets only). A short host (`reviews`) means `reviews.<rule namespace>.svc.<domain>`.
//! Not modelled (reported at load time): `workloadSelector` rules, `portLevelSettings`, subset
//! policies, and istiod's default-exportTo mesh setting (assumed `*`).

use super::model::{ClientTlsMode, DestinationRule, MeshPolicies, PolicyRef};

/// The client-side TLS mode for `host` as called from `client_namespace`. `(None, None)`: no
/// DestinationRule applies and Istio's auto mTLS decides (ISTIO_MUTUAL towards sidecars).
/// `(None, Some(rule))`: the deciding rule sets no `tls.mode`, so auto mTLS decides as well.
pub fn client_tls_mode(
    config: &MeshPolicies,
    client_namespace: &str,
    host: &str,
) -> (Option<ClientTlsMode>, Option<PolicyRef>) {
    let domain = &config.mesh.domain_suffix;
    let root = config.mesh.root_namespace.as_str();
    let host = if host.contains('.') {
        host.to_owned()
    } else {
        format!("{host}.{client_namespace}.svc.{domain}")
    };
    let service_namespace = service_namespace(&host, domain);

    let mut steps: Vec<(&str, bool)> = Vec::new();
    if client_namespace != root {
        steps.push((client_namespace, true));
    }
    if let Some(ns) = service_namespace.filter(|ns| *ns != client_namespace) {
        steps.push((ns, false));
    }
    steps.push((root, client_namespace == root));

    for (namespace, local) in steps {
        let candidates: Vec<&DestinationRule> = config
            .destination_rules
            .iter()
            .filter(|dr| dr.meta.namespace == namespace && !dr.has_workload_selector)
            .filter(|dr| visible(dr, client_namespace, local))
            .filter(|dr| host_matches(&resolve(dr, domain), &host))
            .collect();
        let Some(best) = candidates
            .iter()
            .map(|dr| resolve(dr, domain))
            .max_by_key(|h| specificity(h))
        else {
            continue;
        };
        let same_host: Vec<&&DestinationRule> = candidates
            .iter()
            .filter(|dr| resolve(dr, domain) == best)
            .collect();
        let decider = same_host
            .iter()
            .find(|dr| dr.has_traffic_policy)
            .or(same_host.first());
        if let Some(dr) = decider {
            let mut by = PolicyRef::of(&dr.meta);
            by.detail_line = Some(dr.tls_line);
            return (dr.tls_mode, Some(by));
        }
    }
    (None, None)
}

fn service_namespace<'h>(host: &'h str, domain: &str) -> Option<&'h str> {
    let rest = host.strip_suffix(domain)?.strip_suffix(".svc.")?;
    let (_, ns) = rest.rsplit_once('.')?;
    Some(ns)
}

/// The rule's host as istiod resolves it.
fn resolve(dr: &DestinationRule, domain: &str) -> String {
    if dr.host.contains('.') || dr.host.starts_with('*') {
        dr.host.clone()
    } else {
        format!("{}.{}.svc.{domain}", dr.host, dr.meta.namespace)
    }
}

fn visible(dr: &DestinationRule, client_namespace: &str, local: bool) -> bool {
    if dr.export_to.is_empty() {
        return true;
    }
    dr.export_to.iter().any(|e| {
        e == "*"
            || e == client_namespace
            || (local && (e == "." || *e == dr.meta.namespace))
            || (e == "." && dr.meta.namespace == client_namespace)
    })
}

fn host_matches(rule_host: &str, host: &str) -> bool {
    match rule_host.strip_prefix('*') {
        Some(suffix) => host.ends_with(suffix),
        None => rule_host == host,
    }
}

/// Exact hosts beat wildcards; longer wildcards beat shorter ones.
fn specificity(host: &str) -> (bool, usize) {
    (!host.starts_with('*'), host.len())
}

//! The AuthorizationPolicies of a configuration, prepared once for deciding many requests: filed
//! by namespace and by one label of their workload selector (so finding those that apply to a
//! workload looks only at its namespace's policies that could select it), and each rule
//! translated for a filter chain the first time a request needs it (istiod translates once per
//! push, not per request). Deciding n requests then costs n × (the policies of one workload), not
//! n × (every policy of the mesh).

use std::collections::HashMap;
use std::sync::OnceLock;

use super::model::{AuthorizationPolicy, Labels, MeshPolicies};
use super::request::Protocol;
use super::select::selects;
use super::translate::{self, Dropped, Gen, GenRule};
use super::trust;

/// One rule as istiod generates it for one kind of filter chain, or why it was left out.
pub(super) type Generated = Result<GenRule, Dropped>;

pub struct PolicyIndex<'a> {
    config: &'a MeshPolicies,
    namespaces: HashMap<&'a str, NamespacePolicies<'a>>,
    /// The mesh trust domain and its aliases.
    bundle: Vec<String>,
    /// Per policy (creation order), its rules for HTTP and for TCP filter chains.
    generated: Vec<[OnceLock<Vec<Generated>>; 2]>,
}

/// Positions (creation order) in [`MeshPolicies::authorization_policies`].
#[derive(Default)]
struct NamespacePolicies<'a> {
    /// No selector, or an empty one: every workload of the namespace.
    everyone: Vec<usize>,
    /// A selector: filed under its first label, which every workload it selects must carry.
    by_label: HashMap<(&'a str, &'a str), Vec<usize>>,
}

impl<'a> PolicyIndex<'a> {
    pub fn new(config: &'a MeshPolicies) -> PolicyIndex<'a> {
        let mut namespaces: HashMap<&str, NamespacePolicies> = HashMap::new();
        for (i, p) in config.authorization_policies.iter().enumerate() {
            // Policies with targetRefs never apply to a sidecar (Istio binds them to Gateways and
            // waypoints only).
            if !p.target_refs.is_empty() {
                continue;
            }
            let filed = namespaces.entry(p.meta.namespace.as_str()).or_default();
            match p.selector.as_ref().and_then(|s| s.iter().next()) {
                Some((k, v)) => filed
                    .by_label
                    .entry((k.as_str(), v.as_str()))
                    .or_default()
                    .push(i),
                None => filed.everyone.push(i),
            }
        }
        PolicyIndex {
            config,
            namespaces,
            bundle: trust::bundle(&config.mesh),
            generated: config
                .authorization_policies
                .iter()
                .map(|_| Default::default())
                .collect(),
        }
    }

    pub(super) fn bundle(&self) -> &[String] {
        &self.bundle
    }

    /// The AuthorizationPolicies that apply to a sidecar workload: those of the root namespace
    /// (mesh wide) and of the workload's namespace whose selector selects it. Order: root
    /// namespace first, then the workload's namespace, each in creation order.
    pub fn applicable(&self, namespace: &str, labels: &Labels) -> Vec<&'a AuthorizationPolicy> {
        self.applicable_positions(namespace, labels)
            .into_iter()
            .map(|i| self.policy(i))
            .collect()
    }

    /// [`Self::applicable`], as positions.
    pub(super) fn applicable_positions(&self, namespace: &str, labels: &Labels) -> Vec<usize> {
        let root = self.config.mesh.root_namespace.as_str();
        let namespaces = [Some(root), (namespace != root).then_some(namespace)];
        let mut out = Vec::new();
        for ns in namespaces.into_iter().flatten() {
            let Some(filed) = self.namespaces.get(ns) else {
                continue;
            };
            let start = out.len();
            out.extend_from_slice(&filed.everyone);
            for (k, v) in labels {
                if let Some(found) = filed.by_label.get(&(k.as_str(), v.as_str())) {
                    out.extend_from_slice(found);
                }
            }
            out[start..].sort_unstable();
        }
        out.retain(|&i| selects(self.policy(i).selector.as_ref(), labels));
        out
    }

    pub(super) fn policy(&self, position: usize) -> &'a AuthorizationPolicy {
        &self.config.authorization_policies[position]
    }

    /// The rules of the policy at `position` for a filter chain of `protocol`. A policy without
    /// rules is istiod's never-matching policy.
    pub(super) fn generated(&self, position: usize, protocol: Protocol) -> &[Generated] {
        let for_tcp = protocol == Protocol::Tcp;
        self.generated[position][usize::from(for_tcp)].get_or_init(|| {
            let policy = self.policy(position);
            if policy.rules.is_empty() {
                return vec![Ok(GenRule::match_never())];
            }
            let g = Gen {
                for_tcp,
                action: policy.action,
                policy_namespace: &policy.meta.namespace,
                trust_bundle: Some(&self.bundle),
            };
            policy
                .rules
                .iter()
                .map(|rule| translate::generate(rule, &g))
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests_eval::policies;
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn names(found: Vec<&AuthorizationPolicy>) -> Vec<&str> {
        found.iter().map(|p| p.meta.name.as_str()).collect()
    }

    #[test]
    fn selectors_with_several_labels_root_policies_and_order_survive_the_filing() {
        let config = policies(
            r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: b-two-labels, namespace: foo }
spec:
  selector: { matchLabels: { app: httpbin, version: v1 } }
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: a-namespace-wide, namespace: foo }
spec: { rules: [{}] }
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: c-mesh-wide, namespace: istio-system }
spec: { action: DENY, rules: [{ from: [{ source: { notPrincipals: ["*"] } }] }] }
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: d-other-version, namespace: foo }
spec:
  selector: { matchLabels: { app: httpbin, version: v2 } }
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: e-gateway, namespace: foo }
spec:
  targetRefs: [{ kind: Gateway, group: gateway.networking.k8s.io, name: gw }]
  rules: [{}]
"#,
        );
        let index = PolicyIndex::new(&config);
        assert_eq!(
            names(index.applicable("foo", &labels(&[("app", "httpbin"), ("version", "v1")]))),
            ["c-mesh-wide", "a-namespace-wide", "b-two-labels"]
        );
        assert_eq!(
            names(index.applicable("foo", &labels(&[("app", "httpbin")]))),
            ["c-mesh-wide", "a-namespace-wide"]
        );
        assert_eq!(
            names(index.applicable("bar", &labels(&[("app", "httpbin")]))),
            ["c-mesh-wide"]
        );
    }
}

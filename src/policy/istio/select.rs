//! Which configured objects apply to a workload, as istiod decides it
//! (`WorkloadPolicyMatcher.ShouldAttachPolicy`, `ListAuthorizationPolicies`).

use super::model::{AuthorizationPolicy, Labels, MeshPolicies};

/// Whether `selector` selects a workload with `labels`: no selector selects every workload, and
/// so does an empty `matchLabels`; otherwise every selector label must be on the workload.
pub fn selects(selector: Option<&Labels>, labels: &Labels) -> bool {
    selector.is_none_or(|s| s.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// The AuthorizationPolicies that apply to a sidecar workload: those of the root namespace (mesh
/// wide) and of the workload's namespace, whose selector selects it. Policies with `targetRefs`
/// never apply to a sidecar (Istio binds them to Gateways and waypoints only). Order: root
/// namespace first, then the workload's namespace, each in creation order.
pub fn authorization_policies<'a>(
    config: &'a MeshPolicies,
    namespace: &str,
    labels: &Labels,
) -> Vec<&'a AuthorizationPolicy> {
    let root = config.mesh.root_namespace.as_str();
    let mut namespaces = vec![root];
    if namespace != root {
        namespaces.push(namespace);
    }
    namespaces
        .into_iter()
        .flat_map(|ns| {
            config
                .authorization_policies
                .iter()
                .filter(move |p| p.meta.namespace == ns)
        })
        .filter(|p| p.target_refs.is_empty() && selects(p.selector.as_ref(), labels))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_semantics() {
        let labels: Labels = [
            ("app".to_owned(), "httpbin".to_owned()),
            ("version".to_owned(), "v1".to_owned()),
        ]
        .into_iter()
        .collect();
        assert!(selects(None, &labels));
        assert!(selects(Some(&Labels::new()), &labels));
        let s: Labels = [("app".to_owned(), "httpbin".to_owned())]
            .into_iter()
            .collect();
        assert!(selects(Some(&s), &labels));
        let s: Labels = [("app".to_owned(), "other".to_owned())]
            .into_iter()
            .collect();
        assert!(!selects(Some(&s), &labels));
    }
}

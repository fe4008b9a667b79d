//! The mTLS mode a workload's sidecar accepts on a port, composed as istiod's
//! `ComposePeerAuthentication` does: workload selector > namespace > mesh (root namespace) >
//! default PERMISSIVE; `UNSET` inherits from the next wider scope; `portLevelMtls` (workload
//! policies only) overrides per port, an `UNSET` port inheriting the workload's mode. Within one
//! scope the oldest policy wins (see [`MeshPolicies`] for the order).

use super::model::{Labels, MeshPolicies, MtlsMode, PeerAuthentication, PolicyRef};
use super::select::selects;

/// Resolves the mode for `port` of a workload; never returns [`MtlsMode::Unset`]. The policy is
/// the one whose setting is in force (`None` = Istio's default, PERMISSIVE).
pub fn mtls_mode(
    config: &MeshPolicies,
    workload_namespace: &str,
    labels: &Labels,
    port: u16,
) -> (MtlsMode, Option<PolicyRef>) {
    let root = config.mesh.root_namespace.as_str();
    let wide = |pa: &&PeerAuthentication| pa.selector.as_ref().is_none_or(|s| s.is_empty());
    let in_ns = |ns: &str| -> Vec<&PeerAuthentication> {
        config
            .peer_authentications
            .iter()
            .filter(|pa| pa.meta.namespace == ns)
            .collect()
    };
    let mesh = in_ns(root).into_iter().find(wide);
    let namespace = (workload_namespace != root)
        .then(|| in_ns(workload_namespace).into_iter().find(wide))
        .flatten();
    let workload = (workload_namespace != root)
        .then(|| {
            in_ns(workload_namespace)
                .into_iter()
                .filter(|pa| !wide(pa))
                .find(|pa| selects(pa.selector.as_ref(), labels))
        })
        .flatten();

    let mut mode = MtlsMode::Permissive;
    let mut by = None;
    for pa in [mesh, namespace, workload].into_iter().flatten() {
        if pa.mode != MtlsMode::Unset {
            mode = pa.mode;
            by = Some(PolicyRef::of(&pa.meta));
        }
    }
    if let Some(pa) = workload {
        // An UNSET port inherits the workload's resolved mode, and its author.
        if let Some(port_mtls) = pa
            .port_level
            .get(&port)
            .filter(|p| p.mode != MtlsMode::Unset)
        {
            mode = port_mtls.mode;
            let mut r = PolicyRef::of(&pa.meta);
            r.detail_line = Some(port_mtls.line);
            by = Some(r);
        }
    }
    (mode, by)
}

//! Component health from the workload controllers' own status, as `kubectl rollout status`
//! judges it: a Deployment is healthy when its controller has seen the latest spec and every
//! replica is updated and available; a DaemonSet when every scheduled node runs an updated, ready
//! pod; a StatefulSet when every replica is updated and ready. The runbook's checklist items
//! ("Istio control plane running (istiod)", "SPIRE server running", "SPIRE agents running on all
//! nodes", Gatekeeper's controller and audit) are these components.

use serde_json::Value;

use super::KubeError;
use super::install::{GATEKEEPER_NAMESPACE, INGRESS_RELEASE, SPIRE_NAMESPACE};
use super::kubectl::Kubectl;
use crate::profile::{IdentityProvider, Profile, Role};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum WorkloadKind {
    Deployment,
    DaemonSet,
    StatefulSet,
}

impl WorkloadKind {
    pub fn resource(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "deployment",
            WorkloadKind::DaemonSet => "daemonset",
            WorkloadKind::StatefulSet => "statefulset",
        }
    }
}

/// A control-plane component the runbook promises.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Component {
    /// What the runbook calls it.
    pub role: &'static str,
    pub kind: WorkloadKind,
    pub namespace: String,
    pub name: String,
}

/// What the controller reports.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Health {
    pub component: Component,
    pub desired: i64,
    pub ready: i64,
    pub updated: i64,
    pub healthy: bool,
    /// Why not, or a summary (`3/3 ready, 3 updated`).
    pub detail: String,
}

/// The components `profile`'s stack runs, where [`super::install`] puts them.
pub fn expected_components(profile: &Profile) -> Vec<Component> {
    let component = |role, kind, namespace: &str, name: &str| Component {
        role,
        kind,
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    };
    let mut out = vec![component(
        "Istio control plane (istiod)",
        WorkloadKind::Deployment,
        &profile.control_plane_namespace,
        "istiod",
    )];
    if let Some(ingress) = profile.services.iter().find(|s| s.role == Role::Ingress) {
        out.push(component(
            "ingress gateway",
            WorkloadKind::Deployment,
            &ingress.namespace,
            INGRESS_RELEASE,
        ));
    }
    if profile.admission.is_some() {
        out.push(component(
            "Gatekeeper controller (admission webhook)",
            WorkloadKind::Deployment,
            GATEKEEPER_NAMESPACE,
            "gatekeeper-controller-manager",
        ));
        out.push(component(
            "Gatekeeper audit",
            WorkloadKind::Deployment,
            GATEKEEPER_NAMESPACE,
            "gatekeeper-audit",
        ));
    }
    if profile.provider == IdentityProvider::Spire {
        out.push(component(
            "SPIRE server (with controller manager)",
            WorkloadKind::StatefulSet,
            SPIRE_NAMESPACE,
            "spire-server",
        ));
        out.push(component(
            "SPIRE agents (every node)",
            WorkloadKind::DaemonSet,
            SPIRE_NAMESPACE,
            "spire-agent",
        ));
        out.push(component(
            "SPIFFE CSI driver (every node)",
            WorkloadKind::DaemonSet,
            SPIRE_NAMESPACE,
            "spire-spiffe-csi-driver",
        ));
    }
    out
}

/// Reads one component's status.
pub fn read(kubectl: &Kubectl, component: &Component) -> Result<Health, KubeError> {
    let object = kubectl.get_json(
        component.kind.resource(),
        Some(&component.name),
        Some(&component.namespace),
    )?;
    Ok(judge(component.clone(), &object))
}

/// Judges a controller object's status (see the module docs).
pub fn judge(component: Component, object: &Value) -> Health {
    let int = |path: &str| object.pointer(path).and_then(Value::as_i64).unwrap_or(0);
    let generation = int("/metadata/generation");
    let observed = int("/status/observedGeneration");
    let (desired, ready, updated, available) = match component.kind {
        WorkloadKind::Deployment => (
            object
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1),
            int("/status/readyReplicas"),
            int("/status/updatedReplicas"),
            int("/status/availableReplicas"),
        ),
        WorkloadKind::DaemonSet => {
            let ready = int("/status/numberReady");
            (
                int("/status/desiredNumberScheduled"),
                ready,
                int("/status/updatedNumberScheduled"),
                int("/status/numberAvailable"),
            )
        }
        WorkloadKind::StatefulSet => {
            let ready = int("/status/readyReplicas");
            (
                object
                    .pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1),
                ready,
                int("/status/updatedReplicas"),
                ready,
            )
        }
    };
    let mut problems = Vec::new();
    if observed < generation {
        problems.push(format!(
            "controller has not observed generation {generation} yet (at {observed})"
        ));
    }
    if desired == 0 {
        problems.push("no replica desired or scheduled".to_owned());
    }
    if updated < desired {
        problems.push(format!("{updated}/{desired} updated"));
    }
    if ready < desired {
        problems.push(format!("{ready}/{desired} ready"));
    }
    if available < desired {
        problems.push(format!("{available}/{desired} available"));
    }
    let healthy = problems.is_empty();
    let detail = if healthy {
        format!("{ready}/{desired} ready, {updated} updated")
    } else {
        problems.join(", ")
    };
    Health {
        component,
        desired,
        ready,
        updated,
        healthy,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn component(kind: WorkloadKind) -> Component {
        Component {
            role: "test",
            kind,
            namespace: "spire-system".into(),
            name: "x".into(),
        }
    }

    #[test]
    fn a_daemonset_is_healthy_only_on_every_scheduled_node() {
        let object = json!({ "metadata": { "generation": 2 }, "status": {
            "observedGeneration": 2, "desiredNumberScheduled": 2, "numberReady": 1,
            "updatedNumberScheduled": 2, "numberAvailable": 1 } });
        let health = judge(component(WorkloadKind::DaemonSet), &object);
        assert!(!health.healthy);
        assert_eq!(health.detail, "1/2 ready, 1/2 available");
    }

    #[test]
    fn a_deployment_mid_rollout_is_not_healthy() {
        let object = json!({ "metadata": { "generation": 3 }, "spec": { "replicas": 1 },
            "status": { "observedGeneration": 2, "readyReplicas": 1, "updatedReplicas": 1, "availableReplicas": 1 } });
        let health = judge(component(WorkloadKind::Deployment), &object);
        assert!(!health.healthy);
        assert!(health.detail.contains("generation 3"));
        let ready = json!({ "metadata": { "generation": 3 }, "spec": { "replicas": 1 },
            "status": { "observedGeneration": 3, "readyReplicas": 1, "updatedReplicas": 1, "availableReplicas": 1 } });
        assert!(judge(component(WorkloadKind::Deployment), &ready).healthy);
    }
}

//! Namespaces, probe workloads and SPIRE registrations for a profile.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Value, json};

use crate::profile::{Profile, Role, Service};

/// Probe images, pinned, from a registry the SomaAgentHub registry policy allows (`docker.io/`):
/// an echo server that answers as the service, and curl for probes sent from inside the pod.
pub const ECHO_IMAGE: &str = "docker.io/hashicorp/http-echo:1.0.0";
pub const CURL_IMAGE: &str = "docker.io/curlimages/curl:8.11.1";

pub fn namespaces(profile: &Profile) -> Vec<Value> {
    let namespaces: BTreeSet<&str> = profile
        .services
        .iter()
        .filter(|s| s.role != Role::Ingress)
        .map(|s| s.namespace.as_str())
        .collect();
    namespaces
        .into_iter()
        .map(|ns| {
            json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": { "name": ns, "labels": { "istio-injection": "enabled" } }
            })
        })
        .collect()
}

/// Resources every probe container declares, so the probes pass the required-resources policy.
fn resources() -> Value {
    json!({ "requests": { "cpu": "10m", "memory": "32Mi" }, "limits": { "cpu": "100m", "memory": "64Mi" } })
}

pub fn workloads(profile: &Profile) -> Vec<Value> {
    let mut out = Vec::new();
    for service in profile.services.iter().filter(|s| s.role != Role::Ingress) {
        let labels = json!({ "app": service.name, "version": "v1" });
        let port = service.ports.first().map(|p| p.port).unwrap_or(8080);
        let security = json!({ "privileged": false, "allowPrivilegeEscalation": false });
        out.push(json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": { "name": service.service_account, "namespace": service.namespace }
        }));
        out.push(json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": { "name": service.name, "namespace": service.namespace, "labels": labels },
            "spec": {
                "replicas": 1,
                "selector": { "matchLabels": { "app": service.name } },
                "template": {
                    "metadata": { "labels": labels },
                    "spec": {
                        "serviceAccountName": service.service_account,
                        "containers": [
                            {
                                "name": "app",
                                "image": ECHO_IMAGE,
                                "args": [format!("-listen=:{port}"), format!("-text={}", service.name)],
                                "ports": [{ "containerPort": port }],
                                "resources": resources(),
                                "securityContext": security
                            },
                            {
                                "name": "probe",
                                "image": CURL_IMAGE,
                                "command": ["sleep", "infinity"],
                                "resources": resources(),
                                "securityContext": security
                            }
                        ]
                    }
                }
            }
        }));
        let ports: Vec<Value> = service
            .ports
            .iter()
            .map(|p| json!({ "name": p.name, "port": p.port, "targetPort": p.port }))
            .collect();
        out.push(json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": { "name": service.name, "namespace": service.namespace, "labels": { "app": service.name } },
            "spec": { "selector": { "app": service.name }, "ports": ports }
        }));
    }
    out
}

/// SPIRE controller-manager registrations: one ClusterSPIFFEID per entry, pinning the exact ID the
/// profile promises to the pods of that service.
pub fn spire_registrations(profile: &Profile) -> Vec<Value> {
    let Some(spire) = &profile.spire else {
        return Vec::new();
    };
    let by_name: HashMap<&str, &Service> = profile
        .services
        .iter()
        .map(|s| (s.name.as_str(), s))
        .collect();
    spire
        .entries
        .iter()
        .filter_map(|entry| {
            let service = by_name.get(entry.service.as_str())?;
            Some(json!({
                "apiVersion": "spire.spiffe.io/v1alpha1",
                "kind": "ClusterSPIFFEID",
                "metadata": { "name": format!("{}-{}", service.namespace, service.name) },
                "spec": {
                    "spiffeIDTemplate": entry.spiffe_id.to_string(),
                    "podSelector": { "matchLabels": { "app": service.name } },
                    "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": service.namespace } },
                    "workloadSelectorTemplates": entry.selectors,
                    "ttl": crate::duration::format(entry.ttl)
                }
            }))
        })
        .collect()
}

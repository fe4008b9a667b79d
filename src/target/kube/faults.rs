//! Faults through the API, each with its undo: the object's state is read *before* the fault and
//! written back after it (`kubectl replace` from stdin), then the affected component is waited
//! for until it is ready again. An [`Undo`] that is dropped without [`Undo::restore`] restores
//! on drop (best effort, and says so), so a failing drill still leaves the mesh as it found it.
//!
//! On an existing cluster (`--target cluster`) every fault is refused unless the run allows
//! destructive scenarios; on kind the cluster is the run's own.
//!
//! | fault | injected by | restored by |
//! |---|---|---|
//! | [`Fault::ReplacePluginCa`] | `apply` of other CA material as `cacerts` (stdin), `rollout restart deployment/istiod` | `replace` of the secret read before (stdin), restart, rollout |
//! | [`Fault::RestartDeployment`] | `rollout restart` | rollout status |
//! | [`Fault::DeletePod`] | `delete pod --wait=false` | `wait --for=delete`, then the owner's rollout |
//! | [`Fault::Patch`] | `patch --type merge` | `replace` of the object read before |

use std::time::Instant;

use serde_json::{Value, json};

use super::KubeError;
use super::applicability::TargetKind;
use super::install::CACERTS_SECRET;
use super::kubectl::{Kubectl, restorable};
use super::tool::SecretBytes;

/// Plug-in CA material to swap in (PEM). The key is secret.
#[derive(Clone, Debug)]
pub struct PluginCaMaterial {
    pub ca_cert_pem: String,
    pub ca_key_pem: SecretBytes,
    pub root_cert_pem: String,
    pub cert_chain_pem: String,
}

impl PluginCaMaterial {
    /// Reads Istio's plug-in CA files (as [`crate::pki::Pki::write_plugin_ca`] writes them).
    pub fn from_files(files: &crate::pki::PluginCaFiles) -> Result<Self, KubeError> {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(KubeError::io(format!("reading {}", p.display())))
        };
        let text = |p: &std::path::Path| -> Result<String, KubeError> {
            String::from_utf8(read(p)?)
                .map_err(|_| KubeError::parse(p.display().to_string(), "not PEM text"))
        };
        Ok(PluginCaMaterial {
            ca_cert_pem: text(&files.ca_cert)?,
            ca_key_pem: SecretBytes::new(read(&files.ca_key)?),
            root_cert_pem: text(&files.root_cert)?,
            cert_chain_pem: text(&files.cert_chain)?,
        })
    }
}

/// A fault to inject.
#[derive(Clone, Debug)]
pub enum Fault {
    /// The CA drill: istiod signs with other material (an expired or foreign intermediate).
    ReplacePluginCa {
        namespace: String,
        material: PluginCaMaterial,
    },
    /// `kubectl rollout restart`, e.g. istiod.
    RestartDeployment { namespace: String, name: String },
    /// Delete a pod its controller will recreate, e.g. `spire-server-0`.
    DeletePod { namespace: String, name: String },
    /// A JSON merge patch on any object (never for secret data: the patch is on the command
    /// line).
    Patch {
        kind: String,
        name: String,
        namespace: Option<String>,
        patch: Value,
    },
}

impl Fault {
    /// For reports and refusals.
    pub fn describe(&self) -> String {
        match self {
            Fault::ReplacePluginCa { namespace, .. } => {
                format!(
                    "replace the plug-in CA secret {namespace}/{CACERTS_SECRET} and restart istiod"
                )
            }
            Fault::RestartDeployment { namespace, name } => {
                format!("restart deployment {namespace}/{name}")
            }
            Fault::DeletePod { namespace, name } => format!("delete pod {namespace}/{name}"),
            Fault::Patch {
                kind,
                name,
                namespace,
                ..
            } => match namespace {
                Some(ns) => format!("patch {kind} {ns}/{name}"),
                None => format!("patch {kind} {name}"),
            },
        }
    }
}

/// Who may inject faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gate {
    pub target: TargetKind,
    pub allow_destructive: bool,
}

impl Gate {
    pub fn check(&self, what: &str) -> Result<(), KubeError> {
        if self.target == TargetKind::Cluster && !self.allow_destructive {
            Err(KubeError::DestructiveRefused {
                what: what.to_owned(),
            })
        } else {
            Ok(())
        }
    }
}

/// The state read before a fault, and how to return to it.
#[derive(Debug)]
enum Before {
    /// Write this object back (`secret`: from stdin as a secret); `None`: it did not exist, so
    /// delete what the fault created.
    Object {
        kind: String,
        name: String,
        namespace: Option<String>,
        object: Option<Value>,
        secret: bool,
    },
    /// Nothing to write back; wait for the component.
    Nothing,
}

/// What to wait for after restoring.
#[derive(Clone, Debug)]
enum Settle {
    Rollout {
        resource: String,
        namespace: String,
    },
    PodGoneThenRollout {
        pod: String,
        namespace: String,
        owner: Option<String>,
    },
    Nothing,
}

/// An injected fault's undo. Restore it with [`Undo::restore`]; dropping it restores too.
#[derive(Debug)]
pub struct Undo {
    kubectl: Kubectl,
    what: String,
    before: Before,
    /// Done after restoring the state (e.g. restart istiod to load the old CA).
    restart: Option<(String, String)>,
    settle: Settle,
    injected_at: Instant,
    restored: bool,
}

/// What a restore did.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Restored {
    pub what: String,
    /// From injection to ready again.
    pub fault_duration_ms: u128,
}

/// Injects `fault`, recording the state it changes first.
pub fn inject(kubectl: &Kubectl, gate: Gate, fault: &Fault) -> Result<Undo, KubeError> {
    let what = fault.describe();
    gate.check(&what)?;
    let tools = kubectl.tools();
    let timeouts = kubectl.timeouts();
    tools.say(&format!("fault: {what}"));
    let undo = |before, restart, settle| Undo {
        kubectl: kubectl.clone(),
        what: what.clone(),
        before,
        restart,
        settle,
        injected_at: Instant::now(),
        restored: false,
    };
    match fault {
        Fault::ReplacePluginCa {
            namespace,
            material,
        } => {
            let before = read_before(kubectl, "secret", CACERTS_SECRET, Some(namespace), true)?;
            let b64 = |bytes: &[u8]| Value::String(crate::report::text::base64(bytes));
            let secret = json!({
                "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": { "name": CACERTS_SECRET, "namespace": namespace },
                "data": {
                    "ca-cert.pem": b64(material.ca_cert_pem.as_bytes()),
                    "ca-key.pem": b64(material.ca_key_pem.expose()),
                    "root-cert.pem": b64(material.root_cert_pem.as_bytes()),
                    "cert-chain.pem": b64(material.cert_chain_pem.as_bytes()),
                }
            });
            let undo = undo(
                before,
                Some(("deployment/istiod".to_owned(), namespace.clone())),
                Settle::Rollout {
                    resource: "deployment/istiod".into(),
                    namespace: namespace.clone(),
                },
            );
            kubectl.apply_secret(
                &format!("Secret {namespace}/{CACERTS_SECRET} (fault)"),
                &secret,
            )?;
            restart(kubectl, "deployment/istiod", namespace)?;
            kubectl.rollout_status("deployment/istiod", namespace, timeouts.rollout())?;
            Ok(undo)
        }
        Fault::RestartDeployment { namespace, name } => {
            let resource = format!("deployment/{name}");
            let undo = undo(
                Before::Nothing,
                None,
                Settle::Rollout {
                    resource: resource.clone(),
                    namespace: namespace.clone(),
                },
            );
            restart(kubectl, &resource, namespace)?;
            Ok(undo)
        }
        Fault::DeletePod { namespace, name } => {
            let pod = kubectl.get_json("pod", Some(name), Some(namespace))?;
            let owner = owner_of(&pod);
            let undo = undo(
                Before::Nothing,
                None,
                Settle::PodGoneThenRollout {
                    pod: name.clone(),
                    namespace: namespace.clone(),
                    owner,
                },
            );
            kubectl.delete("pod", name, Some(namespace))?;
            Ok(undo)
        }
        Fault::Patch {
            kind,
            name,
            namespace,
            patch,
        } => {
            let before = read_before(kubectl, kind, name, namespace.as_deref(), false)?;
            let undo = undo(before, None, Settle::Nothing);
            kubectl.patch(kind, name, namespace.as_deref(), "merge", patch)?;
            Ok(undo)
        }
    }
}

impl Undo {
    pub fn what(&self) -> &str {
        &self.what
    }

    /// Writes the recorded state back and waits until the component is ready again (within
    /// the `recovery` timeout).
    pub fn restore(mut self) -> Result<Restored, KubeError> {
        self.restored = true;
        self.run_restore()
    }

    fn run_restore(&self) -> Result<Restored, KubeError> {
        let kubectl = &self.kubectl;
        let timeouts = kubectl.timeouts();
        kubectl
            .tools()
            .say(&format!("fault: restoring: {}", self.what));
        if let Before::Object {
            kind,
            name,
            namespace,
            object,
            secret,
        } = &self.before
        {
            match object {
                Some(object) => {
                    kubectl.replace(&format!("{kind} {name} (restore)"), object, *secret)?
                }
                None => kubectl.delete(kind, name, namespace.as_deref())?,
            }
        }
        if let Some((resource, namespace)) = &self.restart {
            restart(kubectl, resource, namespace)?;
        }
        match &self.settle {
            Settle::Rollout {
                resource,
                namespace,
            } => kubectl.rollout_status(resource, namespace, timeouts.recovery())?,
            Settle::PodGoneThenRollout {
                pod,
                namespace,
                owner,
            } => {
                kubectl.wait_for(
                    &format!("pod/{pod}"),
                    Some(namespace),
                    "delete",
                    timeouts.recovery(),
                )?;
                if let Some(owner) = owner {
                    kubectl.rollout_status(owner, namespace, timeouts.recovery())?;
                }
            }
            Settle::Nothing => {}
        }
        Ok(Restored {
            what: self.what.clone(),
            fault_duration_ms: self.injected_at.elapsed().as_millis(),
        })
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        if self.restored {
            return;
        }
        self.restored = true;
        let tools = self.kubectl.tools().clone();
        tools.say(&format!(
            "fault: {} was not restored by its drill; restoring now",
            self.what
        ));
        if let Err(e) = self.run_restore() {
            tools.say(&format!("fault: could not restore {}: {e}", self.what));
        }
    }
}

fn read_before(
    kubectl: &Kubectl,
    kind: &str,
    name: &str,
    namespace: Option<&str>,
    secret: bool,
) -> Result<Before, KubeError> {
    let exists = kubectl
        .get_field(kind, name, namespace, "{.metadata.name}")?
        .is_some();
    let object = if !exists {
        None
    } else if secret {
        Some(restorable(
            &kubectl.get_json_sensitive(kind, name, namespace)?,
        ))
    } else {
        Some(restorable(&kubectl.get_json(
            kind,
            Some(name),
            namespace,
        )?))
    };
    Ok(Before::Object {
        kind: kind.to_owned(),
        name: name.to_owned(),
        namespace: namespace.map(str::to_owned),
        object,
        secret,
    })
}

fn restart(kubectl: &Kubectl, resource: &str, namespace: &str) -> Result<(), KubeError> {
    let call = kubectl.call(
        ["rollout", "restart", resource, "-n", namespace],
        kubectl.timeouts().call(),
    );
    super::wait::retry(
        kubectl.tools(),
        &format!("restart {resource} in {namespace}"),
        kubectl.timeouts().eventual(),
        kubectl.backoff(),
        || kubectl.tools().run_ok(&call),
    )
    .map(|_| ())
}

/// `statefulset/NAME` or `daemonset/NAME` owning a pod (a ReplicaSet's Deployment is not
/// derivable from the pod alone: `None` then, and only the pod's deletion is awaited).
fn owner_of(pod: &Value) -> Option<String> {
    pod.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find_map(|owner| {
            let kind = owner["kind"].as_str()?;
            let name = owner["name"].as_str()?;
            match kind {
                "StatefulSet" => Some(format!("statefulset/{name}")),
                "DaemonSet" => Some(format!("daemonset/{name}")),
                _ => None,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn existing_clusters_refuse_faults_unless_allowed() {
        let refused = Gate {
            target: TargetKind::Cluster,
            allow_destructive: false,
        }
        .check("delete pod spire-system/spire-server-0");
        assert!(matches!(refused, Err(KubeError::DestructiveRefused { .. })));
        assert!(
            Gate {
                target: TargetKind::Kind,
                allow_destructive: false
            }
            .check("x")
            .is_ok()
        );
        assert!(
            Gate {
                target: TargetKind::Cluster,
                allow_destructive: true
            }
            .check("x")
            .is_ok()
        );
    }

    #[test]
    fn statefulset_pods_are_awaited_through_their_owner() {
        let pod = json!({ "metadata": { "ownerReferences": [{ "kind": "StatefulSet", "name": "spire-server" }] } });
        assert_eq!(owner_of(&pod).as_deref(), Some("statefulset/spire-server"));
        let rs = json!({ "metadata": { "ownerReferences": [{ "kind": "ReplicaSet", "name": "istiod-5d9" }] } });
        assert_eq!(owner_of(&rs), None);
    }
}

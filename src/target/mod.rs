//! Targets: where behaviour is observed. Steps and checks see the [`Target`] trait for reads, and
//! [`LiveMesh`] for a profile's running mesh, whichever target runs (lab, kind, an existing
//! cluster).

pub mod kube;
pub mod lab;

use std::sync::Arc;

use crate::intents::ExpectedCall;
use crate::probe::Observation;
use crate::profile::{Identity, Profile};
use crate::spiffe::TrustBundle;

/// The certificates a workload presents, as `istioctl proxy-config secret` would show them.
#[derive(Clone, Debug)]
pub struct PresentedChain {
    /// DER, leaf first, then intermediates (as the sidecar sends them).
    pub chain: Vec<Vec<u8>>,
    /// Where the chain was read from, for evidence (a file, an admin endpoint, an API object).
    pub source: String,
}

/// The mesh CA as configured: the plug-in CA material (`cacerts`) or the SPIRE bundle.
#[derive(Clone, Debug)]
pub struct MeshCa {
    pub root_der: Vec<u8>,
    pub intermediate_der: Vec<u8>,
    /// A directory holding Istio's plug-in CA files, where the target exposes them.
    pub plugin_dir: Option<std::path::PathBuf>,
}

#[derive(Debug, thiserror::Error)]
#[error("target {target}: {message}")]
pub struct TargetError {
    pub target: String,
    pub message: String,
}

pub trait Target: Send + Sync {
    fn name(&self) -> &str;
    /// The trust bundle workloads of `profile` validate peers against.
    fn trust_bundle(&self, profile: &Profile) -> Result<TrustBundle, TargetError>;
    /// The certificate chain a workload presents.
    fn workload_certificate(
        &self,
        profile: &Profile,
        identity: &Identity,
    ) -> Result<PresentedChain, TargetError>;
    /// The mesh CA's root and intermediate.
    fn mesh_ca(&self, profile: &Profile) -> Result<MeshCa, TargetError>;
}

/// A profile's running mesh, as the live steps reach it: the lab's own Envoy sidecars, or a
/// cluster with the profile's stack installed (the run's kind cluster, or an existing one).
#[derive(Clone, Debug)]
pub enum LiveMesh {
    Lab(Arc<lab::mesh::LabMesh>),
    Kube(Arc<kube::KubeTarget>),
}

impl LiveMesh {
    /// Sends one request of the intent matrix the Istio way: from the caller's workload, through
    /// its own sidecar, with its SVID.
    pub async fn call(
        &self,
        profile: &Arc<Profile>,
        call: &ExpectedCall,
    ) -> Result<Observation, TargetError> {
        match self {
            LiveMesh::Lab(mesh) => mesh.call(call).await.map_err(|message| TargetError {
                target: "lab".into(),
                message,
            }),
            LiveMesh::Kube(kube) => {
                let (profile, call) = (profile.clone(), call.clone());
                on_cluster(kube, move |k| k.call(&profile, &call)).await
            }
        }
    }
}

/// Runs a blocking cluster observation (kubectl calls) off the async executor, so scenarios
/// running at the same time keep making progress and Ctrl-C stays responsive.
pub async fn on_cluster<T: Send + 'static>(
    kube: &Arc<kube::KubeTarget>,
    observe: impl FnOnce(&kube::KubeTarget) -> Result<T, kube::KubeError> + Send + 'static,
) -> Result<T, TargetError> {
    let kube = kube.clone();
    let name = kube.kind_of().name();
    match tokio::task::spawn_blocking(move || observe(&kube)).await {
        Ok(result) => result.map_err(|e| TargetError {
            target: name.into(),
            message: e.to_string(),
        }),
        Err(e) => Err(TargetError {
            target: name.into(),
            message: format!("the observation did not finish: {e}"),
        }),
    }
}

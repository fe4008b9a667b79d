//! Targets: where behaviour is observed. Steps and checks only see this trait, never which target
//! runs (lab, kind, an existing cluster).

pub mod kube;
pub mod lab;

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

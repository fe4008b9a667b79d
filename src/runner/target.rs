//! Which target a run observes, and what the runner does to get one: nothing for the lab (it
//! starts what a scenario needs on first use); for kind, a cluster per profile with the
//! profile's stack installed, deleted at the end; for an existing cluster, a connection.

use std::path::PathBuf;
use std::sync::Arc;

use crate::configured::Configured;
use crate::profile::Profile;
use crate::target::kube::target::{ClusterRun, KindRun};
use crate::target::kube::{KubeError, KubeTarget, TargetKind, Timeouts, Toolbox};

/// Where a run observes behaviour.
#[derive(Clone, Debug)]
pub enum TargetOptions {
    Lab,
    Kind(ClusterAccess, KindSettings),
    Cluster(ClusterAccess, ClusterRun),
}

/// How the kube targets reach their tools.
#[derive(Clone, Debug)]
pub struct ClusterAccess {
    pub tools: Toolbox,
    pub timeouts: Timeouts,
}

/// `--target kind`'s flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KindSettings {
    /// `--reuse NAME`: the cluster to reuse (with one profile only). `--reuse` alone reuses
    /// `meshproof-<profile>`, a name stable across runs.
    pub name: Option<String>,
    /// `kind/cluster.yaml`.
    pub config: PathBuf,
    pub reuse: bool,
    pub keep: bool,
    /// `--images DIR`: image archives to preload.
    pub images: Option<PathBuf>,
    pub probes: crate::target::kube::probe::ProbeConfig,
}

impl TargetOptions {
    pub fn kind(&self) -> TargetKind {
        match self {
            TargetOptions::Lab => TargetKind::Lab,
            TargetOptions::Kind(..) => TargetKind::Kind,
            TargetOptions::Cluster(..) => TargetKind::Cluster,
        }
    }

    pub fn allow_destructive(&self) -> bool {
        match self {
            TargetOptions::Cluster(_, run) => run.allow_destructive,
            TargetOptions::Lab | TargetOptions::Kind(..) => true,
        }
    }
}

/// One profile's kind cluster: created (or reused), preflight first, with the profile's stack
/// installed. Blocking: run it off the async executor.
pub fn start_kind(
    access: &ClusterAccess,
    settings: &KindSettings,
    run_id: &str,
    profile: &Profile,
    configured: &Configured,
    now: time::OffsetDateTime,
) -> Result<KubeTarget, KubeError> {
    let run = KindRun {
        run_id: run_id.to_owned(),
        profile: profile.name.clone(),
        name: settings.name.clone().or_else(|| {
            settings
                .reuse
                .then(|| crate::target::kube::kind::cluster_name(&profile.name))
        }),
        config: settings.config.clone(),
        reuse: settings.reuse,
        keep: settings.keep,
        images: settings.images.clone(),
        probes: settings.probes.clone(),
    };
    let target = KubeTarget::start_kind(&access.tools, &run, &access.timeouts)?;
    // On failure the target is dropped here, which deletes the cluster it created.
    target.install(profile, configured, &target.install_options(now)?)?;
    Ok(target)
}

/// An existing cluster: preflight, then the context must answer. Blocking.
pub fn connect(access: &ClusterAccess, run: &ClusterRun) -> Result<KubeTarget, KubeError> {
    KubeTarget::connect(&access.tools, run, &access.timeouts)
}

/// Ends the run's use of a cluster: deletes the run's kind cluster (unless kept or reused), or
/// removes what the run created on an existing one. A target still shared (a scenario's
/// observation still running) is left to its last owner, whose drop does the same.
pub fn finish(target: Arc<KubeTarget>) -> Result<(), KubeError> {
    match Arc::try_unwrap(target) {
        Ok(target) => target.finish(),
        Err(_) => Ok(()),
    }
}

use std::sync::Arc;

use crate::configured::Configured;
use crate::profile::{Identity, Profile};
use crate::results::{CheckResult, Status};
use crate::target::kube::{KubeTarget, TargetKind};
use crate::target::lab::Lab;
use crate::target::{LiveMesh, Target, TargetError};

/// What every scenario of a run shares: the selected profiles, their configured manifests, and
/// the target.
pub struct RunContext {
    pub profiles: Vec<Arc<Profile>>,
    /// A manifests folder given on the command line, used instead of each profile's own folder.
    pub manifests: Option<std::path::PathBuf>,
    /// The lab. On a lab run it is the target; on kind and cluster runs it only keeps the run's
    /// clock: the steps that need its sidecars, CA or SPIRE are tagged `@lab`, and the runner
    /// filters those out there.
    pub lab: Lab,
    /// Drills the run's scenarios ran, with their timelines, for the results model.
    pub drills: std::sync::Mutex<Vec<crate::drills::DrillReport>>,
    /// The cluster, on kind and cluster runs.
    kube: Option<Arc<KubeTarget>>,
    configured: std::sync::Mutex<std::collections::HashMap<String, Arc<Configured>>>,
}

impl RunContext {
    /// A lab run.
    pub fn new(
        profiles: Vec<Arc<Profile>>,
        manifests: Option<std::path::PathBuf>,
        lab: Lab,
    ) -> Self {
        RunContext {
            profiles,
            manifests,
            lab,
            drills: Default::default(),
            kube: None,
            configured: Default::default(),
        }
    }

    /// A kind or cluster run: observations go to `kube`.
    pub fn on_cluster(
        profiles: Vec<Arc<Profile>>,
        manifests: Option<std::path::PathBuf>,
        lab: Lab,
        kube: Arc<KubeTarget>,
    ) -> Self {
        RunContext {
            kube: Some(kube),
            ..RunContext::new(profiles, manifests, lab)
        }
    }

    pub fn target(&self) -> &dyn Target {
        match &self.kube {
            Some(kube) => kube.as_ref(),
            None => &self.lab,
        }
    }

    pub fn kind(&self) -> TargetKind {
        self.kube
            .as_ref()
            .map_or(TargetKind::Lab, |kube| kube.kind_of())
    }

    /// The cluster, on kind and cluster runs.
    pub fn kube(&self) -> Option<&Arc<KubeTarget>> {
        self.kube.as_ref()
    }

    /// The instant a check judges validity at: on the lab one fixed instant for the whole run
    /// (its CA issued everything against it); on a cluster, where istiod or SPIRE keep issuing
    /// while the run goes on, the time of the check.
    pub fn now(&self) -> time::OffsetDateTime {
        match self.kube {
            Some(_) => time::OffsetDateTime::now_utc(),
            None => self.lab.now(),
        }
    }

    /// The profile's running mesh: on the lab, its sidecars (started on first use); on a
    /// cluster, the stack the runner installed (kind) or found (cluster).
    pub async fn live(
        &self,
        profile: &Profile,
        configured: &Configured,
    ) -> Result<LiveMesh, TargetError> {
        match &self.kube {
            Some(kube) => Ok(LiveMesh::Kube(kube.clone())),
            None => Ok(LiveMesh::Lab(self.lab.mesh(profile, configured).await?)),
        }
    }

    /// The profile's configured manifests, loaded once per run.
    pub fn configured(&self, profile: &Profile) -> Result<Arc<Configured>, String> {
        let mut cache = self
            .configured
            .lock()
            .map_err(|_| "manifests cache poisoned".to_owned())?;
        if let Some(c) = cache.get(&profile.name) {
            return Ok(c.clone());
        }
        let dir = self
            .manifests
            .clone()
            .unwrap_or_else(|| crate::configured::default_dir(profile));
        let loaded = Arc::new(crate::configured::load(profile, &dir).map_err(|e| e.to_string())?);
        cache.insert(profile.name.clone(), loaded.clone());
        Ok(loaded)
    }
}

impl std::fmt::Debug for RunContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.profiles.iter().map(|p| p.name.as_str()).collect();
        f.debug_struct("RunContext")
            .field("profiles", &names)
            .finish_non_exhaustive()
    }
}

/// Per-scenario state. The runner injects the shared context before each scenario and collects
/// `checks` after it.
#[derive(Debug, Default, cucumber::World)]
pub struct MeshWorld {
    pub ctx: Option<Arc<RunContext>>,
    pub profile: Option<Arc<Profile>>,
    pub checks: Vec<CheckResult>,
    /// The certificate chain under test (DER, leaf first) and what it claims to be.
    pub chain: Option<(Vec<Vec<u8>>, Identity)>,
    /// The trust bundle to judge `chain` against, when a scenario replaces the target's own.
    pub bundle: Option<crate::spiffe::TrustBundle>,
    pub configured: Option<Arc<Configured>>,
    /// The last admission decision, for the Then step that judges it.
    pub admission: Option<crate::policy::gatekeeper::AdmissionResult>,
    pub mesh: Option<Arc<crate::target::lab::mesh::LabMesh>>,
    /// The profile's running mesh on the run's target (on the lab, the same as `mesh`).
    pub live: Option<LiveMesh>,
    /// Calls sent and what was observed, for the Then step that judges them.
    pub observations: Vec<(crate::intents::ExpectedCall, crate::probe::Observation)>,
    /// A verdict reached in a When step, recorded by the Then step that asserts it.
    pub pending: Option<CheckResult>,
    /// The profile's running SPIRE lab.
    pub spire: Option<crate::target::lab::SharedSpire>,
}

impl MeshWorld {
    pub fn ctx(&self) -> Arc<RunContext> {
        match &self.ctx {
            Some(ctx) => ctx.clone(),
            None => super::harness_error!(
                "no run context: scenarios must be started by meshproof's runner"
            ),
        }
    }

    pub fn profile(&self) -> Arc<Profile> {
        match &self.profile {
            Some(p) => p.clone(),
            None => super::harness_error!(
                "no profile selected: the scenario needs `Given the profile \"NAME\"`"
            ),
        }
    }

    pub fn select_profile(&mut self, name: &str) {
        let ctx = self.ctx();
        match ctx.profiles.iter().find(|p| p.name == name) {
            Some(p) => self.profile = Some(p.clone()),
            None => super::harness_error!("profile \"{name}\" is not part of this run"),
        }
    }

    pub fn configured(&self) -> Arc<Configured> {
        match &self.configured {
            Some(c) => c.clone(),
            None => super::harness_error!(
                "no manifests loaded: the scenario needs `And the manifests configured for it`"
            ),
        }
    }

    pub fn spire(&self) -> crate::target::lab::SharedSpire {
        match &self.spire {
            Some(s) => s.clone(),
            None => super::harness_error!(
                "SPIRE is not running: the scenario needs `And its SPIRE server and agents are running`"
            ),
        }
    }

    pub fn mesh(&self) -> Arc<crate::target::lab::mesh::LabMesh> {
        match (&self.mesh, &self.live) {
            (Some(m), _) => m.clone(),
            (None, Some(_)) => super::harness_error!(
                "this step needs the lab's own sidecars, and the run's target is a cluster: tag the scenario @lab"
            ),
            (None, None) => super::harness_error!(
                "no mesh is running: the scenario needs `And the mesh is running for it`"
            ),
        }
    }

    pub fn live(&self) -> LiveMesh {
        match &self.live {
            Some(m) => m.clone(),
            None => super::harness_error!(
                "no mesh is running: the scenario needs `And the mesh is running for it`"
            ),
        }
    }

    pub fn identity(&self, label: &str) -> Identity {
        let profile = self.profile();
        let found = profile
            .identities()
            .into_iter()
            .find(|i| i.label() == label || i.spiffe_id.to_string() == label);
        match found {
            Some(identity) => identity,
            None => {
                super::harness_error!("profile {} promises no identity \"{label}\"", profile.name)
            }
        }
    }

    /// Records a verdict; a failed check fails the step with the check's finding.
    pub fn record(&mut self, result: CheckResult) {
        let failed = result.status == Status::Failed;
        let message = format!("{} {}: {}", result.check, result.subject, result.summary);
        self.checks.push(result);
        assert!(!failed, "{message}");
    }
}

use std::sync::Arc;

use crate::configured::Configured;
use crate::profile::{Identity, Profile};
use crate::results::{CheckResult, Status};
use crate::target::Target;
use crate::target::lab::Lab;

/// What every scenario of a run shares: the selected profiles, their configured manifests, and
/// the target.
pub struct RunContext {
    pub profiles: Vec<Arc<Profile>>,
    /// A manifests folder given on the command line, used instead of each profile's own folder.
    pub manifests: Option<std::path::PathBuf>,
    pub lab: Lab,
    /// Drills the run's scenarios ran, with their timelines, for the results model.
    pub drills: std::sync::Mutex<Vec<crate::drills::DrillReport>>,
    configured: std::sync::Mutex<std::collections::HashMap<String, Arc<Configured>>>,
}

impl RunContext {
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
            configured: Default::default(),
        }
    }

    pub fn target(&self) -> &dyn Target {
        &self.lab
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
        match &self.mesh {
            Some(m) => m.clone(),
            None => super::harness_error!(
                "no mesh is running: the scenario needs `And the lab mesh is running for it`"
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

use std::sync::Arc;

use crate::profile::{Identity, Profile};
use crate::results::{CheckResult, Status};
use crate::target::Target;
use crate::target::lab::Lab;

/// What every scenario of a run shares: the selected profiles and the target.
pub struct RunContext {
    pub profiles: Vec<Arc<Profile>>,
    pub lab: Lab,
}

impl RunContext {
    pub fn target(&self) -> &dyn Target {
        &self.lab
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

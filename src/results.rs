//! One results model for a run; every report format is rendered from it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Passed,
    Skipped,
    Failed,
    /// The harness could not run the check (missing tool, bad input): never counted as a pass.
    Error,
}

/// One check's verdict on one subject, with the evidence it rests on.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckResult {
    /// Stable id used by the control mapping, e.g. `identity.svid-valid`.
    pub check: String,
    /// What was checked: a service, an identity, an intent.
    pub subject: String,
    pub status: Status,
    pub summary: String,
    /// Observed facts an auditor can re-verify (serials, fingerprints, validity windows).
    /// Never private keys or tokens.
    pub evidence: Vec<(String, String)>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepResult {
    pub keyword: String,
    pub text: String,
    pub status: Status,
    pub error: Option<String>,
    /// From the step's start to its verdict (absent for steps that never started).
    pub duration: Option<Duration>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScenarioResult {
    pub feature: String,
    /// Path of the `.feature` file relative to the project, e.g. `features/pki.feature`.
    pub file: String,
    pub line: usize,
    pub name: String,
    pub tags: Vec<String>,
    pub status: Status,
    /// 1 unless the scenario was retried; only the final attempt's outcome counts.
    pub attempts: usize,
    pub duration: Duration,
    pub steps: Vec<StepResult>,
    pub checks: Vec<CheckResult>,
}

impl ScenarioResult {
    pub fn failure_message(&self) -> Option<String> {
        let step = self
            .steps
            .iter()
            .find(|s| matches!(s.status, Status::Failed | Status::Error))?;
        Some(format!(
            "{} {}: {}",
            step.keyword.trim(),
            step.text,
            step.error.as_deref().unwrap_or("failed")
        ))
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProfileRef {
    pub name: String,
    pub file: String,
    /// SHA-256 of the profile file as read, so evidence pins the exact intent it was judged against.
    pub sha256: String,
}

/// The `versions` entry that says how the lab scaled the profiles' workload TTLs.
pub const LAB_TTL_SCALE: &str = "lab TTL scale";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunResults {
    pub run_id: String,
    pub meshproof_version: String,
    pub target: String,
    pub started: String,
    pub duration: Duration,
    pub tags: Option<String>,
    pub profiles: Vec<ProfileRef>,
    /// Every component that took part, with its version (meshproof, envoy, spire-server, ...),
    /// and the lab's TTLs ([`LAB_TTL_SCALE`], `spire lab TTLs`).
    pub versions: BTreeMap<String, String>,
    pub scenarios: Vec<ScenarioResult>,
    /// Problems found before or outside scenarios (e.g. a feature file that does not parse).
    pub harness_errors: Vec<String>,
    /// Game-day drills run (`meshproof drill`, `features/drills.feature`), each with its whole
    /// timeline. Not read back (a `--baseline` compares access, not drills).
    #[serde(default, skip_deserializing, skip_serializing_if = "Vec::is_empty")]
    pub drills: Vec<crate::drills::DrillReport>,
    /// `meshproof bench`'s figures, when this run is a benchmark run.
    #[serde(default, skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub bench: Option<crate::bench::BenchReport>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub errors: usize,
}

impl RunResults {
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for s in &self.scenarios {
            match s.status {
                Status::Passed => c.passed += 1,
                Status::Failed => c.failed += 1,
                Status::Skipped => c.skipped += 1,
                Status::Error => c.errors += 1,
            }
        }
        c
    }

    /// 0 all passed, 1 a check failed, 2 the harness could not run (or ran nothing).
    pub fn exit_code(&self) -> i32 {
        let c = self.counts();
        if !self.harness_errors.is_empty() || c.errors > 0 || self.scenarios.is_empty() {
            2
        } else if c.failed > 0 || c.skipped > 0 {
            // A skipped step means an unimplemented or unmatched step: not proof of anything.
            1
        } else {
            0
        }
    }
}

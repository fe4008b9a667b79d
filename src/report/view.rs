//! What the human-facing reports derive from a [`RunResults`]: which profile each scenario belongs
//! to, the intent observations (expected vs observed), the certificates seen, the drills, and the
//! services of each profile. Computed once per run and shared by HTML, Markdown and the evidence
//! bundle.
//!
//! Evidence keys read (all optional; a check without them is still listed with its finding):
//! - intents (`intent.*`): `from`, `to`, `method`, `path`, `expected` and `observed` (`allow`/`deny`),
//!   `decided_by`, `mtls` (`true`/`false`: the hop was mutual TLS), `profile`; a failing intent
//!   check without evidence is placed from its subject (`from → to METHOD path`) and finding
//!   (`WIDENED ACCESS: …` / `narrowed access: …`);
//! - certificates (any check): `serial`, `sha256`, `not_before`, `not_after`, `spiffe_id`, and the
//!   same with a role prefix (`root_serial`, `intermediate_not_after`, …);
//! - drills (`drill.*`): `injected_at`, `detected_at`, `recovered_at` (RFC 3339), or
//!   `time_to_detect_ms` / `time_to_recover_ms` (milliseconds after injection);
//! - any check: `profile` names the profile when the scenario does not.

use std::collections::BTreeMap;

use serde::Serialize;

use super::text::parse_rfc3339;
use crate::results::{CheckResult, RunResults, ScenarioResult, Status};

/// Where a check result sits: `results.scenarios[scenario].checks[check]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct CheckAt {
    pub scenario: usize,
    pub check: usize,
}

impl CheckAt {
    /// HTML fragment id of the check's row.
    pub fn anchor(self) -> String {
        format!("c-{}-{}", self.scenario, self.check)
    }
}

pub fn scenario_anchor(index: usize) -> String {
    format!("s-{index}")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Deny,
}

impl Decision {
    pub fn parse(s: &str) -> Option<Decision> {
        match s.trim().to_ascii_lowercase().as_str() {
            "allow" | "allowed" | "permit" | "accept" | "accepted" => Some(Decision::Allow),
            "deny" | "denied" | "refuse" | "refused" | "reject" | "rejected" | "block"
            | "blocked" => Some(Decision::Deny),
            _ => None,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        }
    }
}

/// How an observed decision compares with the promised one. Ordered worst first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IntentOutcome {
    /// Expected deny, observed allow: access wider than the runbook allows.
    Widened,
    /// Expected allow, observed deny: a promised path is broken.
    Blocked,
    /// Expected or observed decision missing; the check's own status tells the rest.
    Unknown,
    Allowed,
    Denied,
}

impl IntentOutcome {
    pub fn label(self) -> &'static str {
        match self {
            IntentOutcome::Widened => "WIDENED",
            IntentOutcome::Blocked => "BLOCKED",
            IntentOutcome::Unknown => "unknown",
            IntentOutcome::Allowed => "allowed",
            IntentOutcome::Denied => "denied",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct IntentObs {
    pub at: CheckAt,
    pub check: String,
    pub profile: Option<String>,
    pub from: String,
    pub to: String,
    pub method: Option<String>,
    pub path: Option<String>,
    pub expected: Option<Decision>,
    pub observed: Option<Decision>,
    pub decided_by: Option<String>,
    pub mtls: Option<bool>,
    pub status: Status,
}

impl IntentObs {
    pub fn outcome(&self) -> IntentOutcome {
        match (self.expected, self.observed) {
            (Some(Decision::Deny), Some(Decision::Allow)) => IntentOutcome::Widened,
            (Some(Decision::Allow), Some(Decision::Deny)) => IntentOutcome::Blocked,
            (Some(Decision::Allow), Some(Decision::Allow)) => IntentOutcome::Allowed,
            (Some(Decision::Deny), Some(Decision::Deny)) => IntentOutcome::Denied,
            _ => IntentOutcome::Unknown,
        }
    }

    /// `GET /ready` or `any request`.
    pub fn request(&self) -> String {
        match (&self.method, &self.path) {
            (Some(m), Some(p)) => format!("{m} {p}"),
            (Some(m), None) => m.clone(),
            (None, Some(p)) => p.clone(),
            (None, None) => "any request".to_owned(),
        }
    }
}

/// One certificate seen in check evidence.
#[derive(Clone, Debug, Serialize)]
pub struct CertObs {
    pub at: CheckAt,
    pub check: String,
    pub subject: String,
    pub profile: Option<String>,
    /// `workload`, or the evidence key prefix (`root`, `intermediate`).
    pub role: String,
    pub spiffe_id: Option<String>,
    pub serial: Option<String>,
    pub sha256: Option<String>,
    pub not_before: Option<String>,
    pub not_after: Option<String>,
}

impl CertObs {
    pub fn label(&self) -> String {
        self.spiffe_id.clone().unwrap_or_else(|| {
            if self.role == "workload" {
                self.subject.clone()
            } else {
                format!("{} ({})", self.role, self.subject)
            }
        })
    }

    pub fn window(&self) -> Option<(i64, i64)> {
        let from = parse_rfc3339(self.not_before.as_deref()?)?;
        let to = parse_rfc3339(self.not_after.as_deref()?)?;
        Some((from, to))
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct DrillObs {
    pub at: CheckAt,
    pub check: String,
    pub subject: String,
    pub status: Status,
    pub summary: String,
    pub injected: Option<i64>,
    pub detected: Option<i64>,
    pub recovered: Option<i64>,
    pub detect_ms: Option<f64>,
    pub recover_ms: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProfileView {
    pub name: String,
    /// Services in profile order (from the profile file when it can be read, else from intents).
    pub services: Vec<String>,
    /// Allow intents the profile declares, `(from, to)`.
    pub declared_allow: Vec<(String, String)>,
    pub strict_mtls: Option<bool>,
    /// Where `services` came from, for the report's footnote.
    pub source: &'static str,
}

pub struct View<'a> {
    pub results: &'a RunResults,
    scenario_profiles: Vec<Option<String>>,
    pub intents: Vec<IntentObs>,
    /// Intent checks without `from`/`to` evidence (typically a failure that dropped its evidence).
    pub unplaced_intents: Vec<CheckAt>,
    pub certs: Vec<CertObs>,
    pub drills: Vec<DrillObs>,
    pub profiles: Vec<ProfileView>,
    pub versions: BTreeMap<String, String>,
    /// Run start, Unix seconds.
    pub started: Option<i64>,
}

fn ev<'c>(c: &'c CheckResult, key: &str) -> Option<&'c str> {
    c.evidence
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn profile_of_scenario(s: &ScenarioResult, names: &[&str]) -> Option<String> {
    for c in &s.checks {
        if let Some(p) = ev(c, "profile") {
            return Some(p.to_owned());
        }
    }
    for step in &s.steps {
        if let Some(rest) = step.text.strip_prefix("the profile \"") {
            if let Some(name) = rest.strip_suffix('"') {
                return Some(name.to_owned());
            }
        }
    }
    names
        .iter()
        .find(|n| {
            s.name
                .strip_prefix(**n)
                .is_some_and(|rest| rest.starts_with(" · "))
        })
        .map(|n| (*n).to_owned())
}

impl<'a> View<'a> {
    pub fn new(results: &'a RunResults, versions: BTreeMap<String, String>) -> View<'a> {
        let names: Vec<&str> = results.profiles.iter().map(|p| p.name.as_str()).collect();
        let scenario_profiles: Vec<Option<String>> = results
            .scenarios
            .iter()
            .map(|s| profile_of_scenario(s, &names))
            .collect();
        let mut view = View {
            results,
            scenario_profiles,
            intents: Vec::new(),
            unplaced_intents: Vec::new(),
            certs: Vec::new(),
            drills: Vec::new(),
            profiles: Vec::new(),
            versions,
            started: parse_rfc3339(&results.started),
        };
        let mut found = Vec::new();
        for (at, c) in view.all_checks() {
            let profile = view.profile_of(at.scenario).map(str::to_owned);
            if c.check.starts_with("intent.") {
                match intent_obs(at, c, profile.clone()) {
                    Some(obs) => found.push(Found::Intent(obs)),
                    None => found.push(Found::Unplaced(at)),
                }
            }
            if c.check.starts_with("drill.") {
                let at_key = |k: &str| ev(c, k).and_then(parse_rfc3339);
                let ms = |k: &str| ev(c, k).and_then(|v| v.trim().parse::<f64>().ok());
                found.push(Found::Drill(DrillObs {
                    at,
                    check: c.check.clone(),
                    subject: c.subject.clone(),
                    status: c.status,
                    summary: c.summary.clone(),
                    injected: at_key("injected_at"),
                    detected: at_key("detected_at"),
                    recovered: at_key("recovered_at"),
                    detect_ms: ms("time_to_detect_ms"),
                    recover_ms: ms("time_to_recover_ms"),
                }));
            }
            for (key, _) in &c.evidence {
                let Some(prefix) = key.strip_suffix("serial") else {
                    continue;
                };
                if !(prefix.is_empty() || prefix.ends_with('_')) {
                    continue;
                }
                let field = |name: &str| ev(c, &format!("{prefix}{name}")).map(str::to_owned);
                let role = prefix.trim_end_matches('_');
                found.push(Found::Cert(CertObs {
                    at,
                    check: c.check.clone(),
                    subject: c.subject.clone(),
                    profile: profile.clone(),
                    role: if role.is_empty() { "workload" } else { role }.to_owned(),
                    spiffe_id: if prefix.is_empty() {
                        field("spiffe_id")
                    } else {
                        None
                    },
                    serial: field("serial"),
                    sha256: field("sha256"),
                    not_before: field("not_before"),
                    not_after: field("not_after"),
                }));
            }
        }
        for f in found {
            match f {
                Found::Intent(i) => view.intents.push(i),
                Found::Unplaced(at) => view.unplaced_intents.push(at),
                Found::Drill(d) => view.drills.push(d),
                Found::Cert(c) => view.certs.push(c),
            }
        }
        view.profiles = results
            .profiles
            .iter()
            .map(|p| view.profile_view(&p.name, &p.file, &p.sha256))
            .collect();
        view
    }

    /// Every check result with its position, in run order.
    pub fn all_checks(&self) -> impl Iterator<Item = (CheckAt, &'a CheckResult)> + 'a {
        self.results
            .scenarios
            .iter()
            .enumerate()
            .flat_map(|(si, s)| {
                s.checks.iter().enumerate().map(move |(ci, c)| {
                    (
                        CheckAt {
                            scenario: si,
                            check: ci,
                        },
                        c,
                    )
                })
            })
    }

    pub fn check(&self, at: CheckAt) -> Option<&'a CheckResult> {
        self.results
            .scenarios
            .get(at.scenario)?
            .checks
            .get(at.check)
    }

    pub fn scenario(&self, index: usize) -> Option<&'a ScenarioResult> {
        self.results.scenarios.get(index)
    }

    /// The profile a scenario ran against, when it names one (static scenarios do not).
    pub fn profile_of(&self, scenario: usize) -> Option<&str> {
        self.scenario_profiles.get(scenario)?.as_deref()
    }

    /// Failing (failed or errored) check results, in run order.
    pub fn failing_checks(&self) -> Vec<(CheckAt, &'a CheckResult)> {
        self.all_checks()
            .filter(|(_, c)| matches!(c.status, Status::Failed | Status::Error))
            .collect()
    }

    /// Intent observations whose promised deny was observed as allow, worst first.
    pub fn widened(&self) -> Vec<&IntentObs> {
        self.intents
            .iter()
            .filter(|i| i.outcome() == IntentOutcome::Widened)
            .collect()
    }

    pub fn intents_of<'v>(
        &'v self,
        profile: Option<&'v str>,
    ) -> impl Iterator<Item = &'v IntentObs> {
        self.intents
            .iter()
            .filter(move |i| i.profile.as_deref() == profile)
    }

    fn profile_view(&self, name: &str, file: &str, sha256: &str) -> ProfileView {
        let mut services = Vec::new();
        let mut declared_allow = Vec::new();
        let mut strict_mtls = None;
        let mut source = "intent evidence";
        if let Some(profile) = load_pinned_profile(name, file, sha256) {
            services = profile.services.iter().map(|s| s.name.clone()).collect();
            declared_allow = profile
                .intents
                .iter()
                .filter(|i| i.decision == crate::profile::Decision::Allow)
                .map(|i| (i.from.clone(), i.to.clone()))
                .collect();
            strict_mtls = Some(profile.mtls == crate::profile::MtlsMode::Strict);
            source = "profile";
        }
        let mut extra: Vec<String> = Vec::new();
        for i in self.intents_of(Some(name)) {
            for s in [&i.from, &i.to] {
                if !services.contains(s) && !extra.contains(s) {
                    extra.push(s.clone());
                }
            }
        }
        extra.sort();
        services.extend(extra);
        ProfileView {
            name: name.to_owned(),
            services,
            declared_allow,
            strict_mtls,
            source,
        }
    }
}

/// An intent observation from a check's evidence; when a failing check carries none (the shared
/// `checks::verdict` drops evidence on failure), from its subject (`from → to METHOD path`, the
/// intent matrix's label) and its finding (`WIDENED ACCESS: …` / `narrowed access: …`).
fn intent_obs(at: CheckAt, c: &CheckResult, profile: Option<String>) -> Option<IntentObs> {
    let mtls = ev(c, "mtls").map(|v| {
        matches!(
            v.to_ascii_lowercase().as_str(),
            "true" | "yes" | "strict" | "istio_mutual"
        )
    });
    if let (Some(from), Some(to)) = (ev(c, "from"), ev(c, "to")) {
        return Some(IntentObs {
            at,
            check: c.check.clone(),
            profile,
            from: from.to_owned(),
            to: to.to_owned(),
            method: ev(c, "method").map(str::to_owned),
            path: ev(c, "path").map(str::to_owned),
            expected: ev(c, "expected").and_then(Decision::parse),
            observed: ev(c, "observed").and_then(Decision::parse),
            decided_by: ev(c, "decided_by").map(str::to_owned),
            mtls,
            status: c.status,
        });
    }
    let (from, rest) = c.subject.split_once(" → ")?;
    let mut parts = rest.split_whitespace();
    let to = parts.next()?;
    let method = parts.next().map(str::to_owned);
    let path = parts.next().map(str::to_owned);
    let (expected, observed) = if c.summary.starts_with("WIDENED ACCESS") {
        (Some(Decision::Deny), Some(Decision::Allow))
    } else if c.summary.starts_with("narrowed access") {
        (Some(Decision::Allow), Some(Decision::Deny))
    } else {
        (None, None)
    };
    Some(IntentObs {
        at,
        check: c.check.clone(),
        profile,
        from: from.trim().to_owned(),
        to: to.to_owned(),
        method,
        path,
        expected,
        observed,
        decided_by: None,
        mtls,
        status: c.status,
    })
}

/// The profile file the run was judged against, only if its bytes still hash to the recorded SHA-256
/// (tried as recorded, then as a bundled profile).
fn load_pinned_profile(name: &str, file: &str, sha256: &str) -> Option<crate::profile::Profile> {
    use sha2::Digest as _;
    let candidates = [
        std::path::PathBuf::from(file),
        crate::profile::manifests_root()
            .join(name)
            .join("profile.yaml"),
    ];
    candidates.iter().find_map(|path| {
        let bytes = std::fs::read(path).ok()?;
        if super::text::hex(&sha2::Sha256::digest(&bytes)) != sha256.to_ascii_lowercase() {
            return None;
        }
        let text = String::from_utf8(bytes).ok()?;
        crate::profile::parse(path, &text).ok()
    })
}

enum Found {
    Intent(IntentObs),
    Unplaced(CheckAt),
    Drill(DrillObs),
    Cert(CertObs),
}

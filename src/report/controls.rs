//! The control mapping (`controls.yaml`, embedded): checks → NIST SP 800-207 tenets, NIST SP 800-53
//! Rev. 5 controls, SOC 2 criteria, and the runbooks' checklist items; and its evaluation against a
//! run: per control and per checklist item, passed / failed / not covered.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::view::{CheckAt, View};
use crate::results::{CheckResult, Status};

/// The mapping as shipped, verbatim (it is also copied into every evidence bundle).
pub const EMBEDDED: &str = include_str!("controls.yaml");

#[derive(Debug, thiserror::Error)]
pub enum ControlsError {
    #[error("controls.yaml:{line}:{column}: {message}")]
    Yaml {
        line: u64,
        column: u64,
        message: String,
    },
    #[error("controls.yaml: {0}")]
    Invalid(String),
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    pub frameworks: Vec<Framework>,
    pub checks: Vec<CheckMapping>,
    pub checklists: Vec<Checklist>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Framework {
    pub id: String,
    pub name: String,
    pub controls: Vec<Control>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Control {
    pub id: String,
    pub title: String,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CheckMapping {
    /// A check id, or a prefix pattern ending in `.*`.
    pub id: String,
    pub title: String,
    /// Framework id → control ids.
    pub controls: BTreeMap<String, Vec<String>>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Checklist {
    pub id: String,
    /// The profile whose scenarios prove the items.
    pub profile: String,
    pub title: String,
    pub items: Vec<ChecklistItem>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChecklistItem {
    pub id: String,
    /// The runbook's words.
    pub text: String,
    #[serde(rename = "provenBy")]
    pub proven_by: Vec<CheckRef>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CheckRef {
    pub check: String,
    /// Evidence key → required value (`*`: the key is present, any value).
    #[serde(default, rename = "where", skip_serializing_if = "BTreeMap::is_empty")]
    pub filter: BTreeMap<String, String>,
    #[serde(
        default,
        rename = "subjectContains",
        skip_serializing_if = "Option::is_none"
    )]
    pub subject_contains: Option<String>,
}

/// Whether `check` (a check id from a result) is covered by `pattern` (an id or `prefix.*`).
pub fn matches(pattern: &str, check: &str) -> bool {
    match pattern.strip_suffix(".*") {
        Some(prefix) => check
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('.') && rest.len() > 1),
        None => pattern == check,
    }
}

impl CheckRef {
    pub fn accepts(&self, c: &CheckResult) -> bool {
        matches(&self.check, &c.check)
            && self
                .subject_contains
                .as_ref()
                .is_none_or(|s| c.subject.contains(s.as_str()))
            && self.filter.iter().all(|(key, value)| {
                c.evidence
                    .iter()
                    .any(|(k, v)| k == key && (value == "*" || v.eq_ignore_ascii_case(value)))
            })
    }

    pub fn label(&self) -> String {
        let mut label = self.check.clone();
        let mut parts: Vec<String> = self
            .filter
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if let Some(s) = &self.subject_contains {
            parts.push(format!("subject~{s}"));
        }
        if !parts.is_empty() {
            label.push_str(&format!(" [{}]", parts.join(", ")));
        }
        label
    }
}

impl Mapping {
    /// The embedded mapping, parsed and validated.
    pub fn embedded() -> Result<Mapping, ControlsError> {
        Self::parse(EMBEDDED)
    }

    /// Parses and validates a mapping (strict: unknown keys, duplicates and dangling references fail).
    pub fn parse(text: &str) -> Result<Mapping, ControlsError> {
        let options = serde_saphyr::options! {
            strict_booleans: true,
            with_snippet: false,
        };
        let mapping: Mapping = serde_saphyr::from_str_with_options(text, options).map_err(|e| {
            let (line, column) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((0, 0));
            ControlsError::Yaml {
                line,
                column,
                message: e.to_string().lines().next().unwrap_or_default().to_owned(),
            }
        })?;
        mapping.validate()?;
        Ok(mapping)
    }

    fn validate(&self) -> Result<(), ControlsError> {
        let bad = |m: String| Err(ControlsError::Invalid(m));
        let mut frameworks: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for f in &self.frameworks {
            let mut ids = BTreeSet::new();
            for c in &f.controls {
                if !ids.insert(c.id.as_str()) {
                    return bad(format!("framework {}: control {} twice", f.id, c.id));
                }
            }
            if frameworks.insert(f.id.as_str(), ids).is_some() {
                return bad(format!("framework {} twice", f.id));
            }
        }
        let mut cited: BTreeSet<(&str, &str)> = BTreeSet::new();
        let mut checks = BTreeSet::new();
        for check in &self.checks {
            if !valid_check_pattern(&check.id) {
                return bad(format!(
                    "check id {:?}: expected lowercase words joined by '.', optionally ending in '.*'",
                    check.id
                ));
            }
            if !checks.insert(check.id.as_str()) {
                return bad(format!("check {} twice", check.id));
            }
            if check.controls.values().all(Vec::is_empty) {
                return bad(format!("check {} maps to no control", check.id));
            }
            for (framework, ids) in &check.controls {
                let Some(known) = frameworks.get(framework.as_str()) else {
                    return bad(format!("check {}: unknown framework {framework}", check.id));
                };
                for id in ids {
                    if !known.contains(id.as_str()) {
                        return bad(format!(
                            "check {}: unknown control {framework} {id}",
                            check.id
                        ));
                    }
                    cited.insert((framework.as_str(), id.as_str()));
                }
            }
        }
        for f in &self.frameworks {
            for c in &f.controls {
                if !cited.contains(&(f.id.as_str(), c.id.as_str())) {
                    return bad(format!("{} {} is cited by no check", f.id, c.id));
                }
            }
        }
        let mut lists = BTreeSet::new();
        let mut items = BTreeSet::new();
        for list in &self.checklists {
            if !lists.insert(list.id.as_str()) {
                return bad(format!("checklist {} twice", list.id));
            }
            if list.items.is_empty() {
                return bad(format!("checklist {} has no items", list.id));
            }
            for item in &list.items {
                if !items.insert(item.id.as_str()) {
                    return bad(format!("checklist item {} twice", item.id));
                }
                if item.proven_by.is_empty() {
                    return bad(format!("checklist item {} is proven by no check", item.id));
                }
                for r in &item.proven_by {
                    if !checks.contains(r.check.as_str()) {
                        return bad(format!(
                            "checklist item {}: check {} is not in `checks`",
                            item.id, r.check
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The mapping entry covering a check id (exact id first, then the longest `prefix.*`).
    pub fn check(&self, id: &str) -> Option<&CheckMapping> {
        self.checks.iter().find(|c| c.id == id).or_else(|| {
            self.checks
                .iter()
                .filter(|c| c.id.ends_with(".*") && matches(&c.id, id))
                .max_by_key(|c| c.id.len())
        })
    }

    /// Checklist items a check id helps prove, as `(checklist, item)`.
    pub fn items_for(&self, id: &str) -> Vec<(&Checklist, &ChecklistItem)> {
        let mut out = Vec::new();
        for list in &self.checklists {
            for item in &list.items {
                if item.proven_by.iter().any(|r| matches(&r.check, id)) {
                    out.push((list, item));
                }
            }
        }
        out
    }

    pub fn framework(&self, id: &str) -> Option<&Framework> {
        self.frameworks.iter().find(|f| f.id == id)
    }
}

fn valid_check_pattern(id: &str) -> bool {
    let body = id.strip_suffix(".*").unwrap_or(id);
    !body.is_empty()
        && body.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// Passed: every check of it that ran passed. Failed: any failed (or errored). Not covered: none ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Coverage {
    Failed,
    Passed,
    NotCovered,
}

impl Coverage {
    pub fn label(self) -> &'static str {
        match self {
            Coverage::Passed => "passed",
            Coverage::Failed => "failed",
            Coverage::NotCovered => "not covered",
        }
    }
}

/// Counts of results for one check id (or one filtered reference), with where they are.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Tally {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    #[serde(skip)]
    pub at: Vec<CheckAt>,
}

impl Tally {
    pub fn add(&mut self, status: Status, at: CheckAt) {
        match status {
            Status::Passed => self.passed += 1,
            Status::Failed | Status::Error => self.failed += 1,
            Status::Skipped => self.skipped += 1,
        }
        self.at.push(at);
    }

    pub fn coverage(&self) -> Coverage {
        if self.failed > 0 {
            Coverage::Failed
        } else if self.passed > 0 {
            Coverage::Passed
        } else {
            Coverage::NotCovered
        }
    }

    fn merge(&mut self, other: &Tally) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.skipped += other.skipped;
        self.at.extend(other.at.iter().copied());
    }
}

fn worst(statuses: impl IntoIterator<Item = Coverage>) -> Coverage {
    let mut any_passed = false;
    for s in statuses {
        match s {
            Coverage::Failed => return Coverage::Failed,
            Coverage::Passed => any_passed = true,
            Coverage::NotCovered => {}
        }
    }
    if any_passed {
        Coverage::Passed
    } else {
        Coverage::NotCovered
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ControlStatus {
    pub framework: String,
    pub control: String,
    pub title: String,
    pub status: Coverage,
    /// Check ids (or patterns) that cite this control, each with its tally in this run.
    pub checks: Vec<(String, Tally)>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ItemStatus {
    pub checklist: String,
    pub id: String,
    pub text: String,
    pub status: Coverage,
    /// Each `provenBy` reference (label) with its tally in this run.
    pub proven_by: Vec<(String, Tally)>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ChecklistStatus {
    pub id: String,
    pub profile: String,
    pub title: String,
    /// False when the checklist's profile was not part of the run: every item is then not covered.
    pub profile_in_run: bool,
    pub items: Vec<ItemStatus>,
}

/// The mapping evaluated against one run.
#[derive(Clone, Debug, Serialize)]
pub struct Evaluation {
    /// Check id seen in the run → tally (all profiles).
    pub checks: BTreeMap<String, Tally>,
    pub controls: Vec<ControlStatus>,
    pub checklists: Vec<ChecklistStatus>,
    /// Check ids that ran but that the mapping does not know.
    pub unmapped: Vec<String>,
}

impl Evaluation {
    pub fn controls_of<'e>(&'e self, framework: &str) -> impl Iterator<Item = &'e ControlStatus> {
        self.controls
            .iter()
            .filter(move |c| c.framework == framework)
    }
}

pub fn evaluate(mapping: &Mapping, view: &View<'_>) -> Evaluation {
    let results = view.results;
    let mut checks: BTreeMap<String, Tally> = BTreeMap::new();
    for (at, c) in view.all_checks() {
        checks.entry(c.check.clone()).or_default().add(c.status, at);
    }
    // Per mapping entry (an id or a pattern), the merged tallies of the ids it covers.
    let mut by_entry: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut unmapped = Vec::new();
    for (id, tally) in &checks {
        match mapping.check(id) {
            Some(entry) => by_entry.entry(entry.id.as_str()).or_default().merge(tally),
            None => unmapped.push(id.clone()),
        }
    }
    let mut controls = Vec::new();
    for f in &mapping.frameworks {
        for control in &f.controls {
            let citing: Vec<(String, Tally)> = mapping
                .checks
                .iter()
                .filter(|c| {
                    c.controls
                        .get(&f.id)
                        .is_some_and(|ids| ids.contains(&control.id))
                })
                .map(|c| {
                    (
                        c.id.clone(),
                        by_entry.get(c.id.as_str()).cloned().unwrap_or_default(),
                    )
                })
                .collect();
            controls.push(ControlStatus {
                framework: f.id.clone(),
                control: control.id.clone(),
                title: control.title.clone(),
                status: worst(citing.iter().map(|(_, t)| t.coverage())),
                checks: citing,
            });
        }
    }
    let profiles_in_run: BTreeSet<&str> =
        results.profiles.iter().map(|p| p.name.as_str()).collect();
    let mut checklists = Vec::new();
    for list in &mapping.checklists {
        let in_run = profiles_in_run.contains(list.profile.as_str());
        let mut items = Vec::new();
        for item in &list.items {
            let proven_by: Vec<(String, Tally)> = item
                .proven_by
                .iter()
                .map(|r| {
                    let mut tally = Tally::default();
                    if in_run {
                        for (at, c) in view.all_checks() {
                            let scoped = view
                                .profile_of(at.scenario)
                                .is_none_or(|p| p == list.profile);
                            if scoped && r.accepts(c) {
                                tally.add(c.status, at);
                            }
                        }
                    }
                    (r.label(), tally)
                })
                .collect();
            items.push(ItemStatus {
                checklist: list.id.clone(),
                id: item.id.clone(),
                text: item.text.clone(),
                status: worst(proven_by.iter().map(|(_, t)| t.coverage())),
                proven_by,
            });
        }
        checklists.push(ChecklistStatus {
            id: list.id.clone(),
            profile: list.profile.clone(),
            title: list.title.clone(),
            profile_in_run: in_run,
            items,
        });
    }
    Evaluation {
        checks,
        controls,
        checklists,
        unmapped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every check id the project records today, and the ones the plan names (DESIGN.md).
    pub(crate) const KNOWN_CHECKS: &[&str] = &[
        "ingress.chain",
        "ingress.refuses",
        "identity.svid",
        "identity.schema",
        "identity.spiffe-id-form",
        "identity.svid-sensitivity",
        "identity.served",
        "mtls.refuses",
        "pki.hierarchy",
        "pki.rotation-policy",
        "pki.plugin-ca",
        "intent.static",
        "intent.live",
        "mtls.strict",
        "mtls.destination-rule",
        "policy.unsupported",
        "mtls.plaintext-rejected",
        "mtls.foreign-identity-rejected",
        "admission.decision",
        "admission.audit",
        "rotation.workload",
        "rotation.intermediate",
        "spire.server",
        "spire.agents",
        "spire.svid",
        "control-plane.health",
        "metrics.rbac",
        "drill.cert-expiry",
        "drill.policy-widening",
    ];

    #[test]
    fn the_embedded_mapping_parses_and_validates() {
        let m = Mapping::embedded().unwrap();
        assert_eq!(m.frameworks.len(), 3);
        for f in &m.frameworks {
            for c in &f.controls {
                assert!(
                    m.checks
                        .iter()
                        .any(|k| k.controls.get(&f.id).is_some_and(|ids| ids.contains(&c.id))),
                    "{} {} cited by a check",
                    f.id,
                    c.id
                );
            }
        }
    }

    #[test]
    fn every_known_check_maps_to_controls_and_a_checklist_item() {
        let m = Mapping::embedded().unwrap();
        for id in KNOWN_CHECKS {
            let entry = m.check(id).unwrap_or_else(|| panic!("{id} is mapped"));
            assert!(!entry.controls.is_empty(), "{id}");
            assert!(!m.items_for(id).is_empty(), "{id} proves a checklist item");
        }
        assert!(m.check("drill").is_none());
        assert!(m.check("drill.").is_none());
        assert!(m.check("identity.svid-x").is_none());
    }

    #[test]
    fn the_soma_agent_hub_checklist_is_the_runbooks_word_for_word() {
        let m = Mapping::embedded().unwrap();
        let list = m
            .checklists
            .iter()
            .find(|l| l.id == "soma-agent-hub")
            .unwrap();
        let texts: Vec<&str> = list.items.iter().map(|i| i.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "Istio control plane running (istiod)",
                "Ingress gateway running",
                "All services have mTLS certificates",
                "OPA/Gatekeeper policies enforced",
                "Policy violations blocked",
                "SPIRE server running",
                "SPIRE agents running on all nodes",
                "Workloads issued SVIDs",
                "Service-to-service communication encrypted",
                "Metrics exported to Prometheus",
            ]
        );
    }

    #[test]
    fn strict_parsing_refuses_mistakes() {
        let base = EMBEDDED;
        let unknown_key = base.replacen(
            "    title: \"Each workload",
            "    titel: \"Each workload",
            1,
        );
        assert!(Mapping::parse(&unknown_key).is_err(), "unknown key");
        let unknown_control = base.replacen("[IA-3, IA-5, IA-9, SC-13, SC-17]", "[IA-3, XX-1]", 1);
        let e = Mapping::parse(&unknown_control).unwrap_err().to_string();
        assert!(e.contains("unknown control nist-800-53 XX-1"), "{e}");
        let orphan = base.replacen(
            "      - { id: SI-4, title: \"System Monitoring\" }",
            "      - { id: SI-4, title: \"System Monitoring\" }\n      - { id: SI-7, title: \"Integrity\" }",
            1,
        );
        let e = Mapping::parse(&orphan).unwrap_err().to_string();
        assert!(e.contains("SI-7 is cited by no check"), "{e}");
        let dangling = base.replacen("- { check: metrics.rbac }", "- { check: metrics.rbak }", 1);
        let e = Mapping::parse(&dangling).unwrap_err().to_string();
        assert!(e.contains("metrics.rbak"), "{e}");
    }

    #[test]
    fn patterns_match_only_below_their_prefix() {
        assert!(matches("drill.*", "drill.cert-expiry"));
        assert!(!matches("drill.*", "drill"));
        assert!(!matches("drill.*", "drillx.a"));
        assert!(matches("mtls.strict", "mtls.strict"));
        assert!(!matches("mtls.strict", "mtls.strict-x"));
    }
}

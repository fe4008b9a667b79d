//! Drill files (`scenarios/*.yaml`): a strict schema, validated against the profile the drill
//! names, into a [`Drill`].
//!
//! # Contract
//!
//! A [`Drill`] only exists if its file parses with no unknown key (`deny_unknown_fields`
//! everywhere), every duration is `<n>ms|s|m|h|d`, every probe names services, endpoints and
//! methods that the profile's intent matrix knows, every field given applies to the kind it is
//! given for, the recovery steps are ones that can undo the fault (in the runbook's order), and
//! the bounds fit the expectation. Anything else is a [`SourceError`] at `file:line:column` with
//! the expected form; every problem of a file is reported in one pass.
//!
//! Terms the schema fixes (see `scenarios/README.md` for the file format):
//!
//! * **healthy**: a probe's result equals what the profile promises (an allowed call served with
//!   the caller's identity, a denied call refused by RBAC, plaintext refused, ...);
//! * **sustained**: every probe that is not a `health` probe has reported healthy at least
//!   `minSamples` times since its last failure, every such probe's latest result is healthy, and
//!   that has held for `sustained` since the moment the last of them turned healthy. Time to
//!   recover ends at the start of the first such window after recovery begins;
//! * **time to detect**: from the start of the injection to the first unhealthy result of a
//!   detection probe (by default every probe that is not a `health` probe).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_saphyr::Spanned;

use crate::error::{SourceError, SourceErrors};
use crate::intents::ExpectedCall;
use crate::policy::istio::MeshPolicies;
use crate::profile::Profile;

/// The `apiVersion` every drill file carries.
pub const API_VERSION: &str = "meshproof.dev/v1alpha1";
/// The `kind` every drill file carries.
pub const KIND: &str = "Drill";

/// Shortest and longest probe interval: faster would measure the harness, slower would blur
/// detection and recovery times beyond use.
const MIN_EVERY: Duration = Duration::from_millis(10);
const MAX_EVERY: Duration = Duration::from_secs(10);

type S<T> = Spanned<T>;

mod raw {
    use super::S;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct File {
        pub api_version: S<String>,
        pub kind: S<String>,
        pub metadata: Metadata,
        pub spec: Spec,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Metadata {
        pub name: S<String>,
        #[serde(default)]
        pub runbook: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Spec {
        pub profile: S<String>,
        #[serde(default)]
        pub summary: Option<String>,
        #[serde(default)]
        pub lab: Option<Lab>,
        pub steady: Steady,
        pub fault: S<Fault>,
        pub detection: Detection,
        #[serde(default)]
        pub recovery: Vec<S<Step>>,
        pub bounds: Bounds,
        pub undo: Undo,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Lab {
        #[serde(default)]
        pub svid_ttl: Option<S<String>>,
        #[serde(default)]
        pub ca_ttl: Option<S<String>>,
        #[serde(default)]
        pub webhook_timeout: Option<S<String>>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Steady {
        pub duration: S<String>,
        pub sustained: S<String>,
        #[serde(default)]
        pub min_samples: Option<S<u32>>,
        pub probes: Vec<S<Probe>>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Probe {
        pub id: S<String>,
        pub kind: S<String>,
        pub every: S<String>,
        #[serde(default)]
        pub role: Option<S<String>>,
        #[serde(default)]
        pub from: Option<S<String>>,
        #[serde(default)]
        pub to: Option<S<String>>,
        #[serde(default)]
        pub endpoint: Option<S<String>>,
        #[serde(default)]
        pub method: Option<S<String>>,
        #[serde(default)]
        pub path: Option<S<String>>,
        #[serde(default)]
        pub service: Option<S<String>>,
        #[serde(default)]
        pub stat: Option<S<String>>,
        #[serde(default)]
        pub case: Option<S<String>>,
        #[serde(default)]
        pub expect: Option<S<String>>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Fault {
        pub kind: S<String>,
        #[serde(default)]
        pub hold_for: Option<S<String>>,
        #[serde(default)]
        pub manifest: Option<S<String>>,
        #[serde(default)]
        pub expires_after: Option<S<String>>,
        #[serde(default)]
        pub service: Option<S<String>>,
        #[serde(default)]
        pub to: Option<S<String>>,
        #[serde(default)]
        pub path: Option<S<String>>,
        #[serde(default)]
        pub every: Option<S<String>>,
        #[serde(default)]
        pub pause: Option<S<String>>,
        #[serde(default)]
        pub validity: Option<S<String>>,
        #[serde(default)]
        pub failure_policy: Option<S<String>>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Detection {
        pub expect: S<String>,
        #[serde(default)]
        pub probes: Vec<S<String>>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Step {
        pub step: S<String>,
        #[serde(default)]
        pub runbook: Option<String>,
        #[serde(default)]
        pub validity: Option<S<String>>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Bounds {
        #[serde(default)]
        pub max_time_to_detect: Option<S<String>>,
        #[serde(default)]
        pub max_time_to_recover: Option<S<String>>,
        #[serde(default)]
        pub max_failed_requests: Option<S<u64>>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Undo {
        pub verify: Vec<S<String>>,
    }
}

/// A validated drill.
#[derive(Clone, Debug)]
pub struct Drill {
    pub name: String,
    pub file: PathBuf,
    /// Line of `metadata.name`.
    pub line: u32,
    pub runbook: Option<String>,
    pub summary: String,
    /// The profile the drill exercises (its services, intents and CA policy).
    pub profile: Arc<Profile>,
    pub lab: LabKnobs,
    /// How long every probe must be healthy before the fault is injected.
    pub steady: Duration,
    /// How long a healthy window must hold to count as recovered (see the module docs).
    pub sustained: Duration,
    /// Healthy results every probe needs inside a sustained window.
    pub min_samples: usize,
    pub probes: Vec<ProbeSpec>,
    pub fault: FaultSpec,
    pub detection: Detection,
    pub recovery: Vec<StepSpec>,
    pub bounds: Bounds,
    pub undo: Vec<UndoCheck>,
}

/// Lab time standing in for production time; reports say which values were used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LabKnobs {
    /// SPIRE `default_x509_svid_ttl` (and every lab entry's TTL).
    #[serde(serialize_with = "ser_duration")]
    pub svid_ttl: Duration,
    /// SPIRE `ca_ttl`.
    #[serde(serialize_with = "ser_duration")]
    pub ca_ttl: Duration,
    /// How long the lab API server waits for the admission webhook (Kubernetes'
    /// `timeoutSeconds`; Gatekeeper installs 3 s).
    #[serde(serialize_with = "ser_duration")]
    pub webhook_timeout: Duration,
}

impl Default for LabKnobs {
    fn default() -> Self {
        LabKnobs {
            svid_ttl: Duration::from_secs(10),
            ca_ttl: Duration::from_secs(120),
            webhook_timeout: Duration::from_secs(1),
        }
    }
}

/// What a probe's results mean for the drill.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// A request the mesh must keep answering as promised; failures count as failed requests.
    Traffic,
    /// An observation that shows the fault (and the recovery) but is not user traffic.
    Signal,
    /// A naive health check: recorded, never used for detection or recovery unless a drill
    /// names it, so a report can show it staying green while the mesh is broken.
    Health,
    /// Traffic the fault itself sends (an attacker); a success counts as a failed request.
    Attack,
}

#[derive(Clone, Debug)]
pub enum ProbeKind {
    /// A request of the intent matrix through the caller's sidecar. Sidecars keep upstream
    /// connections open, so this request rides an existing mTLS connection when there is one.
    Call(ExpectedCall),
    /// The same request on a **new** mTLS connection to the callee's inbound listener, presenting
    /// the certificate the caller's sidecar holds right now (what the caller's sidecar does
    /// whenever it opens a connection): both sides validate each other's current chain.
    Handshake(ExpectedCall),
    /// Plaintext HTTP straight to `to`'s inbound listener: must be refused.
    Plaintext { to: String, path: String },
    /// An Envoy counter of `service`'s sidecar: healthy while it does not grow.
    Telemetry { service: String, stat: String },
    /// The Workload API hands `service` a currently valid SVID for its ID.
    WorkloadApi { service: String },
    /// A new workload can be registered (`entry create`, then removed again).
    Registration,
    /// `spire-server healthcheck`, or the healthcheck of the agent serving `service`.
    SpireHealth { agent_of: Option<String> },
    /// Envoy admin `/ready` of `service`'s sidecar.
    EnvoyReady { service: String },
    /// An object submitted to admission through the lab API server.
    Admission {
        case: String,
        file: PathBuf,
        admitted: bool,
    },
}

impl ProbeKind {
    pub fn name(&self) -> &'static str {
        match self {
            ProbeKind::Call(_) => "call",
            ProbeKind::Handshake(_) => "handshake",
            ProbeKind::Plaintext { .. } => "plaintext",
            ProbeKind::Telemetry { .. } => "telemetry",
            ProbeKind::WorkloadApi { .. } => "workloadApi",
            ProbeKind::Registration => "registration",
            ProbeKind::SpireHealth { .. } => "spireHealth",
            ProbeKind::EnvoyReady { .. } => "envoyReady",
            ProbeKind::Admission { .. } => "admission",
        }
    }

    /// What it asks, for reports: `strategy → execution GET /quotes/probe`.
    pub fn describe(&self) -> String {
        match self {
            ProbeKind::Call(call) => call.label(),
            ProbeKind::Handshake(call) => format!("{} (new mTLS connection)", call.label()),
            ProbeKind::Plaintext { to, path } => format!("plaintext → {to} GET {path}"),
            ProbeKind::Telemetry { service, stat } => format!("{service} envoy stat *{stat}*"),
            ProbeKind::WorkloadApi { service } => format!("Workload API SVID of {service}"),
            ProbeKind::Registration => "registration of a new workload".into(),
            ProbeKind::SpireHealth { agent_of: None } => "spire-server healthcheck".into(),
            ProbeKind::SpireHealth {
                agent_of: Some(service),
            } => format!("spire-agent healthcheck (agent of {service})"),
            ProbeKind::EnvoyReady { service } => format!("{service}'s sidecar /ready"),
            ProbeKind::Admission { case, admitted, .. } => format!(
                "admission of {case} (promised: {})",
                if *admitted { "admitted" } else { "denied" }
            ),
        }
    }

    fn default_role(&self) -> Role {
        match self {
            ProbeKind::Call(_)
            | ProbeKind::Handshake(_)
            | ProbeKind::Plaintext { .. }
            | ProbeKind::Admission { .. } => Role::Traffic,
            ProbeKind::Telemetry { .. }
            | ProbeKind::WorkloadApi { .. }
            | ProbeKind::Registration => Role::Signal,
            ProbeKind::SpireHealth { .. } | ProbeKind::EnvoyReady { .. } => Role::Health,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ProbeSpec {
    pub id: String,
    pub kind: ProbeKind,
    pub every: Duration,
    pub role: Role,
    pub line: u32,
}

/// Gatekeeper's webhook `failurePolicy`: what the API server does when the webhook cannot be
/// reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum FailurePolicy {
    /// Admit the request (Gatekeeper's default): admission fails open.
    Ignore,
    /// Reject the request: admission fails closed.
    Fail,
}

#[derive(Clone, Debug)]
pub enum FaultKind {
    /// Every workload's certificate chains to an expired mesh intermediate.
    ExpiredIntermediate,
    /// A planned intermediate rotation with overlap: a new intermediate from the same root,
    /// workloads re-issued one by one `pause` apart.
    RotateIntermediate {
        pause: Duration,
        validity: Option<Duration>,
    },
    /// `spire-server` is killed.
    SpireServerOutage,
    /// The agent serving `service`'s workload is killed.
    SpireAgentOutage { service: String },
    /// Extra Istio objects are applied (e.g. an allow-all AuthorizationPolicy).
    PolicyDrift {
        manifest: String,
        policies: MeshPolicies,
    },
    /// A short-lived emergency grant (the runbook's "Mitigate"), to be reverted at expiry.
    EmergencyOverride {
        manifest: String,
        policies: MeshPolicies,
        expires_after: Duration,
    },
    /// A client without a sidecar speaks plaintext to `to`.
    PlaintextClient {
        to: String,
        path: String,
        every: Duration,
    },
    /// The admission webhook stops answering.
    AdmissionUnavailable { failure_policy: FailurePolicy },
}

impl FaultKind {
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::ExpiredIntermediate => "expiredIntermediate",
            FaultKind::RotateIntermediate { .. } => "rotateIntermediate",
            FaultKind::SpireServerOutage => "spireServerOutage",
            FaultKind::SpireAgentOutage { .. } => "spireAgentOutage",
            FaultKind::PolicyDrift { .. } => "policyDrift",
            FaultKind::EmergencyOverride { .. } => "emergencyOverride",
            FaultKind::PlaintextClient { .. } => "plaintextClient",
            FaultKind::AdmissionUnavailable { .. } => "admissionUnavailable",
        }
    }

    /// The recovery steps that can act on this fault.
    fn steps(&self) -> &'static [StepName] {
        use StepName as N;
        match self {
            FaultKind::ExpiredIntermediate => &[
                N::NewIntermediate,
                N::UpdateCaSecret,
                N::ReloadControlPlane,
                N::ReissueWorkloads,
                N::Validate,
            ],
            FaultKind::RotateIntermediate { .. } => &[N::Validate],
            FaultKind::SpireServerOutage => &[N::RestartSpireServer],
            FaultKind::SpireAgentOutage { .. } => &[N::RestartSpireAgent],
            FaultKind::PolicyDrift { .. } | FaultKind::EmergencyOverride { .. } => {
                &[N::RevertPolicy]
            }
            FaultKind::PlaintextClient { .. } => &[N::StopFault],
            FaultKind::AdmissionUnavailable { .. } => &[N::RestartAdmission],
        }
    }
}

#[derive(Clone, Debug)]
pub struct FaultSpec {
    pub kind: FaultKind,
    /// Keep the fault in place at least this long before recovery begins (default: until it is
    /// detected).
    pub hold_for: Option<Duration>,
    pub line: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expect {
    /// The fault must surface as an unhealthy probe result.
    Failure,
    /// Nothing may fail (a planned change such as a rotation with overlap).
    None,
}

#[derive(Clone, Debug)]
pub struct Detection {
    pub expect: Expect,
    /// Probe ids whose failure counts as detection; empty: every non-`health` probe.
    pub probes: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StepName {
    NewIntermediate,
    UpdateCaSecret,
    ReloadControlPlane,
    ReissueWorkloads,
    Validate,
    RevertPolicy,
    RestartSpireServer,
    RestartSpireAgent,
    StopFault,
    RestartAdmission,
}

const STEP_NAMES: &[(&str, StepName)] = &[
    ("newIntermediate", StepName::NewIntermediate),
    ("updateCaSecret", StepName::UpdateCaSecret),
    ("reloadControlPlane", StepName::ReloadControlPlane),
    ("reissueWorkloads", StepName::ReissueWorkloads),
    ("validate", StepName::Validate),
    ("revertPolicy", StepName::RevertPolicy),
    ("restartSpireServer", StepName::RestartSpireServer),
    ("restartSpireAgent", StepName::RestartSpireAgent),
    ("stopFault", StepName::StopFault),
    ("restartAdmission", StepName::RestartAdmission),
];

/// One recovery step, in the runbook's words where it gives them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepKind {
    /// Prepare a new intermediate from the corporate root (runbook: "Prepare new intermediate").
    NewIntermediate {
        validity: Option<Duration>,
    },
    /// Write it as Istio's plug-in CA secret (`istio-ca-secret` / `cacerts`).
    UpdateCaSecret,
    /// The control plane loads the secret (runbook: "Restart control plane").
    ReloadControlPlane,
    /// Every workload gets a certificate from the loaded intermediate ("Force workload refresh").
    ReissueWorkloads,
    /// Every sidecar serves a certificate of the active intermediate (`istioctl proxy-config
    /// secret`).
    Validate,
    /// The drifted or emergency policy is removed ("Revert overrides").
    RevertPolicy,
    RestartSpireServer,
    RestartSpireAgent,
    /// The faulty client goes away.
    StopFault,
    RestartAdmission,
}

impl StepKind {
    pub fn name(&self) -> &'static str {
        let wanted = self.step_name();
        STEP_NAMES
            .iter()
            .find(|(_, n)| *n == wanted)
            .map_or("?", |(s, _)| s)
    }

    fn step_name(&self) -> StepName {
        match self {
            StepKind::NewIntermediate { .. } => StepName::NewIntermediate,
            StepKind::UpdateCaSecret => StepName::UpdateCaSecret,
            StepKind::ReloadControlPlane => StepName::ReloadControlPlane,
            StepKind::ReissueWorkloads => StepName::ReissueWorkloads,
            StepKind::Validate => StepName::Validate,
            StepKind::RevertPolicy => StepName::RevertPolicy,
            StepKind::RestartSpireServer => StepName::RestartSpireServer,
            StepKind::RestartSpireAgent => StepName::RestartSpireAgent,
            StepKind::StopFault => StepName::StopFault,
            StepKind::RestartAdmission => StepName::RestartAdmission,
        }
    }
}

#[derive(Clone, Debug)]
pub struct StepSpec {
    pub kind: StepKind,
    pub runbook: Option<String>,
    pub line: u32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bounds {
    pub max_time_to_detect: Option<Duration>,
    pub max_time_to_recover: Option<Duration>,
    pub max_failed_requests: Option<u64>,
}

/// What the undo must prove restored, compared with the state recorded before the fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UndoCheck {
    /// The leaf each sidecar serves.
    Serials,
    /// The intermediate in each workload's chain and the one the control plane signs with.
    Intermediates,
    /// The RBAC and mTLS mode each sidecar enforces.
    Policies,
    /// Every sidecar ready, the same number of lab processes, nothing left running.
    Processes,
    /// SPIRE server and agents running and healthy, the registration entries unchanged.
    Spire,
    /// The admission webhook answering, with the same failure policy.
    Admission,
}

const UNDO_NAMES: &[(&str, UndoCheck)] = &[
    ("serials", UndoCheck::Serials),
    ("intermediates", UndoCheck::Intermediates),
    ("policies", UndoCheck::Policies),
    ("processes", UndoCheck::Processes),
    ("spire", UndoCheck::Spire),
    ("admission", UndoCheck::Admission),
];

impl Drill {
    /// Ids of the probes that count for detection.
    pub fn detection_probes(&self) -> BTreeSet<String> {
        if self.detection.probes.is_empty() {
            self.probes
                .iter()
                .filter(|p| p.role != Role::Health)
                .map(|p| p.id.clone())
                .collect()
        } else {
            self.detection.probes.iter().cloned().collect()
        }
    }

    /// Ids of the probes that must be healthy in steady state and for recovery.
    pub fn recovery_probes(&self) -> BTreeSet<String> {
        self.probes
            .iter()
            .filter(|p| p.role != Role::Health && p.role != Role::Attack)
            .map(|p| p.id.clone())
            .collect()
    }

    pub fn probe(&self, id: &str) -> Option<&ProbeSpec> {
        self.probes.iter().find(|p| p.id == id)
    }

    /// Whether the drill needs the lab mesh, SPIRE, or the admission webhook.
    pub fn needs_mesh(&self) -> bool {
        self.probes.iter().any(|p| {
            matches!(
                p.kind,
                ProbeKind::Call(_)
                    | ProbeKind::Handshake(_)
                    | ProbeKind::Plaintext { .. }
                    | ProbeKind::Telemetry { .. }
                    | ProbeKind::EnvoyReady { .. }
            )
        }) || matches!(
            self.fault.kind,
            FaultKind::ExpiredIntermediate
                | FaultKind::RotateIntermediate { .. }
                | FaultKind::PolicyDrift { .. }
                | FaultKind::EmergencyOverride { .. }
                | FaultKind::PlaintextClient { .. }
        )
    }

    pub fn needs_spire(&self) -> bool {
        self.probes.iter().any(|p| {
            matches!(
                p.kind,
                ProbeKind::WorkloadApi { .. }
                    | ProbeKind::Registration
                    | ProbeKind::SpireHealth { .. }
            )
        }) || matches!(
            self.fault.kind,
            FaultKind::SpireServerOutage | FaultKind::SpireAgentOutage { .. }
        )
    }

    pub fn needs_admission(&self) -> bool {
        self.probes
            .iter()
            .any(|p| matches!(p.kind, ProbeKind::Admission { .. }))
            || matches!(self.fault.kind, FaultKind::AdmissionUnavailable { .. })
    }
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(*d))
}

/// Parses `<n>ms`, `<n>s`, `<n>m`, `<n>h` or `<n>d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let amount: u64 = digits.parse().map_err(|_| {
        format!("\"{text}\" is not a duration: expected a whole number and a unit ms, s, m, h or d")
    })?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "" => return Err(format!("\"{text}\" has no unit: expected ms, s, m, h or d")),
        other => {
            return Err(format!(
                "\"{text}\" has unit \"{other}\": expected ms, s, m, h or d"
            ));
        }
    };
    amount
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("\"{text}\" is too long a duration"))
}

/// `50ms`, `1.5s`, `12h`: the shortest exact form.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if ms % 1000 != 0 {
        return if ms < 1000 {
            format!("{ms}ms")
        } else {
            format!("{:.3}s", d.as_secs_f64())
        };
    }
    crate::duration::format(Duration::from_secs(d.as_secs()))
}

/// Loads and validates one drill file.
pub fn load(path: &Path) -> Result<Drill, SourceErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        SourceErrors(vec![
            SourceError::new(path, 0, 0, format!("cannot read drill: {e}"))
                .expected("a readable scenarios/<name>.yaml"),
        ])
    })?;
    parse(path, &text)
}

/// Parses drill text; `path` names it in errors and locates the profile's manifests.
pub fn parse(path: &Path, text: &str) -> Result<Drill, SourceErrors> {
    let options = serde_saphyr::options! { strict_booleans: true, with_snippet: false };
    let raw: raw::File = serde_saphyr::from_str_with_options(text, options)
        .map_err(|e| SourceErrors(vec![yaml_error(path, &e)]))?;
    Validate {
        file: path,
        errors: Vec::new(),
    }
    .drill(raw)
}

fn yaml_error(path: &Path, e: &serde_saphyr::Error) -> SourceError {
    let (line, column) = e
        .location()
        .map(|l| (l.line() as u32, l.column() as u32))
        .unwrap_or((0, 0));
    let message = e.to_string();
    // serde-saphyr prints "error: line L column C: what" then a snippet; the location is ours to
    // print and the snippet would break the one-line contract.
    let first = message.lines().next().unwrap_or("invalid YAML").trim();
    let what = first
        .strip_prefix("error: ")
        .and_then(|rest| {
            rest.split_once(": ")
                .filter(|(loc, _)| loc.starts_with("line "))
                .map(|(_, w)| w)
        })
        .unwrap_or(first);
    let error = SourceError::new(path, line, column, what);
    if what.contains("expected") {
        error
    } else {
        error.expected("a drill in the form of scenarios/expired-intermediate.yaml")
    }
}

struct Validate<'a> {
    file: &'a Path,
    errors: Vec<SourceError>,
}

fn line_of<T>(s: &Spanned<T>) -> u32 {
    s.referenced.line() as u32
}

impl Validate<'_> {
    fn at<T>(
        &mut self,
        span: &Spanned<T>,
        message: impl Into<String>,
        expected: impl Into<String>,
    ) {
        let loc = span.referenced;
        self.errors.push(
            SourceError::new(self.file, loc.line() as u32, loc.column() as u32, message)
                .expected(expected),
        );
    }

    fn duration(&mut self, what: &str, value: &Spanned<String>) -> Option<Duration> {
        match parse_duration(&value.value) {
            Ok(d) if d.is_zero() => {
                self.at(
                    value,
                    format!("{what} is zero"),
                    "a positive duration like 500ms or 2s",
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.at(
                    value,
                    format!("{what}: {e}"),
                    "a duration like 50ms, 2s or 1m",
                );
                None
            }
        }
    }

    fn opt_duration(&mut self, what: &str, value: &Option<Spanned<String>>) -> Option<Duration> {
        value.as_ref().and_then(|v| self.duration(what, v))
    }

    fn service(
        &mut self,
        profile: &Profile,
        what: &str,
        value: &Spanned<String>,
    ) -> Option<String> {
        if profile.service(&value.value).is_some() {
            Some(value.value.clone())
        } else {
            let names: Vec<&str> = profile.services.iter().map(|s| s.name.as_str()).collect();
            self.at(
                value,
                format!(
                    "{what} \"{}\" is not a service of profile {}",
                    value.value, profile.name
                ),
                format!("one of {}", names.join(", ")),
            );
            None
        }
    }

    fn drill(mut self, raw: raw::File) -> Result<Drill, SourceErrors> {
        if raw.api_version.value != API_VERSION {
            self.at(
                &raw.api_version,
                format!("apiVersion \"{}\" is not supported", raw.api_version.value),
                API_VERSION,
            );
        }
        if raw.kind.value != KIND {
            self.at(
                &raw.kind,
                format!("kind \"{}\" is not a drill", raw.kind.value),
                KIND,
            );
        }
        let name = &raw.metadata.name;
        if !crate::profile::is_dns_label(&name.value) {
            self.at(
                name,
                format!("metadata.name \"{}\" is not a valid drill name", name.value),
                "a DNS-1123 label, e.g. expired-intermediate",
            );
        }
        let spec = raw.spec;
        let profile = match load_profile(&spec.profile.value) {
            Ok(p) => Arc::new(p),
            Err(e) => {
                self.at(
                    &spec.profile,
                    format!("profile \"{}\": {e}", spec.profile.value),
                    "a bundled profile name or a path to a profile.yaml",
                );
                return Err(SourceErrors(self.errors));
            }
        };
        let defaults = LabKnobs::default();
        let lab = match &spec.lab {
            None => defaults,
            Some(lab) => LabKnobs {
                svid_ttl: self
                    .opt_duration("lab.svidTtl", &lab.svid_ttl)
                    .unwrap_or(defaults.svid_ttl),
                ca_ttl: self
                    .opt_duration("lab.caTtl", &lab.ca_ttl)
                    .unwrap_or(defaults.ca_ttl),
                webhook_timeout: self
                    .opt_duration("lab.webhookTimeout", &lab.webhook_timeout)
                    .unwrap_or(defaults.webhook_timeout),
            },
        };
        if let Some(ttl) = spec.lab.as_ref().and_then(|l| l.svid_ttl.as_ref()) {
            if lab.svid_ttl < Duration::from_secs(2) || lab.svid_ttl.saturating_mul(6) > lab.ca_ttl
            {
                self.at(
                    ttl,
                    format!(
                        "lab.svidTtl {} does not fit lab.caTtl {}",
                        format_duration(lab.svid_ttl),
                        format_duration(lab.ca_ttl)
                    ),
                    "at least 2s and at most a sixth of caTtl (SPIRE's rule)",
                );
            }
        }
        let steady = self.duration("steady.duration", &spec.steady.duration);
        let sustained = self.duration("steady.sustained", &spec.steady.sustained);
        let min_samples = match &spec.steady.min_samples {
            Some(n) if n.value == 0 => {
                self.at(n, "steady.minSamples is 0", "at least 1");
                1
            }
            Some(n) => n.value as usize,
            None => 2,
        };
        let mut probes = Vec::new();
        let mut ids = BTreeSet::new();
        for probe in &spec.steady.probes {
            if !ids.insert(probe.value.id.value.clone()) {
                self.at(
                    &probe.value.id,
                    format!("probe id \"{}\" is used twice", probe.value.id.value),
                    "unique probe ids",
                );
            }
            if let Some(p) = self.probe(&profile, probe) {
                probes.push(p);
            }
        }
        if spec.steady.probes.is_empty() {
            self.at(
                &spec.steady.duration,
                "steady.probes is empty",
                "at least one probe: a drill without steady-state probes measures nothing",
            );
        }
        let fault = self.fault(&profile, &spec.fault);
        let expect = match spec.detection.expect.value.as_str() {
            "failure" => Some(Expect::Failure),
            "none" => Some(Expect::None),
            other => {
                self.at(
                    &spec.detection.expect,
                    format!("detection.expect \"{other}\" is unknown"),
                    "failure or none",
                );
                None
            }
        };
        for id in &spec.detection.probes {
            if !ids.contains(&id.value) {
                self.at(
                    id,
                    format!(
                        "detection probe \"{}\" is not a probe of this drill",
                        id.value
                    ),
                    format!(
                        "one of {}",
                        ids.iter().cloned().collect::<Vec<_>>().join(", ")
                    ),
                );
            }
        }
        let recovery = self.recovery(fault.as_ref(), &spec.recovery);
        let bounds = Bounds {
            max_time_to_detect: self
                .opt_duration("bounds.maxTimeToDetect", &spec.bounds.max_time_to_detect),
            max_time_to_recover: self
                .opt_duration("bounds.maxTimeToRecover", &spec.bounds.max_time_to_recover),
            max_failed_requests: spec.bounds.max_failed_requests.as_ref().map(|n| n.value),
        };
        match expect {
            Some(Expect::Failure)
                if spec.bounds.max_time_to_detect.is_none()
                    || spec.bounds.max_time_to_recover.is_none() =>
            {
                self.at(
                    &spec.detection.expect,
                    "a drill that expects a failure needs bounds.maxTimeToDetect and bounds.maxTimeToRecover",
                    "both bounds: an unbounded detection or recovery proves nothing",
                );
            }
            Some(Expect::None) => {
                if let Some(d) = &spec.bounds.max_time_to_detect {
                    self.at(
                        d,
                        "bounds.maxTimeToDetect is set but detection.expect is none",
                        "no maxTimeToDetect when nothing may fail",
                    );
                }
                if spec.bounds.max_failed_requests.is_none() {
                    self.at(
                        &spec.detection.expect,
                        "detection.expect none needs bounds.maxFailedRequests",
                        "maxFailedRequests: 0 for a change that must not fail a request",
                    );
                }
            }
            Some(Expect::Failure) | None => {}
        }
        let mut undo = Vec::new();
        for check in &spec.undo.verify {
            match UNDO_NAMES.iter().find(|(n, _)| *n == check.value) {
                Some((_, c)) => undo.push(*c),
                None => self.at(
                    check,
                    format!("undo check \"{}\" is unknown", check.value),
                    UNDO_NAMES
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
            }
        }
        if spec.undo.verify.is_empty() {
            self.at(&spec.profile, "undo.verify is empty", "what the undo must prove restored, e.g. [serials, intermediates, policies, processes]");
        }
        undo.sort();
        undo.dedup();
        if let Some(fault) = &fault {
            self.cross_check(fault, &probes, &undo, &spec.fault);
        }
        if !self.errors.is_empty() {
            return Err(SourceErrors(self.errors));
        }
        let (Some(steady), Some(sustained), Some(fault), Some(expect)) =
            (steady, sustained, fault, expect)
        else {
            return Err(SourceErrors(vec![SourceError::new(
                self.file,
                0,
                0,
                "incomplete drill",
            )]));
        };
        Ok(Drill {
            name: name.value.clone(),
            file: self.file.to_path_buf(),
            line: line_of(name),
            runbook: raw.metadata.runbook,
            summary: spec.summary.unwrap_or_default().trim().to_owned(),
            profile,
            lab,
            steady,
            sustained,
            min_samples,
            probes,
            fault,
            detection: Detection {
                expect,
                probes: spec
                    .detection
                    .probes
                    .iter()
                    .map(|p| p.value.clone())
                    .collect(),
            },
            recovery,
            bounds,
            undo,
        })
    }

    fn probe(&mut self, profile: &Profile, s: &Spanned<raw::Probe>) -> Option<ProbeSpec> {
        let p = &s.value;
        let every = self.duration("every", &p.every);
        if let Some(every) = every {
            if !(MIN_EVERY..=MAX_EVERY).contains(&every) {
                self.at(
                    &p.every,
                    format!("every {} is out of range", p.every.value),
                    "between 10ms and 10s",
                );
            }
        }
        let kind = p.kind.value.as_str();
        let allowed: &[&str] = match kind {
            "call" | "handshake" => &["from", "to", "endpoint", "method", "path"],
            "plaintext" => &["to", "path"],
            "telemetry" => &["service", "stat"],
            "workloadApi" => &["service"],
            "registration" => &[],
            "spireHealth" => &["service"],
            "envoyReady" => &["service"],
            "admission" => &["case", "expect"],
            other => {
                self.at(&p.kind, format!("probe kind \"{other}\" is unknown"), "call, handshake, plaintext, telemetry, workloadApi, registration, spireHealth, envoyReady or admission");
                return None;
            }
        };
        let fields: [(&str, &Option<Spanned<String>>); 9] = [
            ("from", &p.from),
            ("to", &p.to),
            ("endpoint", &p.endpoint),
            ("method", &p.method),
            ("path", &p.path),
            ("service", &p.service),
            ("stat", &p.stat),
            ("case", &p.case),
            ("expect", &p.expect),
        ];
        for (field, value) in fields {
            if let Some(v) = value {
                if !allowed.contains(&field) {
                    self.at(
                        v,
                        format!("field {field} does not apply to a {kind} probe"),
                        format!(
                            "only {} for {kind}",
                            if allowed.is_empty() {
                                "id, kind, every and role".to_owned()
                            } else {
                                allowed.join(", ")
                            }
                        ),
                    );
                }
            }
        }
        let required = |this: &mut Self,
                        field: &str,
                        value: &Option<Spanned<String>>|
         -> Option<Spanned<String>> {
            match value {
                Some(v) => Some(v.clone()),
                None => {
                    this.at(
                        &p.kind,
                        format!("a {kind} probe needs {field}"),
                        format!("{field}: ..."),
                    );
                    None
                }
            }
        };
        let probe_kind = match kind {
            "call" | "handshake" | "spireCall" => {
                let from = required(self, "from", &p.from)?;
                let to = required(self, "to", &p.to)?;
                let endpoint = required(self, "endpoint", &p.endpoint)?;
                let call = self.call(
                    profile,
                    &from,
                    &to,
                    &endpoint,
                    p.method.as_ref(),
                    p.path.as_ref(),
                )?;
                if kind == "call" {
                    ProbeKind::Call(call)
                } else {
                    ProbeKind::Handshake(call)
                }
            }
            "plaintext" => {
                let to = required(self, "to", &p.to)?;
                let to = self.service(profile, "to", &to)?;
                ProbeKind::Plaintext {
                    to,
                    path: p
                        .path
                        .as_ref()
                        .map_or_else(|| "/".to_owned(), |v| v.value.clone()),
                }
            }
            "telemetry" => {
                let service = required(self, "service", &p.service)?;
                let stat = required(self, "stat", &p.stat)?;
                ProbeKind::Telemetry {
                    service: self.service(profile, "service", &service)?,
                    stat: stat.value,
                }
            }
            "workloadApi" => {
                let service = required(self, "service", &p.service)?;
                self.spire_entry(profile, &service)?;
                ProbeKind::WorkloadApi {
                    service: service.value,
                }
            }
            "registration" => {
                if profile.spire.is_none() {
                    self.at(
                        &p.kind,
                        format!("profile {} has no spire: section", profile.name),
                        "a SPIRE profile such as soma-agent-hub",
                    );
                    return None;
                }
                ProbeKind::Registration
            }
            "spireHealth" => {
                let agent_of = match &p.service {
                    Some(service) => {
                        self.spire_entry(profile, service)?;
                        Some(service.value.clone())
                    }
                    None => None,
                };
                ProbeKind::SpireHealth { agent_of }
            }
            "envoyReady" => {
                let service = required(self, "service", &p.service)?;
                let service = self.service(profile, "service", &service)?;
                ProbeKind::EnvoyReady { service }
            }
            _ => {
                let case = required(self, "case", &p.case)?;
                let expect = required(self, "expect", &p.expect)?;
                let admitted = match expect.value.as_str() {
                    "admitted" => true,
                    "denied" => false,
                    other => {
                        self.at(
                            &expect,
                            format!("expect \"{other}\" is unknown"),
                            "admitted or denied",
                        );
                        return None;
                    }
                };
                let file = crate::configured::default_dir(profile)
                    .join("cases")
                    .join(format!("{}.yaml", case.value));
                if !file.is_file() {
                    self.at(
                        &case,
                        format!(
                            "admission case \"{}\" has no file {}",
                            case.value,
                            file.display()
                        ),
                        "the name of a file in the profile's cases/ folder, without .yaml",
                    );
                    return None;
                }
                if profile.admission.is_none() {
                    self.at(
                        &p.kind,
                        format!("profile {} has no admission: section", profile.name),
                        "a profile with admission policies",
                    );
                    return None;
                }
                ProbeKind::Admission {
                    case: case.value,
                    file,
                    admitted,
                }
            }
        };
        let role = match p.role.as_ref().map(|r| r.value.as_str()) {
            None => probe_kind.default_role(),
            Some("traffic") => Role::Traffic,
            Some("signal") => Role::Signal,
            Some("health") => Role::Health,
            Some(other) => {
                if let Some(r) = &p.role {
                    self.at(
                        r,
                        format!("role \"{other}\" is unknown"),
                        "traffic, signal or health",
                    );
                }
                return None;
            }
        };
        Some(ProbeSpec {
            id: p.id.value.clone(),
            kind: probe_kind,
            every: every?,
            role,
            line: line_of(s),
        })
    }

    fn call(
        &mut self,
        profile: &Profile,
        from: &Spanned<String>,
        to: &Spanned<String>,
        endpoint: &Spanned<String>,
        method: Option<&Spanned<String>>,
        path: Option<&Spanned<String>>,
    ) -> Option<ExpectedCall> {
        let from_name = self.service(profile, "from", from)?;
        let to_name = self.service(profile, "to", to)?;
        let service = profile.service(&to_name)?;
        let Some(ep) = service.endpoints.iter().find(|e| e.name == endpoint.value) else {
            let names: Vec<&str> = service.endpoints.iter().map(|e| e.name.as_str()).collect();
            self.at(
                endpoint,
                format!("{to_name} has no endpoint \"{}\"", endpoint.value),
                format!("one of {}", names.join(", ")),
            );
            return None;
        };
        let method_name = method.map_or_else(
            || ep.methods.first().cloned().unwrap_or_else(|| "GET".into()),
            |m| m.value.clone(),
        );
        let matrix = crate::intents::matrix(profile);
        let found = matrix.into_iter().find(|c| {
            c.from == from_name
                && c.to == to_name
                && c.endpoint == ep.name
                && c.method == method_name
        });
        let Some(mut call) = found else {
            self.at(
                method.unwrap_or(endpoint),
                format!(
                    "the intent matrix has no request {from_name} → {to_name} {method_name} on {}",
                    ep.name
                ),
                format!(
                    "a method {to_name} serves on {} ({})",
                    ep.name,
                    ep.methods.join(", ")
                ),
            );
            return None;
        };
        if let Some(path) = path {
            if !path.value.starts_with('/') {
                self.at(
                    path,
                    format!("path \"{}\" does not start with /", path.value),
                    "a request path inside the endpoint, e.g. /quotes/probe",
                );
                return None;
            }
            call.path = path.value.clone();
        }
        Some(call)
    }

    fn spire_entry(&mut self, profile: &Profile, service: &Spanned<String>) -> Option<()> {
        let registered = profile
            .spire
            .as_ref()
            .is_some_and(|s| s.entries.iter().any(|e| e.service == service.value));
        if registered {
            Some(())
        } else {
            self.at(
                service,
                format!(
                    "\"{}\" has no SPIRE registration entry in profile {}",
                    service.value, profile.name
                ),
                "a service listed under spire.entries of the profile",
            );
            None
        }
    }

    fn fault(&mut self, profile: &Profile, s: &Spanned<raw::Fault>) -> Option<FaultSpec> {
        let f = &s.value;
        let kind = f.kind.value.as_str();
        let allowed: &[&str] = match kind {
            "expiredIntermediate" | "spireServerOutage" => &["holdFor"],
            "rotateIntermediate" => &["holdFor", "pause", "validity"],
            "spireAgentOutage" => &["holdFor", "service"],
            "policyDrift" => &["holdFor", "manifest"],
            "emergencyOverride" => &["manifest", "expiresAfter"],
            "plaintextClient" => &["holdFor", "to", "path", "every"],
            "admissionUnavailable" => &["holdFor", "failurePolicy"],
            other => {
                self.at(&f.kind, format!("fault kind \"{other}\" is unknown"), "expiredIntermediate, rotateIntermediate, spireServerOutage, spireAgentOutage, policyDrift, emergencyOverride, plaintextClient or admissionUnavailable");
                return None;
            }
        };
        let fields: [(&str, &Option<Spanned<String>>); 10] = [
            ("holdFor", &f.hold_for),
            ("manifest", &f.manifest),
            ("expiresAfter", &f.expires_after),
            ("service", &f.service),
            ("to", &f.to),
            ("path", &f.path),
            ("every", &f.every),
            ("pause", &f.pause),
            ("validity", &f.validity),
            ("failurePolicy", &f.failure_policy),
        ];
        for (field, value) in fields {
            if let Some(v) = value {
                if !allowed.contains(&field) {
                    self.at(
                        v,
                        format!("field {field} does not apply to a {kind} fault"),
                        format!("only kind, {} for {kind}", allowed.join(", ")),
                    );
                }
            }
        }
        let hold_for = self.opt_duration("fault.holdFor", &f.hold_for);
        let fault = match kind {
            "expiredIntermediate" => FaultKind::ExpiredIntermediate,
            "rotateIntermediate" => FaultKind::RotateIntermediate {
                pause: self
                    .opt_duration("fault.pause", &f.pause)
                    .unwrap_or(Duration::from_millis(200)),
                validity: self.opt_duration("fault.validity", &f.validity),
            },
            "spireServerOutage" => FaultKind::SpireServerOutage,
            "spireAgentOutage" => {
                let Some(service) = &f.service else {
                    self.at(
                        &f.kind,
                        "a spireAgentOutage fault needs service (whose agent goes down)",
                        "service: <a SPIRE-registered service>",
                    );
                    return None;
                };
                self.spire_entry(profile, service)?;
                FaultKind::SpireAgentOutage {
                    service: service.value.clone(),
                }
            }
            "policyDrift" | "emergencyOverride" => {
                let Some(manifest) = &f.manifest else {
                    self.at(
                        &f.kind,
                        format!("a {kind} fault needs manifest"),
                        "manifest: | followed by the Istio objects to apply",
                    );
                    return None;
                };
                let policies = self.manifest(profile, manifest)?;
                if kind == "policyDrift" {
                    FaultKind::PolicyDrift {
                        manifest: manifest.value.clone(),
                        policies,
                    }
                } else {
                    let Some(expires) = &f.expires_after else {
                        self.at(
                            &f.kind,
                            "an emergencyOverride needs expiresAfter",
                            "expiresAfter: how long the grant may live, e.g. 3s",
                        );
                        return None;
                    };
                    let expires_after = self.duration("fault.expiresAfter", expires)?;
                    if policies
                        .authorization_policies
                        .iter()
                        .any(|p| p.action != crate::policy::istio::Action::Allow)
                        || policies.authorization_policies.is_empty()
                    {
                        self.at(
                            manifest,
                            "an emergency override must consist of ALLOW AuthorizationPolicies",
                            "the scoped grant the runbook's \"Mitigate\" step applies",
                        );
                    }
                    FaultKind::EmergencyOverride {
                        manifest: manifest.value.clone(),
                        policies,
                        expires_after,
                    }
                }
            }
            "plaintextClient" => {
                let Some(to) = &f.to else {
                    self.at(&f.kind, "a plaintextClient fault needs to", "to: <service>");
                    return None;
                };
                FaultKind::PlaintextClient {
                    to: self.service(profile, "to", to)?,
                    path: f
                        .path
                        .as_ref()
                        .map_or_else(|| "/".to_owned(), |p| p.value.clone()),
                    every: self
                        .opt_duration("fault.every", &f.every)
                        .unwrap_or(Duration::from_millis(50)),
                }
            }
            _ => {
                let failure_policy = match f.failure_policy.as_ref().map(|v| v.value.as_str()) {
                    None | Some("Ignore") => FailurePolicy::Ignore,
                    Some("Fail") => FailurePolicy::Fail,
                    Some(other) => {
                        if let Some(v) = &f.failure_policy {
                            self.at(
                                v,
                                format!("failurePolicy \"{other}\" is unknown"),
                                "Ignore (Gatekeeper's default) or Fail",
                            );
                        }
                        return None;
                    }
                };
                FaultKind::AdmissionUnavailable { failure_policy }
            }
        };
        let hold_for = match &fault {
            FaultKind::EmergencyOverride { expires_after, .. } => Some(*expires_after),
            _ => hold_for,
        };
        Some(FaultSpec {
            kind: fault,
            hold_for,
            line: line_of(s),
        })
    }

    /// Parses an inline manifest; its errors point into the drill file.
    fn manifest(&mut self, profile: &Profile, manifest: &Spanned<String>) -> Option<MeshPolicies> {
        // A block scalar's location is its first content line.
        let offset = line_of(manifest).saturating_sub(1);
        match crate::policy::istio::parse_str(
            self.file,
            &manifest.value,
            crate::configured::mesh_config(profile),
        ) {
            Ok(mut policies) => {
                for p in &mut policies.authorization_policies {
                    p.meta.line += offset;
                }
                for p in &mut policies.peer_authentications {
                    p.meta.line += offset;
                }
                if policies.authorization_policies.is_empty()
                    && policies.peer_authentications.is_empty()
                {
                    self.at(
                        manifest,
                        "the manifest holds no AuthorizationPolicy or PeerAuthentication",
                        "the Istio objects the fault applies",
                    );
                    return None;
                }
                Some(policies)
            }
            Err(SourceErrors(errors)) => {
                for mut e in errors {
                    if e.line > 0 {
                        e.line += offset;
                    }
                    self.errors.push(e);
                }
                None
            }
        }
    }

    fn recovery(
        &mut self,
        fault: Option<&FaultSpec>,
        steps: &[Spanned<raw::Step>],
    ) -> Vec<StepSpec> {
        let mut out = Vec::new();
        for s in steps {
            let step = &s.value;
            let Some((_, name)) = STEP_NAMES.iter().find(|(n, _)| *n == step.step.value) else {
                self.at(
                    &step.step,
                    format!("recovery step \"{}\" is unknown", step.step.value),
                    STEP_NAMES
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", "),
                );
                continue;
            };
            if let Some(fault) = fault {
                if !fault.kind.steps().contains(name) {
                    let fits: Vec<&str> = STEP_NAMES
                        .iter()
                        .filter(|(_, n)| fault.kind.steps().contains(n))
                        .map(|(s, _)| *s)
                        .collect();
                    self.at(
                        &step.step,
                        format!(
                            "recovery step {} cannot act on a {} fault",
                            step.step.value,
                            fault.kind.name()
                        ),
                        format!("one of {}", fits.join(", ")),
                    );
                    continue;
                }
            }
            if let Some(v) = &step.validity {
                if *name != StepName::NewIntermediate {
                    self.at(
                        v,
                        format!("validity does not apply to step {}", step.step.value),
                        "validity only on newIntermediate",
                    );
                }
            }
            let kind = match name {
                StepName::NewIntermediate => StepKind::NewIntermediate {
                    validity: self.opt_duration("validity", &step.validity),
                },
                StepName::UpdateCaSecret => StepKind::UpdateCaSecret,
                StepName::ReloadControlPlane => StepKind::ReloadControlPlane,
                StepName::ReissueWorkloads => StepKind::ReissueWorkloads,
                StepName::Validate => StepKind::Validate,
                StepName::RevertPolicy => StepKind::RevertPolicy,
                StepName::RestartSpireServer => StepKind::RestartSpireServer,
                StepName::RestartSpireAgent => StepKind::RestartSpireAgent,
                StepName::StopFault => StepKind::StopFault,
                StepName::RestartAdmission => StepKind::RestartAdmission,
            };
            // The runbook's order: a secret can only hold, and a control plane only load, an
            // intermediate that was prepared first; workloads only get one that was loaded.
            let before = |n: StepName| out.iter().any(|p: &StepSpec| p.kind.step_name() == n);
            let needs = match name {
                StepName::UpdateCaSecret | StepName::ReloadControlPlane => {
                    Some(StepName::NewIntermediate)
                }
                StepName::ReissueWorkloads if before(StepName::NewIntermediate) => {
                    Some(StepName::ReloadControlPlane)
                }
                _ => None,
            };
            if let Some(needed) = needs {
                if !before(needed) {
                    let needed_name = STEP_NAMES
                        .iter()
                        .find(|(_, n)| *n == needed)
                        .map_or("?", |(s, _)| s);
                    self.at(
                        &step.step,
                        format!("{} comes before any {needed_name}", step.step.value),
                        format!("{needed_name} earlier in recovery (the runbook's order)"),
                    );
                }
            }
            out.push(StepSpec {
                kind,
                runbook: step.runbook.clone(),
                line: line_of(s),
            });
        }
        out
    }

    fn cross_check(
        &mut self,
        fault: &FaultSpec,
        probes: &[ProbeSpec],
        undo: &[UndoCheck],
        at: &Spanned<raw::Fault>,
    ) {
        let spire_fault = matches!(
            fault.kind,
            FaultKind::SpireServerOutage | FaultKind::SpireAgentOutage { .. }
        );
        if spire_fault && !undo.contains(&UndoCheck::Spire) {
            self.at(
                at,
                "a SPIRE fault's undo must verify spire",
                "undo.verify including spire",
            );
        }
        if matches!(fault.kind, FaultKind::AdmissionUnavailable { .. })
            && !undo.contains(&UndoCheck::Admission)
        {
            self.at(
                at,
                "an admission fault's undo must verify admission",
                "undo.verify including admission",
            );
        }
        if probes.iter().all(|p| p.role == Role::Health) {
            self.at(
                at,
                "every probe is a health probe",
                "at least one traffic or signal probe that can see the fault",
            );
        }
    }
}

/// A profile by bundled name or path.
fn load_profile(selector: &str) -> Result<Profile, String> {
    let paths = crate::profile::resolve(selector).map_err(|e| e.to_string())?;
    let path = paths.first().ok_or_else(|| "no profile".to_owned())?;
    crate::profile::load(path).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenarios() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
    }

    const MINIMAL: &str = "apiVersion: meshproof.dev/v1alpha1
kind: Drill
metadata:
  name: t
spec:
  profile: tradepulse
  steady:
    duration: 1s
    sustained: 1s
    probes:
      - { id: quotes, kind: call, from: strategy, to: execution, endpoint: quotes, every: 50ms }
  fault:
    kind: expiredIntermediate
  detection:
    expect: failure
  recovery:
    - step: newIntermediate
    - step: reloadControlPlane
    - step: reissueWorkloads
  bounds:
    maxTimeToDetect: 2s
    maxTimeToRecover: 10s
  undo:
    verify: [serials]
";

    fn errors(text: &str) -> Vec<String> {
        match parse(&scenarios().join("t.yaml"), text) {
            Ok(_) => Vec::new(),
            Err(SourceErrors(e)) => e.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn durations_take_milliseconds_and_units() {
        assert_eq!(parse_duration("50ms"), Ok(Duration::from_millis(50)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert!(parse_duration("50").is_err());
        assert!(parse_duration("1.5s").is_err());
        assert_eq!(format_duration(Duration::from_millis(50)), "50ms");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.500s");
        assert_eq!(format_duration(Duration::from_secs(12 * 3600)), "12h");
    }

    #[test]
    fn a_minimal_drill_loads_with_its_call_from_the_intent_matrix() {
        let drill = parse(&scenarios().join("t.yaml"), MINIMAL).unwrap();
        assert_eq!(drill.probes.len(), 1);
        let ProbeKind::Call(call) = &drill.probes[0].kind else {
            panic!("not a call")
        };
        assert_eq!(call.path, "/quotes/probe");
        assert_eq!(call.method, "GET");
        assert_eq!(drill.probes[0].role, Role::Traffic);
        assert_eq!(drill.min_samples, 2);
        assert_eq!(drill.line, 4);
    }

    #[test]
    fn unknown_keys_are_errors_at_their_line() {
        let text = MINIMAL.replace("    sustained: 1s", "    sustained: 1s\n    sustaind: 2s");
        let e = errors(&text);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("t.yaml:10:5"), "{e:?}");
        assert!(e[0].contains("unknown field `sustaind`"), "{e:?}");
    }

    #[test]
    fn probes_must_name_what_the_profile_knows() {
        let text = MINIMAL.replace("endpoint: quotes", "endpoint: quote");
        let e = errors(&text);
        assert!(
            e.iter()
                .any(|m| m.contains(":11:") && m.contains("execution has no endpoint \"quote\"")),
            "{e:?}"
        );
        let text = MINIMAL.replace("from: strategy", "from: strategist");
        let e = errors(&text);
        assert!(
            e.iter()
                .any(|m| m.contains("\"strategist\" is not a service of profile tradepulse")),
            "{e:?}"
        );
        let text = MINIMAL.replace("every: 50ms", "every: 50");
        let e = errors(&text);
        assert!(e.iter().any(|m| m.contains("has no unit")), "{e:?}");
    }

    #[test]
    fn recovery_steps_must_fit_the_fault_and_the_runbook_order() {
        let text = MINIMAL.replace("    - step: newIntermediate\n", "");
        let e = errors(&text);
        assert!(
            e.iter()
                .any(|m| m.contains("reloadControlPlane comes before any newIntermediate")),
            "{e:?}"
        );
        let text = MINIMAL.replace("step: reissueWorkloads", "step: restartSpireServer");
        let e = errors(&text);
        assert!(
            e.iter()
                .any(|m| m.contains("cannot act on a expiredIntermediate fault")),
            "{e:?}"
        );
    }

    #[test]
    fn fields_must_apply_to_their_kind() {
        let text = MINIMAL.replace(
            "kind: expiredIntermediate",
            "kind: expiredIntermediate\n    service: execution",
        );
        let e = errors(&text);
        assert!(
            e.iter()
                .any(|m| m.contains("field service does not apply to a expiredIntermediate fault")),
            "{e:?}"
        );
    }

    #[test]
    fn inline_manifest_errors_point_into_the_drill() {
        let text = MINIMAL
            .replace("kind: expiredIntermediate", "kind: policyDrift\n    manifest: |\n      apiVersion: security.istio.io/v1\n      kind: AuthorizationPolicy\n      metadata: { name: x, namespace: execution }\n      spec:\n        action: ALOW\n")
            .replace("    - step: newIntermediate\n    - step: reloadControlPlane\n    - step: reissueWorkloads\n", "    - step: revertPolicy\n");
        let e = errors(&text);
        assert!(
            e.iter()
                .any(|m| m.contains("t.yaml:19:11") && m.contains("ALOW")),
            "{e:?}"
        );
    }

    #[test]
    fn bounds_must_fit_the_expectation() {
        let text = MINIMAL.replace("    maxTimeToDetect: 2s\n", "");
        let e = errors(&text);
        assert!(
            e.iter().any(|m| m.contains("needs bounds.maxTimeToDetect")),
            "{e:?}"
        );
    }
}

//! A drill's result as data: the timeline, the measurements, the verdict, and the same as a
//! [`CheckResult`] (and a [`ScenarioResult`]) so every existing report shows drills.
//!
//! # Contract
//!
//! [`DrillReport`] is the whole record (serde `Serialize`, for the results
//! model): every phase with its steps, every probe result, time to detect and to recover, failed
//! requests, the bounds, the TTLs used, widened access, health checks that stayed green while the
//! mesh was broken, and the undo (actions, before/after state, differences, processes left).
//! Times are milliseconds since the drill started.
//!
//! [`check_result`] turns it into check `drill.<name>`, with evidence keys `time_to_detect_ms`,
//! `time_to_recover_ms`, `failed_requests`, `ttl` (plus the bounds, the phases, the detecting
//! signal, per-aspect verdicts `verdict.*` and the drill's own facts). No key material is ever
//! part of either: probes record outcomes, never credentials.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::env::{StateSnapshot, UndoAction};
use super::schema::{Drill, Expect, FaultKind, ProbeKind, Role, UndoCheck, format_duration};
use super::timeline::{PhaseRecord, Sample};
use super::{Sabotage, faults};
use crate::results::{CheckResult, ScenarioResult, Status, StepResult};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DrillStatus {
    Passed,
    Failed,
    /// The harness could not run the drill (missing tool, a lab that was not steady, a fault
    /// that could not be applied): nothing was proven.
    Error,
    /// Stopped by Ctrl-C (or a cancel token) and undone: nothing was proven.
    Interrupted,
}

#[derive(Clone, Debug, Serialize)]
pub struct BoundsReport {
    pub expect: Expect,
    pub max_time_to_detect_ms: Option<u64>,
    pub max_time_to_recover_ms: Option<u64>,
    pub max_failed_requests: Option<u64>,
}

/// A lifetime the lab used, and what it stands for in production.
#[derive(Clone, Debug, Serialize)]
pub struct TtlUsed {
    pub what: String,
    pub lab: String,
    pub production: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProbeSummary {
    pub id: String,
    pub kind: String,
    pub role: Role,
    pub request: String,
    pub every_ms: u64,
    pub sent: u64,
    pub unhealthy: u64,
    pub first_unhealthy_ms: Option<u64>,
    pub last_unhealthy_ms: Option<u64>,
}

/// A request the profile denies that was served.
#[derive(Clone, Debug, Serialize)]
pub struct WidenedAccess {
    pub probe: String,
    pub request: String,
    /// The profile line that promised the denial (none: the default deny).
    pub promised_by: Option<String>,
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
    pub count: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct UndoReport {
    pub checks: Vec<UndoCheck>,
    pub actions: Vec<UndoAction>,
    /// Every check's aspect equals the state recorded before the fault.
    pub verified: bool,
    pub differences: Vec<String>,
    pub before: Option<StateSnapshot>,
    pub after: Option<StateSnapshot>,
    /// Lab processes still running after teardown (must be none).
    pub leftover_processes: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DrillReport {
    pub name: String,
    pub profile: String,
    pub file: String,
    pub line: u32,
    pub runbook: Option<String>,
    pub summary: String,
    pub fault: String,
    pub status: DrillStatus,
    /// What failed, one sentence each (empty when passed).
    pub findings: Vec<String>,
    /// Why the harness could not run it (status error).
    pub error: Option<String>,
    /// Deliberate breakage this run was made with (proof of sensitivity); empty for a real drill.
    pub sabotage: Vec<Sabotage>,
    pub started: String,
    pub duration_ms: u64,
    pub phases: Vec<PhaseRecord>,
    pub injected_at_ms: Option<u64>,
    pub detected_at_ms: Option<u64>,
    pub time_to_detect_ms: Option<u64>,
    pub detected_by: Option<String>,
    pub recovery_started_ms: Option<u64>,
    pub recovered_at_ms: Option<u64>,
    pub time_to_recover_ms: Option<u64>,
    /// Unhealthy traffic results (and served attacker requests) from injection to the end of the
    /// undo.
    pub failed_requests: u64,
    /// Traffic results (and attacker requests) in the same range.
    pub requests: u64,
    pub failed_by_phase: BTreeMap<String, u64>,
    pub bounds: BoundsReport,
    pub sustained_ms: u64,
    pub ttls: Vec<TtlUsed>,
    pub probes: Vec<ProbeSummary>,
    pub samples: Vec<Sample>,
    pub widened_access: Vec<WidenedAccess>,
    /// Health checks that passed while a detection probe was failing.
    pub health_green_while_broken: Vec<String>,
    pub facts: BTreeMap<String, String>,
    pub undo: UndoReport,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The TTLs a drill runs with, next to the production values they stand for.
pub fn ttls(drill: &Drill) -> Vec<TtlUsed> {
    let p = &drill.profile;
    let mut out = Vec::new();
    // A drill that runs SPIRE runs its mesh on SPIRE's SVIDs: the lab CA's lifetimes do not apply.
    if drill.needs_mesh() && !drill.needs_spire() {
        out.push(TtlUsed {
            what: "workload certificate".into(),
            lab: crate::duration::format(p.ca.workload_ttl),
            production: Some(crate::duration::format(p.ca.workload_ttl)),
        });
        out.push(TtlUsed {
            what: "mesh intermediate".into(),
            lab: crate::duration::format(p.ca.intermediate_validity),
            production: Some(format!(
                "{} (rotate every {}, overlap {})",
                crate::duration::format(p.ca.intermediate_validity),
                crate::duration::format(p.ca.rotate_every),
                crate::duration::format(p.ca.overlap)
            )),
        });
    }
    match &drill.fault.kind {
        FaultKind::ExpiredIntermediate => out.push(TtlUsed {
            what: "expired intermediate".into(),
            lab: "notAfter one day before injection".into(),
            production: None,
        }),
        FaultKind::RotateIntermediate { validity, pause } => {
            out.push(TtlUsed {
                what: "rotated intermediate".into(),
                lab: crate::duration::format(validity.unwrap_or(p.ca.intermediate_validity)),
                production: Some(crate::duration::format(p.ca.intermediate_validity)),
            });
            out.push(TtlUsed {
                what: "rollout pause between workloads".into(),
                lab: format_duration(*pause),
                production: None,
            });
        }
        FaultKind::EmergencyOverride { expires_after, .. } => out.push(TtlUsed {
            what: "emergency grant".into(),
            lab: format_duration(*expires_after),
            production: Some("short-lived, per the runbook's \"Mitigate\"".into()),
        }),
        FaultKind::AdmissionUnavailable { .. } => out.push(TtlUsed {
            what: "admission webhook timeout".into(),
            lab: format_duration(drill.lab.webhook_timeout),
            production: Some("3s (Gatekeeper's ValidatingWebhookConfiguration)".into()),
        }),
        _ => {}
    }
    if drill.needs_spire() {
        let entry_ttl = p
            .spire
            .as_ref()
            .and_then(|s| s.entries.first())
            .map(|e| crate::duration::format(e.ttl));
        out.push(TtlUsed {
            what: "SPIRE X.509-SVID".into(),
            lab: format_duration(drill.lab.svid_ttl),
            production: entry_ttl,
        });
        out.push(TtlUsed {
            what: "SPIRE CA (ca_ttl)".into(),
            lab: format_duration(drill.lab.ca_ttl),
            production: Some(crate::duration::format(p.ca.intermediate_validity)),
        });
        out.push(TtlUsed {
            what: "SDS stream re-connect (Envoy ← agent)".into(),
            lab: "Envoy's default gRPC back-off (0.5 s doubling, at most 30 s)".into(),
            production: Some("the same".into()),
        });
    }
    out
}

/// Everything the engine measured, for [`build`].
pub struct Measured {
    pub started: String,
    pub duration: Duration,
    pub phases: Vec<PhaseRecord>,
    pub samples: Vec<Sample>,
    pub marks: super::engine::Marks,
    pub facts: BTreeMap<String, String>,
    pub attack_probes: Vec<(String, String)>,
    pub undo: UndoReport,
    pub interrupted: bool,
    pub error: Option<String>,
    pub sabotage: Vec<Sabotage>,
}

/// Computes the measurements and the verdict.
pub fn build(drill: &Drill, m: Measured) -> DrillReport {
    let injected = m.marks.injected_at;
    let end = u64::MAX;
    let traffic: std::collections::BTreeSet<String> = drill
        .probes
        .iter()
        .filter(|p| p.role == Role::Traffic)
        .map(|p| p.id.clone())
        .chain(m.attack_probes.iter().map(|(id, _)| id.clone()))
        .collect();
    let (failed_requests, requests) = match injected {
        Some(from) => (
            super::timeline::failed(&m.samples, &traffic, from, end),
            super::timeline::sent(&m.samples, &traffic, from, end),
        ),
        None => (0, 0),
    };
    let mut failed_by_phase = BTreeMap::new();
    if let Some(from) = injected {
        for s in m
            .samples
            .iter()
            .filter(|s| s.at_ms >= from && !s.healthy && traffic.contains(&s.probe))
        {
            *failed_by_phase
                .entry(s.phase.name().to_owned())
                .or_insert(0) += 1;
        }
    }
    let detected_at_ms = m.marks.detected.as_ref().map(|d| d.0);
    let time_to_detect_ms = match (injected, detected_at_ms) {
        (Some(i), Some(d)) => Some(d.saturating_sub(i)),
        _ => None,
    };
    let time_to_recover_ms = match (m.marks.recovery_started, m.marks.recovered_at) {
        (Some(r), Some(w)) => Some(w.saturating_sub(r)),
        _ => None,
    };
    let mut probes = Vec::new();
    let describe: Vec<(String, String, String, Role, u64)> = drill
        .probes
        .iter()
        .map(|p| {
            (
                p.id.clone(),
                p.kind.name().to_owned(),
                p.kind.describe(),
                p.role,
                ms(p.every),
            )
        })
        .chain(
            m.attack_probes
                .iter()
                .map(|(id, d)| (id.clone(), "fault".to_owned(), d.clone(), Role::Attack, 0)),
        )
        .collect();
    for (id, kind, request, role, every_ms) in &describe {
        let mine: Vec<&Sample> = m.samples.iter().filter(|s| &s.probe == id).collect();
        let bad: Vec<&&Sample> = mine.iter().filter(|s| !s.healthy).collect();
        probes.push(ProbeSummary {
            id: id.clone(),
            kind: kind.clone(),
            role: *role,
            request: request.clone(),
            every_ms: *every_ms,
            sent: mine.len() as u64,
            unhealthy: bad.len() as u64,
            first_unhealthy_ms: bad.first().map(|s| s.at_ms),
            last_unhealthy_ms: bad.last().map(|s| s.at_ms),
        });
    }
    let mut widened: BTreeMap<String, WidenedAccess> = BTreeMap::new();
    for s in m.samples.iter().filter(|s| s.widened) {
        let (request, promised_by) = match drill.probe(&s.probe).map(|p| &p.kind) {
            Some(ProbeKind::Call(call) | ProbeKind::Handshake(call)) => (
                call.label(),
                call.intent_line
                    .map(|l| format!("{}:{l}", drill.profile.source.display())),
            ),
            Some(kind) => (kind.describe(), None),
            None => (
                m.attack_probes
                    .iter()
                    .find(|(id, _)| id == &s.probe)
                    .map_or_else(|| s.probe.clone(), |(_, d)| d.clone()),
                None,
            ),
        };
        let entry = widened.entry(s.probe.clone()).or_insert(WidenedAccess {
            probe: s.probe.clone(),
            request,
            promised_by,
            first_seen_ms: s.at_ms,
            last_seen_ms: s.at_ms,
            count: 0,
        });
        entry.last_seen_ms = entry.last_seen_ms.max(s.at_ms);
        entry.first_seen_ms = entry.first_seen_ms.min(s.at_ms);
        entry.count += 1;
    }
    let health_green_while_broken = health_trap(drill, &m);
    let mut report = DrillReport {
        name: drill.name.clone(),
        profile: drill.profile.name.clone(),
        file: relative(&drill.file),
        line: drill.line,
        runbook: drill.runbook.clone(),
        summary: drill.summary.clone(),
        fault: drill.fault.kind.name().to_owned(),
        status: DrillStatus::Passed,
        findings: Vec::new(),
        error: m.error.clone(),
        sabotage: m.sabotage,
        started: m.started,
        duration_ms: ms(m.duration),
        phases: m.phases,
        injected_at_ms: injected,
        detected_at_ms,
        time_to_detect_ms,
        detected_by: m.marks.detected.as_ref().map(|d| d.1.clone()),
        recovery_started_ms: m.marks.recovery_started,
        recovered_at_ms: m.marks.recovered_at,
        time_to_recover_ms,
        failed_requests,
        requests,
        failed_by_phase,
        bounds: BoundsReport {
            expect: drill.detection.expect,
            max_time_to_detect_ms: drill.bounds.max_time_to_detect.map(ms),
            max_time_to_recover_ms: drill.bounds.max_time_to_recover.map(ms),
            max_failed_requests: drill.bounds.max_failed_requests,
        },
        sustained_ms: ms(drill.sustained),
        ttls: ttls(drill),
        probes,
        samples: m.samples,
        widened_access: widened.into_values().collect(),
        health_green_while_broken,
        facts: m.facts,
        undo: m.undo,
    };
    if let Some(mode) = faults::failure_mode(drill, &report) {
        report.facts.insert("admission_failure_mode".into(), mode);
    }
    let verdicts = verdicts(drill, &report);
    report.findings = if m.interrupted || m.error.is_some() {
        // Nothing was measured to the end; only what the undo left matters.
        verdicts
            .get("undo")
            .and_then(|v| v.clone().err())
            .into_iter()
            .collect()
    } else {
        verdicts.values().filter_map(|v| v.clone().err()).collect()
    };
    report.status = if m.error.is_some() {
        DrillStatus::Error
    } else if m.interrupted {
        DrillStatus::Interrupted
    } else if report.findings.is_empty() {
        DrillStatus::Passed
    } else {
        DrillStatus::Failed
    };
    report
}

/// Health probes that reported healthy while the mesh was broken: from the first failing
/// signal until the mesh was healthy again (or the end of the recover phase).
fn health_trap(drill: &Drill, m: &Measured) -> Vec<String> {
    // Broken from the first failure of any probe that is not itself a health check, whichever
    // probes the drill counts for detection.
    let Some(injected) = m.marks.injected_at else {
        return Vec::new();
    };
    let Some(detected) =
        super::timeline::first_failure(&m.samples, &drill.recovery_probes(), injected)
            .map(|s| s.at_ms)
    else {
        return Vec::new();
    };
    let recover_end = m
        .phases
        .iter()
        .find(|p| p.phase == super::timeline::Phase::Recover)
        .and_then(|p| p.ended_ms);
    let until = m.marks.recovered_at.or(recover_end).unwrap_or(u64::MAX);
    drill
        .probes
        .iter()
        .filter(|p| p.role == Role::Health)
        .filter_map(|p| {
            let green = m
                .samples
                .iter()
                .filter(|s| s.probe == p.id && s.at_ms >= detected && s.at_ms < until)
                .filter(|s| s.healthy)
                .count();
            (green > 0).then(|| {
                format!(
                    "{} ({}) passed {green} time(s) while the mesh was broken",
                    p.id,
                    p.kind.describe()
                )
            })
        })
        .collect()
}

fn fmt_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.2} s", ms as f64 / 1e3)
    }
}

/// Per aspect: `Ok(what was seen)` or `Err(finding)`.
pub fn verdicts(drill: &Drill, r: &DrillReport) -> BTreeMap<&'static str, Result<String, String>> {
    let mut v = BTreeMap::new();
    let detect = match (
        drill.detection.expect,
        r.time_to_detect_ms,
        drill.bounds.max_time_to_detect,
    ) {
        (Expect::Failure, Some(ttd), Some(bound)) if ttd <= ms(bound) => Ok(format!(
            "detected {} after injection (bound {}) by {}",
            fmt_ms(ttd),
            format_duration(bound),
            r.detected_by.as_deref().unwrap_or("?")
        )),
        (Expect::Failure, Some(ttd), bound) => Err(format!(
            "detected only {} after injection, over the bound of {}",
            fmt_ms(ttd),
            bound.map_or_else(|| "?".into(), format_duration)
        )),
        (Expect::Failure, None, bound) => {
            let trap = if r.health_green_while_broken.is_empty() {
                String::new()
            } else {
                format!(
                    " (health checks stayed green: {})",
                    r.health_green_while_broken.join("; ")
                )
            };
            Err(format!(
                "the fault was not detected within {}{trap}",
                bound.map_or_else(
                    || "its bound".into(),
                    |b| format_duration(b + (b / 2).max(Duration::from_secs(2)))
                )
            ))
        }
        (Expect::None, None, _) => Ok("no failing signal, as expected".into()),
        (Expect::None, Some(ttd), _) => Err(format!(
            "a change that must not fail anything surfaced as a failure {} after it began: {}",
            fmt_ms(ttd),
            r.detected_by.as_deref().unwrap_or("?")
        )),
    };
    v.insert("detect", detect);
    let bound = drill.bounds.max_time_to_recover;
    let recover = match (r.time_to_recover_ms, bound) {
        (Some(ttr), Some(b)) if ttr <= ms(b) => Ok(format!(
            "recovered {} after recovery began (bound {}, sustained {})",
            fmt_ms(ttr),
            format_duration(b),
            format_duration(drill.sustained)
        )),
        (Some(ttr), None) => Ok(format!(
            "recovered {} after recovery began (sustained {})",
            fmt_ms(ttr),
            format_duration(drill.sustained)
        )),
        (Some(ttr), Some(b)) => Err(format!(
            "recovered only {} after recovery began, over the bound of {}",
            fmt_ms(ttr),
            format_duration(b)
        )),
        (None, _) if r.recovery_started_ms.is_none() => Err("recovery never began".into()),
        (None, b) => {
            let failing: Vec<String> = r
                .probes
                .iter()
                .filter(|p| p.role != Role::Health && p.role != Role::Attack)
                .filter(|p| {
                    p.last_unhealthy_ms
                        .is_some_and(|l| Some(l) >= r.recovery_started_ms)
                })
                .map(|p| format!("{} ({})", p.id, p.request))
                .collect();
            Err(format!(
                "no sustained healthy window ({}) within {} of recovery; still failing: {}",
                format_duration(drill.sustained),
                b.map_or_else(|| "10s".into(), format_duration),
                if failing.is_empty() {
                    "nothing recorded".into()
                } else {
                    failing.join(", ")
                }
            ))
        }
    };
    v.insert("recover", recover);
    let failed = match drill.bounds.max_failed_requests {
        Some(max) if r.failed_requests > max => Err(format!(
            "{} of {} requests failed, more than the {max} allowed ({:?})",
            r.failed_requests, r.requests, r.failed_by_phase
        )),
        Some(max) => Ok(format!(
            "{} of {} requests failed (at most {max} allowed)",
            r.failed_requests, r.requests
        )),
        None => Ok(format!(
            "{} of {} requests failed (no bound)",
            r.failed_requests, r.requests
        )),
    };
    v.insert("failed_requests", failed);
    let undo = if r.undo.verified && r.undo.leftover_processes.is_empty() {
        let names: Vec<String> = r
            .undo
            .checks
            .iter()
            .map(|c| format!("{c:?}").to_lowercase())
            .collect();
        Ok(format!(
            "state equals the one before the fault ({}); {} undo action(s)",
            names.join(", "),
            r.undo.actions.len()
        ))
    } else {
        let mut problems = r.undo.differences.clone();
        problems.extend(
            r.undo
                .actions
                .iter()
                .filter_map(|a| a.result.as_ref().err().map(|e| format!("{}: {e}", a.name))),
        );
        problems.extend(
            r.undo
                .leftover_processes
                .iter()
                .map(|p| format!("process left behind: {p}")),
        );
        Err(format!("undo incomplete: {}", problems.join("; ")))
    };
    v.insert("undo", undo);
    let other = faults::findings(drill, r);
    v.insert(
        "other",
        if other.is_empty() {
            Ok("no other finding".into())
        } else {
            Err(other.join("; "))
        },
    );
    v
}

fn relative(path: &std::path::Path) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let cwd = std::env::current_dir().unwrap_or_default();
    path.strip_prefix(&cwd)
        .or_else(|_| path.strip_prefix(root))
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The drill as check `drill.<name>` (see the module docs).
pub fn check_result(drill: &Drill, r: &DrillReport) -> CheckResult {
    let verdicts = verdicts(drill, r);
    let opt = |v: Option<u64>| v.map_or_else(String::new, |v| v.to_string());
    let mut evidence = vec![
        ("time_to_detect_ms".to_owned(), opt(r.time_to_detect_ms)),
        ("time_to_recover_ms".to_owned(), opt(r.time_to_recover_ms)),
        ("failed_requests".to_owned(), r.failed_requests.to_string()),
        (
            "ttl".to_owned(),
            r.ttls
                .iter()
                .map(|t| match &t.production {
                    Some(p) => format!("{} {} (production {p})", t.what, t.lab),
                    None => format!("{} {}", t.what, t.lab),
                })
                .collect::<Vec<_>>()
                .join("; "),
        ),
        (
            "max_time_to_detect_ms".to_owned(),
            opt(r.bounds.max_time_to_detect_ms),
        ),
        (
            "max_time_to_recover_ms".to_owned(),
            opt(r.bounds.max_time_to_recover_ms),
        ),
        (
            "max_failed_requests".to_owned(),
            opt(r.bounds.max_failed_requests),
        ),
        ("requests".to_owned(), r.requests.to_string()),
        ("sustained_ms".to_owned(), r.sustained_ms.to_string()),
        (
            "detected_by".to_owned(),
            r.detected_by.clone().unwrap_or_default(),
        ),
        (
            "phases".to_owned(),
            r.phases
                .iter()
                .map(|p| {
                    format!(
                        "{} {}–{} ms",
                        p.phase.name(),
                        p.started_ms,
                        p.ended_ms.map_or_else(|| "?".into(), |e| e.to_string())
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
        ),
        ("undo_verified".to_owned(), r.undo.verified.to_string()),
        (
            "status".to_owned(),
            format!("{:?}", r.status).to_lowercase(),
        ),
    ];
    if !r.widened_access.is_empty() {
        evidence.push((
            "widened_access".to_owned(),
            r.widened_access
                .iter()
                .map(|w| {
                    format!(
                        "{} served {}× ({}–{} ms){}",
                        w.request,
                        w.count,
                        w.first_seen_ms,
                        w.last_seen_ms,
                        w.promised_by
                            .as_ref()
                            .map_or_else(String::new, |p| format!("; denied by {p}"))
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
        ));
    }
    if !r.health_green_while_broken.is_empty() {
        evidence.push((
            "health_green_while_broken".to_owned(),
            r.health_green_while_broken.join("; "),
        ));
    }
    for (k, v) in &r.facts {
        evidence.push((k.clone(), v.clone()));
    }
    for (aspect, verdict) in &verdicts {
        let text = match verdict {
            Ok(t) => format!("ok: {t}"),
            Err(e) => format!("FAIL: {e}"),
        };
        evidence.push((format!("verdict.{aspect}"), text));
    }
    let status = match r.status {
        DrillStatus::Passed => Status::Passed,
        DrillStatus::Failed => Status::Failed,
        DrillStatus::Error | DrillStatus::Interrupted => Status::Error,
    };
    let summary = match r.status {
        DrillStatus::Error => format!(
            "{}: could not run: {}",
            r.name,
            r.error.as_deref().unwrap_or("?")
        ),
        DrillStatus::Interrupted => format!(
            "{}: interrupted and undone ({})",
            r.name,
            verdicts.get("undo").map_or_else(String::new, |v| match v {
                Ok(t) | Err(t) => t.clone(),
            })
        ),
        DrillStatus::Failed => format!("{}: {}", r.name, r.findings.join("; ")),
        DrillStatus::Passed => {
            let mut parts = Vec::new();
            for aspect in ["detect", "recover", "failed_requests"] {
                if let Some(Ok(t)) = verdicts.get(aspect) {
                    parts.push(t.clone());
                }
            }
            if let Some(mode) = r.facts.get("admission_failure_mode") {
                parts.push(mode.clone());
            }
            if !r.health_green_while_broken.is_empty() {
                parts.push(format!(
                    "health checks stayed green while broken: {}",
                    r.health_green_while_broken.join("; ")
                ));
            }
            parts.push("undo verified".into());
            format!("{}: {}", r.name, parts.join("; "))
        }
    };
    CheckResult {
        check: format!("drill.{}", r.name),
        subject: format!("{} · {}", r.profile, r.name),
        status,
        summary,
        evidence,
    }
}

/// The drill as a scenario of a run (feature `drills`, one step per phase), for the reports.
pub fn scenario_result(drill: &Drill, r: &DrillReport) -> ScenarioResult {
    let check = check_result(drill, r);
    let steps = r
        .phases
        .iter()
        .map(|p| {
            let failed: Vec<String> = p
                .steps
                .iter()
                .filter(|s| !s.ok)
                .map(|s| format!("{}: {}", s.name, s.detail))
                .collect();
            StepResult {
                keyword: "Phase".into(),
                text: format!(
                    "{} ({}–{} ms): {}",
                    p.phase.name(),
                    p.started_ms,
                    p.ended_ms.map_or_else(|| "?".into(), |e| e.to_string()),
                    p.steps
                        .iter()
                        .map(|s| s.name.clone())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                status: if failed.is_empty() {
                    Status::Passed
                } else {
                    Status::Failed
                },
                error: (!failed.is_empty()).then(|| failed.join("; ")),
                duration: p
                    .ended_ms
                    .map(|e| Duration::from_millis(e.saturating_sub(p.started_ms))),
            }
        })
        .chain(std::iter::once(StepResult {
            keyword: "Then".into(),
            text: format!("drill.{} holds its bounds and its undo", r.name),
            status: check.status,
            error: (check.status != Status::Passed).then(|| check.summary.clone()),
            duration: Some(Duration::ZERO),
        }))
        .collect();
    ScenarioResult {
        feature: "Game-day drills".into(),
        file: r.file.clone(),
        line: r.line as usize,
        name: format!("{} · {}", r.profile, r.name),
        tags: vec!["@drills".into(), "@destructive".into(), "@lab".into()],
        status: check.status,
        attempts: 1,
        duration: Duration::from_millis(r.duration_ms),
        steps,
        checks: vec![check],
    }
}

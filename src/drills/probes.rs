//! Steady-state probes: each kind sends one real request (or asks one real component) and says
//! whether the answer is what the profile promises.
//!
//! # Contract
//!
//! [`ProbeRunner::start`] runs every probe of a drill in its own task, each at its own interval
//! (start to start; a slow answer delays the next send instead of piling sends up), every send
//! bounded by [`PROBE_TIMEOUT`], until [`ProbeRunner::stop`]. Each result is appended to the
//! timeline with the phase it was sent in. All traffic stays on loopback.
//!
//! Healthy means: a `call` the profile allows is served (2xx) *and* the callee saw the caller's
//! SPIFFE ID, a call it denies is refused by RBAC (403 `RBAC: access denied`) — a denied call that
//! is served is also flagged `widened`; plaintext is refused; a telemetry counter did not grow
//! since the previous read; the Workload API hands out an SVID that validates now for the
//! expected ID; a registration can be created (and is removed again); a healthcheck or `/ready`
//! passes; an admission decision equals the promised one.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::env::DrillEnv;
use super::schema::{ProbeKind, ProbeSpec};
use super::timeline::{Sample, Timeline};
use crate::probe::{Probe, ProbeIdentity, ServerTrust};
use crate::profile::Decision;
use crate::target::lab::spire::EntrySpec;

/// Bound on one probe's send.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// One probe's verdict.
#[derive(Clone, Debug)]
pub struct Verdict {
    pub healthy: bool,
    pub widened: bool,
    pub outcome: String,
}

impl Verdict {
    fn ok(outcome: impl Into<String>) -> Self {
        Verdict {
            healthy: true,
            widened: false,
            outcome: outcome.into(),
        }
    }

    fn bad(outcome: impl Into<String>) -> Self {
        Verdict {
            healthy: false,
            widened: false,
            outcome: outcome.into(),
        }
    }
}

/// Per-probe memory between sends (telemetry baselines, registration counter).
#[derive(Debug, Default)]
pub struct ProbeState {
    last_counter: Option<u64>,
    sent: u64,
}

pub fn record(
    timeline: &Mutex<Timeline>,
    probe: &str,
    sent_at: Instant,
    latency: Duration,
    verdict: Verdict,
) {
    let mut t = timeline
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let sample = Sample {
        probe: probe.to_owned(),
        at_ms: t.ms_at(sent_at),
        latency_ms: latency.as_secs_f64() * 1e3,
        phase: t.current(),
        healthy: verdict.healthy,
        widened: verdict.widened,
        outcome: verdict.outcome,
    };
    t.push(sample);
}

/// Every probe of a drill, running.
pub struct ProbeRunner {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl ProbeRunner {
    pub fn start(
        probes: &[ProbeSpec],
        env: Arc<DrillEnv>,
        timeline: Arc<Mutex<Timeline>>,
    ) -> ProbeRunner {
        let (stop, _) = watch::channel(false);
        let mut tasks = Vec::new();
        for spec in probes {
            let spec = spec.clone();
            let env = env.clone();
            let timeline = timeline.clone();
            let mut stopped = stop.subscribe();
            tasks.push(tokio::spawn(async move {
                let mut state = ProbeState::default();
                let mut tick = tokio::time::interval(spec.every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = stopped.wait_for(|s| *s) => break,
                    }
                    let sent = Instant::now();
                    let verdict =
                        match tokio::time::timeout(PROBE_TIMEOUT, run(&env, &spec, &mut state))
                            .await
                        {
                            Ok(v) => v,
                            Err(_) => Verdict::bad(format!("no answer within {PROBE_TIMEOUT:?}")),
                        };
                    record(&timeline, &spec.id, sent, sent.elapsed(), verdict);
                }
            }));
        }
        ProbeRunner { stop, tasks }
    }

    /// Stops every probe and waits for the tasks (each finishes its send in progress, bounded by
    /// [`PROBE_TIMEOUT`]).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Sends one probe.
pub async fn run(env: &DrillEnv, spec: &ProbeSpec, state: &mut ProbeState) -> Verdict {
    state.sent += 1;
    match &spec.kind {
        ProbeKind::Call(call) => {
            let Ok(m) = env.mesh() else {
                return Verdict::bad("no lab mesh");
            };
            let outbound = {
                let mesh = m.mesh.read().await;
                mesh.caller(&call.from)
                    .and_then(|w| w.sidecar.outbound_addr(&call.to))
            };
            let Some(outbound) = outbound else {
                return Verdict::bad(format!("{} has no route to {}", call.from, call.to));
            };
            let observation = Probe::via_sidecar(outbound, call.to.clone())
                .method(call.method.clone())
                .path(call.path.clone())
                .timeout(PROBE_TIMEOUT)
                .send()
                .await;
            match observation {
                Ok(o) => judge_call(call.expected, &call.principal.to_string(), &o),
                Err(e) => Verdict::bad(e.to_string()),
            }
        }
        ProbeKind::Handshake(call) => {
            let Ok(m) = env.mesh() else {
                return Verdict::bad("no lab mesh");
            };
            // The caller's current identity: from its sidecar's secret files on the lab CA's
            // mesh, from the Workload API (as the caller) on a SPIRE-fed mesh.
            let fetched = match env.spire() {
                Ok(s) => {
                    let lab = s.lab.read().await;
                    match crate::target::lab::mesh_spire::fetch_svid(&lab, &call.from).await {
                        Ok(svid) => Some((svid.probe_identity(), svid.bundle.clone())),
                        Err(e) => {
                            return Verdict::bad(format!(
                                "{} cannot get its SVID: {}",
                                call.from,
                                first_line(&e.to_string())
                            ));
                        }
                    }
                }
                Err(_) => None,
            };
            let prepared = {
                let mesh = m.mesh.read().await;
                let (Some(caller), Some(callee)) = (mesh.caller(&call.from), mesh.caller(&call.to))
                else {
                    return Verdict::bad(format!(
                        "no lab workload for {} or {}",
                        call.from, call.to
                    ));
                };
                let (identity, bundle) = match fetched {
                    Some(f) => f,
                    None => match mesh.current_credentials(&caller.identity.label()) {
                        Ok(c) => (
                            ProbeIdentity::svid(c.chain_pem.clone(), c.secret_key_pem()),
                            mesh.bundle.clone(),
                        ),
                        Err(e) => return Verdict::bad(e.to_string()),
                    },
                };
                let trust = ServerTrust::new(bundle, Some(callee.identity.spiffe_id.clone()));
                Probe::new(callee.sidecar.inbound_addr(), identity, Some(trust))
                    .method(call.method.clone())
                    .path(call.path.clone())
                    .timeout(PROBE_TIMEOUT)
            };
            match prepared.send().await {
                Ok(o) => judge_call(call.expected, &call.principal.to_string(), &o),
                Err(e) => Verdict::bad(e.to_string()),
            }
        }
        ProbeKind::Plaintext { to, path } => {
            let Ok(m) = env.mesh() else {
                return Verdict::bad("no lab mesh");
            };
            let observation = m
                .mesh
                .read()
                .await
                .direct(to, ProbeIdentity::Plaintext, path)
                .await;
            match observation {
                Ok(o) if o.outcome.is_success() => Verdict {
                    healthy: false,
                    widened: true,
                    outcome: format!("plaintext served: {}", o.outcome),
                },
                Ok(o) if o.outcome.attempted() => Verdict::ok(format!("refused: {}", o.outcome)),
                Ok(o) => Verdict::bad(o.outcome.to_string()),
                Err(e) => Verdict::bad(e),
            }
        }
        ProbeKind::Telemetry { service, stat } => {
            let Ok(m) = env.mesh() else {
                return Verdict::bad("no lab mesh");
            };
            let admin = {
                let mesh = m.mesh.read().await;
                mesh.caller(service).map(|w| w.sidecar.admin())
            };
            let Some(admin) = admin else {
                return Verdict::bad(format!("no sidecar for {service}"));
            };
            match admin.stats(stat).await {
                Ok(stats) => {
                    let value: u64 = stats.values().sum();
                    let previous = state.last_counter.replace(value);
                    match previous {
                        // A counter that went down belongs to a restarted (pushed) sidecar.
                        Some(p) if value > p => {
                            Verdict::bad(format!("*{stat}* grew {p} → {value}"))
                        }
                        _ => Verdict::ok(format!("*{stat}* = {value}")),
                    }
                }
                Err(e) => Verdict::bad(e.to_string()),
            }
        }
        ProbeKind::WorkloadApi { service } => {
            let Ok(s) = env.spire() else {
                return Verdict::bad("no SPIRE");
            };
            let lab = s.lab.read().await;
            let Some(workload) = lab.workload(service) else {
                return Verdict::bad(format!("SPIRE registers no workload for {service}"));
            };
            match lab.fetch_x509(&workload.caller).await {
                Ok(svids) => {
                    let Some(svid) = svids.iter().find(|s| s.spiffe_id == workload.spiffe_id)
                    else {
                        return Verdict::bad(format!("no SVID for {}", workload.spiffe_id));
                    };
                    let verified =
                        svid.trust_bundle()
                            .map_err(|e| e.to_string())
                            .and_then(|bundle| {
                                crate::spiffe::validate_x509_svid_for(
                                    &svid.chain_der,
                                    &bundle,
                                    OffsetDateTime::now_utc(),
                                    Some(&workload.spiffe_id),
                                )
                                .map_err(|e| e.to_string())
                            });
                    match verified {
                        Ok(v) => Verdict::ok(format!(
                            "SVID serial {} valid until {}",
                            v.serial_hex,
                            crate::checks::rfc3339(v.not_after)
                        )),
                        Err(e) => Verdict::bad(format!("SVID does not validate now: {e}")),
                    }
                }
                Err(e) => Verdict::bad(first_line(&e.to_string())),
            }
        }
        ProbeKind::Registration => {
            let Ok(s) = env.spire() else {
                return Verdict::bad("no SPIRE");
            };
            let lab = s.lab.read().await;
            let td = lab.trust_domain().clone();
            let label = format!("drill-new-workload-{}", state.sent);
            let caller = match lab.new_caller(&label, 0) {
                Ok(c) => c,
                Err(e) => return Verdict::bad(e.to_string()),
            };
            let Ok(id) =
                crate::spiffe::SpiffeId::from_segments(&td, &["ns", "drill", "sa", &label])
            else {
                return Verdict::bad("cannot form a SPIFFE ID for the new workload");
            };
            let created = lab
                .create_entry(&EntrySpec {
                    spiffe_id: id.clone(),
                    agent: 0,
                    selectors: caller.selectors(),
                    x509_svid_ttl: Some(lab.config().x509_svid_ttl),
                })
                .await;
            match created {
                Ok(entry) => {
                    s.stray_entries
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(entry.id.clone());
                    match lab.delete_entry(&entry.id).await {
                        Ok(()) => {
                            s.stray_entries
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .remove(&entry.id);
                            Verdict::ok(format!("registered {id} (and removed it)"))
                        }
                        Err(e) => Verdict::bad(format!(
                            "registered {id}, could not remove it: {}",
                            first_line(&e.to_string())
                        )),
                    }
                }
                Err(e) => Verdict::bad(format!(
                    "a new workload cannot be registered: {}",
                    first_line(&e.to_string())
                )),
            }
        }
        ProbeKind::SpireHealth { agent_of } => {
            let Ok(s) = env.spire() else {
                return Verdict::bad("no SPIRE");
            };
            let lab = s.lab.read().await;
            let health = match agent_of {
                None => lab.healthcheck().await,
                Some(service) => match lab.workload(service) {
                    Some(w) => lab.agent_healthcheck(w.caller.agent).await,
                    None => {
                        return Verdict::bad(format!("SPIRE registers no workload for {service}"));
                    }
                },
            };
            match health {
                Ok(h) if h.healthy => Verdict::ok("healthy"),
                Ok(h) => Verdict::bad(first_line(&h.message)),
                Err(e) => Verdict::bad(first_line(&e.to_string())),
            }
        }
        ProbeKind::EnvoyReady { service } => {
            let admin = match env.mesh() {
                Ok(m) => m
                    .mesh
                    .read()
                    .await
                    .caller(service)
                    .map(|w| w.sidecar.admin()),
                Err(e) => return Verdict::bad(e),
            };
            let Some(admin) = admin else {
                return Verdict::bad(format!("no sidecar for {service}"));
            };
            match admin.get("/ready").await {
                Ok((200, _)) => Verdict::ok("/ready 200 LIVE"),
                Ok((status, body)) => Verdict::bad(format!("/ready {status} {}", body.trim())),
                Err(e) => Verdict::bad(e.to_string()),
            }
        }
        ProbeKind::Admission { case, admitted, .. } => {
            let Ok(a) = env.admission() else {
                return Verdict::bad("no admission webhook");
            };
            let Some(object) = a.cases.get(case) else {
                return Verdict::bad(format!("no case {case}"));
            };
            let outcome = a.api.submit(object).await;
            let what = if outcome.allowed {
                "admitted"
            } else {
                "denied"
            };
            let by = match outcome.decided_by {
                super::webhook::DecidedBy::Webhook => "by the webhook".to_owned(),
                super::webhook::DecidedBy::FailurePolicy => format!(
                    "by failurePolicy {:?} (webhook unreachable)",
                    a.api.failure_policy
                ),
            };
            let text = format!(
                "{what} {by}{}",
                if outcome.message.is_empty() {
                    String::new()
                } else {
                    format!(": {}", first_line(&outcome.message))
                }
            );
            Verdict {
                healthy: outcome.allowed == *admitted,
                widened: outcome.allowed && !admitted,
                outcome: text,
            }
        }
    }
}

fn judge_call(expected: Decision, principal: &str, o: &crate::probe::Observation) -> Verdict {
    let seen = o.outcome.to_string();
    match expected {
        Decision::Allow if o.outcome.is_success() => {
            if o.peer_seen.as_deref() == Some(principal) {
                Verdict::ok(format!("served as {principal}"))
            } else {
                Verdict::bad(format!(
                    "served, but the callee saw {:?} instead of {principal}",
                    o.peer_seen
                ))
            }
        }
        Decision::Allow => Verdict::bad(seen),
        Decision::Deny if o.outcome.is_rbac_denied() => Verdict::ok("refused by RBAC"),
        Decision::Deny if o.outcome.is_success() => Verdict {
            healthy: false,
            widened: true,
            outcome: format!("served although the profile denies it: {seen}"),
        },
        Decision::Deny => Verdict::bad(format!("neither served nor refused by RBAC: {seen}")),
    }
}

fn first_line(text: &str) -> String {
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    line.chars().take(300).collect()
}

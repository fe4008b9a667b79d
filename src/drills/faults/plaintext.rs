//! Drill: a plaintext client against STRICT mTLS (TradePulse: "Require mutual TLS mode STRICT";
//! SomaAgentHub: "non-mTLS traffic is blocked"). A client without a sidecar sends plaintext HTTP
//! straight to a workload's inbound port. Every attempt must be refused, the workload's own
//! telemetry must show it (detection), allowed traffic must not suffer, and once the client is
//! gone the telemetry settles (recovery).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::super::engine::Recorder;
use super::super::env::DrillEnv;
use super::super::probes::{PROBE_TIMEOUT, Verdict, record};
use crate::probe::ProbeIdentity;

/// The timeline id of the client's attempts.
pub const ATTACK_ID: &str = "plaintext-client";

pub async fn inject(
    env: &Arc<DrillEnv>,
    rec: &Recorder,
    to: &str,
    path: &str,
    every: Duration,
) -> Result<(), String> {
    env.mesh()?;
    env.add_attack_probe(
        ATTACK_ID,
        format!("plaintext client → {to} GET {path} (no sidecar)"),
    );
    // A weak reference: the client must never keep the lab alive past its teardown.
    let task_env = Arc::downgrade(env);
    let timeline = rec.timeline.clone();
    let (to, path) = (to.to_owned(), path.to_owned());
    rec.step("start a plaintext client", None, async move {
        let detail = format!("plaintext HTTP to {to}'s inbound port every {every:?}");
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let sent = Instant::now();
                let Some(env) = task_env.upgrade() else {
                    return;
                };
                let Ok(m) = env.mesh() else { return };
                let attempt = tokio::time::timeout(PROBE_TIMEOUT, async {
                    m.mesh
                        .read()
                        .await
                        .direct(&to, ProbeIdentity::Plaintext, &path)
                        .await
                })
                .await;
                let verdict = match attempt {
                    Ok(Ok(o)) if o.outcome.is_success() => Verdict {
                        healthy: false,
                        widened: true,
                        outcome: format!("plaintext served: {}", o.outcome),
                    },
                    Ok(Ok(o)) if o.outcome.attempted() => Verdict {
                        healthy: true,
                        widened: false,
                        outcome: format!("refused: {}", o.outcome),
                    },
                    Ok(Ok(o)) => Verdict {
                        healthy: true,
                        widened: false,
                        outcome: format!("not attempted: {}", o.outcome),
                    },
                    Ok(Err(e)) => Verdict {
                        healthy: true,
                        widened: false,
                        outcome: e,
                    },
                    Err(_) => Verdict {
                        healthy: true,
                        widened: false,
                        outcome: "no answer".into(),
                    },
                };
                record(&timeline, ATTACK_ID, sent, sent.elapsed(), verdict);
            }
        });
        env.add_fault_task(task);
        Ok(detail)
    })
    .await?;
    Ok(())
}

pub fn stop(env: &DrillEnv) -> Result<String, String> {
    match env.stop_fault_tasks() {
        0 => Err("no plaintext client was running".into()),
        n => Ok(format!("{n} plaintext client(s) stopped")),
    }
}

//! Drill: the admission engine is unavailable (SomaAgentHub, section 2: Gatekeeper's validating
//! webhook). The webhook stops answering; the API server then applies the webhook's
//! `failurePolicy`. Gatekeeper installs its webhook with `failurePolicy: Ignore`, so admission
//! **fails open**: objects its policies reject (a privileged pod) are admitted while it is down.
//! With `Fail` it fails closed: every object is rejected, good ones too. The drill measures how
//! fast that is seen and how fast restarting the webhook restores enforcement, and its result
//! says which way admission failed.

use std::sync::Arc;

use super::super::engine::Recorder;
use super::super::env::DrillEnv;
use super::super::report::DrillReport;
use super::super::schema::{Drill, FailurePolicy, FaultKind, ProbeKind};
use super::super::webhook::Webhook;

pub async fn inject(env: &Arc<DrillEnv>, rec: &Recorder) -> Result<(), String> {
    let a = env.admission()?;
    rec.step("stop the admission webhook", None, async {
        let webhook = a
            .webhook
            .lock()
            .await
            .take()
            .ok_or("the webhook is not running")?;
        let addr = webhook.addr();
        webhook.stop();
        Ok(format!(
            "webhook on {addr} stopped; the API server now applies failurePolicy {:?}{}",
            a.api.failure_policy,
            if a.api.failure_policy == FailurePolicy::Ignore {
                " (Gatekeeper's default)"
            } else {
                ""
            }
        ))
    })
    .await?;
    Ok(())
}

pub async fn restart(env: &DrillEnv) -> Result<String, String> {
    let a = env.admission()?;
    let mut slot = a.webhook.lock().await;
    if slot.is_some() {
        return Ok("the webhook is already running".into());
    }
    let webhook = Webhook::start(a.admission.clone(), a.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", a.addr))?;
    *slot = Some(webhook);
    Ok(format!("webhook listening on {} again", a.addr))
}

/// Which way admission failed while the webhook was down, from what the probes saw: `open` when
/// an object the policies reject was admitted, `closed` when an object they admit was rejected.
pub fn failure_mode(drill: &Drill, report: &DrillReport) -> Option<String> {
    let FaultKind::AdmissionUnavailable { failure_policy } = drill.fault.kind else {
        return None;
    };
    let from = report.injected_at_ms?;
    let to = report.recovered_at_ms.unwrap_or(u64::MAX);
    let mut open = false;
    let mut closed = false;
    for sample in report
        .samples
        .iter()
        .filter(|s| s.at_ms >= from && s.at_ms < to && !s.healthy)
    {
        if let Some(ProbeKind::Admission { admitted, .. }) =
            drill.probe(&sample.probe).map(|p| &p.kind)
        {
            if *admitted {
                closed = true;
            } else {
                open = true;
            }
        }
    }
    let policy = match failure_policy {
        FailurePolicy::Ignore => "failurePolicy Ignore (Gatekeeper's default)",
        FailurePolicy::Fail => "failurePolicy Fail",
    };
    Some(match (open, closed) {
        (true, false) => format!(
            "admission fails OPEN while the engine is unavailable ({policy}): objects its policies reject were admitted"
        ),
        (false, true) => format!(
            "admission fails CLOSED while the engine is unavailable ({policy}): objects its policies admit were rejected"
        ),
        (true, true) => {
            format!("admission failed both ways while the engine was unavailable ({policy})")
        }
        (false, false) => {
            format!("no admission decision changed while the engine was unavailable ({policy})")
        }
    })
}

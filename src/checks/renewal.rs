//! Verdicts on a workload certificate renewed by the lab CA under traffic (`rotation.workload`).
//!
//! Security contract: the lab CA's renewal task replaced the callee's SVID once half of its
//! lifetime had passed and before it expired, the sidecar serves the new serial for the same SPIFFE ID (as
//! its admin `/certs` shows it, the lab's `istioctl proxy-config secret`), and not one call to
//! the callee failed while it happened. For the lab CA, every other renewal of the run so far
//! must have held to the same terms, and none may have failed.

use crate::target::lab::envoy::{ServedCert, normalize_serial};
use crate::target::lab::renewal::RenewalRecord;

type Verdict = Result<(String, Vec<(String, String)>), String>;

/// The calls kept flowing around a renewal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// e.g. `ingestion → strategy POST /features/probe`.
    pub call: String,
    pub sent: usize,
    /// Each call that did not succeed, as its outcome.
    pub failed: Vec<String>,
}

/// Judges a lab-CA renewal: `record` is the callee's renewal, `all` every renewal of the run so
/// far, `failures` the renewals that failed, `served` what the callee's `/certs` shows now and
/// `scale` the TTL scale (for the evidence).
pub fn judge_lab_ca(
    record: &RenewalRecord,
    all: &[RenewalRecord],
    failures: &[String],
    served: Option<&ServedCert>,
    traffic: &Traffic,
    scale: &str,
) -> Verdict {
    let who = &record.label;
    let fraction = record.lifetime_fraction();
    if fraction.is_nan() || fraction < 0.5 {
        return Err(format!(
            "{who}: renewed after {} ms of a {} ms lifetime ({fraction:.2}), before half-life",
            record.renewed_after_ms, record.ttl_ms
        ));
    }
    if record.margin_ms == 0 {
        return Err(format!(
            "{who}: serial {} was served only after serial {} expired ({})",
            record.new_serial, record.old_serial, record.old_not_after
        ));
    }
    if !traffic.failed.is_empty() {
        return Err(format!(
            "{who}: renewed, but {} of {} calls {} failed: {}",
            traffic.failed.len(),
            traffic.sent,
            traffic.call,
            traffic.failed.join("; ")
        ));
    }
    let others: Vec<String> = all
        .iter()
        .filter(|r| r.lifetime_fraction() < 0.5 || r.margin_ms == 0)
        .map(|r| format!("{} {} → {}", r.label, r.old_serial, r.new_serial))
        .collect();
    if !others.is_empty() || !failures.is_empty() {
        return Err(format!(
            "{who}: this renewal held, but not every renewal of the run did: early or late {others:?}; failed {failures:?}"
        ));
    }
    // This renewal's serial, or one renewed after it (the task keeps going while we look).
    let current: Vec<String> = all
        .iter()
        .skip_while(|r| r.new_serial != record.new_serial)
        .filter(|r| r.label == record.label)
        .map(|r| normalize_serial(&r.new_serial))
        .collect();
    let Some(leaf) = served
        .filter(|c| current.contains(&c.serial_hex) && c.uri_sans.contains(&record.spiffe_id))
    else {
        return Err(format!(
            "{who}: admin /certs serves {:?}, not the renewed serial {} for {}",
            served.map(|c| (&c.serial_hex, &c.uri_sans)),
            record.new_serial,
            record.spiffe_id
        ));
    };
    Ok((
        format!(
            "{who}: serial {} → {} renewed {:.1} s into a {:.0} s lifetime ({fraction:.2}, TTL scale {scale}), \
             served by Envoy {} ms later with {:.1} s to spare, no restart; {} calls {}, 0 failed; \
             {} renewals in this run, all at half-life",
            record.old_serial,
            record.new_serial,
            record.renewed_after_ms as f64 / 1e3,
            record.ttl_ms as f64 / 1e3,
            record.served_after_ms,
            record.margin_ms as f64 / 1e3,
            traffic.sent,
            traffic.call,
            all.len()
        ),
        vec![
            ("spiffe_id".into(), record.spiffe_id.clone()),
            ("serial_before".into(), record.old_serial.clone()),
            ("serial".into(), leaf.serial_hex.clone()),
            ("san".into(), leaf.uri_sans.join(" ")),
            (
                "not_before".into(),
                leaf.valid_from.clone().unwrap_or_default(),
            ),
            (
                "not_after".into(),
                leaf.expiration_time.clone().unwrap_or_default(),
            ),
            ("issued_at".into(), record.old_issued_at.clone()),
            ("renewed_at".into(), record.renewed_at.clone()),
            ("lifetime_fraction".into(), format!("{fraction:.3}")),
            ("lab_ttl_ms".into(), record.ttl_ms.to_string()),
            ("ttl_scale".into(), scale.to_owned()),
            ("picked_up_ms".into(), record.served_after_ms.to_string()),
            ("margin_ms".into(), record.margin_ms.to_string()),
            ("calls".into(), traffic.sent.to_string()),
            (
                "source".into(),
                "lab CA renewal log; envoy admin /certs".into(),
            ),
        ],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::lab::envoy::CertKind;

    const ID: &str = "spiffe://td/a";

    fn record(renewed_after_ms: u64, margin_ms: u64) -> RenewalRecord {
        RenewalRecord {
            label: "a".into(),
            spiffe_id: ID.into(),
            old_serial: "0a".into(),
            new_serial: "0b".into(),
            old_issued_at: "t0".into(),
            old_not_after: "t2".into(),
            renewed_at: "t1".into(),
            renewed_after_ms,
            ttl_ms: 24_000,
            served_after_ms: 3,
            margin_ms,
        }
    }

    fn served(serial: &str) -> ServedCert {
        ServedCert {
            kind: CertKind::CertChain,
            path: String::new(),
            serial_hex: serial.into(),
            uri_sans: vec![ID.into()],
            other_sans: vec![],
            valid_from: Some("t1".into()),
            expiration_time: Some("t3".into()),
            days_until_expiration: Some(0),
        }
    }

    fn traffic(failed: &[&str]) -> Traffic {
        Traffic {
            call: "b → a GET /".into(),
            sent: 10,
            failed: failed.iter().map(|f| (*f).to_owned()).collect(),
        }
    }

    #[test]
    fn a_renewal_at_half_life_served_without_failures_passes() {
        let r = record(12_000, 11_000);
        let (summary, evidence) = judge_lab_ca(
            &r,
            std::slice::from_ref(&r),
            &[],
            Some(&served("0b")),
            &traffic(&[]),
            "1:1800",
        )
        .unwrap();
        assert!(summary.contains("0.50"), "{summary}");
        assert!(
            evidence.contains(&("serial".into(), "0b".into())),
            "{evidence:?}"
        );
    }

    #[test]
    fn early_late_unserved_or_disruptive_renewals_fail() {
        let ok = record(12_000, 11_000);
        let early = record(6_000, 17_000);
        let late = record(24_500, 0);
        let served_new = served("0b");
        let judge = |r: &RenewalRecord, all: &[RenewalRecord], s: &ServedCert, t: &Traffic| {
            judge_lab_ca(r, all, &[], Some(s), t, "1:1800")
        };
        assert!(
            judge(
                &early,
                std::slice::from_ref(&early),
                &served_new,
                &traffic(&[])
            )
            .is_err()
        );
        assert!(
            judge(
                &late,
                std::slice::from_ref(&late),
                &served_new,
                &traffic(&[])
            )
            .is_err()
        );
        let stale =
            judge(&ok, std::slice::from_ref(&ok), &served("0a"), &traffic(&[])).unwrap_err();
        assert!(stale.contains("admin /certs serves"), "{stale}");
        let dropped = judge(
            &ok,
            std::slice::from_ref(&ok),
            &served_new,
            &traffic(&["HTTP 503"]),
        )
        .unwrap_err();
        assert!(dropped.contains("1 of 10 calls"), "{dropped}");
        let other = judge(&ok, &[late.clone(), ok.clone()], &served_new, &traffic(&[]));
        assert!(other.unwrap_err().contains("not every renewal"));
        let failed = judge_lab_ca(
            &ok,
            std::slice::from_ref(&ok),
            &["a: disk full".into()],
            Some(&served_new),
            &traffic(&[]),
            "1:1800",
        );
        assert!(failed.is_err());
        assert!(
            judge_lab_ca(
                &ok,
                std::slice::from_ref(&ok),
                &[],
                None,
                &traffic(&[]),
                "1:1800"
            )
            .is_err()
        );
    }
}

//! Workload identity checks.
//!
//! `identity.svid` — security contract: the certificate a workload presents is an X.509-SVID
//! (X509-SVID specification: exactly one URI SAN, not a CA, digitalSignature, signed by CAs) whose
//! SPIFFE ID is exactly the one the profile promises for that workload, whose chain ends at a root
//! of the mesh trust bundle for that trust domain, every certificate of which (the root included —
//! webpki does not check a trust anchor's own dates) is valid at the instant of the check, and
//! whose lifetime does not exceed the profile's workload TTL. Not covered: revocation, name
//! constraints, key strength.

use std::time::Duration;

use time::OffsetDateTime;

use super::rfc3339;
use crate::spiffe::{SpiffeId, TrustBundle, VerifiedSvid, validate_x509_svid_for};

/// Backdating allowed on notBefore for clock skew (Istio and our lab CA both backdate).
pub const SKEW_ALLOWANCE: Duration = Duration::from_secs(5 * 60);

pub const SVID: &str = "identity.svid";
pub const SCHEMA: &str = "identity.schema";

/// Judges one presented chain (DER, leaf first) against the promised identity.
pub fn svid(
    chain: &[Vec<u8>],
    bundle: &TrustBundle,
    expected: &SpiffeId,
    max_ttl: Duration,
    at: OffsetDateTime,
) -> Result<(String, Vec<(String, String)>), String> {
    let verified =
        validate_x509_svid_for(chain, bundle, at, Some(expected)).map_err(|e| e.to_string())?;
    lifetime_within(&verified, max_ttl)?;
    let evidence = vec![
        ("spiffe_id".into(), verified.spiffe_id.to_string()),
        ("serial".into(), verified.serial_hex.clone()),
        ("sha256".into(), verified.sha256_fingerprint.clone()),
        ("not_before".into(), rfc3339(verified.not_before)),
        ("not_after".into(), rfc3339(verified.not_after)),
        ("chain_not_after".into(), rfc3339(verified.chain_not_after)),
        ("root".into(), verified.root_subject.clone()),
    ];
    let lifetime = crate::duration::format(Duration::from_secs(
        (verified.not_after - verified.not_before)
            .whole_seconds()
            .max(0) as u64,
    ));
    Ok((
        format!(
            "valid X.509-SVID for {expected}, lifetime {lifetime}, serial {}",
            verified.serial_hex
        ),
        evidence,
    ))
}

fn lifetime_within(verified: &VerifiedSvid, max_ttl: Duration) -> Result<(), String> {
    let lifetime = Duration::from_secs(
        (verified.not_after - verified.not_before)
            .whole_seconds()
            .max(0) as u64,
    );
    if lifetime > max_ttl + SKEW_ALLOWANCE {
        return Err(format!(
            "leaf lifetime {} is longer than the workload ttl {} of the CA policy (+{} skew allowance)",
            crate::duration::format(lifetime),
            crate::duration::format(max_ttl),
            crate::duration::format(SKEW_ALLOWANCE),
        ));
    }
    Ok(())
}

/// `identity.schema` — every ID the profile promises is a valid SPIFFE ID in the profile's trust
/// domain, and no two workloads share one.
pub fn schema(
    profile: &crate::profile::Profile,
) -> Result<(String, Vec<(String, String)>), String> {
    let identities = profile.identities();
    let mut seen = std::collections::BTreeSet::new();
    for identity in &identities {
        let text = identity.spiffe_id.to_string();
        let reparsed = SpiffeId::parse(&text).map_err(|e| format!("{}: {e}", identity.label()))?;
        if !reparsed.is_member_of(&profile.trust_domain) {
            return Err(format!(
                "{} is outside trust domain {}",
                text,
                profile.trust_domain.as_str()
            ));
        }
        if !seen.insert(text.clone()) {
            return Err(format!("{text} is promised to two workloads"));
        }
    }
    Ok((
        format!("{} identities follow {}", identities.len(), profile.schema),
        identities
            .iter()
            .map(|i| (i.label(), i.spiffe_id.to_string()))
            .collect(),
    ))
}

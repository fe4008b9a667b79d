//! The root SPIRE chains to on kind: SPIRE's disk UpstreamAuthority.
//!
//! A SPIRE server always mints its own X.509 authority (rotated every `ca_ttl`) and signs SVIDs
//! with it; with an UpstreamAuthority that authority is an intermediate under the upstream. The
//! profile's CA policy models exactly that — a long-lived root (`ca.root.validity`) over SPIRE's
//! short-lived authority (`ca.intermediate.validity`, SPIRE's `ca_ttl`) — so the upstream is a
//! **root** with `pathLenConstraint` 1, generated here for the run (the lab PKI's mesh
//! intermediate cannot serve: its `pathLenConstraint` 0 forbids SPIRE's authority below it).
//!
//! The key exists in memory only, as [`SecretBytes`], until kubectl has read it from stdin; it
//! is never written to disk by meshproof.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SerialNumber,
};
use time::OffsetDateTime;

use super::KubeError;
use super::tool::SecretBytes;
use crate::profile::Profile;

/// The upstream root: its certificate (public) and key (secret).
#[derive(Debug)]
pub struct UpstreamRoot {
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
    pub key_pem: SecretBytes,
}

/// A fresh upstream root for `profile`, valid from 5 minutes before `now` (clock skew) for the
/// profile's root validity.
pub fn generate(profile: &Profile, now: OffsetDateTime) -> Result<UpstreamRoot, KubeError> {
    let error = |reason: String| KubeError::Input {
        what: format!("SPIRE upstream root for {}", profile.name),
        reason,
    };
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| error(format!("key generation failed: {e}")))?;
    let mut serial = [0u8; 16];
    aws_lc_rs::rand::fill(&mut serial).map_err(|_| error("no randomness for the serial".into()))?;
    serial[0] &= 0x7f; // positive, as DER INTEGER serials must be
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, profile.ca.organization.as_str());
    dn.push(
        DnType::CommonName,
        format!("{} SPIRE Upstream Root CA", profile.ca.organization),
    );
    params.distinguished_name = dn;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    let now = now.replace_nanosecond(0).unwrap_or(now);
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now
        + time::Duration::try_from(profile.ca.root_validity)
            .map_err(|_| error("root validity out of range".into()))?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params
        .self_signed(&key)
        .map_err(|e| error(format!("signing failed: {e}")))?;
    Ok(UpstreamRoot {
        cert_pem: cert.pem(),
        cert_der: cert.der().to_vec(),
        key_pem: SecretBytes::new(key.serialize_pem().into_bytes()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upstream_is_a_root_that_allows_one_authority_below_it() {
        let profile = crate::profile::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/manifests/soma-agent-hub/profile.yaml"
        )))
        .expect("profile");
        let root = generate(&profile, OffsetDateTime::now_utc()).expect("root");
        let (_, cert) = x509_parser::parse_x509_certificate(&root.cert_der).expect("DER");
        let bc = cert
            .basic_constraints()
            .expect("ext")
            .expect("basicConstraints");
        assert!(bc.value.ca);
        assert_eq!(bc.value.path_len_constraint, Some(1));
        assert_eq!(cert.subject(), cert.issuer());
        assert!(!format!("{:?}", root.key_pem).contains("PRIVATE"));
        assert!(String::from_utf8_lossy(root.key_pem.expose()).contains("BEGIN PRIVATE KEY"));
    }
}

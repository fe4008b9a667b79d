//! Mesh CA checks.
//!
//! `pki.hierarchy` — the mesh intermediate is a CA certificate signed by the corporate root, the root
//! is self-signed, and both (the root's own dates included) are valid at the instant of the check.
//!
//! `pki.rotation-policy` — the intermediate's validity covers the rotation period plus the overlap
//! the runbook promises ("rotate annually, with overlapping validity"), and it does not outlive the
//! root.
//!
//! `pki.plugin-ca` — Istio's plug-in CA files exist (`ca-cert.pem` = intermediate, `ca-key.pem`,
//! `root-cert.pem`, `cert-chain.pem` = intermediate then root) and the key is readable by its owner
//! only (mode 0600). The key's contents are never read into a report.

use std::path::Path;
use std::time::Duration;

use ::time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use super::rfc3339;
use crate::profile::CaPolicy;

pub const HIERARCHY: &str = "pki.hierarchy";
pub const ROTATION_POLICY: &str = "pki.rotation-policy";
pub const PLUGIN_CA: &str = "pki.plugin-ca";

type Outcome = Result<(String, Vec<(String, String)>), String>;

fn parse<'a>(der: &'a [u8], what: &str) -> Result<X509Certificate<'a>, String> {
    X509Certificate::from_der(der)
        .map(|(_, c)| c)
        .map_err(|e| format!("{what} certificate does not parse: {e}"))
}

fn is_ca(cert: &X509Certificate<'_>) -> bool {
    matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca)
}

fn valid_at(cert: &X509Certificate<'_>, what: &str, at: OffsetDateTime) -> Result<(), String> {
    let (nb, na) = (
        cert.validity().not_before.to_datetime(),
        cert.validity().not_after.to_datetime(),
    );
    if at < nb {
        return Err(format!(
            "{what} is not yet valid: valid from {}",
            rfc3339(nb)
        ));
    }
    if at > na {
        return Err(format!("{what} expired at {}", rfc3339(na)));
    }
    Ok(())
}

pub fn hierarchy(root_der: &[u8], intermediate_der: &[u8], at: OffsetDateTime) -> Outcome {
    let root = parse(root_der, "root")?;
    let inter = parse(intermediate_der, "intermediate")?;
    if !is_ca(&root) {
        return Err("the corporate root is not a CA certificate".into());
    }
    if !is_ca(&inter) {
        return Err("the mesh intermediate is not a CA certificate".into());
    }
    root.verify_signature(None)
        .map_err(|e| format!("the corporate root is not self-signed: {e}"))?;
    inter
        .verify_signature(Some(root.public_key()))
        .map_err(|e| format!("the mesh intermediate is not signed by the corporate root: {e}"))?;
    valid_at(&root, "the corporate root", at)?;
    valid_at(&inter, "the mesh intermediate", at)?;
    Ok((
        format!("{} → {}", root.subject(), inter.subject()),
        vec![
            ("root".into(), root.subject().to_string()),
            ("root_serial".into(), root.raw_serial_as_string()),
            (
                "root_not_after".into(),
                rfc3339(root.validity().not_after.to_datetime()),
            ),
            ("intermediate".into(), inter.subject().to_string()),
            ("intermediate_serial".into(), inter.raw_serial_as_string()),
            (
                "intermediate_not_after".into(),
                rfc3339(inter.validity().not_after.to_datetime()),
            ),
        ],
    ))
}

pub fn rotation_policy(root_der: &[u8], intermediate_der: &[u8], policy: &CaPolicy) -> Outcome {
    let root = parse(root_der, "root")?;
    let inter = parse(intermediate_der, "intermediate")?;
    let span = |c: &X509Certificate<'_>| {
        Duration::from_secs(
            (c.validity().not_after.to_datetime() - c.validity().not_before.to_datetime())
                .whole_seconds()
                .max(0) as u64,
        )
    };
    let fmt = crate::duration::format;
    let needed = policy.rotate_every + policy.overlap;
    let have = span(&inter);
    if have < needed {
        return Err(format!(
            "the mesh intermediate is valid for {} but rotation every {} with {} overlap needs {}",
            fmt(have),
            fmt(policy.rotate_every),
            fmt(policy.overlap),
            fmt(needed)
        ));
    }
    if inter.validity().not_after.to_datetime() > root.validity().not_after.to_datetime() {
        return Err("the mesh intermediate outlives the corporate root".into());
    }
    Ok((
        format!(
            "intermediate valid {} ≥ rotation {} + overlap {}",
            fmt(have),
            fmt(policy.rotate_every),
            fmt(policy.overlap)
        ),
        vec![
            ("intermediate_validity".into(), fmt(have)),
            ("required".into(), fmt(needed)),
        ],
    ))
}

pub fn plugin_ca(dir: &Path, intermediate_der: &[u8], root_der: &[u8]) -> Outcome {
    use std::os::unix::fs::PermissionsExt;
    let read =
        |name: &str| std::fs::read_to_string(dir.join(name)).map_err(|e| format!("{name}: {e}"));
    let certs = |name: &str| -> Result<Vec<Vec<u8>>, String> {
        crate::spiffe::parse_pem_chain(&read(name)?).map_err(|e| format!("{name}: {e}"))
    };
    if certs("ca-cert.pem")? != [intermediate_der.to_vec()] {
        return Err("ca-cert.pem is not the mesh intermediate".into());
    }
    if certs("root-cert.pem")? != [root_der.to_vec()] {
        return Err("root-cert.pem is not the corporate root".into());
    }
    if certs("cert-chain.pem")? != [intermediate_der.to_vec(), root_der.to_vec()] {
        return Err("cert-chain.pem is not the intermediate followed by the root".into());
    }
    let key = dir.join("ca-key.pem");
    let mode = std::fs::metadata(&key)
        .map_err(|e| format!("ca-key.pem: {e}"))?
        .permissions()
        .mode()
        & 0o777;
    if mode != 0o600 {
        return Err(format!(
            "ca-key.pem has mode {mode:o}: a private key must be 0600"
        ));
    }
    Ok((
        "ca-cert.pem, ca-key.pem (0600), root-cert.pem, cert-chain.pem".into(),
        vec![("dir".into(), dir.display().to_string())],
    ))
}

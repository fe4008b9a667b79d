//! X.509-SVID validation per the X509-SVID standard
//! (<https://github.com/spiffe/spiffe/blob/main/standards/X509-SVID.md>).
//!
//! # Contract
//!
//! When [`validate_x509_svid`] returns `Ok`, all of the following held at the instant `at`:
//!
//! * **Leaf** (X509-SVID §2, §3.1, §4.1, §4.3, §5.2): exactly one URI SAN; it is a valid
//!   [`SpiffeId`] with a non-root path; basicConstraints is absent or `cA=false`; keyUsage
//!   is present, includes `digitalSignature`, and includes neither `keyCertSign` nor
//!   `cRLSign`.
//! * **Signing certificates** (every presented intermediate and the trust anchor):
//!   basicConstraints `cA=true` and keyUsage `keyCertSign`; if one carries a SPIFFE ID URI
//!   SAN, that ID has no path (§3.2); any `pathLenConstraint` is respected (RFC 5280,
//!   self-issued intermediates not counted).
//! * **Chain**: the presented certificates, in the order given (leaf first), each carry a
//!   signature that verifies under the next one's public key, and the last one either *is*
//!   a root in the bundle of the **leaf's** trust domain (byte-for-byte) or is signed by
//!   one. A root of another trust domain never anchors the chain.
//! * **Time**: every certificate, the trust anchor included, has
//!   `notBefore <= at <= notAfter`. (webpki/rustls treat the anchor as a bare key and skip
//!   its dates; this validator does not.)
//! * **Extensions**: no certificate carries a critical extension this validator does not
//!   evaluate (fail closed: e.g. a critical nameConstraints is rejected rather than
//!   silently ignored), and the extensions it does evaluate parse cleanly and are unique.
//!
//! What it does **not** do (an auditor should cover these elsewhere):
//!
//! * no revocation checking (no CRL, no OCSP);
//! * no name-constraints evaluation (certificates carrying them critically are rejected);
//! * no check that the leaf key belongs to the peer (proof of possession is the TLS
//!   handshake's job), and no extendedKeyUsage, key size or signature-algorithm policy
//!   beyond what the signature check supports (ECDSA, RSA, Ed25519 via aws-lc-rs);
//! * no criticality requirement on keyUsage (§4.3 asks issuers to mark it critical;
//!   common meshes' sample PKIs do not, so it is not a validation failure here);
//! * no chain building: certificates are not reordered and unrelated extra certificates
//!   make validation fail; the issuer/subject names are not compared (the signature is);
//! * no policy on *which* SPIFFE ID may talk to which: see [`validate_x509_svid_for`] for
//!   the single-expected-ID check.
//!
//! Error messages never contain key material: they name certificates by role, subject
//! and issuer, and dates; private keys are never inputs to this module.

use std::fmt;

use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER, OID_X509_EXT_BASIC_CONSTRAINTS,
    OID_X509_EXT_EXTENDED_KEY_USAGE, OID_X509_EXT_KEY_USAGE, OID_X509_EXT_SUBJECT_ALT_NAME,
    OID_X509_EXT_SUBJECT_KEY_IDENTIFIER, Oid,
};

use super::bundle::TrustBundle;
use super::id::{SpiffeId, SpiffeIdError};

/// Where a certificate sits in the validated path; used to name it in errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CertRole {
    Leaf,
    /// 1-based position among the intermediates, counting up from the leaf.
    Intermediate(usize),
    /// The trust anchor from the bundle, whether presented in the chain or not.
    Root,
}

impl fmt::Display for CertRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Leaf => f.write_str("leaf"),
            Self::Intermediate(n) => write!(f, "intermediate {n}"),
            Self::Root => f.write_str("root"),
        }
    }
}

/// Why an X.509-SVID (or its PEM, or a bundle) was rejected. Messages are one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SvidError {
    #[error("certificate chain is empty: expected the leaf SVID first, then intermediates")]
    EmptyChain,
    #[error("PEM text contains no CERTIFICATE block: expected at least one certificate")]
    NoCertificates,
    #[error("PEM block {block} is unusable: {reason}")]
    Pem { block: usize, reason: String },
    #[error("bundle root {index} for trust domain {trust_domain:?} is unusable: {reason}")]
    BadBundleRoot {
        trust_domain: String,
        index: usize,
        reason: String,
    },
    #[error("{cert} certificate is malformed: {reason}")]
    Malformed { cert: CertRole, reason: String },
    #[error("{cert} certificate (subject {subject:?}) has a bad {extension} extension: {reason}")]
    BadExtension {
        cert: CertRole,
        subject: String,
        extension: String,
        reason: String,
    },
    #[error(
        "{cert} certificate (subject {subject:?}) has critical extension {extension} that this validator does not evaluate: expected no unhandled critical extensions (RFC 5280 §4.2)"
    )]
    UnhandledCriticalExtension {
        cert: CertRole,
        subject: String,
        extension: String,
    },
    #[error(
        "leaf certificate has {count} URI SANs {uris:?}: an X.509-SVID must have exactly one URI SAN (X509-SVID §2)"
    )]
    UriSanCount { count: usize, uris: Vec<String> },
    #[error("leaf URI SAN {uri:?} is not a valid SPIFFE ID: {source}")]
    InvalidLeafId { uri: String, source: SpiffeIdError },
    #[error(
        "leaf SPIFFE ID {id} has no path: a leaf SVID's ID must name a workload, e.g. {id}/ns/x/sa/y (X509-SVID §3.1)"
    )]
    LeafIdWithoutPath { id: SpiffeId },
    #[error(
        "leaf certificate (subject {subject:?}) has basicConstraints cA=true: a leaf SVID must have cA=false or no basicConstraints (X509-SVID §4.1)"
    )]
    LeafIsCa { subject: String },
    #[error(
        "leaf certificate (subject {subject:?}) has no keyUsage extension: expected keyUsage with digitalSignature (X509-SVID §4.3)"
    )]
    LeafMissingKeyUsage { subject: String },
    #[error(
        "leaf certificate (subject {subject:?}) keyUsage lacks digitalSignature: a leaf SVID must set digitalSignature (X509-SVID §4.3)"
    )]
    LeafMissingDigitalSignature { subject: String },
    #[error(
        "leaf certificate (subject {subject:?}) keyUsage has {usages}: a leaf SVID must not set keyCertSign or cRLSign (X509-SVID §4.3)"
    )]
    LeafCanSign { subject: String, usages: String },
    #[error(
        "{cert} certificate (subject {subject:?}) is not a CA: a signing certificate must have basicConstraints cA=true (X509-SVID §4.1)"
    )]
    SigningCertNotCa { cert: CertRole, subject: String },
    #[error(
        "{cert} certificate (subject {subject:?}) keyUsage lacks keyCertSign: a signing certificate must set keyCertSign (X509-SVID §4.3)"
    )]
    SigningCertMissingKeyCertSign { cert: CertRole, subject: String },
    #[error(
        "{cert} certificate (subject {subject:?}) has SPIFFE ID {id} with a path: a signing certificate's ID must be a trust domain ID (X509-SVID §3.2)"
    )]
    SigningCertIdHasPath {
        cert: CertRole,
        subject: String,
        id: SpiffeId,
    },
    #[error(
        "{cert} certificate (subject {subject:?}) has pathLenConstraint {path_len} but {below} intermediate(s) below it: expected at most {path_len}"
    )]
    PathLenExceeded {
        cert: CertRole,
        subject: String,
        path_len: u32,
        below: usize,
    },
    #[error(
        "no trust bundle for trust domain {trust_domain:?} of leaf {id}: the bundle only has trust domains {known:?}"
    )]
    UnknownTrustDomain {
        trust_domain: String,
        id: SpiffeId,
        known: Vec<String>,
    },
    #[error(
        "{cert} certificate (subject {subject:?}, issuer {issuer:?}) is not signed by any of the {roots} root(s) in the bundle for trust domain {trust_domain:?}: foreign or unknown root"
    )]
    UntrustedRoot {
        trust_domain: String,
        cert: CertRole,
        subject: String,
        issuer: String,
        roots: usize,
    },
    #[error(
        "{cert} certificate (subject {subject:?}) signature does not verify under the key of {issuer_cert} (subject {issuer_subject:?}): {reason}"
    )]
    BadSignature {
        cert: CertRole,
        subject: String,
        issuer_cert: CertRole,
        issuer_subject: String,
        reason: String,
    },
    #[error(
        "{cert} certificate (subject {subject:?}) expired: valid {} to {}, checked at {}",
        rfc3339(.not_before), rfc3339(.not_after), rfc3339(.at)
    )]
    Expired {
        cert: CertRole,
        subject: String,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
        at: OffsetDateTime,
    },
    #[error(
        "{cert} certificate (subject {subject:?}) is not yet valid: valid {} to {}, checked at {}",
        rfc3339(.not_before), rfc3339(.not_after), rfc3339(.at)
    )]
    NotYetValid {
        cert: CertRole,
        subject: String,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
        at: OffsetDateTime,
    },
    #[error("SVID identifies {found}, expected {expected}")]
    IdMismatch { expected: SpiffeId, found: SpiffeId },
}

/// What a successful validation proved, for the evidence record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedSvid {
    pub spiffe_id: SpiffeId,
    /// Leaf serial number, lowercase hex, no separators, leading zero bytes stripped.
    pub serial_hex: String,
    /// SHA-256 of the leaf DER, lowercase hex.
    pub sha256_fingerprint: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// The earliest notAfter across the whole path (anchor included): when it stops validating.
    pub chain_not_after: OffsetDateTime,
    /// Subject of the trust anchor the chain ended at.
    pub root_subject: String,
}

/// Validates an X.509-SVID chain (DER, leaf first, then intermediates; the root may be
/// appended) against `bundle` at instant `at`. See the module docs for the guarantees.
pub fn validate_x509_svid(
    chain: &[Vec<u8>],
    bundle: &TrustBundle,
    at: OffsetDateTime,
) -> Result<VerifiedSvid, SvidError> {
    let (leaf_der, rest) = chain.split_first().ok_or(SvidError::EmptyChain)?;
    let leaf = Node::parse(leaf_der, CertRole::Leaf)?;
    let id = check_leaf(&leaf)?;
    let presented = rest
        .iter()
        .enumerate()
        .map(|(i, der)| Node::parse(der, CertRole::Intermediate(i + 1)))
        .collect::<Result<Vec<_>, _>>()?;
    let roots = trusted_roots(bundle, &id)?;
    let path = build_path(leaf, presented, roots, &id)?;
    for node in path.iter().skip(1) {
        node.check_extensions()?;
        check_signing_cert(node)?;
    }
    check_signatures(&path)?;
    check_path_len(&path)?;
    for node in &path {
        check_validity(node, at)?;
    }
    // `build_path` always returns the leaf first; `first()` only keeps this panic-free.
    let leaf = path.first().ok_or(SvidError::EmptyChain)?;
    Ok(verified(leaf, &path, id))
}

/// [`validate_x509_svid`], then requires the SVID to carry exactly `expected` (if given).
pub fn validate_x509_svid_for(
    chain: &[Vec<u8>],
    bundle: &TrustBundle,
    at: OffsetDateTime,
    expected: Option<&SpiffeId>,
) -> Result<VerifiedSvid, SvidError> {
    let svid = validate_x509_svid(chain, bundle, at)?;
    match expected {
        Some(want) if *want != svid.spiffe_id => Err(SvidError::IdMismatch {
            expected: want.clone(),
            found: svid.spiffe_id,
        }),
        _ => Ok(svid),
    }
}

/// A parsed certificate plus what errors need to name it.
struct Node<'a> {
    role: CertRole,
    der: &'a [u8],
    cert: X509Certificate<'a>,
    subject: String,
}

impl<'a> Node<'a> {
    fn parse(der: &'a [u8], role: CertRole) -> Result<Self, SvidError> {
        let malformed = |reason: String| SvidError::Malformed { cert: role, reason };
        let (rest, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| malformed(format!("not a DER X.509 certificate: {e}")))?;
        if !rest.is_empty() {
            return Err(malformed(format!(
                "{} trailing byte(s) after the certificate",
                rest.len()
            )));
        }
        let subject = cert.subject().to_string();
        Ok(Self {
            role,
            der,
            cert,
            subject,
        })
    }

    /// Fails closed on extensions: an unevaluated critical one, or a malformed one we
    /// rely on (x509-parser reports a malformed basicConstraints as *absent*, which
    /// would otherwise read as "not a CA" on a leaf).
    fn check_extensions(&self) -> Result<(), SvidError> {
        for ext in self.cert.extensions() {
            let handled = is_handled(&ext.oid);
            if let ParsedExtension::ParseError { error } = ext.parsed_extension() {
                if handled || ext.critical {
                    return Err(self.bad_extension(&ext.oid, error.to_string()));
                }
            }
            if ext.critical && !handled {
                return Err(SvidError::UnhandledCriticalExtension {
                    cert: self.role,
                    subject: self.subject.clone(),
                    extension: oid_name(&ext.oid),
                });
            }
        }
        Ok(())
    }

    fn bad_extension(&self, oid: &Oid, reason: String) -> SvidError {
        SvidError::BadExtension {
            cert: self.role,
            subject: self.subject.clone(),
            extension: oid_name(oid),
            reason,
        }
    }

    /// `Some(ca)` from basicConstraints, `None` when absent.
    fn basic_constraints(&self) -> Result<Option<(bool, Option<u32>)>, SvidError> {
        self.cert
            .basic_constraints()
            .map(|bc| bc.map(|ext| (ext.value.ca, ext.value.path_len_constraint)))
            .map_err(|e| self.bad_extension(&OID_X509_EXT_BASIC_CONSTRAINTS, e.to_string()))
    }

    /// keyUsage as (digitalSignature, keyCertSign, cRLSign), `None` when absent.
    fn key_usage(&self) -> Result<Option<KeyUsageBits>, SvidError> {
        let ku = self
            .cert
            .key_usage()
            .map_err(|e| self.bad_extension(&OID_X509_EXT_KEY_USAGE, e.to_string()))?;
        Ok(ku.map(|ext| KeyUsageBits {
            digital_signature: ext.value.digital_signature(),
            key_cert_sign: ext.value.key_cert_sign(),
            crl_sign: ext.value.crl_sign(),
        }))
    }

    fn uri_sans(&self) -> Result<Vec<String>, SvidError> {
        let san = self
            .cert
            .subject_alternative_name()
            .map_err(|e| self.bad_extension(&OID_X509_EXT_SUBJECT_ALT_NAME, e.to_string()))?;
        let names = san.map(|ext| ext.value.general_names.as_slice());
        Ok(names
            .unwrap_or_default()
            .iter()
            .filter_map(|name| match name {
                GeneralName::URI(uri) => Some((*uri).to_owned()),
                _ => None,
            })
            .collect())
    }

    fn is_self_issued(&self) -> bool {
        self.cert.subject().as_raw() == self.cert.issuer().as_raw()
    }
}

struct KeyUsageBits {
    digital_signature: bool,
    key_cert_sign: bool,
    crl_sign: bool,
}

/// Extensions whose content this module evaluates, or which carry no policy
/// (key identifiers; extendedKeyUsage, which §4.4 lets leaves mark critical).
fn is_handled(oid: &Oid) -> bool {
    [
        &OID_X509_EXT_BASIC_CONSTRAINTS,
        &OID_X509_EXT_KEY_USAGE,
        &OID_X509_EXT_SUBJECT_ALT_NAME,
        &OID_X509_EXT_EXTENDED_KEY_USAGE,
        &OID_X509_EXT_SUBJECT_KEY_IDENTIFIER,
        &OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER,
    ]
    .contains(&oid)
}

/// Leaf rules (X509-SVID §2, §3.1, §4.1, §4.3, §5.2); returns the leaf's SPIFFE ID.
fn check_leaf(leaf: &Node) -> Result<SpiffeId, SvidError> {
    leaf.check_extensions()?;
    let id = leaf_id(leaf)?;
    if let Some((true, _)) = leaf.basic_constraints()? {
        return Err(SvidError::LeafIsCa {
            subject: leaf.subject.clone(),
        });
    }
    let subject = || leaf.subject.clone();
    let ku = leaf
        .key_usage()?
        .ok_or_else(|| SvidError::LeafMissingKeyUsage { subject: subject() })?;
    // Forbidden bits first: a leaf that can sign certificates is the graver finding.
    let forbidden: Vec<&str> = [(ku.key_cert_sign, "keyCertSign"), (ku.crl_sign, "cRLSign")]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect();
    if !forbidden.is_empty() {
        return Err(SvidError::LeafCanSign {
            subject: subject(),
            usages: forbidden.join(" and "),
        });
    }
    if !ku.digital_signature {
        return Err(SvidError::LeafMissingDigitalSignature { subject: subject() });
    }
    Ok(id)
}

fn leaf_id(leaf: &Node) -> Result<SpiffeId, SvidError> {
    let uris = leaf.uri_sans()?;
    let [uri] = uris.as_slice() else {
        return Err(SvidError::UriSanCount {
            count: uris.len(),
            uris: uris.clone(),
        });
    };
    let id = SpiffeId::parse(uri).map_err(|source| SvidError::InvalidLeafId {
        uri: uri.clone(),
        source,
    })?;
    if id.is_trust_domain_id() {
        return Err(SvidError::LeafIdWithoutPath { id });
    }
    Ok(id)
}

/// The bundle roots of the leaf's trust domain, parsed (their extensions and CA flags
/// are checked later, once the one that anchors this chain is known).
fn trusted_roots<'b>(bundle: &'b TrustBundle, id: &SpiffeId) -> Result<Vec<Node<'b>>, SvidError> {
    let td = id.trust_domain();
    let roots = bundle
        .roots(td)
        .ok_or_else(|| SvidError::UnknownTrustDomain {
            trust_domain: td.to_string(),
            id: id.clone(),
            known: bundle.trust_domains().map(ToString::to_string).collect(),
        })?;
    roots
        .iter()
        .enumerate()
        .map(|(i, der)| {
            Node::parse(der, CertRole::Root).map_err(|e| SvidError::BadBundleRoot {
                trust_domain: td.to_string(),
                index: i + 1,
                reason: e.to_string(),
            })
        })
        .collect()
}

/// Leaf, intermediates, anchor. The last presented certificate is the anchor when it is
/// byte-identical to a bundle root; otherwise a bundle root that signed it is appended.
fn build_path<'a>(
    leaf: Node<'a>,
    mut presented: Vec<Node<'a>>,
    mut roots: Vec<Node<'a>>,
    id: &SpiffeId,
) -> Result<Vec<Node<'a>>, SvidError> {
    let presents_root = presented
        .last()
        .is_some_and(|last| roots.iter().any(|r| r.der == last.der));
    if presents_root {
        if let Some(last) = presented.last_mut() {
            last.role = CertRole::Root;
        }
        return Ok(std::iter::once(leaf).chain(presented).collect());
    }
    let top = presented.last().unwrap_or(&leaf);
    let index = roots
        .iter()
        .position(|root| {
            top.cert
                .verify_signature(Some(root.cert.public_key()))
                .is_ok()
        })
        .ok_or_else(|| SvidError::UntrustedRoot {
            trust_domain: id.trust_domain().to_string(),
            cert: top.role,
            subject: top.subject.clone(),
            issuer: top.cert.issuer().to_string(),
            roots: roots.len(),
        })?;
    let anchor = roots.swap_remove(index);
    Ok(std::iter::once(leaf)
        .chain(presented)
        .chain(std::iter::once(anchor))
        .collect())
}

/// Signing-certificate rules (X509-SVID §3.2, §4.1, §4.3).
fn check_signing_cert(node: &Node) -> Result<(), SvidError> {
    let not_ca = || SvidError::SigningCertNotCa {
        cert: node.role,
        subject: node.subject.clone(),
    };
    match node.basic_constraints()? {
        Some((true, _)) => {}
        _ => return Err(not_ca()),
    }
    match node.key_usage()? {
        Some(ku) if ku.key_cert_sign => {}
        _ => {
            return Err(SvidError::SigningCertMissingKeyCertSign {
                cert: node.role,
                subject: node.subject.clone(),
            });
        }
    }
    // Only URIs that are SPIFFE IDs are subject to §3.2; other URIs are not ours to judge.
    let uris = node.uri_sans()?;
    let with_path = uris
        .iter()
        .filter_map(|u| SpiffeId::parse(u).ok())
        .find(|id| !id.is_trust_domain_id());
    match with_path {
        Some(id) => Err(SvidError::SigningCertIdHasPath {
            cert: node.role,
            subject: node.subject.clone(),
            id,
        }),
        None => Ok(()),
    }
}

/// Each certificate must verify under the public key of the one above it.
fn check_signatures(path: &[Node]) -> Result<(), SvidError> {
    for pair in path.windows(2) {
        let [child, parent] = pair else { continue };
        child
            .cert
            .verify_signature(Some(parent.cert.public_key()))
            .map_err(|e| SvidError::BadSignature {
                cert: child.role,
                subject: child.subject.clone(),
                issuer_cert: parent.role,
                issuer_subject: parent.subject.clone(),
                reason: e.to_string(),
            })?;
    }
    Ok(())
}

/// RFC 5280 §4.2.1.9: a CA's pathLenConstraint bounds the non-self-issued intermediates
/// between it and the leaf.
fn check_path_len(path: &[Node]) -> Result<(), SvidError> {
    for (j, node) in path.iter().enumerate().skip(1) {
        let Some((_, Some(path_len))) = node.basic_constraints()? else {
            continue;
        };
        // Intermediates strictly between the leaf (index 0) and this certificate.
        let below = path
            .iter()
            .take(j)
            .skip(1)
            .filter(|n| !n.is_self_issued())
            .count();
        if usize::try_from(path_len).is_ok_and(|limit| below > limit) {
            return Err(SvidError::PathLenExceeded {
                cert: node.role,
                subject: node.subject.clone(),
                path_len,
                below,
            });
        }
    }
    Ok(())
}

/// RFC 5280 validity is inclusive at both ends.
fn check_validity(node: &Node, at: OffsetDateTime) -> Result<(), SvidError> {
    let (not_before, not_after) = validity(&node.cert);
    let (cert, subject) = (node.role, node.subject.clone());
    if at < not_before {
        return Err(SvidError::NotYetValid {
            cert,
            subject,
            not_before,
            not_after,
            at,
        });
    }
    if at > not_after {
        return Err(SvidError::Expired {
            cert,
            subject,
            not_before,
            not_after,
            at,
        });
    }
    Ok(())
}

fn validity(cert: &X509Certificate) -> (OffsetDateTime, OffsetDateTime) {
    let v = cert.validity();
    (v.not_before.to_datetime(), v.not_after.to_datetime())
}

fn verified(leaf: &Node, path: &[Node], spiffe_id: SpiffeId) -> VerifiedSvid {
    let (not_before, not_after) = validity(&leaf.cert);
    let chain_not_after = path
        .iter()
        .map(|n| validity(&n.cert).1)
        .fold(not_after, OffsetDateTime::min);
    VerifiedSvid {
        spiffe_id,
        serial_hex: serial_hex(leaf.cert.raw_serial()),
        sha256_fingerprint: hex(&Sha256::digest(leaf.der)),
        not_before,
        not_after,
        chain_not_after,
        root_subject: path.last().map_or_else(String::new, |n| n.subject.clone()),
    }
}

/// DER integers carry a leading 0x00 to stay positive; auditors compare against tools
/// (openssl, SPIRE) that print the number without it.
fn serial_hex(raw: &[u8]) -> String {
    let first = raw
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    hex(raw.get(first..).unwrap_or(raw))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn oid_name(oid: &Oid) -> String {
    let dotted = oid.to_id_string();
    match x509_parser::objects::oid2sn(oid, x509_parser::objects::oid_registry()) {
        Ok(name) => format!("{name} ({dotted})"),
        Err(_) => dotted,
    }
}

fn rfc3339(t: &OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

#[cfg(test)]
mod tests;

//! The lab PKI: corporate root → mesh intermediate → workload SVIDs.
//!
//! # Security contract
//!
//! This module is a **lab / test certificate authority**. It exists so meshproof can stand up
//! the TradePulse runbook's hierarchy ("a corporate PKI root issues an intermediate dedicated to
//! the mesh ... imported into Istio as an external (plug-in) CA; intermediates rotate annually
//! with overlapping validity; workload certificates rotate every 12 hours") in a throw-away
//! cluster, and so the X509-SVID validator can be tested against known-good and known-bad
//! certificates. **It is not for production signing**: keys are generated in process memory,
//! are not zeroized, are not held in an HSM, and nothing here enforces issuance policy beyond
//! keeping well-formed chains well-formed.
//!
//! What it generates, all ECDSA P-256 / SHA-256 with a fresh key per certificate:
//!
//! * a self-signed **corporate root** — CA, `keyCertSign` + `cRLSign`, `pathLenConstraint` 1,
//!   CN `"<organization> Corporate Root CA"`;
//! * a **mesh intermediate** signed by it — CA, `keyCertSign` + `cRLSign`, `pathLenConstraint`
//!   0, CN `"<organization> Mesh Intermediate CA"`, and the single URI SAN
//!   `spiffe://<trust_domain>` that the X509-SVID specification recommends for signing
//!   certificates;
//! * **X509-SVID leaves** signed by the intermediate — `CA:FALSE`, `digitalSignature` +
//!   `keyEncipherment`, EKU `serverAuth` + `clientAuth`, exactly one URI SAN (the SPIFFE ID);
//! * deliberately **broken chains** ([`Chaos`]) for drills and for the validator's mutation
//!   tests. Only [`Pki::issue_chaos`] ever produces a faulty certificate.
//!
//! Beside the mesh hierarchy: [`PublicCa`], an unrelated root standing in for a public CA, signs
//! the server certificates an ingress gateway shows external clients (DNS SANs, `serverAuth`
//! only, never a SPIFFE ID); and [`TtlScale`] says how much shorter workload certificates live
//! in the lab than the profile promises.
//!
//! Every certificate gets a serial of [`SERIAL_BYTES`] bytes read from the OS CSPRNG, and an
//! authority key identifier so that chains build unambiguously across intermediate rotations.
//!
//! Validity windows start [`CLOCK_SKEW`] (5 minutes) *before* the `now` the caller passes:
//! a certificate issued "now" must already be valid on a peer whose clock runs a little behind
//! ours, otherwise freshly rotated workloads fail their first handshakes with "certificate not
//! yet valid". Windows end exactly `lifetime` after `now`, so a leaf requested for 12 h has
//! `notAfter − now = 12 h` and `notAfter − notBefore = 12 h + 5 min`. Times are UTC and
//! truncated to whole seconds, as X.509 encodes them. On the well-formed paths a certificate
//! never outlives, or predates, its issuer; such a request is an error rather than being
//! silently clamped.
//!
//! Key handling: private keys are only ever held as [`PrivateKey`], whose `Debug` and `Display`
//! print `PrivateKey(redacted)`; the PEM is reachable only through
//! [`PrivateKey::secret_pem`]. The root's key never leaves this module. Files holding keys
//! (`ca-key.pem`, `key.pem`) are created with mode `0600` at `open(2)` time and moved into place
//! with an atomic rename. Nothing in this module logs or prints.

mod cert;
mod chaos;
mod error;
mod files;
mod key;
mod public;
pub mod scale;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{OffsetDateTime, UtcOffset};

pub use cert::{IssuedCert, SERIAL_BYTES, fingerprint_sha256, parse_serial_hex, serial_hex};
pub use chaos::{Chaos, ChaosSvid};
pub use error::PkiError;
pub use files::{PUBLIC_FILE_MODE, PluginCaFiles, SECRET_FILE_MODE, SvidFiles, write_svid};
pub use key::PrivateKey;
pub use public::{PublicCa, ServerCert};
pub use scale::TtlScale;

/// How far before `now` every validity window starts, to tolerate clock skew between the
/// issuer and relying parties (see the module docs).
pub const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// What the lab CA should look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaSpec {
    /// SPIFFE trust domain, e.g. `tradepulse.internal` (lowercase letters, digits, `.`, `-`,
    /// `_`).
    pub trust_domain: String,
    /// Organization name, used in the subject of every certificate.
    pub organization: String,
    /// Lifetime of the corporate root.
    pub root_validity: Duration,
    /// Lifetime of the mesh intermediate.
    pub intermediate_validity: Duration,
    /// The workload certificate TTL the runbook promises (used by
    /// [`Pki::issue_workload_svid`] and [`Chaos::TtlOverPolicy`]).
    pub workload_ttl: Duration,
}

impl CaSpec {
    /// The runbook's numbers: a 10-year root, an annual intermediate, 12-hour workload
    /// certificates.
    pub fn runbook(trust_domain: impl Into<String>, organization: impl Into<String>) -> Self {
        Self {
            trust_domain: trust_domain.into(),
            organization: organization.into(),
            root_validity: Duration::from_secs(3650 * 86_400),
            intermediate_validity: Duration::from_secs(365 * 86_400),
            workload_ttl: Duration::from_secs(12 * 3600),
        }
    }

    fn validate(&self) -> Result<(), PkiError> {
        let invalid = |field, reason: &str| PkiError::InvalidSpec {
            field,
            reason: reason.to_owned(),
        };
        if self.trust_domain.is_empty() {
            return Err(invalid("trust_domain", "is empty"));
        }
        if !self
            .trust_domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        {
            return Err(invalid(
                "trust_domain",
                "may only contain lowercase letters, digits, '.', '-' and '_'",
            ));
        }
        if self.organization.trim().is_empty() {
            return Err(invalid("organization", "is empty"));
        }
        if self.organization.chars().any(char::is_control) {
            return Err(invalid("organization", "contains control characters"));
        }
        for (field, d) in [
            ("root_validity", self.root_validity),
            ("intermediate_validity", self.intermediate_validity),
            ("workload_ttl", self.workload_ttl),
        ] {
            if d < Duration::from_secs(1) {
                return Err(invalid(field, "is shorter than one second"));
            }
        }
        Ok(())
    }
}

/// A CA certificate together with what is needed to sign with it.
struct CaMaterial {
    cert: IssuedCert,
    params: CertificateParams,
    key: PrivateKey,
}

impl CaMaterial {
    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, self.key.key_pair())
    }
}

/// The lab hierarchy: a corporate root and one mesh intermediate that issues SVIDs.
///
/// Cloning is cheap; clones (and [`Pki::new_intermediate`] results) share the root.
#[derive(Clone)]
pub struct Pki {
    spec: CaSpec,
    root: Arc<CaMaterial>,
    intermediate: Arc<CaMaterial>,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("spec", &self.spec)
            .field("root", &self.root.cert)
            .field("intermediate", &self.intermediate.cert)
            .finish_non_exhaustive()
    }
}

/// An X509-SVID issued by [`Pki::issue_svid`], with its key and the trust anchor.
#[derive(Clone, Debug)]
pub struct Svid {
    spiffe_id: String,
    cert: IssuedCert,
    intermediate: IssuedCert,
    root: IssuedCert,
    chain_pem: String,
    key: PrivateKey,
}

impl Svid {
    /// The SPIFFE ID in the leaf's URI SAN.
    pub fn spiffe_id(&self) -> &str {
        &self.spiffe_id
    }
    /// The leaf certificate.
    pub fn cert(&self) -> &IssuedCert {
        &self.cert
    }
    /// The leaf, DER-encoded.
    pub fn der(&self) -> &[u8] {
        self.cert.der()
    }
    /// The leaf, PEM-encoded.
    pub fn pem(&self) -> &str {
        self.cert.pem()
    }
    /// Leaf then intermediate, PEM (Istio's `cert-chain.pem`).
    pub fn chain_pem(&self) -> &str {
        &self.chain_pem
    }
    /// Leaf then intermediate, DER.
    pub fn chain_der(&self) -> Vec<&[u8]> {
        vec![self.cert.der(), self.intermediate.der()]
    }
    /// The intermediate that signed the leaf.
    pub fn intermediate(&self) -> &IssuedCert {
        &self.intermediate
    }
    /// The root the chain ends at (Istio's `root-cert.pem`).
    pub fn root(&self) -> &IssuedCert {
        &self.root
    }
    /// The leaf's private key.
    pub fn key(&self) -> &PrivateKey {
        &self.key
    }
    /// The leaf's serial, lowercase hex.
    pub fn serial_hex(&self) -> &str {
        self.cert.serial_hex()
    }
    /// The leaf's notBefore.
    pub fn not_before(&self) -> OffsetDateTime {
        self.cert.not_before()
    }
    /// The leaf's notAfter.
    pub fn not_after(&self) -> OffsetDateTime {
        self.cert.not_after()
    }
}

impl Pki {
    /// Generates a corporate root and a mesh intermediate, both valid from
    /// `now − CLOCK_SKEW` for `spec.root_validity` / `spec.intermediate_validity` after `now`.
    pub fn generate(spec: &CaSpec, now: OffsetDateTime) -> Result<Pki, PkiError> {
        spec.validate()?;
        let now = normalize(now);
        let (not_before, not_after) = window(now, spec.root_validity, ROOT)?;
        let root = make_root(&spec.organization, not_before, not_after, ROOT)?;
        let (not_before, not_after) = window(now, spec.intermediate_validity, INTERMEDIATE)?;
        check_nested(&root.cert, not_before, not_after, INTERMEDIATE)?;
        let intermediate = make_intermediate(
            &root,
            &spec.organization,
            &spec.trust_domain,
            not_before,
            not_after,
            INTERMEDIATE,
        )?;
        Ok(Pki {
            spec: spec.clone(),
            root: Arc::new(root),
            intermediate: Arc::new(intermediate),
        })
    }

    /// Issues a new mesh intermediate (fresh key and serial, same subject) from the same root,
    /// valid from `now − CLOCK_SKEW` to `now + validity`, and returns a `Pki` that shares this
    /// one's root. Used for rotation-with-overlap drills: call it with a `now` before the current
    /// intermediate's notAfter and both intermediates are valid during the overlap.
    pub fn new_intermediate(
        &self,
        validity: Duration,
        now: OffsetDateTime,
    ) -> Result<Pki, PkiError> {
        let now = normalize(now);
        let what = "rotated mesh intermediate";
        let (not_before, not_after) = window(now, validity, what)?;
        check_nested(&self.root.cert, not_before, not_after, what)?;
        let intermediate = make_intermediate(
            &self.root,
            &self.spec.organization,
            &self.spec.trust_domain,
            not_before,
            not_after,
            what,
        )?;
        Ok(Pki {
            spec: CaSpec {
                intermediate_validity: validity,
                ..self.spec.clone()
            },
            root: Arc::clone(&self.root),
            intermediate: Arc::new(intermediate),
        })
    }

    /// Issues an X509-SVID for `spiffe_id`, valid from `now − CLOCK_SKEW` to `now + ttl`.
    ///
    /// `spiffe_id` must be `spiffe://<trust_domain>/<non-empty path>` in ASCII; full SPIFFE ID
    /// syntax is deliberately *not* enforced here so the validator can be tested with odd paths.
    /// `ttl` is not checked against `spec.workload_ttl` (that is the validator's job, see
    /// [`Chaos::TtlOverPolicy`]), but the leaf may not outlive the intermediate.
    pub fn issue_svid(
        &self,
        spiffe_id: &str,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<Svid, PkiError> {
        let now = normalize(now);
        self.spiffe_path(spiffe_id)?;
        let what = format!("X509-SVID for {spiffe_id}");
        let (not_before, not_after) = window(now, ttl, &what)?;
        check_nested(&self.intermediate.cert, not_before, not_after, &what)?;
        let (cert, key) = make_leaf(
            &self.intermediate,
            &self.spec.organization,
            &LeafShape {
                uris: vec![spiffe_id],
                common_name: None,
                ca: false,
                not_before,
                not_after,
            },
            &what,
        )?;
        Ok(Svid {
            spiffe_id: spiffe_id.to_owned(),
            chain_pem: format!("{}{}", cert.pem(), self.intermediate.cert.pem()),
            cert,
            intermediate: self.intermediate.cert.clone(),
            root: self.root.cert.clone(),
            key,
        })
    }

    /// [`issue_svid`](Self::issue_svid) with the spec's `workload_ttl`.
    pub fn issue_workload_svid(
        &self,
        spiffe_id: &str,
        now: OffsetDateTime,
    ) -> Result<Svid, PkiError> {
        self.issue_svid(spiffe_id, self.spec.workload_ttl, now)
    }

    /// Writes Istio's plug-in CA files into `dir` (created if missing): `ca-cert.pem`,
    /// `ca-key.pem` (mode `0600`), `root-cert.pem`, `cert-chain.pem` (intermediate then root).
    pub fn write_plugin_ca(&self, dir: &std::path::Path) -> Result<PluginCaFiles, PkiError> {
        files::write_plugin_ca(
            dir,
            self.intermediate.cert.pem(),
            &self.intermediate.key,
            self.root.cert.pem(),
        )
    }

    /// The spec this hierarchy was generated from (for a rotated `Pki`,
    /// `intermediate_validity` is the rotated intermediate's).
    pub fn spec(&self) -> &CaSpec {
        &self.spec
    }
    /// The trust domain.
    pub fn trust_domain(&self) -> &str {
        &self.spec.trust_domain
    }
    /// The corporate root (the trust bundle).
    pub fn root(&self) -> &IssuedCert {
        &self.root.cert
    }
    /// The mesh intermediate.
    pub fn intermediate(&self) -> &IssuedCert {
        &self.intermediate.cert
    }
    /// Intermediate then root, PEM (the content of the plug-in CA's `cert-chain.pem`).
    pub fn ca_chain_pem(&self) -> String {
        format!("{}{}", self.intermediate.cert.pem(), self.root.cert.pem())
    }
    /// Whether `other` shares this hierarchy's root (same key and certificate).
    pub fn shares_root_with(&self, other: &Pki) -> bool {
        Arc::ptr_eq(&self.root, &other.root)
    }

    /// The path part of `spiffe_id` if it is `spiffe://<trust_domain>/<non-empty path>`.
    fn spiffe_path<'a>(&self, spiffe_id: &'a str) -> Result<&'a str, PkiError> {
        let invalid = |reason: String| PkiError::InvalidSpiffeId {
            id: spiffe_id.to_owned(),
            reason,
        };
        if !spiffe_id.is_ascii() {
            return Err(invalid("contains non-ASCII characters".to_owned()));
        }
        let prefix = format!("spiffe://{}/", self.spec.trust_domain);
        match spiffe_id.strip_prefix(&prefix) {
            Some(path) if !path.is_empty() => Ok(path),
            _ => Err(invalid(format!(
                "this CA only issues spiffe://{}/<path>",
                self.spec.trust_domain
            ))),
        }
    }
}

const ROOT: &str = "corporate root";
const INTERMEDIATE: &str = "mesh intermediate";

/// UTC, whole seconds: what X.509 can represent.
fn normalize(now: OffsetDateTime) -> OffsetDateTime {
    let utc = now.to_offset(UtcOffset::UTC);
    utc.replace_nanosecond(0).unwrap_or(utc)
}

/// `at + delta`, or an error naming `what`.
fn shift(
    at: OffsetDateTime,
    delta: time::Duration,
    what: &str,
) -> Result<OffsetDateTime, PkiError> {
    at.checked_add(delta)
        .ok_or_else(|| PkiError::InvalidLifetime {
            what: what.to_owned(),
            reason: format!("{at} + {delta} is out of range"),
        })
}

fn to_time(d: Duration, what: &str) -> Result<time::Duration, PkiError> {
    if d < Duration::from_secs(1) {
        return Err(PkiError::InvalidLifetime {
            what: what.to_owned(),
            reason: format!("{d:?} is shorter than one second"),
        });
    }
    time::Duration::try_from(d).map_err(|_| PkiError::InvalidLifetime {
        what: what.to_owned(),
        reason: format!("{d:?} is too long"),
    })
}

/// `[now − CLOCK_SKEW, now + lifetime]`.
fn window(
    now: OffsetDateTime,
    lifetime: Duration,
    what: &str,
) -> Result<(OffsetDateTime, OffsetDateTime), PkiError> {
    let skew = to_time(CLOCK_SKEW, what)?;
    Ok((
        shift(now, -skew, what)?,
        shift(now, to_time(lifetime, what)?, what)?,
    ))
}

fn check_nested(
    issuer: &IssuedCert,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    what: &str,
) -> Result<(), PkiError> {
    if not_after > issuer.not_after() {
        return Err(PkiError::OutlivesIssuer {
            what: what.to_owned(),
            not_after,
            issuer_not_after: issuer.not_after(),
        });
    }
    if not_before < issuer.not_before() {
        return Err(PkiError::InvalidLifetime {
            what: what.to_owned(),
            reason: format!(
                "notBefore {not_before} predates the issuer's notBefore {}",
                issuer.not_before()
            ),
        });
    }
    Ok(())
}

fn distinguished_name(organization: &str, common_name: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, organization);
    if let Some(cn) = common_name {
        dn.push(DnType::CommonName, cn);
    }
    dn
}

fn uri_san(uri: &str, what: &str) -> Result<SanType, PkiError> {
    rcgen::string::Ia5String::try_from(uri)
        .map(SanType::URI)
        .map_err(|cause| PkiError::Certificate {
            what: what.to_owned(),
            cause,
        })
}

fn ca_params(
    common_name: &str,
    organization: &str,
    path_len: u8,
    uri: Option<&str>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    what: &str,
) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(organization, Some(common_name));
    params.serial_number = Some(cert::random_serial()?);
    params.not_before = not_before;
    params.not_after = not_after;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    if let Some(uri) = uri {
        params.subject_alt_names = vec![uri_san(uri, what)?];
    }
    Ok(params)
}

fn make_root(
    organization: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    what: &str,
) -> Result<CaMaterial, PkiError> {
    let key = PrivateKey::generate(what)?;
    let params = ca_params(
        &format!("{organization} Corporate Root CA"),
        organization,
        1,
        None,
        not_before,
        not_after,
        what,
    )?;
    let cert = params
        .self_signed(key.key_pair())
        .map_err(|cause| PkiError::Certificate {
            what: what.to_owned(),
            cause,
        })?;
    Ok(CaMaterial {
        cert: IssuedCert::from_rcgen(&cert, what)?,
        params,
        key,
    })
}

fn make_intermediate(
    root: &CaMaterial,
    organization: &str,
    trust_domain: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    what: &str,
) -> Result<CaMaterial, PkiError> {
    let key = PrivateKey::generate(what)?;
    let mut params = ca_params(
        &format!("{organization} Mesh Intermediate CA"),
        organization,
        0,
        Some(&format!("spiffe://{trust_domain}")),
        not_before,
        not_after,
        what,
    )?;
    params.use_authority_key_identifier_extension = true;
    let cert = params
        .signed_by(key.key_pair(), &root.issuer())
        .map_err(|cause| PkiError::Certificate {
            what: what.to_owned(),
            cause,
        })?;
    Ok(CaMaterial {
        cert: IssuedCert::from_rcgen(&cert, what)?,
        params,
        key,
    })
}

/// What a leaf looks like; the well-formed shape is one URI, no CN, not a CA.
struct LeafShape<'a> {
    uris: Vec<&'a str>,
    common_name: Option<&'a str>,
    ca: bool,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

fn make_leaf(
    issuer: &CaMaterial,
    organization: &str,
    shape: &LeafShape<'_>,
    what: &str,
) -> Result<(IssuedCert, PrivateKey), PkiError> {
    let key = PrivateKey::generate(what)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(organization, shape.common_name);
    params.serial_number = Some(cert::random_serial()?);
    params.not_before = shape.not_before;
    params.not_after = shape.not_after;
    params.subject_alt_names = shape
        .uris
        .iter()
        .map(|uri| uri_san(uri, what))
        .collect::<Result<_, _>>()?;
    params.is_ca = if shape.ca {
        IsCa::Ca(BasicConstraints::Constrained(0))
    } else {
        IsCa::ExplicitNoCa
    };
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    let cert = params
        .signed_by(key.key_pair(), &issuer.issuer())
        .map_err(|cause| PkiError::Certificate {
            what: what.to_owned(),
            cause,
        })?;
    Ok((IssuedCert::from_rcgen(&cert, what)?, key))
}

//! Trust bundles (trust domain → root certificates) and PEM chain decoding.
//!
//! # Contract
//!
//! Guarantees: every root stored in a [`TrustBundle`] parsed as a single X.509 certificate
//! with no trailing bytes when it was added; roots are kept per trust domain, so a root
//! added for `a` is never used to validate an SVID of `b`. [`parse_pem_chain`] returns the
//! `CERTIFICATE` blocks in file order, each checked to parse as X.509.
//!
//! Does not: check that a root is a CA, self-signed, or currently valid when it is added
//! (the validator checks CA flags and dates at validation time, so a bundle can be loaded
//! and then audited); fetch or refresh bundles (SPIFFE bundle endpoints are out of scope);
//! read SPIFFE JWKS bundle documents (only PEM and DER).
//!
//! Private keys: PEM blocks other than `CERTIFICATE` (e.g. `PRIVATE KEY` in a combined
//! SVID file) are skipped without being decoded into any error or value.

use std::collections::{BTreeMap, BTreeSet};

use x509_parser::pem::Pem;

use super::id::TrustDomain;
use super::svid::SvidError;

/// The PEM label of an X.509 certificate.
const CERTIFICATE_LABEL: &str = "CERTIFICATE";

/// Root certificates (DER) per trust domain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustBundle {
    roots: BTreeMap<TrustDomain, BTreeSet<Vec<u8>>>,
}

impl TrustBundle {
    /// An empty bundle: it trusts nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// A bundle for one trust domain from PEM text holding one or more certificates.
    pub fn from_pem(td: TrustDomain, pem: &str) -> Result<Self, SvidError> {
        let mut bundle = Self::new();
        bundle.add_roots_pem(td, pem)?;
        Ok(bundle)
    }

    /// A bundle for one trust domain from DER-encoded certificates.
    pub fn from_der<I>(td: TrustDomain, roots: I) -> Result<Self, SvidError>
    where
        I: IntoIterator<Item = Vec<u8>>,
    {
        let mut bundle = Self::new();
        for der in roots {
            bundle.add_root_der(td.clone(), der)?;
        }
        Ok(bundle)
    }

    /// Adds one DER-encoded root for `td`, after checking it parses as X.509.
    pub fn add_root_der(&mut self, td: TrustDomain, der: Vec<u8>) -> Result<(), SvidError> {
        let index = self.roots.get(&td).map_or(0, BTreeSet::len) + 1;
        check_parses(&der).map_err(|reason| SvidError::BadBundleRoot {
            trust_domain: td.to_string(),
            index,
            reason,
        })?;
        self.roots.entry(td).or_default().insert(der);
        Ok(())
    }

    /// Adds every `CERTIFICATE` block of `pem` as a root for `td`; returns how many.
    /// PEM text without any certificate is an error, so an empty file cannot silently
    /// produce a bundle that trusts nothing for `td`.
    pub fn add_roots_pem(&mut self, td: TrustDomain, pem: &str) -> Result<usize, SvidError> {
        let ders = parse_pem_chain(pem)?;
        let count = ders.len();
        for der in ders {
            self.add_root_der(td.clone(), der)?;
        }
        Ok(count)
    }

    /// The roots (DER) for `td`, if the bundle knows that trust domain.
    pub fn roots(&self, td: &TrustDomain) -> Option<&BTreeSet<Vec<u8>>> {
        self.roots.get(td).filter(|set| !set.is_empty())
    }

    /// The trust domains this bundle has roots for, in order.
    pub fn trust_domains(&self) -> impl Iterator<Item = &TrustDomain> {
        self.roots.keys()
    }

    /// True when the bundle has no roots at all.
    pub fn is_empty(&self) -> bool {
        self.roots.values().all(BTreeSet::is_empty)
    }
}

/// Decodes the `CERTIFICATE` blocks of PEM text into DER, in order (leaf first for a
/// chain file). Other block types are skipped; text outside blocks is ignored.
pub fn parse_pem_chain(pem: &str) -> Result<Vec<Vec<u8>>, SvidError> {
    let mut ders = Vec::new();
    for (i, block) in Pem::iter_from_buffer(pem.as_bytes()).enumerate() {
        // The PEM error kinds are fixed strings ("base64 decode error", ...): they never
        // echo block content, so a malformed private-key block cannot leak through here.
        let block = block.map_err(|e| SvidError::Pem {
            block: i + 1,
            reason: e.to_string(),
        })?;
        if block.label != CERTIFICATE_LABEL {
            continue;
        }
        check_parses(&block.contents).map_err(|reason| SvidError::Pem {
            block: i + 1,
            reason,
        })?;
        ders.push(block.contents);
    }
    if ders.is_empty() {
        return Err(SvidError::NoCertificates);
    }
    Ok(ders)
}

/// Checks that `der` is exactly one X.509 certificate.
fn check_parses(der: &[u8]) -> Result<(), String> {
    match x509_parser::parse_x509_certificate(der) {
        Ok(([], _)) => Ok(()),
        Ok((rest, _)) => Err(format!(
            "{} trailing byte(s) after the certificate",
            rest.len()
        )),
        Err(e) => Err(format!("not a DER X.509 certificate: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spiffe::test_pki::{TestCa, tradepulse};

    const JUNK_KEY: &str =
        "-----BEGIN PRIVATE KEY-----\nU0VDUkVUS0VZTUFURVJJQUw=\n-----END PRIVATE KEY-----\n";

    #[test]
    fn pem_chain_keeps_order_and_skips_non_certificate_blocks() {
        let root = TestCa::root("Root");
        let int = root.intermediate("Int");
        let pem = format!(
            "leading text\n{}{JUNK_KEY}{}",
            int.cert_pem(),
            root.cert_pem()
        );
        let ders = parse_pem_chain(&pem).unwrap();
        assert_eq!(ders, vec![int.der.clone(), root.der.clone()]);
    }

    #[test]
    fn pem_without_certificates_is_an_error() {
        assert!(matches!(
            parse_pem_chain(""),
            Err(SvidError::NoCertificates)
        ));
        assert!(matches!(
            parse_pem_chain(JUNK_KEY),
            Err(SvidError::NoCertificates)
        ));
    }

    #[test]
    fn pem_with_garbage_certificate_is_an_error_that_does_not_echo_content() {
        let pem =
            "-----BEGIN CERTIFICATE-----\nU0VDUkVUS0VZTUFURVJJQUw=\n-----END CERTIFICATE-----\n";
        let err = parse_pem_chain(pem).unwrap_err();
        assert!(matches!(err, SvidError::Pem { block: 1, .. }), "{err}");
        let msg = err.to_string();
        assert!(
            !msg.contains("U0VDUkVU") && !msg.contains("SECRET"),
            "{msg}"
        );
    }

    #[test]
    fn bundle_from_pem_and_der_hold_roots_per_trust_domain() {
        let root = TestCa::root("Root");
        let from_pem = TrustBundle::from_pem(tradepulse(), &root.cert_pem()).unwrap();
        let from_der = TrustBundle::from_der(tradepulse(), [root.der.clone()]).unwrap();
        assert_eq!(from_pem, from_der);
        assert_eq!(from_pem.roots(&tradepulse()).map(BTreeSet::len), Some(1));
        let evil = TrustDomain::parse("evil").unwrap();
        assert!(from_pem.roots(&evil).is_none());
        assert_eq!(
            from_pem.trust_domains().collect::<Vec<_>>(),
            [&tradepulse()]
        );
        assert!(!from_pem.is_empty() && TrustBundle::new().is_empty());
    }

    #[test]
    fn bundle_rejects_non_certificate_der() {
        let err = TrustBundle::from_der(tradepulse(), [vec![0x30, 0x03, 1, 2, 3]]).unwrap_err();
        assert!(
            matches!(err, SvidError::BadBundleRoot { index: 1, .. }),
            "{err}"
        );
        let mut trailing = TestCa::root("Root").der;
        trailing.push(0);
        let err = TrustBundle::from_der(tradepulse(), [trailing]).unwrap_err();
        assert!(err.to_string().contains("trailing"), "{err}");
    }
}

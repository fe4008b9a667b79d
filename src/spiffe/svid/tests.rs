//! Validator tests: one healthy chain, then one test per way an SVID can be broken.
//! Every fixture differs from the healthy one in exactly the property under test, and
//! every broken case asserts the specific error variant (and where it matters, which
//! certificate it names), so a check that is removed or weakened makes a test fail.

use rcgen::{BasicConstraints, CertificateParams, CustomExtension, IsCa, KeyUsagePurpose, SanType};
use sha2::{Digest, Sha256};

use super::*;
use crate::spiffe::id::TrustDomain;
use crate::spiffe::parse_pem_chain;
use crate::spiffe::test_pki::{
    LEAF_ID, TestCa, at, ca_params, date, leaf_params, new_key, tradepulse,
};

/// Root → intermediate, with a bundle trusting the root for `tradepulse`.
struct Pki {
    root: TestCa,
    int: TestCa,
    bundle: TrustBundle,
}

fn pki() -> Pki {
    pki_with_root(TestCa::root("TradePulse Root CA"))
}

fn pki_with_root(root: TestCa) -> Pki {
    let int = root.intermediate("TradePulse Mesh Intermediate");
    let bundle = bundle_of(&root);
    Pki { root, int, bundle }
}

fn bundle_of(root: &TestCa) -> TrustBundle {
    TrustBundle::from_der(tradepulse(), [root.der.clone()]).expect("bundle")
}

fn leaf() -> CertificateParams {
    leaf_params(&[LEAF_ID])
}

/// Leaf (from `params`) signed by the intermediate, then the intermediate.
fn chain(p: &Pki, params: &CertificateParams) -> Vec<Vec<u8>> {
    vec![p.int.issue_leaf(params), p.int.der.clone()]
}

fn reject(chain: &[Vec<u8>], bundle: &TrustBundle) -> SvidError {
    match validate_x509_svid(chain, bundle, at()) {
        Ok(svid) => panic!("expected rejection, got {svid:?}"),
        Err(e) => {
            // Every error must be a single line an auditor can paste.
            assert!(!e.to_string().contains('\n'), "multi-line: {e}");
            e
        }
    }
}

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).expect("valid id")
}

// ---------------------------------------------------------------- healthy paths

#[test]
fn healthy_root_intermediate_leaf_passes() {
    let p = pki();
    let chain = chain(&p, &leaf());
    let svid = validate_x509_svid(&chain, &p.bundle, at()).expect("healthy chain");
    assert_eq!(svid.spiffe_id, id(LEAF_ID));
    let expected_fp: String = Sha256::digest(&chain[0])
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(svid.sha256_fingerprint, expected_fp);
    assert_eq!(svid.not_before, date(2025, 1, 1));
    assert_eq!(svid.not_after, date(2026, 1, 1));
    assert_eq!(svid.chain_not_after, date(2026, 1, 1));
    assert_eq!(svid.root_subject, "CN=TradePulse Root CA");
    let (_, x509) = x509_parser::parse_x509_certificate(&chain[0]).expect("parse");
    let serial = x509.raw_serial_as_string().replace(':', "");
    assert!(serial.ends_with(&svid.serial_hex) && !svid.serial_hex.is_empty());
    assert!(!svid.serial_hex.starts_with("00"), "{}", svid.serial_hex);
}

#[test]
fn healthy_chain_with_root_presented_passes() {
    let p = pki();
    let mut chain = chain(&p, &leaf());
    chain.push(p.root.der.clone());
    let svid = validate_x509_svid(&chain, &p.bundle, at()).expect("root presented");
    assert_eq!(svid.spiffe_id, id(LEAF_ID));
}

#[test]
fn leaf_issued_directly_by_root_passes() {
    let p = pki();
    let chain = vec![p.root.issue_leaf(&leaf())];
    assert!(validate_x509_svid(&chain, &p.bundle, at()).is_ok());
}

#[test]
fn explicit_ca_false_and_extra_dns_san_are_fine() {
    let p = pki();
    let mut params = leaf();
    params.is_ca = IsCa::ExplicitNoCa;
    params.subject_alt_names.push(SanType::DnsName(
        "optimizer.tradepulse".try_into().expect("dns"),
    ));
    assert!(validate_x509_svid(&chain(&p, &params), &p.bundle, at()).is_ok());
}

#[test]
fn chain_not_after_is_the_earliest_expiry_in_the_path() {
    let root = TestCa::root("Root");
    let mut int_params = ca_params("Short-lived Intermediate");
    int_params.not_before = date(2024, 1, 1);
    int_params.not_after = date(2025, 9, 1);
    let int = root.issue_ca(int_params);
    let chain = vec![int.issue_leaf(&leaf()), int.der.clone()];
    let svid = validate_x509_svid(&chain, &bundle_of(&root), at()).expect("valid");
    assert_eq!(svid.not_after, date(2026, 1, 1));
    assert_eq!(svid.chain_not_after, date(2025, 9, 1));
}

#[test]
fn validity_bounds_are_inclusive() {
    let p = pki();
    let chain = chain(&p, &leaf());
    assert!(validate_x509_svid(&chain, &p.bundle, date(2026, 1, 1)).is_ok());
    assert!(validate_x509_svid(&chain, &p.bundle, date(2025, 1, 1)).is_ok());
}

#[test]
fn pem_chain_validates_like_der() {
    let p = pki();
    let pem = format!("{}{}", p.int.issue_leaf_pem(&leaf()), p.int.cert_pem());
    let chain = parse_pem_chain(&pem).expect("pem");
    assert_eq!(chain.len(), 2);
    assert!(validate_x509_svid(&chain, &p.bundle, at()).is_ok());
}

#[test]
fn any_root_of_a_rotating_bundle_anchors() {
    let p = pki();
    let other = TestCa::root("TradePulse Next Root");
    let mut bundle = p.bundle.clone();
    bundle
        .add_root_der(tradepulse(), other.der.clone())
        .expect("add");
    assert!(validate_x509_svid(&chain(&p, &leaf()), &bundle, at()).is_ok());
    let next_int = other.intermediate("Next Intermediate");
    let next_chain = vec![next_int.issue_leaf(&leaf()), next_int.der.clone()];
    assert!(validate_x509_svid(&next_chain, &bundle, at()).is_ok());
}

// ---------------------------------------------------------------- leaf rules

#[test]
fn zero_uri_sans_rejected() {
    let p = pki();
    let err = reject(&chain(&p, &leaf_params(&[])), &p.bundle);
    assert_eq!(
        err,
        SvidError::UriSanCount {
            count: 0,
            uris: vec![]
        }
    );
}

#[test]
fn two_uri_sans_rejected() {
    let p = pki();
    let second = "spiffe://tradepulse/prod/strategy/other";
    let err = reject(&chain(&p, &leaf_params(&[LEAF_ID, second])), &p.bundle);
    assert_eq!(
        err,
        SvidError::UriSanCount {
            count: 2,
            uris: vec![LEAF_ID.to_owned(), second.to_owned()]
        }
    );
    assert!(err.to_string().contains(second), "{err}");
}

#[test]
fn non_spiffe_uri_san_rejected() {
    let p = pki();
    let err = reject(
        &chain(&p, &leaf_params(&["https://tradepulse/x"])),
        &p.bundle,
    );
    assert!(
        matches!(
            &err,
            SvidError::InvalidLeafId {
                source: SpiffeIdError::WrongScheme { .. },
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn leaf_with_trust_domain_id_rejected() {
    let p = pki();
    let err = reject(
        &chain(&p, &leaf_params(&["spiffe://tradepulse"])),
        &p.bundle,
    );
    assert_eq!(
        err,
        SvidError::LeafIdWithoutPath {
            id: id("spiffe://tradepulse")
        }
    );
}

#[test]
fn leaf_with_ca_true_rejected() {
    let p = pki();
    let mut params = leaf();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let err = reject(&chain(&p, &params), &p.bundle);
    assert!(matches!(err, SvidError::LeafIsCa { .. }), "{err:?}");
}

#[test]
fn leaf_missing_digital_signature_rejected() {
    let p = pki();
    let mut params = leaf();
    params.key_usages = vec![KeyUsagePurpose::KeyEncipherment];
    let err = reject(&chain(&p, &params), &p.bundle);
    assert!(
        matches!(err, SvidError::LeafMissingDigitalSignature { .. }),
        "{err:?}"
    );
}

#[test]
fn leaf_without_key_usage_rejected() {
    let p = pki();
    let mut params = leaf();
    params.key_usages = vec![];
    let err = reject(&chain(&p, &params), &p.bundle);
    assert!(
        matches!(err, SvidError::LeafMissingKeyUsage { .. }),
        "{err:?}"
    );
}

#[test]
fn leaf_with_key_cert_sign_rejected() {
    let p = pki();
    let mut params = leaf();
    params.key_usages.push(KeyUsagePurpose::KeyCertSign);
    let err = reject(&chain(&p, &params), &p.bundle);
    assert!(
        matches!(&err, SvidError::LeafCanSign { usages, .. } if usages == "keyCertSign"),
        "{err:?}"
    );
}

#[test]
fn leaf_with_crl_sign_rejected() {
    let p = pki();
    let mut params = leaf();
    params.key_usages.push(KeyUsagePurpose::CrlSign);
    let err = reject(&chain(&p, &params), &p.bundle);
    assert!(
        matches!(&err, SvidError::LeafCanSign { usages, .. } if usages == "cRLSign"),
        "{err:?}"
    );
}

#[test]
fn unhandled_critical_extension_rejected_but_non_critical_ignored() {
    let p = pki();
    let mut ext = CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 99999, 1], vec![5, 0]);
    let mut params = leaf();
    params.custom_extensions = vec![ext.clone()];
    assert!(validate_x509_svid(&chain(&p, &params), &p.bundle, at()).is_ok());
    ext.set_criticality(true);
    params.custom_extensions = vec![ext];
    let err = reject(&chain(&p, &params), &p.bundle);
    assert!(
        matches!(&err, SvidError::UnhandledCriticalExtension { cert: CertRole::Leaf, extension, .. } if extension.contains("1.3.6.1.4.1.99999.1")),
        "{err:?}"
    );
}

// ---------------------------------------------------------------- signing certificates

#[test]
fn intermediate_not_a_ca_rejected() {
    let root = TestCa::root("Root");
    let mut params = ca_params("Not-a-CA Intermediate");
    params.is_ca = IsCa::ExplicitNoCa;
    let int = root.issue_ca(params);
    let chain = vec![int.issue_leaf(&leaf()), int.der.clone()];
    let err = reject(&chain, &bundle_of(&root));
    assert!(
        matches!(
            err,
            SvidError::SigningCertNotCa {
                cert: CertRole::Intermediate(1),
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn intermediate_without_basic_constraints_rejected() {
    let root = TestCa::root("Root");
    let mut params = ca_params("Bare Intermediate");
    params.is_ca = IsCa::NoCa;
    let int = root.issue_ca(params);
    let chain = vec![int.issue_leaf(&leaf()), int.der.clone()];
    let err = reject(&chain, &bundle_of(&root));
    assert!(
        matches!(
            err,
            SvidError::SigningCertNotCa {
                cert: CertRole::Intermediate(1),
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn intermediate_without_key_cert_sign_rejected() {
    let root = TestCa::root("Root");
    let mut params = ca_params("No-keyCertSign Intermediate");
    params.key_usages = vec![KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let int = root.issue_ca(params);
    let chain = vec![int.issue_leaf(&leaf()), int.der.clone()];
    let err = reject(&chain, &bundle_of(&root));
    assert!(
        matches!(
            err,
            SvidError::SigningCertMissingKeyCertSign {
                cert: CertRole::Intermediate(1),
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn root_not_a_ca_rejected() {
    let mut params = ca_params("Not-a-CA Root");
    params.is_ca = IsCa::ExplicitNoCa;
    let p = pki_with_root(TestCa::root_with(params));
    let err = reject(&chain(&p, &leaf()), &p.bundle);
    assert!(
        matches!(
            err,
            SvidError::SigningCertNotCa {
                cert: CertRole::Root,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn signing_cert_spiffe_id_with_path_rejected() {
    let root = TestCa::root("Root");
    let mut params = ca_params("Intermediate");
    params.subject_alt_names = vec![SanType::URI("spiffe://tradepulse".try_into().expect("uri"))];
    let ok_int = root.issue_ca(params.clone());
    let ok_chain = vec![ok_int.issue_leaf(&leaf()), ok_int.der.clone()];
    assert!(validate_x509_svid(&ok_chain, &bundle_of(&root), at()).is_ok());

    params.subject_alt_names = vec![SanType::URI(
        "spiffe://tradepulse/ca/intermediate"
            .try_into()
            .expect("uri"),
    )];
    let int = root.issue_ca(params);
    let chain = vec![int.issue_leaf(&leaf()), int.der.clone()];
    let err = reject(&chain, &bundle_of(&root));
    assert!(
        matches!(
            err,
            SvidError::SigningCertIdHasPath {
                cert: CertRole::Intermediate(1),
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn path_len_constraint_enforced() {
    // pathlen:0 on the issuing intermediate (the common mesh shape) is fine...
    let root = TestCa::root("Root");
    let mut params = ca_params("Issuing Intermediate");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let int = root.issue_ca(params);
    let chain = vec![int.issue_leaf(&leaf()), int.der.clone()];
    assert!(validate_x509_svid(&chain, &bundle_of(&root), at()).is_ok());

    // ...but pathlen:0 on the root forbids any intermediate below it.
    let mut root_params = ca_params("Constrained Root");
    root_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let p = pki_with_root(TestCa::root_with(root_params));
    let err = reject(&chain_of(&p), &p.bundle);
    assert_eq!(
        err,
        SvidError::PathLenExceeded {
            cert: CertRole::Root,
            subject: "CN=Constrained Root".into(),
            path_len: 0,
            below: 1
        }
    );
}

fn chain_of(p: &Pki) -> Vec<Vec<u8>> {
    chain(p, &leaf())
}

// ---------------------------------------------------------------- validity

fn expect_time_err(err: &SvidError, want_expired: bool, want_cert: CertRole) {
    let (cert, expired) = match err {
        SvidError::Expired { cert, .. } => (*cert, true),
        SvidError::NotYetValid { cert, .. } => (*cert, false),
        other => panic!("expected a validity error, got {other:?}"),
    };
    assert_eq!((cert, expired), (want_cert, want_expired), "{err}");
}

#[test]
fn expired_leaf_rejected() {
    let p = pki();
    let mut params = leaf();
    params.not_before = date(2024, 1, 1);
    params.not_after = date(2025, 5, 31);
    let err = reject(&chain(&p, &params), &p.bundle);
    expect_time_err(&err, true, CertRole::Leaf);
}

#[test]
fn not_yet_valid_leaf_rejected() {
    let p = pki();
    let mut params = leaf();
    params.not_before = date(2025, 6, 2);
    let err = reject(&chain(&p, &params), &p.bundle);
    expect_time_err(&err, false, CertRole::Leaf);
}

fn intermediate_valid(
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
) -> SvidError {
    let root = TestCa::root("Root");
    let mut params = ca_params("Intermediate");
    params.not_before = not_before;
    params.not_after = not_after;
    let int = root.issue_ca(params);
    let chain = vec![int.issue_leaf(&leaf()), int.der.clone()];
    reject(&chain, &bundle_of(&root))
}

#[test]
fn expired_intermediate_rejected() {
    let err = intermediate_valid(date(2020, 1, 1), date(2025, 1, 1));
    expect_time_err(&err, true, CertRole::Intermediate(1));
}

#[test]
fn not_yet_valid_intermediate_rejected() {
    let err = intermediate_valid(date(2025, 7, 1), date(2030, 1, 1));
    expect_time_err(&err, false, CertRole::Intermediate(1));
}

fn expired_root_pki() -> Pki {
    let mut params = ca_params("Expired Root");
    params.not_before = date(2010, 1, 1);
    params.not_after = date(2020, 1, 1);
    pki_with_root(TestCa::root_with(params))
}

#[test]
fn expired_root_rejected_even_when_not_presented() {
    // The case webpki/rustls miss: the anchor is only in the bundle, and it has expired.
    let p = expired_root_pki();
    let err = reject(&chain(&p, &leaf()), &p.bundle);
    expect_time_err(&err, true, CertRole::Root);
    let msg = err.to_string();
    for part in [
        "root certificate",
        "CN=Expired Root",
        "2010-01-01T00:00:00Z",
        "2020-01-01T00:00:00Z",
        "2025-06-01T00:00:00Z",
    ] {
        assert!(msg.contains(part), "{part:?} missing from: {msg}");
    }
}

#[test]
fn expired_root_rejected_when_presented() {
    let p = expired_root_pki();
    let mut chain = chain(&p, &leaf());
    chain.push(p.root.der.clone());
    let err = reject(&chain, &p.bundle);
    expect_time_err(&err, true, CertRole::Root);
}

// ---------------------------------------------------------------- trust

#[test]
fn foreign_root_rejected() {
    // Same trust domain name, same CN, but a different CA key: not in the bundle.
    let trusted = pki();
    let foreign = pki_with_root(TestCa::root("TradePulse Root CA"));
    let err = reject(&chain(&foreign, &leaf()), &trusted.bundle);
    assert!(
        matches!(&err, SvidError::UntrustedRoot { cert: CertRole::Intermediate(1), trust_domain, roots: 1, .. } if trust_domain == "tradepulse"),
        "{err:?}"
    );
}

#[test]
fn foreign_root_presented_in_chain_rejected() {
    let trusted = pki();
    let foreign = pki_with_root(TestCa::root("TradePulse Root CA"));
    let mut chain = chain(&foreign, &leaf());
    chain.push(foreign.root.der.clone());
    let err = reject(&chain, &trusted.bundle);
    assert!(
        matches!(
            err,
            SvidError::UntrustedRoot {
                cert: CertRole::Intermediate(2),
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn root_of_another_trust_domain_does_not_anchor() {
    // The bundle trusts `evil`'s root for `evil` only; a tradepulse leaf chaining to it fails.
    let tradepulse_pki = pki();
    let evil_root = TestCa::root("Evil Root");
    let mut bundle = tradepulse_pki.bundle.clone();
    let evil = TrustDomain::parse("evil").expect("td");
    bundle
        .add_root_der(evil, evil_root.der.clone())
        .expect("add");
    let evil_int = evil_root.intermediate("Evil Intermediate");
    let chain = vec![
        evil_int.issue_leaf(&leaf()),
        evil_int.der.clone(),
        evil_root.der.clone(),
    ];
    let err = reject(&chain, &bundle);
    assert!(matches!(err, SvidError::UntrustedRoot { .. }), "{err:?}");
}

#[test]
fn wrong_trust_domain_rejected() {
    let p = pki();
    let params = leaf_params(&["spiffe://evil/prod/strategy/optimizer"]);
    let err = reject(&chain(&p, &params), &p.bundle);
    assert_eq!(
        err,
        SvidError::UnknownTrustDomain {
            trust_domain: "evil".into(),
            id: id("spiffe://evil/prod/strategy/optimizer"),
            known: vec!["tradepulse".into()]
        }
    );
}

#[test]
fn bad_leaf_signature_rejected() {
    // The leaf names the intermediate as issuer but was signed by some other key.
    let p = pki();
    let forged = p.int.issue_leaf_signed_with(&leaf(), &new_key());
    let err = reject(&[forged, p.int.der.clone()], &p.bundle);
    assert!(
        matches!(
            err,
            SvidError::BadSignature {
                cert: CertRole::Leaf,
                issuer_cert: CertRole::Intermediate(1),
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn bad_intermediate_signature_against_presented_root_rejected() {
    // Intermediate claims the trusted root as issuer but was signed by another key;
    // the root is presented, so the chain's anchor is found by identity, not signature.
    let p = pki();
    let int = p
        .root
        .issue_ca_signed_with(ca_params("Impostor Intermediate"), &new_key());
    let chain = vec![int.issue_leaf(&leaf()), int.der.clone(), p.root.der.clone()];
    let err = reject(&chain, &p.bundle);
    assert!(
        matches!(
            err,
            SvidError::BadSignature {
                cert: CertRole::Intermediate(1),
                issuer_cert: CertRole::Root,
                ..
            }
        ),
        "{err:?}"
    );
}

// ---------------------------------------------------------------- expected ID

#[test]
fn id_mismatch_rejected() {
    let p = pki();
    let chain = chain(&p, &leaf());
    let want = id("spiffe://tradepulse/prod/strategy/executor");
    let err = validate_x509_svid_for(&chain, &p.bundle, at(), Some(&want)).unwrap_err();
    assert_eq!(
        err,
        SvidError::IdMismatch {
            expected: want,
            found: id(LEAF_ID)
        }
    );
    assert!(validate_x509_svid_for(&chain, &p.bundle, at(), Some(&id(LEAF_ID))).is_ok());
    assert!(validate_x509_svid_for(&chain, &p.bundle, at(), None).is_ok());
}

// ---------------------------------------------------------------- input shape

#[test]
fn empty_chain_rejected() {
    assert_eq!(reject(&[], &pki().bundle), SvidError::EmptyChain);
}

#[test]
fn malformed_der_rejected() {
    let p = pki();
    let err = reject(&[vec![0x30, 0x82, 0xff]], &p.bundle);
    assert!(
        matches!(
            err,
            SvidError::Malformed {
                cert: CertRole::Leaf,
                ..
            }
        ),
        "{err:?}"
    );
    let mut with_trailing = p.int.der.clone();
    with_trailing.push(0);
    let err = reject(&[p.int.issue_leaf(&leaf()), with_trailing], &p.bundle);
    assert!(
        matches!(
            err,
            SvidError::Malformed {
                cert: CertRole::Intermediate(1),
                ..
            }
        ),
        "{err:?}"
    );
}

//! Test-only PKI fixtures built with rcgen: roots, intermediates and leaf SVIDs with
//! every knob (validity, CA flag, key usage, SANs, signing key) under the test's control.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

use super::id::TrustDomain;

/// A CA (root or intermediate) whose key can sign further certificates.
pub struct TestCa {
    pub params: CertificateParams,
    pub key: KeyPair,
    pub der: Vec<u8>,
    pem: String,
}

impl TestCa {
    /// A self-signed root valid 2020..2035.
    pub fn root(cn: &str) -> Self {
        Self::root_with(ca_params(cn))
    }

    /// A self-signed root from explicit parameters.
    pub fn root_with(params: CertificateParams) -> Self {
        let key = new_key();
        let cert = params.self_signed(&key).expect("self-sign root");
        Self {
            der: cert.der().to_vec(),
            pem: cert.pem(),
            params,
            key,
        }
    }

    /// An intermediate CA valid 2024..2030, signed by `self`.
    pub fn intermediate(&self, cn: &str) -> Self {
        let mut params = ca_params(cn);
        params.not_before = date(2024, 1, 1);
        params.not_after = date(2030, 1, 1);
        self.issue_ca(params)
    }

    /// A CA certificate from explicit parameters, signed by `self`.
    pub fn issue_ca(&self, params: CertificateParams) -> Self {
        self.issue_ca_signed_with(params, &self.key)
    }

    /// A CA naming `self` as issuer but signed by `signing_key`: a forged signature.
    pub fn issue_ca_signed_with(&self, params: CertificateParams, signing_key: &KeyPair) -> Self {
        let key = new_key();
        let cert = params
            .signed_by(&key, &Issuer::from_params(&self.params, signing_key))
            .expect("sign CA");
        Self {
            der: cert.der().to_vec(),
            pem: cert.pem(),
            params,
            key,
        }
    }

    /// A leaf certificate (fresh key) signed by `self`.
    pub fn issue_leaf(&self, params: &CertificateParams) -> Vec<u8> {
        self.issue_leaf_signed_with(params, &self.key)
    }

    /// A leaf naming `self` as issuer but signed by `signing_key`: a forged signature.
    pub fn issue_leaf_signed_with(
        &self,
        params: &CertificateParams,
        signing_key: &KeyPair,
    ) -> Vec<u8> {
        let key = new_key();
        params
            .signed_by(&key, &Issuer::from_params(&self.params, signing_key))
            .expect("sign leaf")
            .der()
            .to_vec()
    }

    /// Like [`Self::issue_leaf`], as PEM.
    pub fn issue_leaf_pem(&self, params: &CertificateParams) -> String {
        params
            .signed_by(&new_key(), &Issuer::from_params(&self.params, &self.key))
            .expect("sign leaf")
            .pem()
    }

    pub fn cert_pem(&self) -> String {
        self.pem.clone()
    }
}

pub fn new_key() -> KeyPair {
    KeyPair::generate().expect("generate key")
}

/// CA parameters: cA=true, keyCertSign + cRLSign, valid 2020..2035.
pub fn ca_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = date(2020, 1, 1);
    params.not_after = date(2035, 1, 1);
    params
}

/// Leaf parameters: the given URI SANs, no basicConstraints, digitalSignature, valid 2025.
pub fn leaf_params(uris: &[&str]) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "workload");
    params.subject_alt_names = uris
        .iter()
        .map(|u| SanType::URI((*u).try_into().expect("IA5 URI")))
        .collect();
    params.is_ca = IsCa::NoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_before = date(2025, 1, 1);
    params.not_after = date(2026, 1, 1);
    params
}

/// The SPIFFE ID every healthy fixture leaf carries.
pub const LEAF_ID: &str = "spiffe://tradepulse/prod/strategy/optimizer";

pub fn tradepulse() -> TrustDomain {
    TrustDomain::parse("tradepulse").expect("valid trust domain")
}

/// The validation instant used by the tests: inside every healthy validity window.
pub fn at() -> OffsetDateTime {
    date(2025, 6, 1)
}

pub fn date(year: i32, month: u8, day: u8) -> OffsetDateTime {
    let month = Month::try_from(month).expect("month");
    let day = Date::from_calendar_date(year, month, day).expect("date");
    PrimitiveDateTime::new(day, Time::MIDNIGHT).assume_utc()
}

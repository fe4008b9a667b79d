//! [`PublicCa`]: the lab's stand-in for a public (WebPKI) certificate authority, which signs the
//! server certificate an ingress gateway presents to external clients.
//!
//! # Contract
//!
//! An ingress gateway terminates TLS for an external host name with a certificate browsers and
//! API clients trust (Istio: the Gateway's `credentialName` secret). That certificate must not
//! come from the mesh CA: the mesh root would then vouch for a host name, and an external
//! certificate could pass as a mesh identity. So the lab keeps two hierarchies apart:
//!
//! * [`PublicCa::generate`] makes a self-signed root (CA, `keyCertSign` + `cRLSign`,
//!   `pathLenConstraint` 0, CN `"<organization> Public Root CA"`), unrelated to any mesh root;
//! * [`PublicCa::issue_server_cert`] signs a leaf with the given DNS names as its only SANs (no
//!   URI SAN, so it is never an X509-SVID), `CA:FALSE`, `digitalSignature`, EKU `serverAuth`
//!   only (it cannot authenticate a client), for `ttl`.
//!
//! Validity windows, serials, key handling and printing follow the [module docs](super): keys
//! are [`PrivateKey`]s that print `redacted`, and nothing here logs.

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

use super::{
    CaMaterial, IssuedCert, PkiError, PrivateKey, cert, check_nested, distinguished_name,
    normalize, window,
};

/// A public root that signs external server certificates (see the module docs).
pub struct PublicCa {
    organization: String,
    root: CaMaterial,
}

impl std::fmt::Debug for PublicCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicCa")
            .field("organization", &self.organization)
            .field("root", &self.root.cert)
            .finish_non_exhaustive()
    }
}

/// A server certificate for external host names, with its key and the root it chains to.
#[derive(Clone, Debug)]
pub struct ServerCert {
    hosts: Vec<String>,
    cert: IssuedCert,
    root: IssuedCert,
    key: PrivateKey,
}

impl ServerCert {
    /// The DNS names it is valid for.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }
    pub fn cert(&self) -> &IssuedCert {
        &self.cert
    }
    /// The public root it chains to (what an external client trusts).
    pub fn root(&self) -> &IssuedCert {
        &self.root
    }
    /// The leaf's private key (secret: write it only to a `0600` file).
    pub fn key(&self) -> &PrivateKey {
        &self.key
    }
}

const ROOT: &str = "public root";

impl PublicCa {
    /// A fresh public root valid from `now − CLOCK_SKEW` for `validity`.
    pub fn generate(
        organization: &str,
        validity: Duration,
        now: OffsetDateTime,
    ) -> Result<PublicCa, PkiError> {
        if organization.trim().is_empty() || organization.chars().any(char::is_control) {
            return Err(PkiError::InvalidSpec {
                field: "organization",
                reason: "is empty or contains control characters".into(),
            });
        }
        let (not_before, not_after) = window(normalize(now), validity, ROOT)?;
        let key = PrivateKey::generate(ROOT)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(
            organization,
            Some(&format!("{organization} Public Root CA")),
        );
        params.serial_number = Some(cert::random_serial()?);
        params.not_before = not_before;
        params.not_after = not_after;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let signed = params
            .self_signed(key.key_pair())
            .map_err(|cause| PkiError::Certificate {
                what: ROOT.to_owned(),
                cause,
            })?;
        Ok(PublicCa {
            organization: organization.to_owned(),
            root: CaMaterial {
                cert: IssuedCert::from_rcgen(&signed, ROOT)?,
                params,
                key,
            },
        })
    }

    /// The root (what external clients trust).
    pub fn root(&self) -> &IssuedCert {
        &self.root.cert
    }

    /// A server certificate for `hosts` (DNS names, at least one) valid from
    /// `now − CLOCK_SKEW` for `ttl`, within the root's validity.
    pub fn issue_server_cert(
        &self,
        hosts: &[&str],
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<ServerCert, PkiError> {
        let what = format!("server certificate for {}", hosts.join(", "));
        if hosts.is_empty() {
            return Err(PkiError::InvalidLifetime {
                what,
                reason: "names no host".into(),
            });
        }
        let (not_before, not_after) = window(normalize(now), ttl, &what)?;
        check_nested(&self.root.cert, not_before, not_after, &what)?;
        let sans = hosts
            .iter()
            .map(|h| {
                rcgen::string::Ia5String::try_from(*h)
                    .map(SanType::DnsName)
                    .map_err(|cause| PkiError::Certificate {
                        what: what.clone(),
                        cause,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKey::generate(&what)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(&self.organization, Some(hosts[0]));
        params.serial_number = Some(cert::random_serial()?);
        params.not_before = not_before;
        params.not_after = not_after;
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let signed = params
            .signed_by(key.key_pair(), &self.root.issuer())
            .map_err(|cause| PkiError::Certificate {
                what: what.clone(),
                cause,
            })?;
        Ok(ServerCert {
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            cert: IssuedCert::from_rcgen(&signed, &what)?,
            root: self.root.cert.clone(),
            key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    #[test]
    fn server_certificates_name_only_their_hosts_and_serve_only_servers() {
        let ca = PublicCa::generate("Lab", Duration::from_secs(86_400), now()).unwrap();
        let cert = ca
            .issue_server_cert(&["api.example"], Duration::from_secs(3600), now())
            .unwrap();
        let (_, x509) = x509_parser::parse_x509_certificate(cert.cert().der()).unwrap();
        let sans: Vec<String> = x509
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|n| format!("{n:?}"))
            .collect();
        assert_eq!(sans, vec!["DNSName(\"api.example\")".to_owned()]);
        assert!(!x509.is_ca());
        let eku = x509.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && !eku.client_auth);
        x509.verify_signature(Some(
            x509_parser::parse_x509_certificate(ca.root().der())
                .unwrap()
                .1
                .public_key(),
        ))
        .unwrap();
        assert!(!format!("{cert:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn bad_requests_are_errors() {
        let ca = PublicCa::generate("Lab", Duration::from_secs(3600), now()).unwrap();
        assert!(
            ca.issue_server_cert(&[], Duration::from_secs(60), now())
                .is_err()
        );
        // May not outlive the root.
        assert!(
            ca.issue_server_cert(&["a.example"], Duration::from_secs(7200), now())
                .is_err()
        );
        assert!(PublicCa::generate(" ", Duration::from_secs(60), now()).is_err());
    }
}

//! A SPIFFE-aware rustls server certificate verifier.
//!
//! # Contract
//!
//! [`SpiffeServerVerifier`] accepts a server's certificate exactly when
//! [`crate::spiffe::validate_x509_svid_for`] accepts the presented chain (leaf first, as sent)
//! against the configured [`TrustBundle`] at the configured instant (the handshake's clock when
//! none is given), and — when an expected ID is configured — the leaf carries exactly that SPIFFE
//! ID. The DNS/IP name the client connected with is **ignored**: X.509-SVIDs carry only a URI
//! SAN, so hostname verification would refuse every correct mesh server; the SPIFFE ID takes its
//! place. Handshake signatures are checked with rustls's aws-lc-rs provider, so possession of the
//! leaf's key is proven as usual.
//!
//! Unlike webpki, the validator also checks the trust anchor's own validity window. OCSP
//! staples are not evaluated (the mesh has no revocation).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, OtherError, SignatureScheme};
use time::OffsetDateTime;

use crate::spiffe::{SpiffeId, TrustBundle, validate_x509_svid_for};

/// Verifies servers as X.509-SVIDs (see the module docs).
#[derive(Debug)]
pub struct SpiffeServerVerifier {
    bundle: TrustBundle,
    expected: Option<SpiffeId>,
    at: Option<OffsetDateTime>,
    provider: Arc<CryptoProvider>,
}

impl SpiffeServerVerifier {
    /// `expected: None` accepts any SVID of a trust domain in `bundle`; `at: None` validates at
    /// the handshake's time.
    pub fn new(
        bundle: TrustBundle,
        expected: Option<SpiffeId>,
        at: Option<OffsetDateTime>,
        provider: Arc<CryptoProvider>,
    ) -> Self {
        SpiffeServerVerifier {
            bundle,
            expected,
            at,
            provider,
        }
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let chain: Vec<Vec<u8>> = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.as_ref().to_vec())
            .collect();
        let at = match self.at {
            Some(at) => at,
            None => i64::try_from(now.as_secs())
                .ok()
                .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
                .ok_or(Error::InvalidCertificate(CertificateError::BadEncoding))?,
        };
        validate_x509_svid_for(&chain, &self.bundle, at, self.expected.as_ref())
            .map(|_| ServerCertVerified::assertion())
            .map_err(|e| {
                Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
            })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

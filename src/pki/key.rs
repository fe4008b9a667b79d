//! [`PrivateKey`]: a private key that does not print itself.

use std::fmt;
use std::sync::Arc;

use rcgen::{KeyPair, PublicKeyData};

use super::PkiError;

/// An ECDSA P-256 private key issued by the lab PKI.
///
/// `Debug` and `Display` both print `PrivateKey(redacted)`, so a key that ends up in a log
/// line, a panic message, a `dbg!` or a test failure reveals nothing. The PKCS#8 encoding is
/// reachable only through the explicitly named [`secret_pem`](Self::secret_pem) and
/// [`secret_pkcs8_der`](Self::secret_pkcs8_der); whatever the caller does with those strings is
/// the caller's responsibility.
///
/// Cloning is cheap (the key is shared, not copied). Key bytes are not zeroized on drop: this
/// is a lab CA (see the [module docs](super)).
#[derive(Clone)]
pub struct PrivateKey(Arc<KeyPair>);

impl PrivateKey {
    /// Generates a fresh ECDSA P-256 key from the OS CSPRNG.
    pub(super) fn generate(what: &str) -> Result<Self, PkiError> {
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map(|kp| Self(Arc::new(kp)))
            .map_err(|cause| PkiError::KeyGeneration {
                what: what.to_owned(),
                cause,
            })
    }

    /// The signing key, for rcgen.
    pub(super) fn key_pair(&self) -> &KeyPair {
        &self.0
    }

    /// The key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`). This is secret material:
    /// write it only to a `0600` file (see [`write_svid`](super::write_svid)), never to a log.
    pub fn secret_pem(&self) -> String {
        self.0.serialize_pem()
    }

    /// The key as PKCS#8 DER. Secret material, like [`secret_pem`](Self::secret_pem).
    pub fn secret_pkcs8_der(&self) -> Vec<u8> {
        self.0.serialize_der()
    }

    /// The matching public key as DER `SubjectPublicKeyInfo` (safe to share); compare it with
    /// a certificate's SPKI to prove the key belongs to that certificate.
    pub fn public_key_spki_der(&self) -> Vec<u8> {
        self.0.subject_public_key_info()
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(redacted)")
    }
}

impl fmt::Display for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(redacted)")
    }
}

//! SPIFFE IDs and X.509-SVID validation.
//!
//! * [`SpiffeId`] / [`TrustDomain`]: strict parsing per the SPIFFE-ID standard.
//! * [`TrustBundle`]: root certificates per trust domain; [`parse_pem_chain`] for PEM.
//! * [`validate_x509_svid`] / [`validate_x509_svid_for`]: X509-SVID validation producing
//!   a [`VerifiedSvid`] evidence record or an auditor-readable [`SvidError`].
//!
//! # Security contract (summary; each file's docs hold the full one)
//!
//! Guaranteed on `Ok`: the leaf has exactly one URI SAN holding a valid SPIFFE ID with a
//! path, is not a CA, may sign (digitalSignature) but not issue (no keyCertSign/cRLSign);
//! every signing certificate is a CA with keyCertSign; every signature in the presented
//! order verifies; the chain ends at a root from the bundle of the *leaf's own* trust
//! domain; every certificate, the root included, is within its validity window at the
//! instant given; no certificate carries an unevaluated critical extension.
//!
//! Not provided: revocation (CRL/OCSP), name-constraints evaluation (rejected if
//! critical), chain building/reordering, proof of key possession, authorization policy
//! beyond one expected ID, bundle fetching. No function here takes a private key.

mod bundle;
mod id;
mod svid;

#[cfg(test)]
mod test_pki;

pub use bundle::{TrustBundle, parse_pem_chain};
pub use id::{MAX_ID_LEN, MAX_TRUST_DOMAIN_LEN, SpiffeId, SpiffeIdError, TrustDomain};
pub use svid::{CertRole, SvidError, VerifiedSvid, validate_x509_svid, validate_x509_svid_for};

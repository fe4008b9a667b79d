//! Errors raised by the lab PKI.

use std::path::PathBuf;

use time::OffsetDateTime;

/// Everything that can go wrong while generating, issuing or writing lab PKI material.
///
/// Every message is one line and names the thing that failed (the certificate, the field,
/// the SPIFFE ID or the file path). Messages never contain key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// A [`CaSpec`](super::CaSpec) field is unusable.
    #[error("invalid CA spec: {field} {reason}")]
    InvalidSpec {
        /// The offending field, e.g. `trust_domain`.
        field: &'static str,
        /// Why it was rejected.
        reason: String,
    },

    /// A SPIFFE ID handed to the CA is not one it will issue for.
    #[error("invalid SPIFFE ID {id:?}: {reason}")]
    InvalidSpiffeId {
        /// The ID as given.
        id: String,
        /// Why it was rejected.
        reason: String,
    },

    /// A requested lifetime is zero, sub-second or out of range.
    #[error("invalid lifetime for the {what}: {reason}")]
    InvalidLifetime {
        /// Which certificate the lifetime was for.
        what: String,
        /// Why it was rejected.
        reason: String,
    },

    /// A well-formed certificate would outlive the certificate that signs it.
    #[error(
        "the {what} would outlive its issuer: notAfter {not_after} is after the issuer's notAfter {issuer_not_after}"
    )]
    OutlivesIssuer {
        /// The certificate that was being issued.
        what: String,
        /// Its would-be notAfter.
        not_after: OffsetDateTime,
        /// The issuer's notAfter.
        issuer_not_after: OffsetDateTime,
    },

    /// The crypto backend failed to generate a key pair.
    #[error("generating the {what} key pair failed: {cause}")]
    KeyGeneration {
        /// Whose key it was.
        what: String,
        /// The backend's error.
        cause: rcgen::Error,
    },

    /// rcgen refused to build or sign a certificate.
    #[error("building the {what} certificate failed: {cause}")]
    Certificate {
        /// Which certificate.
        what: String,
        /// rcgen's error.
        cause: rcgen::Error,
    },

    /// A DER certificate could not be parsed (for our own output this is a bug).
    #[error("parsing the {what} certificate failed: {cause}")]
    Parse {
        /// Which certificate.
        what: String,
        /// The parser's error, as text.
        cause: String,
    },

    /// The OS random source could not be read for a serial number.
    #[error("reading random serial-number bytes from /dev/urandom failed: {cause}")]
    Random {
        /// The I/O error.
        cause: std::io::Error,
    },

    /// A name used as a directory for SVID files is not a single plain path component.
    #[error("invalid SVID directory name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// A filesystem operation failed.
    #[error("{action} {}: {cause}", path.display())]
    Io {
        /// What was being done, e.g. `"creating directory"`.
        action: &'static str,
        /// The path it was being done to.
        path: PathBuf,
        /// The I/O error.
        cause: std::io::Error,
    },
}

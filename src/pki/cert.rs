//! [`IssuedCert`] and the fingerprint / serial-number helpers.

use std::fmt::Write as _;
use std::io::Read as _;

use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use super::PkiError;

/// Number of random bytes in every serial number this PKI issues (127 bits of CSPRNG output
/// after the sign bit is cleared; CA/B Forum baseline requires at least 64).
pub const SERIAL_BYTES: usize = 16;

/// One certificate issued by the lab PKI (root, intermediate or leaf), with the facts an
/// auditor asks about. The serial and validity are read back from the DER itself, so they are
/// exactly what a relying party will see.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedCert {
    der: Vec<u8>,
    pem: String,
    serial_hex: String,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

impl IssuedCert {
    /// Wraps an rcgen certificate, reading serial and validity back from its DER.
    pub(super) fn from_rcgen(cert: &rcgen::Certificate, what: &str) -> Result<Self, PkiError> {
        let der = cert.der().to_vec();
        let (serial_hex, not_before, not_after) = {
            let x509 = parse(&der, what)?;
            let validity = x509.validity();
            (
                hex(x509.raw_serial()),
                validity.not_before.to_datetime(),
                validity.not_after.to_datetime(),
            )
        };
        Ok(Self {
            pem: cert.pem(),
            der,
            serial_hex,
            not_before,
            not_after,
        })
    }

    /// The certificate, DER-encoded.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The certificate, PEM-encoded (one `CERTIFICATE` block, trailing newline).
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The serial number as lowercase hex of its DER content octets, without colons.
    pub fn serial_hex(&self) -> &str {
        &self.serial_hex
    }

    /// Start of the validity window (UTC, whole seconds).
    pub fn not_before(&self) -> OffsetDateTime {
        self.not_before
    }

    /// End of the validity window (UTC, whole seconds).
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// Whether `at` lies inside `[not_before, not_after]` (RFC 5280 windows are inclusive).
    pub fn is_valid_at(&self, at: OffsetDateTime) -> bool {
        self.not_before <= at && at <= self.not_after
    }

    /// SHA-256 fingerprint of the DER, see [`fingerprint_sha256`].
    pub fn fingerprint_sha256(&self) -> String {
        fingerprint_sha256(&self.der)
    }
}

impl std::fmt::Debug for IssuedCert {
    // The DER/PEM are public but long; a fingerprint identifies the certificate just as well.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert")
            .field("serial_hex", &self.serial_hex)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("sha256", &self.fingerprint_sha256())
            .finish()
    }
}

/// SHA-256 over `der`, as 64 lowercase hex digits without colons.
pub fn fingerprint_sha256(der: &[u8]) -> String {
    hex(&Sha256::digest(der))
}

/// The serial number of a DER certificate, in the same form as [`IssuedCert::serial_hex`]
/// (lowercase hex of the INTEGER's content octets, no colons).
pub fn serial_hex(der: &[u8]) -> Result<String, PkiError> {
    parse(der, "given").map(|x509| hex(x509.raw_serial()))
}

/// Parses a serial in the form [`serial_hex`] produces (colons and case are tolerated) back
/// into its content octets. Returns `None` for anything that is not an even run of hex digits.
pub fn parse_serial_hex(serial: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = serial.bytes().filter(|b| *b != b':').collect();
    if digits.is_empty() || digits.len() % 2 != 0 {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(s, 16).ok()
        })
        .collect()
}

/// A fresh positive serial number of [`SERIAL_BYTES`] bytes from the OS CSPRNG.
///
/// The first byte is forced into `0x01..=0x7f` so the DER INTEGER is positive and keeps its
/// full length (no leading-zero stripping or padding), which keeps `serial_hex` stable.
pub(super) fn random_serial() -> Result<rcgen::SerialNumber, PkiError> {
    let mut bytes = [0u8; SERIAL_BYTES];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|cause| PkiError::Random { cause })?;
    bytes[0] &= 0x7f;
    if bytes[0] == 0 {
        bytes[0] = 0x01;
    }
    Ok(rcgen::SerialNumber::from_slice(&bytes))
}

fn parse<'a>(
    der: &'a [u8],
    what: &str,
) -> Result<x509_parser::certificate::X509Certificate<'a>, PkiError> {
    match x509_parser::parse_x509_certificate(der) {
        Ok((&[], cert)) => Ok(cert),
        Ok((rest, _)) => Err(PkiError::Parse {
            what: what.to_owned(),
            cause: format!("{} trailing bytes after the certificate", rest.len()),
        }),
        Err(e) => Err(PkiError::Parse {
            what: what.to_owned(),
            cause: e.to_string(),
        }),
    }
}

pub(super) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

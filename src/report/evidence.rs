//! The evidence bundle `<run>/evidence/`: what an auditor keeps, and can check without trusting us.
//!
//! ```text
//! evidence/
//!   artifacts/…          byte-exact copies of every file of the run folder (not the bundle itself)
//!   run.json             run id, start, bundling time, target, tags, counts, exit code, profiles with
//!                        their SHA-256, git commit (when `git rev-parse HEAD` works), versions
//!   certificates.json    every certificate serial and SHA-256 fingerprint seen in check evidence
//!   controls.yaml        the control mapping, verbatim
//!   control-status.json  the mapping evaluated against this run (controls, checklist items)
//!   public-key.txt       Ed25519 public key, 64 hex digits
//!   public-key.pem       the same key as a PEM SubjectPublicKeyInfo, for OpenSSL
//!   README.txt           how to verify
//!   SHA256SUMS           `sha256sum -c` form of the list below
//!   manifest.json        every file above with its SHA-256 and size (all but itself and the signature)
//!   manifest.sig         Ed25519 signature over the exact bytes of manifest.json (64 raw bytes)
//! ```
//!
//! The signing key is either a file ([`SigningKey::from_file`]: PKCS#8 v1 or v2, DER or PEM
//! `BEGIN PRIVATE KEY`, as `openssl genpkey -algorithm ed25519` writes it) or a fresh key made for
//! the run ([`SigningKey::generate`]), whose public half is recorded in the bundle and returned to
//! the caller; its private half lives only in memory and is never written anywhere.
//!
//! Before anything is written, every artifact and every generated file is scanned for secrets
//! ([`scan_for_secrets`](super::secrets::scan_for_secrets)); one finding refuses the whole bundle,
//! with an error that names the file and line, never the secret.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::controls::{EMBEDDED, Evaluation};
use super::secrets::{Finding, scan_bytes};
use super::text::{base64, from_base64, from_hex, hex};
use super::view::View;
use crate::results::RunResults;

pub const BUNDLE_DIR: &str = "evidence";
pub const MANIFEST: &str = "manifest.json";
pub const SIGNATURE: &str = "manifest.sig";
pub const FORMAT: &str = "meshproof-evidence/1";

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410); the 32 key bytes follow.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("refusing to write the evidence bundle: {}", list(.0))]
    Secrets(Vec<Finding>),
    #[error("signing key {0}")]
    Key(String),
    #[error("public key: {0}")]
    PublicKey(String),
    #[error("{0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("cannot serialize the bundle: {0}")]
    Json(#[from] serde_json::Error),
}

/// Findings grouped per file, at most 10 files: `a.log (line 1: a PEM private key); b.json (…)`.
pub(crate) fn list(findings: &[Finding]) -> String {
    let mut by_file: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in findings {
        let entry = by_file.entry(f.file.display().to_string()).or_default();
        let what = format!("line {}: {}", f.line, f.kind);
        if !entry.contains(&what) {
            entry.push(what);
        }
    }
    let total = by_file.len();
    let mut shown: Vec<String> = by_file
        .into_iter()
        .take(10)
        .map(|(file, what)| {
            let more = what.len().saturating_sub(3);
            let mut w: Vec<String> = what.into_iter().take(3).collect();
            if more > 0 {
                w.push(format!("{more} more"));
            }
            format!("{file} ({})", w.join(", "))
        })
        .collect();
    if total > 10 {
        shown.push(format!("and {} more files", total - 10));
    }
    shown.join("; ")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EvidenceError + '_ {
    move |source| EvidenceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(pub [u8; 32]);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.hex())
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.hex())
    }
}

impl PublicKey {
    pub fn hex(&self) -> String {
        hex(&self.0)
    }

    /// PEM `PUBLIC KEY` (SubjectPublicKeyInfo), as OpenSSL reads it.
    pub fn pem(&self) -> String {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.0);
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            base64(&der)
        )
    }

    /// Accepts 64 hex digits (optionally `ed25519:`-prefixed), base64 of the 32 bytes, or a PEM /
    /// base64 SubjectPublicKeyInfo; the first non-empty, non-comment line counts for the text forms.
    pub fn parse(text: &str) -> Result<PublicKey, EvidenceError> {
        let bad = |m: &str| EvidenceError::PublicKey(m.to_owned());
        let trimmed = text.trim();
        let body: String = if trimmed.contains("-----BEGIN PUBLIC KEY-----") {
            trimmed
                .lines()
                .filter(|l| !l.starts_with("-----"))
                .collect::<Vec<_>>()
                .join("")
        } else {
            trimmed
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with('#'))
                .unwrap_or_default()
                .trim_start_matches("ed25519:")
                .to_owned()
        };
        let bytes = if body.len() == 64 {
            from_hex(&body).ok_or_else(|| bad("expected 64 hex digits"))?
        } else {
            from_base64(&body).ok_or_else(|| bad("expected hex, base64 or PEM"))?
        };
        let raw: &[u8] = if bytes.len() == 44 && bytes.starts_with(&SPKI_PREFIX) {
            &bytes[12..]
        } else {
            &bytes
        };
        let key: [u8; 32] = raw
            .try_into()
            .map_err(|_| bad("an Ed25519 public key is 32 bytes"))?;
        Ok(PublicKey(key))
    }

    /// Reads a key written by the bundle (`public-key.txt` / `public-key.pem`) or in any form
    /// [`PublicKey::parse`] accepts.
    pub fn from_file(path: &Path) -> Result<PublicKey, EvidenceError> {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        Self::parse(&text).map_err(|e| EvidenceError::PublicKey(format!("{}: {e}", path.display())))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyOrigin {
    /// Made for this run; the private half was never written.
    Ephemeral,
    /// Loaded from a key file.
    File,
}

/// The key that signs bundles. `Debug` shows the public half only; there is no way to export the
/// private half.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    origin: KeyOrigin,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("public_key", &self.public_key().hex())
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh key for one run (system randomness).
    pub fn generate() -> Result<SigningKey, EvidenceError> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| EvidenceError::Key("could not be generated".into()))?;
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .map_err(|e| EvidenceError::Key(format!("could not be generated: {e}")))?;
        Ok(SigningKey {
            pair,
            origin: KeyOrigin::Ephemeral,
        })
    }

    /// Loads an Ed25519 private key: PKCS#8 (v1 or v2) as DER, or as PEM with the
    /// `PRIVATE KEY` label (`openssl genpkey -algorithm ed25519 -out key.pem`).
    pub fn from_file(path: &Path) -> Result<SigningKey, EvidenceError> {
        let bytes = std::fs::read(path).map_err(io(path))?;
        Self::from_pkcs8_der_or_pem(&bytes)
            .map_err(|e| EvidenceError::Key(format!("{}: {e}", path.display())))
    }

    fn from_pkcs8_der_or_pem(bytes: &[u8]) -> Result<SigningKey, String> {
        let der = if bytes.starts_with(b"-----") || bytes.trim_ascii_start().starts_with(b"-----") {
            let text =
                std::str::from_utf8(bytes).map_err(|_| "is not valid PEM text".to_owned())?;
            let begin = "-----BEGIN PRIVATE KEY-----";
            let end = "-----END PRIVATE KEY-----";
            let (Some(from), Some(to)) = (text.find(begin), text.find(end)) else {
                return Err(
                    "is PEM but not PKCS#8: expected a `BEGIN PRIVATE KEY` block (openssl genpkey -algorithm ed25519)"
                        .to_owned(),
                );
            };
            let body = text
                .get(from + begin.len()..to)
                .ok_or_else(|| "is malformed PEM".to_owned())?;
            from_base64(body).ok_or_else(|| "has a PEM body that is not base64".to_owned())?
        } else {
            bytes.to_vec()
        };
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
            .map_err(|e| format!("is not an Ed25519 PKCS#8 key ({e})"))?;
        Ok(SigningKey {
            pair,
            origin: KeyOrigin::File,
        })
    }

    pub fn public_key(&self) -> PublicKey {
        let mut key = [0u8; 32];
        let bytes = self.pair.public_key().as_ref();
        if bytes.len() == 32 {
            key.copy_from_slice(bytes);
        }
        PublicKey(key)
    }

    pub fn origin(&self) -> KeyOrigin {
        self.origin
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileEntry {
    pub path: String,
    pub sha256: String,
    pub size: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SignatureInfo {
    pub algorithm: String,
    pub public_key: String,
    pub key_origin: KeyOrigin,
    pub signature_file: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub run_id: String,
    pub created: String,
    pub signature: SignatureInfo,
    pub files: Vec<FileEntry>,
}

/// What [`write_bundle`] wrote.
#[derive(Clone, Debug)]
pub struct Bundle {
    pub dir: PathBuf,
    pub files: Vec<FileEntry>,
    pub public_key: PublicKey,
    pub key_origin: KeyOrigin,
    /// SHA-256 of manifest.json: one value that pins the whole bundle.
    pub manifest_sha256: String,
}

#[derive(Serialize)]
struct GitInfo {
    commit: String,
    dirty: bool,
}

fn git_info() -> Option<GitInfo> {
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let commit = run(&["rev-parse", "HEAD"]).filter(|c| c.len() >= 40)?;
    let dirty =
        run(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(GitInfo { commit, dirty })
}

fn now_rfc3339() -> String {
    crate::checks::rfc3339(time::OffsetDateTime::now_utc())
}

/// Relative paths (with `/`) of the regular files under `dir`, sorted; `skip` names a top-level
/// entry to leave out. Symlinks are not followed (nor copied).
fn regular_files(dir: &Path, skip: Option<&str>) -> Result<Vec<(String, PathBuf)>, EvidenceError> {
    fn walk(
        root: &Path,
        dir: &Path,
        skip: Option<&str>,
        out: &mut Vec<(String, PathBuf)>,
        other: &mut Vec<String>,
    ) -> Result<(), EvidenceError> {
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            if dir == root && skip.is_some_and(|s| rel == s) {
                continue;
            }
            let kind = entry.file_type().map_err(io(&path))?;
            if kind.is_dir() {
                walk(root, &path, skip, out, other)?;
            } else if kind.is_file() {
                out.push((rel, path));
            } else {
                other.push(rel);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    let mut other = Vec::new();
    walk(dir, dir, skip, &mut out, &mut other)?;
    out.sort();
    Ok(out)
}

/// Everything that is not a regular file (symlinks, sockets), relative, for `verify`.
fn irregular_files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                walk(root, &path, out);
            } else if !kind.is_file() {
                out.push(
                    path.strip_prefix(root)
                        .unwrap_or(&path)
                        .to_string_lossy()
                        .replace('\\', "/"),
                );
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

#[derive(Serialize)]
struct CertRecord<'a> {
    role: &'a str,
    spiffe_id: Option<&'a str>,
    serial: Option<&'a str>,
    sha256: Option<&'a str>,
    not_before: Option<&'a str>,
    not_after: Option<&'a str>,
    profile: Option<&'a str>,
    check: &'a str,
    subject: &'a str,
    scenario: &'a str,
}

/// Writes `<run_dir>/evidence/` (replacing an earlier bundle) and signs it.
pub fn write_bundle(
    run_dir: &Path,
    view: &View<'_>,
    eval: &Evaluation,
    key: &SigningKey,
) -> Result<Bundle, EvidenceError> {
    let results: &RunResults = view.results;
    if !run_dir.is_dir() {
        return Err(EvidenceError::NotADirectory(run_dir.to_path_buf()));
    }
    // 1. The run's artifacts, read once and scanned before anything is written.
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut findings = Vec::new();
    for (rel, path) in regular_files(run_dir, Some(BUNDLE_DIR))? {
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        findings.extend(scan_bytes(Path::new(&rel), &bytes));
        files.push((format!("artifacts/{rel}"), bytes));
    }

    // 2. Generated metadata.
    let public_key = key.public_key();
    let created = now_rfc3339();
    let run = serde_json::json!({
        "run_id": results.run_id,
        "started": results.started,
        "bundled": created,
        "duration_seconds": results.duration.as_secs_f64(),
        "target": results.target,
        "tags": results.tags,
        "meshproof_version": results.meshproof_version,
        "versions": view.versions,
        "profiles": results.profiles,
        "git": git_info(),
        "counts": results.counts(),
        "exit_code": results.exit_code(),
        "checks": view.all_checks().count(),
        "harness_errors": results.harness_errors,
        "signing_key": { "algorithm": "Ed25519", "public_key": public_key.hex(), "origin": key.origin() },
    });
    files.push(("run.json".into(), pretty(&run)?));
    let mut seen = BTreeSet::new();
    let certs: Vec<CertRecord<'_>> = view
        .certs
        .iter()
        .filter(|c| seen.insert((c.role.clone(), c.serial.clone(), c.sha256.clone())))
        .map(|c| CertRecord {
            role: &c.role,
            spiffe_id: c.spiffe_id.as_deref(),
            serial: c.serial.as_deref(),
            sha256: c.sha256.as_deref(),
            not_before: c.not_before.as_deref(),
            not_after: c.not_after.as_deref(),
            profile: c.profile.as_deref(),
            check: &c.check,
            subject: &c.subject,
            scenario: view
                .scenario(c.at.scenario)
                .map(|s| s.name.as_str())
                .unwrap_or_default(),
        })
        .collect();
    files.push(("certificates.json".into(), pretty(&certs)?));
    files.push(("controls.yaml".into(), EMBEDDED.as_bytes().to_vec()));
    files.push(("control-status.json".into(), pretty(eval)?));
    files.push((
        "public-key.txt".into(),
        format!("{}\n", public_key.hex()).into_bytes(),
    ));
    files.push(("public-key.pem".into(), public_key.pem().into_bytes()));
    files.push((
        "README.txt".into(),
        readme(results, &public_key, key.origin()).into_bytes(),
    ));
    for (name, bytes) in files.iter().filter(|(n, _)| !n.starts_with("artifacts/")) {
        findings.extend(scan_bytes(Path::new(name), bytes));
    }
    if !findings.is_empty() {
        findings.sort();
        findings.dedup();
        return Err(EvidenceError::Secrets(findings));
    }

    // 3. Hashes, SHA256SUMS, manifest, signature.
    let mut entries: Vec<FileEntry> = files
        .iter()
        .map(|(path, bytes)| FileEntry {
            path: path.clone(),
            sha256: sha256_hex(bytes),
            size: bytes.len() as u64,
        })
        .collect();
    let sums: String = entries
        .iter()
        .map(|e| format!("{}  {}\n", e.sha256, e.path))
        .collect();
    entries.push(FileEntry {
        path: "SHA256SUMS".into(),
        sha256: sha256_hex(sums.as_bytes()),
        size: sums.len() as u64,
    });
    files.push(("SHA256SUMS".into(), sums.into_bytes()));
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    let manifest = Manifest {
        format: FORMAT.into(),
        run_id: results.run_id.clone(),
        created,
        signature: SignatureInfo {
            algorithm: "Ed25519".into(),
            public_key: public_key.hex(),
            key_origin: key.origin(),
            signature_file: SIGNATURE.into(),
        },
        files: entries.clone(),
    };
    let manifest_bytes = pretty(&manifest)?;
    let signature = key.sign(&manifest_bytes);
    files.push((MANIFEST.into(), manifest_bytes.clone()));
    files.push((SIGNATURE.into(), signature));

    // 4. Write into a fresh directory, then swap it in place of any earlier bundle.
    let final_dir = run_dir.join(BUNDLE_DIR);
    let staging = run_dir.join(format!(".{BUNDLE_DIR}.tmp-{}", std::process::id()));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
    }
    for (rel, bytes) in &files {
        let path = staging.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&path, bytes).map_err(io(&path))?;
    }
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir).map_err(io(&final_dir))?;
    }
    std::fs::rename(&staging, &final_dir).map_err(io(&final_dir))?;
    Ok(Bundle {
        dir: final_dir,
        files: entries,
        public_key,
        key_origin: key.origin(),
        manifest_sha256: sha256_hex(&manifest_bytes),
    })
}

fn pretty<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, EvidenceError> {
    let mut bytes = serde_json::to_vec_pretty(value)?;
    bytes.push(b'\n');
    Ok(bytes)
}

fn readme(results: &RunResults, key: &PublicKey, origin: KeyOrigin) -> String {
    let origin = match origin {
        KeyOrigin::Ephemeral => "made for this run and never written anywhere",
        KeyOrigin::File => "loaded from its owner's key file",
    };
    [
        format!("meshproof evidence bundle for run {}", results.run_id),
        String::new(),
        "manifest.json lists every file of this folder (except itself and manifest.sig) with its".into(),
        "SHA-256 and size; manifest.sig is an Ed25519 signature over the exact bytes of manifest.json.".into(),
        format!("Signing key (public half; the private half was {origin}):"),
        format!("    {key}"),
        String::new(),
        "Verify with meshproof (reports every changed, missing and added file and a bad signature):".into(),
        String::new(),
        format!("    meshproof evidence verify . --public-key {key}"),
        String::new(),
        "or without meshproof (OpenSSL 3, coreutils):".into(),
        String::new(),
        "    openssl pkeyutl -verify -pubin -inkey public-key.pem -rawin -in manifest.json -sigfile manifest.sig".into(),
        "    sha256sum -c SHA256SUMS".into(),
        String::new(),
        "Pin the key: compare it with the one printed by the run or published by the team that ran it;".into(),
        "a bundle that only agrees with its own key proves integrity, not origin.".into(),
        String::new(),
        "artifacts/           copies of the run's reports (JUnit, JSON, Cucumber JSON, Markdown, HTML)".into(),
        "run.json             run metadata: target, profiles with SHA-256, git commit, versions, counts".into(),
        "certificates.json    certificate serials and SHA-256 fingerprints seen during the run".into(),
        "controls.yaml        the control mapping (NIST SP 800-207, NIST SP 800-53 Rev. 5, SOC 2)".into(),
        "control-status.json  per control and runbook checklist item: passed, failed or not covered".into(),
        String::new(),
    ]
    .join("\n")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignatureCheck {
    Valid,
    Invalid,
    /// manifest.json or manifest.sig is missing, or the manifest names no readable key.
    Missing,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeySource {
    /// The caller pinned the key: a valid signature proves origin as well as integrity.
    Expected,
    /// Only the bundle's own key was available: a valid signature proves integrity only.
    Embedded,
}

/// The outcome of [`verify`]. Clean only when the signature is valid and no file changed, went
/// missing or appeared.
#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    pub dir: PathBuf,
    pub run_id: Option<String>,
    pub public_key: Option<String>,
    pub key_source: KeySource,
    pub signature: SignatureCheck,
    /// The caller's key differs from the one the bundle names.
    pub key_mismatch: bool,
    pub files_checked: usize,
    pub changed: Vec<String>,
    pub missing: Vec<String>,
    pub added: Vec<String>,
    /// Anything else wrong (unreadable manifest, unsafe paths).
    pub problems: Vec<String>,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.signature == SignatureCheck::Valid
            && !self.key_mismatch
            && self.changed.is_empty()
            && self.missing.is_empty()
            && self.added.is_empty()
            && self.problems.is_empty()
    }
}

impl std::fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "evidence {} (run {})",
            self.dir.display(),
            self.run_id.as_deref().unwrap_or("?")
        )?;
        let sig = match self.signature {
            SignatureCheck::Valid => "valid",
            SignatureCheck::Invalid => "INVALID",
            SignatureCheck::Missing => "MISSING",
        };
        writeln!(
            f,
            "  signature: {sig} (Ed25519, key {}{})",
            self.public_key.as_deref().unwrap_or("?"),
            match self.key_source {
                KeySource::Expected => ", pinned by the caller",
                KeySource::Embedded =>
                    ", the bundle's own key: integrity only, pin it with --public-key",
            }
        )?;
        if self.key_mismatch {
            writeln!(
                f,
                "  KEY MISMATCH: the bundle names a different key than the one given"
            )?;
        }
        for (label, files) in [
            ("CHANGED", &self.changed),
            ("MISSING", &self.missing),
            ("ADDED", &self.added),
        ] {
            for file in files {
                writeln!(f, "  {label:<8} {file}")?;
            }
        }
        for p in &self.problems {
            writeln!(f, "  PROBLEM  {p}")?;
        }
        write!(
            f,
            "  {}: {} files checked, {} changed, {} missing, {} added",
            if self.is_clean() { "OK" } else { "NOT OK" },
            self.files_checked,
            self.changed.len(),
            self.missing.len(),
            self.added.len()
        )
    }
}

/// A manifest path: `/`-separated plain names only (no `.`, `..`, empty parts, absolute paths or
/// backslashes), exactly as the writer produces them.
fn safe_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.contains('\\')
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

/// Verifies a bundle directory: the signature over manifest.json (with `expected_public_key` when
/// given, else the key the manifest names), then every listed file's size and SHA-256, then that no
/// file was added. `Err` only when `dir` cannot be inspected at all.
pub fn verify(
    dir: &Path,
    expected_public_key: Option<&PublicKey>,
) -> Result<VerifyReport, EvidenceError> {
    if !dir.is_dir() {
        return Err(EvidenceError::NotADirectory(dir.to_path_buf()));
    }
    let mut report = VerifyReport {
        dir: dir.to_path_buf(),
        run_id: None,
        public_key: expected_public_key.map(PublicKey::hex),
        key_source: if expected_public_key.is_some() {
            KeySource::Expected
        } else {
            KeySource::Embedded
        },
        signature: SignatureCheck::Missing,
        key_mismatch: false,
        files_checked: 0,
        changed: Vec::new(),
        missing: Vec::new(),
        added: Vec::new(),
        problems: Vec::new(),
    };
    let manifest_bytes = match std::fs::read(dir.join(MANIFEST)) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            report.missing.push(MANIFEST.into());
            None
        }
        Err(e) => return Err(io(&dir.join(MANIFEST))(e)),
    };
    let signature = match std::fs::read(dir.join(SIGNATURE)) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            report.missing.push(SIGNATURE.into());
            None
        }
        Err(e) => return Err(io(&dir.join(SIGNATURE))(e)),
    };
    let manifest: Option<Manifest> =
        manifest_bytes
            .as_deref()
            .and_then(|b| match serde_json::from_slice::<Manifest>(b) {
                Ok(m) if m.format == FORMAT => Some(m),
                Ok(m) => {
                    report
                        .problems
                        .push(format!("{MANIFEST}: unknown format {:?}", m.format));
                    None
                }
                Err(e) => {
                    report
                        .problems
                        .push(format!("{MANIFEST} is unreadable: {e}"));
                    None
                }
            });
    let embedded = manifest
        .as_ref()
        .and_then(|m| PublicKey::parse(&m.signature.public_key).ok());
    if let Some(m) = &manifest {
        report.run_id = Some(m.run_id.clone());
        if embedded.is_none() {
            report
                .problems
                .push(format!("{MANIFEST} names no valid Ed25519 public key"));
        }
    }
    if let (Some(expected), Some(embedded)) = (expected_public_key, embedded) {
        report.key_mismatch = *expected != embedded;
    }
    let key = expected_public_key.copied().or(embedded);
    if report.public_key.is_none() {
        report.public_key = key.map(|k| k.hex());
    }
    if let (Some(bytes), Some(sig), Some(key)) = (&manifest_bytes, &signature, key) {
        report.signature = if UnparsedPublicKey::new(&ED25519, key.0)
            .verify(bytes, sig)
            .is_ok()
        {
            SignatureCheck::Valid
        } else {
            SignatureCheck::Invalid
        };
    } else if manifest_bytes.is_some() && signature.is_some() {
        report.signature = SignatureCheck::Invalid;
    }

    let listed: BTreeMap<&str, &FileEntry> = manifest
        .as_ref()
        .map(|m| m.files.iter().map(|f| (f.path.as_str(), f)).collect())
        .unwrap_or_default();
    for (path, entry) in &listed {
        if !safe_relative(path) || *path == MANIFEST || *path == SIGNATURE {
            report
                .problems
                .push(format!("{MANIFEST} lists an unsafe path {path:?}"));
            continue;
        }
        report.files_checked += 1;
        let full = dir.join(path);
        match std::fs::symlink_metadata(&full) {
            Ok(meta) if meta.is_file() => {
                let bytes = std::fs::read(&full).map_err(io(&full))?;
                if bytes.len() as u64 != entry.size || sha256_hex(&bytes) != entry.sha256 {
                    report.changed.push((*path).to_owned());
                }
            }
            Ok(_) => report.changed.push((*path).to_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                report.missing.push((*path).to_owned());
            }
            Err(e) => return Err(io(&full)(e)),
        }
    }
    for (rel, _) in regular_files(dir, None)? {
        if rel != MANIFEST && rel != SIGNATURE && !listed.contains_key(rel.as_str()) {
            report.added.push(rel);
        }
    }
    for rel in irregular_files(dir) {
        if !listed.contains_key(rel.as_str()) {
            report.added.push(rel);
        }
    }
    report.missing.sort();
    report.changed.sort();
    report.added.sort();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_keys_round_trip_through_every_form() {
        let key = SigningKey::generate().unwrap();
        let public = key.public_key();
        assert_eq!(PublicKey::parse(&public.hex()).unwrap(), public);
        assert_eq!(PublicKey::parse(&public.pem()).unwrap(), public);
        assert_eq!(PublicKey::parse(&base64(&public.0)).unwrap(), public);
        assert_eq!(
            PublicKey::parse(&format!("# comment\ned25519:{}\n", public.hex())).unwrap(),
            public
        );
        assert!(PublicKey::parse("abcd").is_err());
        assert!(!format!("{key:?}").is_empty());
    }

    #[test]
    fn signing_keys_load_from_pkcs8_der_and_pem() {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let der = doc.as_ref();
        let from_der = SigningKey::from_pkcs8_der_or_pem(der).unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64(der)
        );
        let from_pem = SigningKey::from_pkcs8_der_or_pem(pem.as_bytes()).unwrap();
        assert_eq!(from_der.public_key(), from_pem.public_key());
        assert_eq!(from_pem.origin(), KeyOrigin::File);
        let rsa = "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        let e = SigningKey::from_pkcs8_der_or_pem(rsa.as_bytes())
            .err()
            .unwrap();
        assert!(e.contains("PKCS#8"), "{e}");
        assert!(SigningKey::from_pkcs8_der_or_pem(b"garbage").is_err());
        // OpenSSL's v1 PKCS#8 (no public key inside) is accepted too: RFC 8410 test vector.
        let v1 = from_base64("MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC")
            .unwrap();
        let k = SigningKey::from_pkcs8_der_or_pem(&v1).unwrap();
        assert_eq!(
            k.public_key().hex(),
            "19bf44096984cdfe8541bac167dc3b96c85086aa30b6b6cb0c5c38ad703166e1"
        );
    }

    #[test]
    fn unsafe_manifest_paths_are_refused() {
        assert!(safe_relative("artifacts/junit.xml"));
        assert!(!safe_relative("../x"));
        assert!(!safe_relative("/etc/passwd"));
        assert!(!safe_relative("a/./b"));
        assert!(!safe_relative(""));
    }
}

//! Secret scanning for report folders: nothing that can authenticate as a workload, a node or a
//! person may land in a report or an evidence bundle. A [`Finding`] names the file, the line and
//! the kind of secret, never the secret itself.
//!
//! Looked for, line by line (binary files are read as lossy UTF-8):
//! - PEM private keys: `-----BEGIN … PRIVATE KEY-----` (PKCS#8, RSA, EC, encrypted, OpenSSH);
//! - SPIRE join tokens: a value after `join_token` / `joinToken` / `join-token` (as in
//!   `spire-agent run -joinToken …`), or a UUID within 40 characters after the word `join`;
//! - JWTs: `eyJ…` three dot-separated base64url parts; a JWT whose payload names a Kubernetes
//!   service account (`kubernetes.io/serviceaccount`, `kubernetes/serviceaccount`) is reported
//!   as a Kubernetes service-account token, also when base64-encoded as in a Secret's `data.token`;
//! - bearer tokens: `Bearer ` followed by 16 or more token characters.

use std::path::{Path, PathBuf};

use super::text::from_base64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecretKind {
    PemPrivateKey,
    SpireJoinToken,
    Jwt,
    KubernetesServiceAccountToken,
    BearerToken,
}

impl std::fmt::Display for SecretKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SecretKind::PemPrivateKey => "a PEM private key",
            SecretKind::SpireJoinToken => "a SPIRE join token",
            SecretKind::Jwt => "a JWT",
            SecretKind::KubernetesServiceAccountToken => "a Kubernetes service-account token",
            SecretKind::BearerToken => "a bearer token",
        })
    }
}

/// A secret found in a file: where and what kind. Deliberately carries no part of the secret.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Finding {
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
    pub kind: SecretKind,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: contains {}",
            self.file.display(),
            self.line,
            self.kind
        )
    }
}

/// Scans every regular file under `dir` (recursively, symlinks not followed). Unreadable files are
/// reported by the caller's own I/O; here they are skipped.
pub fn scan_for_secrets(dir: &Path) -> Vec<Finding> {
    let mut files = Vec::new();
    collect_files(dir, &mut files);
    let mut findings = Vec::new();
    for file in files {
        if let Ok(bytes) = std::fs::read(&file) {
            findings.extend(scan_bytes(&file, &bytes));
        }
    }
    findings.sort();
    findings
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            collect_files(&entry.path(), out);
        } else if kind.is_file() {
            out.push(entry.path());
        }
    }
}

/// Substrings at least one of which every secret the scanner knows contains; only lines holding
/// one are looked at closely (the search for them is std's fast substring search).
const TRIGGERS: [&str; 8] = [
    "PRIVATE KEY",
    "eyJ",
    "ZXlK",
    "earer ",
    "EARER ",
    "oin",
    "OIN",
    "Oin",
];

/// Scans one file's contents; `file` is only used to label findings.
pub fn scan_bytes(file: &Path, bytes: &[u8]) -> Vec<Finding> {
    let text = String::from_utf8_lossy(bytes);
    let mut starts = std::collections::BTreeSet::new();
    for trigger in TRIGGERS {
        for (pos, _) in text.match_indices(trigger) {
            starts.insert(text[..pos].rfind('\n').map_or(0, |i| i + 1));
        }
    }
    let mut out = Vec::new();
    let mut line_no = 1;
    let mut counted_to = 0;
    for start in starts {
        line_no += text[counted_to..start].matches('\n').count();
        counted_to = start;
        let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        let line = text[start..end].trim_end_matches('\r');
        for kind in scan_line(line) {
            let finding = Finding {
                file: file.to_path_buf(),
                line: line_no,
                kind,
            };
            if !out.contains(&finding) {
                out.push(finding);
            }
        }
    }
    out
}

/// Scans an in-memory text (a report about to be written).
pub fn scan_text(label: &Path, text: &str) -> Vec<Finding> {
    scan_bytes(label, text.as_bytes())
}

fn kinds_in(text: &str) -> Vec<SecretKind> {
    let mut kinds: Vec<SecretKind> = text.lines().flat_map(scan_line).collect();
    kinds.sort();
    kinds.dedup();
    kinds
}

/// Where in a run's results secrets sit, one description per field (scenario, check, evidence
/// key), never the secret: so a refusal can say which check leaked.
pub fn locate_in_results(results: &crate::results::RunResults) -> Vec<String> {
    let mut out = Vec::new();
    let mut note = |kinds: Vec<SecretKind>, place: String| {
        for kind in kinds {
            out.push(format!("{place}: {kind}"));
        }
    };
    for (i, e) in results.harness_errors.iter().enumerate() {
        note(kinds_in(e), format!("harness error {}", i + 1));
    }
    for s in &results.scenarios {
        let at = format!("scenario \"{}\" ({}:{})", s.name, s.file, s.line);
        note(kinds_in(&s.name), at.clone());
        for step in &s.steps {
            let text = format!(
                "{}\n{}",
                step.text,
                step.error.as_deref().unwrap_or_default()
            );
            note(
                kinds_in(&text),
                format!("{at}, step \"{}\"", step.keyword.trim()),
            );
        }
        for c in &s.checks {
            let place = format!("{at}, check {} {}", c.check, c.subject);
            note(
                kinds_in(&format!("{}\n{}", c.subject, c.summary)),
                place.clone(),
            );
            for (k, v) in &c.evidence {
                note(
                    kinds_in(&format!("{k}\n{v}")),
                    format!("{place}, evidence {k}"),
                );
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fn is_b64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
}

fn scan_line(line: &str) -> Vec<SecretKind> {
    let mut kinds = Vec::new();
    let b = line.as_bytes();
    if line.contains("PRIVATE KEY-----") || (line.contains("BEGIN") && line.contains("PRIVATE KEY"))
    {
        kinds.push(SecretKind::PemPrivateKey);
    }
    for (start, _) in line.match_indices("eyJ") {
        if start > 0 && is_b64url(b[start - 1]) {
            continue;
        }
        if let Some(kind) = jwt_at(b, start) {
            kinds.push(kind);
        }
    }
    // A JWT base64-encoded once more (Kubernetes Secret `data.token`): "eyJ" → "ZXlK".
    for (start, _) in line.match_indices("ZXlK") {
        if start > 0 && is_b64(b[start - 1]) {
            continue;
        }
        let end = start + b[start..].iter().take_while(|c| is_b64(**c)).count();
        if end - start < 40 {
            continue;
        }
        let Some(decoded) = line.get(start..end).and_then(from_base64) else {
            continue;
        };
        let decoded = String::from_utf8_lossy(&decoded);
        if let Some(kind) = jwt_at(decoded.as_bytes(), 0) {
            kinds.push(kind);
        }
    }
    // The case-insensitive searches below need a lowercase copy; most lines need neither.
    let maybe_bearer = line.contains("earer ") || line.contains("EARER ");
    let maybe_join = line.contains("oin") || line.contains("OIN");
    if !maybe_bearer && !maybe_join {
        kinds.sort();
        kinds.dedup();
        return kinds;
    }
    let lower = line.to_ascii_lowercase();
    let lb = lower.as_bytes();
    for (start, word) in lower.match_indices("bearer ") {
        let from = start + word.len();
        let len = lb[from..].iter().take_while(|c| is_token_char(**c)).count();
        if len >= 16 {
            kinds.push(SecretKind::BearerToken);
        }
    }
    for key in ["join_token", "jointoken", "join-token"] {
        for (start, _) in lower.match_indices(key) {
            let mut i = start + key.len();
            while i < lb.len() && matches!(lb[i], b'"' | b'\'' | b':' | b'=' | b' ' | b'\t' | b'/')
            {
                i += 1;
            }
            let len = lb[i..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == b'-' || **c == b'_')
                .count();
            // The SPIRE lab replaces the token inside agent IDs with `redacted-agent-<i>-token-<n>`:
            // that marker is the absence of a secret.
            let redacted = lower[i..].starts_with("redacted");
            // `"join_token": null` or `join_token: false` are not tokens; real ones are long.
            if len >= 8 && !redacted {
                kinds.push(SecretKind::SpireJoinToken);
            }
        }
    }
    for (start, _) in lower.match_indices("join") {
        let window_end = (start + 4 + 40).min(lb.len());
        if (start + 4..window_end).any(|i| uuid_at(lb, i)) {
            kinds.push(SecretKind::SpireJoinToken);
        }
    }
    kinds.sort();
    kinds.dedup();
    kinds
}

/// `header.payload.signature` starting at `start` (which holds `eyJ`).
fn jwt_at(b: &[u8], start: usize) -> Option<SecretKind> {
    let run = |from: usize| {
        b.get(from..)
            .map_or(0, |s| s.iter().take_while(|c| is_b64url(**c)).count())
    };
    let h = run(start);
    let dot1 = start + h;
    if h < 10 || b.get(dot1) != Some(&b'.') {
        return None;
    }
    let p = run(dot1 + 1);
    let dot2 = dot1 + 1 + p;
    if p < 10 || b.get(dot2) != Some(&b'.') {
        return None;
    }
    let payload = b.get(dot1 + 1..dot2)?;
    let decoded = from_base64(std::str::from_utf8(payload).ok()?).unwrap_or_default();
    let text = String::from_utf8_lossy(&decoded);
    if text.contains("kubernetes.io/serviceaccount") || text.contains("kubernetes/serviceaccount") {
        Some(SecretKind::KubernetesServiceAccountToken)
    } else {
        Some(SecretKind::Jwt)
    }
}

/// An 8-4-4-4-12 hex UUID at `i` (not preceded or followed by another hex digit).
fn uuid_at(b: &[u8], i: usize) -> bool {
    const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
    if i > 0 && b.get(i - 1).is_some_and(u8::is_ascii_hexdigit) {
        return false;
    }
    let mut p = i;
    for (g, len) in GROUPS.iter().enumerate() {
        if g > 0 {
            if b.get(p) != Some(&b'-') {
                return false;
            }
            p += 1;
        }
        for _ in 0..*len {
            if !b.get(p).is_some_and(u8::is_ascii_hexdigit) {
                return false;
            }
            p += 1;
        }
    }
    !b.get(p).is_some_and(u8::is_ascii_hexdigit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::text::base64;

    fn kinds(text: &str) -> Vec<SecretKind> {
        let mut k: Vec<SecretKind> = scan_text(Path::new("x"), text)
            .into_iter()
            .map(|f| f.kind)
            .collect();
        k.sort();
        k.dedup();
        k
    }

    fn b64url(s: &str) -> String {
        base64(s.as_bytes())
            .trim_end_matches('=')
            .replace('+', "-")
            .replace('/', "_")
    }

    #[test]
    fn finds_each_kind_and_names_no_secret() {
        let pem =
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIHn1\n-----END PRIVATE KEY-----\n";
        assert_eq!(kinds(pem), [SecretKind::PemPrivateKey]);
        assert_eq!(
            kinds(r#"{"pem": "-----BEGIN EC PRIVATE KEY-----\nMHc..."}"#),
            [SecretKind::PemPrivateKey]
        );
        let header = b64url(r#"{"alg":"RS256","kid":"k1"}"#);
        let jwt = format!(
            "{header}.{}.c2lnbmF0dXJlLXNpZ25hdHVyZQ",
            b64url(r#"{"sub":"alice","exp":1}"#)
        );
        assert_eq!(kinds(&format!("token={jwt}")), [SecretKind::Jwt]);
        let sa = format!(
            "{header}.{}.c2ln",
            b64url(
                r#"{"iss":"kubernetes/serviceaccount","kubernetes.io/serviceaccount/namespace":"x"}"#
            )
        );
        assert!(kinds(&sa).contains(&SecretKind::KubernetesServiceAccountToken));
        let secret_data = format!("  token: {}", base64(sa.as_bytes()));
        assert_eq!(
            kinds(&secret_data),
            [SecretKind::KubernetesServiceAccountToken]
        );
        assert_eq!(
            kinds("spire-agent run -joinToken 0c4b2e9a1f7d"),
            [SecretKind::SpireJoinToken]
        );
        assert_eq!(
            kinds(r#"{"join_token": "abcdef123456"}"#),
            [SecretKind::SpireJoinToken]
        );
        assert_eq!(
            kinds("join with 6f9619ff-8b86-d011-b42d-00cf4fc964ff please"),
            [SecretKind::SpireJoinToken]
        );
        assert_eq!(
            kinds("Authorization: Bearer abcdefghijklmnopqrstuvwx"),
            [SecretKind::BearerToken]
        );
        let f = &scan_text(Path::new("dir/report.html"), &format!("ok\n{jwt}"))[0];
        let shown = f.to_string();
        assert_eq!(shown, "dir/report.html:2: contains a JWT");
        assert!(!shown.contains(&header));
    }

    #[test]
    fn ordinary_report_text_is_clean() {
        for text in [
            "No private key, token or secret is ever written to a report",
            "key readable by its owner only (0600)",
            r#"{"join_token": null, "serial": "403aab7ddaddeb7890895ae2d2d5cd33"}"#,
            "spiffe://soma-agent-hub.local/spire/agent/join_token/redacted-agent-0-token-1",
            "Bearer tokens are refused",
            "run 20261122-212004-095c joined 6f9619ff-8b86-d011-b42d",
            "spiffe://tradepulse/prod/strategy sha256 96d2ce0a1f277d2213de07e3241068ddaa46c3cab8c9ace4af8c4058c56f1d95",
            "-----BEGIN PUBLIC KEY-----",
            "eyJ is how every JWT starts",
        ] {
            assert!(kinds(text).is_empty(), "{text}: {:?}", kinds(text));
        }
    }
}

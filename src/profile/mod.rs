//! Profiles: the *intended* trust model of a mesh (trust domain, services, intents, CA policy,
//! admission, SPIRE registrations), loaded strictly from `manifests/<name>/profile.yaml`.
//!
//! Contract: a [`Profile`] only exists if every rule in [`validate`] holds: names are unique,
//! every intent refers to real services and endpoints and no two intents contradict, every SPIFFE ID
//! follows the profile's schema, and the CA policy's lifetimes fit inside each other. Anything else
//! is a [`SourceError`] that names file, line and the expected form.

mod model;
mod raw;
mod schema;
mod validate;

use std::path::{Path, PathBuf};

pub use model::*;
pub use schema::{IdSchema, Segment, Var};
pub use validate::{API_VERSION, is_dns_label};

use crate::error::{SourceError, SourceErrors};

/// The profiles that ship with meshproof, one per runbook in `shared/seeds/`.
pub const BUNDLED: &[&str] = &["tradepulse", "soma-agent-hub"];

/// Loads and validates one profile file.
pub fn load(path: &Path) -> Result<Profile, SourceErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        SourceErrors(vec![
            SourceError::new(path, 0, 0, format!("cannot read profile: {e}"))
                .expected("a readable profile.yaml"),
        ])
    })?;
    parse(path, &text)
}

/// Parses profile text; `path` is used for error messages only.
pub fn parse(path: &Path, text: &str) -> Result<Profile, SourceErrors> {
    // YAML 1.2 booleans only: a service named `y` or `on` stays a string.
    let options = serde_saphyr::options! {
        strict_booleans: true,
        with_snippet: false,
        budget: Some(crate::yaml_limits::budget_for(text)),
    };
    let raw: raw::File = serde_saphyr::from_str_with_options(text, options)
        .map_err(|e| SourceErrors(vec![yaml_error(path, &e)]))?;
    validate::validate(path, raw).map_err(SourceErrors)
}

fn yaml_error(path: &Path, e: &serde_saphyr::Error) -> SourceError {
    let (line, column) = e
        .location()
        .map(|l| (l.line() as u32, l.column() as u32))
        .unwrap_or((0, 0));
    let message = e.to_string();
    // serde-saphyr renders "error: line L column C: what" and then a source snippet; the location
    // is ours to print, the snippet would break the one-line contract.
    let first = message.lines().next().unwrap_or("invalid YAML").trim();
    let what = first
        .strip_prefix("error: ")
        .and_then(|rest| {
            rest.split_once(": ")
                .filter(|(loc, _)| loc.starts_with("line "))
                .map(|(_, w)| w)
        })
        .unwrap_or(first);
    let error = SourceError::new(path, line, column, what);
    if what.contains("expected") {
        error
    } else {
        error.expected("a profile in the form of manifests/tradepulse/profile.yaml")
    }
}

/// Where bundled profiles live: `./manifests` when run from a checkout, else the checkout the binary
/// was built from.
pub fn manifests_root() -> PathBuf {
    let local = PathBuf::from("manifests");
    if local.join(BUNDLED[0]).join("profile.yaml").is_file() {
        local
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests")
    }
}

/// Resolves `--profile` values: a bundled name, `all`, or a path to a profile file.
pub fn resolve(selector: &str) -> Result<Vec<PathBuf>, SourceErrors> {
    let root = manifests_root();
    if selector == "all" {
        return Ok(BUNDLED
            .iter()
            .map(|n| root.join(n).join("profile.yaml"))
            .collect());
    }
    let as_path = Path::new(selector);
    if as_path.is_file() {
        return Ok(vec![as_path.to_path_buf()]);
    }
    if as_path.is_dir() && as_path.join("profile.yaml").is_file() {
        return Ok(vec![as_path.join("profile.yaml")]);
    }
    let bundled = root.join(selector).join("profile.yaml");
    if bundled.is_file() {
        return Ok(vec![bundled]);
    }
    Err(SourceErrors(vec![
        SourceError::new(as_path, 0, 0, format!("no profile named \"{selector}\"")).expected(
            format!("all, {}, or a path to a profile.yaml", BUNDLED.join(", ")),
        ),
    ]))
}

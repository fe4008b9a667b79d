//! Report writers. Each renders the same [`RunResults`](crate::results::RunResults).
//!
//! [`write_all`] writes, into the run folder: `junit.xml`, `results.json`, `cucumber.json`,
//! `summary.md`, `report.html`, and the signed evidence bundle `evidence/` (see [`evidence`]).
//!
//! No secret lands in a report: every rendered report is scanned ([`secrets`]) before any is
//! written, and a finding refuses them all with an error naming the report, the line and the
//! check the secret came from (never the secret). The evidence writer scans every file it bundles
//! the same way, so a stray log with a private key in the run folder is refused too.
//!
//! The control mapping lives in `controls.yaml` ([`controls`]); [`view`] derives what the human
//! formats show (intents expected vs observed, certificates, drills) and documents the evidence
//! keys it reads.

pub mod baseline;
pub mod console;
pub mod controls;
pub mod cucumber_json;
pub mod evidence;
pub mod html;
pub mod json;
pub mod junit;
pub mod markdown;
pub mod secrets;
pub mod svg;
pub mod text;
pub mod view;

mod bench;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use bench::{bench_generate, sample_results};
pub use secrets::scan_for_secrets;

use crate::results::RunResults;

/// Inputs to the reports beyond the results themselves.
#[derive(Default)]
pub struct ReportOptions<'k> {
    /// More component versions for the report's "versions" table, merged over
    /// `RunResults::versions`; meshproof's own version is always added.
    pub versions: BTreeMap<String, String>,
    /// Signs the evidence bundle; `None` makes a fresh key for this run (its private half is never
    /// written anywhere; the public half is in the bundle and in [`Written::public_key`]).
    pub signing_key: Option<&'k evidence::SigningKey>,
}

/// What [`write_all_with`] wrote.
#[derive(Debug)]
pub struct Written {
    /// Report files in the run folder, then the evidence bundle's directory.
    pub files: Vec<PathBuf>,
    pub bundle: evidence::Bundle,
    /// The key that signed the bundle: print it, so the bundle can later be verified against it.
    pub public_key: evidence::PublicKey,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot render {what}: {message}")]
    Render { what: &'static str, message: String },
    /// A rendered report would contain a secret: nothing was written.
    #[error(
        "refusing to write reports: {} (nothing was written; the secret came from: {})",
        evidence::list(.findings),
        .sources.join("; ")
    )]
    Secrets {
        findings: Vec<secrets::Finding>,
        sources: Vec<String>,
    },
    #[error(transparent)]
    Controls(#[from] controls::ControlsError),
    #[error(transparent)]
    Evidence(#[from] evidence::EvidenceError),
}

/// Writes every report format into `dir` (created if needed) with a per-run signing key; returns
/// the files written (the evidence bundle as its directory).
pub fn write_all(results: &RunResults, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    write_all_with(results, dir, &ReportOptions::default())
        .map(|w| w.files)
        .map_err(std::io::Error::other)
}

/// [`write_all`] with versions and a signing key.
pub fn write_all_with(
    results: &RunResults,
    dir: &Path,
    options: &ReportOptions<'_>,
) -> Result<Written, ReportError> {
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let render = |what: &'static str| {
        move |e: &dyn std::fmt::Display| ReportError::Render {
            what,
            message: e.to_string(),
        }
    };
    // Per-step durations are read from the serialized results, so they are used as soon as the
    // model records them (see `cucumber_json`).
    let serialized = serde_json::to_value(results).map_err(|e| render("results")(&e))?;
    let mut versions = results.versions.clone();
    versions.extend(options.versions.clone());
    versions.insert("meshproof".into(), results.meshproof_version.clone());

    let mapping = controls::Mapping::embedded()?;
    let view = view::View::new(results, versions);
    let eval = controls::evaluate(&mapping, &view);

    let outputs: Vec<(&str, String)> = vec![
        (
            "junit.xml",
            junit::render(results).map_err(|e| render("junit.xml")(&e))?,
        ),
        (
            "results.json",
            json::render(results).map_err(|e| render("results.json")(&e))?,
        ),
        (
            "cucumber.json",
            cucumber_json::render(results, &cucumber_json::step_durations(&serialized))
                .map_err(|e| render("cucumber.json")(&e))?,
        ),
        ("summary.md", markdown::render(&view, &mapping, &eval)),
        ("report.html", html::render(&view, &mapping, &eval)),
    ];
    // No secret may land in a report: scan what would be written before writing any of it.
    let findings: Vec<secrets::Finding> = outputs
        .iter()
        .flat_map(|(name, contents)| secrets::scan_text(Path::new(name), contents))
        .collect();
    if !findings.is_empty() {
        let mut sources = secrets::locate_in_results(results);
        if sources.is_empty() {
            sources.push("the report writers themselves".into());
        }
        sources.truncate(10);
        return Err(ReportError::Secrets { findings, sources });
    }
    let mut files = Vec::new();
    for (name, contents) in outputs {
        let path = dir.join(name);
        std::fs::write(&path, contents).map_err(|source| ReportError::Io {
            path: path.clone(),
            source,
        })?;
        files.push(path);
    }

    let fresh;
    let key = match options.signing_key {
        Some(k) => k,
        None => {
            fresh = evidence::SigningKey::generate()?;
            &fresh
        }
    };
    let bundle = evidence::write_bundle(dir, &view, &eval, key)?;
    files.push(bundle.dir.clone());
    Ok(Written {
        files,
        public_key: bundle.public_key,
        bundle,
    })
}

//! What is *configured*: a manifests folder (rendered from the profile, or the user's own GitOps
//! folder) read as Istio security policy and Gatekeeper admission, in the profile's mesh.

use std::path::{Path, PathBuf};

use crate::error::SourceErrors;
use crate::policy::gatekeeper::{self, Admission, Manifest};
use crate::policy::istio::{self, MeshConfig, MeshPolicies};
use crate::profile::Profile;

#[derive(Debug)]
pub struct Configured {
    pub dir: PathBuf,
    pub policies: MeshPolicies,
    /// Present when the folder holds ConstraintTemplates.
    pub admission: Option<Admission>,
    /// Every object of the folder, for admission audit.
    pub manifests: Vec<Manifest>,
}

/// The mesh a profile describes: Istio's root namespace is where its control plane runs.
pub fn mesh_config(profile: &Profile) -> MeshConfig {
    MeshConfig {
        root_namespace: profile.control_plane_namespace.clone(),
        trust_domain: profile.trust_domain.as_str().to_owned(),
        ..MeshConfig::default()
    }
}

/// The profile's own manifests folder (`manifests/<name>/`, beside its profile.yaml).
pub fn default_dir(profile: &Profile) -> PathBuf {
    profile
        .source
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

pub fn load(profile: &Profile, dir: &Path) -> Result<Configured, SourceErrors> {
    let files = yaml_files(dir)?;
    let istio_files: Vec<PathBuf> = files
        .iter()
        .filter(|f| may_hold_istio_objects(f))
        .cloned()
        .collect();
    // The Istio and Gatekeeper readers parse the same files into different models, most of
    // verify's time on a large folder: the Istio reader runs beside the Gatekeeper reader, which
    // spreads its files over every core.
    let (policies, per_file) = std::thread::scope(|s| {
        let istio = s.spawn(|| istio::load_all(&istio_files, mesh_config(profile)));
        let per_file =
            crate::cores::in_order(&files, || (), |_, file| gatekeeper::load_manifests(&[file]));
        // A panic in the reader is re-raised here, as it would be without the thread.
        let policies = istio
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (policies, per_file)
    });
    let policies = policies?;
    let mut manifests = Vec::new();
    let mut errors = Vec::new();
    for read in per_file {
        match read {
            Ok(m) => manifests.extend(m),
            Err(SourceErrors(e)) => errors.extend(e),
        }
    }
    if !errors.is_empty() {
        return Err(SourceErrors(errors));
    }
    let has_templates = manifests
        .iter()
        .any(|m| m.object["kind"] == "ConstraintTemplate");
    let admission = if has_templates {
        Some(Admission::from_manifests(&manifests)?)
    } else {
        None
    };
    Ok(Configured {
        dir: dir.to_path_buf(),
        policies,
        admission,
        manifests,
    })
}

/// Whether a file can hold an Istio security object: its kind is spelt out in the text, unless
/// hidden behind an escape in a quoted string. Files that cannot (workloads, Gatekeeper objects)
/// are left to the Gatekeeper reader, which reads every file and reports any malformed YAML; the
/// Istio reader's count of skipped documents then leaves them out. An unreadable file is kept, so
/// the Istio reader reports it.
fn may_hold_istio_objects(file: &Path) -> bool {
    std::fs::read_to_string(file).map_or(true, |text| {
        text.contains('\\')
            || [
                "AuthorizationPolicy",
                "PeerAuthentication",
                "DestinationRule",
            ]
            .iter()
            .any(|kind| text.contains(kind))
    })
}

/// The manifest files of a folder, excluding the profile itself and the admission test cases.
fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>, SourceErrors> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        SourceErrors(vec![
            crate::error::SourceError::new(dir, 0, 0, format!("cannot read manifests: {e}"))
                .expected("a folder of Kubernetes YAML manifests"),
        ])
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .filter(|p| p.file_name().is_some_and(|n| n != "profile.yaml"))
        .collect();
    files.sort();
    Ok(files)
}

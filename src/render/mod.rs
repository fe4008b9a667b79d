//! `meshproof render`: the Kubernetes manifests that implement a profile.
//!
//! Contract: applying the rendered manifests to a mesh yields exactly the profile's intents —
//! STRICT mutual TLS mesh-wide, an allow-nothing baseline in every namespace, one ALLOW policy per
//! callee listing each allowed caller's principal with the promised paths, methods and ports, and
//! an explicit DENY policy for every denied intent the runbook names (so a later, wider ALLOW cannot
//! silently reopen them). `verify` proves the contract statically; the lab and kind prove it live.
//!
//! Output is deterministic (sorted keys, stable order), so the committed `manifests/<profile>/`
//! can be compared byte for byte with a fresh render.

mod istio;
mod workloads;

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::profile::Profile;

/// One rendered file: a name and its documents.
pub struct Rendered {
    pub file: &'static str,
    pub documents: Vec<Value>,
}

/// Every manifest of a profile, grouped into files. `environment` picks the environment whose
/// identities the policies name (default: the profile's lab environment).
pub fn render(profile: &Profile, environment: Option<&str>) -> Vec<Rendered> {
    let environment = environment.or(profile.lab_environment.as_deref());
    let mut files = vec![
        Rendered {
            file: "namespaces.yaml",
            documents: workloads::namespaces(profile),
        },
        Rendered {
            file: "peer-authentication.yaml",
            documents: istio::peer_authentication(profile),
        },
        Rendered {
            file: "authorization-policies.yaml",
            documents: istio::authorization_policies(profile, environment),
        },
        Rendered {
            file: "destination-rules.yaml",
            documents: istio::destination_rules(profile),
        },
        Rendered {
            file: "workloads.yaml",
            documents: workloads::workloads(profile),
        },
    ];
    if profile.spire.is_some() {
        files.push(Rendered {
            file: "spire.yaml",
            documents: workloads::spire_registrations(profile),
        });
    }
    if profile.admission.is_some() {
        files.push(Rendered {
            file: "gatekeeper.yaml",
            documents: crate::policy::gatekeeper::render_templates(profile),
        });
    }
    files
}

/// The YAML text of one file: documents separated by `---`, with a header naming its source.
pub fn to_yaml(profile: &Profile, rendered: &Rendered) -> Result<String, String> {
    let mut text = format!(
        "# Rendered by `meshproof render --profile {}` from {}.\n# Do not edit: change the profile and re-render (a test fails when this file and a fresh\n# render differ).\n",
        profile.name,
        relative_source(&profile.source)
    );
    for document in &rendered.documents {
        text.push_str("---\n");
        text.push_str(
            &serde_saphyr::to_string(document).map_err(|e| format!("{}: {e}", rendered.file))?,
        );
    }
    Ok(text)
}

fn relative_source(source: &Path) -> String {
    let text = source.display().to_string();
    match text.find("manifests/") {
        Some(i) => text[i..].to_owned(),
        None => source
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or(text),
    }
}

/// Writes every file into `dir`; returns the paths written.
pub fn write(
    profile: &Profile,
    environment: Option<&str>,
    dir: &Path,
) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut written = Vec::new();
    for rendered in render(profile, environment) {
        let path = dir.join(rendered.file);
        std::fs::write(&path, to_yaml(profile, &rendered)?)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

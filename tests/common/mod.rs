//! Shared by the mutation tests: copies of the rendered manifests with one thing broken.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::PathBuf;
use std::process::{Command, Output};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn meshproof(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshproof"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("meshproof runs")
}

/// A copy of a profile's manifests folder with `mutate(file name, text) -> text` applied.
pub fn mutant(profile: &str, mutate: impl Fn(&str, String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let source = root().join("manifests").join(profile);
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            let target = dir.path().join(&name);
            std::fs::create_dir_all(&target).unwrap();
            for f in std::fs::read_dir(&path).unwrap() {
                let f = f.unwrap().path();
                std::fs::copy(&f, target.join(f.file_name().unwrap())).unwrap();
            }
        } else if name != "profile.yaml" {
            let text = std::fs::read_to_string(&path).unwrap();
            std::fs::write(dir.path().join(&name), mutate(&name, text)).unwrap();
        }
    }
    dir
}

pub fn replace(
    file: &'static str,
    from: &'static str,
    to: &'static str,
) -> impl Fn(&str, String) -> String {
    move |name, text| {
        if name != file {
            return text;
        }
        assert!(text.contains(from), "{file} has no {from:?}");
        text.replacen(from, to, 1)
    }
}

/// Removes the YAML document of `file` whose text contains `marker`.
pub fn drop_document(file: &'static str, marker: &'static str) -> impl Fn(&str, String) -> String {
    move |name, text| {
        if name != file {
            return text;
        }
        let docs: Vec<&str> = text.split("\n---\n").collect();
        assert!(
            docs.iter().any(|d| d.contains(marker)),
            "{file} has no document with {marker:?}"
        );
        docs.into_iter()
            .filter(|d| !d.contains(marker))
            .collect::<Vec<_>>()
            .join("\n---\n")
    }
}

/// The broken manifests the product must catch, shared by the static and the live tests.
pub mod mutations {
    use super::replace;

    pub const ALLOW_ALL_IN_EXECUTION: &str = "\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: allow-all\n  namespace: execution\nspec:\n  rules:\n  - {}\n";

    /// TradePulse: an allow-all AuthorizationPolicy added to the execution namespace.
    pub fn allow_all() -> impl Fn(&str, String) -> String {
        |name, text| {
            if name == "authorization-policies.yaml" {
                text + ALLOW_ALL_IN_EXECUTION
            } else {
                text
            }
        }
    }

    /// TradePulse: PeerAuthentication PERMISSIVE instead of STRICT.
    pub fn permissive() -> impl Fn(&str, String) -> String {
        replace(
            "peer-authentication.yaml",
            "mode: STRICT",
            "mode: PERMISSIVE",
        )
    }

    /// TradePulse: the rule allowing strategy → execution quotes deleted.
    pub fn deleted_allow_rule() -> impl Fn(&str, String) -> String {
        replace(
            "authorization-policies.yaml",
            "  - from:\n    - source:\n        principals:\n        - tradepulse/prod/strategy\n        - tradepulse/prod/strategy/*\n    to:\n    - operation:\n        methods:\n        - GET\n        paths:\n        - /quotes/*\n        ports:\n        - \"8080\"\n",
            "",
        )
    }

    /// TradePulse: `/quotes/*` misspelt `/quote/*`.
    pub fn path_typo() -> impl Fn(&str, String) -> String {
        replace(
            "authorization-policies.yaml",
            "        - /quotes/*\n",
            "        - /quote/*\n",
        )
    }

    /// SomaAgentHub: the orchestrator allows `sa/gateway` instead of `sa/gateway-api`.
    pub fn wrong_principal() -> impl Fn(&str, String) -> String {
        replace(
            "authorization-policies.yaml",
            "        - soma-agent-hub.local/ns/soma-agent-hub/sa/gateway-api\n    to:\n    - operation:\n        methods:\n        - GET\n        paths:\n        - /ready\n        ports:\n        - \"10001\"",
            "        - soma-agent-hub.local/ns/soma-agent-hub/sa/gateway\n    to:\n    - operation:\n        methods:\n        - GET\n        paths:\n        - /ready\n        ports:\n        - \"10001\"",
        )
    }
}

//! The lab mesh's lifecycle as a user meets it: no Envoy outlives a run, and a missing Envoy is a
//! harness error (exit 2) that says how to install it — never a pass.

mod common;

use common::meshproof;

fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push(format!(
                "{}: {cmdline}",
                entry.file_name().to_string_lossy()
            ));
        }
    }
    found
}

#[test]
fn a_live_run_leaves_no_envoy_behind() {
    let out = tempfile::tempdir().unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_meshproof"))
        .args([
            "run",
            "--profile",
            "soma-agent-hub",
            "--tags",
            "@live",
            "-q",
            "--out",
        ])
        .arg(out.path())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let child = child.wait_with_output().unwrap();
    assert_eq!(
        child.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&child.stdout)
    );
    // The lab's working directory is named after the meshproof process; every Envoy it started
    // has that path on its command line.
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("results.json")).unwrap()).unwrap();
    assert!(
        results["versions"]["envoy"].is_string(),
        "the Envoy version is recorded: {}",
        results["versions"]
    );
    let leftovers = processes_mentioning(&format!("meshproof-lab-{pid}-"));
    assert!(
        leftovers.is_empty(),
        "left running after meshproof {pid} exited: {leftovers:?}"
    );
}

#[test]
fn a_missing_envoy_is_exit_2_with_the_install_command() {
    let out = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_meshproof"))
        .args([
            "run",
            "--profile",
            "tradepulse",
            "--tags",
            "@live and @intents",
            "-q",
            "--out",
        ])
        .arg(out.path())
        .env("MESHPROOF_ENVOY", "/nonexistent/envoy")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(2), "{text}");
    assert!(
        text.contains("scripts/setup"),
        "names the install command: {text}"
    );
    let _ = meshproof; // shared helpers
}

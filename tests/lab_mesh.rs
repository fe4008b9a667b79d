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
    let mut leftovers = processes_mentioning(&format!("meshproof-lab-{pid}-"));
    leftovers.extend(processes_mentioning(&format!("meshproof-spire-{pid}-")));
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

#[test]
fn an_interrupted_run_stops_every_lab_process() {
    let out = tempfile::tempdir().unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_meshproof"))
        .args([
            "run",
            "--profile",
            "soma-agent-hub",
            "--tags",
            "@spire or @live",
            "-q",
            "--out",
        ])
        .arg(out.path())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let needle = format!("meshproof-lab-{pid}-");
    let spire_needle = format!("meshproof-spire-{pid}-");
    // Wait (bounded) until the lab has started processes, then interrupt mid-run.
    let started = std::time::Instant::now();
    while processes_mentioning(&needle).is_empty() && processes_mentioning(&spire_needle).is_empty()
    {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the lab never started a process"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let kill = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Envoys carry the lab's directory on their command line, SPIRE processes their own.
    let mut leftovers = processes_mentioning(&needle);
    leftovers.extend(processes_mentioning(&spire_needle));
    assert!(
        leftovers.is_empty(),
        "left running after an interrupt: {leftovers:?}"
    );
}

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

/// The run's lab-CA mesh renews every SVID at half-life through the SDS swap, the sidecar serves
/// the renewed serial, the CA's record of what it issued follows; a stopped renewal is seen as no
/// renewal at all; and the task ends with the lab.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_ca_svids_renew_at_half_life_and_the_task_stops_with_the_lab() {
    use meshproof::pki::TtlScale;
    use meshproof::target::lab::Lab;
    use std::time::Duration;

    if meshproof::target::lab::envoy::EnvoyBinary::locate().is_err() {
        println!("SKIPPED: envoy not installed: run scripts/setup");
        assert!(std::env::var("MESHPROOF_REQUIRE_ENVOY").as_deref() != Ok("1"));
        return;
    }
    let profile =
        meshproof::profile::load(&common::root().join("manifests/tradepulse/profile.yaml"))
            .unwrap();
    let configured =
        meshproof::configured::load(&profile, &meshproof::configured::default_dir(&profile))
            .unwrap();
    // 12 h / 4320 = 10 s: a renewal every 5 s.
    let scale = TtlScale::new(4320).unwrap();
    let lab = Lab::with_ttl_scale(time::OffsetDateTime::now_utc(), scale).unwrap();
    let mesh = lab.mesh(&profile, &configured).await.unwrap();
    let renewal = lab.renewal(&profile).expect("a lab-CA mesh renews");
    assert_eq!(renewal.ttl(), Duration::from_secs(10));
    assert!(
        lab.ttl_report()
            .unwrap()
            .contains("1:4320 (workload TTL 12h → 10s"),
        "{:?}",
        lab.ttl_report()
    );
    let (label, workload) = mesh.workloads.iter().next().unwrap();
    let record = renewal
        .next_of(label, 0, Duration::from_secs(30))
        .await
        .unwrap_or_else(|| panic!("no renewal of {label}: {:?}", renewal.failures()));
    assert!(record.lifetime_fraction() >= 0.5, "{record:?}");
    assert!(record.margin_ms > 0, "{record:?}");
    let newest = record.new_serial.clone();
    let served = workload.sidecar.served_leaf().await.unwrap().unwrap();
    let later: Vec<String> = renewal
        .records()
        .iter()
        .filter(|r| &r.label == label)
        .skip_while(|r| r.new_serial != newest)
        .map(|r| meshproof::target::lab::envoy::normalize_serial(&r.new_serial))
        .collect();
    assert!(
        later.contains(&served.serial_hex),
        "{served:?} vs {later:?}"
    );
    let pki = lab.pki(&profile).unwrap();
    let issued = pki
        .svids
        .get(&workload.identity.spiffe_id.to_string())
        .unwrap();
    assert!(
        later.contains(&meshproof::target::lab::envoy::normalize_serial(
            issued.serial_hex()
        )),
        "the CA's newest SVID is the one renewed"
    );
    println!(
        "{label}: renewed {} ms into a {} ms lifetime ({:.2}), served {} ms after publishing, {} ms to spare",
        record.renewed_after_ms,
        record.ttl_ms,
        record.lifetime_fraction(),
        record.served_after_ms,
        record.margin_ms
    );

    // A renewal that stops is observable as no renewal at all.
    renewal.stop();
    let seen = renewal.records().len();
    assert!(
        renewal
            .next_of(label, seen, Duration::from_secs(6))
            .await
            .is_none()
    );
    assert!(!renewal.is_running());

    // And the task of a live lab ends with the lab.
    let lab = Lab::with_ttl_scale(time::OffsetDateTime::now_utc(), scale).unwrap();
    drop(lab.mesh(&profile, &configured).await.unwrap());
    let renewal = lab.renewal(&profile).unwrap();
    assert!(renewal.is_running());
    drop(lab);
    let stopped = std::time::Instant::now();
    while renewal.is_running() {
        assert!(
            stopped.elapsed() < Duration::from_secs(10),
            "the renewal task outlived its lab"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

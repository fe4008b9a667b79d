//! The SomaAgentHub intent chain over SPIRE-issued identities: real `spire-server` /
//! `spire-agent` processes, and one real Envoy sidecar per workload, running as the workload's
//! own uid and taking its SVID and trust bundle from its agent's SDS API (no key on disk).
//!
//! What is proven: the chain ingress-gateway → gateway-api → orchestrator → policy-engine is
//! allowed and the skipping hops are denied by RBAC, with the echo apps seeing the callers'
//! SPIFFE IDs; every sidecar serves exactly the SVID SPIRE issued its workload, chained to the
//! SPIRE CA (and not to the lab CA); a renewal reaches Envoy without a restart and calls keep
//! succeeding; a workload whose entry is deleted can no longer complete a handshake once its
//! last SVID expires; nothing is left running afterwards.
//!
//! Needs SPIRE and Envoy (`scripts/setup`) and root (one uid per workload). Without them every
//! test prints why it did not run and passes, unless MESHPROOF_REQUIRE_SPIRE=1 or
//! MESHPROOF_REQUIRE_ENVOY=1 (then a missing tool fails). Figures are printed: run with
//! `--nocapture`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use meshproof::intents::{self, ExpectedCall};
use meshproof::probe::{Outcome, RejectedBy};
use meshproof::profile::{self, Decision, Profile};
use meshproof::spiffe::TrustBundle;
use meshproof::target::lab::envoy::{EnvoyBinary, normalize_serial};
use meshproof::target::lab::mesh::LabMesh;
use meshproof::target::lab::mesh_spire::{self, SpireMesh};
use meshproof::target::lab::sidecar::CertSource;
use meshproof::target::lab::spire::{Isolation, SpireBinaries, SpireLab, SpireLabConfig};

/// SPIRE backdates every SVID's notBefore by this much.
const SPIRE_BACKDATE: Duration = Duration::from_secs(10);

fn soma() -> Profile {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/soma-agent-hub/profile.yaml");
    profile::load(&path).unwrap()
}

fn required(var: &str) -> bool {
    std::env::var(var).as_deref() == Ok("1")
}

/// SPIRE and Envoy, or `None` after saying loudly why the test does not run.
fn tools() -> Option<(SpireBinaries, EnvoyBinary)> {
    let spire = match SpireBinaries::locate() {
        Ok(bins) => bins,
        Err(e) => {
            println!("SKIPPED: spire not installed: run scripts/setup ({e})");
            assert!(
                !required("MESHPROOF_REQUIRE_SPIRE"),
                "MESHPROOF_REQUIRE_SPIRE=1 but SPIRE is not installed: {e}"
            );
            return None;
        }
    };
    let envoy = match EnvoyBinary::locate() {
        Ok(envoy) => envoy,
        Err(e) => {
            println!("SKIPPED: envoy not installed: run scripts/setup ({e})");
            assert!(
                !required("MESHPROOF_REQUIRE_ENVOY"),
                "MESHPROOF_REQUIRE_ENVOY=1 but Envoy is not installed: {e}"
            );
            return None;
        }
    };
    Some((spire, envoy))
}

fn uid_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Processes whose command line mentions `needle` or that run as a uid in `uids`.
fn processes(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        // Matched by this lab's root on the command line (every process it starts carries it):
        // uids alone would also match another SPIRE lab running at the same time on this machine.
        if cmdline.contains(needle) {
            found.push(format!("{pid} (uid {:?}): {cmdline}", uid_of(pid)));
        }
    }
    found
}

/// Every file below `dir` (not following symlinks, skipping sockets).
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            out.extend(files(&path));
        } else if meta.is_file() {
            out.push(path);
        }
    }
    out
}

/// The first call of the intent matrix from `from` to `to` (GET /ready where there is one).
fn call(profile: &Profile, from: &str, to: &str) -> ExpectedCall {
    let calls: Vec<ExpectedCall> = intents::matrix(profile)
        .into_iter()
        .filter(|c| c.from == from && c.to == to)
        .collect();
    calls
        .iter()
        .find(|c| c.path == "/ready")
        .or(calls.first())
        .cloned()
        .unwrap_or_else(|| panic!("the matrix has no call {from} → {to}"))
}

async fn send(mesh: &LabMesh, call: &ExpectedCall) -> meshproof::probe::Observation {
    mesh.call(call)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", call.label()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_intent_chain_runs_over_spire_identities() {
    let Some((bins, envoy)) = tools() else {
        return;
    };
    let uid = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m));
    if uid.ok() != Some(0) {
        println!(
            "SKIPPED: not root: SPIRE-fed sidecars run as their workloads' own uids, which needs root"
        );
        return;
    }
    let profile = soma();
    let configured =
        meshproof::configured::load(&profile, &meshproof::configured::default_dir(&profile))
            .unwrap();
    let t = Instant::now();
    let lab = SpireLab::start_with(bins, &profile, SpireLabConfig::default())
        .await
        .unwrap();
    let spire_up = t.elapsed();
    assert_eq!(lab.isolation(), Isolation::Uid);
    let root = lab.workloads()[0]
        .caller
        .exe
        .ancestors()
        .nth(3)
        .unwrap()
        .to_owned();
    let t = Instant::now();
    let SpireMesh { mesh, sidecars } = mesh_spire::start(&profile, &configured, &lab)
        .await
        .unwrap();
    println!(
        "[start] SPIRE up in {spire_up:?}; {} SPIRE-fed sidecars (Envoy {}) up and serving SVIDs in {:?}",
        sidecars.len(),
        envoy.version(),
        t.elapsed()
    );
    for s in &sidecars {
        println!(
            "[start]   {:<22} uid {} agent {}: Envoy ready {:>6.1} ms, first SVID served {:>6.1} ms after spawn (serial {})",
            s.label,
            s.uid,
            s.agent,
            s.ready.as_secs_f64() * 1e3,
            s.first_svid.as_secs_f64() * 1e3,
            s.serial_hex
        );
    }
    assert_eq!(sidecars.len(), profile.lab_identities().len());

    // Every sidecar: its own workload's uid, fed by the agent, serving what SPIRE issued.
    let server_bundle = lab.bundle_show().await.unwrap();
    for (label, workload) in &mesh.workloads {
        let registered = lab
            .workloads()
            .iter()
            .find(|w| w.spiffe_id == workload.identity.spiffe_id)
            .unwrap();
        let pid = workload.sidecar.envoy().pid();
        assert_eq!(
            uid_of(pid),
            Some(registered.caller.uid),
            "{label}: Envoy pid {pid} runs as the wrong uid"
        );
        assert!(matches!(
            workload.sidecar.cert_source(),
            CertSource::SpireAgent(agent) if agent.spiffe_id == workload.identity.spiffe_id
        ));
        let seen = mesh_spire::served_svid(&mesh, &lab, &workload.identity.service)
            .await
            .unwrap();
        assert!(
            seen.matches,
            "{label}: serves {} but SPIRE issued {:?}",
            seen.served.serial_hex, seen.issued_serials
        );
        seen.chains_to_spire
            .as_ref()
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        let authority = seen.authority_id.clone().unwrap();
        assert!(
            server_bundle.contains(&authority),
            "{label}: signed by {authority}, not in the SPIRE server's bundle"
        );
        // The validation context is the agent's SPIFFE validator for exactly this trust domain.
        let dump = workload
            .sidecar
            .admin()
            .get_json("/config_dump?resource=dynamic_active_secrets")
            .await
            .unwrap();
        let secrets = dump["configs"].as_array().unwrap();
        let validation = secrets
            .iter()
            .find(|s| s["name"] == "spiffe://soma-agent-hub.local")
            .unwrap_or_else(|| panic!("{label}: no bundle secret in {dump}"));
        let validator = &validation["secret"]["validation_context"]["custom_validator_config"];
        assert_eq!(validator["name"], "envoy.tls.cert_validator.spiffe");
        let domains: Vec<&str> = validator["typed_config"]["trust_domains"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|d| d["name"].as_str())
            .collect();
        assert_eq!(domains, ["soma-agent-hub.local"], "{label}");
    }
    // No key anywhere on disk: the agent streams it to Envoy.
    let mut scanned = 0;
    for file in files(&root.join("public")) {
        if file.starts_with(root.join("public").join("bin")) {
            continue;
        }
        let text = std::fs::read(&file).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&text).contains("PRIVATE KEY"),
            "a private key on disk: {}",
            file.display()
        );
        scanned += 1;
    }
    println!(
        "[start] every sidecar runs as its workload's uid, serves the SVID SPIRE issued it (authority in the server bundle), validates peers with the agent's SPIFFE validator for soma-agent-hub.local only; {scanned} files in the lab tree hold no private key"
    );

    // The chain, hop by hop, and the hops that skip a link.
    for (from, to) in [
        ("ingress-gateway", "gateway-api"),
        ("gateway-api", "orchestrator"),
        ("orchestrator", "policy-engine"),
    ] {
        let c = call(&profile, from, to);
        assert_eq!(c.expected, Decision::Allow, "{}", c.label());
        let o = send(&mesh, &c).await;
        assert!(o.outcome.is_success(), "{}: {}", c.label(), o.outcome);
        let caller_id = mesh.spiffe_id(from).unwrap().to_string();
        assert_eq!(
            o.peer_seen.as_deref(),
            Some(caller_id.as_str()),
            "{}: the app saw {:?}",
            c.label(),
            o.peer_seen
        );
        println!(
            "[chain] {} → {} (app saw {caller_id})",
            c.label(),
            o.outcome
        );
    }
    for (from, to) in [
        ("gateway-api", "policy-engine"),
        ("ingress-gateway", "orchestrator"),
    ] {
        let c = call(&profile, from, to);
        assert_eq!(c.expected, Decision::Deny, "{}", c.label());
        let o = send(&mesh, &c).await;
        assert!(o.outcome.is_rbac_denied(), "{}: {}", c.label(), o.outcome);
        println!("[chain] {} → {} (RBAC)", c.label(), o.outcome);
    }

    // The served certificate chains to the SPIRE CA, not to the lab CA: the harness's own client,
    // presenting orchestrator's SPIRE-issued SVID, accepts policy-engine's certificate only
    // against SPIRE's bundle.
    let control = mesh_spire::fetch_svid(&lab, "orchestrator").await.unwrap();
    assert!(!format!("{control:?}").contains("PRIVATE KEY"));
    let fresh = lab.trust_bundle().await.unwrap();
    // Envoy's /certs read before and after the handshake (SPIRE may renew in between).
    let pe = &mesh.caller("policy-engine").unwrap().sidecar;
    let served_before = pe.served_leaf().await.unwrap().unwrap();
    let o = mesh_spire::direct(
        &mesh,
        &fresh,
        "policy-engine",
        control.probe_identity(),
        "/ready",
    )
    .await
    .unwrap();
    let served = pe.served_leaf().await.unwrap().unwrap();
    assert!(o.outcome.is_success(), "{}", o.outcome);
    let presented = o
        .tls
        .as_ref()
        .and_then(|t| t.server_serial_hex.as_deref())
        .map(normalize_serial)
        .unwrap();
    assert!(
        [&served_before.serial_hex, &served.serial_hex].contains(&&presented),
        "the handshake presented {presented}, /certs shows {} / {}",
        served_before.serial_hex,
        served.serial_hex
    );
    let lab_ca = meshproof::pki::Pki::generate(
        &meshproof::target::lab::ca_spec(&profile),
        OffsetDateTime::now_utc(),
    )
    .unwrap();
    let lab_bundle =
        TrustBundle::from_der(profile.trust_domain.clone(), [lab_ca.root().der().to_vec()])
            .unwrap();
    let against_lab_ca = mesh_spire::direct(
        &mesh,
        &lab_bundle,
        "policy-engine",
        control.probe_identity(),
        "/ready",
    )
    .await
    .unwrap();
    assert!(
        matches!(
            against_lab_ca.outcome,
            Outcome::TlsRejected {
                by: RejectedBy::Client,
                ..
            }
        ),
        "policy-engine's certificate must not chain to the lab CA: {}",
        against_lab_ca.outcome
    );
    println!(
        "[issuer] policy-engine presents serial {presented} (= /certs), valid against the SPIRE bundle, refused against the lab CA ({}); orchestrator's SPIRE SVID {} served as the client",
        against_lab_ca.outcome, control.serial_hex
    );

    // Renewal: calls keep flowing while SPIRE renews policy-engine's SVID; Envoy picks it up
    // from the agent without a restart.
    let ttl = lab.config().x509_svid_ttl;
    let chain_call = call(&profile, "orchestrator", "policy-engine");
    let callee = &mesh.caller("policy-engine").unwrap().sidecar;
    let pid_before = callee.envoy().pid();
    let renewal = mesh_spire::calls_across_renewal(&mesh, &chain_call, ttl * 2)
        .await
        .unwrap();
    assert!(
        renewal.serial_after.is_some(),
        "no renewal within {:?}: {renewal:?}",
        ttl * 2
    );
    assert!(renewal.failed.is_empty(), "{renewal:?}");
    assert_eq!(callee.envoy().pid(), pid_before, "Envoy was restarted");
    println!(
        "[renewal] policy-engine {} → {} served {:.1} s into the calls, {} calls {}, 0 failed, same Envoy pid",
        renewal.serial_before,
        renewal.serial_after.as_deref().unwrap_or("?"),
        renewal.waited.as_secs_f64(),
        renewal.sent,
        chain_call.label()
    );
    // How soon after SPIRE issues a renewed SVID Envoy serves it (gateway-api, polled every 20 ms).
    let gw = mesh.caller("gateway-api").unwrap();
    let gw_registered = lab.workload("gateway-api").unwrap().clone();
    let current = gw.sidecar.served_leaf().await.unwrap().unwrap();
    let (next, _) = gw
        .sidecar
        .wait_for_serial_change(&current.serial_hex, ttl * 2)
        .await
        .unwrap();
    let seen_at = OffsetDateTime::now_utc();
    let issued = lab
        .fetch_x509(&gw_registered.caller)
        .await
        .unwrap()
        .into_iter()
        .find(|s| {
            meshproof::target::lab::envoy::normalize_serial(&s.serial_hex()) == next.serial_hex
        })
        .map(|s| s.validity().unwrap().0 + SPIRE_BACKDATE);
    if let Some(issued) = issued {
        let lag = (seen_at - issued).as_seconds_f64();
        println!(
            "[renewal] gateway-api: SVID {} issued at {issued}, served by Envoy {lag:.2} s later (TTL {ttl:?}: renewed at half of its 30 s lifetime)",
            next.serial_hex
        );
        assert!(
            lag < 6.0,
            "Envoy served the renewal {lag:.1} s after issuance"
        );
    } else {
        println!(
            "[renewal] gateway-api: Envoy serves {} (already superseded at the Workload API)",
            next.serial_hex
        );
    }

    // A deleted entry: SPIRE stops renewing policy-engine's SVID; Envoy keeps serving the last
    // one, and once it has expired no new handshake with policy-engine completes — neither as
    // a callee nor as a caller. (Connections opened before stay up: Envoy does not re-validate
    // a live connection, so only pairs with no pooled connection yet are probed after expiry.)
    let victim = lab.workload("policy-engine").unwrap().clone();
    lab.delete_entry(&victim.entry_id).await.unwrap();
    let deleted = Instant::now();
    let (refusal, gone) = lab.wait_for_no_identity(&victim.caller).await.unwrap();
    println!(
        "[deleted] policy-engine's entry deleted; the Workload API refuses it after {gone:?}: {refusal}"
    );
    let last = callee.served_leaf().await.unwrap().unwrap();
    let expires = parse_utc(last.expiration_time.as_deref().unwrap());
    // Before expiry, deletion alone cuts nothing: a new handshake still completes (RBAC denies).
    let early = call(&profile, "ingress-gateway", "policy-engine");
    if OffsetDateTime::now_utc() + Duration::from_secs(1) < expires {
        let o = send(&mesh, &early).await;
        assert!(
            o.outcome.is_rbac_denied(),
            "{}: {}",
            early.label(),
            o.outcome
        );
        println!(
            "[deleted] {} → {} while the last SVID ({}, until {expires}) is still valid",
            early.label(),
            o.outcome,
            last.serial_hex
        );
    }
    let wait = expires - OffsetDateTime::now_utc() + time::Duration::seconds(1);
    if wait.is_positive() {
        tokio::time::sleep(wait.unsigned_abs()).await;
    }
    let still = callee.served_leaf().await.unwrap();
    assert!(
        still
            .as_ref()
            .is_some_and(|c| c.serial_hex == last.serial_hex),
        "policy-engine's sidecar changed certificate after its entry was deleted: {still:?}"
    );
    // The harness's own client, with a valid SPIRE SVID, refuses the expired server certificate.
    let control = mesh_spire::fetch_svid(&lab, "orchestrator").await.unwrap();
    let o = mesh_spire::direct(
        &mesh,
        &lab.trust_bundle().await.unwrap(),
        "policy-engine",
        control.probe_identity(),
        "/ready",
    )
    .await
    .unwrap();
    assert!(
        matches!(
            o.outcome,
            Outcome::TlsRejected {
                by: RejectedBy::Client,
                ..
            }
        ),
        "a client accepted policy-engine's expired SVID: {}",
        o.outcome
    );
    println!(
        "[deleted] harness → policy-engine after expiry: {}",
        o.outcome
    );
    // Envoy to Envoy, on new connections: as a callee, and as a caller.
    for (from, to) in [
        ("test-service", "policy-engine"),
        ("identity-service", "policy-engine"),
        ("policy-engine", "gateway-api"),
        ("policy-engine", "test-service"),
    ] {
        let c = call(&profile, from, to);
        let caller_admin = mesh.caller(from).unwrap().sidecar.admin();
        let callee_admin = mesh.caller(to).unwrap().sidecar.admin();
        let (a0, b0) = (
            caller_admin.stats("ssl.").await.unwrap(),
            callee_admin.stats("ssl.").await.unwrap(),
        );
        let o = send(&mesh, &c).await;
        let (a1, b1) = (
            caller_admin.stats("ssl.").await.unwrap(),
            callee_admin.stats("ssl.").await.unwrap(),
        );
        let grew = |before: &std::collections::BTreeMap<String, u64>,
                    after: &std::collections::BTreeMap<String, u64>| {
            after
                .iter()
                .filter(|(k, v)| before.get(*k).copied().unwrap_or(0) < **v)
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
        };
        assert!(
            !o.outcome.is_success() && !o.outcome.is_rbac_denied(),
            "{}: a handshake with policy-engine's expired SVID must fail, got {}",
            c.label(),
            o.outcome
        );
        // The peer that validates policy-engine's certificate is the one that refused it.
        let (validator, grown) = if to == "policy-engine" {
            (from, grew(&a0, &a1))
        } else {
            (to, grew(&b0, &b1))
        };
        let refused: Vec<&String> = grown
            .iter()
            .filter(|k| k.contains("ssl.fail_verify_error="))
            .collect();
        assert!(
            !refused.is_empty(),
            "{}: {validator}'s Envoy did not count a verification failure (its ssl stats grew: {grown:?})",
            c.label()
        );
        println!(
            "[deleted] {} → {}; {validator}'s Envoy refused the expired SVID: {}",
            c.label(),
            o.outcome,
            refused
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let pooled = send(&mesh, &chain_call).await;
    println!(
        "[deleted] {:?} after the deletion ({:.1} s after the last SVID expired): {} on the connection opened before → {}",
        deleted.elapsed(),
        (OffsetDateTime::now_utc() - expires).as_seconds_f64(),
        chain_call.label(),
        pooled.outcome
    );

    // Nothing left running.
    mesh.shutdown().await;
    lab.shutdown().await.unwrap();
    // Killed processes leave /proc once the kernel has reaped them; under load that can take a
    // moment. Poll (bounded): a real leak still fails, a slow reap does not.
    let gone_by = std::time::Instant::now() + Duration::from_secs(10);
    let mut leftovers = processes(&root.to_string_lossy());
    while !leftovers.is_empty() && std::time::Instant::now() < gone_by {
        tokio::time::sleep(Duration::from_millis(100)).await;
        leftovers = processes(&root.to_string_lossy());
    }
    assert!(leftovers.is_empty(), "left running: {leftovers:?}");
    assert!(!root.exists(), "{} left behind", root.display());
}

/// `YYYY-MM-DDTHH:MM:SSZ`, as Envoy's `/certs` prints `expiration_time`.
fn parse_utc(text: &str) -> OffsetDateTime {
    let n = |r: std::ops::Range<usize>| -> i32 { text[r].parse().unwrap() };
    let date = time::Date::from_calendar_date(
        n(0..4),
        time::Month::try_from(u8::try_from(n(5..7)).unwrap()).unwrap(),
        u8::try_from(n(8..10)).unwrap(),
    )
    .unwrap();
    let clock = time::Time::from_hms(
        u8::try_from(n(11..13)).unwrap(),
        u8::try_from(n(14..16)).unwrap(),
        u8::try_from(n(17..19)).unwrap(),
    )
    .unwrap();
    assert!(text.ends_with('Z'), "{text}");
    time::PrimitiveDateTime::new(date, clock).assume_utc()
}

/// A sidecar that could never get an identity is refused at start, by name: a lab identity with
/// no registration entry, and a lab that cannot give sidecars their own uids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_without_a_spire_identity_is_refused_at_start() {
    let Some((bins, _)) = tools() else {
        return;
    };
    let mut profile = soma();
    let configured =
        meshproof::configured::load(&profile, &meshproof::configured::default_dir(&profile))
            .unwrap();
    let spire = profile.spire.as_mut().unwrap();
    let dropped = spire
        .entries
        .iter()
        .position(|e| e.service == "identity-service")
        .unwrap();
    let missing = spire.entries.remove(dropped).spiffe_id;
    let lab = SpireLab::start_with(bins.clone(), &profile, SpireLabConfig::default())
        .await
        .unwrap();
    if lab.isolation() == Isolation::Uid {
        let err = mesh_spire::start(&profile, &configured, &lab)
            .await
            .map(|m| m.sidecars.len())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&missing.to_string()) && err.contains("no SPIRE registration entry"),
            "{err}"
        );
        println!("[refused] {err}");
    }
    lab.shutdown().await.unwrap();

    let lab = SpireLab::start_with(
        bins,
        &soma(),
        SpireLabConfig {
            isolation: Some(Isolation::Path),
            ..SpireLabConfig::default()
        },
    )
    .await
    .unwrap();
    let err = mesh_spire::start(&soma(), &configured, &lab)
        .await
        .map(|m| m.sidecars.len())
        .unwrap_err()
        .to_string();
    assert!(err.contains("uid") && err.contains("root"), "{err}");
    println!("[refused] {err}");
    lab.shutdown().await.unwrap();
}

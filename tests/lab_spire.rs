//! The lab's SPIRE against real `spire-server` / `spire-agent` processes, registered from the
//! soma-agent-hub profile: what the runbook's section 3 promises (server running, an agent per
//! node, every workload registered and holding an SVID for exactly its ID), that renewal and CA
//! rotation really happen, and that each refusal (no entry, deleted entry, wrong selector, agent
//! down) is observable.
//!
//! Needs SPIRE (`scripts/setup` builds it). Without it every test prints
//! "spire not installed: run scripts/setup" and passes, unless MESHPROOF_REQUIRE_SPIRE=1.
//! Figures (start-up, propagation, renewal, rotation) are printed: run with `--nocapture`.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;
use time::OffsetDateTime;

use meshproof::profile::{self, Profile};
use meshproof::spiffe::{SpiffeId, TrustBundle, VerifiedSvid, validate_x509_svid_for};
use meshproof::target::lab::envoy::{AdminClient, EnvoyBinary};
use meshproof::target::lab::spire::{
    Caller, EntrySpec, Isolation, LabWorkload, SpireBinaries, SpireError, SpireLab, SpireLabConfig,
    Svid, sds_certificate, sds_cluster, sds_validation_context,
};

/// SPIRE backdates every SVID's notBefore by this much (clock skew allowance).
const SPIRE_BACKDATE: Duration = Duration::from_secs(10);

fn soma() -> Profile {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/soma-agent-hub/profile.yaml");
    profile::load(&path).unwrap()
}

fn spire() -> Option<SpireBinaries> {
    match SpireBinaries::locate() {
        Ok(bins) => Some(bins),
        Err(e) => {
            println!("spire not installed: run scripts/setup ({e})");
            assert!(
                std::env::var("MESHPROOF_REQUIRE_SPIRE").as_deref() != Ok("1"),
                "MESHPROOF_REQUIRE_SPIRE=1 but SPIRE is not installed: {e}"
            );
            None
        }
    }
}

async fn start(name: &str, config: SpireLabConfig) -> Option<(SpireLab, Profile)> {
    let bins = spire()?;
    let profile = soma();
    let lab = SpireLab::start_with(bins, &profile, config).await.unwrap();
    let t = lab.timings();
    println!(
        "[{name}] spire {} ({:?} isolation): server healthy in {:?}, {} agents attested in {:?}, {} entries in {:?}, all workloads served {:?} after the first create",
        lab.binaries().server_version,
        lab.isolation(),
        t.server_healthy,
        lab.agent_count(),
        t.agents_attested,
        lab.workloads().len(),
        t.entries_created,
        t.workloads_served
    );
    Some((lab, profile))
}

fn validate(svid: &Svid, bundle: &TrustBundle, expected: &SpiffeId) -> VerifiedSvid {
    validate_x509_svid_for(
        &svid.chain_der,
        bundle,
        OffsetDateTime::now_utc(),
        Some(expected),
    )
    .unwrap_or_else(|e| panic!("SVID for {expected} does not validate: {e}"))
}

/// The one SVID a workload holds, which must be for `expected`.
async fn only_svid(lab: &SpireLab, caller: &Caller, expected: &SpiffeId) -> Svid {
    let svids = lab.fetch_x509(caller).await.unwrap();
    let ids: Vec<String> = svids.iter().map(|s| s.spiffe_id.to_string()).collect();
    assert_eq!(
        ids,
        [expected.to_string()],
        "{} holds {ids:?}",
        caller.label
    );
    svids.into_iter().next().unwrap()
}

fn assert_no_identity(result: Result<Vec<Svid>, SpireError>, who: &str) -> String {
    match result {
        Err(e @ SpireError::NoIdentity { .. }) => {
            let text = e.to_string();
            assert!(text.contains("no identity issued"), "{text}");
            text
        }
        Ok(svids) => panic!(
            "{who} got {:?}, expected no identity",
            svids
                .iter()
                .map(|s| s.spiffe_id.to_string())
                .collect::<Vec<_>>()
        ),
        Err(e) => panic!("{who}: expected a no-identity refusal, got: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spire_issues_every_profile_identity() {
    let Some((lab, profile)) = start("identities", SpireLabConfig::default()).await else {
        return;
    };
    println!(
        "[identities] report: {}",
        serde_json::to_string(&lab.report()).unwrap()
    );
    let health = lab.healthcheck().await.unwrap();
    assert!(health.healthy, "{health:?}");

    // Every agent attested by join token, not banned, still renewing; no token in sight.
    let agents = lab.agents().await.unwrap();
    let now = OffsetDateTime::now_utc();
    for i in 0..lab.agent_count() {
        let id = lab.agent_spiffe_id(i).unwrap();
        let agent = agents
            .iter()
            .find(|a| a.spiffe_id == id)
            .unwrap_or_else(|| panic!("agent {i} ({id}) not in {agents:?}"));
        assert_eq!(agent.attestation_type, "join_token");
        assert!(!agent.banned && !agent.expired_at(now), "{agent:?}");
        assert!(lab.agent_healthcheck(i).await.unwrap().healthy);
    }
    assert!(lab.agent_count() >= 2);
    for agent in &agents {
        assert!(
            agent.spiffe_id.contains("/join_token/redacted-agent-"),
            "agent ID not redacted: {}",
            agent.spiffe_id
        );
    }

    // Join tokens: consumed files gone, private dir closed, and every ID that embeds a token
    // (agents, node alias entries) shows the redaction label instead.
    let root = lab.workloads()[0]
        .caller
        .exe
        .ancestors()
        .nth(3)
        .unwrap()
        .to_owned();
    let private = root.join("private");
    assert_eq!(mode(&private), 0o700);
    assert_eq!(mode(&root), 0o711);
    for i in 0..lab.agent_count() {
        let token_file = private.join(format!("agent-{i}")).join("join-token");
        assert!(!token_file.exists(), "{} left behind", token_file.display());
    }

    // Every profile entry registered, under its agent's node alias, with the lab's selector/TTL.
    let entries = lab.entries().await.unwrap();
    for entry in &entries {
        for text in std::iter::once(&entry.parent_id).chain(&entry.selectors) {
            if let Some((_, token)) = text.split_once("/join_token/") {
                assert!(token.starts_with("redacted-agent-"), "unredacted: {text}");
            }
        }
    }
    let spire = profile.spire.as_ref().unwrap();
    assert_eq!(lab.workloads().len(), spire.entries.len());
    for promised in &spire.entries {
        let workload = lab.workload(&promised.service).unwrap();
        let entry = entries
            .iter()
            .find(|e| e.spiffe_id == promised.spiffe_id.to_string())
            .unwrap_or_else(|| panic!("no entry for {}", promised.spiffe_id));
        assert_eq!(entry.parent_id, workload.parent_id.to_string());
        assert_eq!(entry.selectors, workload.selectors);
        assert_eq!(entry.x509_svid_ttl, Some(lab.config().x509_svid_ttl));
        assert_eq!(workload.profile_ttl, promised.ttl);
    }
    // Distinct Kubernetes workloads stay distinct lab workloads.
    let mut selectors: Vec<_> = lab.workloads().iter().map(|w| &w.selectors).collect();
    selectors.dedup();
    assert_eq!(selectors.len(), lab.workloads().len());

    // Each workload fetches exactly its own ID, valid against the server's bundle, with the lab TTL.
    let bundle = lab.trust_bundle().await.unwrap();
    let ttl = lab.config().x509_svid_ttl;
    for workload in lab.workloads() {
        let svid = only_svid(&lab, &workload.caller, &workload.spiffe_id).await;
        let verified = validate(&svid, &bundle, &workload.spiffe_id);
        // The workload's own delivered bundle validates it too.
        validate(&svid, &svid.trust_bundle().unwrap(), &workload.spiffe_id);
        let lifetime = svid.lifetime().unwrap();
        assert!(
            lifetime >= ttl && lifetime <= ttl + SPIRE_BACKDATE + Duration::from_secs(1),
            "{}: lifetime {lifetime:?} for TTL {ttl:?}",
            workload.service
        );
        println!(
            "[identities] {} ({} on agent {}) → {} serial {} lifetime {:?} (TTL {:?} + {:?} backdate; profile TTL {:?})",
            workload.service,
            workload.selectors.join(","),
            workload.caller.agent,
            verified.spiffe_id,
            verified.serial_hex,
            lifetime,
            ttl,
            SPIRE_BACKDATE,
            workload.profile_ttl
        );
        // Entries are node-scoped: the same process asking the other agent gets nothing.
        let elsewhere = Caller {
            agent: (workload.caller.agent + 1) % lab.agent_count(),
            ..workload.caller.clone()
        };
        assert_no_identity(
            lab.fetch_x509(&elsewhere).await,
            "workload on the wrong node",
        );
    }

    // A new entry reaches its workload within the agent's sync.
    let newcomer = lab.new_caller("newcomer", 0).unwrap();
    let id =
        SpiffeId::parse("spiffe://soma-agent-hub.local/ns/soma-agent-hub/sa/newcomer").unwrap();
    assert_no_identity(
        lab.fetch_x509(&newcomer).await,
        "newcomer before registration",
    );
    let created = Instant::now();
    lab.create_entry(&EntrySpec {
        spiffe_id: id.clone(),
        agent: 0,
        selectors: newcomer.selectors(),
        x509_svid_ttl: Some(ttl),
    })
    .await
    .unwrap();
    let (svids, waited) = lab.wait_for_svid(&newcomer, &id).await.unwrap();
    validate(&svids[0], &bundle, &id);
    println!(
        "[identities] new entry reached its workload {:?} after `entry create` returned ({:?} including the create)",
        waited,
        created.elapsed()
    );

    envoy_gets_its_svid_over_sds(&lab).await;
    lab.shutdown().await.unwrap();
    assert!(!root.exists(), "{} left behind", root.display());
}

/// A minimal Envoy, run as the workload, takes its certificate from the agent over SDS.
async fn envoy_gets_its_svid_over_sds(lab: &SpireLab) {
    let envoy = match EnvoyBinary::locate() {
        Ok(envoy) => envoy,
        Err(e) => {
            println!("[identities] envoy not installed, SDS delivery not checked: {e}");
            return;
        }
    };
    if lab.isolation() != Isolation::Uid {
        println!(
            "[identities] not root: Envoy cannot run as a workload uid, SDS delivery not checked"
        );
        return;
    }
    let workload = &lab.workloads()[1];
    let caller = &workload.caller;
    let socket = lab.agent_socket(caller.agent).unwrap();
    let bin = lab.expose_binary(envoy.path()).unwrap();
    let dir = lab.caller_dir(caller).unwrap();
    let tls = json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "common_tls_context": {
                "tls_certificate_sds_secret_configs": [sds_certificate(&workload.spiffe_id)],
                "validation_context_sds_secret_config": sds_validation_context(lab.trust_domain())
            }
        }
    });
    let bootstrap = json!({
        "node": { "id": workload.service, "cluster": "soma-agent-hub" },
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } } },
        "static_resources": {
            "clusters": [
                sds_cluster(socket),
                {
                    "name": "peer",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": { "cluster_name": "peer", "endpoints": [{ "lb_endpoints": [{
                        "endpoint": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": 9 } } }
                    }] }] },
                    "transport_socket": tls
                }
            ]
        }
    });
    let before = lab.fetch_x509(caller).await.unwrap();
    let bootstrap_path = dir.join("bootstrap.json");
    std::fs::write(&bootstrap_path, serde_json::to_vec(&bootstrap).unwrap()).unwrap();
    std::os::unix::fs::chown(&bootstrap_path, Some(caller.uid), Some(caller.gid)).unwrap();
    let admin_path = dir.join("admin-address");
    let started = Instant::now();
    let mut child = tokio::process::Command::new(&bin)
        .arg("-c")
        .arg(&bootstrap_path)
        .args([
            "--disable-hot-restart",
            "--concurrency",
            "1",
            "--log-level",
            "warning",
        ])
        .arg("--base-id")
        .arg(std::process::id().to_string())
        .arg("--admin-address-path")
        .arg(&admin_path)
        .arg("--log-path")
        .arg(dir.join("envoy.log"))
        .current_dir(&dir)
        .uid(caller.uid)
        .gid(caller.gid)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let admin = loop {
        if let Ok(text) = std::fs::read_to_string(&admin_path) {
            if let Ok(addr) = text.trim().parse() {
                break AdminClient::new(addr);
            }
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "envoy exited: {}",
            envoy_log(&dir)
        );
        assert!(
            Instant::now() < deadline,
            "envoy admin never came up: {}",
            envoy_log(&dir)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let served = loop {
        let leaves = admin.served_leaves().await.unwrap_or_default();
        if let Some(leaf) = leaves
            .into_iter()
            .find(|c| c.uri_sans.contains(&workload.spiffe_id.to_string()))
        {
            break leaf;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "envoy exited: {}",
            envoy_log(&dir)
        );
        assert!(
            Instant::now() < deadline,
            "envoy never showed {} in /certs: {}",
            workload.spiffe_id,
            envoy_log(&dir)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The same certificate the Workload API hands this workload (the one before or, if it
    // renewed meanwhile, the one after).
    let after = lab.fetch_x509(caller).await.unwrap();
    let api_serials = [before[0].serial_hex(), after[0].serial_hex()];
    assert!(
        api_serials.contains(&served.serial_hex),
        "envoy serves {} but the Workload API handed out {api_serials:?}",
        served.serial_hex
    );
    println!(
        "[identities] envoy {} (uid {}) shows {} serial {} from SDS {:?} after spawn (Workload API serials {:?})",
        envoy.version(),
        caller.uid,
        workload.spiffe_id,
        served.serial_hex,
        started.elapsed(),
        api_serials
    );
    child.kill().await.unwrap();
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn envoy_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("envoy.log")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn svids_renew_before_they_expire() {
    let Some((lab, _)) = start("renewal", SpireLabConfig::default()).await else {
        return;
    };
    let workload = &lab.workloads()[0];
    let bundle = lab.trust_bundle().await.unwrap();
    let first = only_svid(&lab, &workload.caller, &workload.spiffe_id).await;
    let (not_before, not_after) = first.validity().unwrap();
    let issued = not_before + SPIRE_BACKDATE;
    let ttl = lab.config().x509_svid_ttl;
    // Bounded by the SVID's own expiry: renewal must happen before it, or the test fails.
    let renewed = loop {
        let svid = only_svid(&lab, &workload.caller, &workload.spiffe_id).await;
        let now = OffsetDateTime::now_utc();
        if svid.serial_hex() != first.serial_hex() {
            break (svid, now);
        }
        assert!(
            now < not_after,
            "{}: SVID {} expired at {not_after} without being renewed",
            workload.service,
            first.serial_hex()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (svid, seen_at) = renewed;
    validate(&svid, &bundle, &workload.spiffe_id);
    let (new_not_before, _) = svid.validity().unwrap();
    let new_issued = new_not_before + SPIRE_BACKDATE;
    assert!(new_issued < not_after, "renewed only after expiry");
    println!(
        "[renewal] {}: SVID {} issued {issued}, TTL {ttl:?}; successor {} issued {:.1}s after it ({:.0}% of the TTL), seen by the workload {:.1}s after issuance, {:.1}s before the old one expired",
        workload.service,
        first.serial_hex(),
        svid.serial_hex(),
        (new_issued - issued).as_seconds_f64(),
        (new_issued - issued).as_seconds_f64() / ttl.as_secs_f64() * 100.0,
        (seen_at - issued).as_seconds_f64(),
        (not_after - seen_at).as_seconds_f64(),
    );
    lab.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_observable() {
    let Some((mut lab, _)) = start("refusals", SpireLabConfig::default()).await else {
        return;
    };
    let td = lab.trust_domain().clone();
    let ttl = Some(lab.config().x509_svid_ttl);

    // A workload no entry names gets no SVID.
    let stranger = lab.new_caller("stranger", 0).unwrap();
    let refusal = assert_no_identity(lab.fetch_x509(&stranger).await, "stranger");
    println!("[refusals] unregistered workload: {refusal}");

    // Wrong selector: an entry that also demands a gid the workload does not have. A control
    // entry created at the same moment proves the agent has synced both before we judge.
    let wrong = lab.new_caller("wrong-selector", 0).unwrap();
    let control = lab.new_caller("control", 0).unwrap();
    let wrong_id = SpiffeId::from_segments(&td, &["ns", "lab", "sa", "wrong-selector"]).unwrap();
    let control_id = SpiffeId::from_segments(&td, &["ns", "lab", "sa", "control"]).unwrap();
    let mut selectors = wrong.selectors();
    selectors.push(wrong.mismatching_selector());
    lab.create_entry(&EntrySpec {
        spiffe_id: wrong_id.clone(),
        agent: 0,
        selectors: selectors.clone(),
        x509_svid_ttl: ttl,
    })
    .await
    .unwrap();
    lab.create_entry(&EntrySpec {
        spiffe_id: control_id.clone(),
        agent: 0,
        selectors: control.selectors(),
        x509_svid_ttl: ttl,
    })
    .await
    .unwrap();
    lab.wait_for_svid(&control, &control_id).await.unwrap();
    let refusal = assert_no_identity(lab.fetch_x509(&wrong).await, "wrong selector");
    println!("[refusals] entry with selectors {selectors:?}: {refusal}");

    // An entry deleted: its workload loses the SVID at the agent's next sync.
    let victim = lab.workload("policy-engine").unwrap().clone();
    only_svid(&lab, &victim.caller, &victim.spiffe_id).await;
    lab.delete_entry(&victim.entry_id).await.unwrap();
    assert!(
        !lab.entries()
            .await
            .unwrap()
            .iter()
            .any(|e| e.id == victim.entry_id)
    );
    let (refusal, waited) = lab.wait_for_no_identity(&victim.caller).await.unwrap();
    println!(
        "[refusals] entry of {} deleted: identity gone after {waited:?}: {refusal}",
        victim.service
    );

    // An agent stopped: its own healthcheck fails at once, the server keeps healthy, the
    // agent's workloads cannot reach the Workload API, and `agent list` shows the agent's SVID
    // running out (it can no longer renew).
    let down = 1;
    let on_down: Vec<_> = lab
        .workloads()
        .iter()
        .filter(|w| w.caller.agent == down)
        .cloned()
        .collect();
    let down_id = lab.agent_spiffe_id(down).unwrap();
    lab.stop_agent(down).await.unwrap();
    let stopped = Instant::now();
    let health = lab.agent_healthcheck(down).await.unwrap();
    assert!(!health.healthy, "{health:?}");
    assert!(lab.healthcheck().await.unwrap().healthy);
    match lab.fetch_x509(&on_down[0].caller).await {
        Err(SpireError::Command { output, .. }) => {
            println!("[refusals] agent {down} stopped; its workload's fetch: {output}");
        }
        other => panic!("fetch through a stopped agent: {other:?}"),
    }
    println!(
        "[refusals] agent {down} stopped; its healthcheck: {}",
        health.message
    );
    let deadline = stopped + lab.config().x509_svid_ttl + Duration::from_secs(15);
    let expired_after = loop {
        let agents = lab.agents().await.unwrap();
        let agent = agents.iter().find(|a| a.spiffe_id == down_id).unwrap();
        if agent.expired_at(OffsetDateTime::now_utc()) {
            break stopped.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "agent {down} still current: {agent:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!(
        "[refusals] agent list shows agent {down}'s SVID expired {expired_after:?} after the stop"
    );
    let restarted = lab.start_agent(down).await.unwrap();
    let new_id = lab.agent_spiffe_id(down).unwrap();
    assert_ne!(
        new_id, down_id,
        "an expired join-token agent needs a new token"
    );
    for workload in on_down.iter().filter(|w| w.service != victim.service) {
        lab.wait_for_svid(&workload.caller, &workload.spiffe_id)
            .await
            .unwrap();
    }
    println!(
        "[refusals] agent {down} re-attested as {new_id} in {restarted:?}; its workloads hold SVIDs again"
    );

    // The server stopped: agents keep serving cached SVIDs; restarted, it is healthy again.
    lab.stop_server().await.unwrap();
    assert!(!lab.healthcheck().await.unwrap().healthy);
    let cached = &lab.workloads()[0];
    only_svid(&lab, &cached.caller, &cached.spiffe_id).await;
    let back = lab.start_server().await.unwrap();
    println!(
        "[refusals] server restarted healthy in {back:?}; workloads kept their SVIDs meanwhile"
    );

    // A short agent restart resumes with the cached SVID: same agent ID, no new token.
    let before = lab.agent_spiffe_id(0).unwrap();
    lab.stop_agent(0).await.unwrap();
    let resumed = lab.start_agent(0).await.unwrap();
    assert_eq!(lab.agent_spiffe_id(0).unwrap(), before);
    let w = lab
        .workloads()
        .iter()
        .find(|w| w.caller.agent == 0)
        .unwrap();
    lab.wait_for_svid(&w.caller, &w.spiffe_id).await.unwrap();
    println!("[refusals] agent 0 restarted on its cached SVID in {resumed:?} (same agent ID)");
    lab.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authority_rotation_moves_svids() {
    // A longer CA TTL than the default so SPIRE's own schedule (prepare at 1/2, activate at 5/6
    // of ca_ttl) cannot interleave with the manual drill.
    let config = SpireLabConfig {
        ca_ttl: Duration::from_secs(600),
        ..SpireLabConfig::default()
    };
    let Some((lab, _)) = start("rotation", config).await else {
        return;
    };
    let workloads: Vec<_> = lab.workloads().to_vec();
    let states = lab.localauthority_x509_show().await.unwrap();
    let old = states.active.clone().unwrap().authority_id;
    assert!(states.prepared.is_none(), "{states:?}");
    for w in &workloads {
        let svid = only_svid(&lab, &w.caller, &w.spiffe_id).await;
        assert_eq!(svid.authority_id().as_deref(), Some(old.as_str()));
    }

    // prepare: a new authority joins the bundle, signs nothing yet.
    let t = Instant::now();
    let prepared = lab.localauthority_x509_prepare().await.unwrap();
    let new = prepared.authority_id.clone();
    assert_ne!(new, old);
    let bundle = lab.bundle_show().await.unwrap();
    assert!(bundle.contains(&old) && bundle.contains(&new), "{bundle:?}");
    let in_bundles = wait_all(
        &lab,
        &workloads,
        "the prepared authority in every workload bundle",
        |s| s.bundle_der.iter().any(|d| authority_of_root(d) == new),
    )
    .await;
    println!(
        "[rotation] prepare {new}: in the server bundle at once, in every workload's bundle after {in_bundles:?} (total {:?})",
        t.elapsed()
    );

    // activate: the new authority signs; the old one is `old`.
    let t = Instant::now();
    lab.localauthority_x509_activate(&new).await.unwrap();
    let states = lab.localauthority_x509_show().await.unwrap();
    assert_eq!(
        states.active.as_ref().map(|a| a.authority_id.as_str()),
        Some(new.as_str())
    );
    assert_eq!(
        states.old.as_ref().map(|a| a.authority_id.as_str()),
        Some(old.as_str())
    );
    let still_old = count_signed_by(&lab, &workloads, &old).await;
    println!(
        "[rotation] activate {new}: active after {:?}; {still_old}/{} workloads still hold SVIDs from {old} (renewal moves them)",
        t.elapsed(),
        workloads.len()
    );

    // taint: agents re-issue everything the old authority signed.
    let t = Instant::now();
    lab.localauthority_x509_taint(&old).await.unwrap();
    let bundle = lab.bundle_show().await.unwrap();
    assert!(bundle.authority(&old).unwrap().tainted);
    assert!(!bundle.authority(&new).unwrap().tainted);
    let moved = wait_all(
        &lab,
        &workloads,
        "every SVID signed by the new authority",
        |s| s.authority_id().as_deref() == Some(new.as_str()),
    )
    .await;
    println!(
        "[rotation] taint {old}: every workload's SVID signed by {new} after {moved:?} (total {:?})",
        t.elapsed()
    );

    // revoke: the old authority leaves the bundle, at the server and in every workload's view.
    let t = Instant::now();
    lab.localauthority_x509_revoke(&old).await.unwrap();
    let bundle = lab.bundle_show().await.unwrap();
    assert!(
        !bundle.contains(&old) && bundle.contains(&new),
        "{bundle:?}"
    );
    let gone = wait_all(
        &lab,
        &workloads,
        "the revoked authority gone from every bundle",
        |s| !s.bundle_der.iter().any(|d| authority_of_root(d) == old),
    )
    .await;
    println!(
        "[rotation] revoke {old}: gone from the server bundle at once, from every workload's bundle after {gone:?} (total {:?})",
        t.elapsed()
    );

    let trust = lab.trust_bundle().await.unwrap();
    for w in &workloads {
        let svid = only_svid(&lab, &w.caller, &w.spiffe_id).await;
        validate(&svid, &trust, &w.spiffe_id);
    }
    lab.shutdown().await.unwrap();
}

fn authority_of_root(der: &[u8]) -> String {
    meshproof::target::lab::spire::cli::subject_key_id(der).unwrap_or_default()
}

async fn count_signed_by(lab: &SpireLab, workloads: &[LabWorkload], authority: &str) -> usize {
    let mut n = 0;
    for w in workloads {
        let svid = only_svid(lab, &w.caller, &w.spiffe_id).await;
        if svid.authority_id().as_deref() == Some(authority) {
            n += 1;
        }
    }
    n
}

/// Polls every workload until `done` holds for its SVID; returns how long that took.
async fn wait_all(
    lab: &SpireLab,
    workloads: &[LabWorkload],
    what: &str,
    done: impl Fn(&Svid) -> bool,
) -> Duration {
    let start = Instant::now();
    let deadline = start + lab.config().wait;
    let mut pending: Vec<_> = workloads.iter().collect();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for w in pending {
            let svid = only_svid(lab, &w.caller, &w.spiffe_id).await;
            if !done(&svid) {
                still.push(w);
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {:?} pending",
            pending.iter().map(|w| &w.service).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    start.elapsed()
}

/// The non-root fallback, forced: workloads told apart by their own binary path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_isolation_tells_workloads_apart() {
    let config = SpireLabConfig {
        isolation: Some(Isolation::Path),
        ..SpireLabConfig::default()
    };
    let Some((lab, _)) = start("path", config).await else {
        return;
    };
    let bundle = lab.trust_bundle().await.unwrap();
    let mut paths = Vec::new();
    for w in lab.workloads() {
        assert_eq!(w.selectors.len(), 1);
        assert!(
            w.selectors[0].starts_with("unix:path:"),
            "{:?}",
            w.selectors
        );
        let svid = only_svid(&lab, &w.caller, &w.spiffe_id).await;
        validate(&svid, &bundle, &w.spiffe_id);
        paths.push(w.caller.exe.clone());
    }
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), lab.workloads().len());
    // Same uid, same binary content, another path: no identity.
    let other = lab.new_caller("copy-without-entry", 0).unwrap();
    assert_no_identity(lab.fetch_x509(&other).await, "unregistered binary path");
    println!(
        "[path] {} workloads told apart by unix:path (e.g. {}); an unregistered link gets nothing",
        lab.workloads().len(),
        lab.workloads()[0].selectors[0]
    );
    lab.shutdown().await.unwrap();
}

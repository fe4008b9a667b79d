//! Profiles: both runbooks load, and each class of malformed profile is refused with file:line and
//! the expected form — never a panic.

use std::path::{Path, PathBuf};

use meshproof::profile::{self, Decision, IdentityProvider};

fn bundled(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("manifests")
        .join(name)
        .join("profile.yaml")
}

fn text(name: &str) -> String {
    std::fs::read_to_string(bundled(name)).unwrap()
}

/// Parses a mutated copy of a bundled profile and returns the single-line error text.
fn refused(name: &str, from: &str, to: &str) -> String {
    let original = text(name);
    assert!(
        original.contains(from),
        "mutation anchor {from:?} not in {name}"
    );
    let mutated = original.replacen(from, to, 1);
    let err = profile::parse(Path::new("mutant/profile.yaml"), &mutated)
        .expect_err("mutant must be refused");
    let message = err.to_string();
    assert!(
        message.starts_with("mutant/profile.yaml:"),
        "error names the file: {message}"
    );
    message
}

fn line_of(message: &str) -> u32 {
    message
        .split(':')
        .nth(1)
        .and_then(|l| l.parse().ok())
        .unwrap_or(0)
}

#[test]
fn tradepulse_profile_encodes_the_runbook() {
    let p = profile::load(&bundled("tradepulse")).unwrap();
    assert_eq!(p.trust_domain.as_str(), "tradepulse");
    assert_eq!(p.provider, IdentityProvider::IstioCa);
    assert_eq!(p.environments, ["dev", "staging", "prod"]);
    let names: Vec<&str> = p.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["ingestion", "strategy", "execution", "ui", "observability"]
    );
    let ids: Vec<String> = p
        .identities()
        .iter()
        .map(|i| i.spiffe_id.to_string())
        .collect();
    assert!(ids.contains(&"spiffe://tradepulse/prod/strategy/optimizer".to_owned()));
    assert!(ids.contains(&"spiffe://tradepulse/dev/execution".to_owned()));
    // 5 families + 2 strategy workloads, in 3 environments.
    assert_eq!(ids.len(), 21);
    assert_eq!(p.ca.workload_ttl.as_secs(), 12 * 3600);
    assert!(p.ca.intermediate_validity >= p.ca.rotate_every + p.ca.overlap);
    let denied = |from: &str, to: &str| {
        p.intents
            .iter()
            .any(|i| i.decision == Decision::Deny && i.from == from && i.to == to)
    };
    assert!(
        denied("ui", "execution")
            && denied("strategy", "execution")
            && denied("execution", "ingestion")
    );
}

#[test]
fn soma_profile_encodes_the_runbook() {
    let p = profile::load(&bundled("soma-agent-hub")).unwrap();
    assert_eq!(p.trust_domain.as_str(), "soma-agent-hub.local");
    assert_eq!(p.provider, IdentityProvider::Spire);
    assert_eq!(
        p.identity_of("gateway-api").unwrap().to_string(),
        "spiffe://soma-agent-hub.local/ns/soma-agent-hub/sa/gateway-api"
    );
    let port = |s: &str| p.service(s).unwrap().ports[0].port;
    assert_eq!(
        (
            port("gateway-api"),
            port("orchestrator"),
            port("policy-engine")
        ),
        (10000, 10001, 10020)
    );
    let spire = p.spire.as_ref().unwrap();
    assert!(spire.entries.iter().all(|e| e.ttl.as_secs() == 3600));
    let admission = p.admission.as_ref().unwrap();
    let kinds: Vec<&str> = admission.policies.iter().map(|a| a.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "K8sRequiredRegistry",
            "K8sBlockPrivileged",
            "K8sRequiredResources",
            "K8sRequiredLabels"
        ]
    );
}

#[test]
fn malformed_yaml_is_refused_with_its_line() {
    let m = refused(
        "tradepulse",
        "  trustDomain: tradepulse\n",
        "  trustDomain: [tradepulse\n",
    );
    assert!(line_of(&m) > 0, "{m}");
}

#[test]
fn an_unknown_key_is_refused_with_its_line() {
    let m = refused(
        "tradepulse",
        "  mtls: STRICT\n",
        "  mtls: STRICT\n  mtlsMode: STRICT\n",
    );
    assert!(m.contains("mtlsMode"), "{m}");
    assert!(line_of(&m) > 0, "{m}");
}

#[test]
fn an_intent_naming_an_unknown_service_is_refused() {
    let m = refused(
        "tradepulse",
        "{ from: ui, to: strategy,",
        "{ from: ui, to: stratgy,",
    );
    assert!(
        m.contains("unknown service \"stratgy\"") && m.contains("expected one of ingestion"),
        "{m}"
    );
    let line = text("tradepulse")
        .lines()
        .position(|l| l.contains("{ from: ui, to: strategy,"))
        .unwrap()
        + 1;
    assert_eq!(line_of(&m), line as u32, "{m}");
}

#[test]
fn a_spiffe_id_breaking_the_schema_is_refused() {
    let m = refused(
        "soma-agent-hub",
        "spiffeId: spiffe://soma-agent-hub.local/ns/soma-agent-hub/sa/orchestrator",
        "spiffeId: spiffe://soma-agent-hub.local/ns/soma-agent-hub/orchestrator",
    );
    assert!(
        m.contains("breaks the profile's schema")
            && m.contains(
                "expected spiffe://soma-agent-hub.local/ns/soma-agent-hub/sa/orchestrator"
            ),
        "{m}"
    );
}

#[test]
fn an_invalid_spiffe_id_is_refused() {
    let m = refused(
        "soma-agent-hub",
        "spiffeId: spiffe://soma-agent-hub.local/ns/soma-agent-hub/sa/orchestrator",
        "spiffeId: spiffe://soma-agent-hub.local/ns/../sa/orchestrator",
    );
    assert!(m.contains("is invalid"), "{m}");
}

#[test]
fn a_ttl_over_the_policy_is_refused() {
    let m = refused("tradepulse", "ttl: 12h", "ttl: 45d");
    assert!(
        m.contains("workload ttl 45d is longer than the intermediate overlap 30d"),
        "{m}"
    );
}

#[test]
fn an_unparseable_ttl_is_refused() {
    let m = refused("tradepulse", "ttl: 12h", "ttl: 12 hours");
    assert!(m.contains("expected s, m, h or d"), "{m}");
}

#[test]
fn an_overlap_that_leaves_a_gap_is_refused() {
    let m = refused("tradepulse", "validity: 395d", "validity: 366d");
    assert!(
        m.contains("shorter than rotateEvery 365d plus overlap 30d"),
        "{m}"
    );
}

#[test]
fn contradicting_intents_are_refused() {
    let m = refused(
        "tradepulse",
        "    deny:\n",
        "    deny:\n      - { from: ingestion, to: strategy, endpoints: [features], reason: \"contradiction\" }\n",
    );
    assert!(m.contains("contradicts the allow intent"), "{m}");
}

#[test]
fn a_duplicate_service_is_refused() {
    let m = refused(
        "soma-agent-hub",
        "    - name: policy-engine\n",
        "    - name: orchestrator\n",
    );
    assert!(m.contains("defined twice"), "{m}");
}

#[test]
fn garbage_never_panics() {
    for garbage in [
        "",
        "---",
        "[]",
        "spec: 3",
        "\t\t:",
        "apiVersion: [",
        "a: &x [*x]",
    ] {
        assert!(profile::parse(Path::new("g.yaml"), garbage).is_err());
    }
}

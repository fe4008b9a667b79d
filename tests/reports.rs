//! The reporting layer end to end, on a run built in code (passing and failing checks, intents with
//! one widened access, certificates): every format is written and parses (JUnit checked strictly),
//! the evidence bundle verifies and every kind of tampering is reported, a private key in the run
//! folder is refused, the HTML renders in headless Chromium (screenshot kept in the run folder), and
//! the 10,000-result generation figure is printed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use meshproof::report::controls::Mapping;
use meshproof::report::evidence::{
    self, EvidenceError, KeySource, PublicKey, SignatureCheck, SigningKey,
};
use meshproof::report::{self, ReportError, ReportOptions, secrets};
use meshproof::results::{CheckResult, ProfileRef, RunResults, ScenarioResult, Status, StepResult};
use sha2::Digest as _;

// ---------------------------------------------------------------------------------------------
// The run under test

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn profile_ref(name: &str) -> ProfileRef {
    let file = root().join("manifests").join(name).join("profile.yaml");
    let bytes = std::fs::read(&file).unwrap();
    ProfileRef {
        name: name.into(),
        file: file.display().to_string(),
        sha256: sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    }
}

fn ev(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn check(
    id: &str,
    subject: &str,
    status: Status,
    summary: &str,
    evidence: &[(&str, &str)],
) -> CheckResult {
    CheckResult {
        check: id.into(),
        subject: subject.into(),
        status,
        summary: summary.into(),
        evidence: ev(evidence),
    }
}

fn intent(
    id: &str,
    from: &str,
    to: &str,
    method: &str,
    path: &str,
    expected: &str,
    observed: &str,
) -> CheckResult {
    let status = if expected == observed {
        Status::Passed
    } else {
        Status::Failed
    };
    check(
        id,
        &format!("{from} → {to} {method} {path}"),
        status,
        &format!("{from} → {to} {method} {path}: promised {expected}, observed {observed}"),
        &[
            ("from", from),
            ("to", to),
            ("method", method),
            ("path", path),
            ("expected", expected),
            ("observed", observed),
            (
                "decided_by",
                if observed == "deny" {
                    "envoy rbac: 403 RBAC: access denied"
                } else {
                    "envoy rbac: policy ns-allow"
                },
            ),
            ("mtls", "true"),
        ],
    )
}

fn scenario(
    file: &str,
    line: usize,
    profile: Option<&str>,
    name: &str,
    checks: Vec<CheckResult>,
) -> ScenarioResult {
    let status = if checks.iter().any(|c| c.status != Status::Passed) {
        Status::Failed
    } else {
        Status::Passed
    };
    let mut steps = Vec::new();
    if let Some(p) = profile {
        steps.push(StepResult {
            keyword: "Given ".into(),
            text: format!("the profile \"{p}\""),
            status: Status::Passed,
            error: None,
            duration: None,
        });
    }
    steps.push(StepResult {
        keyword: "Then ".into(),
        text: format!("{name} holds"),
        status,
        error: (status == Status::Failed).then(|| {
            checks
                .iter()
                .find(|c| c.status != Status::Passed)
                .map(|c| format!("{} {}: {}", c.check, c.subject, c.summary))
                .unwrap_or_default()
        }),
        duration: None,
    });
    ScenarioResult {
        feature: match file {
            "features/identity.feature" => "Workload identity (SPIFFE)",
            "features/pki.feature" => "Mesh certificate authority",
            "features/intents.feature" => "Service-to-service intents",
            "features/mtls.feature" => "Mutual TLS",
            _ => "Control plane",
        }
        .into(),
        file: file.into(),
        line,
        name: match profile {
            Some(p) => format!("{p} · {name}"),
            None => name.to_owned(),
        },
        tags: vec!["@checklist".into()],
        status,
        attempts: 1,
        duration: Duration::from_millis(12 + line as u64),
        steps,
        checks,
    }
}

fn svid(
    spiffe: &str,
    subject: &str,
    serial: &str,
    from: &str,
    to: &str,
    status: Status,
) -> CheckResult {
    let fingerprint = format!("{:0>64}", serial);
    check(
        "identity.svid",
        subject,
        status,
        &if status == Status::Passed {
            format!("valid X.509-SVID for {spiffe}, serial {serial}")
        } else {
            format!("certificate of {subject} expired: valid {from} to {to}")
        },
        &[
            ("spiffe_id", spiffe),
            ("serial", serial),
            ("sha256", &fingerprint),
            ("not_before", from),
            ("not_after", to),
        ],
    )
}

/// A run against both bundled profiles with passing and failing checks, one widened access, one
/// blocked path, certificates (one expired), a skipped step, a retried scenario, a harness-free
/// step failure and text that tries to inject HTML.
fn sample_run() -> RunResults {
    let soma = "soma-agent-hub";
    let tp = "tradepulse";
    let mut scenarios = vec![
        scenario(
            "features/identity.feature",
            18,
            Some(soma),
            "gateway-api presents a valid X.509-SVID",
            vec![svid(
                "spiffe://soma-agent-hub.local/ns/soma-agent-hub/sa/gateway-api",
                "gateway-api",
                "5a1e0c3d9b7f44e2a8c1d0e9f6b3a271",
                "2026-11-22T20:15:04Z",
                "2026-11-23T08:20:04Z",
                Status::Passed,
            )],
        ),
        scenario(
            "features/identity.feature",
            19,
            Some(soma),
            "orchestrator presents a valid X.509-SVID",
            vec![svid(
                "spiffe://soma-agent-hub.local/ns/soma-agent-hub/sa/orchestrator",
                "orchestrator",
                "0b2c4d6e8f10325476a8cbedf0123456",
                "2026-11-22T21:00:00Z",
                "2026-11-22T22:00:00Z",
                Status::Passed,
            )],
        ),
        scenario(
            "features/identity.feature",
            20,
            Some(tp),
            "strategy/optimizer@prod presents a valid X.509-SVID",
            vec![svid(
                "spiffe://tradepulse/prod/strategy/optimizer",
                "strategy/optimizer@prod",
                "403aab7ddaddeb7890895ae2d2d5cd33",
                "2026-11-22T21:15:04Z",
                "2026-11-23T09:20:04Z",
                Status::Passed,
            )],
        ),
        scenario(
            "features/identity.feature",
            21,
            Some(tp),
            "execution@prod presents a valid X.509-SVID",
            vec![svid(
                "spiffe://tradepulse/prod/execution",
                "execution@prod",
                "7f00aa11bb22cc33dd44ee55ff667788",
                "2026-11-21T08:00:00Z",
                "2026-11-21T20:00:00Z",
                Status::Failed,
            )],
        ),
        scenario(
            "features/identity.feature",
            30,
            None,
            "the SPIFFE ID specification refuses spiffe://tradepulse/prod//strategy",
            vec![check(
                "identity.spiffe-id-form",
                "spiffe://tradepulse/prod//strategy",
                Status::Passed,
                "refused: empty path segment",
                &[],
            )],
        ),
        scenario(
            "features/pki.feature",
            9,
            Some(tp),
            "the mesh CA hierarchy holds and fits the rotation policy",
            vec![
                check(
                    "pki.hierarchy",
                    tp,
                    Status::Passed,
                    "root → intermediate valid now",
                    &[
                        ("root", "O=TradePulse, CN=TradePulse Corporate Root CA"),
                        ("root_serial", "11aa"),
                        ("root_not_after", "2036-11-20T00:00:00Z"),
                        ("intermediate_serial", "22bb"),
                        ("intermediate_not_after", "2027-11-22T00:00:00Z"),
                    ],
                ),
                check(
                    "pki.rotation-policy",
                    tp,
                    Status::Passed,
                    "intermediate covers 365d + 30d overlap",
                    &[],
                ),
                check(
                    "pki.plugin-ca",
                    tp,
                    Status::Passed,
                    "ca-cert.pem, ca-key.pem (0600), root-cert.pem, cert-chain.pem",
                    &[],
                ),
            ],
        ),
        scenario(
            "features/intents.feature",
            14,
            Some(soma),
            "ingress-gateway → gateway-api behaves as promised",
            vec![
                intent(
                    "intent.live",
                    "ingress-gateway",
                    "gateway-api",
                    "GET",
                    "/ready",
                    "allow",
                    "allow",
                ),
                intent(
                    "intent.live",
                    "ingress-gateway",
                    "gateway-api",
                    "POST",
                    "/v1/probe",
                    "allow",
                    "allow",
                ),
                intent(
                    "intent.live",
                    "ingress-gateway",
                    "orchestrator",
                    "GET",
                    "/ready",
                    "deny",
                    "deny",
                ),
            ],
        ),
        scenario(
            "features/intents.feature",
            15,
            Some(soma),
            "gateway-api → orchestrator and policy-engine behave as promised",
            vec![
                intent(
                    "intent.live",
                    "gateway-api",
                    "orchestrator",
                    "GET",
                    "/ready",
                    "allow",
                    "allow",
                ),
                intent(
                    "intent.live",
                    "gateway-api",
                    "orchestrator",
                    "DELETE",
                    "/v1/probe",
                    "deny",
                    "deny",
                ),
                // The widened access: the runbook says policy-engine is reached via the orchestrator only.
                intent(
                    "intent.live",
                    "gateway-api",
                    "policy-engine",
                    "POST",
                    "/v1/probe",
                    "deny",
                    "allow",
                ),
                intent(
                    "intent.live",
                    "orchestrator",
                    "policy-engine",
                    "POST",
                    "/v1/probe",
                    "allow",
                    "allow",
                ),
                intent(
                    "intent.live",
                    "gateway-api",
                    "identity-service",
                    "GET",
                    "/v1/probe",
                    "allow",
                    "allow",
                ),
                // A promised path that is broken.
                intent(
                    "intent.live",
                    "test-service",
                    "gateway-api",
                    "GET",
                    "/ready",
                    "allow",
                    "deny",
                ),
            ],
        ),
        scenario(
            "features/intents.feature",
            16,
            Some(tp),
            "strategy → execution is configured as promised",
            vec![
                intent(
                    "intent.static",
                    "strategy",
                    "execution",
                    "GET",
                    "/quotes/probe",
                    "allow",
                    "allow",
                ),
                intent(
                    "intent.static",
                    "strategy",
                    "execution",
                    "POST",
                    "/orders/probe",
                    "deny",
                    "deny",
                ),
                intent(
                    "intent.static",
                    "ui",
                    "execution",
                    "GET",
                    "/oms/probe",
                    "deny",
                    "deny",
                ),
                intent(
                    "intent.static",
                    "ingestion",
                    "strategy",
                    "POST",
                    "/features/probe",
                    "allow",
                    "allow",
                ),
                // As `checks::verdict` records a failure today: no evidence, the finding says it all.
                check(
                    "intent.static",
                    "ui → execution POST /orders/probe",
                    Status::Failed,
                    "WIDENED ACCESS: ui → execution POST /orders/probe as spiffe://tradepulse/prod/ui is promised deny (default deny) but the manifests allow it: execution/allow-ui (authz.yaml:12)",
                    &[],
                ),
            ],
        ),
        scenario(
            "features/mtls.feature",
            8,
            Some(soma),
            "every hop requires mTLS",
            vec![
                check(
                    "mtls.strict",
                    "orchestrator",
                    Status::Passed,
                    "STRICT: peer spiffe://soma-agent-hub.local/ns/soma-agent-hub/sa/gateway-api",
                    &[("mode", "STRICT")],
                ),
                check(
                    "mtls.plaintext-rejected",
                    "orchestrator",
                    Status::Passed,
                    "plaintext client got an empty reply",
                    &[],
                ),
            ],
        ),
        scenario(
            "features/control-plane.feature",
            5,
            Some(soma),
            "the control plane is healthy",
            vec![
                check(
                    "control-plane.health",
                    "istiod",
                    Status::Passed,
                    "istiod ready",
                    &[("component", "istiod")],
                ),
                check(
                    "control-plane.health",
                    "ingress-gateway",
                    Status::Passed,
                    "ingress gateway ready",
                    &[("component", "ingress-gateway")],
                ),
            ],
        ),
        // Text that tries to break out of the HTML and the Markdown table.
        scenario(
            "features/control-plane.feature",
            9,
            Some(soma),
            "metrics <script>alert('x')</script> | exported",
            vec![check(
                "metrics.rbac",
                "policy-engine <img src=x onerror=alert(1)>",
                Status::Failed,
                "envoy_http_rbac_denied missing </td></tr></table><script>alert(2)</script> | `code`",
                &[("scrape", "http://127.0.0.1:15090/stats/prometheus")],
            )],
        ),
    ];
    // A step with no definition: skipped, never a pass.
    let mut skipped = scenario(
        "features/mtls.feature",
        20,
        Some(tp),
        "a foreign identity is refused",
        vec![],
    );
    skipped.status = Status::Skipped;
    skipped.steps[1].status = Status::Skipped;
    skipped.steps[1].error = None;
    scenarios.push(skipped);
    // A step that failed before any check could record a verdict.
    let mut broken = scenario(
        "features/mtls.feature",
        25,
        Some(soma),
        "plaintext is refused on every port",
        vec![],
    );
    broken.status = Status::Failed;
    broken.steps[1].status = Status::Failed;
    broken.steps[1].error =
        Some("connection refused: 127.0.0.1:10002 (lab sidecar not started)".into());
    scenarios.push(broken);
    // A flaky scenario that passed on its second attempt: counted once.
    let mut retried = scenario(
        "features/mtls.feature",
        30,
        Some(soma),
        "a foreign trust domain is refused",
        vec![check(
            "mtls.foreign-identity-rejected",
            "gateway-api",
            Status::Passed,
            "handshake refused: unknown trust domain evil.example",
            &[],
        )],
    );
    retried.attempts = 2;
    scenarios.push(retried);

    RunResults {
        run_id: "20261122-213000-test".into(),
        meshproof_version: "0.1.0".into(),
        target: "lab".into(),
        started: "2026-11-22T21:30:00Z".into(),
        duration: Duration::from_millis(1234),
        tags: Some("@checklist".into()),
        profiles: vec![profile_ref(tp), profile_ref(soma)],
        versions: BTreeMap::from([
            ("meshproof".to_owned(), "0.1.0".to_owned()),
            ("envoy".to_owned(), "1.40.0/BoringSSL".to_owned()),
            ("spire-server".to_owned(), "1.13.0".to_owned()),
        ]),
        scenarios,
        harness_errors: Vec::new(),
        bench: None,
        drills: Vec::new(),
    }
}

fn write_run(dir: &Path, key: Option<&SigningKey>) -> report::Written {
    let options = ReportOptions {
        versions: BTreeMap::from([("gator".to_owned(), "v3.23.1".to_owned())]),
        signing_key: key,
    };
    report::write_all_with(&sample_run(), dir, &options).expect("reports are written")
}

// ---------------------------------------------------------------------------------------------
// A strict little XML reader for the JUnit check (no XML crate in the dependency set)

#[derive(Debug, Default)]
struct Element {
    name: String,
    attrs: BTreeMap<String, String>,
    children: Vec<Element>,
}

impl Element {
    fn kids(&self, name: &str) -> Vec<&Element> {
        self.children.iter().filter(|c| c.name == name).collect()
    }

    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.get(name).map(String::as_str)
    }
}

fn check_entities(text: &str) -> Result<(), String> {
    let mut rest = text;
    while let Some(i) = rest.find('&') {
        let tail = &rest[i + 1..];
        let end = tail.find(';').ok_or("unterminated entity")?;
        let name = &tail[..end];
        let ok = matches!(name, "amp" | "lt" | "gt" | "quot" | "apos")
            || (name.starts_with("#x") && u32::from_str_radix(&name[2..], 16).is_ok())
            || (name.starts_with('#') && name[1..].parse::<u32>().is_ok());
        if !ok {
            return Err(format!("bad entity &{name};"));
        }
        rest = &tail[end + 1..];
    }
    if text.contains('<') {
        return Err("raw < in text".into());
    }
    Ok(())
}

/// Parses a whole document: one root element, balanced tags, quoted attributes without `<`, no
/// duplicate attributes, valid entities. Returns the root.
fn parse_xml(doc: &str) -> Result<Element, String> {
    let mut s = doc.trim_start_matches('\u{feff}');
    if let Some(rest) = s.strip_prefix("<?xml") {
        s = &rest[rest.find("?>").ok_or("unterminated XML declaration")? + 2..];
    }
    let mut stack: Vec<Element> = vec![Element::default()];
    loop {
        let Some(lt) = s.find('<') else {
            check_entities(s)?;
            if !s.trim().is_empty() {
                return Err("text after the root element".into());
            }
            break;
        };
        check_entities(&s[..lt])?;
        if stack.len() == 1 && !s[..lt].trim().is_empty() {
            return Err("text outside the root element".into());
        }
        s = &s[lt..];
        if let Some(rest) = s.strip_prefix("<!--") {
            s = &rest[rest.find("-->").ok_or("unterminated comment")? + 3..];
        } else if let Some(rest) = s.strip_prefix("<![CDATA[") {
            s = &rest[rest.find("]]>").ok_or("unterminated CDATA")? + 3..];
        } else if let Some(rest) = s.strip_prefix("</") {
            let end = rest.find('>').ok_or("unterminated end tag")?;
            let name = rest[..end].trim();
            let el = stack.pop().ok_or("unbalanced")?;
            if el.name != name || stack.is_empty() {
                return Err(format!("</{name}> closes <{}>", el.name));
            }
            stack.last_mut().ok_or("unbalanced")?.children.push(el);
            s = &rest[end + 1..];
        } else {
            let rest = &s[1..];
            let end = {
                // '>' outside quotes
                let mut quote = None;
                let mut at = None;
                for (i, c) in rest.char_indices() {
                    match (quote, c) {
                        (None, '"' | '\'') => quote = Some(c),
                        (Some(q), c) if c == q => quote = None,
                        (None, '>') => {
                            at = Some(i);
                            break;
                        }
                        _ => {}
                    }
                }
                at.ok_or("unterminated start tag")?
            };
            let mut inner = &rest[..end];
            let empty = inner.ends_with('/');
            if empty {
                inner = &inner[..inner.len() - 1];
            }
            let name_end = inner.find(char::is_whitespace).unwrap_or(inner.len());
            let name = &inner[..name_end];
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_alphanumeric() || "-_:.".contains(c))
            {
                return Err(format!("bad element name {name:?}"));
            }
            let mut el = Element {
                name: name.into(),
                ..Element::default()
            };
            let mut a = inner[name_end..].trim();
            while !a.is_empty() {
                let eq = a
                    .find('=')
                    .ok_or(format!("attribute without value in <{name}>"))?;
                let key = a[..eq].trim();
                let v = a[eq + 1..].trim_start();
                let q = v.chars().next().ok_or("missing attribute value")?;
                if q != '"' && q != '\'' {
                    return Err(format!("unquoted attribute {key} in <{name}>"));
                }
                let close = v[1..].find(q).ok_or("unterminated attribute")?;
                let value = &v[1..1 + close];
                check_entities(value)?;
                if el.attrs.insert(key.into(), value.into()).is_some() {
                    return Err(format!("duplicate attribute {key} in <{name}>"));
                }
                a = v[close + 2..].trim_start();
            }
            if empty {
                if stack.len() == 1 && !stack[0].children.is_empty() {
                    return Err("two root elements".into());
                }
                stack.last_mut().ok_or("unbalanced")?.children.push(el);
            } else {
                if stack.len() == 1 && !stack[0].children.is_empty() {
                    return Err("two root elements".into());
                }
                stack.push(el);
            }
            s = &rest[end + 1..];
        }
    }
    if stack.len() != 1 {
        return Err(format!(
            "<{}> is never closed",
            stack.last().map(|e| e.name.as_str()).unwrap_or("?")
        ));
    }
    let mut doc = stack.pop().ok_or("empty")?;
    if doc.children.len() != 1 {
        return Err("expected exactly one root element".into());
    }
    doc.children.pop().ok_or_else(|| "empty".into())
}

#[test]
fn the_xml_reader_is_strict() {
    assert!(parse_xml("<a><b x=\"1\"/></a>").is_ok());
    for bad in [
        "<a><b></a></b>",
        "<a x=1/>",
        "<a>&nbsp;</a>",
        "<a x=\"1\" x=\"2\"/>",
        "<a/><b/>",
        "<a>",
        "<a>x < y</a>",
    ] {
        assert!(parse_xml(bad).is_err(), "{bad} must be refused");
    }
}

// ---------------------------------------------------------------------------------------------
// a) every format

#[test]
fn every_format_is_written_and_parses() {
    let dir = tempfile::tempdir().unwrap();
    let written = write_run(dir.path(), None);
    let results = sample_run();
    for name in [
        "junit.xml",
        "results.json",
        "cucumber.json",
        "summary.md",
        "report.html",
    ] {
        assert!(dir.path().join(name).is_file(), "{name} written");
        assert!(
            written.files.contains(&dir.path().join(name)),
            "{name} returned"
        );
    }
    assert!(dir.path().join("evidence/manifest.json").is_file());

    // JUnit, strictly.
    let xml = std::fs::read_to_string(dir.path().join("junit.xml")).unwrap();
    let root = parse_xml(&xml).unwrap_or_else(|e| panic!("junit.xml is not well-formed: {e}"));
    assert_eq!(root.name, "testsuites");
    let suites = root.kids("testsuite");
    let files: std::collections::BTreeSet<&str> =
        results.scenarios.iter().map(|s| s.file.as_str()).collect();
    assert_eq!(suites.len(), files.len(), "one testsuite per feature file");
    let mut total = 0;
    let mut failures_total = 0;
    for suite in &suites {
        let cases = suite.kids("testcase");
        let tests: usize = suite.attr("tests").unwrap().parse().unwrap();
        assert_eq!(
            tests,
            cases.len(),
            "testsuite {:?} tests= matches its testcases",
            suite.attr("name")
        );
        let failures = cases
            .iter()
            .filter(|c| !c.kids("failure").is_empty())
            .count();
        let errors = cases.iter().filter(|c| !c.kids("error").is_empty()).count();
        let skipped = cases
            .iter()
            .filter(|c| !c.kids("skipped").is_empty())
            .count();
        assert_eq!(
            suite.attr("failures").unwrap().parse::<usize>().unwrap(),
            failures
        );
        assert_eq!(
            suite.attr("errors").unwrap().parse::<usize>().unwrap(),
            errors
        );
        if let Some(s) = suite.attr("skipped") {
            assert_eq!(s.parse::<usize>().unwrap(), skipped);
        }
        for case in &cases {
            assert!(
                case.attr("name").is_some_and(|n| !n.is_empty()),
                "testcase has a name"
            );
            assert!(
                case.attr("classname").is_some_and(|n| !n.is_empty()),
                "testcase has a classname"
            );
            for f in case.kids("failure").iter().chain(case.kids("error").iter()) {
                assert!(
                    f.attr("message").is_some_and(|m| !m.is_empty()),
                    "failure has a message"
                );
            }
        }
        total += cases.len();
        failures_total += failures;
    }
    assert_eq!(
        total,
        results.scenarios.len(),
        "one testcase per scenario (retries counted once)"
    );
    assert_eq!(root.attr("tests").unwrap().parse::<usize>().unwrap(), total);
    assert_eq!(failures_total, results.counts().failed);

    // Cucumber JSON.
    let cucumber: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("cucumber.json")).unwrap())
            .unwrap();
    let features = cucumber.as_array().expect("an array of features");
    assert_eq!(features.len(), files.len());
    let mut elements = 0;
    let mut failed_steps = 0;
    for f in features {
        assert!(f["uri"].is_string() && f["name"].is_string() && f["keyword"] == "Feature");
        for e in f["elements"].as_array().unwrap() {
            elements += 1;
            assert_eq!(e["type"], "scenario");
            let steps = e["steps"].as_array().unwrap();
            let sum: u64 = steps
                .iter()
                .map(|s| s["result"]["duration"].as_u64().unwrap())
                .sum();
            let scenario = results
                .scenarios
                .iter()
                .find(|s| s.name == e["name"])
                .unwrap();
            assert_eq!(
                u128::from(sum),
                scenario.duration.as_nanos(),
                "step durations add up"
            );
            for s in steps {
                let status = s["result"]["status"].as_str().unwrap();
                assert!(["passed", "failed", "skipped"].contains(&status));
                if status == "failed" {
                    failed_steps += 1;
                    assert!(
                        s["result"]["error_message"]
                            .as_str()
                            .is_some_and(|m| !m.is_empty())
                    );
                }
            }
        }
    }
    assert_eq!(elements, results.scenarios.len());
    assert!(failed_steps >= 3);

    // Markdown: headline, both checklists, findings, controls.
    let md = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(
        md.starts_with("## ❌ meshproof: FAILED"),
        "{}",
        &md[..80.min(md.len())]
    );
    let mapping = Mapping::embedded().unwrap();
    for list in &mapping.checklists {
        for item in &list.items {
            let cell = meshproof::report::markdown::md(&item.text);
            assert!(
                md.contains(&cell),
                "summary.md lists {}: {}",
                item.id,
                item.text
            );
        }
    }
    assert!(
        md.contains("| ✅ passed | **SAH-1** Istio control plane running (istiod)"),
        "SAH-1 passed"
    );
    assert!(
        md.contains("| ❌ failed | **SAH-10** Metrics exported to Prometheus"),
        "SAH-10 failed"
    );
    assert!(
        md.contains("| ➖ not covered yet | **SAH-6** SPIRE server running"),
        "SAH-6 not covered"
    );
    assert!(md.contains("Widened access"));
    assert!(md.contains("certificate of execution@prod expired"));
    assert!(md.contains("| ✅ passed | **SC-8** Transmission Confidentiality and Integrity"));
    assert!(
        !md.contains("<script>") && !md.contains("<img"),
        "no raw HTML from the run in summary.md"
    );

    // HTML: self-contained, escaped.
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(
        !html.contains("<script"),
        "no script element, and injected text is escaped"
    );
    assert!(!html.contains("<img"), "injected markup is escaped");
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
    for external in [
        "src=\"http",
        "href=\"http",
        "url(http",
        "@import",
        "<link",
        "<iframe",
    ] {
        assert!(
            !html.contains(external),
            "no external resource ({external})"
        );
    }
    assert!(html.contains("default-src 'none'"));
    for item in &mapping.checklists[0].items {
        assert!(
            html.contains(&meshproof::report::text::esc(&item.text)),
            "{}",
            item.text
        );
    }
    assert!(
        html.contains("1.40.0/BoringSSL") && html.contains("v3.23.1"),
        "versions table"
    );
    assert!(
        html.contains("✖ 2 widened accesses</b>"),
        "both widened accesses are called out, including the one recorded without evidence"
    );
}

#[test]
fn every_check_id_the_project_records_is_mapped() {
    let mapping = Mapping::embedded().unwrap();
    let mut ids = std::collections::BTreeSet::new();
    let verdict = regex::Regex::new(r#"verdict\(\s*"([a-z][a-z0-9-]*\.[a-z0-9.-]+)""#).unwrap();
    let constant =
        regex::Regex::new(r#"pub const [A-Z_]+: &str = "([a-z][a-z0-9-]*\.[a-z0-9-]+)""#).unwrap();
    let mut stack = vec![root().join("src"), root().join("steps")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if !path.ends_with("report") {
                    stack.push(path);
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for c in verdict.captures_iter(&text) {
                ids.insert(c[1].to_owned());
            }
            if path.starts_with(root().join("src/checks")) {
                for c in constant.captures_iter(&text) {
                    ids.insert(c[1].to_owned());
                }
            }
        }
    }
    for existing in [
        "identity.svid",
        "identity.schema",
        "identity.spiffe-id-form",
        "identity.svid-sensitivity",
        "pki.hierarchy",
        "pki.rotation-policy",
        "pki.plugin-ca",
    ] {
        assert!(
            ids.contains(existing),
            "the source scan finds {existing} (found {ids:?})"
        );
    }
    for upcoming in [
        "intent.static",
        "intent.live",
        "mtls.strict",
        "mtls.plaintext-rejected",
        "mtls.foreign-identity-rejected",
        "admission.decision",
        "admission.audit",
        "rotation.workload",
        "rotation.intermediate",
        "spire.server",
        "spire.agents",
        "spire.svid",
        "control-plane.health",
        "metrics.rbac",
        "drill.expired-intermediate",
    ] {
        ids.insert(upcoming.to_owned());
    }
    for id in &ids {
        let entry = mapping
            .check(id)
            .unwrap_or_else(|| panic!("check {id} is in src/report/controls.yaml"));
        assert!(
            entry.controls.values().any(|c| !c.is_empty()),
            "{id} maps to a control"
        );
        assert!(
            !mapping.items_for(id).is_empty(),
            "{id} proves a runbook checklist item"
        );
    }
    // And the other way round: every control is cited by at least one check.
    for f in &mapping.frameworks {
        for c in &f.controls {
            assert!(
                mapping
                    .checks
                    .iter()
                    .any(|k| k.controls.get(&f.id).is_some_and(|v| v.contains(&c.id))),
                "{} {} cited",
                f.id,
                c.id
            );
        }
    }
}

#[test]
fn control_and_checklist_status_follow_the_checks() {
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path(), None);
    let status: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("evidence/control-status.json")).unwrap(),
    )
    .unwrap();
    let control = |framework: &str, id: &str| {
        status["controls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["framework"] == framework && c["control"] == id)
            .map(|c| c["status"].as_str().unwrap().to_owned())
            .unwrap()
    };
    assert_eq!(
        control("nist-800-53", "AC-4"),
        "failed",
        "a widened access fails AC-4"
    );
    assert_eq!(
        control("nist-800-53", "SC-8"),
        "passed",
        "mTLS checks all passed"
    );
    assert_eq!(
        control("nist-800-53", "IR-4"),
        "not-covered",
        "no drill ran"
    );
    let item = |id: &str| {
        status["checklists"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|l| l["items"].as_array().unwrap())
            .find(|i| i["id"] == id)
            .map(|i| i["status"].as_str().unwrap().to_owned())
            .unwrap()
    };
    assert_eq!(item("SAH-1"), "passed");
    assert_eq!(
        item("SAH-2"),
        "passed",
        "ingress gateway: health + its live intents"
    );
    assert_eq!(item("SAH-6"), "not-covered");
    assert_eq!(item("SAH-10"), "failed");
    assert_eq!(item("TP-2"), "failed", "the expired tradepulse SVID");
    assert_eq!(item("TP-3"), "passed");
    assert_eq!(item("TP-13"), "not-covered");
}

// ---------------------------------------------------------------------------------------------
// b) evidence bundle: verify, and every kind of tampering

fn key_file(dir: &Path) -> (PathBuf, String) {
    use aws_lc_rs::signature::Ed25519KeyPair;
    let doc = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new()).unwrap();
    let body = meshproof::report::text::base64(doc.as_ref());
    let pem = format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n");
    let path = dir.join("signing-key.pem");
    std::fs::write(&path, pem).unwrap();
    (path, body)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn bundle_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(
                    p.strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/"),
                );
            }
        }
    }
    out.sort();
    out
}

#[test]
fn the_evidence_bundle_verifies_and_reports_every_tampering() {
    let keys = tempfile::tempdir().unwrap();
    let (key_path, private_body) = key_file(keys.path());
    let key = SigningKey::from_file(&key_path).unwrap();
    let public = key.public_key();
    let run = tempfile::tempdir().unwrap();
    let written = write_run(run.path(), Some(&key));
    assert_eq!(written.public_key, public);
    let bundle = run.path().join("evidence");

    // Contents: copies of every artifact, metadata, mapping, key, signature.
    let files = bundle_files(&bundle);
    for f in [
        "artifacts/junit.xml",
        "artifacts/results.json",
        "artifacts/cucumber.json",
        "artifacts/summary.md",
        "artifacts/report.html",
        "run.json",
        "certificates.json",
        "controls.yaml",
        "control-status.json",
        "public-key.txt",
        "public-key.pem",
        "SHA256SUMS",
        "manifest.json",
        "manifest.sig",
    ] {
        assert!(files.contains(&f.to_owned()), "bundle has {f}: {files:?}");
    }
    assert!(
        !files.iter().any(|f| f.starts_with("artifacts/evidence")),
        "the bundle does not copy itself"
    );
    let run_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("run.json")).unwrap()).unwrap();
    assert_eq!(run_json["run_id"], "20261122-213000-test");
    assert_eq!(
        run_json["profiles"][0]["sha256"],
        profile_ref("tradepulse").sha256
    );
    assert_eq!(run_json["meshproof_version"], "0.1.0");
    assert!(
        run_json["git"].is_null()
            || run_json["git"]["commit"]
                .as_str()
                .is_some_and(|c| c.len() == 40)
    );
    let certs = std::fs::read_to_string(bundle.join("certificates.json")).unwrap();
    assert!(certs.contains("403aab7ddaddeb7890895ae2d2d5cd33") && certs.contains("intermediate"));
    assert_eq!(
        std::fs::read_to_string(bundle.join("public-key.txt"))
            .unwrap()
            .trim(),
        public.hex()
    );
    assert_eq!(
        std::fs::read(bundle.join("manifest.sig")).unwrap().len(),
        64
    );

    // The private key is nowhere in the run folder.
    let needle = &private_body[20..60];
    for f in bundle_files(run.path()) {
        let text =
            String::from_utf8_lossy(&std::fs::read(run.path().join(&f)).unwrap()).into_owned();
        assert!(!text.contains(needle), "{f} contains the private key");
        assert!(
            !text.contains("PRIVATE KEY"),
            "{f} contains a private key marker"
        );
    }

    // Untouched: clean, with the pinned key and with the embedded one.
    let report = evidence::verify(&bundle, Some(&public)).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.key_source, KeySource::Expected);
    let embedded = evidence::verify(&bundle, None).unwrap();
    assert!(embedded.is_clean(), "{embedded}");
    assert_eq!(embedded.key_source, KeySource::Embedded);
    assert_eq!(
        PublicKey::from_file(&bundle.join("public-key.pem")).unwrap(),
        public
    );

    // One byte changed in any file: reported.
    let scratch = tempfile::tempdir().unwrap();
    for (n, f) in files.iter().enumerate() {
        let copy = scratch.path().join(format!("flip-{n}"));
        copy_dir(&bundle, &copy);
        let path = copy.join(f);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        let r = evidence::verify(&copy, Some(&public)).unwrap();
        assert!(
            !r.is_clean(),
            "a flipped byte in {f} must be reported:\n{r}"
        );
        if f == "manifest.json" || f == "manifest.sig" {
            assert_eq!(r.signature, SignatureCheck::Invalid, "{f}: {r}");
        } else {
            assert_eq!(r.changed, vec![f.clone()], "{f}: {r}");
            assert_eq!(r.signature, SignatureCheck::Valid);
        }
    }

    // A file deleted.
    let copy = scratch.path().join("deleted");
    copy_dir(&bundle, &copy);
    std::fs::remove_file(copy.join("artifacts/junit.xml")).unwrap();
    let r = evidence::verify(&copy, Some(&public)).unwrap();
    assert!(!r.is_clean());
    assert_eq!(r.missing, vec!["artifacts/junit.xml".to_owned()], "{r}");
    let copy = scratch.path().join("deleted-manifest");
    copy_dir(&bundle, &copy);
    std::fs::remove_file(copy.join("manifest.json")).unwrap();
    let r = evidence::verify(&copy, Some(&public)).unwrap();
    assert!(
        !r.is_clean() && r.signature == SignatureCheck::Missing,
        "{r}"
    );

    // A file added.
    let copy = scratch.path().join("added");
    copy_dir(&bundle, &copy);
    std::fs::write(copy.join("artifacts/extra.txt"), "slipped in").unwrap();
    let r = evidence::verify(&copy, Some(&public)).unwrap();
    assert!(!r.is_clean());
    assert_eq!(r.added, vec!["artifacts/extra.txt".to_owned()], "{r}");
    assert!(r.to_string().contains("ADDED    artifacts/extra.txt"));

    // The wrong public key.
    let other = SigningKey::generate().unwrap().public_key();
    let r = evidence::verify(&bundle, Some(&other)).unwrap();
    assert!(!r.is_clean());
    assert_eq!(r.signature, SignatureCheck::Invalid);
    assert!(r.key_mismatch);

    // A re-signed forgery: consistent with its own key, but not with the pinned one.
    let forged = scratch.path().join("forged");
    copy_dir(run.path(), &forged);
    std::fs::remove_dir_all(forged.join("evidence")).unwrap();
    let forger = SigningKey::generate().unwrap();
    report::write_all_with(
        &sample_run(),
        &forged,
        &ReportOptions {
            signing_key: Some(&forger),
            ..ReportOptions::default()
        },
    )
    .unwrap();
    assert!(
        evidence::verify(&forged.join("evidence"), None)
            .unwrap()
            .is_clean()
    );
    assert!(
        !evidence::verify(&forged.join("evidence"), Some(&public))
            .unwrap()
            .is_clean()
    );

    // Not a bundle at all.
    assert!(matches!(
        evidence::verify(&scratch.path().join("nope"), None),
        Err(EvidenceError::NotADirectory(_))
    ));

    // Auditors without meshproof: OpenSSL 3 and coreutils agree (when installed).
    let openssl = Command::new("openssl")
        .args([
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            "public-key.pem",
            "-rawin",
            "-in",
            "manifest.json",
            "-sigfile",
            "manifest.sig",
        ])
        .current_dir(&bundle)
        .output();
    match openssl {
        Ok(o) if o.status.success() => {
            assert!(String::from_utf8_lossy(&o.stdout).contains("Signature Verified Successfully"));
        }
        Ok(o) => eprintln!(
            "note: openssl pkeyutl could not check the signature (OpenSSL < 3?): {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(_) => eprintln!("note: openssl not installed; signature checked by meshproof only"),
    }
    if let Ok(o) = Command::new("sha256sum")
        .args(["--quiet", "-c", "SHA256SUMS"])
        .current_dir(&bundle)
        .output()
    {
        assert!(
            o.status.success(),
            "sha256sum -c: {}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// c) no secrets

#[test]
fn a_private_key_in_the_run_folder_is_refused() {
    let run = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let (key_path, body) = key_file(keys.path());
    std::fs::create_dir_all(run.path().join("logs")).unwrap();
    std::fs::copy(&key_path, run.path().join("logs/sidecar.log")).unwrap();
    let err = report::write_all_with(&sample_run(), run.path(), &ReportOptions::default())
        .expect_err("a private key in the run folder refuses the bundle");
    let message = err.to_string();
    assert!(
        matches!(err, ReportError::Evidence(EvidenceError::Secrets(_))),
        "{message}"
    );
    assert!(
        message.contains("logs/sidecar.log (line 1: a PEM private key"),
        "{message}"
    );
    assert!(
        !message.contains(&body[10..40]),
        "the error never shows the secret"
    );
    assert!(!run.path().join("evidence").exists(), "nothing bundled");
    let findings = secrets::scan_for_secrets(run.path());
    assert!(
        findings
            .iter()
            .any(|f| f.file.ends_with("logs/sidecar.log"))
    );

    // Tokens too: a service-account JWT in a report artifact.
    let run = tempfile::tempdir().unwrap();
    let b64 = |s: &str| {
        meshproof::report::text::base64(s.as_bytes())
            .trim_end_matches('=')
            .replace('+', "-")
            .replace('/', "_")
    };
    let jwt = format!(
        "{}.{}.c2lnbmF0dXJlLWJ5dGVz",
        b64(r#"{"alg":"RS256","kid":"abc"}"#),
        b64(
            r#"{"iss":"kubernetes/serviceaccount","sub":"system:serviceaccount:soma:gateway-api"}"#
        )
    );
    let mut leaky = sample_run();
    leaky.scenarios[0].checks[0].summary = format!("called with Authorization: Bearer {jwt}");
    let err = report::write_all_with(&leaky, run.path(), &ReportOptions::default()).unwrap_err();
    assert!(matches!(err, ReportError::Secrets { .. }), "{err}");
    let err = err.to_string();
    assert!(err.contains("results.json (line"), "{err}");
    assert!(err.contains("Kubernetes service-account token"), "{err}");
    assert!(
        err.contains("check identity.svid gateway-api: a Kubernetes service-account token"),
        "names the check that leaked: {err}"
    );
    assert!(!err.contains(&jwt[..30]), "never the token: {err}");
    assert!(
        std::fs::read_dir(run.path()).unwrap().next().is_none(),
        "no report was written"
    );
}

// ---------------------------------------------------------------------------------------------
// d) the HTML in a real browser

const CHROMIUM: &str = "/usr/bin/chromium";

/// Runs Chromium with a deadline; returns (success, stdout, stderr).
fn chromium(args: &[String], deadline: Duration) -> (bool, String, String) {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(CHROMIUM);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(args)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("chromium starts");
    let out_pipe = child.stdout.take();
    let err_pipe = child.stderr.take();
    let read = |p: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut p) = p {
                let _ = p.read_to_string(&mut s);
            }
            s
        })
    };
    let out = read(out_pipe.map(|p| Box::new(p) as Box<dyn std::io::Read + Send>));
    let err = read(err_pipe.map(|p| Box::new(p) as Box<dyn std::io::Read + Send>));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (
        status.is_some_and(|s| s.success()),
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    )
}

#[test]
fn the_html_report_renders_in_headless_chromium() {
    if !Path::new(CHROMIUM).exists() {
        let required = std::env::var("MESHPROOF_REQUIRE_CHROMIUM").is_ok_and(|v| v == "1");
        eprintln!(
            "\n*** NOT RUN: {CHROMIUM} is missing, so report.html was NOT rendered in a browser. ***\n\
             *** Install it with scripts/install/chromium.sh (or scripts/setup).                ***\n"
        );
        assert!(
            !required,
            "MESHPROOF_REQUIRE_CHROMIUM=1 but {CHROMIUM} is missing"
        );
        return;
    }
    // A stable run folder, so the screenshot can be looked at after the test.
    let run = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("reports-html")
        .join("20261122-213000-test");
    let _ = std::fs::remove_dir_all(&run);
    write_run(&run, None);
    let html = run.join("report.html");
    let url = format!("file://{}", html.display());
    let png = run.join("report.png");

    let (ok, _, err) = chromium(
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1400,2400".into(),
            url.clone(),
        ],
        Duration::from_secs(90),
    );
    assert!(
        ok && png.is_file(),
        "chromium wrote the screenshot; stderr:\n{err}"
    );
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 20_000,
        "a real PNG ({} bytes)",
        bytes.len()
    );
    eprintln!("screenshot: {}", png.display());

    let (ok, dom, log) = chromium(
        &[
            "--enable-logging=stderr".into(),
            "--v=0".into(),
            "--dump-dom".into(),
            url,
        ],
        Duration::from_secs(90),
    );
    assert!(ok, "chromium dumped the DOM; stderr:\n{log}");
    std::fs::write(run.join("report.dom.html"), &dom).unwrap();
    for needle in [
        "id=\"checklists\"",
        "Istio control plane running (istiod)",
        "Metrics exported to Prometheus",
        "class=\"matrix\"",
        "✖ WIDENED",
        "class=\"graph\"",
        "class=\"timeline\"",
        "No drills in this run.",
        "id=\"versions\"",
    ] {
        assert!(dom.contains(needle), "the rendered DOM contains {needle}");
    }
    assert!(
        !dom.contains("<script"),
        "no script element in the rendered DOM"
    );
    let problems: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains("CONSOLE")
                || l.contains("Uncaught")
                || l.contains("Content Security Policy")
                || l.contains("Refused to")
                || l.contains("Failed to load resource")
                || l.contains("net::ERR_")
        })
        .collect();
    assert!(
        problems.is_empty(),
        "console errors / blocked fetches:\n{}",
        problems.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// e) 10,000 results: a figure, not an assertion

#[test]
fn report_generation_for_10000_results_is_measured() {
    let elapsed = report::bench_generate(10_000).expect("reports for 10,000 results are written");
    eprintln!(
        "report generation for 10,000 check results (every format + signed evidence bundle): {:.0} ms",
        elapsed.as_secs_f64() * 1000.0
    );
}

#[test]
fn an_empty_run_with_a_harness_error_still_reports() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = sample_run();
    run.scenarios.clear();
    run.profiles.clear();
    run.harness_errors = vec!["features/broken.feature:3:1: cannot parse <Given>".into()];
    let written = report::write_all_with(&run, dir.path(), &ReportOptions::default()).unwrap();
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(html.contains("✖ HARNESS ERROR") && html.contains("cannot parse &lt;Given&gt;"));
    assert!(html.contains("No scenario ran.") && html.contains("No drills in this run."));
    let md = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(md.starts_with("## ❌ meshproof: HARNESS ERROR"), "{md}");
    let cucumber: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("cucumber.json")).unwrap()).unwrap();
    assert_eq!(
        cucumber[0]["elements"][0]["steps"][0]["result"]["status"],
        "failed"
    );
    assert!(parse_xml(&std::fs::read_to_string(dir.path().join("junit.xml")).unwrap()).is_ok());
    assert!(
        evidence::verify(&written.bundle.dir, Some(&written.public_key))
            .unwrap()
            .is_clean()
    );
}

//! A criterion-free benchmark of report generation, for a `meshproof bench` command: builds a
//! synthetic run with `n` check results and times [`write_all_with`](super::write_all_with)
//! (every format plus the signed evidence bundle) into a temporary folder, which is then removed.

use std::time::{Duration, Instant};

use super::{ReportError, ReportOptions, write_all_with};
use crate::results::{CheckResult, ProfileRef, RunResults, ScenarioResult, Status, StepResult};

/// Check results per synthetic scenario.
const PER_SCENARIO: usize = 4;

const SERVICES: [&str; 6] = [
    "ingestion",
    "strategy",
    "execution",
    "ui",
    "observability",
    "gateway",
];

fn pair(k: &str, v: impl Into<String>) -> (String, String) {
    (k.to_owned(), v.into())
}

/// A synthetic run with `n` check results (4 per scenario): SVIDs with certificate evidence, live
/// intents (one in 500 a widened access), mTLS and PKI checks, about 1% failing. Deterministic.
pub fn sample_results(n: usize) -> RunResults {
    let mut scenarios = Vec::with_capacity(n.div_ceil(PER_SCENARIO));
    let mut made = 0usize;
    let mut s = 0usize;
    while made < n {
        let profile = if s % 2 == 0 {
            "tradepulse"
        } else {
            "soma-agent-hub"
        };
        let svc = SERVICES[s % SERVICES.len()];
        let callee = SERVICES[(s / SERVICES.len() + 1 + s) % SERVICES.len()];
        let mut checks = Vec::with_capacity(PER_SCENARIO);
        for k in 0..PER_SCENARIO.min(n - made) {
            let id = made + k;
            let failing = id % 97 == 13;
            let status = if failing {
                Status::Failed
            } else {
                Status::Passed
            };
            let check = match k {
                0 => CheckResult {
                    check: "identity.svid".into(),
                    subject: format!("{svc}@env{s}"),
                    status,
                    summary: if failing {
                        format!("intermediate 1 certificate expired (serial {id:032x})")
                    } else {
                        format!("valid X.509-SVID for spiffe://{profile}/env{s}/{svc}")
                    },
                    evidence: vec![
                        pair("spiffe_id", format!("spiffe://{profile}/env{s}/{svc}")),
                        pair("serial", format!("{id:032x}")),
                        pair("sha256", format!("{:064x}", id as u128 * 7919)),
                        pair(
                            "not_before",
                            format!("2026-11-22T{:02}:{:02}:00Z", (s / 60) % 24, s % 60),
                        ),
                        pair(
                            "not_after",
                            format!("2026-11-23T{:02}:{:02}:00Z", (s / 60) % 24, s % 60),
                        ),
                    ],
                },
                1 => {
                    let expected = if s % 3 == 0 { "deny" } else { "allow" };
                    let observed = if id % 500 == 1 { "allow" } else { expected };
                    CheckResult {
                        check: "intent.live".into(),
                        subject: format!("{svc} → {callee}"),
                        status: if expected == observed {
                            status
                        } else {
                            Status::Failed
                        },
                        summary: format!(
                            "{svc} → {callee}: expected {expected}, observed {observed}"
                        ),
                        evidence: vec![
                            pair("from", svc),
                            pair("to", callee),
                            pair("method", "GET"),
                            pair("path", format!("/v1/item/{}", s % 7)),
                            pair("expected", expected),
                            pair("observed", observed),
                            pair("decided_by", "envoy rbac"),
                        ],
                    }
                }
                2 => CheckResult {
                    check: "mtls.strict".into(),
                    subject: callee.into(),
                    status,
                    summary: "plaintext refused; mTLS with SPIFFE peer required".into(),
                    evidence: vec![pair("mode", "STRICT")],
                },
                _ => CheckResult {
                    check: "pki.hierarchy".into(),
                    subject: profile.into(),
                    status,
                    summary: "root → intermediate valid now".into(),
                    evidence: vec![
                        pair("root_serial", format!("{:032x}", s + 1)),
                        pair("root_not_after", "2036-11-22T00:00:00Z"),
                    ],
                },
            };
            checks.push(check);
        }
        made += checks.len();
        let status = if checks.iter().any(|c| c.status != Status::Passed) {
            Status::Failed
        } else {
            Status::Passed
        };
        scenarios.push(ScenarioResult {
            feature: format!("Synthetic feature {}", s % 5),
            file: format!("features/synthetic-{}.feature", s % 5),
            line: 10 + s,
            name: format!("{profile} · {svc} scenario {s}"),
            tags: vec!["@synthetic".into()],
            status,
            attempts: 1,
            duration: Duration::from_micros(1500 + (s as u64 % 100)),
            steps: vec![
                StepResult {
                    keyword: "Given ".into(),
                    text: format!("the profile \"{profile}\""),
                    status: Status::Passed,
                    error: None,
                    duration: None,
                },
                StepResult {
                    keyword: "Then ".into(),
                    text: "the checks hold".into(),
                    status,
                    error: (status == Status::Failed).then(|| "a check failed".to_owned()),
                    duration: None,
                },
            ],
            checks,
        });
        s += 1;
    }
    RunResults {
        run_id: format!("bench-{n}"),
        meshproof_version: env!("CARGO_PKG_VERSION").into(),
        target: "synthetic".into(),
        started: "2026-11-22T12:00:00Z".into(),
        duration: Duration::from_secs(1),
        tags: None,
        profiles: ["tradepulse", "soma-agent-hub"]
            .iter()
            .map(|p| ProfileRef {
                name: (*p).into(),
                file: format!("manifests/{p}/profile.yaml"),
                sha256: "0".repeat(64),
            })
            .collect(),
        versions: [("meshproof".to_owned(), env!("CARGO_PKG_VERSION").to_owned())]
            .into_iter()
            .collect(),
        scenarios,
        harness_errors: Vec::new(),
        bench: None,
        drills: Vec::new(),
    }
}

/// Times writing every report format and the signed evidence bundle for a synthetic run of `n`
/// check results (building the results is not timed). Writes to a temporary folder and removes it.
pub fn bench_generate(n: usize) -> Result<Duration, ReportError> {
    let results = sample_results(n);
    let dir = std::env::temp_dir().join(format!(
        "meshproof-bench-{}-{n}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    ));
    let start = Instant::now();
    let outcome = write_all_with(&results, &dir, &ReportOptions::default());
    let elapsed = start.elapsed();
    let _ = std::fs::remove_dir_all(&dir);
    outcome.map(|_| elapsed)
}

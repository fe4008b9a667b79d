//! JUnit XML: one `<testsuite>` per feature file, one `<testcase>` per scenario. A retried scenario is
//! one testcase carrying its final outcome (cucumber's own JUnit writer repeats it; CI dashboards
//! would count a flaky pass as a failure). Properties carry the check ids, target and profile.

use std::collections::BTreeMap;

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use crate::results::{RunResults, ScenarioResult, Status};

pub fn render(results: &RunResults) -> Result<String, quick_junit::SerializeError> {
    let mut report = Report::new(format!("meshproof {}", results.run_id));
    report.set_time(results.duration);
    let mut suites: BTreeMap<&str, Vec<&ScenarioResult>> = BTreeMap::new();
    for scenario in &results.scenarios {
        suites
            .entry(scenario.file.as_str())
            .or_default()
            .push(scenario);
    }
    for (file, scenarios) in suites {
        let mut suite = TestSuite::new(file);
        suite.add_property(Property::new("target", results.target.as_str()));
        for scenario in scenarios {
            suite.add_test_case(test_case(results, scenario));
        }
        report.add_test_suite(suite);
    }
    report.to_string()
}

fn test_case(results: &RunResults, scenario: &ScenarioResult) -> TestCase {
    let status = match scenario.status {
        Status::Passed => TestCaseStatus::success(),
        Status::Skipped => {
            let mut s = TestCaseStatus::skipped();
            s.set_message("a step was skipped: no step definition matched");
            s
        }
        Status::Failed | Status::Error => {
            let kind = if scenario.status == Status::Failed {
                NonSuccessKind::Failure
            } else {
                NonSuccessKind::Error
            };
            let mut s = TestCaseStatus::non_success(kind);
            s.set_message(
                scenario
                    .failure_message()
                    .unwrap_or_else(|| "failed".to_owned()),
            );
            s
        }
    };
    let mut case = TestCase::new(scenario.name.as_str(), status);
    case.set_classname(format!("{}:{}", scenario.file, scenario.line));
    case.set_time(scenario.duration);
    case.add_property(Property::new("target", results.target.as_str()));
    case.add_property(Property::new("attempts", scenario.attempts.to_string()));
    if !scenario.tags.is_empty() {
        case.add_property(Property::new("tags", scenario.tags.join(" ")));
    }
    let mut checks: Vec<&str> = scenario.checks.iter().map(|c| c.check.as_str()).collect();
    checks.dedup();
    for check in checks {
        case.add_property(Property::new("check", check));
    }
    if !scenario.checks.is_empty() {
        let out: Vec<String> = scenario
            .checks
            .iter()
            .map(|c| {
                format!("[{:?}] {} {}: {}", c.status, c.check, c.subject, c.summary)
                    .replace("[Passed]", "[pass]")
                    .replace("[Failed]", "[FAIL]")
            })
            .collect();
        case.set_system_out(out.join("\n"));
    }
    case
}

//! `cucumber.json`: the Cucumber JSON format (the shape cucumber-html-reporter, Allure's and Jenkins'
//! Cucumber plugins read): features → elements (scenarios) → steps, each step with
//! `result.status` (`passed`/`failed`/`skipped`), `result.duration` in nanoseconds and
//! `result.error_message`.
//!
//! - One feature per `.feature` file; a retried scenario is one element with its final outcome.
//! - Step durations: the results model records one duration per scenario. Until it records one per
//!   step, the scenario's duration is spread over its steps so that the sum is exact (a reader's
//!   scenario and feature totals are right; per-step figures are not measurements). When a step
//!   carries a `duration` in the serialized results, that is used instead.
//! - A check's verdicts ride along as the last step's `output` lines; the scenario's check ids and
//!   attempt count as tags-free `description` text.
//! - Harness errors (problems outside scenarios) become a failed scenario of a `meshproof harness`
//!   feature, so a CI reading only this file still sees the run fail.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::text::slug;
use crate::results::{RunResults, ScenarioResult, Status};

/// Per scenario, per step: a measured duration when the serialized results carry one.
pub type StepDurations = Vec<Vec<Option<Duration>>>;

/// Reads `scenarios[i].steps[j].duration` (`{secs, nanos}`) from the serialized results, if the
/// model has that field; otherwise every entry is `None`.
pub fn step_durations(serialized: &Value) -> StepDurations {
    let Some(scenarios) = serialized.get("scenarios").and_then(Value::as_array) else {
        return Vec::new();
    };
    scenarios
        .iter()
        .map(|s| {
            s.get("steps")
                .and_then(Value::as_array)
                .map(|steps| {
                    steps
                        .iter()
                        .map(|step| {
                            let d = step.get("duration")?;
                            let secs = d.get("secs")?.as_u64()?;
                            let nanos = u32::try_from(d.get("nanos")?.as_u64()?).ok()?;
                            Some(Duration::new(secs, nanos))
                        })
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect()
}

fn status(s: Status) -> &'static str {
    match s {
        Status::Passed => "passed",
        Status::Failed | Status::Error => "failed",
        Status::Skipped => "skipped",
    }
}

fn tags(tags: &[String], line: usize) -> Vec<Value> {
    tags.iter()
        .map(|t| {
            let name = if t.starts_with('@') {
                t.clone()
            } else {
                format!("@{t}")
            };
            json!({ "name": name, "line": line })
        })
        .collect()
}

/// Nanoseconds per step: measured when known, else the scenario's duration spread evenly with the
/// remainder on the last step (so the total is exact).
fn spread(total: Duration, measured: &[Option<Duration>], steps: usize) -> Vec<u128> {
    if steps > 0 && measured.len() == steps && measured.iter().all(Option::is_some) {
        return measured
            .iter()
            .map(|d| d.map(|d| d.as_nanos()).unwrap_or(0))
            .collect();
    }
    if steps == 0 {
        return Vec::new();
    }
    let nanos = total.as_nanos();
    let n = steps as u128;
    let each = nanos / n;
    let mut out = vec![each; steps];
    if let Some(last) = out.last_mut() {
        *last += nanos - each * n;
    }
    out
}

fn element(
    feature_id: &str,
    scenario: &ScenarioResult,
    index: usize,
    measured: &[Option<Duration>],
) -> Value {
    let durations = spread(scenario.duration, measured, scenario.steps.len());
    let check_lines: Vec<String> = scenario
        .checks
        .iter()
        .map(|c| {
            format!(
                "[{}] {} {}: {}",
                status(c.status),
                c.check,
                c.subject,
                c.summary
            )
        })
        .collect();
    let last = scenario.steps.len().saturating_sub(1);
    let steps: Vec<Value> = scenario
        .steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let mut result = serde_json::Map::new();
            result.insert("status".into(), json!(status(step.status)));
            result.insert(
                "duration".into(),
                json!(u64::try_from(durations.get(i).copied().unwrap_or(0)).unwrap_or(u64::MAX)),
            );
            if matches!(step.status, Status::Failed | Status::Error) {
                result.insert(
                    "error_message".into(),
                    json!(step.error.clone().unwrap_or_else(|| "failed".to_owned())),
                );
            }
            let mut s = json!({
                "keyword": step.keyword,
                "name": step.text,
                "line": scenario.line + 1 + i,
                "match": { "location": format!("{}:{}", scenario.file, scenario.line) },
                "result": Value::Object(result),
            });
            if i == last && !check_lines.is_empty() {
                s["output"] = json!(check_lines);
            }
            s
        })
        .collect();
    let mut checks: Vec<&str> = scenario.checks.iter().map(|c| c.check.as_str()).collect();
    checks.sort_unstable();
    checks.dedup();
    let mut description = String::new();
    if !checks.is_empty() {
        description.push_str(&format!("checks: {}", checks.join(", ")));
    }
    if scenario.attempts > 1 {
        if !description.is_empty() {
            description.push_str("; ");
        }
        description.push_str(&format!(
            "attempts: {} (final outcome shown)",
            scenario.attempts
        ));
    }
    json!({
        "id": format!("{feature_id};{}-{index}", slug(&scenario.name)),
        "keyword": "Scenario",
        "type": "scenario",
        "name": scenario.name,
        "description": description,
        "line": scenario.line,
        "tags": tags(&scenario.tags, scenario.line.saturating_sub(1)),
        "steps": steps,
    })
}

pub fn render(results: &RunResults, measured: &StepDurations) -> Result<String, serde_json::Error> {
    let mut files: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, s) in results.scenarios.iter().enumerate() {
        files.entry(s.file.as_str()).or_default().push(i);
    }
    let mut features = Vec::new();
    for (file, indices) in files {
        let name = indices
            .first()
            .and_then(|i| results.scenarios.get(*i))
            .map(|s| s.feature.as_str())
            .unwrap_or(file);
        let feature_id = slug(name);
        let elements: Vec<Value> = indices
            .iter()
            .filter_map(|i| {
                let scenario = results.scenarios.get(*i)?;
                let empty = Vec::new();
                let m = measured.get(*i).unwrap_or(&empty);
                Some(element(&feature_id, scenario, *i, m))
            })
            .collect();
        // Tags every scenario of the file shares are the feature's own (cucumber inherits them).
        let mut shared: Vec<String> = indices
            .first()
            .and_then(|i| results.scenarios.get(*i))
            .map(|s| s.tags.clone())
            .unwrap_or_default();
        for i in &indices {
            if let Some(s) = results.scenarios.get(*i) {
                shared.retain(|t| s.tags.contains(t));
            }
        }
        features.push(json!({
            "uri": file,
            "id": feature_id,
            "keyword": "Feature",
            "name": name,
            "description": format!("meshproof run {} · target {}", results.run_id, results.target),
            "line": 1,
            "tags": tags(&shared, 1),
            "elements": elements,
        }));
    }
    if !results.harness_errors.is_empty() {
        let elements: Vec<Value> = results
            .harness_errors
            .iter()
            .enumerate()
            .map(|(i, e)| {
                json!({
                    "id": format!("meshproof-harness;error-{i}"),
                    "keyword": "Scenario",
                    "type": "scenario",
                    "name": format!("harness error {}", i + 1),
                    "description": "",
                    "line": 1,
                    "tags": [],
                    "steps": [{
                        "keyword": "Given ",
                        "name": "the harness can run",
                        "line": 1,
                        "match": { "location": "meshproof" },
                        "result": { "status": "failed", "duration": 0, "error_message": e },
                    }],
                })
            })
            .collect();
        features.push(json!({
            "uri": "meshproof",
            "id": "meshproof-harness",
            "keyword": "Feature",
            "name": "meshproof harness",
            "description": "problems found before or outside scenarios",
            "line": 1,
            "tags": [],
            "elements": elements,
        }));
    }
    serde_json::to_string_pretty(&Value::Array(features))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_keeps_the_total_exact() {
        let d = Duration::from_nanos(1_000_000_007);
        let parts = spread(d, &[], 3);
        assert_eq!(parts.iter().sum::<u128>(), 1_000_000_007);
        assert_eq!(parts.len(), 3);
        let measured = [Some(Duration::from_nanos(5)), Some(Duration::from_nanos(7))];
        assert_eq!(spread(d, &measured, 2), vec![5, 7]);
        assert!(spread(d, &[], 0).is_empty());
    }
}

//! A cucumber [`Writer`](cucumber::Writer) that turns the event stream into [`ScenarioResult`]s.
//!
//! Scenarios run concurrently, so events are keyed by scenario. A retried scenario keeps one entry:
//! each new attempt replaces the previous attempt's steps, and `attempts` counts them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cucumber::event::{self, Cucumber, Feature, RetryableScenario, Rule, Scenario, Step};
use cucumber::{Event, Writer, cli, gherkin, parser};

use crate::results::{ScenarioResult, Status, StepResult};

pub type ScenarioKey = (PathBuf, usize, String);

pub fn key(feature: &gherkin::Feature, scenario: &gherkin::Scenario) -> ScenarioKey {
    (
        feature.path.clone().unwrap_or_default(),
        scenario.position.line,
        scenario.name.clone(),
    )
}

#[derive(Debug, Default)]
pub struct ResultsWriter {
    root: PathBuf,
    progress: bool,
    order: Vec<ScenarioKey>,
    scenarios: HashMap<ScenarioKey, (ScenarioResult, Instant)>,
    /// When the current step of each running scenario started.
    step_started: HashMap<ScenarioKey, Instant>,
    pub harness_errors: Vec<String>,
}

impl ResultsWriter {
    pub fn new(root: &Path, progress: bool) -> Self {
        Self {
            root: root.to_path_buf(),
            progress,
            ..Self::default()
        }
    }

    /// Results in the order scenarios started, each with its final attempt's outcome.
    pub fn into_results(mut self) -> (Vec<(ScenarioKey, ScenarioResult)>, Vec<String>) {
        let results = self
            .order
            .iter()
            .filter_map(|k| self.scenarios.remove(k).map(|(r, _)| (k.clone(), r)))
            .collect();
        (results, self.harness_errors)
    }

    fn on_scenario(
        &mut self,
        feature: &gherkin::Feature,
        scenario: &gherkin::Scenario,
        ev: RetryableScenario<impl Sized>,
    ) {
        let key = key(feature, scenario);
        match ev.event {
            Scenario::Started => {
                let attempts = ev.retries.map_or(1, |r| r.current + 1);
                let file = feature
                    .path
                    .as_deref()
                    .map(|p| relative(p, &self.root))
                    .unwrap_or_default();
                let result = ScenarioResult {
                    feature: feature.name.clone(),
                    file,
                    line: scenario.position.line,
                    name: scenario.name.clone(),
                    tags: feature
                        .tags
                        .iter()
                        .chain(&scenario.tags)
                        .map(|t| format!("@{t}"))
                        .collect(),
                    status: Status::Passed,
                    attempts,
                    duration: Duration::ZERO,
                    steps: Vec::new(),
                    checks: Vec::new(),
                };
                if !self.scenarios.contains_key(&key) {
                    self.order.push(key.clone());
                }
                self.scenarios.insert(key, (result, Instant::now()));
            }
            Scenario::Step(step, ev) | Scenario::Background(step, ev) => {
                if matches!(ev, Step::Started) {
                    self.step_started.insert(key.clone(), Instant::now());
                }
                let took = self.step_started.get(&key).map(Instant::elapsed);
                if let Some((result, _)) = self.scenarios.get_mut(&key) {
                    record_step(result, &step, ev, took);
                }
            }
            Scenario::Hook(_, event::Hook::Failed(_, info)) => {
                if let Some((result, _)) = self.scenarios.get_mut(&key) {
                    result.status = Status::Error;
                    result.steps.push(StepResult {
                        keyword: "Hook".into(),
                        text: String::new(),
                        status: Status::Error,
                        error: Some(panic_text(&info)),
                        duration: None,
                    });
                }
            }
            Scenario::Finished => {
                if let Some((result, started)) = self.scenarios.get_mut(&key) {
                    result.duration = started.elapsed();
                    result.status = result
                        .steps
                        .iter()
                        .map(|s| s.status)
                        .max()
                        .unwrap_or(Status::Skipped)
                        .max(result.status);
                    let retrying =
                        result.status != Status::Passed && ev.retries.is_some_and(|r| r.left > 0);
                    if self.progress {
                        print_progress(result, retrying);
                    }
                }
            }
            Scenario::Hook(..) | Scenario::Log(_) => {}
        }
    }
}

fn print_progress(result: &ScenarioResult, retrying: bool) {
    let label = match (result.status, retrying) {
        (_, true) => "RETRY",
        (Status::Passed, _) => "PASS",
        (Status::Failed, _) => "FAIL",
        (Status::Skipped, _) => "SKIP",
        (Status::Error, _) => "ERROR",
    };
    use std::io::Write as _;
    // A closed stdout (piped into `head`) must not abort the run: the reports still get written.
    let _ = writeln!(
        std::io::stdout(),
        "{label:>7} [{:>6.3}s] {}:{}  {}",
        result.duration.as_secs_f64(),
        result.file,
        result.line,
        result.name
    );
}

fn record_step<W>(
    result: &mut ScenarioResult,
    step: &gherkin::Step,
    ev: Step<W>,
    took: Option<Duration>,
) {
    let (status, error) = match ev {
        Step::Started => return,
        Step::Passed(..) => (Status::Passed, None),
        Step::Skipped => (
            Status::Skipped,
            Some("no step definition matches this step".to_owned()),
        ),
        Step::Failed(_, _, _, err) => {
            let text = match &err {
                event::StepError::Panic(info) => panic_text(info),
                other => other.to_string(),
            };
            // Steps report "the harness could not run" by panicking with this prefix.
            let status = if text.starts_with(crate::steps::HARNESS_ERROR) {
                Status::Error
            } else {
                Status::Failed
            };
            (status, Some(text))
        }
    };
    result.steps.push(StepResult {
        keyword: step.keyword.clone(),
        text: step.value.clone(),
        status,
        error,
        duration: took,
    });
}

fn panic_text(info: &event::Info) -> String {
    info.downcast_ref::<String>()
        .cloned()
        .or_else(|| info.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "step panicked".to_owned())
}

/// An error and its causes on one line: gherkin puts the line and column in the innermost one.
fn with_sources(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn relative(path: &Path, root: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

// Events of concurrently running scenarios interleave; this writer keys everything by scenario, so
// it needs no reordering.
impl cucumber::writer::Normalized for ResultsWriter {}

impl<W: 'static> Writer<W> for ResultsWriter {
    type Cli = cli::Empty;

    async fn handle_event(&mut self, event: parser::Result<Event<Cucumber<W>>>, _: &Self::Cli) {
        let event = match event {
            Ok(event) => event.value,
            Err(e) => {
                self.harness_errors.push(with_sources(&e));
                return;
            }
        };
        if let Cucumber::Feature(feature, ev) = event {
            match ev {
                Feature::Scenario(scenario, ev)
                | Feature::Rule(_, Rule::Scenario(scenario, ev)) => {
                    self.on_scenario(&feature, &scenario, ev);
                }
                Feature::Started | Feature::Finished | Feature::Rule(..) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use cucumber::event::{
        Cucumber, Feature, Retries, RetryableScenario, Scenario, Source, Step, StepError,
    };
    use cucumber::gherkin::{self, GherkinEnv};
    use cucumber::{Event, Writer as _};

    use super::ResultsWriter;
    use crate::results::Status;

    struct NoWorld;

    fn scenario_event(
        feature: &Source<gherkin::Feature>,
        retries: Retries,
        event: Scenario<NoWorld>,
    ) -> cucumber::parser::Result<Event<Cucumber<NoWorld>>> {
        let scenario = Source::new(feature.scenarios[0].clone());
        Ok(Event::new(Cucumber::Feature(
            feature.clone(),
            Feature::Scenario(
                scenario,
                RetryableScenario {
                    event,
                    retries: Some(retries),
                },
            ),
        )))
    }

    /// A scenario that fails, is retried and passes is one result, passed, with two attempts — and
    /// one JUnit testcase without a failure (cucumber's own JUnit writer repeats it as failed).
    #[tokio::test]
    async fn a_retried_scenario_is_counted_once_with_its_final_outcome() {
        let feature = gherkin::Feature::parse(
            "Feature: f\n  Scenario: flaky\n    Then it works\n",
            GherkinEnv::default(),
        )
        .unwrap();
        let feature = Source::new(feature);
        let step = Source::new(feature.scenarios[0].steps[0].clone());
        let mut writer = ResultsWriter::new(std::path::Path::new("."), false);
        let first = Retries {
            current: 0,
            left: 1,
        };
        let second = Retries {
            current: 1,
            left: 0,
        };
        let failed = Step::Failed(
            None,
            None,
            None,
            StepError::Panic(Arc::new("boom".to_owned())),
        );
        let passed_caps = regex::Regex::new("x").unwrap().capture_locations();
        let events = [
            scenario_event(&feature, first, Scenario::Started),
            scenario_event(&feature, first, Scenario::Step(step.clone(), failed)),
            scenario_event(&feature, first, Scenario::Finished),
            scenario_event(&feature, second, Scenario::Started),
            scenario_event(
                &feature,
                second,
                Scenario::Step(step.clone(), Step::Passed(passed_caps, None)),
            ),
            scenario_event(&feature, second, Scenario::Finished),
        ];
        for event in events {
            writer.handle_event(event, &cucumber::cli::Empty).await;
        }
        let (results, errors) = writer.into_results();
        assert!(errors.is_empty());
        assert_eq!(results.len(), 1);
        let (_, result) = &results[0];
        assert_eq!(
            (result.status, result.attempts, result.steps.len()),
            (Status::Passed, 2, 1)
        );

        let run = crate::results::RunResults {
            run_id: "t".into(),
            meshproof_version: "0".into(),
            target: "lab".into(),
            started: String::new(),
            duration: std::time::Duration::ZERO,
            tags: None,
            profiles: Vec::new(),
            versions: Default::default(),
            scenarios: vec![result.clone()],
            harness_errors: Vec::new(),
            bench: None,
            drills: Vec::new(),
        };
        let junit = crate::report::junit::render(&run).unwrap();
        assert_eq!(junit.matches("<testcase").count(), 1, "{junit}");
        assert!(!junit.contains("<failure"), "{junit}");
        assert!(junit.contains(r#"name="attempts" value="2""#), "{junit}");
    }
}

//! Runs the Gherkin features against a target and gathers one [`RunResults`].
//!
//! cucumber-rs parses and executes; [`parser::ProfileParser`] fills per-profile examples, the
//! [`writer::ResultsWriter`] turns events into results, and an after-hook hands each scenario's
//! check verdicts (with their evidence) over to be merged into the same results.

mod listing;
mod parser;
mod target;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use cucumber::World as _;
use cucumber::gherkin::tagexpr::TagOperation;
use cucumber::tag::Ext as _;
use futures::FutureExt as _;

pub use listing::{Listed, listing, render_markdown as listing_markdown, why};
pub use parser::ProfileParser;
pub use target::{ClusterAccess, KindSettings, TargetOptions};
pub use writer::ResultsWriter;

use crate::error::SourceErrors;
use crate::profile::{self, Profile};
use crate::results::{CheckResult, ProfileRef, RunResults, ScenarioResult};
use crate::steps::{MeshWorld, RunContext};
use crate::target::kube::{KubeError, KubeTarget, TargetKind, applicability};
use crate::target::lab::Lab;

pub struct RunOptions {
    /// Profile files to check.
    pub profiles: Vec<PathBuf>,
    /// A `.feature` file or a directory of them.
    pub features: PathBuf,
    /// A cucumber tag expression, e.g. `@pki and not @slow`.
    pub tags: Option<String>,
    /// Print one line per finished scenario.
    pub progress: bool,
    /// Re-run a failed scenario up to this many times; only its final outcome is reported.
    pub retries: usize,
    /// Judge this manifests folder instead of each profile's own `manifests/<profile>/`.
    pub manifests: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Profile(#[from] SourceErrors),
    #[error(
        "--tags {expr:?} is not a tag expression ({reason}); expected e.g. '@pki and not @slow'"
    )]
    Tags { expr: String, reason: String },
    #[error("features {path}: {reason}")]
    Features { path: PathBuf, reason: String },
    #[error("lab: {0}")]
    Lab(#[from] std::io::Error),
    #[error("{target}: {source}")]
    Kube {
        target: TargetKind,
        #[source]
        source: KubeError,
    },
    #[error("manifests of {profile}: {reason}")]
    Manifests { profile: String, reason: String },
}

pub fn run_id(now: time::OffsetDateTime) -> String {
    let fmt = time::macros::format_description!("[year][month][day]-[hour][minute][second]");
    let stamp = now
        .format(&fmt)
        .unwrap_or_else(|_| now.unix_timestamp().to_string());
    format!("{stamp}-{:04x}", std::process::id() & 0xffff)
}

pub fn load_profiles(paths: &[PathBuf]) -> Result<Vec<(Arc<Profile>, ProfileRef)>, SourceErrors> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match profile::load(path) {
            Ok(p) => {
                let bytes = std::fs::read(path).unwrap_or_default();
                let digest = crate::pki::fingerprint_sha256(&bytes);
                let reference = ProfileRef {
                    name: p.name.clone(),
                    file: path.display().to_string(),
                    sha256: digest,
                };
                out.push((Arc::new(p), reference));
            }
            Err(SourceErrors(mut e)) => errors.append(&mut e),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(SourceErrors(errors))
    }
}

/// Runs on the lab.
pub async fn run(options: RunOptions) -> Result<RunResults, RunError> {
    run_on(options, TargetOptions::Lab).await
}

/// Runs on `target`. Scenarios the target cannot serve are not run (see
/// [`applicability`]; [`listing`] names them); kind gets one cluster per profile, each with its
/// own Istio, trust domain and CA.
pub async fn run_on(options: RunOptions, target: TargetOptions) -> Result<RunResults, RunError> {
    let started = Instant::now();
    let now = time::OffsetDateTime::now_utc();
    let run_id = run_id(now);
    let kind = target.kind();
    let selection =
        applicability::combine_tags(options.tags.as_deref(), kind, target.allow_destructive());
    if let Some(user) = &options.tags {
        user.parse::<TagOperation>().map_err(|e| RunError::Tags {
            expr: user.clone(),
            reason: e.to_string(),
        })?;
    }
    let tags = match &selection {
        Some(expr) => Some(expr.parse::<TagOperation>().map_err(|e| RunError::Tags {
            expr: expr.clone(),
            reason: e.to_string(),
        })?),
        None => None,
    };
    if !options.features.exists() {
        return Err(RunError::Features {
            path: options.features.clone(),
            reason: "no such file or directory".into(),
        });
    }
    let loaded = load_profiles(&options.profiles)?;
    let (profiles, refs): (Vec<_>, Vec<_>) = loaded.into_iter().unzip();
    let mut outcome = Outcome::default();
    match &target {
        TargetOptions::Lab => {
            let context = Arc::new(RunContext::new(
                profiles.clone(),
                options.manifests.clone(),
                Lab::new(now)?,
            ));
            outcome.add(scenarios(&options, tags, profiles, &context).await);
            outcome.versions.extend(versions(&context));
        }
        TargetOptions::Kind(access, settings) => {
            if settings.name.is_some() && profiles.len() > 1 {
                return Err(RunError::Kube {
                    target: kind,
                    source: KubeError::Input {
                        what: "--reuse NAME".into(),
                        reason: "one cluster holds one profile: pass a single --profile with it"
                            .into(),
                    },
                });
            }
            for profile in &profiles {
                let configured = configured(profile, options.manifests.as_deref())?;
                let cluster = {
                    let (access, settings, run_id, profile) = (
                        access.clone(),
                        settings.clone(),
                        run_id.clone(),
                        profile.clone(),
                    );
                    off_executor(move || {
                        target::start_kind(&access, &settings, &run_id, &profile, &configured, now)
                    })
                    .await
                    .map_err(|source| RunError::Kube {
                        target: kind,
                        source,
                    })?
                };
                outcome.add(
                    on_cluster(&options, tags.clone(), vec![profile.clone()], cluster, now).await?,
                );
            }
        }
        TargetOptions::Cluster(access, run) => {
            let (access, run) = (access.clone(), run.clone());
            let cluster = off_executor(move || target::connect(&access, &run))
                .await
                .map_err(|source| RunError::Kube {
                    target: kind,
                    source,
                })?;
            outcome.add(on_cluster(&options, tags, profiles.clone(), cluster, now).await?);
        }
    }
    Ok(RunResults {
        run_id,
        meshproof_version: env!("CARGO_PKG_VERSION").to_owned(),
        target: kind.name().to_owned(),
        started: crate::checks::rfc3339(now),
        duration: started.elapsed(),
        tags: options.tags,
        profiles: refs,
        versions: outcome.versions,
        scenarios: outcome.scenarios,
        harness_errors: outcome.harness_errors,
        drills: outcome.drills,
        bench: None,
    })
}

/// What the scenarios of one or more contexts gave.
#[derive(Default)]
struct Outcome {
    scenarios: Vec<ScenarioResult>,
    harness_errors: Vec<String>,
    versions: std::collections::BTreeMap<String, String>,
    drills: Vec<crate::drills::DrillReport>,
}

impl Outcome {
    fn add(&mut self, other: Outcome) {
        let Outcome {
            mut scenarios,
            mut harness_errors,
            versions,
            mut drills,
        } = other;
        self.scenarios.append(&mut scenarios);
        self.harness_errors.append(&mut harness_errors);
        self.versions.extend(versions);
        self.drills.append(&mut drills);
    }
}

/// Runs the scenarios against a cluster, then ends the run's use of it (a failed delete is a
/// harness error: a cluster left behind must be noticed).
async fn on_cluster(
    options: &RunOptions,
    tags: Option<TagOperation>,
    profiles: Vec<Arc<Profile>>,
    cluster: KubeTarget,
    now: time::OffsetDateTime,
) -> Result<Outcome, RunError> {
    let cluster = Arc::new(cluster);
    let context = Arc::new(RunContext::on_cluster(
        profiles.clone(),
        options.manifests.clone(),
        Lab::new(now)?,
        cluster.clone(),
    ));
    let names: Vec<String> = profiles.iter().map(|p| p.name.clone()).collect();
    let mut outcome = scenarios(options, tags, profiles, &context).await;
    drop(context);
    outcome.versions.extend(cluster.versions());
    let label = cluster.cluster_label();
    outcome
        .versions
        .insert(format!("cluster of {}", names.join(", ")), label.clone());
    if let Err(e) = off_executor(move || target::finish(cluster)).await {
        outcome
            .harness_errors
            .push(format!("ending the run on {label}: {e}"));
    }
    Ok(outcome)
}

/// Runs a blocking cluster operation (kind, helm, kubectl) off the async executor, so Ctrl-C
/// stays responsive while it runs.
async fn off_executor<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, KubeError> + Send + 'static,
) -> Result<T, KubeError> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        Err(KubeError::Input {
            what: "a cluster operation".into(),
            reason: format!("did not finish: {e}"),
        })
    })
}

/// A profile's configured manifests (the `--manifests` folder, or the profile's own).
fn configured(
    profile: &Profile,
    manifests: Option<&Path>,
) -> Result<crate::configured::Configured, RunError> {
    let dir = manifests
        .map(Path::to_path_buf)
        .unwrap_or_else(|| crate::configured::default_dir(profile));
    crate::configured::load(profile, &dir).map_err(|e| RunError::Manifests {
        profile: profile.name.clone(),
        reason: e.to_string(),
    })
}

/// Runs the selected scenarios of `profiles` with `context` and gathers their results.
async fn scenarios(
    options: &RunOptions,
    tags: Option<TagOperation>,
    profiles: Vec<Arc<Profile>>,
    context: &Arc<RunContext>,
) -> Outcome {
    let root = project_root(&options.features);
    let names: Vec<String> = profiles.iter().map(|p| p.name.clone()).collect();
    let (sender, receiver) = std::sync::mpsc::channel::<(writer::ScenarioKey, Vec<CheckResult>)>();
    let before_ctx = context.clone();
    let writer = MeshWorld::cucumber::<PathBuf>()
        .with_parser(ProfileParser {
            profiles,
            target: context.kind(),
        })
        .with_writer(ResultsWriter::new(&root, options.progress))
        .retries(options.retries)
        // Most scenarios spend their time waiting on a mesh that is still starting (SPIRE takes
        // seconds); cucumber's default of 64 at once would leave the other profile's ready
        // scenarios queued behind them.
        .max_concurrent_scenarios(MAX_CONCURRENT_SCENARIOS)
        .before(move |_, _, _, world| {
            world.ctx = Some(before_ctx.clone());
            async {}.boxed_local()
        })
        .after(move |feature, _, scenario, _, world| {
            if let Some(world) = world {
                let _ = sender.send((
                    writer::key(feature, scenario),
                    std::mem::take(&mut world.checks),
                ));
            }
            async {}.boxed_local()
        })
        // Our CLI owns the process arguments; cucumber must not parse them.
        .with_cli(cucumber::cli::Opts::<_, _, _, cucumber::cli::Empty>::default())
        .filter_run(options.features.clone(), move |feature, rule, scenario| {
            let selected = match &tags {
                None => true,
                Some(op) => op.eval(
                    feature
                        .tags
                        .iter()
                        .chain(rule.iter().flat_map(|r| &r.tags))
                        .chain(&scenario.tags),
                ),
            };
            selected && !names_another_profile(scenario, &names)
        })
        .await;

    let (scenarios, harness_errors) = writer.into_results();
    let mut checks: HashMap<writer::ScenarioKey, Vec<CheckResult>> = HashMap::new();
    for (key, mut found) in receiver.try_iter() {
        // A retried scenario reports once per attempt; the last attempt's checks stand.
        checks.insert(key.clone(), std::mem::take(&mut found));
    }
    let scenarios = scenarios
        .into_iter()
        .map(|(key, mut result)| {
            result.checks = checks.remove(&key).unwrap_or_default();
            result
        })
        .collect();
    Outcome {
        scenarios,
        harness_errors,
        versions: Default::default(),
        drills: context
            .drills
            .lock()
            .map(|mut d| std::mem::take(&mut *d))
            .unwrap_or_default(),
    }
}

/// Whether a scenario is about a profile this run does not check (`Given the profile "X"`
/// written into the feature): it belongs to a run of that profile, as the rows generated for a
/// profile do. A kind run checks one profile per cluster.
fn names_another_profile(scenario: &cucumber::gherkin::Scenario, profiles: &[String]) -> bool {
    scenario.steps.iter().any(|step| {
        step.value
            .strip_prefix("the profile \"")
            .and_then(|rest| rest.strip_suffix('"'))
            .is_some_and(|name| !profiles.iter().any(|p| p == name))
    })
}

/// Scenarios in flight at once. They are cheap while they wait; a bound still keeps a huge
/// generated matrix from opening thousands of connections to a handful of Envoys at once.
const MAX_CONCURRENT_SCENARIOS: usize = 512;

/// Every component that took part in the run, with its version.
fn versions(context: &RunContext) -> std::collections::BTreeMap<String, String> {
    let mut versions: std::collections::BTreeMap<String, String> =
        [("meshproof".to_owned(), env!("CARGO_PKG_VERSION").to_owned())].into();
    if let Some(envoy) = context.lab.envoy_version() {
        versions.insert("envoy".to_owned(), envoy);
    }
    if let Some(scale) = context.lab.ttl_report() {
        versions.insert(crate::results::LAB_TTL_SCALE.into(), scale);
    }
    if let Some(spire) = context.lab.spire_report() {
        versions.insert("spire-server".to_owned(), spire.binaries.server_version);
        versions.insert("spire-agent".to_owned(), spire.binaries.agent_version);
        // The lab's short TTLs stand in for the profile's; reports must say which were used.
        versions.insert(
            "spire lab TTLs".to_owned(),
            format!(
                "ca_ttl {}, x509 SVID ttl {}",
                crate::duration::format(spire.config.ca_ttl),
                crate::duration::format(spire.config.x509_svid_ttl)
            ),
        );
    }
    versions
}

/// The directory feature paths are reported relative to: the one holding `features/`.
fn project_root(features: &Path) -> PathBuf {
    let features = features
        .canonicalize()
        .unwrap_or_else(|_| features.to_path_buf());
    let dir = if features.is_file() {
        features.parent().map(Path::to_path_buf).unwrap_or_default()
    } else {
        features
    };
    dir.parent().map(Path::to_path_buf).unwrap_or(dir)
}

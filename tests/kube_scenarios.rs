//! Which scenarios of features/*.feature each target runs, decided by tags alone (see
//! `src/target/kube/applicability.rs`): `@lab` = lab only, `@kube` = kind and cluster only,
//! `@destructive` = on an existing cluster only with --allow-destructive.
//!
//! Run with `--nocapture` to see the per-target listing. The assertions:
//! * every scenario not tagged `@lab` runs on kind (the same features run unchanged there);
//! * a scenario whose steps need the lab (its mesh, its CA) is tagged `@lab`, so kind and
//!   cluster runs never start a step they cannot serve;
//! * `@destructive` scenarios are refused on a cluster unless allowed, and run on kind;
//! * the tag expression the runner gets ([`tag_filter`]) selects exactly what [`applies`] says,
//!   as cucumber evaluates it.

use std::path::{Path, PathBuf};

use cucumber::gherkin::tagexpr::TagOperation;
use cucumber::gherkin::{Feature, GherkinEnv};
use cucumber::tag::Ext as _;
use meshproof::target::kube::applicability::{Applicability, TargetKind, applies, tag_filter};

struct Scenario {
    place: String,
    name: String,
    tags: Vec<String>,
    steps: Vec<String>,
}

fn features_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("features")
}

fn scenarios() -> Vec<Scenario> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(features_dir())
        .expect("features/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "feature"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let feature = Feature::parse_path(&file, GherkinEnv::default())
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let background: Vec<String> = feature
            .background
            .iter()
            .flat_map(|b| &b.steps)
            .map(|s| s.value.clone())
            .collect();
        let mut push =
            |rule_tags: &[String], rule_background: &[String], s: &cucumber::gherkin::Scenario| {
                let tags = feature
                    .tags
                    .iter()
                    .chain(rule_tags)
                    .chain(&s.tags)
                    .cloned()
                    .collect();
                let steps = background
                    .iter()
                    .chain(rule_background)
                    .cloned()
                    .chain(s.steps.iter().map(|st| st.value.clone()))
                    .collect();
                out.push(Scenario {
                    place: format!("{name}:{}", s.position.line),
                    name: s.name.clone(),
                    tags,
                    steps,
                });
            };
        for s in &feature.scenarios {
            push(&[], &[], s);
        }
        for rule in &feature.rules {
            let rule_background: Vec<String> = rule
                .background
                .iter()
                .flat_map(|b| &b.steps)
                .map(|s| s.value.clone())
                .collect();
            for s in &rule.scenarios {
                push(&rule.tags, &rule_background, s);
            }
        }
    }
    out
}

fn tags(s: &Scenario) -> impl Iterator<Item = &str> {
    s.tags.iter().map(String::as_str)
}

#[test]
fn per_target_listing_of_the_scenarios_that_apply() {
    let all = scenarios();
    assert!(
        !all.is_empty(),
        "no scenarios found in {}",
        features_dir().display()
    );
    for target in TargetKind::ALL {
        for allow in [false, true] {
            if target != TargetKind::Cluster && allow {
                continue;
            }
            let flag = if allow { " --allow-destructive" } else { "" };
            let (runs, skipped): (Vec<&Scenario>, Vec<&Scenario>) = all
                .iter()
                .partition(|s| applies(target, tags(s), allow).runs());
            eprintln!(
                "\n--target {target}{flag}: {} of {} scenarios apply (tag filter: {})",
                runs.len(),
                all.len(),
                tag_filter(target, allow).unwrap_or_else(|| "none".into())
            );
            for s in &runs {
                eprintln!("  runs     {:<24} {}", s.place, s.name);
            }
            for s in &skipped {
                let why = match applies(target, tags(s), allow) {
                    Applicability::NotOnTarget(why) => why,
                    Applicability::NeedsAllowDestructive => {
                        "@destructive: needs --allow-destructive".into()
                    }
                    Applicability::Runs => unreachable!(),
                };
                eprintln!("  skipped  {:<24} {}  ({why})", s.place, s.name);
            }
        }
    }
}

#[test]
fn every_scenario_not_tagged_lab_can_run_on_kind() {
    let mut failures = Vec::new();
    let mut on_kind = 0;
    for s in scenarios() {
        let lab_only = s.tags.iter().any(|t| t == "lab");
        match applies(TargetKind::Kind, tags(&s), false) {
            Applicability::Runs => on_kind += 1,
            other if !lab_only => failures.push(format!("{} {}: {other:?}", s.place, s.name)),
            _ => {}
        }
    }
    assert!(
        failures.is_empty(),
        "not runnable on kind:\n{}",
        failures.join("\n")
    );
    assert!(on_kind > 0, "no scenario runs on kind at all");
}

#[test]
fn scenarios_whose_steps_need_the_lab_are_tagged_lab() {
    let mut untagged = Vec::new();
    for s in scenarios() {
        let needs_lab: Vec<&String> = s
            .steps
            .iter()
            .filter(|step| {
                step.split(|c: char| !c.is_alphanumeric())
                    .any(|word| word.eq_ignore_ascii_case("lab"))
            })
            .collect();
        if !needs_lab.is_empty() && !s.tags.iter().any(|t| t == "lab") {
            untagged.push(format!("{} {}: {:?}", s.place, s.name, needs_lab));
        }
    }
    assert!(
        untagged.is_empty(),
        "scenarios with lab-only steps but no @lab tag (kind and cluster would start them and fail):\n{}",
        untagged.join("\n")
    );
}

#[test]
fn destructive_scenarios_need_allow_destructive_on_a_cluster_only() {
    for s in scenarios()
        .iter()
        .filter(|s| s.tags.iter().any(|t| t == "destructive"))
    {
        if s.tags.iter().any(|t| t == "lab") {
            continue;
        }
        assert_eq!(
            applies(TargetKind::Cluster, tags(s), false),
            Applicability::NeedsAllowDestructive,
            "{}",
            s.place
        );
        assert!(
            applies(TargetKind::Cluster, tags(s), true).runs(),
            "{}",
            s.place
        );
        assert!(
            applies(TargetKind::Kind, tags(s), false).runs(),
            "{}",
            s.place
        );
    }
    // The rule itself, whether or not a feature uses the tag today.
    let synthetic = ["drill", "destructive"];
    assert_eq!(
        applies(TargetKind::Cluster, synthetic, false),
        Applicability::NeedsAllowDestructive
    );
}

#[test]
fn the_runners_tag_filter_selects_exactly_what_applies() {
    for s in scenarios() {
        for target in TargetKind::ALL {
            for allow in [false, true] {
                let expected = applies(target, tags(&s), allow).runs();
                let selected = match tag_filter(target, allow) {
                    None => true,
                    Some(expr) => {
                        let op: TagOperation = expr.parse().expect("a tag expression");
                        op.eval(s.tags.iter())
                    }
                };
                assert_eq!(
                    selected, expected,
                    "{} on {target} (allow-destructive {allow})",
                    s.place
                );
            }
        }
    }
}

#[test]
fn features_folder_is_where_the_runner_looks() {
    assert!(Path::new(&features_dir()).is_dir());
}

//! Admission: the in-process Gatekeeper evaluation ([`crate::policy::gatekeeper::Admission`],
//! regorus) beside Gatekeeper's own `gator`, on the same ConstraintTemplates, constraints and
//! objects, in the same run.
//!
//! Templates and constraints are SomaAgentHub's, rendered from its profile; the objects are the
//! runbook's four test pods and the profile's rendered Deployments. gator is timed as a user
//! invokes it (`gator test` over the objects, `gator verify` on a suite asserting meshproof's own
//! decisions — so agreement is checked too), once with the base objects and once with many copies
//! (amortising gator's start-up), and `gator bench` reports its engine's own per-review latency.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use super::probes::Scratch;
use super::stats::{Stat, ratio};
use crate::policy::gatekeeper::{Admission, Operation, RUNBOOK_PODS, render_templates};

#[derive(Clone, Debug, Serialize)]
pub struct AdmissionOptions {
    pub repetitions: usize,
    /// Objects in the amortised `gator test` run (copies of the base objects).
    pub many_objects: usize,
    /// gator to compare with; `None` looks it up ([`find_gator`]).
    pub gator: Option<PathBuf>,
    /// `gator bench --iterations`.
    pub gator_bench_iterations: usize,
}

/// One way of invoking gator, timed.
#[derive(Clone, Debug, Serialize)]
pub struct GatorRun {
    /// e.g. `gator test -f policies -f objects -o json`.
    pub command: String,
    pub objects: usize,
    /// Wall seconds per invocation.
    pub wall: Stat,
    /// Median wall per object, in microseconds.
    pub per_object_us: f64,
    /// Whether gator's answer agreed with the in-process decisions.
    pub agrees: Option<bool>,
    pub note: Option<String>,
}

/// What `gator bench` reports about its own engine.
#[derive(Clone, Debug, Serialize)]
pub struct GatorBench {
    pub command: String,
    pub engine: String,
    pub reviews: u64,
    pub mean_us: Option<f64>,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub reviews_per_second: Option<f64>,
    pub setup_us: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct AdmissionBench {
    pub templates: usize,
    pub constraints: usize,
    pub objects: usize,
    /// In-process review (every constraint against one object), microseconds per object.
    pub in_process_us: Stat,
    /// Diagnostic: the same Rego evaluations on engine clones prepared once (regorus analyses
    /// and hoists a module set on an engine's first evaluation; a clone of a prepared engine
    /// skips that), microseconds per object. `None` when its violations did not match.
    pub prepared_engine_us: Option<Stat>,
    /// Violations found in process over the base objects.
    pub violations: usize,
    pub gator_version: Option<String>,
    pub gator_test: Option<GatorRun>,
    pub gator_test_many: Option<GatorRun>,
    pub gator_verify: Option<GatorRun>,
    pub gator_bench: Option<GatorBench>,
    /// Why gator figures are missing, if they are.
    pub gator_missing: Option<String>,
}

impl AdmissionBench {
    /// How many times faster in process is per object than `gator test` on the base objects.
    pub fn speedup_vs_invocation(&self) -> Option<f64> {
        ratio(
            self.gator_test.as_ref()?.per_object_us,
            self.in_process_us.median,
        )
    }

    /// The same against gator's best case: one invocation over many objects.
    pub fn speedup_vs_amortised(&self) -> Option<f64> {
        ratio(
            self.gator_test_many.as_ref()?.per_object_us,
            self.in_process_us.median,
        )
    }

    /// Engine against engine: gator bench's mean per review over the in-process median.
    pub fn speedup_vs_engine(&self) -> Option<f64> {
        ratio(
            self.gator_bench.as_ref()?.mean_us?,
            self.in_process_us.median,
        )
    }
}

/// gator via `MESHPROOF_GATOR`, `PATH`, then `$MESHPROOF_CACHE/bin` (default
/// `~/.cache/meshproof/bin`, where `scripts/install/gator.sh` installs it).
pub fn find_gator() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("MESHPROOF_GATOR") {
        return Some(PathBuf::from(path));
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("gator");
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    let cache = std::env::var_os("MESHPROOF_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/meshproof")))?;
    let cached = cache.join("bin/gator");
    cached.is_file().then_some(cached)
}

/// The objects both engines judge: `(file stem, object)`.
pub fn base_objects(profile: &crate::profile::Profile) -> Result<Vec<(String, Value)>, String> {
    let mut out = Vec::new();
    for (name, text) in RUNBOOK_PODS {
        let object: Value =
            serde_saphyr::from_str(text).map_err(|e| format!("runbook pod {name}: {e}"))?;
        out.push(((*name).to_owned(), object));
    }
    for rendered in crate::render::render(profile, None) {
        if rendered.file != "workloads.yaml" {
            continue;
        }
        for object in rendered.documents {
            if object["kind"] == "Deployment" {
                let name = object["metadata"]["name"]
                    .as_str()
                    .unwrap_or("x")
                    .to_owned();
                out.push((format!("deployment-{name}"), object));
            }
        }
    }
    Ok(out)
}

/// `n` objects: the base objects, then renamed copies of them.
fn many(base: &[(String, Value)], n: usize) -> Vec<(String, Value)> {
    (0..n.max(base.len()))
        .filter_map(|i| {
            let (name, object) = base.get(i % base.len())?;
            let copy = i / base.len();
            if copy == 0 {
                return Some((name.clone(), object.clone()));
            }
            let mut object = object.clone();
            if let Some(n) = object.pointer_mut("/metadata/name") {
                *n = json!(format!("{}-copy{copy}", n.as_str().unwrap_or("x")));
            }
            Some((format!("{name}-copy{copy}"), object))
        })
        .collect()
}

fn violations(admission: &Admission, object: &Value) -> Vec<(String, String)> {
    let result = admission.review(object, Operation::Create);
    let mut found: Vec<(String, String)> = result
        .denials
        .iter()
        .chain(&result.warnings)
        .chain(&result.dry_run)
        .map(|v| (v.constraint.clone(), v.message.clone()))
        .collect();
    found.sort();
    found
}

fn write_yaml(path: &Path, value: &Value) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    let text = serde_saphyr::to_string(value).map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Judges one gator invocation's (exit code, stdout): (agrees, why not).
type GatorCheck<'a> = &'a dyn Fn(i32, &str) -> (bool, Option<String>);

/// Wall time of one gator invocation, with its exit code and stdout.
fn run_gator(gator: &Path, args: &[&str], dir: &Path) -> Result<(Duration, i32, String), String> {
    let started = Instant::now();
    let output = Command::new(gator)
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", gator.display()))?;
    Ok((
        started.elapsed(),
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    ))
}

/// Go's `time.Duration` text (`941.73µs`, `25.3ms`, `1m2.5s`) in microseconds.
pub fn go_duration_us(text: &str) -> Option<f64> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest.get(..digits)?.parse().ok()?;
        rest = rest.get(digits..)?;
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = rest.get(..unit_len)?;
        rest = rest.get(unit_len..)?;
        total += value
            * match unit {
                "ns" => 1e-3,
                "us" | "µs" | "μs" => 1.0,
                "ms" => 1e3,
                "s" => 1e6,
                "m" => 60e6,
                "h" => 3600e6,
                _ => return None,
            };
    }
    Some(total)
}

/// Reads `gator bench -o json` output (an array with one entry per engine).
pub fn parse_gator_bench(stdout: &str, command: String) -> Option<GatorBench> {
    let start = stdout.find('[')?;
    let parsed: Value = serde_json::from_str(stdout.get(start..)?).ok()?;
    let entry = parsed.as_array()?.first()?.clone();
    let dur = |p: &str| {
        entry
            .pointer(p)
            .and_then(Value::as_str)
            .and_then(go_duration_us)
    };
    Some(GatorBench {
        command,
        engine: entry["engine"].as_str().unwrap_or("?").to_owned(),
        reviews: entry["totalReviews"].as_u64().unwrap_or(0),
        mean_us: dur("/latencies/mean"),
        p50_us: dur("/latencies/p50"),
        p99_us: dur("/latencies/p99"),
        reviews_per_second: entry["reviewsPerSecond"].as_f64(),
        setup_us: dur("/setupDuration"),
    })
}

fn gator_test_results(stdout: &str) -> Option<Vec<(String, String)>> {
    if stdout.trim().is_empty() {
        return Some(Vec::new());
    }
    let start = stdout.find('[')?;
    let parsed: Value = serde_json::from_str(stdout.get(start..)?).ok()?;
    let mut out: Vec<(String, String)> = parsed
        .as_array()?
        .iter()
        .map(|r| {
            (
                r.pointer("/constraint/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                r.get("msg")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    out.sort();
    Some(out)
}

/// Each constraint's template engine, prepared by one evaluation, with its rule and parameters.
fn prepared_engines(admission: &Admission) -> Vec<(regorus::Engine, String, Value)> {
    let mut out = Vec::new();
    for constraint in admission.constraints() {
        let Some(template) = admission
            .templates()
            .iter()
            .find(|t| t.kind == constraint.kind)
        else {
            continue;
        };
        let mut engine = template.engine.clone();
        engine.set_input(regorus::Value::from(json!({
            "review": {"object": {}, "oldObject": null, "kind": {}},
            "parameters": {}
        })));
        let _ = engine.eval_rule(template.violation_rule.clone());
        out.push((
            engine,
            template.violation_rule.clone(),
            constraint.parameters.clone(),
        ));
    }
    out
}

/// Violations of every prepared constraint for `object`, reviewed as a CREATE.
fn eval_prepared(engines: &[(regorus::Engine, String, Value)], object: &Value) -> usize {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let review = json!({
        "uid": "",
        "kind": {"group": group, "version": version, "kind": object["kind"]},
        "name": object.pointer("/metadata/name"),
        "namespace": object.pointer("/metadata/namespace"),
        "operation": "CREATE",
        "userInfo": {},
        "object": object,
        "oldObject": null,
        "dryRun": false,
    });
    let mut found = 0;
    for (engine, rule, parameters) in engines {
        let mut engine = engine.clone();
        engine.set_input(regorus::Value::from(
            json!({"review": review, "parameters": parameters}),
        ));
        if let Ok(value) = engine.eval_rule(rule.clone()) {
            if let Ok(set) = value.as_set() {
                found += set.len();
            }
        }
    }
    found
}

fn calibrated(repetitions: usize, objects: usize, mut pass: impl FnMut(usize) -> Duration) -> Stat {
    let one = pass(1).as_secs_f64().max(1e-6);
    let iterations = ((0.2 / one).ceil() as usize).clamp(1, 100_000);
    let per_object: Vec<f64> = (0..repetitions.max(1))
        .map(|_| pass(iterations).as_secs_f64() * 1e6 / (iterations * objects.max(1)) as f64)
        .collect();
    Stat::of(per_object)
}

/// Times in-process reviews: per object, in microseconds, one sample per repetition (each at
/// least ~0.2 s of work).
fn in_process(admission: &Admission, objects: &[Value], repetitions: usize) -> Stat {
    let pass = |iterations: usize| {
        let started = Instant::now();
        for _ in 0..iterations {
            for object in objects {
                std::hint::black_box(
                    admission.review(std::hint::black_box(object), Operation::Create),
                );
            }
        }
        started.elapsed()
    };
    calibrated(repetitions, objects.len(), pass)
}

pub fn measure(options: &AdmissionOptions) -> Result<AdmissionBench, String> {
    let paths = crate::profile::resolve("soma-agent-hub").map_err(|e| e.to_string())?;
    let path = paths
        .first()
        .ok_or_else(|| "no soma-agent-hub profile".to_owned())?;
    let profile = crate::profile::load(path).map_err(|e| e.to_string())?;
    let policy_objects = render_templates(&profile);
    let admission = Admission::from_objects(Path::new("<rendered>"), &policy_objects)
        .map_err(|e| format!("rendered policies: {e}"))?;
    let base = base_objects(&profile)?;
    let objects: Vec<Value> = base.iter().map(|(_, o)| o.clone()).collect();
    let expected: Vec<Vec<(String, String)>> =
        objects.iter().map(|o| violations(&admission, o)).collect();
    let in_process_us = in_process(&admission, &objects, options.repetitions);
    // Every bundled constraint matches every base object (the workload kinds, in the profile's
    // namespace), so the prepared engines do the review's Rego work; checked by the count.
    let engines = prepared_engines(&admission);
    let total: usize = expected.iter().map(Vec::len).sum();
    let prepared_engine_us = (objects
        .iter()
        .map(|o| eval_prepared(&engines, o))
        .sum::<usize>()
        == total)
        .then(|| {
            calibrated(options.repetitions, objects.len(), |iterations| {
                let started = Instant::now();
                for _ in 0..iterations {
                    for object in &objects {
                        std::hint::black_box(eval_prepared(&engines, std::hint::black_box(object)));
                    }
                }
                started.elapsed()
            })
        });
    let mut bench = AdmissionBench {
        prepared_engine_us,
        templates: admission.templates().len(),
        constraints: admission.constraints().len(),
        objects: objects.len(),
        in_process_us,
        violations: expected.iter().map(Vec::len).sum(),
        gator_version: None,
        gator_test: None,
        gator_test_many: None,
        gator_verify: None,
        gator_bench: None,
        gator_missing: None,
    };
    let Some(gator) = options.gator.clone().or_else(find_gator) else {
        bench.gator_missing =
            Some("gator not installed (scripts/setup installs it; or set MESHPROOF_GATOR)".into());
        return Ok(bench);
    };
    bench.gator_version = Command::new(&gator)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        });

    // The fixture: one file per template and per constraint, one per object.
    let scratch = Scratch::new("gator")?;
    let dir = scratch.path();
    let mut template_files = std::collections::BTreeMap::new();
    let mut constraints = Vec::new();
    for object in &policy_objects {
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or("x")
            .to_owned();
        if object["kind"] == "ConstraintTemplate" {
            let kind = object
                .pointer("/spec/crd/spec/names/kind")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let file = format!("policies/template-{name}.yaml");
            write_yaml(&dir.join(&file), object)?;
            template_files.insert(kind, file);
        } else {
            let kind = object["kind"].as_str().unwrap_or_default().to_owned();
            let file = format!("policies/constraint-{name}.yaml");
            write_yaml(&dir.join(&file), object)?;
            constraints.push((name, kind, file));
        }
    }
    for (name, object) in &base {
        write_yaml(&dir.join(format!("objects/{name}.yaml")), object)?;
    }
    let copies = many(&base, options.many_objects);
    for (name, object) in &copies {
        write_yaml(&dir.join(format!("many/{name}.yaml")), object)?;
    }

    let time_gator =
        |args: &[&str], n_objects: usize, check: GatorCheck<'_>| -> Result<GatorRun, String> {
            let mut walls = Vec::new();
            let mut agrees = true;
            let mut note = None;
            // One untimed run first: the binary's pages and the files are in the cache for all.
            run_gator(&gator, args, dir)?;
            for _ in 0..options.repetitions.max(1) {
                let (wall, code, stdout) = run_gator(&gator, args, dir)?;
                let (ok, why) = check(code, &stdout);
                agrees &= ok;
                if why.is_some() {
                    note = why;
                }
                walls.push(wall);
            }
            let wall = Stat::of_durations(&walls);
            Ok(GatorRun {
                command: format!("gator {}", args.join(" ")),
                objects: n_objects,
                per_object_us: wall.median * 1e6 / n_objects.max(1) as f64,
                wall,
                agrees: Some(agrees),
                note,
            })
        };

    let mut expected_all: Vec<(String, String)> = expected.iter().flatten().cloned().collect();
    expected_all.sort();
    let check_base = |_code: i32, stdout: &str| match gator_test_results(stdout) {
        Some(found) if found == expected_all => (true, None),
        Some(found) => (
            false,
            Some(format!(
                "gator found {} violations, meshproof {}",
                found.len(),
                expected_all.len()
            )),
        ),
        None => (false, Some("gator test printed no JSON".into())),
    };
    bench.gator_test = Some(time_gator(
        &["test", "-f", "policies", "-f", "objects", "-o", "json"],
        base.len(),
        &check_base,
    )?);

    let expected_many: usize = copies
        .iter()
        .map(|(_, o)| violations(&admission, o).len())
        .sum();
    let check_many = |_code: i32, stdout: &str| match gator_test_results(stdout) {
        Some(found) if found.len() == expected_many => (true, None),
        Some(found) => (
            false,
            Some(format!(
                "gator found {} violations, meshproof {expected_many}",
                found.len()
            )),
        ),
        None => (false, Some("gator test printed no JSON".into())),
    };
    bench.gator_test_many = Some(time_gator(
        &["test", "-f", "policies", "-f", "many", "-o", "json"],
        copies.len(),
        &check_many,
    )?);

    // gator verify: a suite whose assertions are the in-process decisions, per constraint.
    let mut tests = Vec::new();
    for (constraint, kind, constraint_file) in &constraints {
        let Some(template_file) = template_files.get(kind) else {
            continue;
        };
        let cases: Vec<Value> = base
            .iter()
            .zip(&expected)
            .map(|((name, _), found)| {
                let count = found.iter().filter(|(c, _)| c == constraint).count();
                json!({
                    "name": name,
                    "object": format!("objects/{name}.yaml"),
                    "assertions": [{ "violations": count }],
                })
            })
            .collect();
        tests.push(json!({
            "name": constraint,
            "template": template_file,
            "constraint": constraint_file,
            "cases": cases,
        }));
    }
    let suite = json!({
        "kind": "Suite",
        "apiVersion": "test.gatekeeper.sh/v1alpha1",
        "metadata": { "name": "meshproof-bench" },
        "tests": tests,
    });
    write_yaml(&dir.join("suite.yaml"), &suite)?;
    let check_verify = |code: i32, _stdout: &str| {
        if code == 0 {
            (true, None)
        } else {
            (
                false,
                Some(format!("gator verify exited {code}: it disagrees")),
            )
        }
    };
    bench.gator_verify = Some(time_gator(
        &["verify", "suite.yaml"],
        base.len(),
        &check_verify,
    )?);

    let iterations = options.gator_bench_iterations.max(1).to_string();
    let args = [
        "bench",
        "-f",
        "policies",
        "-f",
        "objects",
        "--engine",
        "rego",
        "-n",
        iterations.as_str(),
        "-o",
        "json",
    ];
    match run_gator(&gator, &args, dir) {
        Ok((_, 0, stdout)) => {
            bench.gator_bench = parse_gator_bench(&stdout, format!("gator {}", args.join(" ")));
        }
        Ok((_, code, _)) => {
            bench.gator_missing = Some(format!("gator bench exited {code}"));
        }
        Err(e) => bench.gator_missing = Some(e),
    }
    drop(scratch);
    Ok(bench)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration_us("941.73µs"), Some(941.73));
        assert_eq!(go_duration_us("25.5ms"), Some(25_500.0));
        assert_eq!(go_duration_us("1m2s"), Some(62e6));
        assert_eq!(go_duration_us("100ns"), Some(0.1));
        assert_eq!(go_duration_us("12parsecs"), None);
        assert_eq!(go_duration_us(""), None);
    }

    #[test]
    fn gator_bench_json() {
        let out = "Warning: few iterations\n[{\"engine\":\"rego\",\"totalReviews\":800,\"setupDuration\":\"25ms\",\"latencies\":{\"mean\":\"941.73µs\",\"p50\":\"910µs\",\"p99\":\"2.2ms\"},\"reviewsPerSecond\":1061.5}]";
        let b = parse_gator_bench(out, "gator bench".into()).unwrap();
        assert_eq!(b.reviews, 800);
        assert_eq!(b.mean_us, Some(941.73));
        assert_eq!(b.p99_us, Some(2200.0));
        assert_eq!(b.setup_us, Some(25_000.0));
    }
}

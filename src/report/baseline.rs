//! `--baseline DIR`: what changed since an earlier run. Widened access comes first — a request the
//! baseline saw denied that is now allowed is the regression a zero-trust review exists to stop —
//! then checks that passed in the baseline and fail now, then what was fixed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::results::{CheckResult, RunResults, Status};

#[derive(Debug, Default, serde::Serialize)]
pub struct Regressions {
    pub baseline_run: String,
    /// `check subject`: observed allow now, deny in the baseline.
    pub widened: Vec<String>,
    /// `check subject: finding` for checks that passed in the baseline and fail now.
    pub newly_failing: Vec<String>,
    pub fixed: Vec<String>,
}

impl Regressions {
    pub fn is_empty(&self) -> bool {
        self.widened.is_empty() && self.newly_failing.is_empty()
    }
}

pub fn load(dir: &Path) -> Result<RunResults, String> {
    let file = if dir.is_file() {
        dir.to_path_buf()
    } else {
        dir.join("results.json")
    };
    let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    serde_json::from_str(&text)
        .map_err(|e| format!("{}: not a meshproof results.json: {e}", file.display()))
}

fn checks(results: &RunResults) -> BTreeMap<(String, String), &CheckResult> {
    results
        .scenarios
        .iter()
        .flat_map(|s| &s.checks)
        .map(|c| ((c.check.clone(), c.subject.clone()), c))
        .collect()
}

fn observed(c: &CheckResult) -> Option<&str> {
    c.evidence
        .iter()
        .find(|(k, _)| k == "observed")
        .map(|(_, v)| v.as_str())
}

pub fn compare(baseline: &RunResults, current: &RunResults) -> Regressions {
    let before = checks(baseline);
    let mut out = Regressions {
        baseline_run: baseline.run_id.clone(),
        ..Regressions::default()
    };
    for (key, now) in checks(current) {
        let Some(then) = before.get(&key) else {
            continue;
        };
        let name = format!("{} {}", key.0, key.1);
        if key.0.starts_with("intent.")
            && observed(then) == Some("deny")
            && observed(now) == Some("allow")
        {
            out.widened.push(name);
        } else if then.status == Status::Passed && now.status == Status::Failed {
            out.newly_failing.push(format!("{name}: {}", now.summary));
        } else if then.status == Status::Failed && now.status == Status::Passed {
            out.fixed.push(name);
        }
    }
    out
}

pub fn render_markdown(r: &Regressions) -> String {
    let mut md = format!("## Changes since baseline run `{}`\n\n", r.baseline_run);
    let mut section = |title: &str, items: &[String]| {
        let _ = writeln!(md, "### {title} ({})\n", items.len());
        for i in items {
            let _ = writeln!(md, "- {i}");
        }
        md.push('\n');
    };
    section(
        "❌ Widened access: denied in the baseline, allowed now",
        &r.widened,
    );
    section("❌ Newly failing", &r.newly_failing);
    section("✅ Fixed", &r.fixed);
    md
}

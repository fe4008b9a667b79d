//! The console summary printed at the end of a run.

use std::fmt::Write as _;

use crate::results::{RunResults, Status};

pub fn summary(results: &RunResults, report_dir: Option<&std::path::Path>) -> String {
    let mut out = String::new();
    let c = results.counts();
    let _ = writeln!(out);
    for s in results
        .scenarios
        .iter()
        .filter(|s| matches!(s.status, Status::Failed | Status::Error | Status::Skipped))
    {
        let _ = writeln!(
            out,
            "  {:<7} {}:{}  {}",
            label(s.status),
            s.file,
            s.line,
            s.name
        );
        if let Some(message) = s.failure_message() {
            let _ = writeln!(out, "          {message}");
        }
    }
    for e in &results.harness_errors {
        let _ = writeln!(out, "  ERROR   {e}");
    }
    let profiles: Vec<&str> = results.profiles.iter().map(|p| p.name.as_str()).collect();
    let _ = writeln!(
        out,
        "meshproof {} · target {} · profiles {} · {:.2}s",
        results.run_id,
        results.target,
        profiles.join(", "),
        results.duration.as_secs_f64()
    );
    let checks: usize = results.scenarios.iter().map(|s| s.checks.len()).sum();
    let _ = writeln!(
        out,
        "scenarios: {} passed, {} failed, {} skipped, {} errors · {checks} checks",
        c.passed, c.failed, c.skipped, c.errors
    );
    if let Some(dir) = report_dir {
        let _ = writeln!(out, "reports: {}", dir.display());
    }
    // The plain closing line CI tooling reads.
    let _ = writeln!(out, "{} passed, {} failed", c.passed, c.failed + c.errors);
    out
}

fn label(status: Status) -> &'static str {
    match status {
        Status::Passed => "pass",
        Status::Failed => "FAIL",
        Status::Skipped => "SKIP",
        Status::Error => "ERROR",
    }
}

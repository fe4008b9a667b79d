//! `summary.md`: a Markdown summary for a GitHub step summary (`cat summary.md >>
//! "$GITHUB_STEP_SUMMARY"`) or a PR comment: the headline, each runbook checklist with ✅ / ❌ / ➖,
//! widened accesses, failing scenarios with their finding, and the status of every control.
//!
//! Kept well under GitHub's 1 MiB step-summary limit: long lists are cut with a pointer to
//! `report.html`. Every text from the run is escaped for Markdown tables and inline HTML.

use std::fmt::Write as _;

use super::controls::{Coverage, Evaluation, Mapping, Tally};
use super::text::{duration, one_line};
use super::view::View;
use crate::results::Status;

const MAX_FAILURES: usize = 50;
const MAX_WIDENED: usize = 30;

/// Escapes text for a Markdown table cell / inline position: no HTML, no table breaks, one line.
pub fn md(s: &str) -> String {
    let flat = one_line(s, 400);
    let mut out = String::with_capacity(flat.len());
    for c in flat.chars() {
        match c {
            '|' => out.push_str("\\|"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '`' | '*' | '_' | '[' | ']' | '\\' | '#' | '~' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// Text inside a code span: backticks cannot be escaped there, so they are replaced.
fn code(s: &str) -> String {
    format!(
        "`{}`",
        one_line(s, 200).replace('`', "'").replace('|', "\\|")
    )
}

fn mark(c: Coverage) -> &'static str {
    match c {
        Coverage::Passed => "✅ passed",
        Coverage::Failed => "❌ failed",
        Coverage::NotCovered => "➖ not covered yet",
    }
}

fn tally_text(label: &str, t: &Tally) -> String {
    let mut s = code(label);
    if t.passed + t.failed + t.skipped == 0 {
        s.push_str(" (not run)");
    } else {
        s.push_str(&format!(
            " {}/{}",
            t.passed,
            t.passed + t.failed + t.skipped
        ));
        if t.failed > 0 {
            s.push_str(&format!(" · **{} failed**", t.failed));
        }
    }
    s
}

pub fn render(view: &View<'_>, mapping: &Mapping, eval: &Evaluation) -> String {
    let r = view.results;
    let c = r.counts();
    let checks: usize = r.scenarios.iter().map(|s| s.checks.len()).sum();
    let passed = r.exit_code() == 0;
    let mut out = String::new();
    let profiles: Vec<String> = r.profiles.iter().map(|p| code(&p.name)).collect();
    let _ = writeln!(
        out,
        "## {} meshproof: {}",
        if passed { "✅" } else { "❌" },
        if passed {
            "PASSED".to_owned()
        } else if r.exit_code() == 2 {
            "HARNESS ERROR".to_owned()
        } else {
            format!(
                "FAILED — {} of {} scenarios did not pass",
                c.failed + c.errors + c.skipped,
                r.scenarios.len()
            )
        }
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "**Run** {} · **target** {} · **profiles** {} · **duration** {} · meshproof {}",
        code(&r.run_id),
        code(&r.target),
        if profiles.is_empty() {
            "none".to_owned()
        } else {
            profiles.join(", ")
        },
        duration(r.duration),
        md(&r.meshproof_version)
    );
    if let Some(tags) = &r.tags {
        let _ = writeln!(out, "\n**Tags** {}", code(tags));
    }
    if let Some(scale) = r.versions.get(crate::results::LAB_TTL_SCALE) {
        let _ = writeln!(out, "\n**Lab TTL scale** {}", md(scale));
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| scenarios passed | failed | skipped | errors | checks | widened accesses |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|");
    let _ = writeln!(
        out,
        "| {} | {} | {} | {} | {} | {} |",
        c.passed,
        c.failed,
        c.skipped,
        c.errors,
        checks,
        view.widened().len()
    );
    for e in &r.harness_errors {
        let _ = writeln!(out, "\n> ❌ **harness error:** {}", md(e));
    }

    for list in &eval.checklists {
        let _ = writeln!(out, "\n### Runbook checklist — {}\n", md(&list.title));
        if !list.profile_in_run {
            let _ = writeln!(
                out,
                "_Profile {} was not part of this run: every item is not covered._\n",
                code(&list.profile)
            );
        }
        let _ = writeln!(out, "| | item | proven by |");
        let _ = writeln!(out, "|---|---|---|");
        for item in &list.items {
            let proof: Vec<String> = item
                .proven_by
                .iter()
                .map(|(label, t)| tally_text(label, t))
                .collect();
            let _ = writeln!(
                out,
                "| {} | **{}** {} | {} |",
                mark(item.status),
                md(&item.id),
                md(&item.text),
                proof.join("<br>")
            );
        }
    }

    let widened = view.widened();
    if !widened.is_empty() {
        let _ = writeln!(
            out,
            "\n### ❌ Widened access: promised deny, observed allow ({})\n",
            widened.len()
        );
        let _ = writeln!(
            out,
            "| profile | caller → callee | request | decided by | check |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|");
        for i in widened.iter().take(MAX_WIDENED) {
            let _ = writeln!(
                out,
                "| {} | {} → {} | {} | {} | {} |",
                md(i.profile.as_deref().unwrap_or("—")),
                code(&i.from),
                code(&i.to),
                code(&i.request()),
                md(i.decided_by.as_deref().unwrap_or("—")),
                code(&i.check)
            );
        }
        if widened.len() > MAX_WIDENED {
            let _ = writeln!(
                out,
                "\n…and {} more in `report.html`.",
                widened.len() - MAX_WIDENED
            );
        }
    }

    let failing: Vec<usize> = r
        .scenarios
        .iter()
        .enumerate()
        .filter(|(_, s)| s.status != Status::Passed)
        .map(|(i, _)| i)
        .collect();
    if !failing.is_empty() {
        let _ = writeln!(
            out,
            "\n### Scenarios that did not pass ({})\n",
            failing.len()
        );
        for i in failing.iter().take(MAX_FAILURES) {
            let Some(s) = view.scenario(*i) else { continue };
            let label = match s.status {
                Status::Failed => "❌ FAIL",
                Status::Error => "❌ ERROR",
                Status::Skipped => "⚠️ SKIP",
                Status::Passed => "✅",
            };
            let _ = writeln!(
                out,
                "- {label} **{}** ({})",
                md(&s.name),
                code(&format!("{}:{}", s.file, s.line))
            );
            let findings: Vec<String> = s
                .checks
                .iter()
                .filter(|c| matches!(c.status, Status::Failed | Status::Error))
                .map(|c| format!("{} {}: {}", code(&c.check), md(&c.subject), md(&c.summary)))
                .collect();
            if findings.is_empty() {
                if let Some(m) = s.failure_message() {
                    let _ = writeln!(out, "  > {}", md(&m));
                }
            }
            for f in findings.iter().take(5) {
                let _ = writeln!(out, "  > {f}");
            }
            if findings.len() > 5 {
                let _ = writeln!(out, "  > …and {} more findings", findings.len() - 5);
            }
        }
        if failing.len() > MAX_FAILURES {
            let _ = writeln!(
                out,
                "\n…and {} more in `report.html` / `junit.xml`.",
                failing.len() - MAX_FAILURES
            );
        }
    }

    drills(&mut out, view.results);
    if let Some(bench) = &view.results.bench {
        let _ = writeln!(out, "\n### Benchmarks\n");
        // The benchmark tables carry their own `###` titles; one level down keeps them under this.
        out.push_str(&crate::bench::render_markdown(bench).replace("\n### ", "\n#### "));
    }

    let _ = writeln!(out, "\n### Controls\n");
    let _ = writeln!(
        out,
        "Passed: every check of the control that ran passed · failed: any failed · not covered: none ran.\n"
    );
    for f in &mapping.frameworks {
        let statuses: Vec<_> = eval.controls_of(&f.id).collect();
        let count = |c: Coverage| statuses.iter().filter(|s| s.status == c).count();
        let _ = writeln!(
            out,
            "<details{}><summary><b>{}</b> — {} passed, {} failed, {} not covered</summary>\n",
            if count(Coverage::Failed) > 0 {
                " open"
            } else {
                ""
            },
            md(&f.name),
            count(Coverage::Passed),
            count(Coverage::Failed),
            count(Coverage::NotCovered)
        );
        let _ = writeln!(out, "| | control | checks |");
        let _ = writeln!(out, "|---|---|---|");
        for s in statuses {
            let checks: Vec<String> = s.checks.iter().map(|(id, t)| tally_text(id, t)).collect();
            let _ = writeln!(
                out,
                "| {} | **{}** {} | {} |",
                mark(s.status),
                md(&s.control),
                md(&s.title),
                checks.join("<br>")
            );
        }
        let _ = writeln!(out, "\n</details>\n");
    }
    if !eval.unmapped.is_empty() {
        let ids: Vec<String> = eval.unmapped.iter().map(|i| code(i)).collect();
        let _ = writeln!(
            out,
            "⚠️ Checks that ran but map to no control: {}\n",
            ids.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "<sub>Full report: `report.html` · JUnit: `junit.xml` · Cucumber: `cucumber.json` · signed evidence: `evidence/` (verify with `meshproof evidence verify`).</sub>"
    );
    out
}

/// One row per drill: its verdict, time to detect and to recover (after injection), the failed
/// requests of the faulty window, and the lifetimes the lab stood in for production's.
fn drills(out: &mut String, results: &crate::results::RunResults) {
    if results.drills.is_empty() {
        return;
    }
    let ms = |v: Option<u64>| v.map_or_else(|| "—".to_owned(), |v| format!("{v} ms"));
    let _ = writeln!(out, "\n### Drills\n");
    let _ = writeln!(
        out,
        "| | drill | profile | detect | recover | failed / requests | lifetimes used |"
    );
    let _ = writeln!(out, "|---|---|---|---:|---:|---:|---|");
    for d in &results.drills {
        let ttls: Vec<String> = d
            .ttls
            .iter()
            .map(|t| match &t.production {
                Some(p) => format!("{} {} (production {p})", t.what, t.lab),
                None => format!("{} {}", t.what, t.lab),
            })
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} / {} | {} |",
            if d.status == crate::drills::DrillStatus::Passed {
                "✅"
            } else {
                "❌"
            },
            code(&d.name),
            md(&d.profile),
            ms(d.time_to_detect_ms),
            ms(d.time_to_recover_ms),
            d.failed_requests,
            d.requests,
            md(&ttls.join("; "))
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_escaping_keeps_tables_intact() {
        assert_eq!(md("a|b"), "a\\|b");
        assert_eq!(md("<script>"), "&lt;script&gt;");
        assert_eq!(md("line\nbreak"), "line break");
        assert_eq!(md("[x](javascript:y)"), "\\[x\\](javascript:y)");
        assert_eq!(code("a`b|c"), "`a'b\\|c`");
    }
}

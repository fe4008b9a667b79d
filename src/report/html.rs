//! `report.html`: one self-contained file for people: inline CSS and SVG, no script, no external
//! resource of any kind (a Content-Security-Policy of `default-src 'none'` enforces it). Every
//! string from the run is escaped. Status is always colour *and* text (and a border style), so the
//! page reads in greyscale and in print.
//!
//! Sections: verdict and run metadata (with the component versions table), findings (widened
//! accesses first), the runbook checklists, the intent matrix (expected vs observed), the service
//! graph, certificate timelines, drill timelines, control status, every check id, every scenario.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::controls::{Coverage, Evaluation, Mapping, Tally};
use super::svg;
use super::text::{duration, esc, one_line, slug, span, utc_minute};
use super::view::{CertObs, CheckAt, IntentObs, IntentOutcome, View, scenario_anchor};
use crate::results::{CheckResult, Status};

const MAX_FINDINGS: usize = 200;
const MAX_CERT_ROWS: usize = 300;
const MAX_MATRIX_LINES: usize = 4;

const CSS: &str = r#"
:root{--ink:#1f2328;--muted:#57606a;--line:#d0d7de;--soft:#f6f8fa;--ok:#1a7f37;--bad:#cf222e;--warn:#9a6700}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 "DejaVu Sans",-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:var(--ink);background:#fff}
main,header .in,nav .in{max-width:1320px;margin:0 auto;padding:0 24px}
header{border-bottom:1px solid var(--line);padding:18px 0 14px}
header.pass{background:#f0fbf3;border-top:8px solid var(--ok)}
header.fail{background:#fff5f5;border-top:8px solid var(--bad)}
.verdict{display:inline-block;font-size:22px;font-weight:800;letter-spacing:.04em;padding:4px 14px;border-radius:6px;margin-right:12px;vertical-align:middle}
header.pass .verdict{color:#fff;background:var(--ok)}
header.fail .verdict{color:#fff;background:var(--bad);outline:3px double var(--bad);outline-offset:2px}
h1{display:inline-block;font-size:22px;margin:0;vertical-align:middle}
h1 code{font-size:20px}
.facts{margin:10px 0 0;color:var(--muted)}
.facts b{color:var(--ink)}
.counts{display:flex;gap:10px;margin-top:12px;flex-wrap:wrap}
.count{border:1px solid var(--line);background:#fff;border-radius:6px;padding:6px 12px;min-width:104px}
.count .n{font-size:22px;font-weight:800;display:block}
.count.bad{border:2px solid var(--bad)}
.count.bad .n{color:var(--bad)}
.callout{margin-top:12px;border:2px solid var(--bad);background:#fff;border-radius:6px;padding:8px 12px}
.callout b{color:var(--bad)}
nav{border-bottom:1px solid var(--line);background:var(--soft);padding:8px 0;font-size:13px}
nav a{margin-right:14px}
a{color:#0969da;text-decoration:none}
a:hover{text-decoration:underline}
section{padding:8px 0 18px;border-bottom:1px solid var(--line)}
h2{font-size:19px;margin:18px 0 8px;padding-bottom:4px}
h2 .sub{font-size:13px;font-weight:400;color:var(--muted);margin-left:8px}
h3{font-size:15px;margin:16px 0 6px}
p.note{color:var(--muted);margin:4px 0 10px;font-size:13px}
p.empty{border:1px dashed var(--line);border-radius:6px;padding:10px 14px;color:var(--muted);background:#fff}
code,.mono{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12.5px}
table{border-collapse:collapse;width:100%;margin:6px 0 10px;background:#fff}
th,td{border:1px solid var(--line);padding:5px 8px;text-align:left;vertical-align:top}
th{background:var(--soft);font-weight:700;font-size:13px}
td.num,th.num{text-align:right;white-space:nowrap}
tr.row-fail td{background:#fff8f8}
tr.row-fail td:first-child{border-left:4px solid var(--bad)}
tr.row-nc td:first-child{border-left:4px dashed #8c959f}
tr.row-pass td:first-child{border-left:4px solid var(--ok)}
.kv{width:auto;min-width:50%}
.kv th{width:190px}
.two{display:grid;grid-template-columns:1.3fr 1fr;gap:18px}
.b{display:inline-block;font-weight:700;font-size:11.5px;line-height:16px;padding:1px 7px;border-radius:9px;border:1.5px solid;white-space:nowrap;letter-spacing:.02em}
.b.pass{color:#0f5323;background:#dafbe1;border-color:var(--ok)}
.b.fail{color:#fff;background:var(--bad);border-color:#82071e}
.b.err{color:#fff;background:#6639ba;border-color:#3e1f79}
.b.skip{color:#633c01;background:#fff8c5;border-color:var(--warn);border-style:dotted}
.b.nc{color:#57606a;background:#fff;border-color:#8c959f;border-style:dashed}
.b.widened{color:#fff;background:var(--bad);border-color:#82071e}
.proof{margin:0;padding:0;list-style:none}
.proof li{margin:1px 0}
.tally{color:var(--muted);font-size:12.5px}
.tally b{color:var(--bad)}
.finding{border:1px solid var(--line);border-left:6px solid var(--bad);border-radius:4px;padding:8px 12px;margin:10px 0;background:#fff}
.finding.widened{border:2px solid var(--bad);border-left-width:8px;background:#fff5f5}
.finding .what{font-weight:700}
.finding .summary{white-space:pre-wrap;margin:4px 0;font-family:"DejaVu Sans Mono",Menlo,monospace;font-size:12.5px}
dl.ev{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:2px 14px;margin:6px 0 2px}
dl.ev div{display:flex;gap:6px;min-width:0;border-bottom:1px dotted var(--line);padding:1px 0}
dl.ev dt{color:var(--muted);font-size:12px;flex:none}
dl.ev dd{margin:0;font-family:"DejaVu Sans Mono",Menlo,monospace;font-size:12px;word-break:break-all}
table.matrix{width:auto}
table.matrix th.caller{white-space:nowrap}
table.matrix th.callee{min-width:150px}
table.matrix td{min-width:150px;font-size:12px}
table.matrix td.self{background:repeating-linear-gradient(45deg,#fff 0 5px,#eaeef2 5px 6px)}
table.matrix td.none{color:#8c959f;text-align:center}
.cell-head{font-weight:800;font-size:12px;margin-bottom:2px;letter-spacing:.02em}
.m-allowed{background:#dafbe1}
.m-denied{background:#eaeef2}
.m-mixed{background:#eef7f0}
.m-widened{background:repeating-linear-gradient(45deg,#ffebe9 0 6px,#ffcecb 6px 12px);outline:3px solid var(--bad);outline-offset:-3px}
.m-widened .cell-head{color:#82071e}
.m-blocked{background:#fff8c5;outline:2px dashed var(--warn);outline-offset:-3px}
.m-failed{background:#fff0f0;outline:2px solid var(--bad);outline-offset:-2px}
.m-unknown{background:#fff}
.probe{display:block;color:var(--ink)}
.probe.bad{font-weight:700;color:#82071e}
.served{margin:2px 0}
details.probes{margin-top:3px;font-size:11.5px;color:var(--muted)}
details.probes>summary{cursor:pointer}
details.probes .probe{color:var(--muted)}
.legend{font-size:12.5px;color:var(--muted);margin:4px 0 8px}
.legend span{display:inline-block;margin-right:14px}
.legend i{display:inline-block;width:22px;height:12px;vertical-align:middle;margin-right:4px;border:1px solid var(--line)}
.graph,.timeline{max-width:100%;height:auto;border:1px solid var(--line);border-radius:6px;background:#fff}
.figure{overflow-x:auto;margin:8px 0}
details.scn{border:1px solid var(--line);border-radius:4px;margin:4px 0;background:#fff}
details.scn>summary{padding:5px 10px;cursor:pointer;list-style-position:inside}
details.scn[open]>summary{border-bottom:1px solid var(--line);background:var(--soft)}
details.scn.fail{border-left:5px solid var(--bad)}
details.scn .body{padding:6px 12px}
ol.steps{margin:4px 0 8px;padding-left:22px;font-size:13px}
ol.steps .kw{font-weight:700}
ol.steps .err{color:var(--bad);display:block;white-space:pre-wrap}
.small{font-size:12px;color:var(--muted)}
footer{max-width:1320px;margin:0 auto;padding:14px 24px 30px;color:var(--muted);font-size:12px}
@media print{nav{display:none}details.scn{break-inside:avoid}}
"#;

fn status_badge(s: Status) -> &'static str {
    match s {
        Status::Passed => r#"<span class="b pass">✔ PASS</span>"#,
        Status::Failed => r#"<span class="b fail">✖ FAIL</span>"#,
        Status::Error => r#"<span class="b err">✖ ERROR</span>"#,
        Status::Skipped => r#"<span class="b skip">⚠ SKIPPED</span>"#,
    }
}

fn coverage_badge(c: Coverage) -> &'static str {
    match c {
        Coverage::Passed => r#"<span class="b pass">✔ PASSED</span>"#,
        Coverage::Failed => r#"<span class="b fail">✖ FAILED</span>"#,
        Coverage::NotCovered => r#"<span class="b nc">– NOT COVERED</span>"#,
    }
}

fn coverage_row(c: Coverage) -> &'static str {
    match c {
        Coverage::Passed => "row-pass",
        Coverage::Failed => "row-fail",
        Coverage::NotCovered => "row-nc",
    }
}

fn check_anchor(id: &str) -> String {
    format!("check-{}", slug(id.trim_end_matches(".*")))
}

fn tally_html(t: &Tally) -> String {
    let total = t.passed + t.failed + t.skipped;
    if total == 0 {
        return r#"<span class="tally">not run</span>"#.to_owned();
    }
    let mut s = format!(r#"<span class="tally">{}/{} passed"#, t.passed, total);
    if t.failed > 0 {
        let _ = write!(s, ", <b>{} failed</b>", t.failed);
    }
    if t.skipped > 0 {
        let _ = write!(s, ", {} skipped", t.skipped);
    }
    s.push_str("</span>");
    s
}

/// Link to a check result row, labelled with the check id and subject.
fn check_link(view: &View<'_>, at: CheckAt) -> String {
    match view.check(at) {
        Some(c) => format!(
            r##"<a href="#{}"><code>{}</code> {}</a>"##,
            at.anchor(),
            esc(&c.check),
            esc(&c.subject)
        ),
        None => String::new(),
    }
}

fn evidence_table(c: &CheckResult) -> String {
    if c.evidence.is_empty() {
        return String::new();
    }
    let mut s = String::from(r#"<dl class="ev">"#);
    for (k, v) in &c.evidence {
        let _ = write!(s, "<div><dt>{}</dt><dd>{}</dd></div>", esc(k), esc(v));
    }
    s.push_str("</dl>");
    s
}

/// What each cell of the intent matrix shows.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum CellKind {
    Widened,
    Blocked,
    Failed,
    Unknown,
    Mixed,
    Allowed,
    Denied,
}

fn cell_kind(obs: &[&IntentObs]) -> CellKind {
    let outcomes: BTreeSet<IntentOutcome> = obs.iter().map(|o| o.outcome()).collect();
    if outcomes.contains(&IntentOutcome::Widened) {
        CellKind::Widened
    } else if outcomes.contains(&IntentOutcome::Blocked) {
        CellKind::Blocked
    } else if obs
        .iter()
        .any(|o| matches!(o.status, Status::Failed | Status::Error))
    {
        CellKind::Failed
    } else if outcomes.contains(&IntentOutcome::Unknown) {
        CellKind::Unknown
    } else if outcomes.len() > 1 {
        CellKind::Mixed
    } else if outcomes.contains(&IntentOutcome::Allowed) {
        CellKind::Allowed
    } else {
        CellKind::Denied
    }
}

pub fn render(view: &View<'_>, mapping: &Mapping, eval: &Evaluation) -> String {
    let mut h = String::with_capacity(64 * 1024 + view.results.scenarios.len() * 2048);
    head(&mut h, view);
    header(&mut h, view);
    let bench_link = if view.results.bench.is_some() {
        r##"<a href="#benchmarks">Benchmarks</a>"##
    } else {
        ""
    };
    let _ = write!(
        h,
        r##"<nav><div class="in"><a href="#run">Run</a><a href="#findings">Findings</a><a href="#checklists">Runbook checklists</a><a href="#intents">Intent matrix</a><a href="#graph">Service graph</a><a href="#certificates">Certificates</a><a href="#drills">Drills</a>{bench_link}<a href="#controls">Controls</a><a href="#checks">Checks</a><a href="#scenarios">Scenarios</a></div></nav><main>"##,
    );
    run_section(&mut h, view);
    findings(&mut h, view);
    checklists(&mut h, eval);
    intent_matrix(&mut h, view);
    graphs(&mut h, view);
    certificates(&mut h, view);
    drills(&mut h, view);
    benchmarks(&mut h, view);
    controls(&mut h, mapping, eval);
    checks(&mut h, view, mapping, eval);
    scenarios(&mut h, view);
    let _ = writeln!(
        h,
        "</main><footer>Generated by meshproof {} from run <code>{}</code>. This file is self-contained: no scripts, no external resources. The signed evidence bundle (<code>evidence/</code>) holds a copy of it with its SHA-256.</footer></body></html>",
        esc(&view.results.meshproof_version),
        esc(&view.results.run_id)
    );
    h
}

fn head(h: &mut String, view: &View<'_>) {
    let r = view.results;
    let _ = write!(
        h,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="meshproof {}">
<title>meshproof {} — {} — {}</title>
<style>{CSS}</style></head><body>
"#,
        esc(&r.meshproof_version),
        esc(&r.run_id),
        esc(&r.target),
        if r.exit_code() == 0 {
            "PASSED"
        } else {
            "FAILED"
        }
    );
}

fn header(h: &mut String, view: &View<'_>) {
    let r = view.results;
    let c = r.counts();
    let passed = r.exit_code() == 0;
    let checks = view.all_checks().count();
    let failing_checks = view.failing_checks().len();
    let widened = view.widened();
    let profiles: Vec<String> = r
        .profiles
        .iter()
        .map(|p| format!("<b>{}</b>", esc(&p.name)))
        .collect();
    let _ = write!(
        h,
        r#"<header class="{}"><div class="in"><span class="verdict" id="verdict">{}</span><h1>meshproof run <code>{}</code></h1>
<p class="facts">target <b>{}</b> · profiles {} · started <b>{}</b> · duration <b>{}</b>{}</p><div class="counts">"#,
        if passed { "pass" } else { "fail" },
        if passed {
            "✔ PASSED"
        } else if r.exit_code() == 2 {
            "✖ HARNESS ERROR"
        } else {
            "✖ FAILED"
        },
        esc(&r.run_id),
        esc(&r.target),
        if profiles.is_empty() {
            "none".to_owned()
        } else {
            profiles.join(", ")
        },
        esc(&view
            .started
            .map(utc_minute)
            .unwrap_or_else(|| r.started.clone())),
        esc(&duration(r.duration)),
        r.tags
            .as_ref()
            .map(|t| format!(" · tags <code>{}</code>", esc(t)))
            .unwrap_or_default()
    );
    let boxes = [
        ("scenarios passed", c.passed, false),
        ("scenarios failed", c.failed, c.failed > 0),
        (
            "errors",
            c.errors + r.harness_errors.len(),
            c.errors + r.harness_errors.len() > 0,
        ),
        ("skipped", c.skipped, c.skipped > 0),
        ("checks", checks, false),
        ("failing checks", failing_checks, failing_checks > 0),
        ("widened accesses", widened.len(), !widened.is_empty()),
    ];
    for (label, n, bad) in boxes {
        let _ = write!(
            h,
            r#"<div class="count{}"><span class="n">{}</span>{}</div>"#,
            if bad { " bad" } else { "" },
            n,
            esc(label)
        );
    }
    h.push_str("</div>");
    if !widened.is_empty() {
        let _ = write!(
            h,
            r##"<div class="callout"><b>✖ {} widened access{}</b> — the runbook promises deny, the mesh allowed: "##,
            widened.len(),
            if widened.len() == 1 { "" } else { "es" }
        );
        let items: Vec<String> = widened
            .iter()
            .take(5)
            .map(|i| {
                format!(
                    r##"<a href="#{}"><code>{} → {}</code> {}</a>"##,
                    i.at.anchor(),
                    esc(&i.from),
                    esc(&i.to),
                    esc(&i.request())
                )
            })
            .collect();
        h.push_str(&items.join(" · "));
        if widened.len() > 5 {
            let _ = write!(h, " · and {} more", widened.len() - 5);
        }
        h.push_str("</div>");
    }
    h.push_str("</div></header>");
}

fn run_section(h: &mut String, view: &View<'_>) {
    let r = view.results;
    h.push_str(r#"<section id="run"><h2>Run</h2><div class="two"><div><table class="kv">"#);
    let rows: Vec<(&str, String)> = vec![
        ("run id", format!("<code>{}</code>", esc(&r.run_id))),
        ("started", esc(&r.started)),
        ("duration", esc(&duration(r.duration))),
        ("target", esc(&r.target)),
        (
            "tag expression",
            r.tags
                .as_ref()
                .map(|t| format!("<code>{}</code>", esc(t)))
                .unwrap_or_else(|| "none (every scenario)".to_owned()),
        ),
        ("meshproof", esc(&r.meshproof_version)),
        (
            "lab TTL scale",
            esc(r
                .versions
                .get(crate::results::LAB_TTL_SCALE)
                .map_or("none (no lab CA mesh ran)", String::as_str)),
        ),
        ("exit code", r.exit_code().to_string()),
    ];
    for (k, v) in rows {
        let _ = write!(h, "<tr><th>{}</th><td>{v}</td></tr>", esc(k));
    }
    h.push_str("</table>");
    h.push_str(r#"<h3>Profiles judged</h3><table><tr><th>profile</th><th>file</th><th>SHA-256 of the file as read</th></tr>"#);
    for p in &r.profiles {
        let _ = write!(
            h,
            r#"<tr><td><b>{}</b></td><td><code>{}</code></td><td class="mono">{}</td></tr>"#,
            esc(&p.name),
            esc(&p.file),
            esc(&p.sha256)
        );
    }
    if r.profiles.is_empty() {
        h.push_str(r#"<tr><td colspan="3">none</td></tr>"#);
    }
    h.push_str("</table></div><div>");
    h.push_str(r#"<h3 style="margin-top:0">Component versions</h3><table class="versions" id="versions"><tr><th>component</th><th>version</th></tr>"#);
    for (k, v) in &view.versions {
        let _ = write!(
            h,
            "<tr><td>{}</td><td><code>{}</code></td></tr>",
            esc(k),
            esc(v)
        );
    }
    h.push_str("</table>");
    if view.versions.len() <= 1 {
        h.push_str(r#"<p class="note">Only meshproof's own version is known for this run; the versions of the mesh components (Envoy, SPIRE, gator, …) appear here once the run records them.</p>"#);
    }
    h.push_str("</div></div></section>");
}

fn findings(h: &mut String, view: &View<'_>) {
    let r = view.results;
    let failing = view.failing_checks();
    let widened = view.widened();
    let bare: Vec<usize> = r
        .scenarios
        .iter()
        .enumerate()
        .filter(|(_, s)| {
            s.status != Status::Passed
                && !s
                    .checks
                    .iter()
                    .any(|c| matches!(c.status, Status::Failed | Status::Error))
        })
        .map(|(i, _)| i)
        .collect();
    let _ = write!(
        h,
        r#"<section id="findings"><h2>Findings<span class="sub">{} failing check{}, {} scenario{} without a check verdict, {} harness error{}</span></h2>"#,
        failing.len(),
        if failing.len() == 1 { "" } else { "s" },
        bare.len(),
        if bare.len() == 1 { "" } else { "s" },
        r.harness_errors.len(),
        if r.harness_errors.len() == 1 { "" } else { "s" },
    );
    if failing.is_empty() && bare.is_empty() && r.harness_errors.is_empty() {
        h.push_str(r#"<p class="empty">✔ No findings: every check that ran passed.</p></section>"#);
        return;
    }
    for e in &r.harness_errors {
        let _ = write!(
            h,
            r#"<div class="finding"><span class="b err">✖ HARNESS ERROR</span> <span class="summary">{}</span></div>"#,
            esc(e)
        );
    }
    // Widened accesses first, then the rest in run order.
    let widened_at: BTreeSet<CheckAt> = widened.iter().map(|i| i.at).collect();
    let mut ordered: Vec<(CheckAt, &CheckResult)> = failing
        .iter()
        .filter(|(at, _)| widened_at.contains(at))
        .copied()
        .collect();
    ordered.extend(
        failing
            .iter()
            .filter(|(at, _)| !widened_at.contains(at))
            .copied(),
    );
    for (at, c) in ordered.iter().take(MAX_FINDINGS) {
        let is_widened = widened_at.contains(at);
        let scenario = view.scenario(at.scenario);
        let _ = write!(
            h,
            r##"<div class="finding{}">{} {} <span class="what"><code>{}</code> {}</span><div class="summary">{}</div><div class="small">scenario <a href="#{}">{}</a> · <code>{}</code>{}</div>{}</div>"##,
            if is_widened { " widened" } else { "" },
            status_badge(c.status),
            if is_widened {
                r#"<span class="b widened">WIDENED ACCESS</span>"#
            } else {
                ""
            },
            esc(&c.check),
            esc(&c.subject),
            esc(&c.summary),
            scenario_anchor(at.scenario),
            esc(scenario.map(|s| s.name.as_str()).unwrap_or("?")),
            esc(&scenario
                .map(|s| format!("{}:{}", s.file, s.line))
                .unwrap_or_default()),
            view.profile_of(at.scenario)
                .map(|p| format!(" · profile {}", esc(p)))
                .unwrap_or_default(),
            evidence_table(c)
        );
    }
    if ordered.len() > MAX_FINDINGS {
        let _ = write!(
            h,
            r##"<p class="note">…and {} more failing checks: see <a href="#scenarios">Scenarios</a>.</p>"##,
            ordered.len() - MAX_FINDINGS
        );
    }
    for i in bare.iter().take(MAX_FINDINGS) {
        let Some(s) = view.scenario(*i) else { continue };
        let _ = write!(
            h,
            r##"<div class="finding">{} <span class="what"><a href="#{}">{}</a></span> <span class="small"><code>{}:{}</code></span><div class="summary">{}</div></div>"##,
            status_badge(s.status),
            scenario_anchor(*i),
            esc(&s.name),
            esc(&s.file),
            s.line,
            esc(&s.failure_message().unwrap_or_else(|| {
                "a step was skipped: no step definition matched, so nothing was proven".to_owned()
            }))
        );
    }
    h.push_str("</section>");
}

fn checklists(h: &mut String, eval: &Evaluation) {
    h.push_str(r#"<section id="checklists"><h2>Runbook checklists<span class="sub">each item with the checks that prove it; passed = every one of its checks that ran passed</span></h2>"#);
    for list in &eval.checklists {
        let count = |c: Coverage| list.items.iter().filter(|i| i.status == c).count();
        let _ = write!(
            h,
            r#"<h3 id="checklist-{}">{}<span class="sub"> — {} passed · {} failed · {} not covered</span></h3>"#,
            slug(&list.id),
            esc(&list.title),
            count(Coverage::Passed),
            count(Coverage::Failed),
            count(Coverage::NotCovered)
        );
        if !list.profile_in_run {
            let _ = write!(
                h,
                r#"<p class="note">Profile <b>{}</b> was not part of this run, so no item is covered.</p>"#,
                esc(&list.profile)
            );
        }
        h.push_str(r#"<table class="checklist"><tr><th style="width:130px">status</th><th style="width:80px">item</th><th>runbook says</th><th style="width:38%">proven by</th></tr>"#);
        for item in &list.items {
            let _ = write!(
                h,
                r#"<tr class="{}"><td>{}</td><td style="white-space:nowrap"><b>{}</b></td><td>{}</td><td><ul class="proof">"#,
                coverage_row(item.status),
                coverage_badge(item.status),
                esc(&item.id),
                esc(&item.text)
            );
            for (label, tally) in &item.proven_by {
                let check = label.split(' ').next().unwrap_or(label);
                let _ = write!(
                    h,
                    r##"<li><a href="#{}"><code>{}</code></a> {}</li>"##,
                    check_anchor(check),
                    esc(label),
                    tally_html(tally)
                );
            }
            h.push_str("</ul></td></tr>");
        }
        h.push_str("</table>");
    }
    h.push_str("</section>");
}

fn intent_matrix(h: &mut String, view: &View<'_>) {
    h.push_str(r#"<section id="intents"><h2>Intent matrix<span class="sub">caller (row) × callee (column): promised vs observed</span></h2>"#);
    if view.intents.is_empty() && view.unplaced_intents.is_empty() {
        h.push_str(r#"<p class="empty">No intent checks (<code>intent.*</code>) in this run.</p></section>"#);
        return;
    }
    h.push_str(r#"<div class="legend"><span><i class="m-widened"></i><b>✖ WIDENED</b> promised deny, observed allow</span><span><i class="m-blocked"></i><b>✖ BLOCKED</b> promised allow, observed deny</span><span><i class="m-failed"></i><b>✖ FAIL</b> decision as promised, check failed</span><span><i class="m-allowed"></i>✔ allow as promised</span><span><i class="m-denied"></i>✔ deny as promised</span><span><i class="m-mixed"></i>✔ allow and deny as promised (per path)</span></div>"#);
    let widened = view.widened();
    if !widened.is_empty() {
        h.push_str(r#"<h3>Widened access (first)</h3><table><tr><th>profile</th><th>caller → callee</th><th>request</th><th>promised</th><th>observed</th><th>decided by</th><th>check</th></tr>"#);
        for i in &widened {
            let _ = write!(
                h,
                r#"<tr class="row-fail"><td>{}</td><td><b>{} → {}</b></td><td><code>{}</code></td><td>deny</td><td><b>ALLOW</b></td><td>{}</td><td>{}</td></tr>"#,
                esc(i.profile.as_deref().unwrap_or("—")),
                esc(&i.from),
                esc(&i.to),
                esc(&i.request()),
                esc(i.decided_by.as_deref().unwrap_or("—")),
                check_link(view, i.at)
            );
        }
        h.push_str("</table>");
    }
    let mut groups: Vec<Option<String>> =
        view.profiles.iter().map(|p| Some(p.name.clone())).collect();
    if view.intents.iter().any(|i| i.profile.is_none()) {
        groups.push(None);
    }
    for group in groups {
        let obs: Vec<&IntentObs> = view.intents_of(group.as_deref()).collect();
        if obs.is_empty() {
            continue;
        }
        let order: Vec<String> = group
            .as_ref()
            .and_then(|g| view.profiles.iter().find(|p| &p.name == g))
            .map(|p| p.services.clone())
            .unwrap_or_default();
        let rank = |s: &str| order.iter().position(|o| o == s).unwrap_or(usize::MAX);
        let mut callers: Vec<&str> = obs.iter().map(|o| o.from.as_str()).collect();
        let mut callees: Vec<&str> = obs.iter().map(|o| o.to.as_str()).collect();
        for v in [&mut callers, &mut callees] {
            v.sort_by(|a, b| rank(a).cmp(&rank(b)).then(a.cmp(b)));
            v.dedup();
        }
        let mut cells: BTreeMap<(&str, &str), Vec<&IntentObs>> = BTreeMap::new();
        for o in &obs {
            cells
                .entry((o.from.as_str(), o.to.as_str()))
                .or_default()
                .push(o);
        }
        let _ = write!(
            h,
            r#"<h3>{} <span class="sub">{} probes, {} caller → callee pairs</span></h3><div class="figure"><table class="matrix" id="matrix-{}"><tr><th>caller ↓ / callee →</th>"#,
            esc(group.as_deref().unwrap_or("no profile")),
            obs.len(),
            cells.len(),
            slug(group.as_deref().unwrap_or("none"))
        );
        for callee in &callees {
            let _ = write!(h, r#"<th class="callee">{}</th>"#, esc(callee));
        }
        h.push_str("</tr>");
        for caller in &callers {
            let _ = write!(h, r#"<tr><th class="caller">{}</th>"#, esc(caller));
            for callee in &callees {
                let Some(list) = cells.get(&(*caller, *callee)) else {
                    if caller == callee {
                        h.push_str(r#"<td class="self"></td>"#);
                    } else {
                        h.push_str(r#"<td class="none">· not probed</td>"#);
                    }
                    continue;
                };
                let kind = cell_kind(list);
                let allow = list
                    .iter()
                    .filter(|o| o.outcome() == IntentOutcome::Allowed)
                    .count();
                let deny = list
                    .iter()
                    .filter(|o| o.outcome() == IntentOutcome::Denied)
                    .count();
                let (class, head) = match kind {
                    CellKind::Widened => ("m-widened", "✖ WIDENED".to_owned()),
                    CellKind::Blocked => ("m-blocked", "✖ BLOCKED".to_owned()),
                    CellKind::Failed => ("m-failed", "✖ FAIL".to_owned()),
                    CellKind::Unknown => ("m-unknown", "? incomplete evidence".to_owned()),
                    CellKind::Mixed => ("m-mixed", format!("✔ allow {allow} · deny {deny}")),
                    CellKind::Allowed => ("m-allowed", "✔ ALLOW".to_owned()),
                    CellKind::Denied => ("m-denied", "✔ DENY".to_owned()),
                };
                let _ = write!(
                    h,
                    r#"<td class="{class}"><div class="cell-head">{}</div>"#,
                    esc(&head)
                );
                matrix_cell_body(h, list);
                h.push_str("</td>");
            }
            h.push_str("</tr>");
        }
        h.push_str("</table></div>");
        h.push_str(r#"<p class="note">Each cell: the verdict, the requests the callee serves to this caller (static = predicted from the configured policies, live = sent through the data plane; ✔ as promised, ✖ not), every request that broke its promise, and all probes with what decided them (folded).</p>"#);
    }
    if !view.unplaced_intents.is_empty() {
        h.push_str(r#"<h3>Intent checks without caller/callee evidence</h3><ul>"#);
        for at in &view.unplaced_intents {
            let _ = write!(
                h,
                "<li>{} — {}</li>",
                check_link(view, *at),
                view.check(*at).map(|c| esc(&c.summary)).unwrap_or_default()
            );
        }
        h.push_str("</ul>");
    }
    h.push_str("</section>");
}

fn probe_line(o: &IntentObs) -> String {
    let bad = o.status != Status::Passed
        || matches!(o.outcome(), IntentOutcome::Widened | IntentOutcome::Blocked);
    format!(
        r##"<a class="probe{}" href="#{}">{} {} <code>{}</code>: {} → {}{}</a>"##,
        if bad { " bad" } else { "" },
        o.at.anchor(),
        if bad { "✖" } else { "✔" },
        esc(o.check.strip_prefix("intent.").unwrap_or(&o.check)),
        esc(&o.request()),
        o.expected.map(|d| d.label()).unwrap_or("?"),
        o.observed
            .map(|d| d.label().to_uppercase())
            .unwrap_or_else(|| "?".into()),
        o.decided_by
            .as_ref()
            .map(|d| format!(" <span class=\"small\">({})</span>", esc(&one_line(d, 60))))
            .unwrap_or_default()
    )
}

/// One matrix cell: the requests served (grouped, with each check's mark), the broken promises,
/// and every probe folded away.
fn matrix_cell_body(h: &mut String, list: &[&IntentObs]) {
    let mut served: BTreeMap<String, Vec<&IntentObs>> = BTreeMap::new();
    for o in list {
        if o.expected == Some(super::view::Decision::Allow)
            || o.observed == Some(super::view::Decision::Allow)
        {
            served.entry(o.request()).or_default().push(o);
        }
    }
    if !served.is_empty() {
        h.push_str(r#"<div class="served">"#);
        for (request, obs) in served.iter().take(MAX_MATRIX_LINES) {
            let marks: Vec<String> = obs
                .iter()
                .map(|o| {
                    let ok = o.status == Status::Passed
                        && !matches!(o.outcome(), IntentOutcome::Widened | IntentOutcome::Blocked);
                    format!(
                        r##"<a href="#{}">{} {}</a>"##,
                        o.at.anchor(),
                        esc(o.check.strip_prefix("intent.").unwrap_or(&o.check)),
                        if ok { "✔" } else { "✖" }
                    )
                })
                .collect();
            let _ = write!(
                h,
                r#"<span class="probe"><code>{}</code> <span class="small">{}</span></span>"#,
                esc(request),
                marks.join(" ")
            );
        }
        if served.len() > MAX_MATRIX_LINES {
            let _ = write!(
                h,
                r#"<span class="small">+{} more served</span>"#,
                served.len() - MAX_MATRIX_LINES
            );
        }
        h.push_str("</div>");
    }
    let mut bad: Vec<&&IntentObs> = list
        .iter()
        .filter(|o| {
            o.status != Status::Passed
                || matches!(o.outcome(), IntentOutcome::Widened | IntentOutcome::Blocked)
        })
        .collect();
    bad.sort_by_key(|o| (o.outcome(), o.at));
    for o in bad.iter().take(MAX_MATRIX_LINES) {
        h.push_str(&probe_line(o));
    }
    let mut all: Vec<&&IntentObs> = list.iter().collect();
    all.sort_by_key(|o| (o.request(), o.check.clone()));
    let _ = write!(
        h,
        r#"<details class="probes"><summary>{} probe{}</summary>"#,
        all.len(),
        if all.len() == 1 { "" } else { "s" }
    );
    for o in all {
        h.push_str(&probe_line(o));
    }
    h.push_str("</details>");
}

/// mTLS proven for a whole profile: at least one `mtls.strict` result in its scenarios, all passed.
fn strict_mtls_proven(view: &View<'_>, profile: &str) -> bool {
    let mut any = false;
    for (at, c) in view.all_checks() {
        if c.check == "mtls.strict" && view.profile_of(at.scenario) == Some(profile) {
            if c.status != Status::Passed {
                return false;
            }
            any = true;
        }
    }
    any
}

fn graphs(h: &mut String, view: &View<'_>) {
    h.push_str(r#"<section id="graph"><h2>Service graph<span class="sub">services of each profile; arrows are caller → callee</span></h2>"#);
    if view.profiles.is_empty() {
        h.push_str(r#"<p class="empty">No profiles in this run.</p></section>"#);
        return;
    }
    for (k, p) in view.profiles.iter().enumerate() {
        let intents: Vec<&IntentObs> = view.intents_of(Some(&p.name)).collect();
        let proven = strict_mtls_proven(view, &p.name);
        let _ = write!(
            h,
            r#"<h3>{} <span class="sub">{} services{}</span></h3><div class="figure" id="graph-{}">{}</div>"#,
            esc(&p.name),
            p.services.len(),
            if p.source == "profile" {
                ", from the profile file (hash matches the run)"
            } else {
                ", from intent evidence (profile file not readable here)"
            },
            slug(&p.name),
            svg::service_graph(&format!("g{k}"), p, &intents, proven)
        );
        let note = if intents.is_empty() {
            "No intent was probed for this profile in this run: grey dashed arrows are the allows the profile declares."
        } else if proven {
            "Padlocks: the hop's own evidence shows mTLS, or every mtls.strict check of this profile passed."
        } else {
            "Padlocks only where the hop's own evidence shows mTLS (no passing mtls.strict check for this profile)."
        };
        let _ = write!(h, r#"<p class="note">{}</p>"#, esc(note));
    }
    h.push_str("</section>");
}

fn certificates(h: &mut String, view: &View<'_>) {
    h.push_str(r#"<section id="certificates"><h2>Certificates<span class="sub">validity windows of the certificates seen in check evidence; the dashed line is the run's start</span></h2>"#);
    if view.certs.is_empty() {
        h.push_str(r#"<p class="empty">No certificate evidence in this run.</p></section>"#);
        return;
    }
    let mut groups: Vec<Option<String>> =
        view.profiles.iter().map(|p| Some(p.name.clone())).collect();
    if view.certs.iter().any(|c| c.profile.is_none()) {
        groups.push(None);
    }
    let mut rows_left = MAX_CERT_ROWS;
    for (k, group) in groups.iter().enumerate() {
        let mut seen = BTreeSet::new();
        let certs: Vec<&CertObs> = view
            .certs
            .iter()
            .filter(|c| c.profile == *group)
            .filter(|c| seen.insert((c.role.clone(), c.serial.clone(), c.sha256.clone())))
            .collect();
        if certs.is_empty() {
            continue;
        }
        let mut timed: Vec<&CertObs> = certs
            .iter()
            .copied()
            .filter(|c| c.window().is_some())
            .collect();
        timed.sort_by(|a, b| {
            a.label()
                .cmp(&b.label())
                .then(a.not_before.cmp(&b.not_before))
        });
        let shown: Vec<&CertObs> = timed.iter().copied().take(rows_left).collect();
        rows_left = rows_left.saturating_sub(shown.len());
        let _ = write!(
            h,
            r#"<h3>{} <span class="sub">{} certificates</span></h3>"#,
            esc(group.as_deref().unwrap_or("no profile")),
            certs.len()
        );
        if !shown.is_empty() {
            let _ = write!(
                h,
                r#"<div class="figure" id="certs-{}">{}</div>"#,
                slug(group.as_deref().unwrap_or("none")),
                svg::cert_timeline(&format!("t{k}"), &shown, view.started)
            );
        }
        if shown.len() < timed.len() {
            let _ = write!(
                h,
                r#"<p class="note">{} more certificates are listed in <code>evidence/certificates.json</code>.</p>"#,
                timed.len() - shown.len()
            );
        }
        h.push_str(r#"<details class="scn"><summary>Serials and SHA-256 fingerprints</summary><div class="body"><table><tr><th>certificate</th><th>serial</th><th>SHA-256 fingerprint</th><th>valid from</th><th>valid until</th><th>lifetime</th><th>check</th></tr>"#);
        for c in certs.iter().take(MAX_CERT_ROWS) {
            let window = c.window();
            let _ = write!(
                h,
                r#"<tr><td>{}</td><td class="mono">{}</td><td class="mono" style="word-break:break-all">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                esc(&c.label()),
                esc(c.serial.as_deref().unwrap_or("—")),
                esc(c.sha256.as_deref().unwrap_or("—")),
                esc(c.not_before.as_deref().unwrap_or("—")),
                esc(c.not_after.as_deref().unwrap_or("—")),
                window
                    .map(|(a, b)| span(b - a))
                    .unwrap_or_else(|| "—".into()),
                check_link(view, c.at)
            );
        }
        h.push_str("</table></div></details>");
    }
    h.push_str("</section>");
}

fn drills(h: &mut String, view: &View<'_>) {
    h.push_str(r#"<section id="drills"><h2>Drill timelines<span class="sub">game-day faults: injection → detection → recovery</span></h2>"#);
    if view.drills.is_empty() {
        h.push_str(r#"<p class="empty">No drills in this run.</p></section>"#);
        return;
    }
    let drills: Vec<_> = view.drills.iter().collect();
    let picture = svg::drill_timeline("d", &drills);
    if !picture.is_empty() {
        let _ = write!(h, r#"<div class="figure">{picture}</div>"#);
    }
    h.push_str(r#"<table><tr><th>status</th><th>drill</th><th>subject</th><th>finding / summary</th></tr>"#);
    for d in &drills {
        let _ = write!(
            h,
            r##"<tr class="{}"><td>{}</td><td><a href="#{}"><code>{}</code></a></td><td>{}</td><td>{}</td></tr>"##,
            if d.status == Status::Passed {
                "row-pass"
            } else {
                "row-fail"
            },
            status_badge(d.status),
            d.at.anchor(),
            esc(&d.check),
            esc(&d.subject),
            esc(&d.summary)
        );
    }
    h.push_str("</table></section>");
}

/// `meshproof bench`'s figures and plots, when the run carries them.
fn benchmarks(h: &mut String, view: &View<'_>) {
    let Some(bench) = &view.results.bench else {
        return;
    };
    h.push_str(r#"<section id="benchmarks"><h2>Benchmarks<span class="sub">medians of repeated runs, with the smallest and largest sample</span></h2>"#);
    for plot in [&bench.plots.verify_scaling, &bench.plots.probe_rates]
        .into_iter()
        .flatten()
    {
        let _ = write!(h, r#"<div class="figure">{plot}</div>"#);
    }
    h.push_str(&crate::bench::render_html(bench));
    h.push_str("</section>");
}

fn controls(h: &mut String, mapping: &Mapping, eval: &Evaluation) {
    h.push_str(r#"<section id="controls"><h2>Controls<span class="sub">passed: every check of the control that ran passed · failed: any failed · not covered: none ran</span></h2>"#);
    for f in &mapping.frameworks {
        let statuses: Vec<_> = eval.controls_of(&f.id).collect();
        let count = |c: Coverage| statuses.iter().filter(|s| s.status == c).count();
        let _ = write!(
            h,
            r#"<h3 id="framework-{}">{} <span class="sub">{} passed · {} failed · {} not covered</span></h3><table><tr><th style="width:130px">status</th><th style="width:90px">control</th><th>title</th><th style="width:40%">checks</th></tr>"#,
            slug(&f.id),
            esc(&f.name),
            count(Coverage::Passed),
            count(Coverage::Failed),
            count(Coverage::NotCovered)
        );
        for s in statuses {
            let _ = write!(
                h,
                r#"<tr class="{}"><td>{}</td><td><b>{}</b></td><td>{}</td><td><ul class="proof">"#,
                coverage_row(s.status),
                coverage_badge(s.status),
                esc(&s.control),
                esc(&s.title)
            );
            for (id, t) in &s.checks {
                let _ = write!(
                    h,
                    r##"<li><a href="#{}"><code>{}</code></a> {}</li>"##,
                    check_anchor(id),
                    esc(id),
                    tally_html(t)
                );
            }
            h.push_str("</ul></td></tr>");
        }
        h.push_str("</table>");
    }
    if !eval.unmapped.is_empty() {
        let ids: Vec<String> = eval
            .unmapped
            .iter()
            .map(|i| format!("<code>{}</code>", esc(i)))
            .collect();
        let _ = write!(
            h,
            r#"<p class="note">⚠ Checks that ran but map to no control: {}</p>"#,
            ids.join(", ")
        );
    }
    h.push_str("</section>");
}

fn checks(h: &mut String, view: &View<'_>, mapping: &Mapping, eval: &Evaluation) {
    h.push_str(r#"<section id="checks"><h2>Checks<span class="sub">every check id: what it proves, the controls it supports, its results in this run</span></h2><table><tr><th style="width:130px">status</th><th>check</th><th>controls</th><th>results</th><th>first failure</th></tr>"#);
    let mut ids: BTreeSet<String> = eval.checks.keys().cloned().collect();
    for c in &mapping.checks {
        if !eval
            .checks
            .keys()
            .any(|k| super::controls::matches(&c.id, k))
        {
            ids.insert(c.id.clone());
        }
    }
    let mut anchored = BTreeSet::new();
    for id in ids {
        let entry = mapping.check(&id);
        let tally = eval.checks.get(&id).cloned().unwrap_or_default();
        let anchor = entry
            .map(|e| check_anchor(&e.id))
            .unwrap_or_else(|| check_anchor(&id));
        let own = check_anchor(&id);
        let mut ids_attr = String::new();
        if anchored.insert(own.clone()) {
            let _ = write!(ids_attr, r#" id="{own}""#);
        }
        let extra = if anchor != own && anchored.insert(anchor.clone()) {
            format!(r#"<span id="{anchor}"></span>"#)
        } else {
            String::new()
        };
        let controls: Vec<String> = entry
            .map(|e| {
                e.controls
                    .values()
                    .flat_map(|ids| ids.iter().map(|i| esc(i)))
                    .collect()
            })
            .unwrap_or_default();
        let first_failure = tally
            .at
            .iter()
            .find(|at| {
                view.check(**at)
                    .is_some_and(|c| matches!(c.status, Status::Failed | Status::Error))
            })
            .map(|at| check_link(view, *at))
            .unwrap_or_default();
        let _ = write!(
            h,
            r#"<tr class="{}"{ids_attr}><td>{}</td><td>{extra}<code><b>{}</b></code><br><span class="small">{}</span></td><td class="small">{}</td><td>{}</td><td>{}</td></tr>"#,
            coverage_row(tally.coverage()),
            coverage_badge(tally.coverage()),
            esc(&id),
            esc(entry
                .map(|e| e.title.as_str())
                .unwrap_or("not in the control mapping")),
            controls.join(", "),
            tally_html(&tally),
            first_failure
        );
    }
    h.push_str("</table></section>");
}

fn scenarios(h: &mut String, view: &View<'_>) {
    let r = view.results;
    let _ = write!(
        h,
        r#"<section id="scenarios"><h2>Scenarios<span class="sub">{} scenarios; failing ones open</span></h2>"#,
        r.scenarios.len()
    );
    let mut by_file: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, s) in r.scenarios.iter().enumerate() {
        by_file.entry(s.file.as_str()).or_default().push(i);
    }
    for (file, indices) in by_file {
        let failed = indices
            .iter()
            .filter(|i| {
                view.scenario(**i)
                    .is_some_and(|s| s.status != Status::Passed)
            })
            .count();
        let feature = indices
            .first()
            .and_then(|i| view.scenario(*i))
            .map(|s| s.feature.as_str())
            .unwrap_or_default();
        let _ = write!(
            h,
            r#"<h3>{} <span class="sub"><code>{}</code> · {} scenarios · {} not passed</span></h3>"#,
            esc(feature),
            esc(file),
            indices.len(),
            failed
        );
        for i in indices {
            let Some(s) = view.scenario(i) else { continue };
            let bad = s.status != Status::Passed;
            let _ = write!(
                h,
                r#"<details class="scn{}" id="{}"{}><summary>{} {} <span class="small"><code>{}:{}</code> · {}{}</span></summary><div class="body">"#,
                if bad { " fail" } else { "" },
                scenario_anchor(i),
                if bad { " open" } else { "" },
                status_badge(s.status),
                esc(&s.name),
                esc(&s.file),
                s.line,
                esc(&duration(s.duration)),
                if s.attempts > 1 {
                    format!(" · {} attempts (final outcome shown)", s.attempts)
                } else {
                    String::new()
                }
            );
            if !s.tags.is_empty() {
                let _ = write!(
                    h,
                    r#"<div class="small">tags {}</div>"#,
                    esc(&s.tags.join(" "))
                );
            }
            h.push_str(r#"<ol class="steps">"#);
            for step in &s.steps {
                let _ = write!(
                    h,
                    r#"<li>{} <span class="kw">{}</span> {}{}</li>"#,
                    status_badge(step.status),
                    esc(step.keyword.trim()),
                    esc(&step.text),
                    step.error
                        .as_ref()
                        .map(|e| format!(r#"<span class="err">{}</span>"#, esc(e)))
                        .unwrap_or_default()
                );
            }
            h.push_str("</ol>");
            if !s.checks.is_empty() {
                h.push_str(r#"<table><tr><th style="width:110px">status</th><th>check</th><th>subject</th><th>summary and evidence</th></tr>"#);
                for (ci, c) in s.checks.iter().enumerate() {
                    let at = CheckAt {
                        scenario: i,
                        check: ci,
                    };
                    let _ = write!(
                        h,
                        r##"<tr id="{}" class="{}"><td>{}</td><td><a href="#{}"><code>{}</code></a></td><td>{}</td><td>{}{}</td></tr>"##,
                        at.anchor(),
                        if c.status == Status::Passed {
                            "row-pass"
                        } else {
                            "row-fail"
                        },
                        status_badge(c.status),
                        check_anchor(&c.check),
                        esc(&c.check),
                        esc(&c.subject),
                        esc(&c.summary),
                        evidence_table(c)
                    );
                }
                h.push_str("</table>");
            }
            h.push_str("</div></details>");
        }
    }
    if r.scenarios.is_empty() {
        h.push_str(r#"<p class="empty">No scenario ran.</p>"#);
    }
    h.push_str("</section>");
}

//! A [`BenchReport`] as text: an aligned table for the terminal ([`render_table`]) and the same
//! tables in Markdown ([`render_markdown`], for `BENCHMARKS.md`).

use std::fmt::Write as _;

use super::probes::{ProbeMode, ProbePath};
use super::stats::{Stat, num};
use super::{BenchReport, Section};

/// One table: a header row and rows of cells; the first column is left-aligned.
struct Table {
    title: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    notes: Vec<String>,
    /// Render as a list of records in text (rows too wide for columns).
    list: bool,
}

impl Table {
    fn new(title: impl Into<String>, header: &[&str]) -> Table {
        Table {
            title: title.into(),
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
            notes: Vec::new(),
            list: false,
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    fn text(&self, out: &mut String) {
        let _ = writeln!(out, "{}", self.title);
        if self.list {
            for row in &self.rows {
                let _ = writeln!(out, "  {}", row.first().map(String::as_str).unwrap_or(""));
                for (h, c) in self.header.iter().zip(row).skip(1) {
                    if !c.is_empty() {
                        let _ = writeln!(out, "      {h}: {c}");
                    }
                }
            }
            out.push('\n');
            return;
        }
        let cols = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(cols) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut s = String::from("  ");
            for (i, width) in widths.iter().enumerate() {
                let cell = cells.get(i).map(String::as_str).unwrap_or("");
                let pad = width.saturating_sub(cell.chars().count());
                if i == 0 {
                    s.push_str(cell);
                    s.push_str(&" ".repeat(pad));
                } else {
                    s.push_str("  ");
                    s.push_str(&" ".repeat(pad));
                    s.push_str(cell);
                }
            }
            s.trim_end().to_owned()
        };
        let _ = writeln!(out, "{}", line(&self.header));
        for row in &self.rows {
            let _ = writeln!(out, "{}", line(row));
        }
        for note in &self.notes {
            let _ = writeln!(out, "  · {note}");
        }
        out.push('\n');
    }

    fn markdown(&self, out: &mut String) {
        let _ = writeln!(out, "### {}\n", self.title);
        let cell = |c: &str| c.replace('|', "\\|");
        let _ = writeln!(
            out,
            "| {} |",
            self.header
                .iter()
                .map(|h| cell(h))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let _ = writeln!(
            out,
            "|{}|",
            (0..self.header.len())
                .map(|i| if i == 0 { "---" } else { "---:" })
                .collect::<Vec<_>>()
                .join("|")
        );
        for row in &self.rows {
            let _ = writeln!(
                out,
                "| {} |",
                row.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | ")
            );
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for note in &self.notes {
                let _ = writeln!(out, "- {note}");
            }
        }
        out.push('\n');
    }
}

impl Table {
    fn html(&self, out: &mut String) {
        let esc = crate::report::text::esc;
        let _ = write!(out, "<h3>{}</h3><table><tr>", esc(&self.title));
        for h in &self.header {
            let _ = write!(out, "<th>{}</th>", esc(h));
        }
        out.push_str("</tr>");
        for row in &self.rows {
            out.push_str("<tr>");
            for (i, c) in row.iter().enumerate() {
                let class = if i == 0 { "" } else { r#" class="num""# };
                let _ = write!(out, "<td{class}>{}</td>", esc(c));
            }
            out.push_str("</tr>");
        }
        out.push_str("</table>");
        if !self.notes.is_empty() {
            out.push_str("<ul class=\"notes\">");
            for note in &self.notes {
                let _ = write!(out, "<li>{}</li>", esc(note));
            }
            out.push_str("</ul>");
        }
    }
}

fn range(s: &Stat, k: f64) -> String {
    if s.n() <= 1 {
        "–".into()
    } else {
        format!("{}–{}", num(s.min * k), num(s.max * k))
    }
}

fn mib(kib: u64) -> String {
    format!("{} MiB", num(kib as f64 / 1024.0))
}

fn failed<T>(section: &Section<T>) -> Option<String> {
    match section {
        Section::Failed(e) => Some(format!("not measured: {e}")),
        Section::NotRun => Some("not run (--only)".into()),
        Section::Measured(_) => None,
    }
}

fn tables(report: &BenchReport) -> Vec<Table> {
    let mut out = Vec::new();

    // 1. Lab.
    let mut t = Table::new(
        "1. Full lab run (runner::run, every feature, both bundled profiles)",
        &["what", "median", "min–max", "n"],
    );
    match &report.lab {
        Section::Measured(l) => {
            let secs = |name: &str, s: &Stat, t: &mut Table| {
                t.row(vec![
                    name.into(),
                    format!("{} s", num(s.median)),
                    range(s, 1.0),
                    s.n().to_string(),
                ])
            };
            secs("cold: first run in the process", &l.cold_in_process, &mut t);
            match &l.cold_process {
                Some(s) => secs("cold: new `meshproof run` process (+ reports)", s, &mut t),
                None => t.row(vec![
                    "cold: new `meshproof run` process".into(),
                    "–".into(),
                    "–".into(),
                    "0".into(),
                ]),
            }
            secs("warm: later runs in the same process", &l.warm, &mut t);
            t.row(vec![
                "CPU per in-process run (meshproof + Envoy + SPIRE)".into(),
                format!("{} s", num(l.cpu_seconds.median)),
                range(&l.cpu_seconds, 1.0),
                l.cpu_seconds.n().to_string(),
            ]);
            for s in &l.startup {
                t.row(vec![
                    format!(
                        "mesh start-up {} (identity provider + {} sidecars)",
                        s.profile, s.workloads
                    ),
                    format!("{} s", num(s.seconds.median)),
                    range(&s.seconds, 1.0),
                    s.seconds.n().to_string(),
                ]);
                t.row(vec![
                    "  of which the sidecars (first Envoy spawned to last ready)".into(),
                    format!("{} s", num(s.sidecars.median)),
                    range(&s.sidecars, 1.0),
                    s.sidecars.n().to_string(),
                ]);
            }
            if let Some(m) = &l.memory {
                t.row(vec![
                    format!(
                        "peak memory: meshproof VmHWM{}",
                        if m.own_hwm_reset {
                            ""
                        } else {
                            " (not reset: process peak)"
                        }
                    ),
                    mib(m.own_hwm_kib),
                    "–".into(),
                    "1".into(),
                ]);
                for (name, kind) in &m.children.by_name {
                    t.row(vec![
                        format!(
                            "peak memory: {name}, {} started (RSS summed at peak; PSS {})",
                            kind.processes,
                            mib(kind.peak_pss_sum_kib)
                        ),
                        mib(kind.peak_rss_sum_kib),
                        "–".into(),
                        "1".into(),
                    ]);
                }
                t.row(vec![
                    format!(
                        "peak memory: total, RSS (meshproof + {} children alive at peak)",
                        m.children.alive_at_peak
                    ),
                    mib(m.total_kib()),
                    "–".into(),
                    "1".into(),
                ]);
                t.row(vec![
                    "peak memory: total, PSS (shared binary pages counted once)".into(),
                    mib(m.total_pss_kib()),
                    "–".into(),
                    "1".into(),
                ]);
            }
            for f in &l.per_feature {
                t.row(vec![
                    format!(
                        "alone: {} ({} scenarios{}; CPU {} s)",
                        f.feature,
                        f.scenarios,
                        if f.not_passed > 0 {
                            format!(", {} not passed", f.not_passed)
                        } else {
                            String::new()
                        },
                        num(f.cpu_seconds)
                    ),
                    format!("{} s", num(f.wall_seconds)),
                    "–".into(),
                    "1".into(),
                ]);
            }
            t.note(format!(
                "profiles {}; features {}; scenarios `{}` (the game-day drills are timed by their own scenarios)",
                l.profiles.join(", "),
                l.features.join(" "),
                super::CHECKLIST_TAGS
            ));
            t.note(format!(
                "last run: {} scenarios, {} passed, {} failed, {} skipped, {} errors, {} harness errors{}",
                l.last.scenarios,
                l.last.passed,
                l.last.failed,
                l.last.skipped,
                l.last.errors,
                l.last.harness_errors,
                if l.all_passed {
                    ""
                } else {
                    " — NOT every run passed"
                }
            ));
            for f in &l.last.failing {
                t.note(format!("not passed: {f}"));
            }
            let slow: Vec<String> = l
                .last
                .slowest
                .iter()
                .take(5)
                .map(|(s, n)| format!("{} s {n}", num(*s)))
                .collect();
            if !slow.is_empty() {
                t.note(format!("slowest scenarios: {}", slow.join("; ")));
            }
            if let Some(n) = &l.cold_process_note {
                t.note(format!("cold process runs: {n}"));
            }
        }
        other => t.note(failed(other).unwrap_or_default()),
    }
    out.push(t);

    // 2. Probes.
    let mut t = Table::new(
        "2. Probes per second through Envoy mTLS, and the ceilings",
        &[
            "path",
            "mode",
            "conc.",
            "median /s",
            "min–max",
            "vs raw",
            "server CPU µs/probe",
            "client CPU µs/probe",
            "failed/sent",
        ],
    );
    match &report.probes {
        Section::Measured(p) => {
            for mode in [ProbeMode::NewConnection, ProbeMode::KeepAlive] {
                for row in p.rows.iter().filter(|r| r.mode == mode) {
                    let vs = p
                        .ratio(row.path, ProbePath::RawRustls, row.mode, row.concurrency)
                        .map(|r| format!("{r:.2}×"))
                        .unwrap_or_default();
                    t.row(vec![
                        row.path.short().into(),
                        row.mode.label().into(),
                        row.concurrency.to_string(),
                        num(row.rate.median),
                        range(&row.rate, 1.0),
                        vs,
                        row.server_cpu_us.map(num).unwrap_or_default(),
                        row.client_cpu_us.map(num).unwrap_or_default(),
                        format!("{}/{}", row.failed, row.sent),
                    ]);
                }
            }
            t.note(format!(
                "{} probes (new connection) / {} requests (keep-alive) per sample, {} samples per row, rows interleaved; Envoy {} with --concurrency 1, start-to-ready {} ms",
                p.options.probes,
                p.options.keepalive_requests,
                p.options.repetitions,
                p.envoy_version,
                num(p.envoy_ready.median * 1000.0)
            ));
            t.note("server CPU: the Envoys on the path (both sidecars for the intent path) or the raw server's thread; client CPU: this process (probe client, plus the echo app behind Envoy)");
            for path in [
                ProbePath::RawRustls,
                ProbePath::EnvoyDirect,
                ProbePath::EnvoyEcho,
                ProbePath::IntentPath,
            ] {
                t.note(format!("{}: {}", path.short(), path.label()));
            }
        }
        other => t.note(failed(other).unwrap_or_default()),
    }
    out.push(t);

    // 3. Verify.
    let mut t = Table::new(
        "3. Static verify on synthetic profiles (parse + load manifests + verify)",
        &[
            "services",
            "intents",
            "requests judged",
            "parse s",
            "load s",
            "verify s",
            "total s",
            "min–max",
            "ms/service",
            "peak +MiB",
            "n",
        ],
    );
    match &report.verify {
        Section::Measured(v) => {
            for p in &v.points {
                if p.measured {
                    t.row(vec![
                        p.services.to_string(),
                        p.intents.to_string(),
                        p.coverage
                            .as_ref()
                            .map(|c| c.requests.to_string())
                            .unwrap_or_default(),
                        num(p.parse.median),
                        num(p.load.median),
                        num(p.verify.median),
                        num(p.total.median),
                        range(&p.total, 1.0),
                        p.ms_per_service().map(num).unwrap_or_default(),
                        p.peak_memory_kib
                            .map(|k| num(k as f64 / 1024.0))
                            .unwrap_or_default(),
                        p.total.n().to_string(),
                    ]);
                    if let Some(c) = &p.coverage {
                        t.note(format!("{} services: {c}", p.services));
                    }
                    if p.not_passed > 0 {
                        t.note(format!(
                            "{} services: {} of {} verdicts did not pass",
                            p.services, p.not_passed, p.verdicts
                        ));
                    }
                } else {
                    t.row(vec![
                        p.services.to_string(),
                        p.intents.to_string(),
                        "–".into(),
                        "–".into(),
                        "–".into(),
                        "–".into(),
                        p.projected_seconds
                            .map(|s| format!("~{} (projected)", num(s)))
                            .unwrap_or_else(|| "–".into()),
                        "–".into(),
                        "–".into(),
                        p.projected_memory_kib
                            .map(|k| format!("~{}", num(k as f64 / 1024.0)))
                            .unwrap_or_default(),
                        "0".into(),
                    ]);
                    t.note(format!(
                        "{} services: {}",
                        p.services,
                        p.skipped.clone().unwrap_or_default()
                    ));
                }
            }
            if let Some(k) = v.exponent {
                t.note(format!(
                    "fitted over the measured points: time ∝ services^{k:.2} (1 = linear, 2 = quadratic)"
                ));
            }
            t.note(format!(
                "each service: one /api/* endpoint (GET, POST), {} intents ({} ALLOW, the rest DENY), 10 services per namespace, SomaAgentHub's 4 admission policies",
                v.options.intents_per_service,
                super::synthetic::allows_of(v.options.intents_per_service)
            ));
            t.note(
                "manifests written by `meshproof render`, as is (one file per kind); verify judges every pair an intent names and its default-deny sample (see `meshproof verify --help`)",
            );
        }
        other => t.note(failed(other).unwrap_or_default()),
    }
    out.push(t);

    // 4. Admission.
    let mut t = Table::new(
        "4. Admission: in-process Rego vs gator (same templates, constraints, objects)",
        &[
            "how",
            "objects",
            "median",
            "min–max",
            "per object",
            "in-process ×",
        ],
    );
    match &report.admission {
        Section::Measured(a) => {
            t.row(vec![
                "in process (regorus), every constraint per object".into(),
                a.objects.to_string(),
                format!("{} µs", num(a.in_process_us.median)),
                range(&a.in_process_us, 1.0),
                format!("{} µs", num(a.in_process_us.median)),
                "1".into(),
            ]);
            if let Some(p) = &a.prepared_engine_us {
                t.row(vec![
                    "diagnostic: in process, engines prepared once (see notes)".into(),
                    a.objects.to_string(),
                    format!("{} µs", num(p.median)),
                    range(p, 1.0),
                    format!("{} µs", num(p.median)),
                    super::stats::ratio(a.in_process_us.median, p.median)
                        .map(|r| format!("{}× faster", num(r)))
                        .unwrap_or_default(),
                ]);
                t.note("diagnostic row: the same Rego evaluations on clones of template engines that were evaluated once at load (regorus analyses and hoists the modules on an engine's first evaluation; policy/gatekeeper keeps its engines unprepared, so every review pays that)");
            }
            for g in [&a.gator_test, &a.gator_test_many, &a.gator_verify]
                .into_iter()
                .flatten()
            {
                t.row(vec![
                    format!(
                        "{}{}",
                        g.command,
                        match g.agrees {
                            Some(true) => " (agrees)",
                            Some(false) => " (DISAGREES)",
                            None => "",
                        }
                    ),
                    g.objects.to_string(),
                    format!("{} ms", num(g.wall.median * 1000.0)),
                    range(&g.wall, 1000.0),
                    format!("{} µs", num(g.per_object_us)),
                    super::stats::ratio(g.per_object_us, a.in_process_us.median)
                        .map(|r| format!("{}×", num(r)))
                        .unwrap_or_default(),
                ]);
                if let Some(n) = &g.note {
                    t.note(format!("{}: {n}", g.command));
                }
            }
            if let Some(b) = &a.gator_bench {
                t.row(vec![
                    format!("{} (engine {}, its own timer)", b.command, b.engine),
                    a.objects.to_string(),
                    b.mean_us
                        .map(|u| format!("{} µs mean", num(u)))
                        .unwrap_or_default(),
                    format!(
                        "p50 {} p99 {}",
                        b.p50_us.map(num).unwrap_or_default(),
                        b.p99_us.map(num).unwrap_or_default()
                    ),
                    b.mean_us
                        .map(|u| format!("{} µs", num(u)))
                        .unwrap_or_default(),
                    a.speedup_vs_engine()
                        .map(|r| format!("{}×", num(r)))
                        .unwrap_or_default(),
                ]);
            }
            t.note(format!(
                "{} templates, {} constraints, {} violations over the base objects; {}",
                a.templates,
                a.constraints,
                a.violations,
                a.gator_version
                    .clone()
                    .unwrap_or_else(|| "gator version unknown".into())
            ));
            if let Some(m) = &a.gator_missing {
                t.note(m.clone());
            }
        }
        other => t.note(failed(other).unwrap_or_default()),
    }
    out.push(t);

    // 5. Report.
    let mut t = Table::new(
        "5. Report generation (every format + signed evidence bundle)",
        &["results", "median", "min–max", "per result", "n"],
    );
    match &report.report {
        Section::Measured(r) => t.row(vec![
            r.results.to_string(),
            format!("{} s", num(r.seconds.median)),
            range(&r.seconds, 1.0),
            format!(
                "{} µs",
                num(r.seconds.median * 1e6 / r.results.max(1) as f64)
            ),
            r.seconds.n().to_string(),
        ]),
        other => t.note(failed(other).unwrap_or_default()),
    }
    out.push(t);

    // Targets.
    let mut t = Table::new("Targets", &["", "target", "measured", "what bounds it"]);
    t.list = true;
    for c in &report.targets {
        t.row(vec![
            format!(
                "{} {}",
                match c.met {
                    Some(true) => "MET   ",
                    Some(false) => "MISSED",
                    None => "n/a   ",
                },
                c.name
            ),
            c.target.clone(),
            c.measured.clone(),
            c.bound.clone(),
        ]);
    }
    out.push(t);
    out
}

fn heading(report: &BenchReport) -> String {
    let m = &report.machine;
    let backtrace = m
        .rust_backtrace
        .as_ref()
        .map(|b| format!(" · {b} (slows in-process Rego)"))
        .unwrap_or_default();
    format!(
        "meshproof bench {} · {} · {} build · {} × {} · {} MiB RAM ({} available) · load {:.2} at start, {:.2} at end · kernel {} · envoy {} · {} s in all{backtrace}",
        report.meshproof_version,
        report.started,
        m.build,
        m.cpus,
        m.cpu_model,
        m.memory_mib,
        m.available_mib,
        m.load_average,
        report.load_average_end,
        m.kernel,
        report
            .envoy_version
            .clone()
            .unwrap_or_else(|| "not found".into()),
        num(report.wall_seconds)
    )
}

/// Every figure of `report` as aligned plain-text tables, for the terminal.
pub fn render_table(report: &BenchReport) -> String {
    let mut out = heading(report);
    out.push_str("\n\n");
    for t in tables(report) {
        t.text(&mut out);
    }
    if report.machine.build == "debug" {
        out.push_str("WARNING: a debug build — build with --release before quoting any figure.\n");
    }
    out
}

/// The same tables as HTML fragments (escaped), for the HTML report's benchmark section.
pub fn render_html(report: &BenchReport) -> String {
    let mut out = format!(
        "<p>{}</p>",
        crate::report::text::esc(&heading(report)).replace('\n', "<br>")
    );
    for t in tables(report) {
        t.html(&mut out);
    }
    out
}

/// The same tables in Markdown (for `BENCHMARKS.md` and CI step summaries).
pub fn render_markdown(report: &BenchReport) -> String {
    let mut out = format!("{}\n\n", heading(report));
    for t in tables(report) {
        t.markdown(&mut out);
    }
    out
}

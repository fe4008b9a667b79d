//! Inline SVG for the HTML report: the service graph, certificate timelines and drill timelines.
//! Plain strings, every text escaped; deterministic (same results → same bytes). Colour is never
//! the only signal: edges differ by dash pattern and label, bars by hatching and text, so the
//! pictures read in greyscale and in print.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::text::{esc, span, utc_minute};
use super::view::{CertObs, DrillObs, IntentObs, IntentOutcome, ProfileView};

const GREEN: &str = "#1a7f37";
const RED: &str = "#cf222e";
const AMBER: &str = "#9a6700";
const GREY: &str = "#8c959f";
const INK: &str = "#1f2328";

/// Approximate text width in px for 12px sans-serif (DejaVu/Helvetica), good enough for layout.
fn text_width(s: &str, size: f64) -> f64 {
    s.chars().count() as f64 * size * 0.6
}

fn f(x: f64) -> String {
    // One decimal keeps files small and output stable.
    let r = (x * 10.0).round() / 10.0;
    if r == r.trunc() {
        format!("{}", r as i64)
    } else {
        format!("{r:.1}")
    }
}

/// Shared `<defs>`: arrowheads, hatching patterns and the padlock glyph.
fn defs(id: &str) -> String {
    let mut d = String::from("<defs>");
    for (name, colour) in [("ok", GREEN), ("bad", RED), ("warn", AMBER), ("idle", GREY)] {
        let _ = write!(
            d,
            r#"<marker id="{id}-arrow-{name}" viewBox="0 0 10 10" refX="9" refY="5" markerUnits="userSpaceOnUse" markerWidth="13" markerHeight="13" orient="auto-start-reverse"><path d="M0 0L10 5L0 10z" fill="{colour}"/></marker>"#
        );
    }
    let _ = write!(
        d,
        r##"<pattern id="{id}-hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#ffebe9"/><line x1="0" y1="0" x2="0" y2="6" stroke="{RED}" stroke-width="3"/></pattern>"##
    );
    let _ = write!(
        d,
        r##"<symbol id="{id}-lock" viewBox="0 0 16 16"><circle cx="8" cy="8" r="8" fill="#fff" stroke="{GREEN}" stroke-width="1.2"/><path d="M5.5 7V5.5a2.5 2.5 0 0 1 5 0V7" fill="none" stroke="{INK}" stroke-width="1.4"/><rect x="4.3" y="7" width="7.4" height="5.2" rx="1" fill="{INK}"/></symbol>"##
    );
    d.push_str("</defs>");
    d
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum EdgeKind {
    Widened,
    Blocked,
    Allowed,
    /// Declared allow in the profile, but no probe of it in this run.
    NotProbed,
}

struct Edge {
    kind: EdgeKind,
    mtls: bool,
    probes: usize,
}

/// The service graph of one profile: services on a circle (profile order, first at the top,
/// clockwise), an arrow per caller → callee pair.
///
/// - green solid: promised allow, observed allow; a padlock when the hop is mTLS (the intent's own
///   `mtls`/`principal` evidence, or `strict_mtls_proven` for the whole profile);
/// - red, thick, long dashes, labelled WIDENED: promised deny, observed allow;
/// - amber dotted, labelled BLOCKED: promised allow, observed deny;
/// - grey thin dashes: an allow the profile declares that this run did not probe.
///
/// Promised-deny / observed-deny pairs are not drawn (they are the matrix's job).
pub fn service_graph(
    id: &str,
    profile: &ProfileView,
    intents: &[&IntentObs],
    strict_mtls_proven: bool,
) -> String {
    let n = profile.services.len();
    let mut edges: BTreeMap<(usize, usize), Edge> = BTreeMap::new();
    let index = |name: &str| profile.services.iter().position(|s| s == name);
    for i in intents {
        let (Some(a), Some(b)) = (index(&i.from), index(&i.to)) else {
            continue;
        };
        let kind = match i.outcome() {
            IntentOutcome::Widened => EdgeKind::Widened,
            IntentOutcome::Blocked => EdgeKind::Blocked,
            IntentOutcome::Allowed => EdgeKind::Allowed,
            IntentOutcome::Unknown if i.observed == Some(super::view::Decision::Allow) => {
                EdgeKind::Allowed
            }
            _ => continue,
        };
        let e = edges.entry((a, b)).or_insert(Edge {
            kind,
            mtls: false,
            probes: 0,
        });
        e.kind = e.kind.min(kind);
        e.probes += 1;
        if i.mtls == Some(true) {
            e.mtls = true;
        }
    }
    for (from, to) in &profile.declared_allow {
        if let (Some(a), Some(b)) = (index(from), index(to)) {
            edges.entry((a, b)).or_insert(Edge {
                kind: EdgeKind::NotProbed,
                mtls: false,
                probes: 0,
            });
        }
    }
    for e in edges.values_mut() {
        if e.kind == EdgeKind::Allowed && strict_mtls_proven {
            e.mtls = true;
        }
    }

    let longest = profile
        .services
        .iter()
        .map(|s| text_width(s, 14.0))
        .fold(60.0, f64::max);
    let radius = (n as f64 * 36.0).clamp(170.0, 280.0);
    let margin = longest / 2.0 + 24.0;
    let width = (2.0 * (radius + margin)).max(840.0);
    let legend_h = 64.0;
    let height = 2.0 * (radius + 40.0) + legend_h;
    let (cx, cy) = (width / 2.0, radius + 40.0);
    let pos: Vec<(f64, f64)> = (0..n)
        .map(|k| {
            let angle = -std::f64::consts::FRAC_PI_2
                + 2.0 * std::f64::consts::PI * k as f64 / n.max(1) as f64;
            (cx + radius * angle.cos(), cy + radius * angle.sin())
        })
        .collect();
    let half: Vec<(f64, f64)> = profile
        .services
        .iter()
        .map(|s| (text_width(s, 14.0) / 2.0 + 12.0, 16.0))
        .collect();

    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="graph" viewBox="0 0 {} {}" width="{}" height="{}" role="img" aria-labelledby="{id}-title"><title id="{id}-title">Service graph of profile {}: {} services, {} edges</title>"#,
        f(width),
        f(height),
        f(width),
        f(height),
        esc(&profile.name),
        n,
        edges.len()
    );
    svg.push_str(&defs(id));

    // Edges under nodes; the worst kinds last so they sit on top.
    let mut ordered: Vec<(&(usize, usize), &Edge)> = edges.iter().collect();
    ordered.sort_by(|a, b| b.1.kind.cmp(&a.1.kind).then(a.0.cmp(b.0)));
    let mut labels = String::new();
    for (&(a, b), e) in ordered {
        let (Some(&pa), Some(&pb)) = (pos.get(a), pos.get(b)) else {
            continue;
        };
        let (dx, dy) = (pb.0 - pa.0, pb.1 - pa.1);
        let len = (dx * dx + dy * dy).sqrt().max(1.0);
        let (ux, uy) = (dx / len, dy / len);
        // Two-way pairs are drawn side by side.
        let shift = if edges.contains_key(&(b, a)) {
            6.0
        } else {
            0.0
        };
        let (ox, oy) = (-uy * shift, ux * shift);
        let clip = |h: (f64, f64)| {
            let tx = if ux.abs() > 1e-9 {
                h.0 / ux.abs()
            } else {
                f64::MAX
            };
            let ty = if uy.abs() > 1e-9 {
                h.1 / uy.abs()
            } else {
                f64::MAX
            };
            tx.min(ty) + 3.0
        };
        let ha = half.get(a).copied().unwrap_or((30.0, 15.0));
        let hb = half.get(b).copied().unwrap_or((30.0, 15.0));
        let (sa, sb) = (clip(ha), clip(hb));
        let (x1, y1) = (pa.0 + ux * sa + ox, pa.1 + uy * sa + oy);
        let (x2, y2) = (pb.0 - ux * sb + ox, pb.1 - uy * sb + oy);
        let (colour, marker, width, dash, label) = match e.kind {
            EdgeKind::Allowed => (GREEN, "ok", 2.2, "", None),
            EdgeKind::Widened => (RED, "bad", 3.6, "10 5", Some("WIDENED")),
            EdgeKind::Blocked => (AMBER, "warn", 2.6, "2 4", Some("BLOCKED")),
            EdgeKind::NotProbed => (GREY, "idle", 1.4, "5 5", None),
        };
        let what = match e.kind {
            EdgeKind::Allowed => "allowed as promised",
            EdgeKind::Widened => "WIDENED: promised deny, observed allow",
            EdgeKind::Blocked => "BLOCKED: promised allow, observed deny",
            EdgeKind::NotProbed => "declared allow, not probed in this run",
        };
        let from = profile.services.get(a).map(String::as_str).unwrap_or("?");
        let to = profile.services.get(b).map(String::as_str).unwrap_or("?");
        let _ = write!(
            svg,
            r#"<line class="edge edge-{}" x1="{}" y1="{}" x2="{}" y2="{}" stroke="{colour}" stroke-width="{width}"{} marker-end="url(#{id}-arrow-{marker})"><title>{} → {}: {}{}{}</title></line>"#,
            match e.kind {
                EdgeKind::Allowed => "allowed",
                EdgeKind::Widened => "widened",
                EdgeKind::Blocked => "blocked",
                EdgeKind::NotProbed => "not-probed",
            },
            f(x1),
            f(y1),
            f(x2),
            f(y2),
            if dash.is_empty() {
                String::new()
            } else {
                format!(r#" stroke-dasharray="{dash}""#)
            },
            esc(from),
            esc(to),
            what,
            if e.probes > 0 {
                format!(
                    " ({} probe{})",
                    e.probes,
                    if e.probes == 1 { "" } else { "s" }
                )
            } else {
                String::new()
            },
            if e.mtls { ", mTLS" } else { "" }
        );
        let (mx, my) = ((x1 + x2) / 2.0, (y1 + y2) / 2.0);
        // Padlocks sit past the middle, so the two arrows of a two-way pair keep theirs apart.
        let (lx, ly) = (x1 + (x2 - x1) * 0.62, y1 + (y2 - y1) * 0.62);
        if let Some(text) = label {
            let w = text_width(text, 11.0) + 10.0;
            let _ = write!(
                labels,
                r##"<g class="edge-label"><rect x="{}" y="{}" width="{}" height="16" rx="3" fill="#fff" stroke="{colour}" stroke-width="1.5"/><text x="{}" y="{}" font-size="11" font-weight="700" text-anchor="middle" fill="{colour}">{text}</text></g>"##,
                f(mx - w / 2.0),
                f(my - 8.0 - if e.mtls { 12.0 } else { 0.0 }),
                f(w),
                f(mx),
                f(my + 4.0 - if e.mtls { 12.0 } else { 0.0 })
            );
        }
        if e.mtls {
            let _ = write!(
                labels,
                r##"<use href="#{id}-lock" x="{}" y="{}" width="16" height="16"><title>mTLS</title></use>"##,
                f(lx - 8.0),
                f(ly - 8.0 + if label.is_some() { 6.0 } else { 0.0 })
            );
        }
    }
    svg.push_str(&labels);

    for (k, name) in profile.services.iter().enumerate() {
        let (Some(&(x, y)), Some(&(hw, hh))) = (pos.get(k), half.get(k)) else {
            continue;
        };
        let _ = write!(
            svg,
            r##"<g class="node"><rect x="{}" y="{}" width="{}" height="{}" rx="6" fill="#f6f8fa" stroke="{INK}" stroke-width="1.3"/><text x="{}" y="{}" font-size="14" text-anchor="middle" fill="{INK}">{}</text></g>"##,
            f(x - hw),
            f(y - hh),
            f(2.0 * hw),
            f(2.0 * hh),
            f(x),
            f(y + 5.0),
            esc(name)
        );
    }

    // Legend.
    let ly = height - legend_h + 18.0;
    let items: [(&str, &str, &str, f64, bool); 4] = [
        (GREEN, "", "allowed as promised (padlock: mTLS)", 2.2, true),
        (
            RED,
            "10 5",
            "WIDENED: promised deny, observed allow",
            3.6,
            false,
        ),
        (
            AMBER,
            "2 4",
            "BLOCKED: promised allow, observed deny",
            2.6,
            false,
        ),
        (GREY, "5 5", "declared allow, not probed", 1.4, false),
    ];
    let _ = write!(
        svg,
        r##"<rect x="8" y="{}" width="{}" height="{}" fill="#fff" stroke="#d0d7de" rx="4"/>"##,
        f(ly - 14.0),
        f(width - 16.0),
        f(legend_h - 10.0)
    );
    let col = (width - 32.0) / 2.0;
    for (k, (colour, dash, text, w, lock)) in items.iter().enumerate() {
        let x = 20.0 + (k % 2) as f64 * col;
        let y = ly + (k / 2) as f64 * 22.0;
        let _ = write!(
            svg,
            r#"<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{colour}" stroke-width="{w}"{}/><text x="{}" y="{}" font-size="11.5" fill="{INK}">{}</text>"#,
            f(x),
            f(y),
            f(x + 34.0),
            f(y),
            if dash.is_empty() {
                String::new()
            } else {
                format!(r#" stroke-dasharray="{dash}""#)
            },
            f(x + 42.0 + if *lock { 20.0 } else { 0.0 }),
            f(y + 4.0),
            esc(text)
        );
        if *lock {
            let _ = write!(
                svg,
                r##"<use href="#{id}-lock" x="{}" y="{}" width="14" height="14"/>"##,
                f(x + 40.0),
                f(y - 7.0)
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// Tick step (seconds) giving at most ~8 ticks over `range`.
fn tick_step(range: i64) -> i64 {
    const STEPS: [i64; 14] = [
        60,
        300,
        900,
        1800,
        3600,
        3 * 3600,
        6 * 3600,
        12 * 3600,
        86_400,
        2 * 86_400,
        7 * 86_400,
        30 * 86_400,
        91 * 86_400,
        365 * 86_400,
    ];
    STEPS
        .iter()
        .copied()
        .find(|s| range / s <= 8)
        .unwrap_or(365 * 86_400 * (range / (8 * 365 * 86_400)).max(1))
}

fn tick_label(t: i64, step: i64) -> String {
    let full = utc_minute(t);
    let full = full.trim_end_matches(" UTC");
    if step >= 86_400 {
        full.get(..10).unwrap_or(full).to_owned()
    } else {
        full.get(5..).unwrap_or(full).to_owned()
    }
}

/// One bar per certificate on a shared UTC time axis, with the run's start as a vertical line.
/// Certificates not valid at the run's start are hatched and labelled EXPIRED / NOT YET VALID.
pub fn cert_timeline(id: &str, certs: &[&CertObs], run_start: Option<i64>) -> String {
    let windows: Vec<(&CertObs, i64, i64)> = certs
        .iter()
        .filter_map(|c| c.window().map(|(a, b)| (*c, a, b)))
        .collect();
    if windows.is_empty() {
        return String::new();
    }
    let mut lo = windows.iter().map(|w| w.1).min().unwrap_or(0);
    let mut hi = windows.iter().map(|w| w.2).max().unwrap_or(1);
    if let Some(t) = run_start {
        lo = lo.min(t);
        hi = hi.max(t);
    }
    let pad = ((hi - lo) / 40).max(60);
    lo -= pad;
    hi += pad;
    let range = (hi - lo).max(1);
    let label_w = 300.0;
    let bar_w = 640.0;
    let right_w = 170.0;
    let row_h = 22.0;
    let top = 34.0;
    let width = label_w + bar_w + right_w;
    let height = top + row_h * windows.len() as f64 + 12.0;
    let x = |t: i64| label_w + bar_w * (t - lo) as f64 / range as f64;

    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="timeline" viewBox="0 0 {} {}" width="{}" height="{}" role="img" aria-labelledby="{id}-title"><title id="{id}-title">Certificate validity timeline, {} certificates</title>"#,
        f(width),
        f(height),
        f(width),
        f(height),
        windows.len()
    );
    svg.push_str(&defs(id));
    let step = tick_step(range);
    let first = (lo + step - 1).div_euclid(step) * step;
    let mut t = first;
    while t <= hi {
        let _ = write!(
            svg,
            r##"<line x1="{0}" y1="{1}" x2="{0}" y2="{2}" stroke="#d0d7de"/><text x="{0}" y="{3}" font-size="10.5" text-anchor="middle" fill="#57606a">{4}</text>"##,
            f(x(t)),
            f(top - 6.0),
            f(height - 8.0),
            f(top - 10.0),
            esc(&tick_label(t, step))
        );
        t += step;
    }
    for (row, (c, from, to)) in windows.iter().enumerate() {
        let y = top + row as f64 * row_h;
        let valid_at_run = run_start.is_none_or(|r| *from <= r && r <= *to);
        let state = match run_start {
            Some(r) if r > *to => "EXPIRED",
            Some(r) if r < *from => "NOT YET VALID",
            _ => "",
        };
        let label = c.label();
        let shown = if label.chars().count() > 44 {
            let tail: String = label
                .chars()
                .rev()
                .take(43)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            format!("…{tail}")
        } else {
            label.clone()
        };
        if row % 2 == 1 {
            let _ = write!(
                svg,
                r##"<rect x="0" y="{}" width="{}" height="{}" fill="#f6f8fa"/>"##,
                f(y),
                f(width),
                f(row_h)
            );
        }
        let (x1, x2) = (x(*from), x(*to));
        let _ = write!(
            svg,
            r#"<g class="cert"><title>{} · serial {} · sha256 {} · {} → {}</title><text x="{}" y="{}" font-size="11.5" fill="{INK}" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace">{}</text><rect x="{}" y="{}" width="{}" height="{}" rx="2" fill="{}" stroke="{}" stroke-width="1"/><text x="{}" y="{}" font-size="11" fill="{INK}">{}</text></g>"#,
            esc(&label),
            esc(c.serial.as_deref().unwrap_or("?")),
            esc(c.sha256.as_deref().unwrap_or("?")),
            esc(&utc_minute(*from)),
            esc(&utc_minute(*to)),
            f(6.0),
            f(y + 15.0),
            esc(&shown),
            f(x1),
            f(y + 4.0),
            f((x2 - x1).max(3.0)),
            f(row_h - 8.0),
            if valid_at_run {
                GREEN.to_owned()
            } else {
                format!("url(#{id}-hatch)")
            },
            if valid_at_run { INK } else { RED },
            f(label_w + bar_w + 8.0),
            f(y + 15.0),
            esc(&if state.is_empty() {
                span(to - from)
            } else {
                format!("{state} · {}", span(to - from))
            })
        );
    }
    if let Some(r) = run_start {
        let _ = write!(
            svg,
            r#"<line x1="{0}" y1="{1}" x2="{0}" y2="{2}" stroke="{INK}" stroke-width="1.5" stroke-dasharray="4 3"/><text x="{0}" y="{3}" font-size="10.5" font-weight="700" text-anchor="middle" fill="{INK}">run</text>"#,
            f(x(r)),
            f(top - 4.0),
            f(height - 6.0),
            f(height - 0.5)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// One row per drill: injection → detection (amber, hatched) → recovery (blue), in seconds from the
/// injection; times taken from `*_at` timestamps, or from `time_to_detect_ms` / `time_to_recover_ms`.
pub fn drill_timeline(id: &str, drills: &[&DrillObs]) -> String {
    let rows: Vec<(&DrillObs, Option<f64>, Option<f64>)> = drills
        .iter()
        .map(|d| {
            let detect = d
                .detect_ms
                .map(|ms| ms / 1000.0)
                .or_else(|| Some((d.detected? - d.injected?) as f64));
            let recover = d
                .recover_ms
                .map(|ms| ms / 1000.0)
                .or_else(|| Some((d.recovered? - d.detected.or(d.injected)?) as f64));
            (*d, detect, recover)
        })
        .filter(|(_, a, b)| a.is_some() || b.is_some())
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let longest = rows
        .iter()
        .map(|(_, a, b)| a.unwrap_or(0.0) + b.unwrap_or(0.0))
        .fold(1e-3, f64::max);
    let (label_w, bar_w, right_w, row_h, top) = (300.0, 560.0, 250.0, 24.0, 12.0);
    let width = label_w + bar_w + right_w;
    let height = top + row_h * rows.len() as f64 + 8.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="timeline" viewBox="0 0 {} {}" width="{}" height="{}" role="img"><title>Drill timelines</title>"#,
        f(width),
        f(height),
        f(width),
        f(height)
    );
    svg.push_str(&defs(id));
    for (row, (d, detect, recover)) in rows.iter().enumerate() {
        let y = top + row as f64 * row_h;
        let d_w = bar_w * detect.unwrap_or(0.0) / longest;
        let r_w = bar_w * recover.unwrap_or(0.0) / longest;
        let text = format!(
            "detected {} · recovered {}",
            detect
                .map(|s| format!("in {s:.2} s"))
                .unwrap_or_else(|| "—".into()),
            recover
                .map(|s| format!("in {s:.2} s"))
                .unwrap_or_else(|| "—".into())
        );
        let _ = write!(
            svg,
            r##"<text x="6" y="{}" font-size="11.5" fill="{INK}">{}</text><rect x="{}" y="{}" width="{}" height="14" fill="url(#{id}-hatch)" stroke="{AMBER}"/><rect x="{}" y="{}" width="{}" height="14" fill="#0969da" stroke="{INK}"/><text x="{}" y="{}" font-size="11" fill="{INK}">{}</text>"##,
            f(y + 15.0),
            esc(&format!("{} · {}", d.check, d.subject)),
            f(label_w),
            f(y + 4.0),
            f(d_w.max(1.0)),
            f(label_w + d_w),
            f(y + 4.0),
            f(r_w.max(1.0)),
            f(label_w + bar_w + 8.0),
            f(y + 15.0),
            esc(&text)
        );
    }
    svg.push_str("</svg>");
    svg
}

//! Hand-written SVG plots of a [`super::BenchReport`], self-contained (no scripts, no external
//! fonts or styles), so the HTML report can embed them inline.

use std::fmt::Write as _;

use super::probes::{ProbeBench, ProbeMode, ProbePath};
use super::scaling::ScalingBench;
use super::stats::num;

const FONT: &str = "font-family=\"system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif\"";
const INK: &str = "#1f2933";
const GRID: &str = "#d9dee3";
const BLUE: &str = "#2563eb";
const ORANGE: &str = "#ea580c";
const GREY: &str = "#7b8794";

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Powers of ten (and 2×, 5×) spanning `[lo, hi]`, for log-axis ticks.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut out = Vec::new();
    if lo <= 0.0 || hi <= 0.0 || !lo.is_finite() || !hi.is_finite() {
        return out;
    }
    let mut decade = 10f64.powf(lo.log10().floor());
    while decade <= hi * 1.0001 {
        for m in [1.0, 2.0, 5.0] {
            let v = decade * m;
            if v >= lo * 0.9999 && v <= hi * 1.0001 {
                out.push(v);
            }
        }
        decade *= 10.0;
    }
    out
}

fn seconds_label(s: f64) -> String {
    if s >= 1.0 {
        format!("{} s", num(s))
    } else if s >= 1e-3 {
        format!("{} ms", num(s * 1e3))
    } else {
        format!("{} µs", num(s * 1e6))
    }
}

/// Static verify time against services, log-log, measured points solid and projected ones
/// hollow, with linear and quadratic guides through the smallest measured point.
pub fn verify_scaling(bench: &ScalingBench) -> String {
    let (w, h) = (640.0, 400.0);
    let (left, right, top, bottom) = (78.0, 24.0, 44.0, 56.0);
    let pts: Vec<(f64, f64, bool)> = bench
        .points
        .iter()
        .filter_map(|p| {
            if p.measured {
                Some((p.services as f64, p.total.median, true))
            } else {
                p.projected_seconds.map(|s| (p.services as f64, s, false))
            }
        })
        .filter(|(s, t, _)| *s > 0.0 && *t > 0.0)
        .collect();
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"Static verify time against number of services\" {FONT} font-size=\"12\">"
    );
    let _ = write!(
        svg,
        "<rect width=\"{w}\" height=\"{h}\" fill=\"#ffffff\"/><text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"600\" fill=\"{INK}\">Static verify: time against services (log–log)</text>",
        w / 2.0
    );
    if pts.is_empty() {
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"{GREY}\">no point measured</text></svg>",
            w / 2.0,
            h / 2.0
        );
        return svg;
    }
    let first = pts
        .iter()
        .filter(|p| p.2)
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .copied()
        .unwrap_or(pts[0]);
    let xs_lo = pts.iter().map(|p| p.0).fold(f64::INFINITY, f64::min) / 1.5;
    let xs_hi = pts.iter().map(|p| p.0).fold(0.0, f64::max) * 1.5;
    let quad_hi = first.1 * (xs_hi / first.0).powi(2);
    let ys_lo = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min) / 3.0;
    let ys_hi = pts
        .iter()
        .map(|p| p.1)
        .fold(0.0, f64::max)
        .max(quad_hi.min(pts.iter().map(|p| p.1).fold(0.0, f64::max) * 10.0))
        * 1.5;
    let (pw, ph) = (w - left - right, h - top - bottom);
    let x = |v: f64| left + (v.ln() - xs_lo.ln()) / (xs_hi.ln() - xs_lo.ln()) * pw;
    let y = |v: f64| top + ph - (v.ln() - ys_lo.ln()) / (ys_hi.ln() - ys_lo.ln()) * ph;
    for t in log_ticks(xs_lo, xs_hi) {
        let _ = write!(
            svg,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{top}\" y2=\"{1:.1}\" stroke=\"{GRID}\"/><text x=\"{0:.1}\" y=\"{2:.1}\" text-anchor=\"middle\" fill=\"{INK}\">{3}</text>",
            x(t),
            top + ph,
            top + ph + 16.0,
            num(t)
        );
    }
    for t in log_ticks(ys_lo, ys_hi) {
        let _ = write!(
            svg,
            "<line x1=\"{left}\" x2=\"{0:.1}\" y1=\"{1:.1}\" y2=\"{1:.1}\" stroke=\"{GRID}\"/><text x=\"{2:.1}\" y=\"{3:.1}\" text-anchor=\"end\" fill=\"{INK}\">{4}</text>",
            left + pw,
            y(t),
            left - 6.0,
            y(t) + 4.0,
            esc(&seconds_label(t))
        );
    }
    let _ = write!(
        svg,
        "<rect x=\"{left}\" y=\"{top}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"{GREY}\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"{INK}\">services in the profile (10 intents each)</text><text transform=\"translate(16 {:.1}) rotate(-90)\" text-anchor=\"middle\" fill=\"{INK}\">parse + load + verify (median)</text>",
        left + pw / 2.0,
        h - 14.0,
        top + ph / 2.0
    );
    // Guides: linear and quadratic through the smallest measured point, clipped to the plot.
    let _ = write!(
        svg,
        "<clipPath id=\"verify-plot\"><rect x=\"{left}\" y=\"{top}\" width=\"{pw}\" height=\"{ph}\"/></clipPath>"
    );
    for (k, label) in [(1.0, "linear"), (2.0, "quadratic")] {
        let y0 = first.1 * (xs_lo / first.0).powf(k);
        let y1 = first.1 * (xs_hi / first.0).powf(k);
        let _ = write!(
            svg,
            "<line clip-path=\"url(#verify-plot)\" x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{GREY}\" stroke-dasharray=\"{}\"/>",
            x(xs_lo),
            y(y0),
            x(xs_hi),
            y(y1),
            if k == 1.0 { "6 4" } else { "2 4" }
        );
        let lx = x(xs_hi) - 4.0;
        let ly = y(y1.min(ys_hi)).max(top + 12.0) + if k == 1.0 { 14.0 } else { 0.0 };
        let _ = write!(
            svg,
            "<text x=\"{lx:.1}\" y=\"{ly:.1}\" text-anchor=\"end\" fill=\"{GREY}\">{label}</text>"
        );
    }
    let measured: Vec<&(f64, f64, bool)> = pts.iter().filter(|p| p.2).collect();
    if measured.len() > 1 {
        let path: Vec<String> = measured
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.0), y(p.1)))
            .collect();
        let _ = write!(
            svg,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{BLUE}\" stroke-width=\"2\"/>",
            path.join(" ")
        );
    }
    for p in &pts {
        let (fill, note) = if p.2 {
            (BLUE, String::new())
        } else {
            ("#ffffff", " (projected, not run)".to_owned())
        };
        let _ = write!(
            svg,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"5\" fill=\"{fill}\" stroke=\"{BLUE}\" stroke-width=\"2\"><title>{} services: {}{}</title></circle><text x=\"{:.1}\" y=\"{:.1}\" fill=\"{INK}\">{}{}</text>",
            x(p.0),
            y(p.1),
            num(p.0),
            esc(&seconds_label(p.1)),
            esc(&note),
            x(p.0) + 8.0,
            y(p.1) - 8.0,
            esc(&seconds_label(p.1)),
            if p.2 { "" } else { " projected" }
        );
    }
    if let Some(k) = bench.exponent {
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"{INK}\">fitted: time ∝ services^{:.2}</text>",
            left + 8.0,
            top + 16.0,
            k
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Probes per second per path, new connection and keep-alive side by side, sequential and
/// concurrent bars, with the raw rustls handshake rate marked as the new-connection ceiling.
pub fn probe_rates(bench: &ProbeBench) -> String {
    let paths = [
        ProbePath::RawRustls,
        ProbePath::EnvoyDirect,
        ProbePath::EnvoyEcho,
        ProbePath::IntentPath,
    ];
    let concurrencies: Vec<usize> = {
        let mut c: Vec<usize> = bench.rows.iter().map(|r| r.concurrency).collect();
        c.sort_unstable();
        c.dedup();
        c
    };
    let (w, h) = (760.0, 340.0);
    let (label_w, top, panel_gap) = (150.0, 48.0, 26.0);
    let panel_w = (w - label_w - panel_gap - 20.0) / 2.0;
    let group_h = (h - top - 50.0) / paths.len() as f64;
    let bar_h = (group_h - 10.0) / concurrencies.len().max(1) as f64;
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"Probes per second through Envoy mTLS and their ceilings\" {FONT} font-size=\"12\"><rect width=\"{w}\" height=\"{h}\" fill=\"#ffffff\"/><text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"600\" fill=\"{INK}\">Probes per second (median)</text>",
        w / 2.0
    );
    for (i, path) in paths.iter().enumerate() {
        let gy = top + i as f64 * group_h + group_h / 2.0;
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"{INK}\">{}</text>",
            label_w - 8.0,
            gy + 4.0,
            esc(path.short())
        );
    }
    for (pi, mode) in [ProbeMode::NewConnection, ProbeMode::KeepAlive]
        .into_iter()
        .enumerate()
    {
        let x0 = label_w + pi as f64 * (panel_w + panel_gap);
        let rows: Vec<_> = bench.rows.iter().filter(|r| r.mode == mode).collect();
        let max = rows.iter().map(|r| r.rate.max).fold(0.0, f64::max).max(1.0) * 1.08;
        let sx = |v: f64| x0 + v / max * panel_w;
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-weight=\"600\" fill=\"{INK}\">{}</text><line x1=\"{x0:.1}\" x2=\"{x0:.1}\" y1=\"{top}\" y2=\"{:.1}\" stroke=\"{GREY}\"/>",
            x0 + panel_w / 2.0,
            top - 8.0,
            esc(mode.label()),
            h - 50.0
        );
        for (i, path) in paths.iter().enumerate() {
            for (ci, c) in concurrencies.iter().enumerate() {
                let Some(row) = bench.row(*path, mode, *c) else {
                    continue;
                };
                let by = top + i as f64 * group_h + 5.0 + ci as f64 * bar_h;
                let color = if ci == 0 { BLUE } else { ORANGE };
                let _ = write!(
                    svg,
                    "<rect x=\"{x0:.1}\" y=\"{by:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{color}\"><title>{} · {} · concurrency {}: {}/s [{}–{}]</title></rect><line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{INK}\"/><text x=\"{:.1}\" y=\"{:.1}\" fill=\"{INK}\" font-size=\"11\">{}</text>",
                    (sx(row.rate.median) - x0).max(0.5),
                    (bar_h - 2.0).max(1.0),
                    esc(path.short()),
                    esc(mode.label()),
                    c,
                    num(row.rate.median),
                    num(row.rate.min),
                    num(row.rate.max),
                    sx(row.rate.min),
                    sx(row.rate.max),
                    by + bar_h / 2.0 - 1.0,
                    by + bar_h / 2.0 - 1.0,
                    sx(row.rate.max) + 4.0,
                    by + bar_h / 2.0 + 3.0,
                    num(row.rate.median)
                );
            }
        }
        // The ceiling of this mode: raw rustls for new connections, Envoy direct for keep-alive.
        let ceiling = match mode {
            ProbeMode::NewConnection => ProbePath::RawRustls,
            ProbeMode::KeepAlive => ProbePath::EnvoyDirect,
        };
        if let Some(row) = bench.row(ceiling, mode, 1) {
            let cx = sx(row.rate.median);
            let _ = write!(
                svg,
                "<line x1=\"{cx:.1}\" x2=\"{cx:.1}\" y1=\"{top}\" y2=\"{:.1}\" stroke=\"{GREY}\" stroke-dasharray=\"4 3\"/><text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"{GREY}\" font-size=\"11\">ceiling ({})</text>",
                h - 50.0,
                h - 36.0,
                esc(ceiling.short())
            );
        }
    }
    let ly = h - 14.0;
    let _ = write!(
        svg,
        "<rect x=\"{label_w}\" y=\"{:.1}\" width=\"12\" height=\"10\" fill=\"{BLUE}\"/><text x=\"{:.1}\" y=\"{ly:.1}\" fill=\"{INK}\">sequential</text>",
        ly - 9.0,
        label_w + 16.0
    );
    if let Some(c) = concurrencies.get(1) {
        let _ = write!(
            svg,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"12\" height=\"10\" fill=\"{ORANGE}\"/><text x=\"{:.1}\" y=\"{ly:.1}\" fill=\"{INK}\">{c} concurrent</text>",
            label_w + 100.0,
            ly - 9.0,
            label_w + 116.0
        );
    }
    let _ = write!(
        svg,
        "<text x=\"{:.1}\" y=\"{ly:.1}\" fill=\"{GREY}\">whiskers: min–max of the repetitions</text></svg>",
        label_w + 230.0
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_cover_the_range() {
        assert_eq!(log_ticks(80.0, 600.0), vec![100.0, 200.0, 500.0]);
        assert!(log_ticks(0.0, 1.0).is_empty());
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(esc("a<b & \"c\">"), "a&lt;b &amp; &quot;c&quot;&gt;");
    }
}

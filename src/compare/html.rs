//! compare.html: self-contained like report.html. The shift and the verdicts on top, then
//! both runs overlaid: the knee curves, the timelines, one chart per quantity against
//! offered rate (good throughput, latency p50 and p99), then the hold steps and their
//! differential flamegraphs.

use super::{Comparison, Side};
use crate::model::Phase;
use crate::report::charts::{Chart, Legend, Series, Style, GRID, WIDE};
use crate::report::curves;
use crate::report::html::{base64, escape};
use crate::report::timeline::Timeline;
use crate::units::fmt_ms;
use std::fmt::Write as _;

/// The report's stylesheet, with the differential flamegraphs as wide as the page.
fn style() -> String {
    format!(
        "{}img{{width:100%;border:1px solid #ddd}}",
        crate::report::html::STYLE
    )
}

pub fn render(c: &Comparison) -> Vec<u8> {
    let (a, b) = (escape(&c.before.label), escape(&c.after.label));
    let mut out = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>knee compare: {a} → {b}</title><style>{}</style></head><body><h1>knee compare: {a} → {b}</h1>",
        style()
    );
    out.push_str("<div class=\"verdict\"><table>");
    for (name, shift) in [
        ("capacity", &c.capacity),
        ("latency knee", &c.latency_knee),
        ("saturation", &c.saturation),
    ] {
        let _ = write!(
            out,
            "<tr><td><b>{name}</b></td><td>{}</td></tr>",
            escape(&shift.describe("req/s"))
        );
    }
    let scale = c.scale.as_ref().map_or(String::new(), |s| {
        format!("<tr><td><b>replicas</b></td><td>{}</td></tr>", escape(s))
    });
    let _ = write!(
        out,
        "<tr><td><b>was</b></td><td>{}</td></tr><tr><td><b>now</b></td><td>{}</td></tr>{scale}</table></div>",
        escape(&c.verdict_before),
        escape(&c.verdict_after)
    );
    timelines_and_knees(&mut out, c);
    out.push_str("<h2>Before and after, per offered rate</h2><div class=\"charts\">");
    out.push_str(&overlay(c, "Good throughput", "good req/s", false, &|s| {
        Some(s.ok_rps)
    }));
    out.push_str(&overlay(c, "Latency p50 and p99", "ms (log)", true, &|s| {
        (s.requests > 0).then_some(s.latency_ms.p99)
    }));
    out.push_str("</div>");
    hold_table(&mut out, c);
    for pair in &c.holds {
        for (what, svg) in [
            ("Differential flamegraph", &pair.diff_svg),
            ("Differential off-CPU flamegraph", &pair.diff_offcpu_svg),
        ] {
            let Some(svg) = svg else { continue };
            let _ = write!(out, "<h3>{what}: {}</h3>", escape(&pair.name));
            if let Ok(bytes) = std::fs::read(c.out.join(svg)) {
                let _ = write!(
                    out,
                    "<img alt=\"{what}\" src=\"data:image/svg+xml;base64,{}\">",
                    base64(&bytes)
                );
            }
            let _ = write!(out, "<p><a href=\"{0}\">{0}</a></p>", escape(svg));
        }
    }
    out.push_str("</body></html>\n");
    out.into_bytes()
}

/// One chart with both runs: `y` per offered rate; for latency, p50 is drawn too.
fn overlay(
    c: &Comparison,
    title: &str,
    y_label: &str,
    latency: bool,
    y: &dyn Fn(&crate::model::step::StepResult) -> Option<f64>,
) -> String {
    let points = |side: &Side, f: &dyn Fn(&crate::model::step::StepResult) -> Option<f64>| {
        let mut p: Vec<(f64, f64)> = side
            .run
            .steps
            .iter()
            .filter(|s| !matches!(s.phase, Phase::Probe | Phase::Recovery))
            .filter_map(|s| Some((s.offered_rps?, f(s)?)))
            .collect();
        p.sort_by(|x, y| x.0.total_cmp(&y.0));
        p
    };
    let p50 = |s: &crate::model::step::StepResult| (s.requests > 0).then_some(s.latency_ms.p50);
    let label_before = if latency { "before p99" } else { "before" };
    let label_after = if latency { "after p99" } else { "after" };
    let mut chart = Chart::new(title, "offered rate (req/s)", y_label, GRID);
    chart.log_y = latency;
    chart.series = vec![
        Series::new(label_before, points(c.before, y), 0, Style::LinePoints),
        Series::new(label_after, points(c.after, y), 3, Style::LinePoints),
    ];
    if latency {
        chart.series.extend([
            Series::new("before p50", points(c.before, &p50), 4, Style::LinePoints),
            Series::new("after p50", points(c.after, &p50), 1, Style::LinePoints),
        ]);
    }
    chart.svg()
}

/// Both runs' time lines (each from its own start) and knee curves, overlaid.
fn timelines_and_knees(out: &mut String, c: &Comparison) {
    let (before, after) = (
        Timeline::read(&c.before.run, &c.before.dir),
        Timeline::read(&c.after.run, &c.after.dir),
    );
    let mut requests = Chart::new("Requests over time", "time (s)", "req/s", WIDE);
    requests.series = vec![
        Series::new("before offered", before.offered, 5, Style::Line),
        Series::new("before achieved", before.achieved, 0, Style::Line),
        Series::new("after offered", after.offered, 4, Style::Line),
        Series::new("after achieved", after.achieved, 3, Style::Line),
    ];
    let mut p99 = Chart::new("p99 over time", "time (s)", "ms (log)", WIDE);
    p99.log_y = true;
    p99.series = vec![
        Series::new("before p99", before.p99, 0, Style::Line),
        Series::new("after p99", after.p99, 3, Style::Line),
    ];
    let mut knee = Chart::new(
        "The knee, before and after: p99 against good throughput",
        "good throughput (ok req/s)",
        "p99 ms (log)",
        (WIDE.0, 360),
    );
    knee.log_y = true;
    knee.series = vec![
        Series::new(
            "before",
            curves::knee_points(&c.before.run),
            0,
            Style::LinePoints,
        ),
        Series::new(
            "after",
            curves::knee_points(&c.after.run),
            3,
            Style::LinePoints,
        ),
    ];
    knee.legend = Legend::LowerRight;
    requests.legend = Legend::Beside;
    p99.legend = Legend::Beside;
    knee.marks = curves::knee_marks(&c.before.run, " before")
        .into_iter()
        .take(1)
        .chain(
            curves::knee_marks(&c.after.run, " after")
                .into_iter()
                .take(1),
        )
        .collect();
    out.push_str("<h2>The knee, before and after</h2><div class=\"wide\">");
    out.push_str(&knee.svg());
    out.push_str("</div><h2>Timelines, before and after</h2><div class=\"wide\">");
    for chart in [requests, p99].iter().filter(|c| c.has_data()) {
        out.push_str(&chart.svg());
    }
    out.push_str("</div>");
}

fn hold_table(out: &mut String, c: &Comparison) {
    if c.holds.is_empty() {
        return;
    }
    out.push_str("<h2>Hold steps (the same fraction of each run's own capacity)</h2><table class=\"steps\"><tr><th>step</th><th>before offered</th><th>good/s</th><th>p99</th><th>after offered</th><th>good/s</th><th>p99</th></tr>");
    for pair in &c.holds {
        let cells = |s: &crate::model::step::StepResult| {
            format!(
                "<td>{}</td><td>{:.0}</td><td>{}</td>",
                s.offered_rps.map_or("-".to_string(), |r| format!("{r:.0}")),
                s.ok_rps,
                fmt_ms(s.latency_ms.p99)
            )
        };
        let _ = write!(
            out,
            "<tr><td>{}</td>{}{}</tr>",
            escape(&pair.name),
            cells(pair.before),
            cells(pair.after)
        );
    }
    out.push_str("</table>");
}

//! `report.html`: one self-contained file (inline CSS, inline SVG charts, no script, no
//! network). Plots first: the verdict box, then the timeline (timeline.rs), the knee curve
//! and the per-step charts (curves.rs), then the step table, the flamegraphs and the
//! settings. Every text that came from the run (names, errors, evidence, the command) is
//! escaped.

pub use super::markup::{base64, escape};
use super::timeline::Timeline;
use super::{curves, Exporter};
use crate::model::RunRecord;
use crate::units::fmt_ms;
use std::fmt::Write as _;

pub struct Html;

/// The reports' stylesheet (compare.html uses it too).
pub const STYLE: &str = "body{font-family:sans-serif;max-width:1340px;margin:1em auto;color:#222}\
h1{font-size:1.5em}.meta{color:#555}.verdict{border:2px solid #333;border-radius:6px;padding:.6em 1em;background:#fafafa}\
.verdict td{padding:.15em .8em .15em 0}.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:8px}.charts svg,.wide svg{width:100%;height:auto;border:1px solid #ddd}.wide svg{margin-bottom:6px}\
table.steps{border-collapse:collapse;font-size:.85em}table.steps td,table.steps th{border:1px solid #ccc;padding:.2em .5em;text-align:right}\
table.steps td:first-child{text-align:left}.flame img{width:100%;border:1px solid #ddd}\
.top{display:flex;gap:2em;font-size:.85em}.top td{padding:0 .6em 0 0}.no{color:#b00;font-weight:bold}pre{white-space:pre-wrap;background:#f4f4f4;padding:.5em}";

impl Exporter for Html {
    fn file_name(&self) -> &'static str {
        "report.html"
    }

    fn render(&self, run: &RunRecord, dir: &std::path::Path) -> Vec<u8> {
        let mut out = String::new();
        let _ = write!(
            out,
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>knee {}: {}</title><style>{STYLE}</style></head><body>",
            escape(run.kind.as_str()),
            escape(&run.name)
        );
        let _ = write!(
            out,
            "<h1>knee {}: {}</h1>",
            escape(run.kind.as_str()),
            escape(&run.name)
        );
        let _ = write!(
            out,
            "<p class=\"meta\">target <code>{}</code> · started {} · knee {} · SLO {}</p>",
            escape(&run.target),
            escape(&run.started_at),
            escape(&run.knee_version),
            escape(&run.slo.describe())
        );
        verdict_box(&mut out, run);
        charts(&mut out, run, dir);
        step_table(&mut out, run);
        super::requests::html(&mut out, run);
        connect_table(&mut out, run);
        flamegraphs(&mut out, run, dir);
        offcpu(&mut out, run, dir);
        super::replicas::html_section(&mut out, run, dir);
        let _ = write!(
            out,
            "<h2>Settings</h2><pre>{}</pre>",
            escape(&run.command.join(" "))
        );
        out.push_str("</body></html>\n");
        out.into_bytes()
    }
}

fn verdict_box(out: &mut String, run: &RunRecord) {
    out.push_str("<div class=\"verdict\"><table>");
    let row = |out: &mut String, k: &str, v: String| {
        let _ = write!(out, "<tr><td><b>{}</b></td><td>{v}</td></tr>", escape(k));
    };
    if let Some(k) = run.hunt.as_ref().or(run.stress.as_ref()) {
        let unit = k.rate_unit.per_second();
        let rate = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{r:.0} {unit}"));
        row(
            out,
            "capacity",
            format!(
                "<b>{}</b> ({})",
                rate(k.capacity_rps),
                escape(&k.ending.as_str().replace('_', " "))
            ),
        );
        row(out, "latency knee", rate(k.latency_knee_rps));
        row(out, "saturation", rate(k.saturation_rps));
        row(
            out,
            "past the knee",
            escape(k.failure_mode.map_or("-", |m| m.describe())),
        );
        row(out, "recovery", k.recovery_text());
    }
    if let Some(v) = &run.verdict {
        row(
            out,
            "bottleneck",
            format!(
                "<b>{}</b> (confidence {})",
                escape(&v.bottleneck),
                escape(v.confidence.as_str())
            ),
        );
        let evidence: String = v
            .broke_first
            .iter()
            .chain(&v.evidence)
            .chain(super::busy_at_knee(run).as_ref())
            .map(|e| format!("<li>{}</li>", escape(e)))
            .collect();
        row(
            out,
            "evidence",
            format!(
                "<ul>{evidence}<li>to confirm: {}</li></ul>",
                escape(&v.confirm)
            ),
        );
    }
    if let Some(soak) = &run.soak {
        row(
            out,
            "soak",
            soak.verdicts
                .iter()
                .chain(&soak.notes)
                .map(|v| escape(v))
                .collect::<Vec<_>>()
                .join("<br>"),
        );
    }
    let held = run.steps.iter().filter(|s| s.holds).count();
    row(out, "steps", format!("{held} of {} held", run.steps.len()));
    out.push_str("</table></div>");
}

/// The timeline first (every run has one), then for runs of several loads the knee curve
/// and the per-step charts, or for a soak its windows' trends.
fn charts(out: &mut String, run: &RunRecord, dir: &std::path::Path) {
    out.push_str("<h2 id=\"timeline\">Timeline</h2><div class=\"wide\">");
    for chart in Timeline::read(run, dir).charts() {
        out.push_str(&chart);
    }
    out.push_str("</div>");
    if run.kind == crate::model::Kind::Soak {
        out.push_str("<h2 id=\"windows\">Soak windows</h2><div class=\"charts\">");
        for chart in curves::soak_charts(run) {
            out.push_str(&chart);
        }
        out.push_str("</div>");
    } else if curves::distinct_loads(run) > 1 {
        out.push_str("<h2 id=\"knee\">The knee</h2><div class=\"wide\">");
        out.push_str(&curves::knee_chart(run).svg());
        out.push_str("</div><h2 id=\"per-step\">Per step</h2><p class=\"meta\">One line per phase, steps sorted by load (the search, then the holds); dots: the probe, crosses: recovery.</p><div class=\"charts\">");
        for chart in curves::step_charts(run) {
            out.push_str(&chart);
        }
        out.push_str("</div>");
    }
}

fn step_table(out: &mut String, run: &RunRecord) {
    out.push_str("<h2>Steps</h2><table class=\"steps\"><tr><th>step</th><th>load</th><th>achieved/s</th><th>p50</th><th>p99</th><th>p99.9</th><th>errors</th><th>holds</th></tr>");
    for s in &run.steps {
        let load = s.load_label();
        let holds = match s.holds_word() {
            "no" => "<span class=\"no\">no</span>",
            word => word,
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{load}</td><td>{:.0}</td><td>{}</td><td>{}</td><td>{}</td><td>{} ({:.1}%)</td><td>{holds}</td></tr>",
            escape(&s.name),
            s.achieved_rps,
            fmt_ms(s.latency_ms.p50),
            fmt_ms(s.latency_ms.p99),
            fmt_ms(s.latency_ms.p999),
            s.errors,
            s.error_rate * 100.0
        );
    }
    out.push_str("</table>");
    let profiled = super::profiled_lines(run);
    if !profiled.is_empty() {
        out.push_str("<p>What profiling cost, kept out of the figures above:</p><ul>");
        for line in profiled {
            let _ = write!(out, "<li>{}</li>", escape(&line));
        }
        out.push_str("</ul>");
    }
}

/// The connections each step opened and how long they took (only when some did).
fn connect_table(out: &mut String, run: &RunRecord) {
    let rows = super::connect_rows(run);
    if rows.is_empty() {
        return;
    }
    out.push_str("<h2>Connections</h2><table class=\"steps\"><tr>");
    for head in super::CONNECT_HEADER {
        let _ = write!(out, "<th>{}</th>", escape(head));
    }
    out.push_str("</tr>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{}</td>", escape(&cell));
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
}

/// Each profiled step: its flamegraph (embedded as an image, so the file stays self-contained
/// and inferno's script does not run; the interactive SVG is linked beside it) and its top
/// functions by self and by inclusive samples.
fn flamegraphs(out: &mut String, run: &RunRecord, dir: &std::path::Path) {
    let profiled = super::profiled_steps(run);
    if profiled.is_empty() {
        return;
    }
    out.push_str("<h2>Where the CPU went</h2>");
    for (step, profile) in profiled {
        let _ = write!(
            out,
            "<div class=\"flame\"><h3>{} · {} samples{}</h3>",
            escape(&step.name),
            profile.samples,
            if profile.undersampled {
                " · <span class=\"no\">undersampled</span>"
            } else {
                ""
            }
        );
        if let Some(error) = &profile.error {
            let _ = write!(out, "<p>no flamegraph: {}</p>", escape(error));
        }
        if let Some(svg) = &profile.svg {
            if let Ok(bytes) = std::fs::read(dir.join(svg)) {
                let _ = write!(
                    out,
                    "<img alt=\"flamegraph of {}\" src=\"data:image/svg+xml;base64,{}\">",
                    escape(&step.name),
                    base64(&bytes)
                );
            }
            let _ = write!(
                out,
                "<p><a href=\"{0}\">{0}</a> (interactive: search, zoom)</p>",
                escape(svg)
            );
        }
        out.push_str("<div class=\"top\">");
        let tables = [
            ("the service's own code", &profile.top_own),
            ("top self", &profile.top_self),
            ("top inclusive", &profile.top_inclusive),
        ];
        for (title, rows) in tables.into_iter().filter(|(_, rows)| !rows.is_empty()) {
            let _ = write!(out, "<table><tr><th>{title}</th><th>%</th></tr>");
            for row in rows {
                let _ = write!(
                    out,
                    "<tr><td><code>{}</code></td><td>{:.1}</td></tr>",
                    escape(&row.function),
                    row.percent
                );
            }
            out.push_str("</table>");
        }
        out.push_str("</div></div>");
    }
}

/// Each step with an off-CPU profile: its flamegraph (embedded, cool palette) and its top
/// wait sites with the time per request each cost.
fn offcpu(out: &mut String, run: &RunRecord, dir: &std::path::Path) {
    let steps = super::offcpu_steps(run);
    if steps.is_empty() {
        return;
    }
    out.push_str("<h2>Where requests waited (off-CPU)</h2>");
    for (step, offcpu) in steps {
        let _ = write!(
            out,
            "<div class=\"flame\"><h3>{} · {} · {:.0} ms waiting, {:.0} ms idle</h3>",
            escape(&step.name),
            escape(offcpu.source.as_str()),
            offcpu.waiting_ms,
            offcpu.idle_ms
        );
        if let Some(error) = &offcpu.error {
            let _ = write!(out, "<p>no off-CPU profile: {}</p>", escape(error));
        }
        if let Some(svg) = &offcpu.svg {
            if let Ok(bytes) = std::fs::read(dir.join(svg)) {
                let _ = write!(
                    out,
                    "<img alt=\"off-CPU flamegraph of {}\" src=\"data:image/svg+xml;base64,{}\">",
                    escape(&step.name),
                    base64(&bytes)
                );
            }
            let _ = write!(out, "<p><a href=\"{0}\">{0}</a></p>", escape(svg));
        }
        out.push_str(
            "<table><tr><th>wait site</th><th>kind</th><th>ms/request</th><th>%</th></tr>",
        );
        for site in &offcpu.top {
            let _ = write!(
                out,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{:.1}</td></tr>",
                escape(&site.function),
                site.kind.as_str(),
                site.ms_per_request
                    .map_or("-".into(), |p| format!("{p:.2}")),
                site.percent
            );
        }
        out.push_str("</table>");
        for note in &offcpu.notes {
            let _ = write!(out, "<p>{}</p>", escape(note));
        }
        out.push_str("</div>");
    }
}

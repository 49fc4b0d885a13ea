//! The requests section of report.md and report.html: for a mix of several requests, each
//! one's own figures per step (its rate, good answers, percentiles from its own histogram,
//! errors, its own SLO), and in the HTML each one's p99 against the offered load: where the
//! expensive endpoint bends while the cheap ones carry on.

use super::charts::{Chart, Series, Style, GRID};
use super::markup::escape;
use crate::model::step::{RequestResult, StepResult};
use crate::model::{Phase, RunRecord};
use crate::units::{fmt_ms, fmt_rate};
use std::fmt::Write as _;

/// The steps of a mix of several requests, recovery aside.
fn mixed(run: &RunRecord) -> impl Iterator<Item = &StepResult> {
    run.steps
        .iter()
        .filter(|s| s.by_request.len() > 1 && s.phase != Phase::Recovery)
}

/// One row's cells: step, request, its rate, good/s, p50, p99, errors, its own SLO.
fn cells(step: &StepResult, r: &RequestResult) -> [String; 8] {
    [
        step.name.clone(),
        r.name.clone(),
        fmt_rate((r.requests as f64 / step.duration_s.max(1e-9)).round()),
        format!("{:.1}", r.ok_rps),
        fmt_ms(r.latency_ms.p50),
        fmt_ms(r.latency_ms.p99),
        format!("{} ({:.1}%)", r.errors, r.error_rate * 100.0),
        match (r.own_slo, r.holds) {
            (false, _) => "-".into(),
            (true, true) => "yes".into(),
            (true, false) => format!("NO: {}", r.slo_failures.join("; ")),
        },
    ]
}

const HEADER: [&str; 8] = [
    "step", "request", "sent/s", "good/s", "p50", "p99", "errors", "own SLO",
];

/// report.md's.
pub fn markdown(out: &mut String, run: &RunRecord) {
    let rows: Vec<[String; 8]> = mixed(run)
        .flat_map(|s| s.by_request.iter().map(move |r| cells(s, r)))
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Requests\n");
    if let Some(first) = run.verdict.as_ref().and_then(|v| v.broke_first.as_ref()) {
        let _ = writeln!(out, "{}\n", super::md_cell(first));
    }
    let _ = writeln!(out, "| {} |", HEADER.join(" | "));
    let _ = writeln!(out, "|---|---|--:|--:|--:|--:|--:|---|");
    for row in rows {
        let row: Vec<String> = row.iter().map(|c| super::md_cell(c)).collect();
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    let _ = writeln!(out);
}

/// Each request's p99 against the offered rate (log scale), one line per request.
fn chart(run: &RunRecord) -> Option<String> {
    let names: Vec<&str> = mixed(run)
        .next()?
        .by_request
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    let mut steps: Vec<&StepResult> = mixed(run).filter(|s| s.offered_rps.is_some()).collect();
    steps.sort_by(|a, b| {
        a.offered_rps
            .unwrap_or(0.0)
            .total_cmp(&b.offered_rps.unwrap_or(0.0))
    });
    let x = crate::model::RateUnit::of_steps(steps.iter().copied()).offered_axis();
    let mut chart = Chart::new("p99 per request", x, "ms (log)", GRID);
    chart.log_y = true;
    chart.series = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let points = steps
                .iter()
                .filter_map(|s| {
                    let r = s.by_request.iter().find(|r| r.name == *name)?;
                    (r.requests > 0).then_some((s.offered_rps?, r.latency_ms.p99))
                })
                .collect();
            Series::new(name, points, i, Style::LinePoints)
        })
        .collect();
    chart.has_data().then(|| chart.svg())
}

/// report.html's.
pub fn html(out: &mut String, run: &RunRecord) {
    if mixed(run).next().is_none() {
        return;
    }
    out.push_str("<h2>Requests</h2>");
    if let Some(first) = run.verdict.as_ref().and_then(|v| v.broke_first.as_ref()) {
        let _ = write!(out, "<p><b>{}</b></p>", escape(first));
    }
    if let Some(svg) = chart(run) {
        let _ = write!(out, "<div class=\"charts\">{svg}</div>");
    }
    out.push_str("<table><tr>");
    for title in HEADER {
        let _ = write!(out, "<th>{title}</th>");
    }
    out.push_str("</tr>");
    for step in mixed(run) {
        for r in &step.by_request {
            out.push_str("<tr>");
            for cell in cells(step, r) {
                let _ = write!(out, "<td>{}</td>", escape(&cell));
            }
            out.push_str("</tr>");
        }
    }
    out.push_str("</table>");
}

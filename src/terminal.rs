//! What a person sees: a live progress bar per step (indicatif, on stderr, hidden when not a
//! terminal), a line per finished step, and a summary table with the SLO verdict at the end.

use crate::engine::record::Live;
use crate::engine::LiveSink;
use crate::model::step::StepResult;
use crate::plan::{fmt_rate, StepSpec};
use crate::units::fmt_ms;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
pub struct Terminal {
    multi: MultiProgress,
    /// While the bars are drawn, what knee says goes above them (`notice`).
    _routed: Option<Arc<crate::notice::Routed>>,
}

impl Terminal {
    pub fn new(show_bar: bool) -> Self {
        let target = if show_bar {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let multi = MultiProgress::with_draw_target(target);
        let routed = (!multi.is_hidden()).then(|| {
            let above = multi.clone();
            Arc::new(crate::notice::route(Arc::new(move |line: &str| {
                let _ = above.println(line);
            })))
        });
        Terminal {
            multi,
            _routed: routed,
        }
    }

    /// The bar of one step. It appears with the step's first live figures, so the bars of
    /// steps chained after it stay out of sight until they run.
    pub fn step_bar(&self, index: usize, total: usize, spec: &StepSpec) -> Arc<StepBar> {
        let length = (spec.warmup + spec.duration).as_millis() as u64;
        let bar = ProgressBar::hidden();
        bar.set_length(length);
        bar.set_style(
            ProgressStyle::with_template("{prefix:.bold} [{bar:24}] {elapsed:>4} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        let of_total = if total > 0 {
            format!("/{total}")
        } else {
            String::new()
        };
        bar.set_prefix(format!("[{}{of_total}] {}", index + 1, spec.name));
        Arc::new(StepBar {
            bar,
            multi: self.multi.clone(),
            shown: AtomicBool::new(false),
            offered: spec.offered_rps(),
            length,
        })
    }

    /// One line per finished step, kept above the bars.
    pub fn step_finished(&self, bar: &StepBar, step: &StepResult) {
        bar.bar.finish_and_clear();
        self.multi.remove(&bar.bar);
        self.line(&step_line(step));
        if step.generator.limited {
            self.line(&format!(
                "  !! GENERATOR-LIMITED: {} -- this step says nothing about the target",
                step.generator.limited_reason.as_deref().unwrap_or("")
            ));
        }
        if let Some(contention) = &step.generator.host_contention {
            self.line(&format!("  !! host contention: {contention}"));
        }
        if let Some(late) = step.generator.started_late_ms {
            self.line(&format!(
                "  !! started {late:.0} ms late (the steps before it ran long); no catch-up burst was sent"
            ));
        }
        if let Some(profiled) = crate::report::profiled_line(step) {
            self.line(&format!("  {profiled}"));
        }
    }

    /// A line on stderr that does not tear the bars.
    pub fn line(&self, text: &str) {
        crate::notice::say(text);
    }
}

pub struct StepBar {
    bar: ProgressBar,
    multi: MultiProgress,
    shown: AtomicBool,
    offered: Option<f64>,
    length: u64,
}

impl LiveSink for StepBar {
    fn update(&self, live: Live) {
        if !self.shown.swap(true, Ordering::Relaxed) {
            let bar = self.multi.add(self.bar.clone());
            bar.reset_elapsed();
            bar.enable_steady_tick(Duration::from_millis(200));
        }
        let elapsed = self.bar.elapsed().as_millis() as u64;
        self.bar.set_position(elapsed.min(self.length));
        let offered = self
            .offered
            .map_or(String::new(), |o| format!("offered {}/s ", fmt_rate(o)));
        self.bar.set_message(format!(
            "{offered}achieved {:.0}/s  p99 {}  errors {}",
            live.achieved_rps,
            fmt_ms(live.p99_ms),
            live.errors
        ));
    }
}

fn step_line(step: &StepResult) -> String {
    let unit = if step.flows.is_some() {
        " flows/s"
    } else {
        "/s"
    };
    let load = match (step.offered_rps, step.concurrency) {
        (Some(rps), _) => format!("offered {}{unit}", fmt_rate(rps)),
        (None, Some(c)) => format!("concurrency {c}"),
        _ => String::new(),
    };
    let verdict = if step.holds {
        "holds".to_string()
    } else {
        format!("FAILS: {}", step.slo_failures.join("; "))
    };
    let connects = step.connect_ms.as_ref().map_or(String::new(), |c| {
        format!(
            ", {} connects (p99 {}{})",
            c.count,
            fmt_ms(c.p99),
            step.tls_ms
                .as_ref()
                .map_or(String::new(), |t| format!(", TLS p99 {}", fmt_ms(t.p99)))
        )
    });
    let flows = step.flows.as_ref().map_or(String::new(), |f| {
        format!(
            ", flows {} ({} completed, {} failed, {} cut at the end)",
            f.started, f.completed, f.failed, f.cut
        )
    });
    format!(
        "{:<14} {load}, achieved {:.1}{unit}, p50 {} p99 {} max {}, errors {} ({:.2}%){flows}{connects}{}  {verdict}",
        step.name,
        step.achieved_rps,
        fmt_ms(step.latency_ms.p50),
        fmt_ms(step.latency_ms.p99),
        fmt_ms(step.latency_ms.max),
        step.errors,
        step.error_rate * 100.0,
        if step.partial { " [partial]" } else { "" },
    )
}

/// The summary table printed at the end of a run.
pub fn summary_table(steps: &[StepResult]) -> String {
    let header = [
        "step",
        "offered/s",
        "conc",
        "achieved/s",
        "p50",
        "p90",
        "p99",
        "p99.9",
        "max",
        "errors",
        "gen lag p99",
        "holds",
    ];
    let mut rows: Vec<Vec<String>> = Vec::new();
    for s in steps {
        rows.push(step_row(s));
        // A mix of several requests: each one's own figures beneath its step.
        for r in &s.by_request {
            let mut row = vec![
                format!("  {}", r.name),
                fmt_rate((r.requests as f64 / s.duration_s.max(1e-9)).round()),
                "-".into(),
                format!("{:.1}", r.ok_rps),
            ];
            row.extend(latency_cells(&r.latency_ms));
            row.extend([
                format!("{} ({:.1}%)", r.errors, r.error_rate * 100.0),
                "-".into(),
                match (r.own_slo, r.holds) {
                    (false, _) => "-".into(),
                    (true, true) => "yes".into(),
                    (true, false) => "NO".into(),
                },
            ]);
            rows.push(row);
        }
    }
    table(&header, &rows)
}

/// p50, p90, p99, p99.9 and max, as the summary table shows them.
fn latency_cells(p: &crate::model::figures::Percentiles) -> [String; 5] {
    [p.p50, p.p90, p.p99, p.p999, p.max].map(fmt_ms)
}

/// A step's row of the summary table.
fn step_row(s: &StepResult) -> Vec<String> {
    let mut row = vec![
        s.name.clone(),
        s.offered_rps.map_or("-".into(), fmt_rate),
        s.concurrency.map_or("-".into(), |c| c.to_string()),
        format!("{:.1}", s.achieved_rps),
    ];
    row.extend(latency_cells(&s.latency_ms));
    row.extend([
        format!("{} ({:.1}%)", s.errors, s.error_rate * 100.0),
        format!(
            "{}{}",
            fmt_ms(s.generator.send_lag_p99_ms),
            if s.generator.limited { " LIMITED" } else { "" }
        ),
        match (s.holds, s.partial) {
            (_, true) => "partial".into(),
            (true, _) => "yes".into(),
            (false, _) => "NO".into(),
        },
    ]);
    row
}

/// A plain aligned text table: first column left, the rest right.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, w))| {
                if i == 0 {
                    format!("{cell:<w$}")
                } else {
                    format!("{cell:>w$}")
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// The verdict block printed at the end of a hunt or a stress test.
pub fn verdict_block(a: &crate::model::KneeAnalysis) -> String {
    let unit = a.rate_unit.per_second();
    let rate = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{r:.0} {unit}"));
    let mut out = format!(
        "\nknee verdict (SLO {}{})\n",
        a.slo,
        if a.slo_default {
            ", chosen by knee"
        } else {
            ""
        }
    );
    let rows = vec![
        vec![
            "capacity".into(),
            rate(a.capacity_rps),
            format!(
                "highest offered rate that held ({})",
                a.ending.as_str().replace('_', " ")
            ),
        ],
        vec![
            "latency knee".into(),
            rate(a.latency_knee_rps),
            "where p99 vs offered rate bends (Kneedle)".into(),
        ],
        vec![
            "saturation".into(),
            rate(a.saturation_rps),
            "plateau of good responses per second".into(),
        ],
        vec![
            "past the knee".into(),
            a.failure_mode.map_or("-".into(), |m| m.as_str().into()),
            a.failure_mode
                .map_or("no overload step ran".into(), |m| m.describe().into()),
        ],
        vec![
            "recovery".into(),
            match (a.recovery_measured, a.recovery_s) {
                (false, _) => "-".into(),
                (true, Some(s)) => format!("{s:.2} s"),
                (true, None) => "none".into(),
            },
            if a.recovery_measured && a.recovery_s.is_none() {
                "p99 did not get back within the SLO during the recovery step".into()
            } else {
                "at half capacity, until p99 was back within the SLO".into()
            },
        ],
    ];
    for row in &rows {
        out.push_str(&format!("  {:<14} {:>20}  {}\n", row[0], row[1], row[2]));
    }
    if !a.holds.is_empty() {
        out.push_str("hold steps:\n");
        let rows: Vec<Vec<String>> = a
            .holds
            .iter()
            .map(|h| {
                vec![
                    format!("{:.0}%", h.fraction * 100.0),
                    format!("{:.0}", h.offered_rps),
                    format!("{:.0}", h.ok_rps),
                    fmt_ms(h.p99_ms),
                    format!("{:.2}%", h.error_rate * 100.0),
                    if h.holds { "yes".into() } else { "NO".into() },
                ]
            })
            .collect();
        for line in table(
            &["capacity", "offered/s", "good/s", "p99", "errors", "holds"],
            &rows,
        )
        .lines()
        {
            out.push_str(&format!("  {line}\n"));
        }
    }
    for note in &a.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    out
}

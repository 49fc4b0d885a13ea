//! Reports rendered from a run's `RunRecord`, one exporter per format, each returning bytes,
//! so `knee report RUN` can re-render any run folder after an upgrade.

pub mod charts;
pub mod ci;
pub mod curves;
pub mod html;
pub mod junit;
pub mod markdown;
pub mod markup;
mod replicas;
mod requests;
pub mod text_chart;
pub mod timeline;

use crate::error::Error;
use crate::model::observed::OffCpu;
use crate::model::observed::StepProfile;
use crate::model::RunRecord;
use crate::plan::ReportFormat;
use anyhow::Context;
use std::path::{Path, PathBuf};

/// One output format.
pub trait Exporter {
    /// The file name in the run folder ("report.md").
    fn file_name(&self) -> &'static str;
    /// `dir` is the run folder (flamegraphs are read from it).
    fn render(&self, run: &RunRecord, dir: &Path) -> Vec<u8>;
}

/// "profiled after the counted part (2.0 s, not counted): good throughput 385/s (21 % less
/// than counted), p99 1.06 s (1.6×)": what profiling cost the target, beside the figures
/// it stayed out of.
pub fn profiled_line(step: &crate::model::step::StepResult) -> Option<String> {
    let tail = step.profiled.as_ref()?;
    let change = tail.throughput_change(step.ok_rps)?;
    let ratio = tail.p99_ratio(step.latency_ms.p99)?;
    let change = if change <= -0.005 {
        format!("{:.0} % less than counted", -change * 100.0)
    } else if change >= 0.005 {
        format!("{:.0} % more than counted", change * 100.0)
    } else {
        "as counted".to_string()
    };
    Some(format!(
        "profiled after the counted part ({:.1} s, not counted): good throughput {:.0}/s ({change}), p99 {} ({ratio:.1}x)",
        tail.seconds,
        tail.ok_rps,
        crate::units::fmt_ms(tail.latency_ms.p99)
    ))
}

/// "hold-095: profiled after …" for every step with a profiled tail.
pub fn profiled_lines(run: &RunRecord) -> Vec<String> {
    run.steps
        .iter()
        .filter_map(|s| profiled_line(s).map(|line| format!("{}: {line}", s.name)))
        .collect()
}

/// The steps that carry a profile, with it.
pub fn profiled_steps(run: &RunRecord) -> Vec<(&crate::model::step::StepResult, &StepProfile)> {
    run.steps
        .iter()
        .filter_map(|s| StepProfile::of(s).map(|p| (s, p)))
        .collect()
}

/// "at hold-105: postgres (pid 1538, 37 processes) 1.37 cores, downstream, 31 connections
/// from the target; python3 (pid 1555) 0.03 cores, the target" — who was busy at the knee.
pub fn busy_at_knee(run: &RunRecord) -> Option<String> {
    use crate::model::observed::Processes;
    let knee = run.verdict.as_ref()?.knee_step.as_ref()?;
    let step = run.steps.iter().find(|s| &s.name == knee)?;
    let processes = Processes::of(step)?;
    let groups: Vec<String> = processes
        .top
        .iter()
        .filter(|b| b.cores >= 0.01)
        .take(4)
        .map(|b| {
            let many = if b.processes > 1 {
                format!(", {} processes", b.processes)
            } else {
                String::new()
            };
            let connections = processes
                .downstreams
                .iter()
                .filter(|d| d.name.as_deref() == Some(b.name.as_str()))
                .map(|d| d.connections)
                .sum::<usize>();
            let role = match b.role {
                Some(crate::model::observed::Role::Downstream) => {
                    format!(", downstream, {connections} connections from the target")
                }
                Some(role) => format!(", the {role}"),
                None => String::new(),
            };
            format!(
                "{} (pid {}{many}) {:.2} cores{role}",
                b.name, b.pid, b.cores
            )
        })
        .collect();
    (!groups.is_empty()).then(|| format!("busy at {knee}: {}", groups.join("; ")))
}

/// Steps with an off-CPU profile, in run order.
pub fn offcpu_steps(run: &RunRecord) -> Vec<(&crate::model::step::StepResult, &OffCpu)> {
    run.steps
        .iter()
        .filter_map(|s| OffCpu::of(s).map(|o| (s, o)))
        .collect()
}

/// "`ledger_append` lock 94% (214 ms/req)" for a step's top wait sites.
pub fn wait_sites(offcpu: &OffCpu, n: usize) -> Vec<String> {
    offcpu
        .top
        .iter()
        .take(n)
        .map(|s| {
            let per = s
                .ms_per_request
                .map_or(String::new(), |p| format!(", {p:.2} ms/request"));
            format!("{} {} {:.0}%{per}", s.function, s.kind.as_str(), s.percent)
        })
        .collect()
}

/// One row per step that opened connections: step, connects, SYN-retransmitted, connect
/// p50 / p99 / max, TLS p99 (the text of each cell; escaping is the caller's).
pub fn connect_rows(run: &RunRecord) -> Vec<[String; 7]> {
    use crate::units::fmt_ms;
    run.steps
        .iter()
        .filter_map(|s| {
            let c = s.connect_ms.as_ref()?;
            Some([
                s.name.clone(),
                c.count.to_string(),
                format!(
                    "{} ({:.1}%)",
                    c.syn_retransmitted,
                    c.retransmitted_share() * 100.0
                ),
                fmt_ms(c.p50),
                fmt_ms(c.p99),
                fmt_ms(c.max),
                s.tls_ms.as_ref().map_or("-".into(), |t| fmt_ms(t.p99)),
            ])
        })
        .collect()
}

/// The header of `connect_rows`.
pub const CONNECT_HEADER: [&str; 7] = [
    "step",
    "connects",
    "waited for a SYN retransmit",
    "connect p50",
    "connect p99",
    "connect max",
    "TLS p99",
];

/// Escapes text for a Markdown table cell: pipes and line breaks would break the table.
pub fn md_cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// Writes every report of `run` into `dir`; returns their paths.
pub fn write_all(run: &RunRecord, dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let exporters: [&dyn Exporter; 2] = [&markdown::Markdown, &html::Html];
    exporters
        .iter()
        .map(|e| {
            let path = dir.join(e.file_name());
            std::fs::write(&path, e.render(run, dir))
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(path)
        })
        .collect()
}

/// `knee report RUN`: re-renders from run.json.
pub fn rerender(run: &Path, format: ReportFormat, junit: Option<&Path>) -> Result<(), Error> {
    let (dir, record) = crate::recover::load(run)?;
    if let Some(path) = junit {
        std::fs::write(path, junit::Junit.render(&record, &dir))
            .with_context(|| format!("--junit {}: cannot write", path.display()))?;
        crate::notice::say(format!("junit: {}", path.display()));
    }
    match format {
        ReportFormat::Files => {
            for path in write_all(&record, &dir)? {
                println!("{}", path.display());
            }
        }
        ReportFormat::Json => {
            let text = serde_json::to_string_pretty(&record).context("cannot encode run.json")?;
            println!("{text}");
        }
    }
    Ok(())
}

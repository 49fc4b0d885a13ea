//! `report.md`: for a ticket. The verdict first, then a compact step table, the files next to
//! it, and the exact command to reproduce. GitHub-flavoured Markdown that reads well pasted
//! as it is.

use super::{md_cell, Exporter};
use crate::model::RunRecord;
use crate::units::fmt_ms;
use std::fmt::Write as _;

pub struct Markdown;

impl Exporter for Markdown {
    fn file_name(&self) -> &'static str {
        "report.md"
    }

    fn render(&self, run: &RunRecord, _dir: &std::path::Path) -> Vec<u8> {
        let mut out = String::new();
        let _ = writeln!(out, "# knee {}: {}\n", run.kind, md_cell(&run.name));
        let _ = writeln!(
            out,
            "Target `{}` · started {} · knee {} · SLO {}\n",
            md_cell(&run.target),
            run.started_at,
            run.knee_version,
            md_cell(&run.slo.describe())
        );
        verdict(&mut out, run);
        steps(&mut out, run);
        super::requests::markdown(&mut out, run);
        connects(&mut out, run);
        flamegraphs(&mut out, run);
        offcpu(&mut out, run);
        super::replicas::section(&mut out, run);
        let _ = writeln!(out, "## Files\n");
        let _ = writeln!(
            out,
            "- [report.html](report.html): the charts and flamegraphs"
        );
        let _ = writeln!(out, "- [run.json](run.json): everything, machine-readable");
        let _ = writeln!(out, "- [steps.jsonl](steps.jsonl): one line per step");
        let _ = writeln!(
            out,
            "- [samples.jsonl](samples.jsonl): the samplers' readings"
        );
        let _ = writeln!(
            out,
            "- `hist/STEP.hgrm`: latency distributions (HdrHistogram)\n"
        );
        let _ = writeln!(out, "## Reproduce\n\n```sh\n{}\n```", run.command.join(" "));
        out.into_bytes()
    }
}

fn verdict(out: &mut String, run: &RunRecord) {
    let _ = writeln!(out, "## Verdict\n");
    if run.interrupted {
        let _ = writeln!(out, "> **Interrupted**: the last step is partial.\n");
    }
    if let Some(k) = run.hunt.as_ref().or(run.stress.as_ref()) {
        let unit = k.rate_unit.per_second();
        let rate = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{r:.0} {unit}"));
        let _ = writeln!(out, "| | |\n|---|---|");
        let _ = writeln!(
            out,
            "| capacity | **{}** ({}) |",
            rate(k.capacity_rps),
            k.ending.as_str().replace('_', " ")
        );
        let _ = writeln!(out, "| latency knee | {} |", rate(k.latency_knee_rps));
        let _ = writeln!(out, "| saturation | {} |", rate(k.saturation_rps));
        let _ = writeln!(
            out,
            "| past the knee | {} |",
            k.failure_mode
                .map_or("-".to_string(), |m| m.describe().to_string())
        );
        let recovery = k.recovery_text();
        let _ = writeln!(out, "| recovery | {recovery} |");
        if let Some(v) = &run.verdict {
            let _ = writeln!(
                out,
                "| bottleneck | **{}** (confidence {}) |",
                md_cell(&v.bottleneck),
                v.confidence
            );
        }
        let _ = writeln!(out);
    } else if let Some(v) = &run.verdict {
        let _ = writeln!(
            out,
            "**Bottleneck: {}** (confidence {})\n",
            md_cell(&v.bottleneck),
            v.confidence
        );
    }
    if let Some(v) = &run.verdict {
        for line in v.broke_first.iter().chain(&v.evidence) {
            let _ = writeln!(out, "- {}", md_cell(line));
        }
        if let Some(busy) = super::busy_at_knee(run) {
            let _ = writeln!(out, "- {}", md_cell(&busy));
        }
        let _ = writeln!(out, "- to confirm: {}\n", md_cell(&v.confirm));
    }
    if let Some(soak) = &run.soak {
        for line in &soak.verdicts {
            let _ = writeln!(out, "- soak: {}", md_cell(line));
        }
        for line in &soak.notes {
            let _ = writeln!(out, "- soak note: {}", md_cell(line));
        }
        let _ = writeln!(out);
    }
    if let Some(fit) = &run.usl {
        let _ = writeln!(out, "- {}\n", md_cell(&fit.describe()));
    }
    let held = run.steps.iter().filter(|s| s.holds).count();
    let _ = writeln!(out, "{held} of {} steps held their SLO.\n", run.steps.len());
}

fn steps(out: &mut String, run: &RunRecord) {
    let _ = writeln!(out, "## Steps\n");
    let _ = writeln!(
        out,
        "| step | load | achieved/s | p50 | p99 | p99.9 | errors | holds |"
    );
    let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|:-:|");
    for s in &run.steps {
        let load = s.load_label();
        let errors = if s.errors == 0 {
            "0".to_string()
        } else {
            let top = s
                .error_classes
                .iter()
                .max_by_key(|(_, n)| **n)
                .map_or(String::new(), |(c, _)| format!(" {c}"));
            format!("{} ({:.1}%{top})", s.errors, s.error_rate * 100.0)
        };
        let holds = match s.holds_word() {
            "no" => "**no**",
            word => word,
        };
        let _ = writeln!(
            out,
            "| {} | {load} | {:.0} | {} | {} | {} | {errors} | {holds} |",
            md_cell(&s.name),
            s.achieved_rps,
            fmt_ms(s.latency_ms.p50),
            fmt_ms(s.latency_ms.p99),
            fmt_ms(s.latency_ms.p999),
        );
    }
    let _ = writeln!(out);
    let profiled = super::profiled_lines(run);
    if !profiled.is_empty() {
        let _ = writeln!(out, "What profiling cost, kept out of the figures above:\n");
        for line in profiled {
            let _ = writeln!(out, "- {}", md_cell(&line));
        }
        let _ = writeln!(out);
    }
}

/// The connections each step opened and how long they took (only when some did).
fn connects(out: &mut String, run: &RunRecord) {
    let rows = super::connect_rows(run);
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "## Connections
"
    );
    let _ = writeln!(out, "| {} |", super::CONNECT_HEADER.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(super::CONNECT_HEADER.len()));
    for row in rows {
        let cells: Vec<String> = row.iter().map(|c| md_cell(c)).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    let _ = writeln!(out);
}

/// Per step with an off-CPU profile: its flamegraph, waiting per request, the top wait sites.
fn offcpu(out: &mut String, run: &RunRecord) {
    let steps = super::offcpu_steps(run);
    if steps.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "## Where requests waited (off-CPU)
"
    );
    let _ = writeln!(
        out,
        "| step | off-CPU flamegraph | waiting ms/request | idle ms | top wait sites |"
    );
    let _ = writeln!(out, "|---|---|--:|--:|---|");
    for (step, offcpu) in steps {
        let link = match (&offcpu.svg, &offcpu.error) {
            (Some(svg), _) => format!("[{svg}]({svg})"),
            (None, Some(error)) => format!("none: {}", md_cell(error)),
            (None, None) => "-".into(),
        };
        let per = offcpu
            .ms_per_request
            .map_or("-".to_string(), |p| format!("{p:.2}"));
        let sites: Vec<String> = super::wait_sites(offcpu, 3)
            .iter()
            .map(|s| md_cell(s))
            .collect();
        let _ = writeln!(
            out,
            "| {} | {link} | {per} | {:.0} | {} |",
            md_cell(&step.name),
            offcpu.idle_ms,
            sites.join("; ")
        );
    }
    let _ = writeln!(out);
}

/// Per profiled step: the flamegraph link and the top functions by self time.
fn flamegraphs(out: &mut String, run: &RunRecord) {
    let profiled = super::profiled_steps(run);
    if profiled.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Where the CPU went\n");
    let _ = writeln!(
        out,
        "| step | flamegraph | samples | top functions (self time) |"
    );
    let _ = writeln!(out, "|---|---|--:|---|");
    for (step, profile) in profiled {
        let link = match (&profile.svg, &profile.error) {
            (Some(svg), _) => format!("[{svg}]({svg})"),
            (None, Some(error)) => format!("none: {}", md_cell(error)),
            (None, None) => "-".into(),
        };
        let flag = if profile.undersampled {
            " (undersampled)"
        } else {
            ""
        };
        let top: Vec<String> = profile
            .top_self
            .iter()
            .take(3)
            .map(|f| format!("`{}` {:.0}%", md_cell(&f.function), f.percent))
            .collect();
        // A runtime's profiler tells the service's own code apart: lead with it.
        let own: Vec<String> = profile
            .top_own
            .iter()
            .take(3)
            .map(|f| format!("`{}` {:.0}%", md_cell(&f.function), f.percent))
            .collect();
        let top = if own.is_empty() {
            top.join(", ")
        } else {
            format!(
                "own code ({}): {}; self: {}",
                profile.source,
                own.join(", "),
                top.join(", ")
            )
        };
        let _ = writeln!(
            out,
            "| {} | {link} | {}{flag} | {top} |",
            md_cell(&step.name),
            profile.samples,
        );
    }
    let _ = writeln!(out);
}

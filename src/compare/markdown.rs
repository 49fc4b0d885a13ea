//! compare.md: the shift in numbers and the verdict before and after, for a ticket.

use super::Comparison;
use crate::model::step::StepResult;
use crate::report::md_cell;
use crate::units::fmt_ms;
use std::fmt::Write as _;

pub fn render(c: &Comparison) -> Vec<u8> {
    let mut out = String::new();
    let (a, b) = (md_cell(&c.before.label), md_cell(&c.after.label));
    let _ = writeln!(out, "# knee compare: {a} → {b}\n");
    let _ = writeln!(out, "| | before ({a}) | after ({b}) | change |");
    let _ = writeln!(out, "|---|--:|--:|--:|");
    for (name, shift) in [
        ("capacity", &c.capacity),
        ("latency knee", &c.latency_knee),
        ("saturation", &c.saturation),
    ] {
        let value = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0} req/s"));
        let change = match (shift.delta(), shift.percent()) {
            (Some(d), Some(p)) => format!("{d:+.0} ({p:+.1} %)"),
            _ => "-".into(),
        };
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {change} |",
            value(shift.before),
            value(shift.after)
        );
    }
    let _ = writeln!(out, "\n**Was:** {}  ", md_cell(&c.verdict_before));
    let _ = writeln!(out, "**Now:** {}\n", md_cell(&c.verdict_after));
    if let Some(scale) = &c.scale {
        let _ = writeln!(out, "**Replicas:** {}\n", md_cell(scale));
    }
    if !c.holds.is_empty() {
        let _ = writeln!(
            out,
            "## Hold steps (the same fraction of each run's own capacity)\n"
        );
        let _ = writeln!(
            out,
            "| step | before: offered | good/s | p99 | after: offered | good/s | p99 | differential flamegraph | off-CPU |"
        );
        let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|---|---|");
        for pair in &c.holds {
            let link = |svg: &Option<String>| {
                svg.as_ref()
                    .map_or("-".to_string(), |svg| format!("[{svg}]({svg})"))
            };
            let (diff, offcpu) = (link(&pair.diff_svg), link(&pair.diff_offcpu_svg));
            let _ = writeln!(
                out,
                "| {} | {} | {} | {diff} | {offcpu} |",
                md_cell(&pair.name),
                cells(pair.before),
                cells(pair.after)
            );
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "Charts of both runs overlaid: [compare.html](compare.html)."
    );
    out.into_bytes()
}

fn cells(s: &StepResult) -> String {
    let offered = s.offered_rps.map_or("-".to_string(), |r| format!("{r:.0}"));
    format!("{offered} | {:.0} | {}", s.ok_rps, fmt_ms(s.latency_ms.p99))
}

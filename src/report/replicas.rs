//! report.md's replicas section: for a target of several processes, each profiled step's
//! replicas side by side: their share of the work, their own CPU and off-CPU flamegraphs
//! (`flame/STEP.rN.*`), and where each waited. The service's merged views are in the
//! sections above.

use super::{md_cell, wait_sites};
use crate::model::RunRecord;
use std::fmt::Write as _;

pub fn section(out: &mut String, run: &RunRecord) {
    let rows: Vec<String> = run
        .steps
        .iter()
        .filter_map(|step| Some((step, step.observed.as_ref()?.replicas.as_ref()?)))
        .flat_map(|(step, replicas)| replicas.iter().map(move |r| (step, r)))
        // The profiled steps: the others have only their share, in run.json.
        .filter(|(_, r)| r.observed.profile.is_some() || r.observed.offcpu.is_some())
        .map(|(step, replica)| {
            let share = replica
                .share
                .zip(replica.share_of)
                .map_or("-".to_string(), |(s, of)| {
                    format!("{:.0} % ({})", s * 100.0, of.words())
                });
            let link =
                |svg: Option<&String>| svg.map_or("-".to_string(), |svg| format!("[{svg}]({svg})"));
            let own = &replica.observed;
            let cpu = link(own.profile.as_ref().and_then(|p| p.svg.as_ref()));
            let waits = link(own.offcpu.as_ref().and_then(|o| o.svg.as_ref()));
            let sites = own
                .offcpu
                .as_ref()
                .map_or_else(Vec::new, |o| wait_sites(o, 1))
                .join("; ");
            format!(
                "| {} | {} (pid {}, {}) | {share} | {cpu} | {waits} | {} |",
                md_cell(&step.name),
                replica.index,
                replica.pid,
                md_cell(&replica.name),
                md_cell(&sites)
            )
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Replicas\n");
    let _ = writeln!(
        out,
        "| step | replica | share of the work | flamegraph | off-CPU | top wait site |"
    );
    let _ = writeln!(out, "|---|---|--:|---|---|---|");
    for row in rows {
        let _ = writeln!(out, "{row}");
    }
    let _ = writeln!(out);
}

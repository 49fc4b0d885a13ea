//! The replicas section of report.md and report.html: for a target of several processes, each
//! profiled step's replicas side by side: their share of the work, their own CPU and
//! off-CPU flamegraphs (`flame/STEP.rN.*`; embedded in the HTML), and where each waited.
//! The service's merged views are in the sections above.

use super::markup::{base64, escape};
use super::{md_cell, wait_sites};
use crate::model::observed::ReplicaObserved;
use crate::model::step::StepResult;
use crate::model::RunRecord;
use std::fmt::Write as _;

/// Each profiled step's replicas (the others have only their share, in run.json).
fn profiled(run: &RunRecord) -> impl Iterator<Item = (&StepResult, &ReplicaObserved)> {
    run.steps
        .iter()
        .filter_map(|step| Some((step, step.observed.as_ref()?.replicas.as_ref()?)))
        .flat_map(|(step, replicas)| replicas.iter().map(move |r| (step, r)))
        .filter(|(_, r)| r.observed.profile.is_some() || r.observed.offcpu.is_some())
}

/// "41 % (write calls)", or "-" when the share is unknown.
fn share(replica: &ReplicaObserved) -> String {
    replica
        .share
        .zip(replica.share_of)
        .map_or("-".to_string(), |(s, of)| {
            format!("{:.0} % ({})", s * 100.0, of.words())
        })
}

/// report.html's: each profiled step, its replicas' flamegraphs side by side.
pub fn html_section(out: &mut String, run: &RunRecord, dir: &std::path::Path) {
    let mut steps: Vec<(&StepResult, Vec<&ReplicaObserved>)> = Vec::new();
    for (step, replica) in profiled(run) {
        match steps.last_mut() {
            Some((last, replicas)) if last.name == step.name => replicas.push(replica),
            _ => steps.push((step, vec![replica])),
        }
    }
    if steps.is_empty() {
        return;
    }
    out.push_str("<h2>Replicas</h2>");
    for (step, replicas) in steps {
        let _ = write!(out, "<h3>{}</h3><div class=\"charts\">", escape(&step.name));
        for replica in replicas {
            let own = &replica.observed;
            let _ = write!(
                out,
                "<div class=\"flame\"><h4>replica {} (pid {}, {}) · {} of the work</h4>",
                replica.index,
                replica.pid,
                escape(&replica.name),
                escape(&share(replica))
            );
            let views = [
                (
                    "flamegraph",
                    own.profile.as_ref().and_then(|p| p.svg.as_ref()),
                ),
                ("off-CPU", own.offcpu.as_ref().and_then(|o| o.svg.as_ref())),
            ];
            for (what, svg) in views {
                let Some(svg) = svg else { continue };
                if let Ok(bytes) = std::fs::read(dir.join(svg)) {
                    let _ = write!(
                        out,
                        "<img alt=\"{what} of replica {}\" src=\"data:image/svg+xml;base64,{}\">",
                        replica.index,
                        base64(&bytes)
                    );
                }
                let _ = write!(out, "<p>{what}: <a href=\"{0}\">{0}</a></p>", escape(svg));
            }
            let sites = own
                .offcpu
                .as_ref()
                .map_or_else(Vec::new, |o| wait_sites(o, 1))
                .join("; ");
            if !sites.is_empty() {
                let _ = write!(out, "<p>top wait site: {}</p>", escape(&sites));
            }
            out.push_str("</div>");
        }
        out.push_str("</div>");
    }
}

/// report.md's: a row per profiled step and replica.
pub fn section(out: &mut String, run: &RunRecord) {
    let rows: Vec<String> = profiled(run)
        .map(|(step, replica)| {
            let share = share(replica);
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

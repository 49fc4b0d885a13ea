//! The service's profiles from its replicas' (a target of several processes, see
//! `observe::replicas`): each replica is profiled on its own, and the service's CPU
//! flamegraph and off-CPU view are their sum. Stacks are summed, never percentages; the
//! waits per request of the service are all replicas' waits over all requests, and each
//! replica's are its waits over its share of the requests.

use super::{top_own, write_step_file, TOP_FUNCTIONS as TOP};
use crate::model::observed::{OffCpu, StepProfile, WaitKind, WaitSite};
use crate::stacks::{folded::Folded, read_folded, render};
use std::collections::BTreeMap;
use std::path::Path;

/// One CPU profile of the service from its replicas' (None when no replica has one): stacks
/// summed into `flame/STEP.{folded,svg}`, samples and CPU added, tops recomputed.
pub fn merge_profiles(
    dir: &Path,
    step: &str,
    title: &str,
    parts: &[&StepProfile],
) -> Option<StepProfile> {
    let first = parts.iter().find(|p| p.error.is_none())?;
    let mut folded = Folded::default();
    let mut own: BTreeMap<String, u64> = BTreeMap::new();
    for part in parts.iter().filter(|p| p.error.is_none()) {
        if let Some(theirs) = crate::stacks::load_folded(dir, part) {
            folded.add(theirs);
        }
        for row in &part.top_own {
            *own.entry(row.function.clone()).or_default() += row.samples;
        }
    }
    let total = folded.total();
    let cpu: Option<f64> = parts.iter().map(|p| p.target_cpu_seconds).sum();
    let mut merged = StepProfile {
        samples: total,
        target_cpu_seconds: cpu,
        samples_per_cpu_second: cpu
            .filter(|c| *c > 0.0)
            .map(|c| (total as f64 / c * 10.0).round() / 10.0),
        undersampled: parts.iter().any(|p| p.undersampled),
        svg: None,
        folded: None,
        pprof: None,
        top_self: folded.top_self(TOP),
        top_inclusive: folded.top_inclusive(TOP),
        top_own: top_own(&own, total),
        error: None,
        observer: observers_of(parts.iter().map(|p| p.observer.as_deref())),
        ..(*first).clone()
    };
    merged.folded = write_step_file(dir, step, "folded", folded.to_text().as_bytes());
    let subtitle = format!("{} replicas, {total} samples summed", parts.len());
    if let Ok(svg) = render::flamegraph_svg(&folded, title, &subtitle) {
        merged.svg = write_step_file(dir, step, "svg", &svg);
    }
    Some(merged)
}

/// One off-CPU view of the service from its replicas' (None when no replica has one): times
/// and sites summed, per request over all `requests`.
pub fn merge_offcpu(
    dir: &Path,
    step: &str,
    title: &str,
    parts: &[&OffCpu],
    requests: u64,
) -> Option<OffCpu> {
    let first = parts.iter().find(|p| p.error.is_none())?;
    let ok: Vec<&&OffCpu> = parts.iter().filter(|p| p.error.is_none()).collect();
    let sum = |f: fn(&OffCpu) -> f64| ok.iter().map(|p| f(p)).sum::<f64>();
    let waiting_ms = sum(|p| p.waiting_ms);
    let mut by_kind: BTreeMap<String, f64> = BTreeMap::new();
    let mut sites: BTreeMap<(String, WaitKind), f64> = BTreeMap::new();
    let mut folded = Folded::default();
    for part in &ok {
        for (kind, ms) in &part.by_kind {
            *by_kind.entry(kind.clone()).or_default() += ms;
        }
        for site in &part.top {
            *sites.entry((site.function.clone(), site.kind)).or_default() += site.ms;
        }
        if let Some(theirs) = part.folded.as_ref().and_then(|f| read_folded(dir, f)) {
            folded.add(theirs);
        }
    }
    let per_request = |ms: f64| (requests > 0).then(|| ms / requests as f64);
    let mut top: Vec<WaitSite> = sites
        .into_iter()
        .map(|((function, kind), ms)| WaitSite {
            function,
            kind,
            ms,
            percent: ms * 100.0 / waiting_ms.max(1e-9),
            ms_per_request: per_request(ms),
        })
        .collect();
    top.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    top.truncate(TOP);
    let mut merged = OffCpu {
        threads: ok.iter().map(|p| p.threads).sum(),
        switches: ok.iter().map(|p| p.switches).sum(),
        total_ms: sum(|p| p.total_ms),
        waiting_ms,
        idle_ms: sum(|p| p.idle_ms),
        preempted_ms: sum(|p| p.preempted_ms),
        requests,
        ms_per_request: per_request(waiting_ms),
        by_kind,
        top,
        folded: None,
        svg: None,
        error: None,
        observer: observers_of(ok.iter().map(|p| p.observer.as_deref())),
        ..(*first).clone()
    };
    if !folded.stacks.is_empty() {
        let text = folded.to_text();
        merged.folded = write_step_file(dir, step, "offcpu.folded", text.as_bytes());
        let subtitle = format!("{} replicas summed", parts.len());
        if let Ok(svg) = render::offcpu_svg(&folded, title, &subtitle) {
            merged.svg = write_step_file(dir, step, "offcpu.svg", &svg);
        }
    }
    Some(merged)
}

/// The observers that took the replicas' views, once each ("a, b"); none when none did.
fn observers_of<'a>(each: impl Iterator<Item = Option<&'a str>>) -> Option<String> {
    let mut names: Vec<&str> = each.flatten().collect();
    names.dedup();
    (!names.is_empty()).then(|| names.join(", "))
}

/// A replica's waits per request against its own share of the requests recorded (`share`,
/// from its share of the service's CPU).
pub fn per_replica_requests(offcpu: &mut OffCpu, share: f64) {
    let own = ((offcpu.requests as f64 * share).round() as u64).max(1);
    offcpu.requests = own;
    offcpu.ms_per_request = Some(offcpu.waiting_ms / own as f64);
    for site in &mut offcpu.top {
        site.ms_per_request = Some(site.ms / own as f64);
    }
}

//! Signals from where the target waits and which of its threads burn CPU: the off-CPU
//! profile's wait sites (`flame::offcpu`), and CPU per thread (`observe::threads`).
//!
//! A wait site is the bottleneck when its time *per request* grows at the knee against the
//! step below it, and it holds a real share of the waiting: time that only shrinks per
//! request as load rises (threads waiting for their clients' next request) is the service
//! being idle, whatever the stack says. A growing queue gauge corroborates a site; it never
//! names one.

use super::gauge::growing_queue_gauge;
use super::table::*;
use super::{Context, Finding};
use crate::model::observed::{OffCpu, OffCpuSource, ProfileSource, Threads, WaitKind, WaitSite};
use crate::model::step::StepResult;
use crate::model::verdict::Kind;
use crate::model::Phase;

/// The wait site whose time per request grew most at the knee names the kind and the site.
pub fn wait_site(ctx: &Context) -> Option<Finding> {
    let (site, was, now) = grown_site(ctx)?;
    let (kind, words, confirm) = match site.kind {
        WaitKind::Lock => (
            Kind::Lock,
            format!("serialized on a lock in {}", site.function),
            "a shorter critical section, or a lock per shard; the lock's hold time × rate is its capacity",
        ),
        WaitKind::Pool => (
            Kind::Pool,
            format!("waiting on a pool in {}", site.function),
            "the pool's size vs its hold time (slots / hold = capacity); a bigger pool should move the knee",
        ),
        WaitKind::Queue => (
            Kind::Pool,
            format!("waiting for a worker (a channel) in {}", site.function),
            "how many workers drain that channel, and what each one does per request",
        ),
        WaitKind::Socket => (
            Kind::Downstream,
            format!("waiting on a downstream (socket) in {}", site.function),
            "the downstream's own latency and load at this rate (its CPU, its queues)",
        ),
        WaitKind::Disk => (
            Kind::Disk,
            format!("waiting for disk I/O in {}", site.function),
            "the device's utilization and queue (iostat -x) at this rate",
        ),
        _ => (
            Kind::Waiting,
            format!("waiting in {}", site.function),
            "what that function waits for",
        ),
    };
    let offcpu = OffCpu::of(ctx.knee)?;
    let strong = site.percent >= STRONG_SHARE && now - was >= STRONG_GROWTH_MS;
    let rank = if strong {
        Rank::StrongWaitSite
    } else {
        Rank::WaitSite
    };
    let mut finding = Finding::new(kind, rank, words)
        .evidence(format!(
            "{:.0}% of the time the target's {} spent waiting at the knee was {} in {}; \
             {} ms per request {}, {} at it",
            site.percent,
            offcpu.source.unit(),
            site.kind.words(),
            site.function,
            round(was),
            baseline_words(ctx, &site),
            round(now)
        ))
        .evidence(format!(
            "off-CPU at the knee ({}{}): {:.0} ms waiting, {:.0} ms idle, {:.0} ms preempted over {:.1} s",
            offcpu.source,
            offcpu
                .observer
                .as_ref()
                .map_or(String::new(), |o| match o.contains(", ") {
                    true => format!(", on observers {o}'s hosts"),
                    false => format!(", on observer {o}'s host"),
                }),
            offcpu.waiting_ms,
            offcpu.idle_ms,
            offcpu.preempted_ms,
            offcpu.seconds
        ))
        .confirm(confirm);
    finding.site = Some(site.function.clone());
    if site.kind == WaitKind::Disk {
        if let Some((device, util)) = super::disks::busiest_disk(ctx) {
            finding = finding.evidence(super::disks::disk_line(ctx, &device, util));
        }
    }
    if site.kind == WaitKind::Socket {
        // A remote downstream has no process here to read: its address is the name.
        if let Some(line) = super::processes::connections_line(ctx) {
            finding = finding.evidence(line);
        }
    }
    if let Some((name, at_knee, below)) = growing_queue_gauge(ctx) {
        finding = finding.evidence(format!(
            "corroborated by {name}: {at_knee:.1} at the knee (below it: {below:.1})"
        ));
    }
    if let Some(cpu) = ctx.target_cpu() {
        finding = finding.evidence(ctx.cpu_line(cpu));
    }
    Some(finding)
}

/// The grown wait site (see `grown_site`) when it is of `kind`: (site, below, knee).
pub fn grown_site_of(ctx: &Context, kind: WaitKind) -> Option<(WaitSite, f64, f64)> {
    grown_site(ctx).filter(|(site, ..)| site.kind == kind)
}

/// The site with the largest growth in ms per request that qualifies: (site, below, knee).
fn grown_site(ctx: &Context) -> Option<(WaitSite, f64, f64)> {
    let knee = OffCpu::of(ctx.knee).filter(|o| o.error.is_none())?;
    knee.top
        .iter()
        // The GIL is the interpreter's lock, not the service's (`runtimes::gil`).
        .filter(|s| !matches!(s.kind, WaitKind::Sleep | WaitKind::Gil) && s.percent >= SITE_SHARE)
        .filter_map(|site| {
            let now = site.ms_per_request?;
            let (was, _) = site_baseline(ctx, site);
            (now >= SITE_GROWTH * was && now - was >= SITE_MIN_GROWTH_MS)
                .then(|| (site.clone(), was, now))
        })
        .max_by(|a, b| (a.2 - a.1).total_cmp(&(b.2 - b.1)))
}

/// A site's time per request where its growth is measured from, and the step that gave it:
/// the step below the knee (`waits_below`), or the lowest-load hold below that (profiled, and
/// held) when the site waited less there. A lock already contended below the knee (at 95 %
/// of capacity its queue is already long) barely grows from there to the knee, though it
/// grew many times over from where the service was lightly loaded: measured from the step
/// below alone, it would not be named.
fn site_baseline<'a>(ctx: &Context<'a>, site: &WaitSite) -> (f64, Option<&'a StepResult>) {
    let Some(below) = ctx.waits_below else {
        return (0.0, None);
    };
    let rate = |s: &StepResult| s.offered_rps.unwrap_or(0.0);
    let lowest = ctx
        .steps
        .iter()
        .filter(|s| {
            s.phase == Phase::Hold
                && s.holds
                && rate(s) < rate(below)
                && OffCpu::of(s).is_some_and(|o| o.error.is_none())
        })
        .min_by(|a, b| rate(a).total_cmp(&rate(b)));
    match lowest {
        Some(low) if ms_at(low, site) < ms_at(below, site) => (ms_at(low, site), Some(low)),
        _ => (ms_at(below, site), Some(below)),
    }
}

/// "below the knee", or the step that is the baseline instead and why: the lowest hold
/// (the site was already contended below the knee), or the step under the one just below
/// (that one was profiled past the knee).
fn baseline_words(ctx: &Context, site: &WaitSite) -> String {
    match (site_baseline(ctx, site).1, ctx.waits_below, ctx.below) {
        (Some(base), Some(waits_below), _) if base.name != waits_below.name => format!(
            "at {} (the lowest hold; {} at {})",
            base.name,
            round(ms_at(waits_below, site)),
            waits_below.name
        ),
        (_, Some(base), Some(below)) if base.name != below.name => format!(
            "at {} ({} missed the SLO while profiled)",
            base.name, below.name
        ),
        _ => "below the knee".into(),
    }
}

/// A site's time per request at `step` (0 when it is not among the step's top sites).
fn ms_at(step: &StepResult, site: &WaitSite) -> f64 {
    OffCpu::of(step)
        .and_then(|o| {
            o.top
                .iter()
                .find(|s| s.kind == site.kind && s.function == site.function)
                .and_then(|s| s.ms_per_request)
        })
        .unwrap_or(0.0)
}

/// Latency climbed, but the target's threads only idled: an async runtime parks tasks, not
/// threads, so their waits are in the runtime's own view, not in thread stacks.
pub fn idle_runtime(ctx: &Context) -> Option<Finding> {
    let knee = OffCpu::of(ctx.knee).filter(|o| o.error.is_none())?;
    if knee.source != OffCpuSource::PerfSchedSwitch || grown_site(ctx).is_some() {
        return None;
    }
    let below_p99 = ctx.below.map(|b| b.latency_ms.p99)?;
    let climbed = ctx.knee.latency_ms.p99 >= IDLE_P99_GROWTH * below_p99;
    let idle = knee.idle_ms >= IDLE_SHARE * knee.total_ms.max(1e-9);
    (climbed && idle).then(|| {
        Finding::new(
            Kind::Waiting,
            Rank::IdleRuntime,
            "tasks wait, threads idle: an async runtime parks tasks, not threads",
        )
        .evidence(format!(
            "off-CPU at the knee: {:.0} ms idle (event loops, parked workers) of {:.0} ms, no wait site grew per request, while p99 rose from {} to {} ms",
            knee.idle_ms,
            knee.total_ms,
            round(below_p99),
            round(ctx.knee.latency_ms.p99)
        ))
        .confirm(
            "the runtime's own view of waiting tasks: Go's block and mutex profiles (--pprof, with runtime.SetBlockProfileRate), tokio-console or tokio's task metrics, asyncio's debug mode, Node's async hooks",
        )
    })
}

/// One thread at (nearly) a full core while the host has more: an event loop or a single
/// worker, not a lock that many threads take turns on.
pub fn one_thread(ctx: &Context) -> Option<Finding> {
    let threads = Threads::of(ctx.knee)?;
    let busiest = threads.busiest.first()?;
    let rest = threads.cores - busiest.cores;
    let single = ctx.cores >= 2.0
        && busiest.cores >= ONE_THREAD_CORES
        && rest < OTHER_THREADS_SHARE * busiest.cores;
    if !single {
        return None;
    }
    let usage = format!(
        "thread `{}` (tid {}){} used {:.2} cores at the knee; the other {} threads {:.2} together, of {:.0} cores",
        busiest.name,
        busiest.tid,
        if super::runtimes::event_loop_function(ctx).is_some() { ", the event loop," } else { "" },
        busiest.cores,
        threads.count.saturating_sub(1),
        rest.max(0.0),
        ctx.cores
    );
    // A Node.js service profiled by its inspector: the thread is its event loop, and the
    // JavaScript function under most of its samples is the site.
    if let Some(function) = super::runtimes::event_loop_function(ctx) {
        let mut finding = Finding::new(
            Kind::SingleThread,
            Rank::OneThread,
            format!(
                "the event loop: one thread at {:.2} cores, in {}",
                busiest.cores, function.function
            ),
        )
        .evidence(usage)
        .evidence(super::runtimes::hottest_line(function, ProfileSource::NodeInspector))
        .confirm("less work per request on the loop, or more processes (cluster, worker threads) to spread it");
        finding.site = Some(function.function.clone());
        return Some(finding);
    }
    let mut finding = Finding::new(
        Kind::SingleThread,
        Rank::OneThread,
        format!(
            "CPU-bound on one thread: `{}` at {:.2} cores",
            busiest.name, busiest.cores
        ),
    )
    .evidence(usage)
    .confirm("a CPU flamegraph of that thread; spread its work over more threads or processes");
    finding.site = Some(busiest.name.clone());
    Some(finding)
}

fn round(ms: f64) -> String {
    if ms >= 10.0 {
        format!("{ms:.0}")
    } else if ms >= 1.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.2}")
    }
}

//! Signals of the limits a staging box sets rather than a resource running out by itself:
//! a cgroup's CPU quota and memory limit, the file-descriptor limit, the disk a service
//! syncs to, its runtime's GC, a rate limiter in front of it. Each names the limit with its
//! figure, so the capacity found reads as the limit's, not the code's.

use super::disks::{busiest_disk, disk_line};
use super::table::*;
use super::{Context, Finding};
use crate::model::series::{self, TARGET_GC_PAUSE_SHARE, TARGET_LIMITS};
use crate::model::verdict::Kind;
use crate::model::ErrorClass;

/// The target's cgroup quota ran out in most periods at the knee, the target at its quota.
pub fn cpu_throttled(ctx: &Context) -> Option<Finding> {
    let l = &TARGET_LIMITS;
    let quota = ctx.at_knee(l.cpu_quota_cores)?;
    let throttled = ctx.at_knee(l.throttled_share)?;
    let cpu = ctx.target_cpu().unwrap_or(0.0);
    if throttled < THROTTLED_PERIODS || cpu < AT_QUOTA * quota {
        return None;
    }
    let below = ctx.below(l.throttled_share).unwrap_or(0.0);
    let idle = ctx
        .at_knee(series::host::CPU_CORES)
        .map(|busy| (ctx.cores - busy).max(0.0));
    let idle = idle.map_or(String::new(), |i| {
        format!("; the host had {i:.1} idle cores")
    });
    let mut finding = Finding::new(
        Kind::CpuThrottled,
        Rank::CpuThrottled,
        format!("limited to {quota:.2} cores by its cgroup's CPU quota"),
    )
    .evidence(format!(
        "limited to {quota:.2} cores by its cgroup quota; throttled in {:.0} % of periods at the knee ({:.0} % below it){idle}",
        throttled * 100.0,
        below * 100.0
    ))
    .evidence(format!(
        "the target used {cpu:.2} cores, {:.0} % of its quota",
        100.0 * cpu / quota
    ))
    .confirm("raise the quota (Kubernetes limits.cpu, docker --cpus) or spend less CPU per request; cpu.stat's nr_throttled counts the periods it ran out");
    let good = ctx.knee.good_requests_per_s();
    if good > 0.0 && cpu > 0.0 {
        let per_request_ms = cpu / good * 1000.0;
        finding = finding.evidence(format!(
            "the quota is the capacity: {quota:.2} cores / {per_request_ms:.1} ms of CPU per request ≈ {:.0} req/s",
            quota / per_request_ms * 1000.0
        ));
    }
    if let Some(source) = ctx.source("cgroup") {
        finding = finding.evidence(format!("read from {source}"));
    }
    Some(finding)
}

/// The target's cgroup at its memory limit: reclaiming, failing allocations, OOM-killed.
pub fn memory_limit(ctx: &Context) -> Option<Finding> {
    let l = &TARGET_LIMITS;
    let limit = ctx.at_knee(l.memory_limit_mb)?;
    let used = ctx.series_at_knee(l.memory_used_mb).map_or(0.0, |s| s.max);
    let hits = ctx.at_knee(l.memory_max_events_per_s).unwrap_or(0.0);
    let kills = ctx.series_at_knee(l.oom_kills).map_or(0.0, |s| s.max)
        - ctx
            .below
            .and_then(|b| crate::analyze::series(b, l.oom_kills))
            .map_or(0.0, |s| s.max);
    let near = used >= NEAR_MEMORY_LIMIT * limit;
    if !(near || hits > 0.0 || kills > 0.0) {
        return None;
    }
    let mut finding = Finding::new(
        Kind::MemoryLimit,
        Rank::MemoryLimit,
        format!("at its cgroup's memory limit ({limit:.0} MB)"),
    )
    .evidence(format!(
        "the cgroup used {used:.0} of {limit:.0} MB ({:.0} %) at the knee",
        100.0 * used / limit
    ))
    .confirm("raise the memory limit (Kubernetes limits.memory) or find what grows (a heap profile, a soak test)");
    if hits > 0.0 {
        finding = finding.evidence(format!(
            "it hit the limit {hits:.1} times a second (memory.events max, v1 failcnt): the kernel reclaims before it grants"
        ));
    }
    if kills > 0.0 {
        finding = finding.evidence(format!(
            "{kills:.0} process(es) OOM-killed in the cgroup during the knee step"
        ));
    }
    Some(finding)
}

/// The target's open files at its RLIMIT_NOFILE while connections fail or stall.
pub fn fd_limit(ctx: &Context) -> Option<Finding> {
    let limit = ctx.at_knee(TARGET_LIMITS.fd_limit)?;
    let fds = ctx.series_at_knee(series::TARGET.fds)?.max;
    if fds < FD_LIMIT_SHARE * limit && fds < limit - FD_LIMIT_SLACK {
        return None;
    }
    let knee = ctx.knee;
    let stalled = knee.error_rate > 0.0 || knee.slo_failures.iter().any(|f| f.starts_with('p'));
    if !stalled {
        return None;
    }
    let timeouts = knee
        .error_classes
        .get(&ErrorClass::RequestTimeout)
        .copied()
        .unwrap_or(0);
    let mut finding = Finding::new(
        Kind::FdLimit,
        Rank::FdLimit,
        format!("out of file descriptors ({limit:.0}, its RLIMIT_NOFILE)"),
    )
    .evidence(format!(
        "{fds:.0} of {limit:.0} file descriptors open at the knee (its RLIMIT_NOFILE)"
    ))
    .confirm("raise the limit (ulimit -n, LimitNOFILE=, the container's nofile) or hold fewer connections; accept() fails with EMFILE and connections wait in the backlog");
    if timeouts > 0 {
        finding = finding.evidence(format!(
            "{timeouts} requests timed out: connected, never answered (accept() failed with EMFILE while they waited in the backlog)"
        ));
    }
    Some(finding)
}

/// The disk the target writes to is busy at the knee.
pub fn disk_busy(ctx: &Context) -> Option<Finding> {
    // A capped cgroup waits on its cap, whatever the disk does.
    if io_limit(ctx).is_some() {
        return None;
    }
    let (device, util) = busiest_disk(ctx)?;
    let writes = ctx.at_knee(series::TARGET.write_bytes_per_s).unwrap_or(0.0);
    if util < DISK_BUSY || writes <= 0.0 {
        return None;
    }
    let finding = Finding::new(
        Kind::Disk,
        Rank::DiskBusy,
        format!("the disk: {device} {:.0} % busy", util * 100.0),
    )
    .evidence(disk_line(ctx, &device, util))
    .evidence(format!(
        "the target wrote {:.1} MB/s at the knee",
        writes / 1e6
    ))
    .confirm("fewer syncs (group commits, a write-back log) or a faster device; iostat -x shows the same");
    Some(finding)
}

/// The target's cgroup caps its writes, and it wrote at its cap at the knee: the container's
/// I/O limit, not the disk, is what it waits on (the disk may idle).
pub fn io_limit(ctx: &Context) -> Option<Finding> {
    let l = &TARGET_LIMITS;
    let limit = ctx.at_knee(l.io_write_iops_limit)?;
    let wrote = ctx.at_knee(l.write_iops)?;
    if wrote < AT_IO_LIMIT * limit {
        return None;
    }
    let device = ctx.source("io_limit").unwrap_or("its disk");
    let mut finding = Finding::new(
        Kind::Disk,
        Rank::IoLimit,
        format!("the disk: its cgroup's write limit on {device} ({limit:.0} writes/s)"),
    )
    .evidence(format!(
        "its cgroup may write {limit:.0} times a second to {device} (io.max wiops, blkio.throttle.write_iops_device), and wrote {wrote:.0} a second at the knee"
    ))
    .confirm("raise the container's I/O limit (docker --device-write-iops, io.max) or write less often (group commits)");
    if let Some((site, was, now)) =
        super::waits::grown_site_of(ctx, crate::model::observed::WaitKind::Disk)
    {
        finding = finding.evidence(format!(
            "{:.0}% of the time the target's threads waited at the knee was disk I/O in {}: {:.1} ms per request below the knee, {:.1} at it",
            site.percent, site.function, was, now
        ));
        finding.site = Some(site.function);
    }
    if let Some((busiest, util)) = busiest_disk(ctx) {
        finding = finding.evidence(disk_line(ctx, &busiest, util));
    }
    Some(finding)
}

/// The runtime paused for GC a real share of the time at the knee, and more than below.
pub fn gc(ctx: &Context) -> Option<Finding> {
    let share = ctx.at_knee(TARGET_GC_PAUSE_SHARE)?;
    let below = ctx.below(TARGET_GC_PAUSE_SHARE).unwrap_or(0.0);
    if share < GC_SHARE || share < GC_GROWTH * below {
        return None;
    }
    let from = ctx
        .source("gc")
        .map_or(String::new(), |s| format!(" (read from {s})"));
    Some(
        Finding::new(Kind::Gc, Rank::Gc, "paused by garbage collection")
            .evidence(format!(
                "GC paused the service {:.0} % of the time at the knee, {:.0} % below it{from}",
                share * 100.0,
                below * 100.0
            ))
            .confirm("allocate less per request, or size the heap and GC for the load (GOGC, -Xmx and the collector, --max-old-space-size)"),
    )
}

/// Good throughput flat at a round rate while the rest is answered fast with 429/503 and
/// the target's CPU stays low: a limiter, not an overload.
pub fn rate_limited(ctx: &Context) -> Option<Finding> {
    let knee = ctx.knee;
    let rejected: u64 = ["429", "503"]
        .iter()
        .filter_map(|code| knee.status_codes.get(*code))
        .sum();
    if knee.error_rate < LIMITER_REJECTED
        || (rejected as f64) < LIMITER_STATUS_SHARE * knee.errors as f64
    {
        return None;
    }
    if ctx
        .target_cpu()
        .is_some_and(|c| c >= WAITING_SHARE * ctx.cores)
    {
        return None;
    }
    // Fast rejections: latency at the knee no worse than a few times the step below's.
    let fast = ctx
        .below
        .is_none_or(|b| knee.latency_ms.p50 <= LIMITER_FAST * b.latency_ms.p50.max(1.0));
    if !fast {
        return None;
    }
    // Flat: the good throughput of every step past the knee is the same.
    let offered = knee.offered_rps.unwrap_or(0.0);
    let over: Vec<f64> = ctx
        .steps
        .iter()
        .filter(|s| {
            s.offered_rps.is_some_and(|r| r >= offered) && s.phase != crate::model::Phase::Recovery
        })
        .map(|s| s.ok_rps)
        .collect();
    let (lo, hi) = over
        .iter()
        .fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    if over.len() > 1 && hi > LIMITER_FLAT * lo {
        return None;
    }
    let status = if knee.status_codes.get("429").copied().unwrap_or(0) >= rejected / 2 {
        "429"
    } else {
        "503"
    };
    let cpu = ctx.target_cpu().map_or(String::new(), |c| {
        format!("; the target's CPU {c:.2} cores")
    });
    let finding = Finding::new(
        Kind::RateLimited,
        Rank::RateLimited,
        format!("a rate limiter at about {:.0} req/s", knee.good_requests_per_s()),
    )
    .evidence(format!(
        "good throughput flat at {:.0}/s past the knee; the rest ({:.0} %) answered {status} in {} (p50){cpu}: a rate limiter (nginx limit_req, an API gateway, the service's own)",
        knee.ok_rps,
        knee.error_rate * 100.0,
        crate::units::fmt_ms(knee.latency_ms.p50),
    ))
    .evidence("the capacity this run found is the limiter's, not the service's: raise or lift the limit to find the service's")
    .confirm("the limiter's configuration; test the service behind it directly");
    Some(finding)
}

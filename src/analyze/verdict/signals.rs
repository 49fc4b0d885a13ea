//! The signals the verdict weighs, one small function each: it reads one kind of evidence at
//! the knee step (against the step below it) and returns a `Finding` with its strength, or
//! nothing. `all` lists them in the order that breaks ties between equal strengths.

use super::gauge::growing_queue_gauge;
use super::table::*;
use super::{Context, Finding};
use crate::model::series::{self, host};
use crate::model::verdict::Kind;

pub fn all(ctx: &Context) -> Vec<Finding> {
    let signals: [fn(&Context) -> Option<Finding>; 24] = [
        errors,
        super::limits::memory_limit,
        memory_pressure,
        super::limits::fd_limit,
        super::limits::cpu_throttled,
        super::nagle::nagle,
        super::limits::rate_limited,
        super::kernel::accept_queue,
        super::waits::one_thread,
        super::runtimes::gil,
        cpu_bound,
        super::processes::downstream,
        super::processes::balancer,
        super::waits::wait_site,
        queue_gauge,
        super::limits::gc,
        super::limits::io_limit,
        super::limits::disk_busy,
        host_contention,
        serialized,
        super::kernel::network,
        super::waits::idle_runtime,
        waiting,
        host_only,
    ];
    signals.iter().filter_map(|signal| signal(ctx)).collect()
}

/// Errors above the SLO bound at the knee: what users see (a symptom, named beside a cause).
pub fn errors(ctx: &Context) -> Option<Finding> {
    let knee = ctx.knee;
    if knee.error_rate <= ctx.max_error_rate.max(0.001) {
        return None;
    }
    let (class, count) = knee
        .error_classes
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(c, n)| (*c, *n))?;
    let mut finding = Finding::new(
        Kind::Errors,
        Rank::Errors,
        format!("failing requests ({class})"),
    )
    .evidence(format!(
        "{:.1}% of requests failed at the knee; most as {class} ({count})",
        knee.error_rate * 100.0
    ))
    .confirm("the target's logs for that error class");
    if ctx.at_knee(series::TARGET_ALIVE).is_some_and(|a| a < 1.0) {
        finding = finding.evidence("the target process went away during the step");
    }
    finding.symptom = Some(class);
    Some(finding)
}

/// Swapping, the cgroup near its memory limit, or the target's RSS jumping.
pub fn memory_pressure(ctx: &Context) -> Option<Finding> {
    let swap_growth = ctx.at_knee(host::SWAP_USED_MB).unwrap_or(0.0)
        - ctx.below(host::SWAP_USED_MB).unwrap_or(0.0);
    let cgroup_share = ctx
        .at_knee(host::CGROUP_MEMORY_USED_MB)
        .zip(ctx.at_knee(host::CGROUP_MEMORY_LIMIT_MB))
        .map(|(u, l)| u / l);
    let rss = ctx.at_knee(series::TARGET.rss_mb);
    let rss_jump = rss
        .zip(ctx.below(series::TARGET.rss_mb))
        .map(|(k, b)| k - b);
    let pressed = swap_growth > SWAP_GROWTH_MB
        || cgroup_share.is_some_and(|s| s > CGROUP_MEMORY_SHARE)
        || rss_jump.is_some_and(|j| j > RSS_JUMP_MB && j > RSS_JUMP_SHARE * rss.unwrap_or(0.0));
    pressed.then(|| {
        Finding::new(
            Kind::MemoryPressure,
            Rank::MemoryPressure,
            "memory pressure",
        )
        .evidence(format!(
            "swap +{swap_growth:.0} MB, cgroup memory {}, target RSS {}",
            cgroup_share.map_or("-".into(), |s| format!("{:.0}% of limit", s * 100.0)),
            rss.map_or("-".into(), |r| format!("{r:.0} MB"))
        ))
        .confirm("a heap profile, and a soak test for growth")
    })
}

/// The target uses (nearly) every core: queues elsewhere are its echo. On a full host the
/// target cannot take every core (the generator, the kernel and the rest take a share), so
/// a target holding most of a saturated host is CPU-bound too.
pub fn cpu_bound(ctx: &Context) -> Option<Finding> {
    let cpu = ctx.target_cpu()?;
    let host_cpu = ctx.at_knee(host::CPU_CORES).unwrap_or(0.0);
    let holds_a_full_host = host_cpu >= HOST_FULL_SHARE * ctx.cores
        && cpu >= MOST_OF_A_FULL_HOST * host_cpu
        && cpu > MOST_OF_THE_CORES * ctx.cores;
    let rank = if cpu >= CPU_SATURATED_SHARE * ctx.cores {
        Rank::CpuSaturated
    } else if cpu >= CPU_BOUND_SHARE * ctx.cores || holds_a_full_host {
        Rank::CpuBound
    } else {
        return None;
    };
    let run_queue = ctx.at_knee(host::RUN_QUEUE).unwrap_or(0.0);
    let mut finding = Finding::new(Kind::CpuBound, rank, "CPU-bound (target)")
        .evidence(ctx.cpu_line(cpu))
        .evidence(format!(
            "host run queue {run_queue:.1} on {:.0} cores",
            ctx.cores
        ))
        .confirm(
            "a flamegraph at the 95% hold step (--pprof or --profiler perf) to see which functions",
        );
    if let Some((top, source)) = super::runtimes::hottest_own(ctx) {
        finding.bottleneck = format!("CPU-bound (target), in {}", top.function);
        finding = finding
            .evidence(super::runtimes::hottest_line(top, source))
            .confirm("the flamegraph of the knee step: what that function does per request");
        finding.site = Some(top.function.clone());
    }
    if cpu < CPU_BOUND_SHARE * ctx.cores {
        finding = finding.evidence(format!(
            "the host was full ({host_cpu:.2} of {:.0} cores) and the target held {:.0}% of it",
            ctx.cores,
            100.0 * cpu / host_cpu
        ));
    }
    Some(finding)
}

/// A growing queue gauge: something queues. Its name does not say what (a gauge called
/// `lock_waiting` may count anything): the stacks decide lock or pool (`waits`).
pub fn queue_gauge(ctx: &Context) -> Option<Finding> {
    let (name, at_knee, at_below) = growing_queue_gauge(ctx)?;
    let mut finding = Finding::new(
        Kind::Waiting,
        Rank::QueueGauge,
        format!("waiting: a queue is growing ({name})"),
    )
    .evidence(format!(
        "{name} averaged {at_knee:.1} at the knee (below it: {at_below:.1})"
    ))
    .confirm("what drains that queue (an off-CPU profile at the knee shows where requests wait)");
    if let Some(cpu) = ctx.target_cpu() {
        finding = finding
            .evidence(ctx.cpu_line(cpu))
            .ranked(Rank::QueueGaugeWithCpu);
    }
    Some(with_context_switches(ctx, finding))
}

/// The host is full and others (the generator among them) hold a real share of it, or the
/// cgroup throttles.
pub fn host_contention(ctx: &Context) -> Option<Finding> {
    let cpu = ctx.target_cpu()?;
    // A generator on another machine takes nothing from the target's host.
    let generator = if ctx.remote() {
        0.0
    } else {
        ctx.at_knee(series::GENERATOR.cpu_cores).unwrap_or(0.0)
    };
    let host_cpu = ctx.at_knee(host::CPU_CORES).unwrap_or(0.0);
    // The target's downstreams busy on its behalf are not contention.
    let downstreams = super::processes::downstream_cores(ctx);
    let others = (host_cpu - cpu - downstreams).max(0.0);
    let throttled = ctx.at_knee(host::CGROUP_THROTTLED_SHARE).unwrap_or(0.0);
    let run_queue = ctx.at_knee(host::RUN_QUEUE).unwrap_or(0.0);
    let contended = (host_cpu >= HOST_FULL_SHARE * ctx.cores && others >= OTHERS_CORES)
        || generator >= GENERATOR_CORES
        || throttled > THROTTLED_SHARE;
    contended.then(|| {
        let named = super::processes::others_named(ctx);
        // On another host the generator is not among the others: name it only where it runs.
        let generator_share = if ctx.remote() {
            String::new()
        } else {
            format!(" (the generator: {generator:.2})")
        };
        let advice = if ctx.remote() {
            "find what else runs on the target's host, or give the target dedicated cores"
        } else {
            "run the generator on another machine, or give the target dedicated cores"
        };
        let mut finding = Finding::new(Kind::HostContention, Rank::HostContention, "host contention")
            .evidence(ctx.cpu_line(cpu))
            .evidence(format!(
                "the host used {host_cpu:.2} of {:.0} cores, {others:.2} of them outside the target and its downstreams{generator_share}; \
                 run queue {run_queue:.1}; cgroup throttled {:.0}% of the time",
                ctx.cores,
                throttled * 100.0
            ))
            .confirm(advice);
        if let Some(named) = named {
            finding = finding.evidence(format!("outside the target: {named}"));
            finding.confirm = format!(
                "move what else runs there ({named}) off the target's host, or give the target dedicated cores"
            );
        }
        finding
    })
}

/// About one core busy on a host with more: a lock or a single thread.
pub fn serialized(ctx: &Context) -> Option<Finding> {
    let cpu = ctx.target_cpu()?;
    let one_core =
        ctx.cores >= 2.0 && ONE_CORE.contains(&cpu) && cpu <= ONE_CORE_MAX_SHARE * ctx.cores;
    one_core.then(|| {
        let finding = Finding::new(
            Kind::Serialized,
            Rank::Serialized,
            "serialized: about one core busy (a lock or a single thread)",
        )
        .evidence(ctx.cpu_line(cpu))
        .confirm("a flamegraph at the 95% hold step: one lock or one thread holding the time");
        with_context_switches(ctx, finding)
    })
}

/// Less than half the cores busy: the target waits on something that is not CPU.
pub fn waiting(ctx: &Context) -> Option<Finding> {
    let cpu = ctx.target_cpu()?;
    if cpu >= WAITING_SHARE * ctx.cores {
        return None;
    }
    let mut finding = Finding::new(
        Kind::Waiting,
        Rank::Waiting,
        "waiting: a pool, I/O or a downstream (not CPU)",
    )
    .evidence(ctx.cpu_line(cpu))
    .confirm("the target's pool, queue and downstream metrics (--metrics), or traces of its downstream calls");
    let io = ctx.at_knee(series::TARGET.read_bytes_per_s).unwrap_or(0.0)
        + ctx.at_knee(series::TARGET.write_bytes_per_s).unwrap_or(0.0);
    if io > NOTABLE_IO {
        finding = finding.evidence(format!("disk I/O {:.1} MB/s", io / 1e6));
    }
    Some(with_context_switches(ctx, finding))
}

/// No target process: only what the host shows, at low confidence (medium when the host is
/// the target's own, the generator elsewhere, and full).
pub fn host_only(ctx: &Context) -> Option<Finding> {
    if ctx.target_cpu().is_some() {
        return None;
    }
    let Some(host_cpu) = ctx.at_knee(host::CPU_CORES) else {
        // A remote target whose host nobody reported: say so rather than read this machine.
        return ctx.remote().then(|| {
            Finding::new(
                Kind::Unclear,
                Rank::HostUnknown,
                "unknown: the target's host is not observed",
            )
                .evidence(
                    "the target runs on another host and nothing reported its host or process \
                     (this machine was sampled as the generator's host only)",
                )
                .confirm("--metrics with the target host's node_exporter and the service's process_* metrics")
        });
    };
    let unknown = match ctx.source("target").filter(|s| !s.starts_with("/proc")) {
        // The service's own metrics went quiet: a service whose CPU ran out answers late.
        Some(source) => {
            format!("the target's metrics ({source}) did not answer during the knee step")
        }
        None => "no target process known (give --pid, --spawn or --demo)".to_string(),
    };
    let line = format!(
        "host CPU {host_cpu:.2} of {:.0} cores; {unknown}",
        ctx.cores
    );
    Some(if host_cpu >= HOST_FULL_SHARE * ctx.cores {
        let rank = if ctx.remote() {
            Rank::RemoteHostFull
        } else {
            Rank::HostFull
        };
        Finding::new(Kind::CpuBound, rank, "CPU-bound (host)")
            .evidence(line)
            .confirm("the target's own CPU (--pid on its host, or its process_* metrics) to see whether it is the target's")
    } else {
        Finding::new(
            Kind::Waiting,
            Rank::HostNotFull,
            "not CPU: waiting somewhere",
        )
        .evidence(line)
        .confirm("--pid of the target, and its metrics (--metrics)")
    })
}

/// Adds the target's context switches (blocking vs preempted) to a finding's evidence.
fn with_context_switches(ctx: &Context, finding: Finding) -> Finding {
    match (
        ctx.at_knee(series::TARGET.voluntary_ctx_per_s),
        ctx.at_knee(series::TARGET.involuntary_ctx_per_s),
    ) {
        (Some(vol), Some(invol)) => finding.evidence(format!(
            "{vol:.0} voluntary context switches/s (threads blocking), {invol:.0} involuntary/s (preempted)"
        )),
        _ => finding,
    }
}

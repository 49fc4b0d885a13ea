//! The signals the verdict weighs, one small function each: it reads one kind of evidence at
//! the knee step (against the step below it) and returns a `Finding` with its strength, or
//! nothing. `all` lists them in the order that breaks ties between equal strengths.

use super::{Context, Finding};
use crate::observe::prometheus::names_a_queue;

/// Target CPU at or above this share of the cores is CPU-bound, whatever else is queueing...
pub const CPU_SATURATED_SHARE: f64 = 0.9;
/// ...and at or above this share a weaker CPU-bound finding.
pub const CPU_BOUND_SHARE: f64 = 0.85;
/// ...or, when the host is full, at or above this share of what the host used.
pub const MOST_OF_A_FULL_HOST: f64 = 0.75;

pub fn all(ctx: &Context) -> Vec<Finding> {
    let signals: [fn(&Context) -> Option<Finding>; 14] = [
        errors,
        memory_pressure,
        super::kernel::accept_queue,
        super::waits::one_thread,
        cpu_bound,
        super::processes::downstream,
        super::waits::wait_site,
        queue_gauge,
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
        .map(|(c, n)| (c.clone(), *n))
        .unwrap_or_default();
    let mut finding = Finding::new("errors", format!("failing requests ({class})"), 0.85)
        .evidence(format!(
            "{:.1}% of requests failed at the knee; most as {class} ({count})",
            knee.error_rate * 100.0
        ))
        .confirm("the target's logs for that error class");
    if ctx.at_knee("target.alive").is_some_and(|a| a < 1.0) {
        finding = finding.evidence("the target process went away during the step");
    }
    finding.symptom = Some(class);
    Some(finding)
}

/// Swapping, the cgroup near its memory limit, or the target's RSS jumping.
pub fn memory_pressure(ctx: &Context) -> Option<Finding> {
    let swap_growth = ctx.at_knee("host.swap_used_mb").unwrap_or(0.0)
        - ctx.below("host.swap_used_mb").unwrap_or(0.0);
    let cgroup_share = ctx
        .at_knee("host.cgroup_memory_used_mb")
        .zip(ctx.at_knee("host.cgroup_memory_limit_mb"))
        .map(|(u, l)| u / l);
    let rss = ctx.at_knee("target.rss_mb");
    let rss_jump = rss.zip(ctx.below("target.rss_mb")).map(|(k, b)| k - b);
    let pressed = swap_growth > 50.0
        || cgroup_share.is_some_and(|s| s > 0.9)
        || rss_jump.is_some_and(|j| j > 50.0 && j > 0.25 * rss.unwrap_or(0.0));
    pressed.then(|| {
        Finding::new("memory_pressure", "memory pressure", 0.95)
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
    let host_cpu = ctx.at_knee("host.cpu_cores").unwrap_or(0.0);
    let holds_a_full_host = host_cpu >= CPU_SATURATED_SHARE * ctx.cores
        && cpu >= MOST_OF_A_FULL_HOST * host_cpu
        && cpu > 0.7 * ctx.cores;
    let strength = if cpu >= CPU_SATURATED_SHARE * ctx.cores {
        0.9
    } else if cpu >= CPU_BOUND_SHARE * ctx.cores || holds_a_full_host {
        0.55
    } else {
        return None;
    };
    let run_queue = ctx.at_knee("host.run_queue").unwrap_or(0.0);
    let mut finding = Finding::new("cpu_bound", "CPU-bound (target)", strength)
        .evidence(ctx.cpu_line(cpu))
        .evidence(format!(
            "host run queue {run_queue:.1} on {:.0} cores",
            ctx.cores
        ))
        .confirm(
            "a flamegraph at the 95% hold step (--pprof or --profiler perf) to see which functions",
        );
    if cpu < CPU_BOUND_SHARE * ctx.cores {
        finding = finding.evidence(format!(
            "the host was full ({host_cpu:.2} of {:.0} cores) and the target held {:.0}% of it",
            ctx.cores,
            100.0 * cpu / host_cpu
        ));
    }
    Some(finding)
}

/// A scraped gauge named like a queue that at least doubled to ≥ 1 at the knee: its name,
/// its mean at the knee and below.
pub fn growing_queue_gauge(ctx: &Context) -> Option<(String, f64, f64)> {
    let series = ctx
        .knee
        .observed
        .as_ref()?
        .get("samplers")?
        .get("series")?
        .as_object()?;
    series
        .keys()
        .filter(|k| k.starts_with("metrics.") && !k.ends_with(":rate") && names_a_queue(k))
        .filter_map(|k| {
            let at_knee = ctx.at_knee(k)?;
            let at_below = ctx.below(k).unwrap_or(0.0);
            (at_knee >= 1.0 && at_knee >= 2.0 * (at_below + 0.5)).then(|| {
                (
                    k.trim_start_matches("metrics.").to_string(),
                    at_knee,
                    at_below,
                )
            })
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

/// A growing queue gauge: something queues. Its name does not say what (a gauge called
/// `lock_waiting` may count anything): the stacks decide lock or pool (`waits`).
pub fn queue_gauge(ctx: &Context) -> Option<Finding> {
    let (name, at_knee, at_below) = growing_queue_gauge(ctx)?;
    let mut finding = Finding::new(
        "waiting",
        format!("waiting: a queue is growing ({name})"),
        0.6,
    )
    .evidence(format!(
        "{name} averaged {at_knee:.1} at the knee (below it: {at_below:.1})"
    ))
    .confirm("what drains that queue (an off-CPU profile at the knee shows where requests wait)");
    if let Some(cpu) = ctx.target_cpu() {
        finding = finding.evidence(ctx.cpu_line(cpu));
        finding.strength = 0.8;
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
        ctx.at_knee("generator.cpu_cores").unwrap_or(0.0)
    };
    let host_cpu = ctx.at_knee("host.cpu_cores").unwrap_or(0.0);
    // The target's downstreams busy on its behalf are not contention.
    let downstreams = super::processes::downstream_cores(ctx);
    let others = (host_cpu - cpu - downstreams).max(0.0);
    let throttled = ctx.at_knee("host.cgroup_throttled_share").unwrap_or(0.0);
    let run_queue = ctx.at_knee("host.run_queue").unwrap_or(0.0);
    let contended =
        (host_cpu >= 0.9 * ctx.cores && others >= 0.5) || generator >= 0.5 || throttled > 0.1;
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
        let mut finding = Finding::new("host_contention", "host contention", 0.54)
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
    let one_core = ctx.cores >= 2.0 && (0.6..=1.4).contains(&cpu) && cpu <= 0.7 * ctx.cores;
    one_core.then(|| {
        let finding = Finding::new(
            "serialized",
            "serialized: about one core busy (a lock or a single thread)",
            0.52,
        )
        .evidence(ctx.cpu_line(cpu))
        .confirm("a flamegraph at the 95% hold step: one lock or one thread holding the time");
        with_context_switches(ctx, finding)
    })
}

/// Less than half the cores busy: the target waits on something that is not CPU.
pub fn waiting(ctx: &Context) -> Option<Finding> {
    let cpu = ctx.target_cpu()?;
    if cpu >= 0.5 * ctx.cores {
        return None;
    }
    let mut finding = Finding::new(
        "waiting",
        "waiting: a pool, I/O or a downstream (not CPU)",
        0.5,
    )
    .evidence(ctx.cpu_line(cpu))
    .confirm("the target's pool, queue and downstream metrics (--metrics), or traces of its downstream calls");
    let io = ctx.at_knee("target.read_bytes_per_s").unwrap_or(0.0)
        + ctx.at_knee("target.write_bytes_per_s").unwrap_or(0.0);
    if io > 1e6 {
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
    let Some(host) = ctx.at_knee("host.cpu_cores") else {
        // A remote target whose host nobody reported: say so rather than read this machine.
        return ctx.remote().then(|| {
            Finding::new("unclear", "unknown: the target's host is not observed", 0.2)
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
    let line = format!("host CPU {host:.2} of {:.0} cores; {unknown}", ctx.cores);
    Some(if host >= 0.9 * ctx.cores {
        let strength = if ctx.remote() { 0.5 } else { 0.3 };
        Finding::new("cpu_bound", "CPU-bound (host)", strength)
            .evidence(line)
            .confirm("the target's own CPU (--pid on its host, or its process_* metrics) to see whether it is the target's")
    } else {
        Finding::new("waiting", "not CPU: waiting somewhere", 0.25)
            .evidence(line)
            .confirm("--pid of the target, and its metrics (--metrics)")
    })
}

/// Adds the target's context switches (blocking vs preempted) to a finding's evidence.
fn with_context_switches(ctx: &Context, finding: Finding) -> Finding {
    match (
        ctx.at_knee("target.voluntary_ctx_per_s"),
        ctx.at_knee("target.involuntary_ctx_per_s"),
    ) {
        (Some(vol), Some(invol)) => finding.evidence(format!(
            "{vol:.0} voluntary context switches/s (threads blocking), {invol:.0} involuntary/s (preempted)"
        )),
        _ => finding,
    }
}

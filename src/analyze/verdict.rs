//! The bottleneck verdict: which resource saturated where latency broke (Brendan Gregg's USE:
//! utilization, saturation, errors), read from the samplers at the *knee step* (the first step
//! past capacity) against the step just below it. Rules, first match wins (ARCHITECTURE.md):
//! 1. errors above the SLO bound at the knee: the top error class is named;
//! 2. memory pressure: swapping, the cgroup near its memory limit, or target RSS jumping;
//! 3. target CPU ≥ 90 % of the cores: CPU-bound (target) (queues elsewhere are its echo);
//! 4. a saturation metric (a scraped gauge named *wait*/*queue*/*pending*/*backlog*) rising:
//!    "serialized on a lock" when it names a lock, "waiting on the pool" when it names a pool;
//!    (without a target process, only host-level conclusions follow, at low confidence)
//! 5. target CPU ≥ 85 % of the cores: CPU-bound (target);
//! 6. the host ≥ 90 % busy with ≥ half a core used outside the target, or the generator using
//!    ≥ half a core, or cgroup throttling > 10 %: host contention;
//! 7. target CPU ≈ one core (0.6–1.4) on a host with ≥ 2: serialized (a lock or one thread);
//! 8. target CPU < 50 % of the cores: waiting (a pool, I/O or a downstream);
//! 9. otherwise unclear.

use super::{mean, sample_count};
use crate::plan::Phase;
use crate::step::StepResult;
use crate::units::fmt_ms;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Verdict {
    /// In words: "serialized on a lock", "CPU-bound (target)", ...
    pub bottleneck: String,
    /// errors | memory_pressure | lock | pool | waiting | cpu_bound | host_contention |
    /// serialized | unclear
    pub kind: String,
    /// high | medium | low
    pub confidence: String,
    pub evidence: Vec<String>,
    /// What would confirm it.
    pub confirm: String,
    /// The step read as the knee, and the one below it.
    pub knee_step: Option<String>,
    pub below_step: Option<String>,
    /// One line per hold step: what was at what utilization.
    pub holds: Vec<String>,
}

/// Target CPU at or above this share of the cores is CPU-bound, whatever else is queueing...
const CPU_SATURATED_SHARE: f64 = 0.9;
/// ...and at or above this share when no queue metric points elsewhere.
const CPU_BOUND_SHARE: f64 = 0.85;

/// Words that make a scraped gauge a saturation signal.
const SATURATION_WORDS: [&str; 4] = ["wait", "queue", "pending", "backlog"];

/// The verdict for a run whose capacity (if known) is `capacity`.
pub fn verdict(steps: &[StepResult], capacity: Option<f64>, max_error_rate: f64) -> Verdict {
    let (knee, below) = knee_steps(steps, capacity);
    let holds = steps
        .iter()
        .filter(|s| s.phase == Phase::Hold)
        .map(|s| hold_line(s, capacity))
        .collect();
    let Some(knee) = knee else {
        return Verdict {
            bottleneck: "no knee reached: every step held".into(),
            kind: "unclear".into(),
            confidence: "low".into(),
            confirm: "offer more load (a higher --max-rate or more steps)".into(),
            holds,
            ..Verdict::default()
        };
    };
    let mut v = judge(knee, below, max_error_rate);
    v.knee_step = Some(knee.name.clone());
    v.below_step = below.map(|b| b.name.clone());
    v.holds = holds;
    v.evidence.insert(0, latency_line(knee, below));
    if sample_count(knee) < 3 && v.confidence == "high" {
        v.confidence = "medium".into();
        v.evidence.push(format!(
            "only {} samples in the knee step",
            sample_count(knee)
        ));
    }
    v
}

/// The first step past capacity (open model), and the highest one at or below it.
fn knee_steps(
    steps: &[StepResult],
    capacity: Option<f64>,
) -> (Option<&StepResult>, Option<&StepResult>) {
    let open: Vec<&StepResult> = steps
        .iter()
        .filter(|s| {
            s.offered_rps.is_some()
                && !matches!(s.phase, Phase::Recovery | Phase::Probe)
                && s.requests > 0
        })
        .collect();
    let rate = |s: &StepResult| s.offered_rps.unwrap_or(0.0);
    let capacity = capacity.or_else(|| {
        open.iter()
            .filter(|s| s.holds)
            .map(|s| rate(s))
            .reduce(f64::max)
    });
    // Past capacity, a hold step (longer, more samples) is preferred to a search step.
    let past = |hold: bool| {
        capacity.and_then(|c| {
            open.iter()
                .filter(|s| rate(s) > c && !s.holds && (s.phase == Phase::Hold) == hold)
                .min_by(|a, b| rate(a).total_cmp(&rate(b)))
                .copied()
        })
    };
    let knee = past(true).or_else(|| past(false)).or_else(|| {
        capacity
            .is_none()
            .then(|| open.iter().find(|s| !s.holds).copied())
            .flatten()
    });
    // Below the knee, compare like with like: a hold step with a hold step (same length, and
    // the same observers: profiling, for one, costs the target memory and CPU).
    let knee_is_hold = knee.is_some_and(|k| k.phase == Phase::Hold);
    let holds_below = |c: f64| {
        open.iter()
            .any(|s| rate(s) <= c && s.holds && s.phase == Phase::Hold)
    };
    let below = capacity.and_then(|c| {
        let only_holds = knee_is_hold && holds_below(c);
        open.iter()
            .filter(|s| rate(s) <= c && s.holds && (!only_holds || s.phase == Phase::Hold))
            .max_by(|a, b| {
                rate(a)
                    .total_cmp(&rate(b))
                    .then((a.phase == Phase::Hold).cmp(&(b.phase == Phase::Hold)))
            })
            .copied()
    });
    // Closed-model runs: the highest concurrency is the knee.
    let knee = knee.or_else(|| {
        steps
            .iter()
            .rfind(|s| s.concurrency.is_some() && s.phase != Phase::Probe)
    });
    (knee, below)
}

fn judge(knee: &StepResult, below: Option<&StepResult>, max_error_rate: f64) -> Verdict {
    let cores = mean(knee, "host.cores")
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64));
    let target_cpu = mean(knee, "target.cpu_cores");
    let below_of = |key: &str| below.and_then(|b| mean(b, key));
    let mut evidence = Vec::new();
    let cpu_line = |cpu: f64| {
        let was = below_of("target.cpu_cores")
            .map_or(String::new(), |b| format!(" (below the knee: {b:.2})"));
        format!("the target used {cpu:.2} of {cores:.0} cores{was}")
    };

    // 1. Errors first.
    if knee.error_rate > max_error_rate.max(0.001) {
        let (class, count) = knee
            .error_classes
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(c, n)| (c.clone(), *n))
            .unwrap_or_default();
        evidence.push(format!(
            "{:.1}% of requests failed at the knee; most as {class} ({count})",
            knee.error_rate * 100.0
        ));
        if mean(knee, "target.alive").is_some_and(|a| a < 1.0) {
            evidence.push("the target process went away during the step".into());
        }
        return verdict_of(
            "errors",
            &format!("failing requests ({class})"),
            "high",
            evidence,
            "the target's logs for that error class",
        );
    }
    // 2. Memory pressure.
    let swap_growth = mean(knee, "host.swap_used_mb").unwrap_or(0.0)
        - below_of("host.swap_used_mb").unwrap_or(0.0);
    let cgroup_share = mean(knee, "host.cgroup_memory_used_mb")
        .zip(mean(knee, "host.cgroup_memory_limit_mb"))
        .map(|(u, l)| u / l);
    let rss = mean(knee, "target.rss_mb");
    let rss_jump = rss.zip(below_of("target.rss_mb")).map(|(k, b)| k - b);
    if swap_growth > 50.0
        || cgroup_share.is_some_and(|s| s > 0.9)
        || rss_jump.is_some_and(|j| j > 50.0 && j > 0.25 * rss.unwrap_or(0.0))
    {
        evidence.push(format!(
            "swap +{swap_growth:.0} MB, cgroup memory {}, target RSS {}",
            cgroup_share.map_or("-".into(), |s| format!("{:.0}% of limit", s * 100.0)),
            rss.map_or("-".into(), |r| format!("{r:.0} MB"))
        ));
        return verdict_of(
            "memory_pressure",
            "memory pressure",
            "medium",
            evidence,
            "a heap profile, and a soak test for growth",
        );
    }
    // 3. CPU-bound: the target uses (nearly) every core; queues elsewhere are its echo.
    let run_queue = mean(knee, "host.run_queue").unwrap_or(0.0);
    let cpu_bound = |cpu: f64, mut evidence: Vec<String>, confidence: &str| {
        evidence.push(cpu_line(cpu));
        evidence.push(format!("host run queue {run_queue:.1} on {cores:.0} cores"));
        verdict_of(
            "cpu_bound",
            "CPU-bound (target)",
            confidence,
            evidence,
            "a flamegraph at the 95% hold step (--pprof or --profiler perf) to see which functions",
        )
    };
    if let Some(cpu) = target_cpu.filter(|cpu| *cpu >= CPU_SATURATED_SHARE * cores) {
        return cpu_bound(cpu, evidence, "high");
    }
    // 4. A saturation metric rising.
    if let Some((name, at_knee, at_below)) = saturation_metric(knee, below) {
        evidence.push(format!(
            "{name} averaged {at_knee:.1} at the knee (below it: {at_below:.1})"
        ));
        if let Some(cpu) = target_cpu {
            evidence.push(cpu_line(cpu));
        }
        push_ctx(knee, &mut evidence);
        let lower = name.to_ascii_lowercase();
        let (kind, words, confirm) = if lower.contains("lock") || lower.contains("mutex") {
            (
                "lock",
                "serialized on a lock",
                "a flamegraph at the 95% hold step (time under the lock), or an off-CPU profile",
            )
        } else if lower.contains("pool") || lower.contains("conn") {
            ("pool", "waiting on the pool", "the pool's size vs its hold time (slots / hold = capacity); a bigger pool should move the knee")
        } else {
            (
                "waiting",
                "waiting (a queue is growing)",
                "what drains that queue: its workers or its downstream",
            )
        };
        let confidence = if target_cpu.is_some() {
            "high"
        } else {
            "medium"
        };
        return verdict_of(
            kind,
            &format!("{words} ({name})"),
            confidence,
            evidence,
            confirm,
        );
    }
    let Some(cpu) = target_cpu else {
        return host_only(knee, cores, evidence);
    };
    // 5. CPU-bound, with no queue metric pointing elsewhere.
    if cpu >= CPU_BOUND_SHARE * cores {
        return cpu_bound(cpu, evidence, "medium");
    }
    evidence.push(cpu_line(cpu));
    // 6. Host contention: the host is full and others (the generator among them) hold a
    //    real share of it, or the cgroup throttles.
    let generator = mean(knee, "generator.cpu_cores").unwrap_or(0.0);
    let host_cpu = mean(knee, "host.cpu_cores").unwrap_or(0.0);
    let others = (host_cpu - cpu).max(0.0);
    let throttled = mean(knee, "host.cgroup_throttled_share").unwrap_or(0.0);
    if (host_cpu >= 0.9 * cores && others >= 0.5) || generator >= 0.5 || throttled > 0.1 {
        evidence.push(format!(
            "the host used {host_cpu:.2} of {cores:.0} cores, {others:.2} of them outside the target (the generator: {generator:.2}); \
             run queue {run_queue:.1}; cgroup throttled {:.0}% of the time",
            throttled * 100.0
        ));
        return verdict_of(
            "host_contention",
            "host contention",
            "medium",
            evidence,
            "run the generator on another machine, or give the target dedicated cores",
        );
    }
    push_ctx(knee, &mut evidence);
    // 7. Serialized.
    if cores >= 2.0 && (0.6..=1.4).contains(&cpu) && cpu <= 0.7 * cores {
        return verdict_of(
            "serialized",
            "serialized: about one core busy (a lock or a single thread)",
            "medium",
            evidence,
            "a flamegraph at the 95% hold step: one lock or one thread holding the time",
        );
    }
    // 8. Waiting.
    if cpu < 0.5 * cores {
        let io = mean(knee, "target.read_bytes_per_s").unwrap_or(0.0)
            + mean(knee, "target.write_bytes_per_s").unwrap_or(0.0);
        if io > 1e6 {
            evidence.push(format!("disk I/O {:.1} MB/s", io / 1e6));
        }
        return verdict_of(
            "waiting",
            "waiting: a pool, I/O or a downstream (not CPU)",
            "medium",
            evidence,
            "the target's pool, queue and downstream metrics (--metrics), or traces of its downstream calls",
        );
    }
    verdict_of(
        "unclear",
        "unclear: no single resource saturated",
        "low",
        evidence,
        "a flamegraph and the target's own metrics at the 95% hold step",
    )
}

fn host_only(knee: &StepResult, cores: f64, mut evidence: Vec<String>) -> Verdict {
    let host = mean(knee, "host.cpu_cores").unwrap_or(0.0);
    evidence.push(format!("host CPU {host:.2} of {cores:.0} cores; no target process known (give --pid, --spawn or --demo)"));
    if host >= 0.9 * cores {
        return verdict_of(
            "cpu_bound",
            "CPU-bound (host)",
            "low",
            evidence,
            "--pid of the target, to see whether it is the target's CPU",
        );
    }
    verdict_of(
        "waiting",
        "not CPU: waiting somewhere",
        "low",
        evidence,
        "--pid of the target, and its metrics (--metrics)",
    )
}

fn verdict_of(
    kind: &str,
    bottleneck: &str,
    confidence: &str,
    evidence: Vec<String>,
    confirm: &str,
) -> Verdict {
    Verdict {
        bottleneck: bottleneck.into(),
        kind: kind.into(),
        confidence: confidence.into(),
        evidence,
        confirm: confirm.into(),
        ..Verdict::default()
    }
}

/// The scraped gauge named like a queue that grew the most from below the knee to the knee.
fn saturation_metric(knee: &StepResult, below: Option<&StepResult>) -> Option<(String, f64, f64)> {
    let series = knee
        .observed
        .as_ref()?
        .get("samplers")?
        .get("series")?
        .as_object()?;
    series
        .keys()
        .filter(|k| k.starts_with("metrics.") && !k.ends_with(":rate"))
        .filter(|k| {
            SATURATION_WORDS
                .iter()
                .any(|w| k.to_ascii_lowercase().contains(w))
        })
        .filter_map(|k| {
            let at_knee = mean(knee, k)?;
            let at_below = below.and_then(|b| mean(b, k)).unwrap_or(0.0);
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

fn push_ctx(knee: &StepResult, evidence: &mut Vec<String>) {
    if let (Some(vol), Some(invol)) = (
        mean(knee, "target.voluntary_ctx_per_s"),
        mean(knee, "target.involuntary_ctx_per_s"),
    ) {
        evidence.push(format!(
            "{vol:.0} voluntary context switches/s (threads blocking), {invol:.0} involuntary/s (preempted)"
        ));
    }
}

fn latency_line(knee: &StepResult, below: Option<&StepResult>) -> String {
    let rate = knee.offered_rps.map_or(
        format!("concurrency {}", knee.concurrency.unwrap_or(0)),
        |r| format!("{r:.0} req/s offered"),
    );
    match below {
        Some(b) => format!(
            "at {rate} ({}) good throughput was {:.0}/s (below the knee {:.0}/s) while p99 rose from {} to {}",
            knee.name,
            knee.ok_rps,
            b.ok_rps,
            fmt_ms(b.latency_ms.p99),
            fmt_ms(knee.latency_ms.p99)
        ),
        None => format!("at {rate} ({}) good throughput was {:.0}/s with p99 {}", knee.name, knee.ok_rps, fmt_ms(knee.latency_ms.p99)),
    }
}

/// "hold-095 (95%, 453 req/s): target 0.93/2 cores, RSS 14 MB, ..."
fn hold_line(step: &StepResult, capacity: Option<f64>) -> String {
    let share = capacity
        .zip(step.offered_rps)
        .map_or(String::new(), |(c, r)| format!("{:.0}%, ", r / c * 100.0));
    let fmt = |key: &str, f: &dyn Fn(f64) -> String| mean(step, key).map(f);
    let parts: Vec<String> = [
        fmt("target.cpu_cores", &|v| {
            format!(
                "target CPU {v:.2}/{:.0} cores",
                mean(step, "host.cores").unwrap_or(0.0)
            )
        }),
        fmt("target.rss_mb", &|v| format!("RSS {v:.0} MB")),
        fmt("target.threads", &|v| format!("{v:.0} threads")),
        fmt("target.fds", &|v| format!("{v:.0} fds")),
        fmt("target.voluntary_ctx_per_s", &|v| {
            format!("{v:.0} vol ctx/s")
        }),
        fmt("host.cpu_cores", &|v| format!("host CPU {v:.2}")),
        fmt("host.run_queue", &|v| format!("run queue {v:.1}")),
        fmt("generator.cpu_cores", &|v| {
            format!("generator {v:.2} cores")
        }),
    ]
    .into_iter()
    .flatten()
    .collect();
    format!(
        "{} ({share}{:.0} req/s, p99 {}): {}",
        step.name,
        step.offered_rps.unwrap_or(0.0),
        fmt_ms(step.latency_ms.p99),
        if parts.is_empty() {
            "not sampled".to_string()
        } else {
            parts.join(", ")
        }
    )
}

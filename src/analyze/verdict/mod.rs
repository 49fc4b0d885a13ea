//! The bottleneck verdict: which resource saturated where latency broke (Brendan Gregg's USE:
//! utilization, saturation, errors), read at the *knee step* (the first step past capacity)
//! against the step just below it.
//!
//! Each signal (`signals`) is a small function that looks at one kind of evidence and, when it
//! sees something, returns a `Finding`: a kind, the words, the evidence in numbers, what would
//! confirm it, and a *strength* (0–1: how directly the evidence shows that resource saturated
//! at the knee). This module ranks them in one place: the strongest finding is the cause; a
//! symptom (errors over the SLO) is named beside the cause when there is one; runners-up are
//! mentioned. Confidence follows the strength (≥ 0.8 high, ≥ 0.5 medium, else low), capped at
//! medium when the knee step has fewer than 3 samples. The strengths, from the strongest:
//! memory pressure 0.95, CPU ≥ 90 % of the cores 0.9, a queue gauge growing 0.8 (0.6 without
//! the target's CPU), CPU ≥ 85 % 0.55, host contention 0.54, serialized (about one core busy)
//! 0.52, waiting (CPU < 50 %) 0.5, host-level readings without a target process 0.3 or less
//! (ARCHITECTURE.md).

mod kernel;
mod processes;
mod signals;
#[cfg(test)]
mod tests;
mod waits;

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
    /// Where the wait is: the application function closest to it, or the downstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// The top error class, when errors crossed the SLO at the knee beside the cause.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symptom: Option<String>,
    /// The step read as the knee, and the one below it.
    pub knee_step: Option<String>,
    pub below_step: Option<String>,
    /// One line per hold step: what was at what utilization.
    pub holds: Vec<String>,
}

/// What one signal saw.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub kind: &'static str,
    pub bottleneck: String,
    /// 0–1: how directly the evidence shows this resource saturated at the knee.
    pub strength: f64,
    pub evidence: Vec<String>,
    pub confirm: String,
    pub site: Option<String>,
    /// Set when this is what users see (failing requests: the top error class), not which
    /// resource saturated: it is named beside the cause.
    pub symptom: Option<String>,
}

impl Finding {
    pub fn new(kind: &'static str, bottleneck: impl Into<String>, strength: f64) -> Finding {
        Finding {
            kind,
            bottleneck: bottleneck.into(),
            strength,
            evidence: Vec::new(),
            confirm: String::new(),
            site: None,
            symptom: None,
        }
    }

    pub fn evidence(mut self, line: impl Into<String>) -> Finding {
        self.evidence.push(line.into());
        self
    }

    pub fn confirm(mut self, what: impl Into<String>) -> Finding {
        self.confirm = what.into();
        self
    }
}

/// A cause at least this strong is named when errors crossed the SLO too (one core busy
/// is; "waiting", which is only the absence of CPU, is not).
const CAUSE_BESIDE_ERRORS: f64 = 0.52;
/// Other findings at least this strong are mentioned as "also seen".
const ALSO_SEEN: f64 = 0.4;

/// What the signals read: the knee step, the step below it, and the run's facts.
pub struct Context<'a> {
    pub knee: &'a StepResult,
    pub below: Option<&'a StepResult>,
    pub cores: f64,
    pub max_error_rate: f64,
}

impl Context<'_> {
    /// The mean of a sampled series at the knee.
    pub fn at_knee(&self, key: &str) -> Option<f64> {
        mean(self.knee, key)
    }

    /// The mean of a sampled series below the knee.
    pub fn below(&self, key: &str) -> Option<f64> {
        self.below.and_then(|b| mean(b, key))
    }

    pub fn target_cpu(&self) -> Option<f64> {
        self.at_knee("target.cpu_cores")
    }

    /// Where a group of series ("host", "target") was read at the knee: /proc here, or an
    /// exporter's URL.
    pub fn source(&self, group: &str) -> Option<&str> {
        self.knee
            .observed
            .as_ref()?
            .get("samplers")?
            .get("sources")?
            .get(group)?
            .as_str()
    }

    /// The target is on another host: this machine was sampled as the generator's only.
    pub fn remote(&self) -> bool {
        self.at_knee("generator_host.cores").is_some()
    }

    /// "the target used 1.07 of 2 cores (below the knee: 1.05)", and where that was read
    /// when not from /proc here ("; from http://staging:9100/metrics (process_* metrics)").
    pub fn cpu_line(&self, cpu: f64) -> String {
        let was = self
            .below("target.cpu_cores")
            .map_or(String::new(), |b| format!(" (below the knee: {b:.2})"));
        let from = self
            .source("target")
            .filter(|s| !s.starts_with("/proc"))
            .map_or(String::new(), |s| format!("; read from {s}"));
        format!(
            "the target used {cpu:.2} of {:.0} cores{was}{from}",
            self.cores
        )
    }
}

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
    let cores = mean(knee, "host.cores")
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64));
    let ctx = Context {
        knee,
        below,
        cores,
        max_error_rate,
    };
    let mut v = rank(signals::all(&ctx));
    v.knee_step = Some(knee.name.clone());
    v.below_step = below.map(|b| b.name.clone());
    v.holds = holds;
    v.evidence.insert(0, latency_line(knee, below));
    if !steps.iter().any(|s| s.holds && s.phase != Phase::Recovery) {
        v.evidence.insert(0, nothing_held_line(knee));
        v.bottleneck = format!("nothing held: {}", v.bottleneck);
    }
    if sample_count(knee) < 3 && v.confidence == "high" {
        v.confidence = "medium".into();
        v.evidence.push(format!(
            "only {} samples in the knee step",
            sample_count(knee)
        ));
    }
    v
}

/// The strongest finding is the cause; errors are named beside it; others are mentioned.
pub fn rank(findings: Vec<Finding>) -> Verdict {
    let errors = findings.iter().find(|f| f.symptom.is_some()).cloned();
    let mut causes: Vec<Finding> = findings
        .into_iter()
        .filter(|f| f.symptom.is_none())
        .collect();
    // Strongest first; equal strengths keep the signals' order (a stable sort).
    causes.sort_by(|a, b| b.strength.total_cmp(&a.strength));
    let cause = causes.first().cloned();
    let chosen = match (errors, cause) {
        (Some(errors), Some(cause)) if cause.strength >= CAUSE_BESIDE_ERRORS => {
            let mut evidence = errors.evidence.clone();
            evidence.extend(cause.evidence.iter().cloned());
            Finding {
                bottleneck: format!("{}, with {}", cause.bottleneck, errors.bottleneck),
                evidence,
                symptom: errors.symptom,
                ..cause
            }
        }
        (Some(errors), _) => errors,
        (None, Some(cause)) => cause,
        (None, None) => Finding::new("unclear", "unclear: no single resource saturated", 0.1)
            .confirm("a flamegraph and the target's own metrics at the 95% hold step"),
    };
    let also = causes
        .iter()
        .filter(|f| f.strength >= ALSO_SEEN && f.kind != chosen.kind)
        .map(|f| format!("also seen: {} ({})", f.bottleneck, confidence(f.strength)));
    let mut evidence = chosen.evidence;
    evidence.extend(also);
    Verdict {
        bottleneck: chosen.bottleneck,
        kind: chosen.kind.into(),
        confidence: confidence(chosen.strength).into(),
        evidence,
        confirm: chosen.confirm,
        site: chosen.site,
        symptom: chosen.symptom,
        ..Verdict::default()
    }
}

fn confidence(strength: f64) -> &'static str {
    if strength >= 0.8 {
        "high"
    } else if strength >= 0.5 {
        "medium"
    } else {
        "low"
    }
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
    // Closed-model runs: the highest concurrency is the knee; a hunt whose probe got no good
    // answer has only its probe steps to show.
    let knee = knee
        .or_else(|| {
            steps
                .iter()
                .rfind(|s| s.concurrency.is_some() && s.phase != Phase::Probe)
        })
        .or_else(|| {
            (!steps.iter().any(|s| s.holds))
                .then(|| steps.iter().rfind(|s| s.phase == Phase::Probe))
                .flatten()
        });
    (knee, below)
}

/// When no step held at all: how far the lowest load was from the SLO.
fn nothing_held_line(knee: &StepResult) -> String {
    let load = knee.offered_rps.map_or_else(
        || format!("concurrency {}", knee.concurrency.unwrap_or(0)),
        |r| format!("{r:.0} req/s"),
    );
    let why = if knee.slo_failures.is_empty() {
        "it missed the SLO".to_string()
    } else {
        knee.slo_failures.join("; ")
    };
    format!("no step held, not even at {load} ({}): {why}", knee.name)
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
    .chain(processes::busiest_line(step))
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

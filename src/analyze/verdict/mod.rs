//! The bottleneck verdict: which resource saturated where latency broke (Brendan Gregg's USE:
//! utilization, saturation, errors), read at the *knee step* (the first step past capacity)
//! against the step just below it.
//!
//! Each signal (`signals`) is a small function that looks at one kind of evidence and, when it
//! sees something, returns a `Finding`: a kind, the words, the evidence in numbers, what would
//! confirm it, and a *rank* (`table`: its strength, 0–1, is how directly the evidence shows
//! that resource saturated at the knee). This module ranks them in one place: the strongest
//! finding is the cause; a symptom (errors over the SLO) is named beside the cause when there
//! is one; runners-up are mentioned. Confidence follows the strength (≥ 0.8 high, ≥ 0.5
//! medium, else low), capped at medium when the knee step has fewer than 3 samples. The ranks
//! and their order are in one table (`table::TABLE`, and docs/verdict.md).

pub use crate::model::verdict::{Confidence, Kind, Verdict};

mod disks;
mod endpoints;
mod gauge;
mod kernel;
mod limits;
#[cfg(test)]
mod limits_tests;
pub mod nagle;
mod processes;
mod replicas;
mod runtimes;
mod signals;
pub mod table;
#[cfg(test)]
mod tests;
mod waits;
#[cfg(test)]
mod waits_tests;

use super::{mean, sample_count};
use crate::model::series;
use crate::model::step::StepResult;
use crate::model::ErrorClass;
use crate::model::Phase;
use crate::slo::Slo;
use crate::units::fmt_ms;
use table::{Rank, ALSO_SEEN, CAUSE_BESIDE_ERRORS, MIN_SAMPLES};

/// What one signal saw.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub kind: Kind,
    pub bottleneck: String,
    /// Where it stands in the verdict's order (`table`).
    pub rank: Rank,
    /// 0–1: how directly the evidence shows this resource saturated at the knee (the rank's).
    pub strength: f64,
    pub evidence: Vec<String>,
    pub confirm: String,
    pub site: Option<String>,
    /// Set when this is what users see (failing requests: the top error class), not which
    /// resource saturated: it is named beside the cause.
    pub symptom: Option<ErrorClass>,
}

impl Finding {
    /// A finding of `kind` at `rank`.
    pub fn new(kind: Kind, rank: Rank, bottleneck: impl Into<String>) -> Finding {
        Finding {
            kind,
            bottleneck: bottleneck.into(),
            rank,
            strength: rank.strength(),
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

    /// The same finding at another rank (stronger or weaker evidence of the same thing).
    pub fn ranked(mut self, rank: Rank) -> Finding {
        self.rank = rank;
        self.strength = rank.strength();
        self
    }

    pub fn confirm(mut self, what: impl Into<String>) -> Finding {
        self.confirm = what.into();
        self
    }
}

/// What the signals read: the knee step, the step below it, and the run's facts.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub knee: &'a StepResult,
    pub below: Option<&'a StepResult>,
    /// The step below the knee whose wait profile is the baseline for growth (`waits_baseline`).
    pub waits_below: Option<&'a StepResult>,
    /// Every step of the run (a limiter is told by steps past the knee all alike).
    pub steps: &'a [StepResult],
    pub cores: f64,
    pub max_error_rate: f64,
}

impl Context<'_> {
    /// The mean of a sampled series at the knee.
    pub fn at_knee(&self, key: &str) -> Option<f64> {
        mean(self.knee, key)
    }

    /// A sampled series at the knee: min, mean and max.
    pub fn series_at_knee(&self, key: &str) -> Option<crate::model::Stat> {
        crate::analyze::series(self.knee, key)
    }

    /// The mean of a sampled series below the knee.
    pub fn below(&self, key: &str) -> Option<f64> {
        self.below.and_then(|b| mean(b, key))
    }

    pub fn target_cpu(&self) -> Option<f64> {
        self.at_knee(series::TARGET.cpu_cores)
    }

    /// Where a group of series ("host", "target") was read at the knee: /proc here, or an
    /// exporter's URL.
    pub fn source(&self, group: &str) -> Option<&str> {
        crate::model::observed::Samplers::of(self.knee)?
            .sources
            .get(group)
            .map(String::as_str)
    }

    /// The target is on another host: this machine was sampled as the generator's only.
    pub fn remote(&self) -> bool {
        self.at_knee(series::generator_host::CORES).is_some()
    }

    /// "the target used 1.07 of 2 cores (below the knee: 1.05)", and where that was read
    /// when not from /proc here ("; from http://staging:9100/metrics (process_* metrics)").
    pub fn cpu_line(&self, cpu: f64) -> String {
        let was = self
            .below(series::TARGET.cpu_cores)
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

/// The verdict for a run whose capacity (if known) is `capacity`, judged with this machine's
/// cores when the steps did not sample the host's.
pub fn verdict(steps: &[StepResult], capacity: Option<f64>, max_error_rate: f64) -> Verdict {
    let here = std::thread::available_parallelism().map_or(1, |n| n.get());
    let slo = Slo {
        max_error_rate: Some(max_error_rate),
        ..Slo::default()
    };
    verdict_on(steps, capacity, &slo, here)
}

/// The verdict, judged with `host_cores` (the run's recorded generator host) when the steps
/// did not sample the host's cores: a run re-judged on another machine keeps its own.
pub fn verdict_on(
    steps: &[StepResult],
    capacity: Option<f64>,
    slo: &Slo,
    host_cores: usize,
) -> Verdict {
    let max_error_rate = slo.max_error_rate.unwrap_or(0.01);
    let (knee, below) = knee_steps(steps, capacity);
    let holds = steps
        .iter()
        .filter(|s| s.phase == Phase::Hold)
        .map(|s| hold_line(s, capacity))
        .collect();
    let broke_first = endpoints::broke_first(steps, slo);
    let Some(knee) = knee else {
        return Verdict {
            broke_first,
            bottleneck: "no knee reached: every step held".into(),
            kind: Kind::Unclear,
            confidence: Confidence::Low,
            confirm: "offer more load (a higher --max-rate or more steps)".into(),
            holds,
            ..Verdict::default()
        };
    };
    let cores = mean(knee, series::host::CORES).unwrap_or(host_cores as f64);
    let ctx = Context {
        knee,
        below,
        waits_below: waits_baseline(steps, below, slo),
        steps,
        cores,
        max_error_rate,
    };
    let mut v = rank(signals::all(&ctx));
    replicas::across(&ctx, slo, &mut v);
    v.broke_first = broke_first;
    v.knee_step = Some(knee.name.clone());
    v.below_step = below.map(|b| b.name.clone());
    v.holds = holds;
    v.evidence.insert(0, latency_line(knee, below));
    if !steps.iter().any(|s| s.holds && s.phase != Phase::Recovery) {
        v.evidence.insert(0, nothing_held_line(knee));
        v.bottleneck = format!("nothing held: {}", v.bottleneck);
    }
    if sample_count(knee) < MIN_SAMPLES && v.confidence == Confidence::High {
        v.confidence = Confidence::Medium;
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
        (None, None) => Finding::new(
            Kind::Unclear,
            Rank::Unclear,
            "unclear: no single resource saturated",
        )
        .confirm("a flamegraph and the target's own metrics at the 95% hold step"),
    };
    let also = causes
        .iter()
        .filter(|f| f.strength >= ALSO_SEEN && f.kind != chosen.kind)
        .map(|f| {
            format!(
                "also seen: {} ({})",
                f.bottleneck,
                Confidence::of(f.strength)
            )
        });
    let mut evidence = chosen.evidence;
    evidence.extend(also);
    Verdict {
        bottleneck: chosen.bottleneck,
        kind: chosen.kind,
        confidence: Confidence::of(chosen.strength),
        evidence,
        confirm: chosen.confirm,
        site: chosen.site,
        symptom: chosen.symptom,
        ..Verdict::default()
    }
}

/// `knee_steps`, for the hunt's tests.
#[cfg(test)]
pub fn knee_steps_for_tests(
    steps: &[StepResult],
    capacity: Option<f64>,
) -> (Option<&StepResult>, Option<&StepResult>) {
    knee_steps(steps, capacity)
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

/// The baseline for wait growth: the step below the knee, unless its profiled tail (where
/// the profilers record) missed the SLO. Then its waits were recorded past the knee: the
/// profilers' own cost (py-spy pauses the process to read native frames; JFR and perf cost
/// less) can push a step at 95 % of capacity over it, and its waits per request are already
/// the knee's. The next hold step down whose tail held is the baseline instead; when none
/// held (py-spy's pauses cost a busy interpreter its p99 even at half the capacity), the
/// lowest hold step, whose waits the profiler disturbed least.
fn waits_baseline<'a>(
    steps: &'a [StepResult],
    below: Option<&'a StepResult>,
    slo: &Slo,
) -> Option<&'a StepResult> {
    let below = below?;
    let held = |s: &StepResult| s.profiled.as_ref().is_none_or(|t| slo.tail_holds(t));
    if held(below) || below.phase != Phase::Hold {
        return Some(below);
    }
    let rate = |s: &StepResult| s.offered_rps.unwrap_or(0.0);
    let profiled_below: Vec<&StepResult> = steps
        .iter()
        .filter(|s| {
            s.phase == Phase::Hold
                && s.holds
                && rate(s) < rate(below)
                && crate::model::observed::OffCpu::of(s).is_some()
        })
        .collect();
    profiled_below
        .iter()
        .filter(|s| held(s))
        .max_by(|a, b| rate(a).total_cmp(&rate(b)))
        .or_else(|| {
            profiled_below
                .iter()
                .min_by(|a, b| rate(a).total_cmp(&rate(b)))
        })
        .copied()
        .or(Some(below))
}

/// When no step held at all: how far the lowest load was from the SLO.
fn nothing_held_line(knee: &StepResult) -> String {
    let load = knee.offered_rps.map_or_else(
        || format!("concurrency {}", knee.concurrency.unwrap_or(0)),
        |r| format!("{r:.0} {}", crate::model::RateUnit::of(knee).per_second()),
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
        |r| {
            format!(
                "{r:.0} {} offered",
                crate::model::RateUnit::of(knee).per_second()
            )
        },
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
        fmt(series::TARGET.cpu_cores, &|v| {
            format!(
                "target CPU {v:.2}/{:.0} cores",
                mean(step, series::host::CORES).unwrap_or(0.0)
            )
        }),
        fmt(series::TARGET.rss_mb, &|v| format!("RSS {v:.0} MB")),
        fmt(series::TARGET.threads, &|v| format!("{v:.0} threads")),
        fmt(series::TARGET.fds, &|v| format!("{v:.0} fds")),
        fmt(series::TARGET.voluntary_ctx_per_s, &|v| {
            format!("{v:.0} vol ctx/s")
        }),
        fmt(series::host::CPU_CORES, &|v| format!("host CPU {v:.2}")),
        fmt(series::host::RUN_QUEUE, &|v| format!("run queue {v:.1}")),
        fmt(series::GENERATOR.cpu_cores, &|v| {
            format!("generator {v:.2} cores")
        }),
    ]
    .into_iter()
    .flatten()
    .chain(processes::busiest_line(step))
    .collect();
    format!(
        "{} ({share}{:.0} {}, p99 {}): {}",
        step.name,
        step.offered_rps.unwrap_or(0.0),
        crate::model::RateUnit::of(step).per_second(),
        fmt_ms(step.latency_ms.p99),
        if parts.is_empty() {
            "not sampled".to_string()
        } else {
            parts.join(", ")
        }
    )
}

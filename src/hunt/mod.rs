//! `knee hunt`: turn "I think it'll be fine" into a capacity figure with evidence.
//! 1. probe: a few closed-model concurrency levels estimate the ceiling;
//! 2. search: open-model rate steps ramp geometrically from well below it until one fails,
//!    then bisect until held and failed rates are within the resolution (`search`);
//! 3. hold steps at fractions of capacity (observers attach to these), the one past capacity
//!    classified for how the service fails (`stress`), then a recovery step at half capacity;
//! 4. the knee three ways (`knee`): capacity, latency knee (Kneedle), saturation throughput.

pub use crate::model::hunt::{HoldLine, KneeAnalysis};

pub mod knee;
pub mod search;
#[cfg(test)]
mod simulate;
pub mod stress;
pub mod usl;

use crate::error::Error;
use crate::model::step::StepResult;
use crate::model::step::StepResult as Step;
use crate::plan::{fmt_rate, HuntSettings, Load, Phase, StepSpec};
use crate::slo::LatencyBound;
use crate::slo::Slo;
use crate::units::fmt_ms;
use search::{round_rate, Ending, Search};
use std::time::Duration;

/// What the hunt drives: something that runs steps and keeps their results. The runner's
/// `Session` runs them on the engine against the target; a simulated target runs them in
/// no time (tests), so the search's edge cases are tested without load.
#[allow(async_fn_in_trait)]
pub trait StepRunner {
    /// Runs steps back to back, with no pause between them; their results (fewer when the
    /// run was interrupted).
    async fn chain(&mut self, specs: &[StepSpec]) -> Result<Vec<Step>, Error>;
    /// Every step run so far.
    fn steps(&self) -> &[Step];
    /// The SLO the steps are judged by (the hunt may add a latency bound).
    fn slo(&self) -> &Slo;
    fn slo_mut(&mut self) -> &mut Slo;
    /// Ctrl-C or SIGTERM ended the run.
    fn interrupted(&self) -> bool;

    /// Runs one step; None when the run was interrupted before it started.
    async fn step(&mut self, spec: &StepSpec) -> Result<Option<Step>, Error> {
        Ok(self.chain(std::slice::from_ref(spec)).await?.pop())
    }
}

/// Without an SLO, a step's p99 may be at most this many times the p99 of the lowest step...
pub const DEFAULT_P99_FACTOR: f64 = 10.0;
/// ...and never less than this bound, in milliseconds.
pub const DEFAULT_P99_FLOOR_MS: f64 = 10.0;
/// The Kneedle bend below which a curve is called straight (no latency knee).
const MIN_BEND: f64 = 0.1;

pub async fn run(
    session: &mut impl StepRunner,
    settings: &HuntSettings,
    slo_is_default: bool,
) -> Result<KneeAnalysis, Error> {
    let mut analysis = KneeAnalysis {
        slo_default: slo_is_default,
        ..KneeAnalysis::default()
    };
    // 1. Probe.
    let ceiling = probe(session, settings).await?;
    analysis.probe_ceiling_rps = ceiling;
    let Some(ceiling) = ceiling else {
        analysis.ending = if session.interrupted() {
            Ending::Interrupted
        } else {
            Ending::NothingHeld
        };
        analysis
            .notes
            .push("the closed-model probe got no good response at all".into());
        return Ok(finish(analysis, session));
    };
    // 2. Search.
    let mut search = Search::new(ceiling, settings.resolution, settings.max_rate);
    let mut ending = None;
    while let Some(rate) = search.next_rate() {
        let spec = rate_step(
            format!("search-{}", fmt_rate(rate)),
            Phase::Search,
            rate,
            settings,
            false,
        );
        let Some(step) = session.step(&spec).await? else {
            break;
        };
        if slo_is_default && !session.slo().latency.iter().any(|b| b.percentile == 99.0) {
            set_default_latency_bound(session, &step, &mut analysis);
        }
        if step.generator.limited {
            ending = Some(Ending::GeneratorLimited);
            analysis.notes.push(format!(
                "the generator is the limit at {}/s ({}): capacity is at least {}",
                fmt_rate(rate),
                step.generator.limited_reason.clone().unwrap_or_default(),
                search.highest_held().map_or("unknown".into(), fmt_rate)
            ));
            break;
        }
        search.record(rate, step.holds);
    }
    analysis.capacity_rps = search.highest_held();
    analysis.ending = match (session.interrupted(), ending, search.ending()) {
        (true, _, _) => Ending::Interrupted,
        (_, Some(e), _) => e,
        (_, None, search_ending) => search_ending,
    };
    if search.ending() == Ending::SearchStepCap {
        analysis.notes.push(format!(
            "the search stopped after {} steps without converging (held {}, failed {})",
            crate::plan::MAX_SEARCH_STEPS,
            search.highest_held().map_or("-".into(), fmt_rate),
            search.lowest_failed().map_or("-".into(), fmt_rate)
        ));
    }
    // 3. Hold steps, failure mode, recovery.
    if let (Some(capacity), false) = (analysis.capacity_rps, session.interrupted()) {
        hold_steps(session, settings, capacity, &mut analysis).await?;
        if !session.interrupted() {
            holds_upward(session, settings, capacity, &mut analysis).await?;
        }
    }
    Ok(finish(analysis, session))
}

/// Runs the closed-model probe; returns the best good throughput, if any.
async fn probe(
    session: &mut impl StepRunner,
    settings: &HuntSettings,
) -> Result<Option<f64>, Error> {
    let mut best: Option<f64> = None;
    for &concurrency in &settings.probe {
        let spec = StepSpec {
            profile: Duration::ZERO,
            profile_before_recovery: false,
            name: format!("probe-c{concurrency}"),
            phase: Phase::Probe,
            load: Load::Concurrency(concurrency),
            warmup: settings.probe_duration / 4,
            duration: settings.probe_duration,
        };
        let Some(step) = session.step(&spec).await? else {
            break;
        };
        let previous = best.unwrap_or(0.0);
        if step.ok_rps > 0.0 {
            best = Some(previous.max(step.ok_rps));
        }
        // More concurrency no longer helps (or only errors come back): the ceiling is known.
        if step.ok_rps < previous * 1.1 || step.error_rate > 0.5 {
            break;
        }
    }
    Ok(best)
}

/// No SLO given: p99 may be at most 10x the p99 of the lowest step, and at least 10 ms.
fn set_default_latency_bound(
    session: &mut impl StepRunner,
    lowest: &StepResult,
    analysis: &mut KneeAnalysis,
) {
    let bound = (lowest.latency_ms.p99 * DEFAULT_P99_FACTOR).max(DEFAULT_P99_FLOOR_MS);
    session.slo_mut().latency.push(LatencyBound {
        percentile: 99.0,
        limit_ms: bound,
    });
    analysis.notes.push(format!(
        "no SLO given: using errors <= 1% and p99 <= {} (10x the p99 of the lowest step, at least 10ms)",
        fmt_ms(bound)
    ));
}

fn rate_step(
    name: String,
    phase: Phase,
    rps: f64,
    settings: &HuntSettings,
    hold: bool,
) -> StepSpec {
    let (warmup, duration) = if hold {
        (settings.hold_warmup, settings.hold_duration)
    } else {
        (settings.step_warmup, settings.step_duration)
    };
    StepSpec {
        profile: Duration::ZERO,
        profile_before_recovery: false,
        name,
        phase,
        load: Load::Rate {
            rps,
            arrivals: settings.arrivals,
        },
        warmup,
        duration,
    }
}

async fn hold_steps(
    session: &mut impl StepRunner,
    settings: &HuntSettings,
    capacity: f64,
    analysis: &mut KneeAnalysis,
) -> Result<(), Error> {
    let specs: Vec<(f64, StepSpec)> = settings
        .holds
        .iter()
        .map(|&fraction| {
            let name = format!("hold-{:03.0}", fraction * 100.0);
            (
                fraction,
                rate_step(
                    name,
                    Phase::Hold,
                    round_rate(capacity * fraction),
                    settings,
                    true,
                ),
            )
        })
        .collect();
    // The highest hold above capacity is the overload step: the recovery step follows it
    // with no pause, so it meets whatever queue the overload left behind.
    let overload = specs
        .iter()
        .enumerate()
        .filter(|(_, (fraction, _))| *fraction > 1.0)
        .max_by(|a, b| a.1 .0.total_cmp(&b.1 .0))
        .map(|(i, _)| i);
    let recovery = StepSpec {
        profile: Duration::ZERO,
        profile_before_recovery: false,
        name: "recovery".into(),
        phase: Phase::Recovery,
        load: Load::Rate {
            rps: round_rate(capacity * 0.5),
            arrivals: settings.arrivals,
        },
        warmup: Duration::ZERO,
        duration: settings.hold_duration,
    };
    // The overload step is profiled only when no hold above capacity failed before it: its
    // stacks are then the knee's (it is the only hold above capacity, or the ones below it
    // held after all: a capacity found a few percent low). Otherwise the knee's hold has
    // them, and the recovery starts from what the overload alone left behind (no profiled
    // tail before it).
    let mut failed_above = false;
    for (i, (fraction, spec)) in specs.iter().enumerate() {
        let chain = if Some(i) == overload {
            let mut spec = spec.clone();
            spec.profile_before_recovery = !failed_above;
            vec![spec, recovery.clone()]
        } else {
            vec![spec.clone()]
        };
        let results = session.chain(&chain).await?;
        let Some(step) = results.first() else {
            return Ok(());
        };
        failed_above |= *fraction > 1.0 && !step.holds;
        analysis.holds.push(hold_line(*fraction, step));
        if Some(i) == overload {
            judge_overload(session, capacity, step, results.get(1), analysis);
        }
    }
    Ok(())
}

/// What a hold step at `fraction` of capacity gave, for the hold table.
fn hold_line(fraction: f64, step: &StepResult) -> HoldLine {
    HoldLine {
        fraction,
        step: step.name.clone(),
        offered_rps: step.offered_rps.unwrap_or(0.0),
        ok_rps: step.ok_rps,
        p99_ms: step.latency_ms.p99,
        error_rate: step.error_rate,
        holds: step.holds,
    }
}

/// Hold steps past the last one, when every hold above the search's capacity held.
const MAX_HOLDS_UPWARD: usize = 4;
/// Each of them this much above the one before.
const HOLDS_UPWARD_STEP: f64 = 1.2;

/// When every hold above the search's capacity held, the step that failed the search was a
/// passing spike (a search step is short and starts from the last one's load, a hold is
/// longer and starts warm), and the knee lies higher: a capacity too low and a knee that is
/// an unprofiled search step would say nothing of why the service breaks. Holds then go on
/// upward, 1.2x each, until one fails (it is the knee, profiled like every hold), the max
/// rate is reached or `MAX_HOLDS_UPWARD` have run; the capacity becomes the highest rate a
/// hold held at, and a note says so. The recovery was measured after the last planned hold.
async fn holds_upward(
    session: &mut impl StepRunner,
    settings: &HuntSettings,
    capacity: f64,
    analysis: &mut KneeAnalysis,
) -> Result<(), Error> {
    // Only a search that converged had a step fail above its capacity (at the max rate, or
    // capped, nothing above was meant to fail).
    if !matches!(
        analysis.ending,
        Ending::Converged | Ending::ConvergedAtRounding
    ) {
        return Ok(());
    }
    let above: Vec<&HoldLine> = analysis.holds.iter().filter(|h| h.fraction > 1.0).collect();
    if above.is_empty() || above.iter().any(|h| !h.holds) {
        return Ok(());
    }
    let mut fraction = above.iter().map(|h| h.fraction).fold(1.0, f64::max);
    let mut highest_held = above.iter().map(|h| h.offered_rps).fold(capacity, f64::max);
    let mut failed = None;
    for _ in 0..MAX_HOLDS_UPWARD {
        fraction *= HOLDS_UPWARD_STEP;
        let rate = round_rate(capacity * fraction);
        if settings.max_rate.is_some_and(|max| rate > max) {
            break;
        }
        let name = format!("hold-{:03.0}", fraction * 100.0);
        let spec = rate_step(name.clone(), Phase::Hold, rate, settings, true);
        let Some(step) = session.step(&spec).await? else {
            break;
        };
        analysis.holds.push(hold_line(fraction, &step));
        if step.generator.limited || session.interrupted() {
            break;
        }
        if !step.holds {
            failed = Some(step);
            break;
        }
        highest_held = rate;
    }
    analysis.notes.push(format!(
        "every hold above the search's capacity ({}/s) held: holds went on upward; capacity {}/s{} (the holds' percentages are of the search's capacity)",
        fmt_rate(capacity),
        fmt_rate(highest_held),
        match &failed {
            Some(step) => format!(", the knee {} ({}/s)", step.name, fmt_rate(step.offered_rps.unwrap_or(0.0))),
            None => ", no hold above it failed".into(),
        }
    ));
    analysis.capacity_rps = Some(highest_held);
    if let Some(step) = failed {
        let evidence = overload_evidence(session.steps(), &step);
        let bound_ms = latency_bound_ms(session);
        analysis.failure_mode = Some(stress::classify(&step, highest_held, bound_ms, evidence));
    }
    Ok(())
}

/// Classifies the overload step and times the recovery step that followed it.
fn judge_overload(
    session: &impl StepRunner,
    capacity: f64,
    overload: &StepResult,
    recovery: Option<&StepResult>,
    analysis: &mut KneeAnalysis,
) {
    let bound_ms = latency_bound_ms(session);
    let evidence = overload_evidence(session.steps(), overload);
    analysis.failure_mode = Some(stress::classify(overload, capacity, bound_ms, evidence));
    if let Some(step) = recovery {
        let max_errors = session.slo().max_error_rate.unwrap_or(0.01);
        analysis.recovery_s = stress::recovery_seconds(step, bound_ms, max_errors);
        analysis.recovery_measured = true;
    }
}

/// What the classifier needs beyond the overload step itself: whether the target answered
/// before it, and whether its process was seen gone during it (the sampler's `target.alive`).
fn overload_evidence(steps: &[StepResult], overload: &StepResult) -> stress::Evidence {
    stress::Evidence {
        worked_earlier: steps
            .iter()
            .any(|s| s.name != overload.name && s.ok_rps > 0.0),
        process_gone: crate::analyze::series(overload, "target.alive").is_some_and(|a| a.min < 1.0),
    }
}

/// The p99 bound of the SLO (or the tightest latency bound there is).
fn latency_bound_ms(session: &impl StepRunner) -> f64 {
    let bounds = &session.slo().latency;
    bounds
        .iter()
        .find(|b| b.percentile == 99.0)
        .or_else(|| {
            bounds
                .iter()
                .min_by(|a, b| a.limit_ms.total_cmp(&b.limit_ms))
        })
        .map_or(f64::INFINITY, |b| b.limit_ms)
}

/// `kind = "stress"`: the rising steps run back to back, then a recovery step at half the
/// highest rate that held follows the last one with no pause. The highest step past that
/// rate is classified for how the service fails.
pub async fn stress(
    session: &mut impl StepRunner,
    steps: &[StepSpec],
) -> Result<KneeAnalysis, Error> {
    let mut analysis = KneeAnalysis {
        ending: Ending::Steps,
        ..KneeAnalysis::default()
    };
    let (Some(last), Some(first)) = (steps.last(), steps.first()) else {
        return Ok(finish(analysis, session));
    };
    if steps.len() > 1 {
        session.chain(&steps[..steps.len() - 1]).await?;
    }
    // Until the last step has run, the recovery rate is a guess: half the highest rate that
    // held so far (or half the first rate).
    let held_so_far = session
        .steps()
        .iter()
        .filter(|s| s.holds)
        .filter_map(|s| s.offered_rps)
        .reduce(f64::max);
    let recovery_rate =
        round_rate(held_so_far.or(first.offered_rps()).unwrap_or(1.0) * 0.5).max(1.0);
    let recovery = StepSpec {
        profile: Duration::ZERO,
        profile_before_recovery: false,
        name: "recovery".into(),
        phase: Phase::Recovery,
        load: Load::Rate {
            rps: recovery_rate,
            arrivals: crate::plan::Arrivals::Uniform,
        },
        warmup: Duration::ZERO,
        duration: last.duration.max(Duration::from_millis(500)),
    };
    let results = session.chain(&[last.clone(), recovery]).await?;
    let open: Vec<&StepResult> = session
        .steps()
        .iter()
        .filter(|s| s.offered_rps.is_some() && s.phase != Phase::Recovery)
        .collect();
    analysis.capacity_rps = open
        .iter()
        .filter(|s| s.holds)
        .filter_map(|s| s.offered_rps)
        .reduce(f64::max);
    let overload = open
        .iter()
        .filter(|s| !s.holds && s.offered_rps > analysis.capacity_rps)
        .max_by(|a, b| {
            a.offered_rps
                .unwrap_or(0.0)
                .total_cmp(&b.offered_rps.unwrap_or(0.0))
        })
        .map(|s| (*s).clone());
    match (analysis.capacity_rps, overload) {
        (Some(capacity), Some(step)) => {
            judge_overload(session, capacity, &step, results.get(1), &mut analysis)
        }
        (None, _) => analysis
            .notes
            .push("no step held: no capacity to stress past".into()),
        (_, None) => analysis
            .notes
            .push("every step held: the stress test never passed the knee".into()),
    }
    Ok(finish(analysis, session))
}

/// Fills in the latency knee and saturation from every step so far, and the SLO used.
fn finish(mut analysis: KneeAnalysis, session: &impl StepRunner) -> KneeAnalysis {
    let curve: Vec<(f64, f64)> = session
        .steps()
        .iter()
        .filter(|s| s.phase != Phase::Recovery && !s.generator.limited && s.requests > 0)
        .filter_map(|s| s.offered_rps.map(|r| (r, s.latency_ms.p99)))
        .collect();
    analysis.latency_knee_rps = knee::kneedle(&curve, MIN_BEND);
    analysis.saturation_rps = session
        .steps()
        .iter()
        .filter(|s| s.phase != Phase::Recovery && !s.generator.limited)
        .map(|s| s.ok_rps)
        .reduce(f64::max)
        .filter(|r| *r > 0.0);
    for step in session.steps() {
        for note in &step.notes {
            analysis.notes.push(format!("{}: {note}", step.name));
        }
    }
    analysis.slo = session.slo().describe();
    if let Some(step) = session.steps().first() {
        analysis.rate_unit = crate::model::RateUnit::of(step);
    }
    analysis
}

#[cfg(test)]
mod kernel_tests {
    use super::*;
    use crate::model::step::testing::step;

    /// p99 at the SYN retransmit timeout with a flat median is dropped connections, not a
    /// queue without bound.
    #[test]
    fn a_retransmit_tail_with_a_flat_median_drops_connections() {
        let mut overload = step("hold-120", Phase::Hold, 600.0, 480.0, 1030.0).failing();
        overload.latency_ms.p50 = 1.1;
        overload.connect_ms = Some(crate::model::step::ConnectTimes {
            count: 2400,
            syn_retransmitted: 240,
            p50: 0.2,
            p90: 0.5,
            p99: 1020.0,
            max: 1050.0,
        });
        let evidence = stress::Evidence {
            worked_earlier: true,
            process_gone: false,
        };
        assert_eq!(
            stress::classify(&overload, 500.0, 100.0, evidence),
            stress::FailureMode::DropsConnections
        );
    }
}

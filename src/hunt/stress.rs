//! How a service fails past its knee, and how long it takes to recover. Read from a step
//! offered above capacity (the hunt's 120 % hold step, or a stress test's last steps) and the
//! recovery step that follows it at half the capacity.

pub use crate::model::FailureMode;

use crate::model::step::{ErrorClass, Slice, StepResult};

/// Good throughput below this share of capacity is a collapse.
const COLLAPSE_SHARE: f64 = 0.7;
/// Latency growing by this factor from the first to the last third of a step is a queue.
const QUEUE_GROWTH: f64 = 2.0;

/// What else is known when classifying: did the target answer before this step, and is its
/// process gone (when knee knows its pid)?
#[derive(Clone, Copy, Debug, Default)]
pub struct Evidence {
    pub worked_earlier: bool,
    pub process_gone: bool,
}

/// Classifies the overload step.
pub fn classify(
    step: &StepResult,
    capacity_rps: f64,
    latency_bound_ms: f64,
    evidence: Evidence,
) -> FailureMode {
    let refused = step
        .error_classes
        .get(&ErrorClass::ConnectRefused)
        .copied()
        .unwrap_or(0);
    let worked_before =
        evidence.worked_earlier || step.slices.iter().take(2).any(|s| s.requests > s.errors);
    if evidence.process_gone || (refused > 0 && worked_before) {
        return FailureMode::Crashes;
    }
    if step.holds {
        return FailureMode::Holds;
    }
    let counted: Vec<&Slice> = counted_slices(step);
    let growth = latency_growth(&counted);
    // At least 1 % of the connects waited for a SYN retransmit, and that is the tail.
    let retransmit_tail = step
        .connect_ms
        .as_ref()
        .is_some_and(|c| c.retransmitted_share() >= 0.01 && step.latency_ms.p99 >= 900.0);
    if retransmit_tail && growth < QUEUE_GROWTH {
        return FailureMode::DropsConnections;
    }
    let rejections = [ErrorClass::Http5xx, ErrorClass::Http4xx]
        .iter()
        .map(|c| step.error_classes.get(c).copied().unwrap_or(0))
        .sum::<u64>();
    let mostly_rejections = step.errors > 0 && rejections * 10 >= step.errors * 8;
    if step.ok_rps < COLLAPSE_SHARE * capacity_rps
        && !(mostly_rejections && step.ok_rps >= 0.5 * capacity_rps)
    {
        return FailureMode::Collapses;
    }
    if growth >= QUEUE_GROWTH && step.error_rate < 0.05 {
        return FailureMode::QueuesWithoutBound;
    }
    if mostly_rejections && step.error_rate >= 0.01 && step.latency_ms.p99 <= latency_bound_ms * 2.0
    {
        return FailureMode::ShedsGracefully;
    }
    if growth >= QUEUE_GROWTH {
        return FailureMode::QueuesWithoutBound;
    }
    FailureMode::Degrades
}

fn counted_slices(step: &StepResult) -> Vec<&Slice> {
    step.slices
        .iter()
        .filter(|s| s.t_s >= step.warmup_s - 1e-9 && s.requests > 0)
        .collect()
}

/// p50 of the last third of the slices over p50 of the first third.
fn latency_growth(slices: &[&Slice]) -> f64 {
    if slices.len() < 3 {
        return 1.0;
    }
    let third = slices.len() / 3;
    let mean = |part: &[&Slice]| part.iter().map(|s| s.p50_ms).sum::<f64>() / part.len() as f64;
    let first = mean(&slices[..third]);
    let last = mean(&slices[slices.len() - third..]);
    if first <= 0.0 {
        return 1.0;
    }
    last / first
}

/// Seconds from the start of the recovery step until every later slice has p99 within
/// `latency_bound_ms` and errors within `max_error_rate`; None if it never got there.
pub fn recovery_seconds(
    step: &StepResult,
    latency_bound_ms: f64,
    max_error_rate: f64,
) -> Option<f64> {
    let ok = |s: &Slice| {
        s.requests > 0
            && s.p99_ms <= latency_bound_ms
            && (s.errors as f64) <= max_error_rate * s.requests as f64
    };
    let slices: Vec<&Slice> = step.slices.iter().filter(|s| s.requests > 0).collect();
    let last_bad = slices.iter().rposition(|s| !ok(s));
    match last_bad {
        None => slices.first().map(|s| s.t_s),
        Some(i) if i + 1 < slices.len() => Some(slices[i + 1].t_s),
        Some(_) => None,
    }
}

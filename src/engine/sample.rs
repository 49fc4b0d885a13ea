//! What a worker emits for one request (`Record`), the step's time line it is read against,
//! and the histogram bounds every recorder shares: the bottom of the engine's recording,
//! which the recorders (`record`, `by_request`, `flow_tally`) read and nothing here imports.

pub use super::errors::Answer;
use super::errors::ErrorClass;
use crate::model::step::Percentiles;
use crate::plan::StepSpec;
use hdrhistogram::Histogram;
use std::time::Instant;

/// Histogram range: 1 µs to 60 s, 3 significant digits.
pub const HIST_MAX_US: u64 = 60_000_000;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("static histogram bounds are valid")
}

/// What happened to one request.
#[derive(Clone, Copy, Debug)]
pub enum Outcome {
    /// A whole response arrived.
    Response(Answer),
    Failed(ErrorClass),
}

#[derive(Clone, Copy, Debug)]
pub struct Record {
    pub intended: Instant,
    /// None when the request was never sent.
    pub sent: Option<Instant>,
    /// The connection this request opened, and how long that took.
    pub connected: Option<super::client::Connected>,
    pub done: Instant,
    pub outcome: Outcome,
    /// Which request of the mix it was (its index).
    pub request: u32,
}

impl Record {
    /// Request `request`, due at `intended` and never sent (found at `at`).
    pub fn not_sent(intended: Instant, at: Instant, request: usize) -> Record {
        Record {
            intended,
            sent: None,
            connected: None,
            done: at,
            outcome: Outcome::Failed(ErrorClass::NotSent),
            request: request as u32,
        }
    }
}

/// The step's time line: warm-up, the counted part (to `end`), then the profiled tail (to
/// `until`; empty when the step is not profiled).
#[derive(Clone, Copy, Debug)]
pub struct Timeline {
    pub start: Instant,
    pub counted_from: Instant,
    pub end: Instant,
    pub until: Instant,
}

impl Timeline {
    pub fn new(spec: &StepSpec, start: Instant) -> Self {
        let counted_from = start + spec.warmup;
        let end = counted_from + spec.duration;
        Timeline {
            start,
            counted_from,
            end,
            until: end + spec.profile,
        }
    }
}

/// Summary percentiles of a microsecond histogram, in milliseconds.
pub fn percentiles(hist: &Histogram<u64>) -> Percentiles {
    if hist.is_empty() {
        return Percentiles::default();
    }
    let ms = |us: u64| us as f64 / 1000.0;
    Percentiles {
        mean: hist.mean() / 1000.0,
        p50: ms(hist.value_at_quantile(0.50)),
        p90: ms(hist.value_at_quantile(0.90)),
        p99: ms(hist.value_at_quantile(0.99)),
        p999: ms(hist.value_at_quantile(0.999)),
        max: ms(hist.max()),
    }
}

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
    /// What the request took, as latency: from its intended send time, or from when it was
    /// sent if that was earlier (the dispatcher's batches are centred on their wake-up, so a
    /// request may go up to half a gap ahead of its time: it is never counted as taking less
    /// than it did). Which step and slice it belongs to stays its intended time.
    pub fn latency(&self) -> std::time::Duration {
        let start = match self.sent {
            Some(sent) => sent.min(self.intended),
            None => self.intended,
        };
        self.done.saturating_duration_since(start)
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn answered(intended: Instant, sent: Instant, done: Instant) -> Record {
        Record {
            intended,
            sent: Some(sent),
            connected: None,
            done,
            outcome: Outcome::Response(super::super::errors::Answer::http(200)),
            request: 0,
        }
    }

    #[test]
    fn latency_runs_from_the_earlier_of_intended_and_sent() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        // Sent 3 ms late: the wait counts (no coordinated omission).
        assert_eq!(answered(t, t + ms(3), t + ms(5)).latency(), ms(5));
        // Sent 0.4 ms early, answered before its intended time: what it took, not zero.
        let early = answered(t + ms(1), t, t + Duration::from_micros(900));
        assert_eq!(early.latency(), Duration::from_micros(900));
        // Never sent: from its intended time to when that was found.
        assert_eq!(Record::not_sent(t, t + ms(2), 0).latency(), ms(2));
    }
}

//! How a step's flows ended, counted beside its requests (one tally per recorder shard,
//! merged at the end). With flows the open model's unit is a flow, so the step's achieved
//! and good rates are flows that ended in the counted window, per second: a target that
//! answers every request but slowly finishes fewer flows than were started, as a plain
//! step achieves fewer responses than were offered.

use super::sample::Timeline;
use crate::model::step::FlowFigures;
use std::time::Instant;

/// How one flow ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowEnd {
    Completed,
    Failed,
    /// The step ended before its next request was due.
    Cut,
}

#[derive(Clone, Debug, Default)]
pub struct FlowTally {
    figures: FlowFigures,
    ended_in_window: u64,
    completed_in_window: u64,
    /// Ended in the profiled tail (after the counted window, before the schedule's end).
    ended_in_tail: u64,
    completed_in_tail: u64,
}

impl FlowTally {
    /// A flow started at `started` (its first request's intended time) ended at `done`.
    pub fn add(&mut self, timeline: &Timeline, started: Instant, done: Instant, end: FlowEnd) {
        let counted = |at: Instant| at >= timeline.counted_from && at < timeline.end;
        if counted(started) {
            let f = &mut self.figures;
            f.started += 1;
            match end {
                FlowEnd::Completed => f.completed += 1,
                FlowEnd::Failed => f.failed += 1,
                FlowEnd::Cut => f.cut += 1,
            }
        }
        let completed = u64::from(end == FlowEnd::Completed);
        if end != FlowEnd::Cut && counted(done) {
            self.ended_in_window += 1;
            self.completed_in_window += completed;
        }
        if end != FlowEnd::Cut && done >= timeline.end && done < timeline.until {
            self.ended_in_tail += 1;
            self.completed_in_tail += completed;
        }
    }

    pub fn merge(&mut self, other: &FlowTally) {
        let (f, o) = (&mut self.figures, &other.figures);
        f.started += o.started;
        f.completed += o.completed;
        f.failed += o.failed;
        f.cut += o.cut;
        self.ended_in_window += other.ended_in_window;
        self.completed_in_window += other.completed_in_window;
        self.ended_in_tail += other.ended_in_tail;
        self.completed_in_tail += other.completed_in_tail;
    }

    pub fn figures(&self) -> FlowFigures {
        self.figures.clone()
    }

    /// Flows per second that ended in the counted window, and those that completed.
    pub fn rates(&self, seconds: f64) -> (f64, f64) {
        per_second((self.ended_in_window, self.completed_in_window), seconds)
    }

    /// The same over the profiled tail, `seconds` long.
    pub fn tail_rates(&self, seconds: f64) -> (f64, f64) {
        per_second((self.ended_in_tail, self.completed_in_tail), seconds)
    }
}

/// (ended, completed) flows over `seconds`, per second.
fn per_second((ended, completed): (u64, u64), seconds: f64) -> (f64, f64) {
    let seconds = seconds.max(1e-9);
    (ended as f64 / seconds, completed as f64 / seconds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn flows_are_counted_by_their_start_and_rated_by_their_end() {
        let start = Instant::now();
        let timeline = Timeline {
            start,
            counted_from: start + Duration::from_secs(1),
            end: start + Duration::from_secs(3),
            until: start + Duration::from_secs(3),
        };
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut a = FlowTally::default();
        a.add(&timeline, at(500), at(1_200), FlowEnd::Completed); // warm-up start
        a.add(&timeline, at(1_500), at(1_700), FlowEnd::Completed);
        let mut b = FlowTally::default();
        b.add(&timeline, at(2_000), at(2_100), FlowEnd::Failed);
        b.add(&timeline, at(2_900), at(3_000), FlowEnd::Cut);
        b.add(&timeline, at(2_950), at(3_400), FlowEnd::Completed); // ends after the window
        a.merge(&b);
        assert_eq!(
            a.figures(),
            FlowFigures {
                started: 4,
                completed: 2,
                failed: 1,
                cut: 1
            }
        );
        // Ended in the window: the warm-up one, the 1.5 s one and the failed one.
        assert_eq!(a.rates(2.0), (1.5, 1.0));
    }
}

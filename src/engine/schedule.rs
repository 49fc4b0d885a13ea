//! Schedules of intended send times. The open model is a precomputed-on-the-fly sequence of
//! instants (uniform or Poisson) that does not care how the target is doing, which is what
//! makes latency honest: a stalled target delays sends, and the delay is counted as latency.
//! The closed model has no schedule: a worker's next request is intended the instant its
//! last one ended.

use crate::plan::{Arrivals, RecordedSends, RequestPlan};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Open-model send times in `[start, end)`.
pub struct OpenSchedule {
    start: Instant,
    end: Instant,
    interval_s: f64,
    arrivals: Arrivals,
    next_offset_s: f64,
    /// Offset of a uniform schedule's first send (a shard's phase).
    phase_s: f64,
    index: u64,
    rng: Rng,
    /// Recorded send times and their requests (`knee run --replay`), and the next one.
    recorded: Option<(Arc<RecordedSends>, usize)>,
    /// The request the last recorded send was (the mix picks the others).
    last_request: Option<usize>,
}

impl OpenSchedule {
    pub fn new(start: Instant, end: Instant, rps: f64, arrivals: Arrivals, seed: u64) -> Self {
        let mut schedule = OpenSchedule {
            start,
            end,
            interval_s: 1.0 / rps,
            arrivals,
            next_offset_s: 0.0,
            phase_s: 0.0,
            index: 0,
            rng: Rng::new(seed),
            recorded: None,
            last_request: None,
        };
        if arrivals == Arrivals::Poisson {
            schedule.next_offset_s = schedule.gap();
        }
        schedule
    }

    /// Shifts a uniform schedule by `phase` of its interval (shards interleave this way);
    /// a Poisson schedule is left as it is (shards' independent Poisson streams add up to one).
    pub fn with_phase(mut self, phase: f64) -> Self {
        if self.arrivals == Arrivals::Uniform {
            self.next_offset_s = phase * self.interval_s;
            self.phase_s = self.next_offset_s;
        }
        self
    }

    /// The recorded sends instead of a rate's (a replay is one shard: no phase).
    pub fn recorded(start: Instant, end: Instant, sends: Arc<RecordedSends>) -> Self {
        OpenSchedule {
            recorded: Some((sends, 0)),
            ..OpenSchedule::new(start, end, 1.0, Arrivals::Uniform, 0)
        }
    }

    /// The request of the send just returned, when the schedule is recorded.
    pub fn last_request(&self) -> Option<usize> {
        self.last_request
    }

    fn next_recorded(&mut self) -> Option<Instant> {
        let (sends, next) = self.recorded.as_mut()?;
        let &(offset_s, request) = sends.0.get(*next)?;
        let at = self.start + Duration::from_secs_f64(offset_s.max(0.0));
        if at >= self.end {
            return None;
        }
        *next += 1;
        self.last_request = Some(request as usize);
        Some(at)
    }

    fn gap(&mut self) -> f64 {
        // Exponential inter-arrival time with mean 1/rate.
        -(1.0 - self.rng.next_f64()).ln() * self.interval_s
    }
}

impl Iterator for OpenSchedule {
    type Item = Instant;

    fn next(&mut self) -> Option<Instant> {
        if self.recorded.is_some() {
            return self.next_recorded();
        }
        let at = self.start + Duration::from_secs_f64(self.next_offset_s);
        if at >= self.end {
            return None;
        }
        self.index += 1;
        self.next_offset_s = match self.arrivals {
            // Multiplying (not adding) keeps uniform schedules free of accumulated rounding.
            Arrivals::Uniform => self.phase_s + self.index as f64 * self.interval_s,
            Arrivals::Poisson => self.next_offset_s + self.gap(),
        };
        Some(at)
    }
}

/// Picks requests of the mix in proportion to their weights.
#[derive(Clone)]
pub struct Mix {
    cumulative: Vec<u64>,
}

impl Mix {
    pub fn new(requests: &[RequestPlan]) -> Self {
        Mix::of_weights(&requests.iter().map(|r| r.weight).collect::<Vec<_>>())
    }

    /// Picks indexes in proportion to `weights` (a user flow's, say).
    pub fn of_weights(weights: &[u32]) -> Self {
        let mut total = 0;
        let cumulative = weights
            .iter()
            .map(|w| {
                total += u64::from((*w).max(1));
                total
            })
            .collect();
        Mix { cumulative }
    }

    pub fn pick(&self, rng: &mut Rng) -> usize {
        if self.cumulative.len() <= 1 {
            return 0;
        }
        let total = *self.cumulative.last().unwrap_or(&1);
        let ticket = rng.next_u64() % total;
        self.cumulative.partition_point(|&c| c <= ticket)
    }
}

/// SplitMix64: small, fast, good enough for arrival gaps and request picks.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::Method;

    #[test]
    fn uniform_schedule_is_exact() {
        let start = Instant::now();
        let end = start + Duration::from_secs(1);
        let times: Vec<_> = OpenSchedule::new(start, end, 1000.0, Arrivals::Uniform, 1).collect();
        assert_eq!(times.len(), 1000);
        assert_eq!(times[500] - start, Duration::from_millis(500));
    }

    #[test]
    fn shards_interleave_into_the_whole_uniform_schedule() {
        let start = Instant::now();
        let end = start + Duration::from_secs(1);
        let mut times: Vec<_> = (1..=3)
            .flat_map(|i| {
                let shard = crate::plan::Shard { index: i, count: 3 };
                OpenSchedule::new(start, end, 100.0, Arrivals::Uniform, 1).with_phase(shard.phase())
            })
            .collect();
        times.sort();
        let whole: Vec<_> = OpenSchedule::new(start, end, 300.0, Arrivals::Uniform, 1).collect();
        assert_eq!(times.len(), whole.len());
        for (a, b) in times.iter().zip(&whole) {
            let gap = if a > b { *a - *b } else { *b - *a };
            assert!(gap < Duration::from_micros(1), "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn poisson_schedule_has_the_right_mean_rate() {
        let start = Instant::now();
        let end = start + Duration::from_secs(10);
        let count = OpenSchedule::new(start, end, 1000.0, Arrivals::Poisson, 7).count();
        // 10,000 expected; the standard deviation is 100.
        assert!((9500..10500).contains(&count), "{count}");
    }

    #[test]
    fn mix_follows_weights() {
        let request = |weight| RequestPlan {
            name: String::new(),
            method: Method::GET,
            path: String::new(),
            headers: Vec::new(),
            body: Bytes::new(),
            weight,
            slo: None,
        };
        let mix = Mix::new(&[request(1), request(3)]);
        let mut rng = Rng::new(3);
        let picks_of_second = (0..40_000).filter(|_| mix.pick(&mut rng) == 1).count();
        assert!(
            (29_000..31_000).contains(&picks_of_second),
            "{picks_of_second}"
        );
    }
}

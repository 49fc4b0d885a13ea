//! Recording from several threads at once: each lane (and the dispatcher) records into a
//! `StepRecorder` of its own, picked by a thread-local index, so recording a request takes
//! an uncontended lock instead of a channel to a collector; the step's figures are the
//! shards merged (histograms added, never percentiles averaged).

use super::record::{percentiles, Live, Record, StepRecorder, Timeline};
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One recorder per thread that records, merged when the step ends.
pub struct Shards {
    shards: Vec<Mutex<StepRecorder>>,
}

thread_local! {
    /// Which shard this thread records into.
    static SHARD: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed)
    };
}

impl Shards {
    pub fn new(
        count: usize,
        timeline: Timeline,
        lag_bound: Duration,
        named: &std::sync::Arc<super::by_request::Named>,
    ) -> Self {
        Shards {
            shards: (0..count.max(1))
                .map(|_| Mutex::new(StepRecorder::new(timeline, lag_bound, named.clone())))
                .collect(),
        }
    }

    fn lock(&self, index: usize) -> std::sync::MutexGuard<'_, StepRecorder> {
        self.shards[index % self.shards.len()]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    pub fn add(&self, record: &Record) {
        SHARD.with(|&i| self.lock(i).add(record));
    }

    pub fn add_flow(&self, started: Instant, done: Instant, end: super::flow_tally::FlowEnd) {
        SHARD.with(|&i| self.lock(i).add_flow(started, done, end));
    }

    pub fn sample_in_flight(&self, now: Instant, in_flight: u64) {
        self.lock(0).sample_in_flight(now, in_flight);
    }

    pub fn sample_connections(&self, now: Instant, stats: (u64, u64, u64)) {
        self.lock(0).sample_connections(now, stats);
    }

    /// Live figures of the whole step so far.
    pub fn live(&self, now: Instant, scratch: &mut Histogram<u64>) -> Live {
        scratch.reset();
        let mut live = Live::default();
        for i in 0..self.shards.len() {
            let shard = self.lock(i);
            let _ = scratch.add(&shard.latency);
            let part = shard.live(now);
            live.requests += part.requests;
            live.errors += part.errors;
            live.achieved_rps += part.achieved_rps;
        }
        live.p99_ms = percentiles(scratch).p99;
        live
    }

    /// The whole step, all shards merged.
    pub fn merged(self) -> StepRecorder {
        let mut shards = self
            .shards
            .into_iter()
            .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()));
        let mut total = shards.next().expect("at least one shard");
        for shard in shards {
            total.merge(&shard);
        }
        total
    }
}

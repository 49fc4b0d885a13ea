//! The figures a step is made of, shared by the step and what was observed: percentiles,
//! time slices, connect times, and the generator's health.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How often the requests in flight (`in_flight_mean`) and knee's connections are sampled.
pub const IN_FLIGHT_EVERY: Duration = Duration::from_millis(10);

/// One time slice of a step. Requests are placed by intended send time, completions by the
/// time they completed.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Slice {
    /// Start of the slice, seconds from the start of the step.
    pub t_s: f64,
    pub requests: u64,
    pub errors: u64,
    /// Responses completed in the slice, per second.
    pub completed_rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// One objective a step was held to, with what the step measured against it: what a CI
/// system shows as one test case (`--junit`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SloCheck {
    /// "p99 <= 50.0ms", "errors <= 1%", "achieved >= 97% of offered", "the generator kept up".
    pub objective: String,
    /// "p99 72.1ms", "errors 0.20%", "achieved 497.3/s of 500.0/s".
    pub measured: String,
    /// Set when the step missed it: "p99 72.1ms > 50.0ms".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// How long connections took to open, in milliseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ConnectTimes {
    pub count: u64,
    /// Connects that took at least 0.9 s: their SYN was dropped and sent again after TCP's
    /// 1 s retransmission timeout (a full listen queue, or loss).
    #[serde(default)]
    pub syn_retransmitted: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl ConnectTimes {
    /// Share of the connects that waited for a SYN retransmit.
    pub fn retransmitted_share(&self) -> f64 {
        self.syn_retransmitted as f64 / self.count.max(1) as f64
    }

    /// The rung of TCP's SYN retransmission ladder (1 s, then 3 s, then 7 s after the first
    /// SYN) the connect p99 sits on, in ms: the sign of SYNs dropped by a full listen queue.
    pub fn retransmit_rung(&self) -> Option<f64> {
        [
            (1000.0, 900.0, 1400.0),
            (3000.0, 2800.0, 3600.0),
            (7000.0, 6500.0, 7900.0),
        ]
        .iter()
        .find(|(_, lo, hi)| (*lo..=*hi).contains(&self.p99))
        .map(|(rung, ..)| *rung)
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// Latency of the requests that opened their connection against those that reused one,
/// warm-up included (where most connections open): a service that stalls only on reused
/// connections (Nagle's algorithm against the client's delayed ACK) shows here.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ByConnection {
    pub fresh: ConnectionLatency,
    pub reused: ConnectionLatency,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ConnectionLatency {
    pub requests: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Share of the answers that took 38–52 ms: Linux's delayed-ACK timer (40 ms).
    pub at_ack_timer: f64,
}

/// A step's profiled tail: the same load after the counted part, while the profilers
/// recorded (`profiled` in steps.jsonl). Not counted in the step's figures; set beside them,
/// it is what profiling cost the target.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ProfiledWindow {
    pub seconds: f64,
    /// Requests whose intended send time fell in the tail.
    pub requests: u64,
    pub errors: u64,
    /// Responses (any status, and good ones) completed in the tail, per second.
    pub achieved_rps: f64,
    pub ok_rps: f64,
    /// From the intended send time, as the step's own.
    pub latency_ms: Percentiles,
}

impl ProfiledWindow {
    /// Good throughput in the tail against the counted part's: −0.06 is 6 % less.
    pub fn throughput_change(&self, counted_ok_rps: f64) -> Option<f64> {
        (counted_ok_rps > 0.0 && self.requests > 0).then(|| self.ok_rps / counted_ok_rps - 1.0)
    }

    /// p99 in the tail over the counted part's.
    pub fn p99_ratio(&self, counted_p99_ms: f64) -> Option<f64> {
        (counted_p99_ms > 0.0 && self.requests > 0).then(|| self.latency_ms.p99 / counted_p99_ms)
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct GeneratorHealth {
    /// Actual send − intended send, over all sent requests (includes waiting for a free
    /// connection, which a slow target causes).
    pub send_lag_p50_ms: f64,
    pub send_lag_p99_ms: f64,
    pub send_lag_max_ms: f64,
    /// How late the scheduler itself handed requests out: the generator's own lateness.
    pub dispatch_lag_p99_ms: f64,
    /// Share of one core the scheduler thread used (open model).
    #[serde(default)]
    pub dispatcher_busy: f64,
    /// Requests sent later than the lateness bound after their intended time.
    pub late_sends: u64,
    /// The lateness bound used for `late_sends` and `limited`, ms.
    pub lag_bound_ms: f64,
    /// Requests never sent (backlog full or drain deadline passed).
    pub not_sent: u64,
    /// CPU used by the generator's threads, in cores.
    pub cpu_cores: f64,
    /// Cores the generator may use.
    pub cpu_available: f64,
    /// knee's connections to the target: the most open at once in the counted window.
    pub connections: u64,
    /// ...their mean over the window (sampled every 10 ms)...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections_mean: Option<f64>,
    /// HTTP/2 streams in flight per connection (`--h2-streams`): requests in flight over
    /// connections open, both means over the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streams_per_connection: Option<f64>,
    /// ...and how many were opened and closed during it.
    #[serde(default)]
    pub connections_opened: u64,
    #[serde(default)]
    pub connections_closed: u64,
    /// The generator, not the target, was the limit: this step says nothing about the target.
    pub limited: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limited_reason: Option<String>,
    /// In a chain of steps, the step started this late against its schedule (the steps
    /// before it ran long): it started then, with no catch-up burst of the requests missed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_late_ms: Option<f64>,
    /// The scheduler was late although idle: another process held the CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_contention: Option<String>,
}

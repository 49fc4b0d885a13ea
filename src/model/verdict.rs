//! The bottleneck verdict as run.json keeps it: the kind of resource (one enum, named in
//! the schema), the confidence, the words and the evidence.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Verdict {
    /// In words: "serialized on a lock", "CPU-bound (target)", ...
    pub bottleneck: String,
    pub kind: Kind,
    pub confidence: Confidence,
    pub evidence: Vec<String>,
    /// What would confirm it.
    pub confirm: String,
    /// Where the wait is: the application function closest to it, or the downstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// The top error class, when errors crossed the SLO at the knee beside the cause.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symptom: Option<super::step::ErrorClass>,
    /// The step read as the knee, and the one below it.
    pub knee_step: Option<String>,
    pub below_step: Option<String>,
    /// One line per hold step: what was at what utilization.
    pub holds: Vec<String>,
    /// For a mix of several requests, which one broke first and where ("search broke first:
    /// p99 420ms at 310 req/s total (93 req/s of it), while item held to 600 req/s").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broke_first: Option<String>,
}

/// What saturated at the knee (`verdict.kind`). The order here is the documented order of
/// the kinds; their strengths are in `analyze::verdict::table`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Requests failing over the SLO: what users see (named beside a cause).
    Errors,
    MemoryPressure,
    Lock,
    Pool,
    Downstream,
    Disk,
    Waiting,
    CpuBound,
    SingleThread,
    HostContention,
    Serialized,
    AcceptQueue,
    Network,
    /// A cgroup's CPU quota ran out (throttled).
    CpuThrottled,
    /// A cgroup's memory limit: reclaim, failed charges, OOM kills.
    MemoryLimit,
    /// Out of file descriptors (RLIMIT_NOFILE).
    FdLimit,
    /// Garbage collection paused the service.
    Gc,
    /// A rate limiter answered the rest (429/503) at a flat rate.
    RateLimited,
    /// Nagle's algorithm against the client's delayed ACK: a 40 ms stall per response on a
    /// reused connection.
    Nagle,
    /// The local balancer in front of the service is at its CPU (its worker processes busy).
    Balancer,
    #[default]
    Unclear,
}

impl Kind {
    pub const ALL: [Kind; 21] = [
        Kind::Errors,
        Kind::MemoryPressure,
        Kind::Lock,
        Kind::Pool,
        Kind::Downstream,
        Kind::Disk,
        Kind::Waiting,
        Kind::CpuBound,
        Kind::SingleThread,
        Kind::HostContention,
        Kind::Serialized,
        Kind::AcceptQueue,
        Kind::Network,
        Kind::CpuThrottled,
        Kind::MemoryLimit,
        Kind::FdLimit,
        Kind::Gc,
        Kind::RateLimited,
        Kind::Nagle,
        Kind::Balancer,
        Kind::Unclear,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Errors => "errors",
            Kind::MemoryPressure => "memory_pressure",
            Kind::Lock => "lock",
            Kind::Pool => "pool",
            Kind::Downstream => "downstream",
            Kind::Disk => "disk",
            Kind::Waiting => "waiting",
            Kind::CpuBound => "cpu_bound",
            Kind::SingleThread => "single_thread",
            Kind::HostContention => "host_contention",
            Kind::Serialized => "serialized",
            Kind::AcceptQueue => "accept_queue",
            Kind::Network => "network",
            Kind::CpuThrottled => "cpu_throttled",
            Kind::MemoryLimit => "memory_limit",
            Kind::FdLimit => "fd_limit",
            Kind::Gc => "gc",
            Kind::RateLimited => "rate_limited",
            Kind::Nagle => "nagle",
            Kind::Balancer => "balancer",
            Kind::Unclear => "unclear",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How directly the evidence shows it (`verdict.confidence`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    #[default]
    Low,
    Medium,
    High,
}

impl Confidence {
    /// ≥ 0.8 high, ≥ 0.5 medium, else low.
    pub fn of(strength: f64) -> Confidence {
        if strength >= 0.8 {
            Confidence::High
        } else if strength >= 0.5 {
            Confidence::Medium
        } else {
            Confidence::Low
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::Low => "low",
            Confidence::Medium => "medium",
            Confidence::High => "high",
        }
    }
}

impl std::fmt::Display for Confidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for Kind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<&str> for Confidence {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

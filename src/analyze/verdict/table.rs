//! The verdict's order in one table. Every signal returns its finding at one of these ranks;
//! the rank's strength (0–1) orders the findings and sets the confidence (≥ 0.8 high,
//! ≥ 0.5 medium). The table is strongest first, and docs/verdict.md lists the same ranks in
//! the same order (a test holds the two together), so the order a reader is told is the
//! order the code uses. The thresholds the signals judge by are here too, named.
//!
//! Why this order: direct evidence of a saturated resource (memory swapping, every core
//! busy, one thread at a full core) beats where the waiting is, which beats a symptom
//! (a queue gauge growing, the accept queue overflowing), which beats the absence of
//! something (the CPU not busy: "waiting"). A saturated downstream ranks above the accept
//! queue because a target whose workers all wait on it accepts slowly and overflows its
//! backlog; the reverse never holds.

use crate::model::verdict::Kind;

/// The ranks a finding can have, strongest first (the order of `TABLE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rank {
    /// The target's cgroup at its memory limit (reclaiming, failing charges, OOM kills).
    MemoryLimit,
    /// Swapping, knee's cgroup near its memory limit, or the target's RSS jumping.
    MemoryPressure,
    /// The target's open files at its RLIMIT_NOFILE while connections fail or stall.
    FdLimit,
    /// The target's cgroup CPU quota ran out in most periods, the target at its quota.
    CpuThrottled,
    /// Responses on reused connections stall at the delayed-ACK timer (Nagle).
    Nagle,
    /// The target used ≥ 90 % of the cores.
    CpuSaturated,
    /// One thread at ≥ 0.75 of a core, the others under half of it.
    OneThread,
    /// About one core busy while the threads wait mostly for CPython's GIL.
    Gil,
    /// A downstream the target holds connections to is CPU-bound while the target waits.
    SaturatedDownstream,
    /// The local balancer in front of the target at ≥ 90 % of its worker processes' CPU.
    SaturatedBalancer,
    /// The listen backlog overflowed while the target's CPU was not saturated.
    AcceptQueue,
    /// Good throughput flat while the rest is answered 429/503 fast, CPU low.
    RateLimited,
    /// Errors over the SLO (a symptom: named beside a cause at least `CAUSE_BESIDE_ERRORS`).
    Errors,
    /// A wait site holding ≥ 50 % of the waiting whose time per request grew ≥ 1 ms.
    StrongWaitSite,
    /// A queue gauge growing, with the target's CPU known.
    QueueGaugeWithCpu,
    /// The runtime paused for GC ≥ 10 % of the time, at least twice the share below.
    Gc,
    /// The disk the target writes to ≥ 80 % busy.
    DiskBusy,
    /// A wait site that grew per request, holding ≥ 25 % of the waiting.
    WaitSite,
    /// A queue gauge growing, the target's CPU unknown.
    QueueGauge,
    /// The listen backlog overflowed while every core was busy (the CPU's echo).
    AcceptQueueCpuSaturated,
    /// The target used ≥ 85 % of the cores, or most of a full host.
    CpuBound,
    /// Retransmits rising without listen overflows.
    Network,
    /// The host was full and others held a real share, or the generator was busy.
    HostContention,
    /// About one core busy on a host with more: a lock or a single thread.
    Serialized,
    /// Latency climbed while the target's threads only idled (an async runtime).
    IdleRuntime,
    /// Less than half the cores busy: waiting on something that is not CPU.
    Waiting,
    /// No target process; a remote target's host full (its own exporter says so).
    RemoteHostFull,
    /// No target process; this host full.
    HostFull,
    /// No target process; this host not full.
    HostNotFull,
    /// A remote target whose host nobody reported.
    HostUnknown,
    /// Nothing saturated that knee could see.
    Unclear,
    /// The target's cgroup writes at its I/O limit (io.max, blkio throttle).
    IoLimit,
}

/// Each rank's strength, strongest first.
pub const TABLE: [(Rank, f64); 32] = [
    (Rank::MemoryLimit, 0.96),
    (Rank::MemoryPressure, 0.95),
    (Rank::FdLimit, 0.94),
    (Rank::CpuThrottled, 0.93),
    (Rank::Nagle, 0.91),
    (Rank::IoLimit, 0.9),
    (Rank::CpuSaturated, 0.9),
    (Rank::OneThread, 0.9),
    (Rank::Gil, 0.9),
    (Rank::SaturatedDownstream, 0.89),
    (Rank::SaturatedBalancer, 0.89),
    (Rank::AcceptQueue, 0.88),
    (Rank::RateLimited, 0.87),
    (Rank::Errors, 0.85),
    (Rank::StrongWaitSite, 0.85),
    (Rank::QueueGaugeWithCpu, 0.8),
    (Rank::Gc, 0.8),
    (Rank::DiskBusy, 0.7),
    (Rank::WaitSite, 0.65),
    (Rank::QueueGauge, 0.6),
    (Rank::AcceptQueueCpuSaturated, 0.6),
    (Rank::CpuBound, 0.55),
    (Rank::Network, 0.55),
    (Rank::HostContention, 0.54),
    (Rank::Serialized, 0.52),
    (Rank::IdleRuntime, 0.51),
    (Rank::Waiting, 0.5),
    (Rank::RemoteHostFull, 0.5),
    (Rank::HostFull, 0.3),
    (Rank::HostNotFull, 0.25),
    (Rank::HostUnknown, 0.2),
    (Rank::Unclear, 0.1),
];

impl Rank {
    pub fn strength(self) -> f64 {
        TABLE
            .iter()
            .find(|(rank, _)| *rank == self)
            .map_or(0.0, |(_, strength)| *strength)
    }
}

/// A cause at least this strong is named when errors crossed the SLO too (one core busy
/// is; "waiting", which is only the absence of CPU, is not).
pub const CAUSE_BESIDE_ERRORS: f64 = 0.52;
/// Other findings at least this strong are mentioned as "also seen".
pub const ALSO_SEEN: f64 = 0.4;

/// Target CPU at or above this share of the cores is CPU-bound, whatever else is queueing...
pub const CPU_SATURATED_SHARE: f64 = 0.9;
/// ...and at or above this share a weaker CPU-bound finding...
pub const CPU_BOUND_SHARE: f64 = 0.85;
/// ...or, when the host is full (`HOST_FULL_SHARE` of its cores busy), at or above this
/// share of what the host used, and more than `MOST_OF_THE_CORES` of the cores.
pub const MOST_OF_A_FULL_HOST: f64 = 0.75;
pub const MOST_OF_THE_CORES: f64 = 0.7;
/// The host counts as full at this share of its cores busy.
pub const HOST_FULL_SHARE: f64 = 0.9;
/// CPU outside the target (and its downstreams) that makes a full host contended, cores;
/// the generator's own CPU that does.
pub const OTHERS_CORES: f64 = 0.5;
pub const GENERATOR_CORES: f64 = 0.5;
/// knee's own cgroup throttled this share of the time is contention.
pub const THROTTLED_SHARE: f64 = 0.1;
/// "About one core": the target's CPU in this range, and at most this share of the cores.
pub const ONE_CORE: std::ops::RangeInclusive<f64> = 0.6..=1.4;
pub const ONE_CORE_MAX_SHARE: f64 = 0.7;
/// Below this share of the cores, the target is waiting.
pub const WAITING_SHARE: f64 = 0.5;
/// Disk I/O worth naming beside "waiting", bytes per second.
pub const NOTABLE_IO: f64 = 1e6;
/// Memory pressure: swap growth (MB), the cgroup's share of its limit, the target's RSS
/// jump (MB, and share of its RSS).
pub const SWAP_GROWTH_MB: f64 = 50.0;
pub const CGROUP_MEMORY_SHARE: f64 = 0.9;
pub const RSS_JUMP_MB: f64 = 50.0;
pub const RSS_JUMP_SHARE: f64 = 0.25;
/// A queue gauge "grows" when it is at least 1 at the knee and at least twice (below + ½).
pub const GAUGE_MIN: f64 = 1.0;
pub const GAUGE_GROWTH: f64 = 2.0;
/// A downstream using this many cores is saturated: one core is all a single-threaded
/// database or cache has, and 90 % of a 1-core host is all of it.
pub const SATURATED_DOWNSTREAM_CORES: f64 = 0.9;
/// A thread at this share of a core is saturated (on a host shared with the generator and
/// a profiler, one thread rarely gets a whole core); the others together under this share
/// of it.
pub const ONE_THREAD_CORES: f64 = 0.75;
pub const OTHER_THREADS_SHARE: f64 = 0.5;
/// A wait site's share of the waiting at the knee to be a finding at all, and to be strong;
/// its growth per request (knee over below), the least growth in ms, and the growth in ms
/// per request for a strong one.
pub const SITE_SHARE: f64 = 25.0;
pub const STRONG_SHARE: f64 = 50.0;
pub const SITE_GROWTH: f64 = 2.0;
pub const SITE_MIN_GROWTH_MS: f64 = 0.05;
pub const STRONG_GROWTH_MS: f64 = 1.0;
/// A runtime's profile names the service's hottest function when at least this share of
/// the samples (percent) is under it.
pub const OWN_FUNCTION_SHARE: f64 = 20.0;
/// Idle runtime: p99 at least this many times the step below's, and idle at least this
/// share of the off-CPU time.
pub const IDLE_P99_GROWTH: f64 = 2.0;
pub const IDLE_SHARE: f64 = 0.5;
/// Listen overflows per second at the knee that count (and 2× below + 1).
pub const MIN_OVERFLOWS_PER_S: f64 = 1.0;
/// Retransmitted segments per second that count (and 3× below + 10); SYN cookies per second.
pub const MIN_RETRANSMITS_PER_S: f64 = 10.0;
pub const MIN_SYNCOOKIES_PER_S: f64 = 1.0;
/// Below this many samples in the knee step, a high confidence becomes medium.
pub const MIN_SAMPLES: u64 = 3;
/// CPU throttled: the quota ran out in this share of the periods at the knee, the target
/// using at least this share of its quota.
pub const THROTTLED_PERIODS: f64 = 0.25;
pub const AT_QUOTA: f64 = 0.8;
/// Memory limit: the cgroup at this share of its limit (or hitting it, or OOM kills).
pub const NEAR_MEMORY_LIMIT: f64 = 0.9;
/// File descriptors: open at this share of the limit, or within this many of it.
pub const FD_LIMIT_SHARE: f64 = 0.9;
pub const FD_LIMIT_SLACK: f64 = 5.0;
/// A disk this busy (0–1) at the knee, the target writing.
pub const DISK_BUSY: f64 = 0.8;
/// The cgroup's writes at this share of its write-IOPS limit.
pub const AT_IO_LIMIT: f64 = 0.8;
/// GC: paused this share of the time at the knee, and this many times the share below.
pub const GC_SHARE: f64 = 0.1;
pub const GC_GROWTH: f64 = 2.0;
/// A limiter: at least this share rejected, this share of the errors 429/503, p50 at most
/// this many times the step below's, and good throughput past the knee within this factor.
pub const LIMITER_REJECTED: f64 = 0.02;
pub const LIMITER_STATUS_SHARE: f64 = 0.8;
pub const LIMITER_FAST: f64 = 3.0;
pub const LIMITER_FLAT: f64 = 1.05;
/// Nagle: the delayed-ACK timer's band (ms: Linux's is 40 ms, rounded up to ticks), the
/// share of reused-connection responses in it, and how fast fresh connections answer.
pub const ACK_TIMER_MS: std::ops::RangeInclusive<f64> = 38.0..=52.0;
pub const NAGLE_SHARE: f64 = 0.3;
pub const FRESH_FAST_MS: f64 = 10.0;

/// The kind each rank stands for, when the rank decides it (a wait site's kind is the
/// wait's: lock, pool, downstream, disk or waiting).
pub fn kind_of(rank: Rank) -> Option<Kind> {
    Some(match rank {
        Rank::MemoryLimit => Kind::MemoryLimit,
        Rank::MemoryPressure => Kind::MemoryPressure,
        Rank::FdLimit => Kind::FdLimit,
        Rank::CpuThrottled => Kind::CpuThrottled,
        Rank::Nagle => Kind::Nagle,
        Rank::RateLimited => Kind::RateLimited,
        Rank::Gc => Kind::Gc,
        Rank::DiskBusy | Rank::IoLimit => Kind::Disk,
        Rank::CpuSaturated | Rank::CpuBound | Rank::RemoteHostFull | Rank::HostFull => {
            Kind::CpuBound
        }
        Rank::OneThread | Rank::Gil => Kind::SingleThread,
        Rank::SaturatedDownstream => Kind::Downstream,
        Rank::SaturatedBalancer => Kind::Balancer,
        Rank::AcceptQueue | Rank::AcceptQueueCpuSaturated => Kind::AcceptQueue,
        Rank::Errors => Kind::Errors,
        Rank::QueueGaugeWithCpu | Rank::QueueGauge | Rank::IdleRuntime | Rank::Waiting => {
            Kind::Waiting
        }
        Rank::HostNotFull => Kind::Waiting,
        Rank::Network => Kind::Network,
        Rank::HostContention => Kind::HostContention,
        Rank::Serialized => Kind::Serialized,
        Rank::HostUnknown | Rank::Unclear => Kind::Unclear,
        Rank::StrongWaitSite | Rank::WaitSite => return None,
    })
}

/// A balancer whose CPU is at least this share of its worker processes' (or of the host's
/// cores, when fewer) is saturated.
pub const BALANCER_BUSY: f64 = 0.9;

/// A replica doing at least this many times an even share of the work is an uneven spread.
pub const UNEVEN_SHARE: f64 = 1.5;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_strongest_first_and_names_each_rank_once() {
        for pair in TABLE.windows(2) {
            assert!(pair[0].1 >= pair[1].1, "{pair:?} out of order");
        }
        for (i, (rank, _)) in TABLE.iter().enumerate() {
            assert!(
                !TABLE[i + 1..].iter().any(|(other, _)| other == rank),
                "{rank:?} twice"
            );
        }
    }

    /// docs/verdict.md's table of ranks lists them in the table's order, with its strengths.
    #[test]
    fn the_documented_order_is_the_tables() {
        let doc = include_str!("../../../docs/verdict.md");
        let rows: Vec<(String, f64)> = doc
            .lines()
            .filter_map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let rank = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
                let strength: f64 = cells.get(3)?.parse().ok()?;
                Some((rank.to_string(), strength))
            })
            .collect();
        let table: Vec<(String, f64)> = TABLE
            .iter()
            .map(|(rank, strength)| (format!("{rank:?}"), *strength))
            .collect();
        assert_eq!(
            rows, table,
            "docs/verdict.md's rank table differs from TABLE"
        );
    }

    /// The schema's verdict kinds are the code's.
    #[test]
    fn the_schemas_kinds_are_the_codes() {
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../../../schema/run.schema.json")).unwrap();
        let listed: Vec<&str> = schema["$defs"]["verdict"]["properties"]["kind"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        let code: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(listed, code);
    }
}

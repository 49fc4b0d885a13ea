//! The names of the sampled series (`samples.jsonl`, `observed.samplers.series`): a flat
//! map of dotted names to numbers. Collectors write them and analysis reads them by these
//! constants, never by literals at each use, so a name cannot drift between the two.
//!
//! Groups: `host.*` (the target's host), `target.*` (the target's process tree),
//! `generator.*` (knee itself), `net.*` (the kernel's TCP counters and the target's accept
//! queue), `generator_host.*` / `generator_net.*` (this machine, when the target is on
//! another), `metrics.*` (whatever a scraped /metrics endpoint served).

/// The figures of one process tree (the target, or knee itself as the generator).
pub struct ProcessSeries {
    pub cpu_cores: &'static str,
    pub rss_mb: &'static str,
    pub threads: &'static str,
    pub fds: &'static str,
    pub processes: &'static str,
    pub voluntary_ctx_per_s: &'static str,
    pub involuntary_ctx_per_s: &'static str,
    pub read_bytes_per_s: &'static str,
    pub write_bytes_per_s: &'static str,
}

macro_rules! process_series {
    ($prefix:literal) => {
        ProcessSeries {
            cpu_cores: concat!($prefix, ".cpu_cores"),
            rss_mb: concat!($prefix, ".rss_mb"),
            threads: concat!($prefix, ".threads"),
            fds: concat!($prefix, ".fds"),
            processes: concat!($prefix, ".processes"),
            voluntary_ctx_per_s: concat!($prefix, ".voluntary_ctx_per_s"),
            involuntary_ctx_per_s: concat!($prefix, ".involuntary_ctx_per_s"),
            read_bytes_per_s: concat!($prefix, ".read_bytes_per_s"),
            write_bytes_per_s: concat!($prefix, ".write_bytes_per_s"),
        }
    };
}

pub const TARGET: ProcessSeries = process_series!("target");

/// A replica's own series of a target of several processes: `replica2.cpu_cores` for
/// (2, "cpu_cores"), named as `TARGET`'s after the dot.
pub fn replica(index: usize, field: &str) -> String {
    format!("replica{index}.{field}")
}
/// The series a replica has of its own (`replicaN.FIELD`, named as `target.FIELD`).
pub const REPLICA_FIELDS: [&str; 10] = [
    "cpu_cores",
    "rss_mb",
    "threads",
    "fds",
    "processes",
    "voluntary_ctx_per_s",
    "involuntary_ctx_per_s",
    "read_bytes_per_s",
    "write_bytes_per_s",
    "write_calls_per_s",
];

pub const GENERATOR: ProcessSeries = process_series!("generator");

/// The limits set on the target: its cgroup's (quota, throttling, memory, pressure) and its
/// file descriptors'.
pub struct LimitSeries {
    /// The CPU quota in cores.
    pub cpu_quota_cores: &'static str,
    /// Share of the scheduling periods in which the quota ran out.
    pub throttled_share: &'static str,
    /// Seconds throttled per second.
    pub throttled_s_per_s: &'static str,
    pub memory_limit_mb: &'static str,
    pub memory_high_mb: &'static str,
    pub memory_used_mb: &'static str,
    /// memory.events `high` and `max` per second (v1: failcnt as `max`).
    pub memory_high_events_per_s: &'static str,
    pub memory_max_events_per_s: &'static str,
    /// OOM kills so far (cumulative).
    pub oom_kills: &'static str,
    /// Share of time some task of the cgroup stalled (PSI, v2).
    pub pressure_cpu_some: &'static str,
    pub pressure_memory_some: &'static str,
    pub pressure_io_some: &'static str,
    /// RLIMIT_NOFILE (soft).
    pub fd_limit: &'static str,
    /// The cgroup's tightest write limits (io.max, blkio throttle) and its writes per second.
    pub io_write_iops_limit: &'static str,
    pub io_write_bps_limit: &'static str,
    pub write_iops: &'static str,
}

pub const TARGET_LIMITS: LimitSeries = LimitSeries {
    cpu_quota_cores: "target.cgroup_cpu_quota_cores",
    throttled_share: "target.cgroup_throttled_share",
    throttled_s_per_s: "target.cgroup_throttled_s_per_s",
    memory_limit_mb: "target.cgroup_memory_limit_mb",
    memory_high_mb: "target.cgroup_memory_high_mb",
    memory_used_mb: "target.cgroup_memory_used_mb",
    memory_high_events_per_s: "target.cgroup_memory_high_events_per_s",
    memory_max_events_per_s: "target.cgroup_memory_max_events_per_s",
    oom_kills: "target.cgroup_oom_kills",
    pressure_cpu_some: "target.cgroup_pressure_cpu_some",
    pressure_memory_some: "target.cgroup_pressure_memory_some",
    pressure_io_some: "target.cgroup_pressure_io_some",
    fd_limit: "target.fd_limit",
    io_write_iops_limit: "target.cgroup_io_write_iops_limit",
    io_write_bps_limit: "target.cgroup_io_write_bps_limit",
    write_iops: "target.cgroup_write_iops",
};

/// The host's disks: `disk.DEVICE.util` (0–1), `.queue`, `.await_ms`, `.write_mb_per_s`.
pub mod disk {
    pub const PREFIX: &str = "disk.";

    pub fn series(device: &str, what: &str) -> String {
        format!("{PREFIX}{device}.{what}")
    }
}

/// The share of time the target's runtime paused for GC (its own /metrics).
pub const TARGET_GC_PAUSE_SHARE: &str = "target.gc_pause_share";

/// 1 while the target process exists, 0 once it is gone.
pub const TARGET_ALIVE: &str = "target.alive";

pub mod host {
    /// CPU busy on the host, in cores (the sum of `host.cpuN`).
    pub const CPU_CORES: &str = "host.cpu_cores";
    /// One core's busy share: `host.cpu0`, `host.cpu1`, ...
    pub const CPU_PREFIX: &str = "host.cpu";
    pub const CORES: &str = "host.cores";
    pub const RUN_QUEUE: &str = "host.run_queue";
    pub const LOAD1: &str = "host.load1";
    pub const MEM_USED_MB: &str = "host.mem_used_mb";
    pub const MEM_AVAILABLE_MB: &str = "host.mem_available_mb";
    pub const SWAP_USED_MB: &str = "host.swap_used_mb";
    /// knee's own cgroup (the generator's container), read from /proc/self/cgroup.
    pub const CGROUP_THROTTLED_SHARE: &str = "host.cgroup_throttled_share";
    pub const CGROUP_MEMORY_LIMIT_MB: &str = "host.cgroup_memory_limit_mb";
    pub const CGROUP_MEMORY_USED_MB: &str = "host.cgroup_memory_used_mb";
    /// Pressure stall information: share of time some task stalled.
    pub const PRESSURE_CPU_SOME: &str = "host.pressure_cpu_some";
    pub const PRESSURE_MEMORY_SOME: &str = "host.pressure_memory_some";
    pub const PRESSURE_IO_SOME: &str = "host.pressure_io_some";
    /// cpu, memory, io, in the order /proc/pressure is read.
    pub const PRESSURE: [&str; 3] = [PRESSURE_CPU_SOME, PRESSURE_MEMORY_SOME, PRESSURE_IO_SOME];

    /// `host.cpuN`.
    pub fn cpu(index: usize) -> String {
        format!("{CPU_PREFIX}{index}")
    }
}

pub mod net {
    pub const LISTEN_OVERFLOWS_PER_S: &str = "net.listen_overflows_per_s";
    pub const LISTEN_DROPS_PER_S: &str = "net.listen_drops_per_s";
    pub const RETRANSMITTED_SEGMENTS_PER_S: &str = "net.retransmitted_segments_per_s";
    pub const TCP_TIMEOUTS_PER_S: &str = "net.tcp_timeouts_per_s";
    pub const SYNCOOKIES_SENT_PER_S: &str = "net.syncookies_sent_per_s";
    /// Connections waiting in the target's accept queue, and the queue's size.
    pub const ACCEPT_QUEUE: &str = "net.accept_queue";
    pub const ACCEPT_BACKLOG: &str = "net.accept_backlog";

    /// `net.NAME_per_s` for one of the kernel's TCP counters.
    pub fn per_second(counter: &str) -> String {
        format!("net.{counter}_per_s")
    }
}

/// The generator's host, when the target is on another one.
pub mod generator_host {
    pub const CORES: &str = "generator_host.cores";
    pub const CPU_CORES: &str = "generator_host.cpu_cores";
}

/// Series scraped from /metrics endpoints are named `metrics.NAME`.
pub const METRICS_PREFIX: &str = "metrics.";

/// This machine's host-wide series, renamed as the generator's host's (the target is on
/// another host): `host.x` → `generator_host.x`, `net.x` → `generator_net.x`.
pub fn on_generator_host(key: String) -> String {
    if let Some(rest) = key.strip_prefix("host.") {
        format!("generator_host.{rest}")
    } else if let Some(rest) = key.strip_prefix("net.") {
        format!("generator_net.{rest}")
    } else if let Some(rest) = key.strip_prefix("disk.") {
        format!("generator_disk.{rest}")
    } else {
        key
    }
}

/// Words that make a scraped gauge's *name* a saturation signal (matched as whole words of
/// the name, never in its labels).
const SATURATION_WORDS: [&str; 9] = [
    "wait", "waiting", "waiters", "queue", "queued", "pending", "backlog", "blocked", "inflight",
];
/// Known false friends: gauges whose names carry a saturation word but count something idle
/// or something else (nginx's waiting connections are idle keep-alives), and exporters whose
/// series describe the machine or a runtime, not the service's own queues.
const FALSE_FRIENDS: [&str; 2] = [
    "nginx_connections_waiting",
    "nginx_http_connections_waiting",
];
const FOREIGN_PREFIXES: [&str; 6] = ["node_", "go_", "process_", "jvm_", "python_", "nodejs_"];

/// Whether a scraped series' name (labels aside) names a queue, and is not a false friend:
/// the series the verdict reads as saturation.
pub fn names_a_queue(key: &str) -> bool {
    let name = key
        .trim_start_matches("metrics.")
        .split('{')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    if FALSE_FRIENDS.contains(&name.as_str())
        || FOREIGN_PREFIXES.iter().any(|p| name.starts_with(p))
    {
        return false;
    }
    name.split(['_', ':', '.'])
        .any(|word| SATURATION_WORDS.contains(&word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_series_share_their_prefix() {
        assert_eq!(TARGET.cpu_cores, "target.cpu_cores");
        assert_eq!(GENERATOR.rss_mb, "generator.rss_mb");
        assert_eq!(host::cpu(1), "host.cpu1");
        assert_eq!(
            net::per_second("listen_overflows"),
            net::LISTEN_OVERFLOWS_PER_S
        );
        assert_eq!(
            on_generator_host(host::CORES.to_string()),
            generator_host::CORES
        );
    }
}

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
pub const GENERATOR: ProcessSeries = process_series!("generator");

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

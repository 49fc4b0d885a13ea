//! Readers of Linux's /proc and cgroup files: what the samplers need and sysinfo does not give
//! (procs_running, context switches, fds, cgroup throttling). Every reader returns None or a
//! default when a file is missing (not Linux, a process that exited), never an error: a
//! sampler must outlive its target.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

/// Clock ticks per second of /proc/*/stat times.
pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// Host CPU times from /proc/stat: (busy, total) jiffies for all CPUs and per CPU, and the
/// run queue (procs_running).
#[derive(Clone, Debug, Default)]
pub struct CpuTimes {
    pub all: (u64, u64),
    pub per_core: Vec<(u64, u64)>,
    pub procs_running: u64,
}

/// This machine: its name, cores, memory and kernel.
pub fn this_host() -> crate::model::run::Host {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    crate::model::run::Host {
        name: read("/proc/sys/kernel/hostname"),
        cores: cpu_times().map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get()),
            |c| c.per_core.len(),
        ),
        memory_mb: memory_kib().map_or(0.0, |m| m.0 as f64 / 1024.0),
        kernel: read("/proc/sys/kernel/osrelease"),
    }
}

pub fn cpu_times() -> Option<CpuTimes> {
    let text = fs::read_to_string("/proc/stat").ok()?;
    let mut times = CpuTimes::default();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(key) = fields.next() else { continue };
        if key.starts_with("cpu") {
            let values: Vec<u64> = fields.filter_map(|f| f.parse().ok()).collect();
            if values.len() < 4 {
                continue;
            }
            let total: u64 = values.iter().sum();
            // idle + iowait are not busy.
            let idle = values[3] + values.get(4).copied().unwrap_or(0);
            let pair = (total.saturating_sub(idle), total);
            if key == "cpu" {
                times.all = pair;
            } else {
                times.per_core.push(pair);
            }
        } else if key == "procs_running" {
            times.procs_running = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        }
    }
    Some(times)
}

pub fn load_average() -> Option<f64> {
    fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// (total, available, swap total, swap free) in KiB.
pub fn memory_kib() -> Option<(u64, u64, u64, u64)> {
    let text = fs::read_to_string("/proc/meminfo").ok()?;
    let get = |name: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Some((
        get("MemTotal:"),
        get("MemAvailable:"),
        get("SwapTotal:"),
        get("SwapFree:"),
    ))
}

/// cgroup v2 (or v1) facts of the cgroup knee runs in: CPU throttled time (µs, cumulative),
/// memory limit and use (bytes).
#[derive(Clone, Debug, Default)]
pub struct Cgroup {
    pub throttled_us: Option<u64>,
    pub memory_limit: Option<u64>,
    pub memory_used: Option<u64>,
}

pub fn cgroup() -> Cgroup {
    let read = |p: &str| fs::read_to_string(p).ok();
    let number = |text: Option<String>| text.and_then(|t| t.trim().parse::<u64>().ok());
    let throttled_us = read("/sys/fs/cgroup/cpu.stat").and_then(|t| {
        t.lines()
            .find(|l| l.starts_with("throttled_usec"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
    });
    let (limit, used) = if Path::new("/sys/fs/cgroup/memory.max").exists() {
        (
            number(read("/sys/fs/cgroup/memory.max")),
            number(read("/sys/fs/cgroup/memory.current")),
        )
    } else {
        (
            number(read("/sys/fs/cgroup/memory/memory.limit_in_bytes")),
            number(read("/sys/fs/cgroup/memory/memory.usage_in_bytes")),
        )
    };
    // "max" (or a huge v1 number) means no limit.
    Cgroup {
        throttled_us,
        memory_limit: limit.filter(|l| *l < (1u64 << 60)),
        memory_used: used,
    }
}

/// The kernel's TCP counters the verdict reads (cumulative): the accept queue and the SYN
/// queue overflowing, SYN cookies, retransmission timeouts and retransmitted segments.
pub const TCP_COUNTERS: [(&str, &str); 8] = [
    ("ListenOverflows", "listen_overflows"),
    ("ListenDrops", "listen_drops"),
    ("TCPTimeouts", "tcp_timeouts"),
    ("SyncookiesSent", "syncookies_sent"),
    ("TCPReqQFullDrop", "syn_queue_full_drops"),
    ("TCPAbortOnMemory", "aborts_on_memory"),
    ("TCPBacklogDrop", "backlog_drops"),
    ("RetransSegs", "retransmitted_segments"),
];

/// `TCP_COUNTERS` now, by knee's name, from /proc/net/netstat (TcpExt) and /proc/net/snmp
/// (Tcp): each is a header line of names followed by a line of values.
pub fn tcp_counters() -> HashMap<&'static str, u64> {
    let mut found = HashMap::new();
    for (file, prefix) in [("/proc/net/netstat", "TcpExt:"), ("/proc/net/snmp", "Tcp:")] {
        let Ok(text) = fs::read_to_string(file) else {
            continue;
        };
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(prefix)).collect();
        for pair in lines.chunks(2) {
            let [names, values] = pair else { continue };
            for (name, value) in names
                .split_whitespace()
                .zip(values.split_whitespace())
                .skip(1)
            {
                if let Some((_, ours)) = TCP_COUNTERS.iter().find(|(k, _)| *k == name) {
                    if let Ok(v) = value.parse() {
                        found.insert(*ours, v);
                    }
                }
            }
        }
    }
    found
}

/// One process's counters, cumulative where /proc keeps them cumulative.
#[derive(Clone, Debug, Default)]
pub struct ProcCounters {
    pub cpu_ticks: u64,
    pub rss_kib: u64,
    pub threads: u64,
    pub fds: u64,
    pub voluntary_ctx: u64,
    pub involuntary_ctx: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    /// Write system calls (sockets included): a server's answers, about one or a few each.
    pub write_calls: u64,
}

impl ProcCounters {
    pub fn add(&mut self, other: &ProcCounters) {
        self.cpu_ticks += other.cpu_ticks;
        self.rss_kib += other.rss_kib;
        self.threads += other.threads;
        self.fds += other.fds;
        self.voluntary_ctx += other.voluntary_ctx;
        self.involuntary_ctx += other.involuntary_ctx;
        self.read_bytes += other.read_bytes;
        self.write_bytes += other.write_bytes;
        self.write_calls += other.write_calls;
    }
}

/// A process's soft limit of open files (RLIMIT_NOFILE), from /proc/PID/limits.
pub fn fd_limit(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Counters of one process; None when it is gone.
pub fn process(pid: u32) -> Option<ProcCounters> {
    let dir = format!("/proc/{pid}");
    let stat = fs::read_to_string(format!("{dir}/stat")).ok()?;
    // Fields after the command name, which may hold spaces: state is field 3.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None; // a zombie has exited
    }
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let mut counters = ProcCounters {
        // utime (14) + stime (15), 1-based over the whole line → indexes 11, 12 here.
        cpu_ticks: field(11) + field(12),
        threads: field(17),
        ..ProcCounters::default()
    };
    if let Ok(status) = fs::read_to_string(format!("{dir}/status")) {
        counters.rss_kib = status_field(&status, "VmRSS:");
    }
    // The process's status counts context switches of its main thread only: sum the threads.
    if let Ok(tasks) = fs::read_dir(format!("{dir}/task")) {
        for task in tasks.flatten() {
            if let Ok(status) = fs::read_to_string(task.path().join("status")) {
                counters.voluntary_ctx += status_field(&status, "voluntary_ctxt_switches:");
                counters.involuntary_ctx += status_field(&status, "nonvoluntary_ctxt_switches:");
            }
        }
    }
    if let Ok(io) = fs::read_to_string(format!("{dir}/io")) {
        for line in io.lines() {
            let value = line
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if line.starts_with("read_bytes:") {
                counters.read_bytes = value;
            } else if line.starts_with("write_bytes:") {
                counters.write_bytes = value;
            } else if line.starts_with("syscw:") {
                counters.write_calls = value;
            }
        }
    }
    counters.fds = fs::read_dir(format!("{dir}/fd")).map_or(0, |d| d.count() as u64);
    Some(counters)
}

/// A /proc stat line's command name (between the parentheses) and CPU ticks (utime + stime).
pub fn parse_stat_name_and_ticks(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_string();
    let fields: Vec<&str> = stat.get(close + 2..)?.split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
    Some((name, field(11)? + field(12)?))
}

fn status_field(status: &str, name: &str) -> u64 {
    status
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// Every process of this host and its parent, from /proc.
pub fn parents() -> HashMap<u32, u32> {
    let mut parents = HashMap::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let parent = fs::read_to_string(entry.path().join("stat"))
                .ok()
                .and_then(|stat| {
                    let after = &stat[stat.rfind(')')? + 2..];
                    after.split_whitespace().nth(1)?.parse::<u32>().ok()
                });
            if let Some(parent) = parent {
                parents.insert(child, parent);
            }
        }
    }
    parents
}

/// `pid` and all its descendants.
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (child, parent) in parents() {
        children.entry(parent).or_default().push(child);
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        if let Some(kids) = children.get(&tree[i]) {
            tree.extend(kids);
        }
        i += 1;
    }
    tree
}

/// The summed counters of `pid` and its descendants; None when `pid` itself is gone.
pub fn process_tree_counters(pid: u32) -> Option<(ProcCounters, usize)> {
    let mut total = process(pid)?;
    let tree = process_tree(pid);
    for &child in tree.iter().skip(1) {
        if let Some(counters) = process(child) {
            total.add(&counters);
        }
    }
    Some((total, tree.len()))
}

/// The process listening on local TCP `port` (not this one), from /proc/net/tcp{,6}.
pub fn listener_of_port(port: u16) -> Option<u32> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address is "HEXIP:HEXPORT"; state 0A is LISTEN; inode is field 9.
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let listening_port = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if *state == "0A" && listening_port == Some(port) {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    let me = std::process::id();
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(link) = fs::read_link(fd.path()) {
                if inodes.iter().any(|i| link.as_os_str() == i.as_str()) {
                    return Some(pid);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = process(std::process::id()).expect("this process is alive");
        assert!(me.threads >= 1 && me.rss_kib > 0 && me.fds > 0, "{me:?}");
        assert!(cpu_times().unwrap().all.1 > 0);
        assert!(memory_kib().unwrap().0 > 0);
    }

    #[test]
    fn reads_the_tcp_counters() {
        let counters = tcp_counters();
        for (_, name) in TCP_COUNTERS {
            assert!(counters.contains_key(name), "{name} in {counters:?}");
        }
    }

    #[test]
    fn finds_the_owner_of_a_listening_port() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // The owner is this very process, which the lookup skips on purpose.
        assert_eq!(listener_of_port(port), None);
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        assert!(process_tree(std::process::id()).contains(&child.id()));
        let _ = child.kill();
        let _ = child.wait();
    }
}

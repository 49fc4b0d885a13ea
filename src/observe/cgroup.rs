//! The target's cgroup: the limits a container sets on it, and how hard they bite. A staging
//! service usually runs in a container, and what bends it first is often a *limit*, not a
//! resource running out by itself: a CPU quota (Kubernetes `limits.cpu`) that throttles it
//! at half a core while the host idles, a memory limit that makes it reclaim or be
//! OOM-killed. This reads the target's own cgroup (from /proc/PID/cgroup), v2 or v1:
//!
//! - CPU: the quota (`cpu.max`; v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`) and throttling
//!   (`cpu.stat`: `nr_periods`, `nr_throttled`, `throttled_usec`; v1 `throttled_time` ns);
//! - memory: the limit and use (`memory.max`, `memory.high`, `memory.current`; v1
//!   `memory.limit_in_bytes`, `memory.usage_in_bytes`) and events (`memory.events`: `high`,
//!   `max`, `oom_kill`; v1 `memory.failcnt`, `memory.oom_control`'s `oom_kill`);
//! - pressure (PSI, v2 only): `cpu.pressure`, `memory.pressure`, `io.pressure`, `some` total;
//! - I/O limits (`io.max`; v1 `blkio.throttle.{read,write}_{iops,bps}_device`) and the I/O
//!   the cgroup did (`io.stat` wios/wbytes; v1 `blkio.throttle.io_serviced` Write): a
//!   container whose writes are capped waits on its cap while the disk idles.
//!
//! Every reader returns what it could read; a missing file is a missing figure, never an
//! error (a process outside any limit has none of these).

use std::fs;
use std::path::{Path, PathBuf};

/// Where a process's cgroup directories are: one for v2, one per controller for v1.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Place {
    /// The unified (v2) directory, when the process is in one with controllers.
    pub unified: Option<PathBuf>,
    /// v1 directories of the cpu, memory and blkio controllers.
    pub cpu: Option<PathBuf>,
    pub memory: Option<PathBuf>,
    pub blkio: Option<PathBuf>,
}

/// One reading of a cgroup: limits as they are, counters cumulative.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reading {
    /// The CPU quota in cores (quota / period); None when unlimited.
    pub quota_cores: Option<f64>,
    pub periods: Option<u64>,
    pub throttled_periods: Option<u64>,
    /// Time throttled, microseconds.
    pub throttled_us: Option<u64>,
    /// Bytes.
    pub memory_limit: Option<u64>,
    pub memory_high: Option<u64>,
    pub memory_used: Option<u64>,
    /// memory.events `high` and `max` (v2), or `memory.failcnt` as `max` (v1).
    pub memory_high_events: Option<u64>,
    pub memory_max_events: Option<u64>,
    pub oom_kills: Option<u64>,
    /// PSI `some` totals, microseconds (v2).
    pub pressure_cpu_us: Option<u64>,
    pub pressure_memory_us: Option<u64>,
    pub pressure_io_us: Option<u64>,
    /// The tightest write limits of any device, and that device ("MAJ:MIN").
    pub io_write_iops_limit: Option<(u64, String)>,
    pub io_write_bps_limit: Option<(u64, String)>,
    /// Writes the cgroup completed so far (all devices).
    pub write_ios: Option<u64>,
}

/// Limits above this are "no limit" (v1 writes a huge number for unlimited memory).
const UNLIMITED: u64 = 1 << 60;

/// The cgroup directories of `pid`, under `root` (/sys/fs/cgroup).
pub fn place_of(pid: u32, root: &Path) -> Place {
    let Ok(text) = fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return Place::default();
    };
    place_in(&text, root)
}

/// Reads /proc/PID/cgroup's lines ("ID:CONTROLLERS:PATH") into directories under `root`.
pub fn place_in(proc_cgroup: &str, root: &Path) -> Place {
    let mut place = Place::default();
    // The root cgroup sets no limits, and its counters are the whole host's: not read.
    let under = |base: PathBuf, path: &str| -> Option<PathBuf> {
        let path = path.trim_start_matches('/');
        let dir = base.join(path);
        (!path.is_empty() && dir.is_dir()).then_some(dir)
    };
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let controllers: Vec<&str> = controllers.split(',').collect();
        if controllers == [""] {
            // v2: the unified hierarchy, when it has controllers here (a pure v1 host keeps
            // an empty one at /sys/fs/cgroup/unified).
            let dir = under(root.to_path_buf(), path)
                .filter(|d| d.join("cgroup.controllers").exists())
                .or_else(|| under(root.join("unified"), path));
            // The root has no limits of its own (no cpu.max): nothing to read there.
            place.unified = dir.filter(|d| d.join("cpu.max").exists());
        } else if controllers.contains(&"cpu") {
            let base = ["cpu", "cpu,cpuacct", "cpuacct,cpu"]
                .iter()
                .map(|name| root.join(name))
                .find(|base| base.is_dir());
            place.cpu = base.and_then(|b| under(b, path));
        } else if controllers.contains(&"memory") {
            place.memory = under(root.join("memory"), path);
        } else if controllers.contains(&"blkio") || controllers.contains(&"io") {
            place.blkio = under(root.join("blkio"), path);
        }
    }
    place
}

impl Place {
    pub fn is_empty(&self) -> bool {
        self.unified.is_none()
            && self.cpu.is_none()
            && self.memory.is_none()
            && self.blkio.is_none()
    }

    /// Reads the cgroup now.
    pub fn read(&self) -> Reading {
        let mut r = Reading::default();
        if let Some(dir) = &self.unified {
            read_v2(dir, &mut r);
        }
        if let Some(dir) = &self.cpu {
            read_v1_cpu(dir, &mut r);
        }
        if let Some(dir) = &self.memory {
            read_v1_memory(dir, &mut r);
        }
        if let Some(dir) = &self.blkio {
            read_v1_blkio(dir, &mut r);
        }
        r
    }
}

fn read(dir: &Path, name: &str) -> Option<String> {
    fs::read_to_string(dir.join(name)).ok()
}

fn number(text: Option<String>) -> Option<u64> {
    text?.trim().parse().ok()
}

/// `key value` lines (cpu.stat, memory.events, memory.oom_control): the value of `key`.
pub fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// PSI's "some ... total=N" (microseconds stalled).
pub fn pressure_total(text: &str) -> Option<u64> {
    let some = text.lines().find(|l| l.starts_with("some"))?;
    some.split_whitespace()
        .find_map(|field| field.strip_prefix("total="))?
        .parse()
        .ok()
}

/// cpu.max is "QUOTA PERIOD" or "max PERIOD".
pub fn quota_of_cpu_max(text: &str) -> Option<f64> {
    let mut fields = text.split_whitespace();
    let quota: f64 = fields.next()?.parse().ok()?;
    let period: f64 = fields.next()?.parse().ok()?;
    (period > 0.0).then(|| quota / period)
}

fn read_v2(dir: &Path, r: &mut Reading) {
    r.quota_cores = read(dir, "cpu.max").as_deref().and_then(quota_of_cpu_max);
    if let Some(stat) = read(dir, "cpu.stat") {
        r.periods = keyed(&stat, "nr_periods");
        r.throttled_periods = keyed(&stat, "nr_throttled");
        r.throttled_us = keyed(&stat, "throttled_usec");
    }
    r.memory_limit = number(read(dir, "memory.max")).filter(|l| *l < UNLIMITED);
    r.memory_high = number(read(dir, "memory.high")).filter(|l| *l < UNLIMITED);
    r.memory_used = number(read(dir, "memory.current"));
    if let Some(events) = read(dir, "memory.events") {
        r.memory_high_events = keyed(&events, "high");
        r.memory_max_events = keyed(&events, "max");
        r.oom_kills = keyed(&events, "oom_kill");
    }
    if let Some(max) = read(dir, "io.max") {
        r.io_write_iops_limit = tightest(&max, "wiops");
        r.io_write_bps_limit = tightest(&max, "wbps");
    }
    if let Some(stat) = read(dir, "io.stat") {
        let total: u64 = stat
            .lines()
            .flat_map(|l| l.split_whitespace())
            .filter_map(|f| f.strip_prefix("wios=")?.parse::<u64>().ok())
            .sum();
        r.write_ios = Some(total);
    }
    let psi = |name: &str| read(dir, name).as_deref().and_then(pressure_total);
    r.pressure_cpu_us = psi("cpu.pressure");
    r.pressure_memory_us = psi("memory.pressure");
    r.pressure_io_us = psi("io.pressure");
}

fn read_v1_cpu(dir: &Path, r: &mut Reading) {
    let quota = read(dir, "cpu.cfs_quota_us").and_then(|t| t.trim().parse::<i64>().ok());
    let period = number(read(dir, "cpu.cfs_period_us"));
    if let (Some(quota), Some(period)) = (quota, period) {
        // -1: no quota.
        if quota > 0 && period > 0 {
            r.quota_cores = Some(quota as f64 / period as f64);
        }
    }
    if let Some(stat) = read(dir, "cpu.stat") {
        r.periods = keyed(&stat, "nr_periods");
        r.throttled_periods = keyed(&stat, "nr_throttled");
        // v1 counts nanoseconds.
        r.throttled_us = keyed(&stat, "throttled_time").map(|ns| ns / 1000);
    }
}

fn read_v1_memory(dir: &Path, r: &mut Reading) {
    r.memory_limit = number(read(dir, "memory.limit_in_bytes")).filter(|l| *l < UNLIMITED);
    r.memory_used = number(read(dir, "memory.usage_in_bytes"));
    // The times usage hit the limit: v1's nearest to v2's `max` events.
    r.memory_max_events = number(read(dir, "memory.failcnt"));
    r.oom_kills = read(dir, "memory.oom_control")
        .as_deref()
        .and_then(|t| keyed(t, "oom_kill"));
}

fn read_v1_blkio(dir: &Path, r: &mut Reading) {
    let limit = |name: &str| {
        read(dir, name).and_then(|t| {
            t.lines()
                .filter_map(|l| {
                    let (device, value) = l.split_once(' ')?;
                    Some((value.trim().parse::<u64>().ok()?, device.to_string()))
                })
                .min()
        })
    };
    r.io_write_iops_limit = limit("blkio.throttle.write_iops_device");
    r.io_write_bps_limit = limit("blkio.throttle.write_bps_device");
    r.write_ios = read(dir, "blkio.throttle.io_serviced").map(|t| {
        t.lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let (_, op, n) = (f.next()?, f.next()?, f.next()?);
                (op == "Write").then(|| n.parse::<u64>().ok()).flatten()
            })
            .sum()
    });
}

/// io.max lines ("MAJ:MIN rbps=max wbps=max riops=max wiops=200"): the tightest `key`.
pub fn tightest(io_max: &str, key: &str) -> Option<(u64, String)> {
    io_max
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let device = fields.next()?;
            let value = fields.find_map(|f| f.strip_prefix(key)?.strip_prefix('='))?;
            Some((value.parse::<u64>().ok()?, device.to_string()))
        })
        .min()
}

/// The name of the block device MAJ:MIN ("vda"), from sysfs.
pub fn device_name(device: &str) -> Option<String> {
    let uevent = fs::read_to_string(format!("/sys/dev/block/{device}/uevent")).ok()?;
    uevent
        .lines()
        .find_map(|l| l.strip_prefix("DEVNAME="))
        .map(str::to_string)
}

/// The host's own pressure (PSI), `some` totals in microseconds: cpu, memory, io.
pub fn host_pressure() -> [Option<u64>; 3] {
    ["cpu", "memory", "io"].map(|name| {
        fs::read_to_string(format!("/proc/pressure/{name}"))
            .ok()
            .as_deref()
            .and_then(pressure_total)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_of_both_versions_are_read() {
        assert_eq!(quota_of_cpu_max("50000 100000\n"), Some(0.5));
        assert_eq!(quota_of_cpu_max("max 100000\n"), None);
        let stat = "usage_usec 123\nnr_periods 200\nnr_throttled 186\nthrottled_usec 9300000\n";
        assert_eq!(keyed(stat, "nr_throttled"), Some(186));
        assert_eq!(keyed(stat, "throttled_usec"), Some(9_300_000));
        assert_eq!(keyed(stat, "nr_bursts"), None);
        let psi = "some avg10=7.09 avg60=2.72 avg300=4.68 total=425778890\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        assert_eq!(pressure_total(psi), Some(425_778_890));
        let oom = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(keyed(oom, "oom_kill"), Some(3));
        let io_max = "254:0 rbps=max wbps=max riops=max wiops=200\n8:0 rbps=max wbps=1048576 riops=max wiops=max\n";
        assert_eq!(tightest(io_max, "wiops"), Some((200, "254:0".into())));
        assert_eq!(tightest(io_max, "wbps"), Some((1_048_576, "8:0".into())));
    }

    /// A v1 cgroup made of files: its quota, throttling (ns → µs), memory and events.
    #[test]
    fn a_v1_cgroup_reads_as_its_files_say() {
        let root = std::env::temp_dir().join(format!("knee-cgroup-{}", std::process::id()));
        let cpu = root.join("cpu/svc");
        let memory = root.join("memory/svc");
        fs::create_dir_all(&cpu).unwrap();
        fs::create_dir_all(&memory).unwrap();
        let put = |dir: &Path, name: &str, text: &str| fs::write(dir.join(name), text).unwrap();
        put(&cpu, "cpu.cfs_quota_us", "50000\n");
        put(&cpu, "cpu.cfs_period_us", "100000\n");
        put(
            &cpu,
            "cpu.stat",
            "nr_periods 40\nnr_throttled 37\nthrottled_time 1500000000\n",
        );
        put(&memory, "memory.limit_in_bytes", "268435456\n");
        put(&memory, "memory.usage_in_bytes", "260000000\n");
        put(&memory, "memory.failcnt", "12\n");
        put(
            &memory,
            "memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
        );
        let place = place_in("4:memory:/svc\n1:cpu:/svc\n0::/\n", &root);
        assert_eq!(place.cpu, Some(cpu.clone()));
        assert_eq!(place.memory, Some(memory.clone()));
        let r = place.read();
        assert_eq!(r.quota_cores, Some(0.5));
        assert_eq!((r.periods, r.throttled_periods), (Some(40), Some(37)));
        assert_eq!(r.throttled_us, Some(1_500_000));
        assert_eq!(r.memory_limit, Some(268_435_456));
        assert_eq!(r.memory_max_events, Some(12));
        assert_eq!(r.oom_kills, Some(1));
        put(&cpu, "cpu.cfs_quota_us", "-1\n");
        put(&memory, "memory.limit_in_bytes", "9223372036854771712\n");
        let r = place.read();
        assert_eq!((r.quota_cores, r.memory_limit), (None, None), "unlimited");
        let _ = fs::remove_dir_all(&root);
    }
}

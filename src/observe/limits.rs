//! The limits the target's host sets, read at every sample beside /proc's figures: the
//! target's cgroup (its CPU quota and throttling, its memory limit, events and pressure:
//! `cgroup`), its file-descriptor limit (RLIMIT_NOFILE, /proc/PID/limits), the host's
//! pressure (PSI) and its disks (`disks`). Counters become rates between two readings.

use super::{cgroup, disks};
use crate::model::series::{self, disk, TARGET_LIMITS};
use std::collections::BTreeMap;
use std::time::Instant;

/// Reads the limits at each sample; keeps the last reading for rates.
pub struct Limits {
    target: Option<u32>,
    /// The target's cgroup, found once (a process does not move between cgroups while it
    /// serves; a respawned one does, and is found again when the pid changes).
    place: Option<cgroup::Place>,
    previous: Option<Previous>,
}

struct Previous {
    at: Instant,
    cgroup: cgroup::Reading,
    host_pressure: [Option<u64>; 3],
    disks: BTreeMap<String, disks::DiskCounters>,
}

impl Limits {
    pub fn new(target: Option<u32>) -> Limits {
        Limits {
            target,
            place: None,
            previous: None,
        }
    }

    /// The device the cgroup's write limit is on ("vda"), when it has one.
    pub fn io_limited_device(&self) -> Option<String> {
        let r = self.previous.as_ref()?;
        let (_, device) = r
            .cgroup
            .io_write_iops_limit
            .as_ref()
            .or(r.cgroup.io_write_bps_limit.as_ref())?;
        cgroup::device_name(device).or_else(|| Some(device.clone()))
    }

    /// Where the target's cgroup was read, once it was.
    pub fn describe(&self) -> Option<String> {
        let place = self.place.as_ref().filter(|p| !p.is_empty())?;
        let dirs: Vec<String> = [&place.unified, &place.cpu, &place.memory, &place.blkio]
            .into_iter()
            .flatten()
            .map(|d| d.display().to_string())
            .collect();
        Some(dirs.join(", "))
    }

    /// Adds this reading's limit series to `values`.
    pub fn read(&mut self, now: Instant, values: &mut BTreeMap<String, f64>) {
        let reading = match self.target {
            Some(pid) => {
                let place = self.place.get_or_insert_with(|| {
                    cgroup::place_of(pid, std::path::Path::new("/sys/fs/cgroup"))
                });
                if let Some(fds) = super::procfs::fd_limit(pid) {
                    values.insert(TARGET_LIMITS.fd_limit.into(), fds as f64);
                }
                place.read()
            }
            None => cgroup::Reading::default(),
        };
        let host_pressure = cgroup::host_pressure();
        let disks = disks::read();
        limits_now(&reading, values);
        if let Some(before) = &self.previous {
            let seconds = now.duration_since(before.at).as_secs_f64().max(1e-3);
            limit_rates(&before.cgroup, &reading, seconds, values);
            for (i, name) in series::host::PRESSURE.iter().enumerate() {
                if let (Some(a), Some(b)) = (host_pressure[i], before.host_pressure[i]) {
                    values.insert((*name).into(), a.saturating_sub(b) as f64 / 1e6 / seconds);
                }
            }
            for (name, counters) in &disks {
                if let Some(was) = before.disks.get(name) {
                    for (what, value) in disks::rates(was, counters, seconds) {
                        values.insert(disk::series(name, what), value);
                    }
                }
            }
        }
        self.previous = Some(Previous {
            at: now,
            cgroup: reading,
            host_pressure,
            disks,
        });
    }
}

/// The limits as they stand (no rates needed).
fn limits_now(r: &cgroup::Reading, values: &mut BTreeMap<String, f64>) {
    let mb = |bytes: u64| bytes as f64 / 1_048_576.0;
    let l = &TARGET_LIMITS;
    let mut put = |name: &str, value: Option<f64>| {
        if let Some(v) = value {
            values.insert(name.into(), v);
        }
    };
    put(l.cpu_quota_cores, r.quota_cores);
    put(l.memory_limit_mb, r.memory_limit.map(mb));
    put(l.memory_high_mb, r.memory_high.map(mb));
    if r.memory_limit.is_some() || r.memory_high.is_some() {
        put(l.memory_used_mb, r.memory_used.map(mb));
    }
    put(l.oom_kills, r.oom_kills.map(|n| n as f64));
    put(
        l.io_write_iops_limit,
        r.io_write_iops_limit.as_ref().map(|(n, _)| *n as f64),
    );
    put(
        l.io_write_bps_limit,
        r.io_write_bps_limit.as_ref().map(|(n, _)| *n as f64),
    );
}

/// Rates of the cgroup's counters between two readings.
fn limit_rates(
    before: &cgroup::Reading,
    now: &cgroup::Reading,
    seconds: f64,
    values: &mut BTreeMap<String, f64>,
) {
    let l = &TARGET_LIMITS;
    let delta = |a: Option<u64>, b: Option<u64>| Some(a?.saturating_sub(b?) as f64);
    if let (Some(periods), Some(throttled)) = (
        delta(now.periods, before.periods),
        delta(now.throttled_periods, before.throttled_periods),
    ) {
        if periods > 0.0 {
            values.insert(l.throttled_share.into(), throttled / periods);
        }
    }
    let per_second = |d: Option<f64>| d.map(|d| d / seconds);
    for (name, value) in [
        (
            l.throttled_s_per_s,
            per_second(delta(now.throttled_us, before.throttled_us)).map(|us| us / 1e6),
        ),
        (
            l.write_iops,
            per_second(delta(now.write_ios, before.write_ios)),
        ),
        (
            l.memory_high_events_per_s,
            per_second(delta(now.memory_high_events, before.memory_high_events)),
        ),
        (
            l.memory_max_events_per_s,
            per_second(delta(now.memory_max_events, before.memory_max_events)),
        ),
        (
            l.pressure_cpu_some,
            per_second(delta(now.pressure_cpu_us, before.pressure_cpu_us)).map(|us| us / 1e6),
        ),
        (
            l.pressure_memory_some,
            per_second(delta(now.pressure_memory_us, before.pressure_memory_us)).map(|us| us / 1e6),
        ),
        (
            l.pressure_io_some,
            per_second(delta(now.pressure_io_us, before.pressure_io_us)).map(|us| us / 1e6),
        ),
    ] {
        if let Some(v) = value {
            values.insert(name.into(), v);
        }
    }
}

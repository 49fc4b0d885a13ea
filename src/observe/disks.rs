//! The host's disks, from /proc/diskstats: how busy each whole disk was (the share of time
//! it had I/O in flight), its queue depth, the mean wait of an I/O, and what was written. A
//! service that fsyncs per request on a slow disk waits here, and its off-CPU stacks (in
//! `fsync`, `io_schedule`, state D) name the call; the device's figures name the disk.

use std::collections::BTreeMap;

/// A disk's cumulative counters (diskstats fields).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DiskCounters {
    pub ios: u64,
    /// Milliseconds spent reading and writing (summed over I/Os).
    pub io_ms: u64,
    pub sectors_written: u64,
    /// Milliseconds with I/O in flight, and weighted by how many were.
    pub busy_ms: u64,
    pub weighted_ms: u64,
}

/// Whole disks only (vda, sda, nvme0n1), not partitions, loops or RAM disks.
pub fn read() -> BTreeMap<String, DiskCounters> {
    let Ok(text) = std::fs::read_to_string("/proc/diskstats") else {
        return BTreeMap::new();
    };
    parse(&text)
        .into_iter()
        .filter(|(name, _)| std::path::Path::new(&format!("/sys/block/{name}/device")).exists())
        .collect()
}

/// Every device of a diskstats text.
pub fn parse(text: &str) -> BTreeMap<String, DiskCounters> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
            let name = f.get(2)?.to_string();
            Some((
                name,
                DiskCounters {
                    ios: n(3)? + n(7)?,
                    io_ms: n(6)? + n(10)?,
                    sectors_written: n(9)?,
                    busy_ms: n(12)?,
                    weighted_ms: n(13)?,
                },
            ))
        })
        .collect()
}

/// A disk's figures between two readings `seconds` apart: (name of the series' last part,
/// value) — `util` (0–1), `queue`, `await_ms`, `write_mb_per_s`.
pub fn rates(before: &DiskCounters, now: &DiskCounters, seconds: f64) -> [(&'static str, f64); 4] {
    let ms = (seconds * 1000.0).max(1e-3);
    let d = |a: u64, b: u64| a.saturating_sub(b) as f64;
    let ios = d(now.ios, before.ios);
    [
        ("util", (d(now.busy_ms, before.busy_ms) / ms).min(1.0)),
        ("queue", d(now.weighted_ms, before.weighted_ms) / ms),
        (
            "await_ms",
            if ios > 0.0 {
                d(now.io_ms, before.io_ms) / ios
            } else {
                0.0
            },
        ),
        (
            "write_mb_per_s",
            d(now.sectors_written, before.sectors_written) * 512.0 / 1e6 / seconds.max(1e-3),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diskstats_become_utilization_queue_and_await() {
        let before = parse(" 252       0 vda 100 0 800 50 200 0 1600 400 0 300 450 0 0 0 0\n");
        let after = parse(" 252       0 vda 110 0 880 60 1190 0 9600 1390 2 1280 2470 0 0 0 0\n");
        let rates = rates(&before["vda"], &after["vda"], 1.0);
        let get = |k: &str| rates.iter().find(|(n, _)| *n == k).unwrap().1;
        assert!((get("util") - 0.98).abs() < 1e-9);
        assert!((get("queue") - 2.02).abs() < 1e-9);
        assert!(
            (get("await_ms") - 1.0).abs() < 1e-9,
            "1000 ms over 1000 I/Os"
        );
        assert!((get("write_mb_per_s") - 4.096).abs() < 1e-9);
    }
}

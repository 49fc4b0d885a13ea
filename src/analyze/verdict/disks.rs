//! The busiest disk at the knee, in words: read by the disk-limit signal (`limits`) and by a
//! disk wait site (`waits`), so neither signal reaches into the other.

use super::Context;
use crate::model::series::disk;

/// The busiest disk at the knee, and how busy it was (0–1).
pub fn busiest_disk(ctx: &Context) -> Option<(String, f64)> {
    let sampled = crate::model::observed::Samplers::of(ctx.knee)?;
    sampled
        .series
        .iter()
        .filter_map(|(key, stat)| {
            let device = key.strip_prefix(disk::PREFIX)?.strip_suffix(".util")?;
            Some((device.to_string(), stat.mean))
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

/// "vda 98 % busy at the knee (below it: 40 %), queue 2.1, 4.1 ms per I/O"
pub fn disk_line(ctx: &Context, device: &str, util: f64) -> String {
    let below = ctx
        .below(&disk::series(device, "util"))
        .map_or(String::new(), |b| {
            format!(" (below it: {:.0} %)", b * 100.0)
        });
    let queue = ctx.at_knee(&disk::series(device, "queue")).unwrap_or(0.0);
    let wait = ctx
        .at_knee(&disk::series(device, "await_ms"))
        .unwrap_or(0.0);
    format!(
        "{device} {:.0} % busy at the knee{below}, queue {queue:.1}, {wait:.1} ms per I/O",
        util * 100.0
    )
}

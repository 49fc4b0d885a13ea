//! A scraped gauge named like a queue, growing at the knee: evidence that something queues
//! (the queue-gauge signal) and corroboration of a wait site (the wait-site signal).

use super::table::{GAUGE_GROWTH, GAUGE_MIN};
use super::Context;
use crate::model::series;
use crate::model::series::names_a_queue;

/// A scraped gauge named like a queue that at least doubled to ≥ 1 at the knee: its name,
/// its mean at the knee and below.
pub fn growing_queue_gauge(ctx: &Context) -> Option<(String, f64, f64)> {
    let sampled = crate::model::observed::Samplers::of(ctx.knee)?;
    sampled
        .series
        .keys()
        .filter(|k| {
            k.starts_with(series::METRICS_PREFIX) && !k.ends_with(":rate") && names_a_queue(k)
        })
        .filter_map(|k| {
            let at_knee = ctx.at_knee(k)?;
            let at_below = ctx.below(k).unwrap_or(0.0);
            (at_knee >= GAUGE_MIN && at_knee >= GAUGE_GROWTH * (at_below + 0.5)).then(|| {
                (
                    k.trim_start_matches(series::METRICS_PREFIX).to_string(),
                    at_knee,
                    at_below,
                )
            })
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

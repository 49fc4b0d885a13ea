//! Generator health: was knee itself the limit of a step? A step where the generator, not the
//! target, held the load back says nothing about the target: it is marked `limited` with the
//! reason, never counted as the target failing, and ends a hunt's search.
//!
//! Three limits are knee's own:
//! - the scheduler ran late while busy (≥ half a core): it could not keep up;
//! - the generator's threads used ≥ 90 % of their cores;
//! - **its connection cap**: requests waited for a connection while every one of the
//!   `--max-connections` was busy, and the target's service time stayed flat (no queue of its
//!   own). The queue was knee's: with a flat 20 ms target, 150 req/s need 3 connections, and
//!   2 made every request wait seconds for one.
//!
//! A scheduler late while idle was kept off the CPU (host contention): noted, not blamed.

use super::record::StepRecorder;
use crate::model::step::GeneratorHealth;
use hdrhistogram::Histogram;
use std::time::Duration;

/// Generator CPU at or above this share of its cores marks the step generator-limited.
const CPU_SATURATED_SHARE: f64 = 0.9;
/// A late dispatcher using at least this share of a core was busy: the generator's limit.
const DISPATCHER_BUSY: f64 = 0.5;
/// At least this share of a step's requests queued at the cap before the cap is blamed.
const AT_CAP_SHARE: f64 = 0.01;
/// Requests waiting for a connection less than this (p50) were not held back by the cap.
const MIN_QUEUED_MS: f64 = 0.5;
/// Service time is "flat" when its p99 is within this factor of its p50...
const FLAT_SPREAD: f64 = 3.0;
/// ...and its p50 within this factor of the lowest p50 of earlier steps (plus 1 ms).
const FLAT_GROWTH: f64 = 2.0;

/// What the open model's scheduler reports about a step.
pub struct DispatchReport {
    /// How late it handed jobs out, µs.
    pub lag: Histogram<u64>,
    /// Share of one core it used.
    pub busy: f64,
    /// Jobs queued while their lane was at its share of `--max-connections`, all busy.
    pub at_cap: u64,
}

/// Everything the verdict on the generator reads.
pub struct Inputs<'a> {
    pub recorder: &'a StepRecorder,
    pub dispatch: Option<&'a DispatchReport>,
    pub lag_bound: Duration,
    /// Cores the generator's threads used, and may use.
    pub cpu_cores: f64,
    pub cpu_available: f64,
    /// Connections open when the step was drained (when the window had no sample).
    pub connections: u64,
    pub max_connections: usize,
    pub offered_rps: Option<f64>,
    /// The lowest service-time p50 of earlier steps (ms), if any.
    pub service_floor_ms: Option<f64>,
}

pub fn health(i: &Inputs) -> GeneratorHealth {
    let ms = |us: u64| us as f64 / 1000.0;
    let lag = &i.recorder.send_lag;
    let dispatch_p99 = i
        .dispatch
        .map_or(0.0, |d| ms(d.lag.value_at_quantile(0.99)));
    let busy = i.dispatch.map_or(0.0, |d| d.busy);
    let bound_ms = i.lag_bound.as_secs_f64() * 1000.0;
    let late = dispatch_p99 > bound_ms;
    let limited_reason = if late && busy >= DISPATCHER_BUSY {
        Some(format!(
            "the scheduler sent {dispatch_p99:.1}ms late at p99 (bound {bound_ms:.1}ms) while using {:.0}% of a core: the generator could not keep up",
            busy * 100.0
        ))
    } else if i.cpu_cores >= CPU_SATURATED_SHARE * i.cpu_available {
        Some(format!(
            "generator CPU saturated: {:.2} of {:.0} cores",
            i.cpu_cores, i.cpu_available
        ))
    } else {
        connection_cap(i)
    };
    let host_contention = (late && limited_reason.is_none()).then(|| {
        format!(
            "the scheduler sent {dispatch_p99:.1}ms late at p99 while using only {:.0}% of a core: \
             something else held the CPU (the target on the same host?)",
            busy * 100.0
        )
    });
    GeneratorHealth {
        send_lag_p50_ms: ms(lag.value_at_quantile(0.5)),
        send_lag_p99_ms: ms(lag.value_at_quantile(0.99)),
        send_lag_max_ms: ms(lag.max()),
        dispatch_lag_p99_ms: dispatch_p99,
        dispatcher_busy: busy,
        late_sends: i.recorder.late_sends(),
        lag_bound_ms: bound_ms,
        not_sent: i.recorder.not_sent(),
        cpu_cores: i.cpu_cores,
        cpu_available: i.cpu_available,
        connections: if i.recorder.connections.mean().is_some() {
            i.recorder.connections.peak
        } else {
            i.connections
        },
        connections_mean: i
            .recorder
            .connections
            .mean()
            .map(|m| (m * 10.0).round() / 10.0),
        // Set by the engine when streams share connections (`--h2-streams`).
        streams_per_connection: None,
        connections_opened: i.recorder.connections.churn().0,
        connections_closed: i.recorder.connections.churn().1,
        limited: limited_reason.is_some(),
        limited_reason,
        host_contention,
        started_late_ms: None,
    }
}

/// knee's connection cap held requests back while the target answered at its usual pace.
fn connection_cap(i: &Inputs) -> Option<String> {
    let at_cap = i.dispatch.map_or(0, |d| d.at_cap);
    let requests = i.recorder.requests().max(1);
    if (at_cap as f64) < AT_CAP_SHARE * requests as f64 {
        return None;
    }
    let ms = |us: u64| us as f64 / 1000.0;
    let service = &i.recorder.service;
    if service.is_empty() {
        return None;
    }
    let (p50, p99) = (
        ms(service.value_at_quantile(0.5)),
        ms(service.value_at_quantile(0.99)),
    );
    let waited = ms(i.recorder.send_lag.value_at_quantile(0.5));
    let flat = p99 <= FLAT_SPREAD * p50
        && i.service_floor_ms
            .is_none_or(|floor| p50 <= FLAT_GROWTH * floor + 1.0);
    // A wait of a tenth of a millisecond is the hand-off to a worker, not a queue: the
    // requests must have waited for a connection longer than the target took to answer,
    // and by a real amount (seen: 0.08 ms waited against 0.07 ms answered, at 1 % busy).
    if !flat || waited <= p50.max(MIN_QUEUED_MS) {
        return None;
    }
    let needed = i
        .offered_rps
        .map(|rps| rps * service.mean() / 1e6)
        .map_or(String::new(), |n| {
            format!(" (the rate x the service time needs about {n:.0})")
        });
    Some(format!(
        "connections: every one of knee's {} connections (--max-connections) was busy; requests waited {} (p50) \
         for one while the target answered in {} (p50): the queue was knee's, not the target's: raise --max-connections{needed}",
        i.max_connections,
        crate::units::fmt_ms(waited),
        crate::units::fmt_ms(p50),
    ))
}

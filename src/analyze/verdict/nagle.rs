//! The 40 ms stall: a service that writes an answer's head and body in separate small writes
//! with Nagle's algorithm on makes the second write wait until the client ACKs the first.
//! A fresh connection ACKs at once (TCP's quick-ACK mode); a reused one delays its ACK by
//! Linux's 40 ms timer, so every answer on a reused connection takes 40 ms more while the
//! service idles. The latency then moves with how busy the client keeps its connections,
//! not with the service's work. Told by answers on reused connections sitting at the
//! delayed-ACK timer while those on fresh connections are fast.

use super::table::*;
use super::{Context, Finding};
use crate::model::step::StepResult;
use crate::model::verdict::Kind;

/// Answers on reused connections at the delayed-ACK timer, fresh ones fast (at the knee,
/// or, when the knee step opened no connection, in another step of the run).
pub fn nagle(ctx: &Context) -> Option<Finding> {
    let (fresh, reused) = ack_stall(ctx.knee).or_else(|| {
        let reused = stalled_reused(ctx.knee)?;
        let fresh = ctx
            .steps
            .iter()
            .find_map(|s| ack_stall(s).map(|(f, _)| f))?;
        Some((fresh, reused))
    })?;
    let mut finding = Finding::new(
        Kind::Nagle,
        Rank::Nagle,
        "a 40 ms stall per answer on reused connections (Nagle's algorithm against the delayed ACK)",
    )
    .evidence(format!(
        "{:.0} % of the answers on reused connections took 38–52 ms (p50 {:.1} ms), while those on fresh connections took {:.1} ms (p50): the service writes its answer in pieces with Nagle's algorithm on, and the last piece waits for the client's delayed ACK (40 ms on Linux)",
        reused.at_ack_timer * 100.0,
        reused.p50_ms,
        fresh.p50_ms
    ))
    .confirm("set TCP_NODELAY on the service's sockets, or write each answer in one piece (one write, or a buffered writer flushed once)");
    if let Some(cpu) = ctx.target_cpu() {
        finding = finding.evidence(ctx.cpu_line(cpu));
    }
    Some(finding)
}

/// (fresh, reused) latencies of a step whose reused connections stall at the ACK timer.
pub fn ack_stall(
    step: &StepResult,
) -> Option<(
    &crate::model::step::ConnectionLatency,
    &crate::model::step::ConnectionLatency,
)> {
    let by = step.by_connection.as_ref()?;
    let reused = stalled_reused(step)?;
    let fast = by.fresh.requests > 0 && by.fresh.p50_ms < FRESH_FAST_MS.min(*ACK_TIMER_MS.start());
    fast.then_some((&by.fresh, reused))
}

/// A step's reused connections, when their answers sit at the delayed-ACK timer.
fn stalled_reused(step: &StepResult) -> Option<&crate::model::step::ConnectionLatency> {
    let reused = &step.by_connection.as_ref()?.reused;
    (reused.requests >= 20 && reused.at_ack_timer >= NAGLE_SHARE).then_some(reused)
}

/// The step's note when its latency is bimodal at the delayed-ACK timer: knee's figures
/// then depend on how busy its connections were, and the step says so.
pub fn ack_timer_note(step: &StepResult) -> Option<String> {
    let (fresh, reused) = ack_stall(step)?;
    Some(format!(
        "latency is bimodal at the delayed-ACK timer: {:.0} % of the answers on reused connections took 38–52 ms, on fresh ones p50 {:.1} ms (Nagle's algorithm in the service: set TCP_NODELAY, or write each answer in one piece)",
        reused.at_ack_timer * 100.0,
        fresh.p50_ms
    ))
}

//! What the workers of a step share, and the one timed send every request goes through:
//! the plain loop (`worker`) and a user flow's steps (`flow`) both send this way, so a
//! request's timeout, its in-flight count and its record are the same whoever sends it.

use super::client::{Client, Conn, Prepared};
use super::errors::ErrorClass;
use super::h1::Kept;
use super::record::{Outcome, Record};
use super::recorders::Shards;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// One request to send, and when it was meant to leave.
pub struct Job {
    pub intended: Instant,
    pub request: usize,
}

/// What the workers of one step share, across lanes.
pub struct StepCtx {
    pub client: Arc<Client>,
    /// Becomes true on Ctrl-C / SIGTERM.
    pub stop: tokio::sync::watch::Receiver<bool>,
    pub recorder: Shards,
    /// Requests sent and not yet answered.
    pub in_flight: AtomicU64,
    /// Jobs due but never sent because of Ctrl-C.
    pub unsent: AtomicU64,
    /// Jobs picked up after this are not sent but counted as `not_sent`.
    pub drain_deadline: Instant,
    /// When the step's schedule ends (its profiled tail included): a flow's next request
    /// due after it is not sent.
    pub schedule_end: Instant,
    /// The load is user flows: a job is a flow to run, not a request.
    pub flows: Option<Arc<crate::plan::flow::Flows>>,
}

/// Sends `prepared` (request `request` of the run, intended and sent at `when`) on `conn`
/// within the request timeout, and says what happened. `deadline` is the worker's one timer:
/// it is not re-armed per request (timer-wheel work per request cost 15 % of throughput):
/// when it fires, the request in flight is checked against its own deadline, and the timer
/// re-armed to that deadline if it is not due yet.
pub async fn send_timed(
    ctx: &StepCtx,
    conn: &mut Option<Conn>,
    mut deadline: std::pin::Pin<&mut tokio::time::Sleep>,
    (intended, sent): (Instant, Instant),
    request: usize,
    prepared: &Prepared,
    keep: Option<&mut Kept>,
) -> Record {
    ctx.in_flight.fetch_add(1, Ordering::Relaxed);
    let due = sent + ctx.client.request_timeout();
    let mut connected = None;
    let result = {
        let mut sending =
            std::pin::pin!(ctx
                .client
                .send_prepared(conn, prepared, &mut connected, keep));
        loop {
            tokio::select! {
                biased;
                result = &mut sending => break result,
                _ = &mut deadline => {
                    if Instant::now() >= due {
                        break Err(ErrorClass::RequestTimeout);
                    }
                    deadline.as_mut().reset(due.into());
                }
            }
        }
    };
    // A failed request leaves its connection in doubt: the next one opens another. (A gRPC
    // call that failed with a status is an answer, not a failed request.)
    if result.is_err() {
        *conn = None;
    }
    ctx.in_flight.fetch_sub(1, Ordering::Relaxed);
    Record {
        intended,
        sent: Some(sent),
        connected,
        done: Instant::now(),
        outcome: match result {
            Ok(answer) => Outcome::Response(answer),
            Err(class) => Outcome::Failed(class),
        },
        request: request as u32,
    }
}

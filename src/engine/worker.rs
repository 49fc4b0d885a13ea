//! The one request loop. A worker takes a job (from the dispatcher's queue in the open model,
//! or "now" in the closed model), sends it on its connection, and records what happened; the
//! schedule and the stop condition live in the job source, not in the loop.

use super::client::Conn;
use super::lanes::Pool;
use super::record::{new_histogram, Record};
use super::schedule::{Mix, Rng};
pub use super::send::{send_timed, Job, StepCtx};
use super::LiveSink;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::model::figures::IN_FLIGHT_EVERY;
/// How often the watcher refreshes the live figures.
const LIVE_EVERY: Duration = Duration::from_millis(250);

/// What the open model's dispatcher puts in a lane's queue.
pub enum Task {
    Send(Job),
    /// The load needs fewer connections: the worker that takes this closes its connection.
    Retire,
}

/// Where a worker's next job comes from.
pub enum Jobs {
    /// Open model: the dispatcher's queue for this worker's lane.
    Open(async_channel::Receiver<Task>),
    /// Closed model: right now, until `end`.
    Closed { end: Instant, mix: Mix, rng: Rng },
}

/// What a worker does next.
enum Next {
    Send(Job, Instant),
    /// Close the connection and end.
    Retire,
    /// The step is over: the connection goes back to the lane's pool.
    End,
}

impl Jobs {
    /// The next job, and the instant it is sent. In the closed model the next request goes
    /// out as soon as the last one ended, so `last_done` is both its intended and its send
    /// time: a clock read per request saved (reading the clock was 7 % of the closed loop's
    /// user CPU on this VM).
    async fn next(&mut self, last_done: Option<Instant>) -> Next {
        match self {
            Jobs::Open(queue) => match queue.recv().await {
                // Possibly a little ahead of its time (`dispatch_gap`): see `Record::latency`.
                Ok(Task::Send(job)) => Next::Send(job, Instant::now()),
                Ok(Task::Retire) => Next::Retire,
                Err(_) => Next::End,
            },
            Jobs::Closed { end, mix, rng } => {
                let now = last_done.unwrap_or_else(Instant::now);
                let job = Job {
                    intended: now,
                    request: mix.pick(rng),
                };
                if now < *end {
                    Next::Send(job, now)
                } else {
                    Next::End
                }
            }
        }
    }
}

/// Workers of one lane waiting for a job (or about to start), so the dispatcher knows when
/// every worker is busy.
pub type Idle = Arc<AtomicUsize>;

pub fn spawn(
    lane: &super::lanes::Lane,
    ctx: &Arc<StepCtx>,
    idle: &Idle,
    jobs: Jobs,
) -> tokio::task::JoinHandle<()> {
    idle.fetch_add(1, Ordering::Relaxed);
    lane.handle
        .spawn(worker(ctx.clone(), lane.pool.clone(), idle.clone(), jobs))
}

/// The one request loop: take a job, send it, record what happened.
async fn worker(ctx: Arc<StepCtx>, pool: Arc<Pool>, idle: Idle, mut jobs: Jobs) {
    let mut conn: Option<Conn> = pool.take();
    // One timer per worker (see `send_timed`).
    let mut deadline = std::pin::pin!(tokio::time::sleep(ctx.client.request_timeout()));
    let mut last_done = None;
    loop {
        let (job, sent) = match jobs.next(last_done).await {
            Next::Send(job, sent) => (job, sent),
            Next::Retire => {
                idle.fetch_sub(1, Ordering::Relaxed);
                return; // the connection closes as it is dropped
            }
            Next::End => break,
        };
        idle.fetch_sub(1, Ordering::Relaxed);
        match &ctx.flows {
            Some(flows) => {
                let (done, end) =
                    super::flow::run(&ctx, flows, &mut conn, deadline.as_mut(), job, sent).await;
                last_done = Some(done);
                // The step's end cut the flow short: in the closed model a new one would
                // only be cut again.
                if end == super::flow_tally::FlowEnd::Cut && matches!(jobs, Jobs::Closed { .. }) {
                    idle.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
            None => {
                let record = if sent > ctx.drain_deadline {
                    Record::not_sent(job.intended, sent, job.request)
                } else {
                    let prepared = ctx.client.prepared(job.request);
                    let when = (job.intended, sent);
                    send_timed(
                        &ctx,
                        &mut conn,
                        deadline.as_mut(),
                        when,
                        job.request,
                        prepared,
                        None,
                    )
                    .await
                };
                ctx.recorder.add(&record);
                last_done = Some(record.done);
            }
        }
        idle.fetch_add(1, Ordering::Relaxed);
    }
    pool.put(conn);
}

/// Samples the requests in flight and knee's open connections every 10 ms, and refreshes the
/// live figures every 250 ms.
pub async fn watch_step(ctx: Arc<StepCtx>, live: Arc<dyn LiveSink>) {
    let mut scratch = new_histogram();
    let mut sampler = tokio::time::interval(IN_FLIGHT_EVERY);
    let mut last_live = Instant::now();
    loop {
        sampler.tick().await;
        let now = Instant::now();
        ctx.recorder
            .sample_in_flight(now, ctx.in_flight.load(Ordering::Relaxed));
        ctx.recorder
            .sample_connections(now, ctx.client.stats.read());
        if now.duration_since(last_live) >= LIVE_EVERY {
            last_live = now;
            live.update(ctx.recorder.live(now, &mut scratch));
        }
    }
}

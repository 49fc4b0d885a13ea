//! The one request loop. A worker takes a job (from the dispatcher's queue in the open model,
//! or "now" in the closed model), sends it on its connection, and records what happened; the
//! schedule and the stop condition live in the job source, not in the loop.

use super::client::{Client, Conn};
use super::errors::ErrorClass;
use super::lanes::Pool;
use super::record::{new_histogram, Outcome, Record, Shards};
use super::schedule::{Mix, Rng};
use super::LiveSink;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::model::figures::IN_FLIGHT_EVERY;
/// How often the watcher refreshes the live figures.
const LIVE_EVERY: Duration = Duration::from_millis(250);

/// One request to send, and when it was meant to leave.
pub struct Job {
    pub intended: Instant,
    pub request: usize,
}

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
    let timeout = ctx.client.request_timeout();
    // One timer per worker. It is not re-armed per request (timer-wheel work per request cost
    // 15 % of throughput): when it fires, the request in flight is checked against its own
    // deadline, and the timer re-armed to that deadline if it is not due yet.
    let mut deadline = std::pin::pin!(tokio::time::sleep(timeout));
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
        let record = if sent > ctx.drain_deadline {
            Record {
                intended: job.intended,
                sent: None,
                connected: None,
                done: sent,
                outcome: Outcome::Failed(ErrorClass::NotSent),
                request: job.request as u32,
            }
        } else {
            ctx.in_flight.fetch_add(1, Ordering::Relaxed);
            let due = sent + timeout;
            let mut connected = None;
            let result = {
                let mut request =
                    std::pin::pin!(ctx.client.send(&mut conn, job.request, &mut connected));
                loop {
                    tokio::select! {
                        biased;
                        result = &mut request => break result,
                        _ = &mut deadline => {
                            if Instant::now() >= due {
                                break Err(ErrorClass::RequestTimeout);
                            }
                            deadline.as_mut().reset(due.into());
                        }
                    }
                }
            };
            if result.is_err() {
                conn = None;
            }
            ctx.in_flight.fetch_sub(1, Ordering::Relaxed);
            Record {
                intended: job.intended,
                sent: Some(sent),
                connected,
                done: Instant::now(),
                outcome: match result {
                    Ok(status) => Outcome::Response(status),
                    Err(class) => Outcome::Failed(class),
                },
                request: job.request as u32,
            }
        };
        ctx.recorder.add(&record);
        last_done = Some(record.done);
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

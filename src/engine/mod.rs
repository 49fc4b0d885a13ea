//! The load engine: one request loop (`worker`) fed by a source of jobs, driven by a schedule
//! and a stop condition. The open model feeds workers from a dispatcher that follows the
//! schedule of intended send times and grows the connection pool when every worker is busy;
//! the closed model lets each worker send its next request when the last one ends. Workers
//! emit plain `Record`s to one collector per step, which owns the histograms.

pub mod client;
pub mod cpu;
pub mod errors;
pub mod record;
pub mod schedule;

use crate::error::Error;
use crate::plan::{Arrivals, Load, RunPlan, StepSpec};
use crate::slo::Slo;
use crate::step::{GeneratorHealth, StepResult};
use client::{Client, Conn};
use cpu::ThreadCpu;
use errors::ErrorClass;
use hdrhistogram::Histogram;
use record::{new_histogram, Live, Outcome, Record, StepRecorder, Timeline};
use schedule::{Mix, OpenSchedule, Rng};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// The scheduler is "late" beyond this, or 10 % of the send interval if that is longer.
const LAG_BOUND: Duration = Duration::from_millis(5);
/// Generator CPU at or above this share of its cores marks the step generator-limited.
const CPU_SATURATED_SHARE: f64 = 0.9;
/// How often the collector refreshes the live figures.
const LIVE_EVERY: Duration = Duration::from_millis(250);

/// Receives live figures while a step runs (the progress bar).
pub trait LiveSink: Send + Sync {
    fn update(&self, live: Live);
}

/// A step's result, and its histograms for the run folder.
pub struct StepOutcome {
    pub result: StepResult,
    pub latency: Histogram<u64>,
    pub service: Histogram<u64>,
    /// The step was cut short by Ctrl-C.
    pub interrupted: bool,
}

/// Keep-alive connections kept between steps, so each step starts warm.
#[derive(Default)]
struct Pool {
    idle: Mutex<Vec<Conn>>,
}

impl Pool {
    fn take(&self) -> Option<Conn> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    fn put(&self, conn: Option<Conn>) {
        if let Some(conn) = conn {
            self.idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(conn);
        }
    }

    fn len(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

pub struct Engine {
    client: Arc<Client>,
    pool: Arc<Pool>,
    mix: Mix,
    max_connections: usize,
    cpu: ThreadCpu,
    cpu_available: f64,
    stop: watch::Receiver<bool>,
    steps_run: AtomicU64,
}

/// One request to send, and when it was meant to leave.
struct Job {
    intended: Instant,
    request: usize,
}

/// Where a worker's next job comes from.
enum Jobs {
    /// Open model: the dispatcher's queue.
    Open(async_channel::Receiver<Job>),
    /// Closed model: right now, until `end`.
    Closed { end: Instant, mix: Mix, rng: Rng },
}

impl Jobs {
    async fn next(&mut self) -> Option<Job> {
        match self {
            Jobs::Open(queue) => queue.recv().await.ok(),
            Jobs::Closed { end, mix, rng } => {
                let now = Instant::now();
                (now < *end).then(|| Job {
                    intended: now,
                    request: mix.pick(rng),
                })
            }
        }
    }
}

/// What the workers of one step share.
struct StepCtx {
    client: Arc<Client>,
    pool: Arc<Pool>,
    stop: watch::Receiver<bool>,
    records: mpsc::Sender<Record>,
    /// Workers waiting for a job (or about to start).
    idle: AtomicUsize,
    /// Requests abandoned in flight by Ctrl-C.
    unfinished: AtomicU64,
    /// Jobs picked up after this are not sent but counted as `not_sent`.
    drain_deadline: Instant,
}

impl Engine {
    pub async fn new(
        plan: &RunPlan,
        cpu: ThreadCpu,
        cpu_available: f64,
        stop: watch::Receiver<bool>,
    ) -> Result<Engine, Error> {
        Ok(Engine {
            client: Arc::new(Client::new(&plan.target, &plan.requests).await?),
            pool: Arc::new(Pool::default()),
            mix: Mix::new(&plan.requests),
            max_connections: plan.target.max_connections,
            cpu,
            cpu_available,
            stop,
            steps_run: AtomicU64::new(0),
        })
    }

    /// Runs one step to its end (or Ctrl-C) and drains what is in flight.
    pub async fn run_step(
        &self,
        spec: &StepSpec,
        slo: &Slo,
        request_timeout: Duration,
        live: Arc<dyn LiveSink>,
    ) -> StepOutcome {
        let seed = self.steps_run.fetch_add(1, Ordering::Relaxed) + 1;
        // A short lead lets the first sends leave on time.
        let timeline = Timeline::new(spec, Instant::now() + Duration::from_millis(2));
        let lag_bound = match spec.load {
            Load::Rate { rps, .. } => LAG_BOUND.max(Duration::from_secs_f64(0.1 / rps)),
            Load::Concurrency(_) => LAG_BOUND,
        };
        let (records_tx, records_rx) = mpsc::channel(16 * 1024);
        let collector = tokio::spawn(collect(
            records_rx,
            StepRecorder::new(timeline, lag_bound),
            live,
        ));
        let ctx = Arc::new(StepCtx {
            client: self.client.clone(),
            pool: self.pool.clone(),
            stop: self.stop.clone(),
            records: records_tx,
            idle: AtomicUsize::new(0),
            unfinished: AtomicU64::new(0),
            drain_deadline: timeline.end + request_timeout,
        });
        let cpu_before = self.cpu.seconds();
        let wall_before = Instant::now();

        let (dispatch_lag, ended, interrupted, workers) = match spec.load {
            Load::Rate { rps, arrivals } => {
                self.dispatch(&ctx, timeline, rps, arrivals, seed).await
            }
            Load::Concurrency(n) => {
                let workers = (0..n as u64)
                    .map(|i| {
                        let jobs = Jobs::Closed {
                            end: timeline.end,
                            mix: self.mix.clone(),
                            rng: Rng::new(seed << 32 | i),
                        };
                        spawn_worker(&tokio::runtime::Handle::current(), &ctx, jobs)
                    })
                    .collect();
                let mut stop = self.stop.clone();
                let interrupted = tokio::select! {
                    _ = tokio::time::sleep_until(timeline.end.into()) => false,
                    _ = stop.wait_for(|s| *s) => true,
                };
                (None, Instant::now().min(timeline.end), interrupted, workers)
            }
        };
        for worker in workers {
            let _ = worker.await;
        }
        let connections = self.pool.len() as u64;
        let unfinished = ctx.unfinished.load(Ordering::Relaxed);
        drop(ctx); // closes the records channel: the collector finishes.
        let recorder = collector
            .await
            .unwrap_or_else(|_| StepRecorder::new(timeline, lag_bound));

        let cpu_cores =
            (self.cpu.seconds() - cpu_before) / wall_before.elapsed().as_secs_f64().max(1e-9);
        let generator = self.health(
            &recorder,
            dispatch_lag.as_ref(),
            lag_bound,
            cpu_cores,
            connections,
        );
        let result = recorder.finish(spec, slo, ended, generator, interrupted, unfinished);
        StepOutcome {
            result,
            latency: recorder.latency,
            service: recorder.service,
            interrupted,
        }
    }

    /// Open model: hands out jobs at their intended times from a dedicated thread (a
    /// thread sleep is precise to tens of microseconds; the async timer only to 1 ms, which
    /// would show up as latency); grows the pool when every worker is busy. Returns the
    /// scheduler's own lateness, when it stopped, whether it was interrupted, and the workers
    /// to wait for.
    async fn dispatch(
        &self,
        ctx: &Arc<StepCtx>,
        timeline: Timeline,
        rps: f64,
        arrivals: Arrivals,
        seed: u64,
    ) -> (Option<Histogram<u64>>, Instant, bool, Vec<JoinHandle<()>>) {
        let dispatcher = Dispatcher {
            ctx: ctx.clone(),
            runtime: tokio::runtime::Handle::current(),
            schedule: OpenSchedule::new(timeline.start, timeline.end, rps, arrivals, seed),
            mix: self.mix.clone(),
            rng: Rng::new(seed),
            initial_workers: self.pool.len().clamp(1, self.max_connections),
            max_workers: self.max_connections,
            // The backlog is bounded: memory stays flat whatever the rate and the target do.
            backlog: (rps as usize).clamp(1_000, 200_000),
            cpu: self.cpu.clone(),
        };
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("knee-dispatch".into())
            .spawn(move || {
                let _ = done_tx.send(dispatcher.run());
            });
        let finished = match spawned {
            Ok(_) => done_rx.await.ok(),
            Err(_) => None,
        };
        let (lag, interrupted, workers) =
            finished.unwrap_or_else(|| (new_histogram(), true, Vec::new()));
        let ended = Instant::now().min(timeline.end);
        (Some(lag), ended, interrupted, workers)
    }

    fn health(
        &self,
        recorder: &StepRecorder,
        dispatch_lag: Option<&Histogram<u64>>,
        lag_bound: Duration,
        cpu_cores: f64,
        connections: u64,
    ) -> GeneratorHealth {
        let ms = |us: u64| us as f64 / 1000.0;
        let lag = &recorder.send_lag;
        let dispatch_p99 = dispatch_lag.map_or(0.0, |h| ms(h.value_at_quantile(0.99)));
        let bound_ms = lag_bound.as_secs_f64() * 1000.0;
        let limited_reason = if dispatch_p99 > bound_ms {
            Some(format!(
                "the scheduler sent {dispatch_p99:.1}ms late at p99 (bound {bound_ms:.1}ms): the generator could not keep up"
            ))
        } else if cpu_cores >= CPU_SATURATED_SHARE * self.cpu_available {
            Some(format!(
                "generator CPU saturated: {cpu_cores:.2} of {:.0} cores",
                self.cpu_available
            ))
        } else {
            None
        };
        GeneratorHealth {
            send_lag_p50_ms: ms(lag.value_at_quantile(0.5)),
            send_lag_p99_ms: ms(lag.value_at_quantile(0.99)),
            send_lag_max_ms: ms(lag.max()),
            dispatch_lag_p99_ms: dispatch_p99,
            late_sends: 0,
            lag_bound_ms: bound_ms,
            not_sent: 0,
            cpu_cores,
            cpu_available: self.cpu_available,
            connections,
            limited: limited_reason.is_some(),
            limited_reason,
        }
    }
}

/// The open model's scheduler, run on its own thread for one step.
struct Dispatcher {
    ctx: Arc<StepCtx>,
    runtime: tokio::runtime::Handle,
    schedule: OpenSchedule,
    mix: Mix,
    rng: Rng,
    initial_workers: usize,
    max_workers: usize,
    backlog: usize,
    cpu: ThreadCpu,
}

impl Dispatcher {
    fn run(mut self) -> (Histogram<u64>, bool, Vec<JoinHandle<()>>) {
        self.cpu.register_current_thread();
        precise_sleeps();
        let ctx = self.ctx.clone();
        let (queue_tx, queue_rx) = async_channel::bounded(self.backlog);
        let mut workers: Vec<JoinHandle<()>> = (0..self.initial_workers)
            .map(|_| spawn_worker(&self.runtime, &ctx, Jobs::Open(queue_rx.clone())))
            .collect();
        let mut lag = new_histogram();
        let mut interrupted = false;
        'schedule: for intended in self.schedule.by_ref() {
            loop {
                if *ctx.stop.borrow() {
                    interrupted = true;
                    break 'schedule;
                }
                let now = Instant::now();
                if intended <= now {
                    break;
                }
                // Short naps so Ctrl-C is noticed quickly even at 1 request/s.
                std::thread::sleep((intended - now).min(Duration::from_millis(50)));
            }
            let late = Instant::now().saturating_duration_since(intended);
            lag.saturating_record((late.as_micros() as u64).clamp(1, record::HIST_MAX_US));
            let job = Job {
                intended,
                request: self.mix.pick(&mut self.rng),
            };
            if queue_tx.try_send(job).is_err() {
                let record = Record {
                    intended,
                    sent: None,
                    done: Instant::now(),
                    outcome: Outcome::Failed(ErrorClass::NotSent),
                };
                let _ = ctx.records.blocking_send(record);
            }
            if queue_tx.len() > ctx.idle.load(Ordering::Relaxed) && workers.len() < self.max_workers
            {
                workers.push(spawn_worker(
                    &self.runtime,
                    &ctx,
                    Jobs::Open(queue_rx.clone()),
                ));
            }
        }
        queue_tx.close();
        if interrupted {
            // Jobs still queued were due but never sent: the step is partial.
            ctx.unfinished
                .fetch_add(queue_rx.len() as u64, Ordering::Relaxed);
        }
        (lag, interrupted, workers)
    }
}

/// Asks Linux for 1 µs timer slack on this thread (the default 50 µs would add lateness).
fn precise_sleeps() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer and affects only this thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1_000 as libc::c_ulong);
    }
}

fn spawn_worker(
    runtime: &tokio::runtime::Handle,
    ctx: &Arc<StepCtx>,
    jobs: Jobs,
) -> JoinHandle<()> {
    ctx.idle.fetch_add(1, Ordering::Relaxed);
    runtime.spawn(worker(ctx.clone(), jobs))
}

/// The one request loop: take a job, send it, emit a record.
async fn worker(ctx: Arc<StepCtx>, mut jobs: Jobs) {
    let mut conn = ctx.pool.take();
    let mut stop = ctx.stop.clone();
    while let Some(job) = jobs.next().await {
        ctx.idle.fetch_sub(1, Ordering::Relaxed);
        if *stop.borrow() {
            ctx.unfinished.fetch_add(1, Ordering::Relaxed);
            break;
        }
        let sent = Instant::now();
        let record = if sent > ctx.drain_deadline {
            Record {
                intended: job.intended,
                sent: None,
                done: sent,
                outcome: Outcome::Failed(ErrorClass::NotSent),
            }
        } else {
            let result = tokio::select! {
                result = ctx.client.send(&mut conn, job.request) => result,
                _ = stop.wait_for(|s| *s) => {
                    ctx.unfinished.fetch_add(1, Ordering::Relaxed);
                    conn = None;
                    break;
                }
            };
            Record {
                intended: job.intended,
                sent: Some(sent),
                done: Instant::now(),
                outcome: match result {
                    Ok(status) => Outcome::Response(status),
                    Err(class) => Outcome::Failed(class),
                },
            }
        };
        if ctx.records.send(record).await.is_err() {
            break;
        }
        ctx.idle.fetch_add(1, Ordering::Relaxed);
    }
    ctx.pool.put(conn);
}

/// Folds records into the step's recorder; refreshes the live figures now and then.
async fn collect(
    mut records: mpsc::Receiver<Record>,
    mut recorder: StepRecorder,
    live: Arc<dyn LiveSink>,
) -> StepRecorder {
    let mut batch = Vec::with_capacity(256);
    let mut ticker = tokio::time::interval(LIVE_EVERY);
    loop {
        tokio::select! {
            received = records.recv_many(&mut batch, 256) => {
                if received == 0 {
                    break;
                }
                for record in batch.drain(..) {
                    recorder.add(&record);
                }
            }
            _ = ticker.tick() => live.update(recorder.live(Instant::now())),
        }
    }
    recorder
}

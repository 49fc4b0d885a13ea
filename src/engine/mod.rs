//! The load engine. `Engine::run_step` runs one step: the open model feeds workers from a
//! dispatcher thread that follows the schedule of intended send times (`dispatch`); the
//! closed model lets each worker send its next request when the last one ends. Either way
//! the same request loop runs (`worker`), on the engine's lanes (one single-threaded runtime
//! per core, `lanes`), and records into per-thread shards merged at the end (`record`).

pub mod by_request;
mod check;
pub mod client;
pub mod cpu;
pub mod dispatch;
pub mod errors;
pub mod flow;
pub mod flow_tally;
pub mod grpc_reflection;
pub mod h1;
pub mod h2_shared;
pub mod health;
pub mod lanes;
pub mod record;
mod recorders;
pub mod sample;
pub mod schedule;
pub mod send;
pub mod worker;

/// Returns the heap's free pages to the kernel (glibc's malloc_trim; elsewhere nothing).
/// glibc keeps freed memory in its arenas, so after a burst (a scheduling hiccup that opened
/// connections and buffers) knee's RSS would stay at the burst's height for the rest of a
/// soak; called once per step, it costs about a millisecond.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

use crate::error::Error;
use crate::model::step::StepResult;
use crate::plan::{Arrivals, Load, RunPlan, StepSpec};
use crate::slo::Slo;
use client::Client;
use cpu::ThreadCpu;
use dispatch::{dispatch_gap, Dispatched, Dispatcher};
use hdrhistogram::Histogram;
use lanes::Lane;
use record::Timeline;
use recorders::Shards;
use schedule::{Mix, OpenSchedule, Rng};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use worker::{Jobs, StepCtx};

/// The scheduler is "late" beyond this, or 10 % of the send interval if that is longer.
const LAG_BOUND: Duration = Duration::from_millis(5);
/// A chained step whose start is this far past when it can be scheduled starts late (and
/// says so) instead of catching up on the requests it missed in one burst.
const LATE_START: Duration = Duration::from_millis(5);

/// Receives live figures while a step runs (the progress bar).
pub trait LiveSink: Send + Sync {
    fn update(&self, live: record::Live);
}

/// A step's result, and its histograms for the run folder.
pub struct StepOutcome {
    pub result: StepResult,
    pub latency: Histogram<u64>,
    pub service: Histogram<u64>,
    /// Each request name's latency histogram, in `result.by_request`'s order.
    pub by_request: Vec<Histogram<u64>>,
    /// The step was cut short by Ctrl-C.
    pub interrupted: bool,
    /// The counted part of the step: from the end of the warm-up to the end of the schedule.
    pub window: (Instant, Instant),
    /// When the step began (its warm-up), as it ran.
    pub started: Instant,
}

/// A step whose schedule has ended and whose requests may still be in flight.
struct Running {
    ctx: Arc<StepCtx>,
    timeline: Timeline,
    lag_bound: Duration,
    watcher: JoinHandle<()>,
    /// The dispatcher's own report (open model only).
    dispatch: Option<health::DispatchReport>,
    interrupted: bool,
    workers: Vec<JoinHandle<()>>,
    /// When the schedule stopped (early on Ctrl-C), the profiled tail included.
    ended: Instant,
    cpu_before: f64,
    wall_before: Instant,
    /// How late the step started against its place in the chain.
    started_late: Option<Duration>,
}

pub struct Engine {
    client: Arc<Client>,
    mix: Mix,
    /// The mix's requests by name, and their own SLOs.
    named: Arc<by_request::Named>,
    /// User flows: the mix picks one of them per send, and a worker runs it whole.
    flows: Option<Arc<crate::plan::flow::Flows>>,
    /// A log's recorded sends (`knee run --replay`), the schedule instead of a rate's.
    replay: Option<Arc<crate::plan::RecordedSends>>,
    steps_run: AtomicU64,
    /// A shard's phase in its uniform schedule (0 unsharded).
    phase: f64,
    /// Mixed into seeds so shards' Poisson streams are independent.
    seed_base: u64,
    /// Each lane's recent load, carried from step to step (see `dispatch::BusyHistory`).
    history: std::sync::Mutex<Vec<dispatch::BusyHistory>>,
    /// What a step's drain needs; drains run as tasks of their own, beside the next steps.
    shared: Arc<Shared>,
}

/// The engine's parts a draining step needs.
struct Shared {
    lanes: Vec<Arc<Lane>>,
    max_connections: usize,
    /// HTTP/2 streams per shared connection (1: none shared).
    h2_streams: usize,
    cpu: ThreadCpu,
    stop: watch::Receiver<bool>,
    /// See `service_floor`.
    service_floor: std::sync::Mutex<Option<f64>>,
}

impl Engine {
    /// Resolves the target and starts one lane per core (`lanes`).
    pub async fn new(
        plan: &RunPlan,
        lanes: usize,
        stop: watch::Receiver<bool>,
    ) -> Result<Engine, Error> {
        let cpu = ThreadCpu::default();
        let lanes = (0..lanes.max(1))
            .map(|i| Lane::start(i, &cpu).map(Arc::new))
            .collect::<Result<_, _>>()?;
        Ok(Engine {
            client: Arc::new(Client::new(&plan.target, &plan.requests).await?),
            mix: match &plan.flows {
                Some(flows) => Mix::of_weights(&flows.weights()),
                None => Mix::new(&plan.requests),
            },
            named: Arc::new(by_request::Named {
                flows: plan.flows.is_some(),
                ..by_request::Named::of(&plan.requests)
            }),
            flows: plan.flows.clone(),
            replay: plan.replay.clone(),
            steps_run: AtomicU64::new(0),
            phase: plan.shard.map_or(0.0, |s| s.phase()),
            seed_base: plan.shard.map_or(0, |s| u64::from(s.index) << 48),
            history: std::sync::Mutex::new(Vec::new()),
            shared: Arc::new(Shared {
                lanes,
                // With shared HTTP/2 connections a worker is a stream: N per connection.
                max_connections: plan.target.max_connections * plan.target.h2_streams.max(1),
                h2_streams: plan.target.h2_streams.max(1),
                cpu,
                stop,
                service_floor: std::sync::Mutex::new(None),
            }),
        })
    }

    fn lanes(&self) -> &[Arc<Lane>] {
        &self.shared.lanes
    }

    fn busy_history(&self) -> Vec<dispatch::BusyHistory> {
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        (0..self.lanes().len())
            .map(|i| history.get(i).copied().unwrap_or_default())
            .collect()
    }

    /// Runs steps back to back with no pause: each starts the instant the previous one's
    /// schedule ends, while the previous one's requests still drain. This is how a recovery
    /// step sees the queue an overload left behind, and how soak windows make one long load.
    ///
    /// Nothing but scheduling waits on this task: each step drains in a task of its own, and
    /// `done` gets its outcome as soon as it has drained (it must return at once: whatever
    /// observing a step takes happens elsewhere). A step whose start has passed by more than
    /// `LATE_START` when it can be scheduled starts late, and its result says so; the
    /// requests it missed are never sent in a catch-up burst. An error from `done` ends the
    /// chain.
    pub async fn run_chain<F>(
        &self,
        steps: &[(&StepSpec, Arc<dyn LiveSink>)],
        slo: &Slo,
        first_start: Instant,
        mut done: F,
    ) -> Result<(), Error>
    where
        F: FnMut(usize, StepOutcome) -> Result<(), Error>,
    {
        let (drained_tx, mut drained) = tokio::sync::mpsc::unbounded_channel();
        let mut draining = 0usize;
        let mut due = first_start;
        for (index, (spec, live)) in steps.iter().enumerate() {
            let now = Instant::now();
            let (start, started_late) = match now.checked_duration_since(due) {
                Some(late) if late > LATE_START => (now, Some(late)),
                _ => (due, None),
            };
            let schedule = self.schedule(spec, start, live.clone());
            tokio::pin!(schedule);
            let mut running = loop {
                tokio::select! {
                    running = &mut schedule => break running,
                    Some((i, outcome)) = drained.recv() => {
                        draining -= 1;
                        done(i, outcome)?;
                    }
                }
            };
            running.started_late = started_late;
            due = running.timeline.until;
            let interrupted = running.interrupted;
            let (shared, spec, slo, tx) = (
                self.shared.clone(),
                (*spec).clone(),
                slo.clone(),
                drained_tx.clone(),
            );
            draining += 1;
            tokio::spawn(async move {
                let outcome = shared.drain(running, &spec, &slo).await;
                let _ = tx.send((index, outcome));
            });
            if interrupted {
                break;
            }
        }
        while draining > 0 {
            let Some((i, outcome)) = drained.recv().await else {
                break;
            };
            draining -= 1;
            done(i, outcome)?;
        }
        Ok(())
    }

    /// Starts the step's workers at `start` and returns when its schedule has ended.
    async fn schedule(&self, spec: &StepSpec, start: Instant, live: Arc<dyn LiveSink>) -> Running {
        let seed = (self.steps_run.fetch_add(1, Ordering::Relaxed) + 1) ^ self.seed_base;
        let timeline = Timeline::new(spec, start);
        let lag_bound = match spec.load {
            Load::Rate { rps, .. } => LAG_BOUND.max(Duration::from_secs_f64(0.1 / rps)),
            Load::Concurrency(_) => LAG_BOUND,
        };
        let ctx = Arc::new(StepCtx {
            client: self.client.clone(),
            stop: self.shared.stop.clone(),
            // One shard per lane, one for the dispatcher thread.
            recorder: Shards::new(self.lanes().len() + 1, timeline, lag_bound, &self.named),
            in_flight: AtomicU64::new(0),
            unsent: AtomicU64::new(0),
            drain_deadline: timeline.until + self.client.request_timeout(),
            schedule_end: timeline.until,
            flows: self.flows.clone(),
        });
        let cpu_before = self.shared.cpu.seconds();
        let wall_before = Instant::now();
        let watcher = tokio::spawn(worker::watch_step(ctx.clone(), live));
        let (dispatch, interrupted, workers) = match spec.load {
            Load::Rate { rps, arrivals } => {
                let done = self.dispatch(&ctx, timeline, rps, arrivals, seed).await;
                if !done.history.is_empty() {
                    *self.history.lock().unwrap_or_else(|e| e.into_inner()) = done.history;
                }
                let report = health::DispatchReport {
                    lag: done.lag,
                    busy: done.busy,
                    at_cap: done.at_cap,
                };
                (Some(report), done.interrupted, done.workers)
            }
            Load::Concurrency(n) => {
                let workers = self.closed_workers(&ctx, n, timeline.until, seed);
                let mut stop = self.shared.stop.clone();
                let interrupted = tokio::select! {
                    _ = tokio::time::sleep_until(timeline.until.into()) => false,
                    _ = stop.wait_for(|s| *s) => true,
                };
                (None, interrupted, workers)
            }
        };
        Running {
            ctx,
            timeline,
            lag_bound,
            watcher,
            dispatch,
            interrupted,
            workers,
            ended: Instant::now().min(timeline.until),
            cpu_before,
            wall_before,
            started_late: None,
        }
    }

    /// Closed model: `n` workers spread over the lanes, each sending back to back until `end`.
    fn closed_workers(
        &self,
        ctx: &Arc<StepCtx>,
        n: u32,
        end: Instant,
        seed: u64,
    ) -> Vec<JoinHandle<()>> {
        let idle: worker::Idle = Arc::new(AtomicUsize::new(0));
        (0..u64::from(n))
            .map(|i| {
                let lane = &self.lanes()[i as usize % self.lanes().len()];
                let jobs = Jobs::Closed {
                    end,
                    mix: self.mix.clone(),
                    rng: Rng::new(seed << 32 | i),
                };
                worker::spawn(lane, ctx, &idle, jobs)
            })
            .collect()
    }

    /// Open model: runs the dispatcher thread for this step.
    async fn dispatch(
        &self,
        ctx: &Arc<StepCtx>,
        timeline: Timeline,
        rps: f64,
        arrivals: Arrivals,
        seed: u64,
    ) -> Dispatched {
        let lanes = self.lanes().len();
        let dispatcher = Dispatcher {
            ctx: ctx.clone(),
            lanes: self
                .lanes()
                .iter()
                .map(|l| (l.clone(), Arc::new(AtomicUsize::new(0))))
                .collect(),
            schedule: match &self.replay {
                Some(sends) => {
                    OpenSchedule::recorded(timeline.start, timeline.until, sends.clone())
                }
                None => OpenSchedule::new(timeline.start, timeline.until, rps, arrivals, seed)
                    .with_phase(self.phase),
            },
            mix: self.mix.clone(),
            rng: Rng::new(seed),
            initial_workers: self
                .lanes()
                .iter()
                .zip(self.busy_history())
                .map(|(l, h)| h.initial_workers(l.pool.len()))
                .collect(),
            history: self.busy_history(),
            max_workers_per_lane: self.shared.max_connections.div_ceil(lanes),
            backlog: ((rps as usize) / lanes).clamp(1_000, 200_000),
            min_gap: dispatch_gap(rps),
            cpu: self.shared.cpu.clone(),
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
        finished.unwrap_or_else(|| Dispatched {
            lag: record::new_histogram(),
            busy: 0.0,
            interrupted: true,
            workers: Vec::new(),
            at_cap: 0,
            history: Vec::new(),
        })
    }
}

impl Shared {
    /// Waits for the step's requests to finish (or Ctrl-C) and makes its result.
    async fn drain(&self, running: Running, spec: &StepSpec, slo: &Slo) -> StepOutcome {
        let Running {
            ctx,
            timeline,
            lag_bound,
            watcher,
            dispatch,
            workers,
            ended,
            cpu_before,
            wall_before,
            started_late,
            ..
        } = running;
        let interrupted = running.interrupted | self.wait_for(workers).await;
        watcher.abort();
        let _ = watcher.await;
        // Requests aborted in flight never decremented the counter.
        let unfinished = ctx.unsent.load(Ordering::Relaxed) + ctx.in_flight.load(Ordering::Relaxed);
        let connections = self.lanes.iter().map(|l| l.pool.len() as u64).sum();
        let ctx = Arc::into_inner(ctx).expect("every worker and the watcher have ended");
        let recorder = ctx.recorder.merged();
        let cpu_cores =
            (self.cpu.seconds() - cpu_before) / wall_before.elapsed().as_secs_f64().max(1e-9);
        let generator = health::health(&health::Inputs {
            recorder: &recorder,
            dispatch: dispatch.as_ref(),
            lag_bound,
            cpu_cores,
            cpu_available: self.lanes.len() as f64,
            connections,
            max_connections: self.max_connections,
            offered_rps: spec.offered_rps(),
            service_floor_ms: self.service_floor(),
        });
        if !generator.limited && !recorder.service.is_empty() {
            self.lower_service_floor(recorder.service.value_at_quantile(0.5) as f64 / 1000.0);
        }
        let mut generator = generator;
        generator.started_late_ms =
            started_late.map(|late| (late.as_secs_f64() * 1e4).round() / 10.0);
        let mut result = recorder.finish(spec, slo, ended, generator, interrupted, unfinished);
        if self.h2_streams > 1 {
            let per = |c: f64| (result.in_flight_mean / c * 10.0).round() / 10.0;
            result.generator.streams_per_connection = result
                .generator
                .connections_mean
                .filter(|c| *c > 0.0)
                .map(per);
        }
        StepOutcome {
            result,
            by_request: recorder.request_histograms(),
            latency: recorder.latency,
            service: recorder.service,
            interrupted,
            window: (timeline.counted_from, ended.min(timeline.end)),
            started: timeline.start,
        }
    }

    /// The lowest service-time p50 of the steps so far that knee did not hold back (ms).
    fn service_floor(&self) -> Option<f64> {
        *self.service_floor.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lower_service_floor(&self, p50_ms: f64) {
        let mut floor = self.service_floor.lock().unwrap_or_else(|e| e.into_inner());
        *floor = Some(floor.map_or(p50_ms, |f| f.min(p50_ms)));
    }

    /// Waits for the workers to drain; on Ctrl-C, aborts them at once (requests in flight
    /// are abandoned). Returns whether it was interrupted.
    async fn wait_for(&self, mut pending: Vec<JoinHandle<()>>) -> bool {
        let mut stop = self.stop.clone();
        let mut stopped = false;
        while let Some(mut worker) = pending.pop() {
            tokio::select! {
                _ = &mut worker => {}
                _ = stop.wait_for(|s| *s), if !stopped => {
                    stopped = true;
                    worker.abort();
                    pending.iter().for_each(JoinHandle::abort);
                    pending.push(worker);
                }
            }
        }
        stopped
    }
}

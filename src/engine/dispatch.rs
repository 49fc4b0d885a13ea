//! The open model's scheduler, on a thread of its own for one step: a thread sleep is precise
//! to tens of microseconds (1 µs timer slack), the async timer only to 1 ms, which would show
//! up as latency. It hands each job to a lane's queue at its intended time, and grows a lane's
//! workers (connections) when every one of them is busy.

use super::cpu::ThreadCpu;
use super::errors::ErrorClass;
use super::lanes::Lane;
use super::record::{new_histogram, Outcome, Record, HIST_MAX_US};
use super::schedule::{Mix, OpenSchedule, Rng};
use super::worker::{self, Idle, Job, Jobs, StepCtx};
use hdrhistogram::Histogram;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Below this rate the dispatcher wakes for every request; above it, for small batches.
const PRECISE_UP_TO_RPS: f64 = 2_000.0;

/// The least time between dispatcher wake-ups: none up to 2,000 req/s, then enough for about
/// four requests per wake-up, at most 500 µs. Each wake-up costs a context switch or two
/// (measured: more CPU than the request itself at 10,000 req/s); the lateness it adds, about
/// half the gap on average, is recorded as send lag and counted in latency. (Eight per
/// wake-up, 1 ms at most, saved about 10 % more CPU but tripled p99 against a fast target.)
pub fn dispatch_gap(rps: f64) -> Duration {
    if rps <= PRECISE_UP_TO_RPS {
        Duration::ZERO
    } else {
        Duration::from_secs_f64((4.0 / rps).min(0.0005))
    }
}

pub struct Dispatcher {
    pub ctx: Arc<StepCtx>,
    pub lanes: Vec<(Arc<Lane>, Idle)>,
    pub schedule: OpenSchedule,
    pub mix: Mix,
    pub rng: Rng,
    /// Workers per lane at the start (the lane's warm connections).
    pub initial_workers: Vec<usize>,
    pub max_workers_per_lane: usize,
    /// Jobs a lane's queue may hold: memory stays flat whatever the rate and the target do.
    pub backlog: usize,
    pub min_gap: Duration,
    pub cpu: ThreadCpu,
}

/// What the dispatcher leaves behind: its own lateness, whether Ctrl-C stopped it, and the
/// workers to wait for.
pub struct Dispatched {
    pub lag: Histogram<u64>,
    /// Share of one core the dispatcher thread used while it ran: near 1 means it was busy
    /// (the generator's limit); low while it was late means it was kept off the CPU.
    pub busy: f64,
    pub interrupted: bool,
    pub workers: Vec<JoinHandle<()>>,
    /// Jobs queued while every connection of their lane was busy and the lane was at its
    /// share of `--max-connections`: knee's own cap held them back.
    pub at_cap: u64,
}

impl Dispatcher {
    pub fn run(mut self) -> Dispatched {
        self.cpu.register_current_thread();
        precise_sleeps();
        let (cpu_start, wall_start) = (ThreadCpu::current_thread_seconds(), Instant::now());
        let ctx = self.ctx.clone();
        let queues: Vec<_> = self
            .lanes
            .iter()
            .map(|_| async_channel::bounded::<Job>(self.backlog))
            .collect();
        let mut per_lane = vec![0usize; self.lanes.len()];
        let mut workers = Vec::new();
        for (i, (lane, idle)) in self.lanes.iter().enumerate() {
            for _ in 0..self.initial_workers[i].max(1) {
                workers.push(worker::spawn(
                    lane,
                    &ctx,
                    idle,
                    Jobs::Open(queues[i].1.clone()),
                ));
                per_lane[i] += 1;
            }
        }
        let mut lag = new_histogram();
        let mut at_cap = 0u64;
        let mut interrupted = false;
        let mut last_wake = Instant::now();
        let mut lane = 0;
        'schedule: for intended in self.schedule.by_ref() {
            if intended > last_wake {
                // Not due at the last wake-up: sleep until it is, but not sooner than
                // `min_gap` after the last wake-up. Everything due then is one batch,
                // handed to one lane.
                let wake_at = intended.max(last_wake + self.min_gap);
                loop {
                    if *ctx.stop.borrow() {
                        interrupted = true;
                        break 'schedule;
                    }
                    let now = Instant::now();
                    if wake_at <= now {
                        last_wake = now;
                        break;
                    }
                    // Short naps so Ctrl-C is noticed quickly even at 1 request/s.
                    std::thread::sleep((wake_at - now).min(Duration::from_millis(50)));
                }
                lane = (lane + 1) % self.lanes.len();
            }
            let late = Instant::now().saturating_duration_since(intended);
            lag.saturating_record((late.as_micros() as u64).clamp(1, HIST_MAX_US));
            let job = Job {
                intended,
                request: self.mix.pick(&mut self.rng),
            };
            let (queue, receiver) = &queues[lane];
            if queue.try_send(job).is_err() {
                ctx.recorder.add(&Record {
                    intended,
                    sent: None,
                    done: Instant::now(),
                    outcome: Outcome::Failed(ErrorClass::NotSent),
                });
            }
            let (lane_ref, idle) = &self.lanes[lane];
            if queue.len() > idle.load(Ordering::Relaxed) {
                if per_lane[lane] < self.max_workers_per_lane {
                    workers.push(worker::spawn(
                        lane_ref,
                        &ctx,
                        idle,
                        Jobs::Open(receiver.clone()),
                    ));
                    per_lane[lane] += 1;
                } else {
                    at_cap += 1;
                }
            }
        }
        for (queue, receiver) in &queues {
            queue.close();
            if interrupted {
                // Jobs still queued were due but never sent: the step is partial.
                ctx.unsent
                    .fetch_add(receiver.len() as u64, Ordering::Relaxed);
            }
        }
        let busy = (ThreadCpu::current_thread_seconds() - cpu_start)
            / wall_start.elapsed().as_secs_f64().max(1e-9);
        Dispatched {
            lag,
            busy,
            interrupted,
            workers,
            at_cap,
        }
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

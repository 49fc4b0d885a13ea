//! The open model's scheduler, on a thread of its own for one step: a thread sleep is precise
//! to tens of microseconds (1 µs timer slack), the async timer only to 1 ms, which would show
//! up as latency. It hands each job to a lane's queue at its intended time, and sizes each
//! lane's workers (one connection each) to the load (`LaneLoad`):
//! - a worker is added only when jobs have waited for one for `GROW_AFTER` (a scheduling
//!   hiccup that queues a burst for a moment opens no connection), up to the lane's share of
//!   `--max-connections`;
//! - a worker beyond what the load needed in the last `IDLE_CLOSE` (the most busy at once,
//!   plus headroom) is retired, one per lane every `RETIRE_EVERY`, and its connection closed.
//!   (A fair queue keeps every worker a little busy, so an idle timeout alone never shrinks
//!   an oversized pool: on a 90 s soak at 5,000 req/s the pool grew from 2 to 152.)

use super::cpu::ThreadCpu;
use super::lanes::{Lane, IDLE_CLOSE};
use super::record::{new_histogram, Record, HIST_MAX_US};
use super::schedule::{Mix, OpenSchedule, Rng};
use super::worker::{self, Idle, Job, Jobs, StepCtx, Task};
use hdrhistogram::Histogram;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Below this rate the dispatcher wakes for every request; above it, for small batches.
const PRECISE_UP_TO_RPS: f64 = 2_000.0;
/// Jobs must have waited for a free worker this long before another connection opens.
const GROW_AFTER: Duration = Duration::from_millis(1);
/// At most one worker per lane is retired this often.
const RETIRE_EVERY: Duration = Duration::from_millis(100);

/// The least time between dispatcher wake-ups: none up to 2,000 req/s, then enough for about
/// eight requests per wake-up, at most 1 ms. Each wake-up costs a context switch or two
/// (measured: more CPU than the request itself at 10,000 req/s). A wake-up sends what is due
/// within half a gap on either side of it (`Dispatcher::run`), so no request goes more than
/// half a gap (≤ 0.5 ms) from its intended time: a late one's lateness is recorded as send lag
/// and counted in latency; an early one is measured from when it was sent. (Batches of eight
/// all sent late, up to 1 ms, tripled p99 against a fast target; centred, they cost 25–30 %
/// less CPU per request than batches of four sent late, at the same p99: bench/throughput.sh.)
pub fn dispatch_gap(rps: f64) -> Duration {
    if rps <= PRECISE_UP_TO_RPS {
        Duration::ZERO
    } else {
        Duration::from_secs_f64((8.0 / rps).min(0.001))
    }
}

/// How busy a lane's workers were lately: the most busy at once in the current and the
/// previous half of `IDLE_CLOSE`. Kept across steps by the engine, so a soak's windows (each
/// a step of its own) share one history.
#[derive(Clone, Copy, Debug)]
pub struct BusyHistory {
    half_started: Instant,
    peak: [usize; 2],
    /// Halves seen so far (up to 2): nothing is retired before a whole `IDLE_CLOSE`.
    halves: u8,
    last_retire: Instant,
}

impl Default for BusyHistory {
    fn default() -> Self {
        let now = Instant::now();
        BusyHistory {
            half_started: now,
            peak: [0; 2],
            halves: 0,
            last_retire: now,
        }
    }
}

impl BusyHistory {
    /// Workers to start a step with, of `pooled` warm connections: what the load needed
    /// lately, once that is known (the rest of the pool ages out and is closed).
    pub fn initial_workers(&self, pooled: usize) -> usize {
        if self.seen_enough() {
            pooled.min(self.needed())
        } else {
            pooled
        }
    }

    fn observe(&mut self, busy: usize, now: Instant) {
        if now.duration_since(self.half_started) >= IDLE_CLOSE / 2 {
            self.halves = (self.halves + 1).min(2);
            self.peak = [busy, self.peak[0]];
            self.half_started = now;
        } else {
            self.peak[0] = self.peak[0].max(busy);
        }
    }

    fn seen_enough(&self) -> bool {
        self.halves >= 2
    }

    /// Workers the load needed lately, with headroom (a quarter more, at least two).
    pub fn needed(&self) -> usize {
        let peak = self.peak[0].max(self.peak[1]);
        peak + (peak / 4).max(2)
    }
}

/// One lane's queue and workers, as the dispatcher sees them.
struct LaneLoad {
    queue: async_channel::Sender<Task>,
    receiver: async_channel::Receiver<Task>,
    workers: usize,
    /// Since when jobs have been waiting for a free worker.
    waiting_since: Option<Instant>,
    history: BusyHistory,
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
    /// Each lane's recent load, from the steps before.
    pub history: Vec<BusyHistory>,
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
    /// Each lane's load history, for the next step.
    pub history: Vec<BusyHistory>,
}

impl Dispatcher {
    pub fn run(mut self) -> Dispatched {
        let _counted = self.cpu.register_current_thread();
        precise_sleeps();
        let (cpu_start, wall_start) = (ThreadCpu::current_thread_seconds(), Instant::now());
        let ctx = self.ctx.clone();
        let mut lanes: Vec<LaneLoad> = (0..self.lanes.len())
            .map(|i| {
                let (queue, receiver) = async_channel::bounded::<Task>(self.backlog);
                LaneLoad {
                    queue,
                    receiver,
                    workers: 0,
                    waiting_since: None,
                    history: self.history.get(i).copied().unwrap_or_default(),
                }
            })
            .collect();
        let mut workers = Vec::new();
        for (i, load) in lanes.iter_mut().enumerate() {
            for _ in 0..self.initial_workers[i].max(1) {
                workers.push(self.spawn_worker(i, load));
            }
        }
        let mut lag = new_histogram();
        let mut at_cap = 0u64;
        let mut interrupted = false;
        let mut last_wake = Instant::now();
        let mut lane = 0;
        'schedule: while let Some(intended) = self.schedule.next() {
            if let Some(wake_at) = batch_wake(intended, last_wake, self.min_gap) {
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
            let request = match self.schedule.last_request() {
                Some(recorded) => recorded,
                None => self.mix.pick(&mut self.rng),
            };
            let job = Job { intended, request };
            if lanes[lane].queue.try_send(Task::Send(job)).is_err() {
                // A flow never started is counted against its first request.
                let now = Instant::now();
                let first = match &ctx.flows {
                    Some(flows) => {
                        let failed = super::flow_tally::FlowEnd::Failed;
                        ctx.recorder.add_flow(intended, now, failed);
                        flows.first_request(request) as usize
                    }
                    None => request,
                };
                ctx.recorder.add(&Record::not_sent(intended, now, first));
            }
            match self.size_lane(lane, &mut lanes[lane], last_wake) {
                Sizing::Grow => workers.push(self.spawn_worker(lane, &mut lanes[lane])),
                Sizing::AtCap => at_cap += 1,
                Sizing::Keep => {}
            }
        }
        for load in &lanes {
            load.queue.close();
            if interrupted {
                // Jobs still queued were due but never sent: the step is partial.
                ctx.unsent
                    .fetch_add(load.receiver.len() as u64, Ordering::Relaxed);
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
            history: lanes.iter().map(|l| l.history).collect(),
        }
    }

    fn spawn_worker(&self, index: usize, load: &mut LaneLoad) -> JoinHandle<()> {
        let (lane, idle) = &self.lanes[index];
        load.workers += 1;
        worker::spawn(lane, &self.ctx, idle, Jobs::Open(load.receiver.clone()))
    }

    /// Whether lane `index` needs another worker, has one too many (one is retired here), or
    /// is right, after a job was queued on it.
    fn size_lane(&self, index: usize, load: &mut LaneLoad, now: Instant) -> Sizing {
        let idle = self.lanes[index].1.load(Ordering::Relaxed);
        let queued = load.queue.len();
        load.history
            .observe(load.workers.saturating_sub(idle).max(queued.min(1)), now);
        if queued > idle {
            let since = *load.waiting_since.get_or_insert(now);
            if now.duration_since(since) < GROW_AFTER {
                return Sizing::Keep;
            }
            if load.workers >= self.max_workers_per_lane {
                return Sizing::AtCap;
            }
            load.waiting_since = None;
            return Sizing::Grow;
        }
        load.waiting_since = None;
        let history = &mut load.history;
        if history.seen_enough()
            && load.workers > history.needed().max(1)
            && now.duration_since(history.last_retire) >= RETIRE_EVERY
            && load.queue.try_send(Task::Retire).is_ok()
        {
            history.last_retire = now;
            load.workers -= 1;
        }
        Sizing::Keep
    }
}

/// When to wake for a job intended at `intended`, or `None` if it goes in the batch of the
/// wake-up at `last_wake`: a wake-up sends what is due up to half a `gap` after it, and comes
/// no sooner than `gap` after the last one, nor sooner than half a gap before its first job.
fn batch_wake(intended: Instant, last_wake: Instant, gap: Duration) -> Option<Instant> {
    let ahead = gap / 2;
    if intended <= last_wake + ahead {
        return None;
    }
    let nearly_due = intended.checked_sub(ahead).unwrap_or(intended);
    Some(nearly_due.max(last_wake + gap))
}

enum Sizing {
    Grow,
    AtCap,
    Keep,
}

/// Asks Linux for 1 µs timer slack on this thread (the default 50 µs would add lateness).
fn precise_sleeps() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer and affects only this thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1_000 as libc::c_ulong);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays a schedule through `batch_wake` with a dispatcher that wakes exactly on time:
    /// (batches, the farthest any job went from its intended time).
    fn replay(intended: &[Instant], start: Instant, gap: Duration) -> (usize, Duration) {
        let (mut last_wake, mut batches, mut farthest) = (start, 0, Duration::ZERO);
        for &at in intended {
            if let Some(wake) = batch_wake(at, last_wake, gap) {
                last_wake = wake;
                batches += 1;
            }
            let off = if at > last_wake {
                at - last_wake
            } else {
                last_wake - at
            };
            farthest = farthest.max(off);
        }
        (batches, farthest)
    }

    #[test]
    fn batches_are_centred_on_their_wake_up() {
        let start = Instant::now();
        let every = |us: u64, n: u64| -> Vec<Instant> {
            (1..=n)
                .map(|i| start + Duration::from_micros(us * i))
                .collect()
        };
        // 10,000 req/s: eight jobs per wake-up, none more than 0.4 ms from its time.
        let gap = dispatch_gap(10_000.0);
        assert_eq!(gap, Duration::from_micros(800));
        let (batches, farthest) = replay(&every(100, 8_000), start, gap);
        assert!((990..=1_010).contains(&batches), "{batches} batches");
        assert!(farthest <= gap / 2, "a job went {farthest:?} off its time");
        // 4,000 req/s: the 1 ms cap, four jobs per wake-up, within 0.5 ms.
        let gap = dispatch_gap(4_000.0);
        assert_eq!(gap, Duration::from_millis(1));
        let (batches, farthest) = replay(&every(250, 4_000), start, gap);
        assert!((990..=1_010).contains(&batches), "{batches} batches");
        assert!(farthest <= Duration::from_micros(500), "{farthest:?}");
        // Up to 2,000 req/s every job is a wake-up of its own, exactly on time.
        let gap = dispatch_gap(2_000.0);
        let (batches, farthest) = replay(&every(500, 100), start, gap);
        assert_eq!((batches, farthest), (100, Duration::ZERO));
    }

    #[test]
    fn a_gap_in_the_schedule_is_slept_through() {
        let start = Instant::now();
        let gap = Duration::from_micros(800);
        let later = start + Duration::from_secs(2);
        assert_eq!(
            batch_wake(later, start, gap),
            Some(later - Duration::from_micros(400))
        );
        assert_eq!(
            batch_wake(start + Duration::from_micros(300), start, gap),
            None
        );
    }
}

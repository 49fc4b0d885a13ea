//! The demo's chain of bottlenecks, each with a capacity known by construction:
//! 1. a global lock around a short CPU-bound critical section: serialized, 1 / lock_work;
//! 2. a pool of "database" slots, each held pool_hold (sleeping): slots / pool_hold. The
//!    checkout blocks its thread on a condition variable, as a blocking client pool does (an
//!    async semaphore would park a task, which no thread stack shows);
//! 3. CPU work on any thread: cores / (lock_work + cpu_work) for the whole request.
//!
//! Each fix removes one: `lock` shards the lock, `pool` makes the pool 8× bigger, `cpu`
//! memoizes the CPU stage. The CPU stage burns *CPU time* (the thread's own clock), so a
//! request costs the same CPU however busy the machine is; the critical section spins for
//! *wall* time, so the lock is held exactly as long whatever the host steals.

use crate::plan::DemoConfig;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Shards of the lock once `--fix lock` is on.
pub const LOCK_SHARDS: usize = 64;
/// How much bigger `--fix pool` makes the pool.
pub const POOL_FIX_FACTOR: usize = 8;

/// The shared state of the chain.
pub struct Chain {
    locks: Vec<Mutex<u64>>,
    next_shard: AtomicUsize,
    lock_work: Duration,
    cpu_work: Duration,
    memoized: bool,
    /// Free slots of the pool, and the signal that one was given back.
    free_slots: Mutex<usize>,
    slot_freed: Condvar,
    pool_hold: Duration,
    /// Requests waiting for a pool slot, and requests holding one (for /metrics).
    pub pool_waiting: AtomicU64,
    pub pool_busy: AtomicU64,
    pub lock_waiting: AtomicU64,
}

impl Chain {
    pub fn new(config: &DemoConfig) -> Self {
        let shards = if config.fixes.lock { LOCK_SHARDS } else { 1 };
        Chain {
            locks: (0..shards).map(|_| Mutex::new(0)).collect(),
            next_shard: AtomicUsize::new(0),
            lock_work: config.lock_work,
            cpu_work: config.cpu_work,
            memoized: config.fixes.cpu,
            free_slots: Mutex::new(super::pool_slots(config)),
            slot_freed: Condvar::new(),
            pool_hold: config.pool_hold,
            pool_waiting: AtomicU64::new(0),
            pool_busy: AtomicU64::new(0),
            lock_waiting: AtomicU64::new(0),
        }
    }

    /// Stage 1, on a blocking thread: take the (global or sharded) lock, burn `lock_work`.
    pub fn locked_stage(&self) {
        let shard = self.next_shard.fetch_add(1, Ordering::Relaxed) % self.locks.len();
        self.lock_waiting.fetch_add(1, Ordering::Relaxed);
        let mut guard = self.locks[shard].lock().unwrap_or_else(|e| e.into_inner());
        self.lock_waiting.fetch_sub(1, Ordering::Relaxed);
        *guard = critical_section(*guard, self.lock_work);
    }

    /// Stage 2, on a blocking thread: check a slot out of the pool (waiting for one), hold it
    /// for `pool_hold` (a sleep: precise, little CPU), give it back.
    pub fn pool_stage(&self) {
        self.pool_waiting.fetch_add(1, Ordering::Relaxed);
        self.checkout();
        self.pool_waiting.fetch_sub(1, Ordering::Relaxed);
        self.pool_busy.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(self.pool_hold);
        self.pool_busy.fetch_sub(1, Ordering::Relaxed);
        *self.free_slots.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.slot_freed.notify_one();
    }

    /// Waits for a free slot and takes it. Named for off-CPU flamegraphs.
    #[inline(never)]
    fn checkout(&self) {
        let mut free = self.free_slots.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = self
                .slot_freed
                .wait(free)
                .unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
    }

    /// Stage 3, on a blocking thread: burn `cpu_work`, unless memoized.
    pub fn cpu_stage(&self) -> u64 {
        if self.memoized {
            return memoized_lookup();
        }
        compute(self.cpu_work)
    }
}

/// Spins until `$clock` (a `Duration` since some origin) has advanced by `$work`. A macro,
/// not a function, so that in a profile the samples land in the function that uses it
/// (inlined functions show up as their own frames in flamegraphs; expanded code does not).
macro_rules! spin {
    ($work:expr, $clock:expr) => {{
        let start = $clock;
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        while $clock.saturating_sub(start) < $work {
            // A few µs between clock readings: short enough not to overshoot the work asked,
            // long enough that few samples land in the clock call (whose samples the agent
            // drops: it is in libc/vDSO). Xorshift with plain operators only: a method call
            // (wrapping_mul, a range iterator), even inlined, would be the flamegraph's leaf,
            // and a multiplication would be overflow-checked in test builds.
            let mut i = 0;
            while i < 2_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                i += 1;
            }
            x = std::hint::black_box(x);
        }
        x
    }};
}

/// The critical section: CPU work done while holding the lock, for `work` of *wall* time, so
/// the lock is held exactly that long even when the (virtual) CPU is taken away mid-section:
/// the lock's capacity stays 1 / work on a noisy host. Named for flamegraphs.
#[inline(never)]
pub fn critical_section(state: u64, work: Duration) -> u64 {
    let origin = std::time::Instant::now();
    state.wrapping_add(spin!(work, origin.elapsed()))
}

/// The CPU stage's work: `work` of this thread's CPU time, so a request costs the same CPU
/// however busy the machine is. Named for flamegraphs.
#[inline(never)]
pub fn compute(work: Duration) -> u64 {
    spin!(work, thread_cpu_time())
}

/// The CPU stage once memoized: a cache hit.
#[inline(never)]
fn memoized_lookup() -> u64 {
    std::hint::black_box(42)
}

fn thread_cpu_time() -> Duration {
    Duration::from_secs_f64(crate::engine::cpu::ThreadCpu::current_thread_seconds())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_admits_its_slots_at_a_time() {
        let config = DemoConfig {
            pool_slots: 2,
            pool_hold: Duration::from_millis(30),
            ..DemoConfig::default()
        };
        let chain = std::sync::Arc::new(Chain::new(&config));
        let start = std::time::Instant::now();
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let chain = chain.clone();
                std::thread::spawn(move || chain.pool_stage())
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        // Four holds of 30 ms through two slots: two rounds.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(60), "{took:?}");
        assert_eq!(*chain.free_slots.lock().unwrap(), 2);
    }

    #[test]
    fn fixes_parse() {
        assert_eq!(
            crate::plan::Fixes::parse("lock, cpu").unwrap(),
            crate::plan::Fixes {
                lock: true,
                pool: false,
                cpu: true
            }
        );
        assert_eq!(
            crate::plan::Fixes::parse("").unwrap(),
            crate::plan::Fixes::default()
        );
        assert!(crate::plan::Fixes::parse("disk").is_err());
    }

    #[test]
    fn the_critical_section_lasts_the_wall_time_asked() {
        let start = std::time::Instant::now();
        critical_section(0, Duration::from_millis(20));
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(20) && took < Duration::from_millis(60),
            "{took:?}"
        );
    }

    #[test]
    fn burns_the_cpu_time_asked() {
        let start = thread_cpu_time();
        compute(Duration::from_millis(20));
        let used = thread_cpu_time() - start;
        assert!(
            used >= Duration::from_millis(20) && used < Duration::from_millis(60),
            "{used:?}"
        );
    }
}

//! The demo's chain of bottlenecks, each with a capacity known by construction:
//! 1. a global lock around a short CPU-bound critical section: serialized, 1 / lock_work;
//! 2. a pool of "database" slots, each held pool_hold (sleeping): slots / pool_hold;
//! 3. CPU work on any thread: cores / (lock_work + cpu_work) for the whole request.
//!
//! Each fix removes one: `lock` shards the lock, `pool` makes the pool 8× bigger, `cpu`
//! memoizes the CPU stage. The CPU stage burns *CPU time* (the thread's own clock), so a
//! request costs the same CPU however busy the machine is; the critical section spins for
//! *wall* time, so the lock is held exactly as long whatever the host steals.

use crate::plan::Fixes;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
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
    /// Requests waiting for a pool slot, and requests holding one (for /metrics).
    pub pool_waiting: AtomicU64,
    pub pool_busy: AtomicU64,
    pub lock_waiting: AtomicU64,
}

impl Chain {
    pub fn new(lock_work: Duration, cpu_work: Duration, fixes: Fixes) -> Self {
        let shards = if fixes.lock { LOCK_SHARDS } else { 1 };
        Chain {
            locks: (0..shards).map(|_| Mutex::new(0)).collect(),
            next_shard: AtomicUsize::new(0),
            lock_work,
            cpu_work,
            memoized: fixes.cpu,
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
    fn fixes_parse() {
        assert_eq!(
            Fixes::parse("lock, cpu").unwrap(),
            Fixes {
                lock: true,
                pool: false,
                cpu: true
            }
        );
        assert_eq!(Fixes::parse("").unwrap(), Fixes::default());
        assert!(Fixes::parse("disk").is_err());
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

//! CPU used by the generator's own threads. The engine registers each of its threads here;
//! summing their CPU clocks gives the generator's CPU even when the target runs in the same
//! process (tests) or the same machine.
//!
//! Threads come and go (one dispatcher thread per step), so a thread's CPU must not vanish
//! from the sum when it ends: each registration is a guard that, dropped on its own thread as
//! the thread ends, moves the thread's final CPU time into `retired` and forgets its clock.
//! The sum is then monotonic, and the list of clocks does not grow with the number of steps.

use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Clocks {
    live: Vec<(libc::clockid_t, std::thread::ThreadId)>,
    /// CPU seconds of registered threads that have ended.
    retired: f64,
}

#[derive(Clone, Default)]
pub struct ThreadCpu {
    clocks: Arc<Mutex<Clocks>>,
}

/// Keeps the calling thread counted; dropping it (on that thread) retires its CPU time.
#[must_use = "the thread is counted only while the guard lives"]
pub struct Registration {
    cpu: ThreadCpu,
    thread: std::thread::ThreadId,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let spent = ThreadCpu::current_thread_seconds();
        let mut clocks = self.cpu.lock();
        clocks.live.retain(|&(_, thread)| thread != self.thread);
        clocks.retired += spent;
    }
}

impl ThreadCpu {
    fn lock(&self) -> std::sync::MutexGuard<'_, Clocks> {
        self.clocks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Called on each engine thread as it starts; keep the guard until the thread ends.
    pub fn register_current_thread(&self) -> Registration {
        let thread = std::thread::current().id();
        let mut clock: libc::clockid_t = 0;
        // SAFETY: pthread_self() is the calling thread; `clock` is a valid out-pointer.
        let rc = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock) };
        if rc == 0 {
            self.lock().live.push((clock, thread));
        }
        Registration {
            cpu: self.clone(),
            thread,
        }
    }

    /// CPU seconds used so far by the registered threads, ended ones included.
    pub fn seconds(&self) -> f64 {
        let clocks = self.lock();
        let live: f64 = clocks
            .live
            .iter()
            .filter_map(|&(clock, _)| {
                let mut ts = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                // SAFETY: `ts` is a valid out-pointer; the thread is alive while registered
                // (its guard is dropped on it before it ends), so the clock is its own.
                let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
                (rc == 0).then_some(ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9)
            })
            .sum();
        clocks.retired + live
    }

    /// CPU seconds used so far by the calling thread.
    pub fn current_thread_seconds() -> f64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid out-pointer.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn burn(seconds: f64) {
        let start = ThreadCpu::current_thread_seconds();
        let mut x = 0u64;
        while ThreadCpu::current_thread_seconds() - start < seconds {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
    }

    #[test]
    fn an_ended_thread_keeps_its_cpu_in_the_sum() {
        let cpu = ThreadCpu::default();
        let before = cpu.seconds();
        let worker = cpu.clone();
        std::thread::spawn(move || {
            let _counted = worker.register_current_thread();
            burn(0.05);
        })
        .join()
        .unwrap();
        let after = cpu.seconds();
        assert!(after - before >= 0.05, "{before} -> {after}");
        assert!(
            cpu.lock().live.is_empty(),
            "the ended thread's clock is forgotten"
        );
        // Later threads add to it; the sum never goes down.
        let worker = cpu.clone();
        std::thread::spawn(move || {
            let _counted = worker.register_current_thread();
            burn(0.01);
        })
        .join()
        .unwrap();
        assert!(cpu.seconds() >= after + 0.01);
    }
}

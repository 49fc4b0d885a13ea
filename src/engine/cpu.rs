//! CPU used by the generator's own threads. The engine runtime registers each of its worker
//! threads here; summing their CPU clocks gives the generator's CPU even when the target runs
//! in the same process (tests) or the same machine.

use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
pub struct ThreadCpu {
    clocks: Arc<Mutex<Vec<libc::clockid_t>>>,
}

impl ThreadCpu {
    /// Called on each runtime thread as it starts.
    pub fn register_current_thread(&self) {
        let mut clock: libc::clockid_t = 0;
        // SAFETY: pthread_self() is the calling thread; `clock` is a valid out-pointer.
        let rc = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock) };
        if rc == 0 {
            self.clocks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(clock);
        }
    }

    /// CPU seconds used so far by the registered threads that are still alive.
    pub fn seconds(&self) -> f64 {
        let clocks = self.clocks.lock().unwrap_or_else(|e| e.into_inner());
        clocks
            .iter()
            .filter_map(|&clock| {
                let mut ts = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                // SAFETY: `ts` is a valid out-pointer; a dead thread's clock returns an error.
                let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
                (rc == 0).then_some(ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9)
            })
            .sum()
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

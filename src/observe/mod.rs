//! The observer hook: anything that watches the target or the machine while a step runs
//! (samplers, profilers) implements `Observer`. It is told when each step starts and ends and
//! writes what it saw into its part of the step's `observed` record (model::observed).

pub mod balancer;
pub mod cgroup;
pub mod disks;
pub mod exporters;
pub mod exporters_cadvisor;
pub mod http;
pub mod limits;
pub mod processes;
pub mod procfs;
pub mod prometheus;
mod reading;
pub mod relabel;
pub mod remote;
pub mod remote_replicas;
pub mod replicas;
pub mod runtime;
pub mod sampler;
pub mod sockdiag;
pub mod target;
pub mod threads;
pub mod token;
pub mod windows;

use crate::model::step::StepResult;
use crate::model::Observed;
use crate::plan::StepSpec;
use std::time::Instant;

pub trait Observer: Send {
    /// Its part of `observed`, for messages.
    fn name(&self) -> &str;
    /// Called before the step is scheduled (for a chain of steps, before the chain, for each
    /// step); `starts_at` is when the step's schedule is due to begin (its warm-up first).
    fn step_started(&mut self, spec: &StepSpec, starts_at: Instant);
    /// Writes what was observed during the step's counted window (`from`, `to`) into its
    /// part of `observed`.
    fn step_finished(
        &mut self,
        spec: &StepSpec,
        result: &StepResult,
        window: (Instant, Instant),
        observed: &mut Observed,
    );
}

/// Lowers this thread's priority (nice 10): observing a step (reading /proc, folding and
/// drawing profiles, writing the run folder) must yield to the load and to the target on a
/// busy host. Linux applies nice per thread; elsewhere nothing happens.
pub fn in_background() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority on this thread's own id; failure (a limit) only leaves it as it was.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}

/// Makes a child process (perf script, folding a recording) run at the lowest priority
/// (nice 19): its CPU goes to the load and the target first.
pub fn as_background(command: &mut std::process::Command) -> &mut std::process::Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: setpriority is async-signal-safe; it runs in the child between fork and exec.
    unsafe {
        command.pre_exec(|| {
            libc::setpriority(libc::PRIO_PROCESS, 0, 19);
            Ok(())
        })
    }
}

/// Work an observer does at given instants of a step (a profile over its tail, a reading
/// begun as its counted window starts and ended as it ends) on a thread of its own,
/// collected by step name when the step is finished. The thread keeps the step's time, not
/// the finisher's: a window ends at its end however late the step is collected.
pub struct Pending<T> {
    running: Vec<Running<T>>,
}

struct Running<T> {
    step: String,
    /// Ends a window early (a step cut short).
    early: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<T>,
}

impl<T: Send + 'static> Pending<T> {
    pub fn new() -> Pending<T> {
        Pending {
            running: Vec::new(),
        }
    }

    /// Runs `work` at `at` (at once if that is past), on its own thread, for step `step`.
    pub fn start_at(&mut self, step: &str, at: Instant, work: impl FnOnce() -> T + Send + 'static) {
        self.window(step, (at, at), || (), move |(), _| work());
    }

    /// Runs `begin` at `from` and `end` at `to` (or as soon as the step is finished, when
    /// that is earlier: a step cut short), with the seconds between the two.
    pub fn window<B>(
        &mut self,
        step: &str,
        (from, to): (Instant, Instant),
        begin: impl FnOnce() -> B + Send + 'static,
        end: impl FnOnce(B, f64) -> T + Send + 'static,
    ) {
        let (early, cut) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let mut cut_short = false;
            let mut wait = |until: Instant| {
                if !cut_short {
                    let waited = cut.recv_timeout(until.saturating_duration_since(Instant::now()));
                    cut_short = !matches!(waited, Err(std::sync::mpsc::RecvTimeoutError::Timeout));
                }
            };
            wait(from);
            let began = Instant::now();
            let begun = begin();
            wait(to);
            end(begun, began.elapsed().as_secs_f64())
        });
        self.running.push(Running {
            step: step.to_string(),
            early,
            thread,
        });
    }

    /// What the work for `step` produced (waiting for it, and ending its window now if it
    /// is still open); None if none was started or it panicked.
    pub fn finish(&mut self, step: &str) -> Option<T> {
        let index = self.running.iter().position(|r| r.step == step)?;
        let running = self.running.remove(index);
        let _ = running.early.send(());
        running.thread.join().ok()
    }
}

impl<T: Send + 'static> Default for Pending<T> {
    fn default() -> Self {
        Pending::new()
    }
}

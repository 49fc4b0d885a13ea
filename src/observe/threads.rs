//! The target's CPU per thread over each step's counted window, from /proc/PID/task: what
//! tells one saturated thread (an event loop, a single worker: "`worker-3` at 0.99 cores")
//! from many threads taking turns under a lock (each a fraction of a core, one core in all).

pub use crate::model::observed::{ThreadShare, Threads};

use super::procfs;
use std::collections::HashMap;

/// Threads listed per step.
const BUSIEST: usize = 5;

/// tid → (name, CPU ticks so far).
pub type Reading = HashMap<u32, (String, u64)>;

/// Every thread of `pid` (its own, not its children's) with its CPU ticks.
pub fn read(pid: u32) -> Reading {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Reading::new();
    };
    tasks
        .flatten()
        .filter_map(|task| {
            let tid: u32 = task.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            let (name, ticks) = procfs::parse_stat_name_and_ticks(&stat)?;
            Some((tid, (name, ticks)))
        })
        .collect()
}

/// The threads' CPU between two readings `seconds` apart.
pub fn between(before: &Reading, after: &Reading, seconds: f64, ticks_per_s: f64) -> Threads {
    let mut busiest: Vec<ThreadShare> = after
        .iter()
        .map(|(tid, (name, ticks))| {
            let was = before.get(tid).map_or(0, |(_, t)| *t);
            ThreadShare {
                tid: *tid,
                name: name.clone(),
                cores: ticks.saturating_sub(was) as f64 / ticks_per_s / seconds.max(1e-3),
            }
        })
        .collect();
    busiest.sort_by(|a, b| b.cores.total_cmp(&a.cores).then(a.tid.cmp(&b.tid)));
    let cores = busiest.iter().map(|t| t.cores).sum::<f64>();
    busiest.truncate(BUSIEST);
    for thread in &mut busiest {
        thread.cores = (thread.cores * 100.0).round() / 100.0;
    }
    Threads {
        count: after.len(),
        cores: (cores * 100.0).round() / 100.0,
        busiest,
    }
}

/// The target's CPU per thread over a step's window (`observed.threads`).
#[derive(Clone)]
pub struct ThreadsReading {
    pub pid: u32,
}

impl super::windows::Reading for ThreadsReading {
    const KIND: &'static str = "threads";
    type Begun = Reading;
    type Read = Threads;

    fn begin(&self) -> Reading {
        read(self.pid)
    }

    fn store(read: Threads, observed: &mut crate::model::Observed) {
        observed.threads = Some(read);
    }

    /// Nothing once the target is gone (no threads left to read).
    fn end(&self, before: Reading, seconds: f64) -> Option<Threads> {
        let after = read(self.pid);
        (!after.is_empty()).then(|| between(&before, &after, seconds, procfs::clock_ticks()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_threads_and_ranks_the_busiest() {
        let (started, running) = std::sync::mpsc::channel();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let spinner = std::thread::Builder::new()
            .name("spin-test".into())
            .spawn(move || {
                started.send(()).unwrap();
                let _ = stopped.recv();
            })
            .unwrap();
        running.recv().unwrap();
        let threads = read(std::process::id());
        assert!(
            threads.values().any(|(name, _)| name == "spin-test"),
            "{threads:?}"
        );
        stop.send(()).unwrap();
        spinner.join().unwrap();
        let a: Reading = [(1, ("a".to_string(), 10)), (2, ("b".to_string(), 0))].into();
        let b: Reading = [(1, ("a".to_string(), 110)), (2, ("b".to_string(), 20))].into();
        let t = between(&a, &b, 1.0, 100.0);
        assert_eq!(t.count, 2);
        assert_eq!(t.busiest[0].name, "a");
        assert_eq!(t.busiest[0].cores, 1.0);
        assert_eq!(t.cores, 1.2);
    }
}

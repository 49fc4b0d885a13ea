//! Readings over a step's window, taken by `knee observe` on the target's host: the driver
//! asks the observer to *begin* a window as the step's counted part starts (the host's
//! processes, the target's threads are read and held under a number) and to *end* it as the
//! step ends (read again, the difference answered). The window is the step's, however long,
//! and a run cut short ends it at once. Only a few begun windows are held: a driver that
//! never comes back costs nothing for long.

use super::processes::{self, Processes};
use super::threads::{self, Threads};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Instant;

/// Begun windows held at most (a hunt has one of each kind open at a time).
const HELD: usize = 32;

/// What a window reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The host's process groups and the target's downstreams (`/processes/…`).
    Processes,
    /// The target's CPU per thread (`/threads/…`).
    Threads,
}

enum Begun {
    Processes(processes::Snapshot),
    Threads(threads::Reading),
}

/// The number a begun window is ended with (`GET /KIND/begin`).
#[derive(Debug, Serialize, Deserialize)]
pub struct Ticket {
    pub id: u64,
}

/// The begun windows of one observer: the last number given, and the windows held, oldest
/// first.
#[derive(Default)]
pub struct Windows {
    begun: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    last: u64,
    windows: VecDeque<(u64, Instant, Begun)>,
}

impl Windows {
    /// Reads what `kind` needs now, and holds it under a new number.
    pub fn begin(&self, kind: Kind, target: u32) -> Ticket {
        let reading = match kind {
            Kind::Processes => Begun::Processes(processes::snapshot()),
            Kind::Threads => Begun::Threads(threads::read(target)),
        };
        let mut held = self.begun.lock().unwrap_or_else(|e| e.into_inner());
        held.last += 1;
        let id = held.last;
        held.windows.push_back((id, Instant::now(), reading));
        while held.windows.len() > HELD {
            held.windows.pop_front();
        }
        Ticket { id }
    }

    /// Ends window `id` of `kind`: what changed since it began, as JSON. None when no such
    /// window is held (never begun, ended already, or dropped as too old).
    pub fn end(
        &self,
        kind: Kind,
        id: u64,
        target: u32,
        listen_port: Option<u16>,
    ) -> Option<serde_json::Value> {
        let (at, reading) = {
            let mut held = self.begun.lock().unwrap_or_else(|e| e.into_inner());
            let index = held.windows.iter().position(|(i, _, begun)| {
                *i == id
                    && matches!(
                        (kind, begun),
                        (Kind::Processes, Begun::Processes(_)) | (Kind::Threads, Begun::Threads(_))
                    )
            })?;
            let (_, at, reading) = held.windows.remove(index)?;
            (at, reading)
        };
        match reading {
            Begun::Processes(before) => {
                let after = processes::snapshot();
                let seconds = at.elapsed().as_secs_f64();
                let read: Processes = processes::observe_window(
                    target,
                    listen_port,
                    None,
                    (&before, &after),
                    seconds,
                );
                serde_json::to_value(read).ok()
            }
            Begun::Threads(before) => {
                let after = threads::read(target);
                let read: Threads = threads::between(
                    &before,
                    &after,
                    at.elapsed().as_secs_f64(),
                    super::procfs::clock_ticks(),
                );
                serde_json::to_value(read).ok()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_ends_once_and_only_as_the_kind_it_began() {
        let windows = Windows::default();
        let me = std::process::id();
        let threads = windows.begin(Kind::Threads, me);
        let processes = windows.begin(Kind::Processes, me);
        assert_eq!(windows.end(Kind::Processes, threads.id, me, None), None);
        let read = windows.end(Kind::Threads, threads.id, me, None).unwrap();
        let read: Threads = serde_json::from_value(read).unwrap();
        assert!(read.count >= 1, "{read:?}");
        assert_eq!(windows.end(Kind::Threads, threads.id, me, None), None);
        assert!(windows
            .end(Kind::Processes, processes.id, me, None)
            .is_some());
        // Only the newest HELD windows are kept.
        let first = windows.begin(Kind::Threads, me);
        for _ in 0..HELD {
            windows.begin(Kind::Threads, me);
        }
        assert_eq!(windows.end(Kind::Threads, first.id, me, None), None);
    }
}

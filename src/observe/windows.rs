//! Readings over a step's counted window: taken as the window begins, differenced as it ends
//! (the host's processes, the target's threads). One observer runs them for every kind, here
//! or through `knee observe` on the target's host: there the driver asks the observer to
//! *begin* a window as the step's counted part starts (it reads and holds the reading under a
//! number) and to *end* it as the step ends (it reads again and answers the difference). The
//! window is the step's, however long, and a run cut short ends it at once. An observer holds
//! only a few begun windows: a driver that never comes back costs nothing for long.

use super::remote::Ticket;
use super::{Observer, Pending};
use crate::model::step::StepResult;
use crate::model::Observed;
use crate::plan::{ObserverSpec, StepSpec};
use serde::{de::DeserializeOwned, Serialize};
use std::any::Any;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Instant;

/// Begun windows an observer holds at most (a hunt has one of each kind open at a time).
const HELD: usize = 32;

/// A kind of reading over a window.
pub trait Reading: Send + Sync + 'static {
    /// The step's `observed` key, and the observer's route (`/KIND/begin`, `/KIND/end`).
    const KIND: &'static str;
    /// What is read as the window begins.
    type Begun: Send + 'static;
    /// What the window comes to.
    type Read: Serialize + DeserializeOwned + Send + 'static;
    fn begin(&self) -> Self::Begun;
    /// Puts what the window came to in its place in `observed`.
    fn store(read: Self::Read, observed: &mut Observed);
    /// The window's reading, `seconds` after `begun`; None when there is nothing to say (the
    /// target is gone).
    fn end(&self, begun: Self::Begun, seconds: f64) -> Option<Self::Read>;
}

/// Where a window is read: on this host, or by the observer that watches the target.
enum Source<R> {
    Local(R),
    Observer(ObserverSpec),
}

/// What a step's window came to: this host's reading, or the observer's answer.
enum Ended<T> {
    Local(Option<T>),
    Remote(Result<Option<T>, String>),
}

/// Runs one kind of reading over each step's counted window.
pub struct WindowObserver<R: Reading> {
    source: Source<R>,
    pending: Pending<Ended<R::Read>>,
}

impl<R: Reading> WindowObserver<R> {
    /// Read on this host.
    pub fn local(reading: R) -> WindowObserver<R> {
        WindowObserver {
            source: Source::Local(reading),
            pending: Pending::new(),
        }
    }

    /// Read by the observer that watches the target.
    pub fn through(observer: ObserverSpec) -> WindowObserver<R> {
        WindowObserver {
            source: Source::Observer(observer),
            pending: Pending::new(),
        }
    }
}

impl<R: Reading + Clone> Observer for WindowObserver<R> {
    fn name(&self) -> &str {
        R::KIND
    }

    fn step_started(&mut self, spec: &StepSpec, starts_at: Instant) {
        let counted_from = starts_at + spec.warmup;
        let window = (counted_from, counted_from + spec.duration);
        match &self.source {
            Source::Local(reading) => {
                let (reading, ending) = (reading.clone(), reading.clone());
                self.pending.window(
                    &spec.name,
                    window,
                    move || reading.begin(),
                    move |begun, seconds| Ended::Local(ending.end(begun, seconds)),
                )
            }
            Source::Observer(observer) => {
                let (observer, ending) = (observer.clone(), observer.clone());
                self.pending.window(
                    &spec.name,
                    window,
                    move || super::remote::begin_window(&observer, R::KIND),
                    move |begun, _| {
                        Ended::Remote(begun.and_then(|id| {
                            super::remote::end_window::<Option<R::Read>>(&ending, R::KIND, id)
                        }))
                    },
                )
            }
        }
    }

    fn step_finished(
        &mut self,
        spec: &StepSpec,
        _result: &StepResult,
        _window: (Instant, Instant),
        observed: &mut Observed,
    ) {
        let read = match self.pending.finish(&spec.name) {
            Some(Ended::Local(read)) | Some(Ended::Remote(Ok(read))) => read,
            Some(Ended::Remote(Err(why))) => {
                crate::notice::say(format!(
                    "knee: no {} readings for {}: {why}",
                    R::KIND,
                    spec.name
                ));
                None
            }
            None => None,
        };
        if let Some(read) = read {
            R::store(read, observed);
        }
    }
}

/// The windows `knee observe` began for drivers, oldest first, each with its kind.
#[derive(Default)]
pub struct Windows {
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    last: u64,
    windows: VecDeque<(u64, &'static str, Instant, Box<dyn Any + Send>)>,
}

impl Windows {
    /// Reads what `reading` needs now, and holds it under a new number.
    pub fn begin<R: Reading>(&self, reading: &R) -> Ticket {
        let begun = Box::new(reading.begin());
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.last += 1;
        let id = held.last;
        held.windows.push_back((id, R::KIND, Instant::now(), begun));
        while held.windows.len() > HELD {
            held.windows.pop_front();
        }
        Ticket { id }
    }

    /// Ends window `id` of `reading`'s kind: Some(its reading, or None when there is nothing
    /// to say); None when no such window is held (never begun, ended already, or dropped as
    /// too old).
    pub fn end<R: Reading>(&self, reading: &R, id: u64) -> Option<Option<R::Read>> {
        let (at, begun) = {
            let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            let index = held
                .windows
                .iter()
                .position(|(i, kind, _, _)| *i == id && *kind == R::KIND)?;
            let (_, _, at, begun) = held.windows.remove(index)?;
            (at, begun.downcast::<R::Begun>().ok()?)
        };
        Some(reading.end(*begun, at.elapsed().as_secs_f64()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::processes::ProcessesReading;
    use crate::observe::threads::{Threads, ThreadsReading};

    #[test]
    fn a_window_ends_once_and_only_as_the_kind_it_began() {
        let windows = Windows::default();
        let me = std::process::id();
        let (threads, processes) = (
            ThreadsReading { pid: me },
            ProcessesReading {
                targets: vec![me],
                listen_port: None,
                generator: None,
            },
        );
        let begun_threads = windows.begin(&threads);
        let begun_processes = windows.begin(&processes);
        assert!(windows.end(&processes, begun_threads.id).is_none());
        let read: Threads = windows.end(&threads, begun_threads.id).unwrap().unwrap();
        assert!(read.count >= 1, "{read:?}");
        assert!(windows.end(&threads, begun_threads.id).is_none());
        assert!(windows.end(&processes, begun_processes.id).is_some());
        // Only the newest HELD windows are kept.
        let first = windows.begin(&threads);
        for _ in 0..HELD {
            windows.begin(&threads);
        }
        assert!(windows.end(&threads, first.id).is_none());
    }
}

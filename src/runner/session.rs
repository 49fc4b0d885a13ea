//! A run's steps, one chain at a time: the engine runs a chain's steps back to back, and a
//! *finisher* thread of its own takes each step as it drains — the observers' readings,
//! profiles and flamegraphs, the terminal line, the run folder (steps.jsonl fsync'd, the
//! histograms). Nothing the finisher does can hold up the load: the next step starts when
//! its schedule says, whatever observing the last one takes (a remote observer's window can
//! take seconds to end, `perf script` tens of seconds of CPU). The finisher runs at a lower
//! priority than the load, so on a busy host its work yields to the generator and the target.
//!
//! Profiled steps get a tail (`StepSpec::profile`): the same load after the counted part,
//! not counted, while the profilers record; what they cost the target is measured there
//! and stays out of the step's figures.

use crate::engine::{Engine, LiveSink, StepOutcome};
use crate::error::Error;
use crate::hunt::knee::littles_law_note;
use crate::hunt::StepRunner;
use crate::model::step::StepResult;
use crate::model::{Observed, Phase};
use crate::observe::Observer;
use crate::output::RunFolder;
use crate::plan::StepSpec;
use crate::slo::Slo;
use crate::terminal::{StepBar, Terminal};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;

/// Runs steps and keeps everything they produce.
pub struct Session {
    engine: Engine,
    /// What the finisher takes while a chain runs (None then), and gives back.
    keeper: Option<Keeper>,
    terminal: Terminal,
    stop: watch::Receiver<bool>,
    /// The SLO steps are judged by (a hunt may add a latency bound after its first step).
    slo: Slo,
    steps: Vec<StepResult>,
    interrupted: bool,
    /// Steps expected in all, for the progress prefix (0 when unknown, as in a hunt).
    planned: usize,
    /// The run's start: steps' `started_s` and the samples' `t_s` count from it.
    origin: Instant,
    /// A profiler runs: profiled steps get their tail.
    profiling: bool,
}

/// What finishing a step writes to: the observers and the run folder.
struct Keeper {
    folder: RunFolder,
    observers: Vec<Box<dyn Observer>>,
    /// Keep slim copies of the steps (`StepResult::slimmed`): a soak's windows, read back
    /// whole from steps.jsonl at the end.
    slim: bool,
}

/// A session's parts, as the runner makes them.
pub struct Parts {
    pub engine: Engine,
    pub folder: RunFolder,
    pub terminal: Terminal,
    pub observers: Vec<Box<dyn Observer>>,
    pub stop: watch::Receiver<bool>,
    pub slo: Slo,
    pub planned: usize,
    pub origin: Instant,
    pub slim: bool,
    pub profiling: bool,
}

impl Session {
    pub fn new(parts: Parts) -> Session {
        Session {
            engine: parts.engine,
            keeper: Some(Keeper {
                folder: parts.folder,
                observers: parts.observers,
                slim: parts.slim,
            }),
            terminal: parts.terminal,
            stop: parts.stop,
            slo: parts.slo,
            steps: Vec::new(),
            interrupted: false,
            planned: parts.planned,
            origin: parts.origin,
            profiling: parts.profiling,
        }
    }

    /// The steps so far, and the session's folder, once it is done.
    pub fn into_parts(self) -> (Vec<StepResult>, RunFolder, Slo, bool) {
        let keeper = self.keeper.expect("no chain is running");
        (self.steps, keeper.folder, self.slo, self.interrupted)
    }

    /// A chain's steps as they run: each profiled one with its tail (see the module's
    /// header), except a step a recovery step follows: the recovery must start from what
    /// the overload alone left behind, not from a profiled tail's (measured on the demo's
    /// lock: good throughput 53 % lower in the overload's tail, and 0.8 s more recovery).
    fn with_profile_windows(&self, specs: &[StepSpec]) -> Vec<StepSpec> {
        specs
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let mut spec = spec.clone();
                let recovery_next = specs.get(i + 1).is_some_and(|s| s.phase == Phase::Recovery)
                    && !spec.profile_before_recovery;
                if self.profiling && crate::flame::profiled(&spec) && !recovery_next {
                    spec.profile = profile_window(&spec);
                }
                spec
            })
            .collect()
    }
}

impl StepRunner for Session {
    /// Runs steps back to back with no pause between them (see `Engine::run_chain`); each
    /// is finished (observed, written) on the finisher thread as soon as it has drained.
    async fn chain(&mut self, specs: &[StepSpec]) -> Result<Vec<StepResult>, Error> {
        if self.interrupted || *self.stop.borrow() {
            self.interrupted = true;
            return Ok(Vec::new());
        }
        let specs = self.with_profile_windows(specs);
        let mut keeper = self.keeper.take().expect("chains do not overlap");
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        if let Err(problem) = keeper.folder.begin_chain(&names) {
            self.keeper = Some(keeper);
            return Err(problem);
        }
        // The chain's steps follow one another with no pause (see `Engine::run_chain`).
        let first_start = Instant::now() + Duration::from_millis(2);
        let mut starts_at = first_start;
        for spec in &specs {
            for observer in &mut keeper.observers {
                observer.step_started(spec, starts_at);
            }
            starts_at += spec.length();
        }
        let bars: Vec<Arc<StepBar>> = specs
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                self.terminal
                    .step_bar(self.steps.len() + i, self.planned, spec)
            })
            .collect();
        let steps: Vec<(&StepSpec, Arc<dyn LiveSink>)> = specs
            .iter()
            .zip(&bars)
            .map(|(spec, bar)| (spec, bar.clone() as Arc<dyn LiveSink>))
            .collect();
        let (to_finisher, finishing) = mpsc::channel::<(usize, StepOutcome)>();
        let failed = Arc::new(AtomicBool::new(false));
        let finisher = Finisher {
            specs: specs.clone(),
            bars: bars.clone(),
            terminal: self.terminal.clone(),
            origin: self.origin,
            failed: failed.clone(),
        };
        let finished = tokio::task::spawn_blocking(move || {
            let progress = finisher.run(&mut keeper, finishing);
            progress.map_keeper(keeper)
        });
        let chained = self
            .engine
            .run_chain(&steps, &self.slo, first_start, |index, outcome| {
                if failed.load(Ordering::Relaxed) {
                    return Err(Error::Internal(anyhow::anyhow!(
                        "the run folder could not be written"
                    )));
                }
                let _ = to_finisher.send((index, outcome));
                Ok(())
            })
            .await;
        drop(to_finisher);
        let done = finished
            .await
            .map_err(|e| Error::Internal(anyhow::anyhow!("finishing the steps failed: {e}")))?;
        self.keeper = Some(done.keeper);
        self.interrupted |= done.interrupted;
        let results = done.steps;
        self.steps.extend(results.iter().cloned());
        if let Some(error) = done.error {
            return Err(error);
        }
        chained?;
        Ok(results)
    }

    fn steps(&self) -> &[StepResult] {
        &self.steps
    }

    fn slo(&self) -> &Slo {
        &self.slo
    }

    fn slo_mut(&mut self) -> &mut Slo {
        &mut self.slo
    }

    fn interrupted(&self) -> bool {
        self.interrupted
    }
}

/// A profiled step's tail: as long as its counted part, within 1–2 s (the off-CPU recording
/// takes one second of it; Go's pprof endpoints profile whole seconds).
pub fn profile_window(spec: &StepSpec) -> Duration {
    spec.duration
        .clamp(Duration::from_secs(1), Duration::from_secs(2))
}

/// Finishes a chain's steps in order, on a thread of its own.
struct Finisher {
    specs: Vec<StepSpec>,
    bars: Vec<Arc<StepBar>>,
    terminal: Terminal,
    origin: Instant,
    failed: Arc<AtomicBool>,
}

/// What the finisher gives back.
struct Finished {
    keeper: Keeper,
    /// The chain's results, as the session keeps them (slim for a soak).
    steps: Vec<StepResult>,
    interrupted: bool,
    error: Option<Error>,
}

/// The chain's results so far, and the first error writing them.
struct Progress {
    steps: Vec<StepResult>,
    interrupted: bool,
    error: Option<Error>,
}

impl Progress {
    fn map_keeper(self, keeper: Keeper) -> Finished {
        Finished {
            keeper,
            steps: self.steps,
            interrupted: self.interrupted,
            error: self.error,
        }
    }
}

impl Finisher {
    fn run(self, keeper: &mut Keeper, arrivals: mpsc::Receiver<(usize, StepOutcome)>) -> Progress {
        crate::observe::in_background();
        let mut progress = Progress {
            steps: Vec::new(),
            interrupted: false,
            error: None,
        };
        // Steps drain in any order; they are finished (and written) in the chain's order.
        let mut waiting: BTreeMap<usize, StepOutcome> = BTreeMap::new();
        let mut next = 0;
        for (index, outcome) in arrivals {
            waiting.insert(index, outcome);
            while let Some(outcome) = waiting.remove(&next) {
                self.finish_one(keeper, next, outcome, &mut progress);
                next += 1;
            }
        }
        progress
    }

    fn finish_one(
        &self,
        keeper: &mut Keeper,
        index: usize,
        outcome: StepOutcome,
        progress: &mut Progress,
    ) {
        let spec = &self.specs[index];
        let mut result = outcome.result;
        let started_s = outcome.started.saturating_duration_since(self.origin);
        result.started_s = Some((started_s.as_secs_f64() * 1000.0).round() / 1000.0);
        result.notes.extend(littles_law_note(&result));
        result
            .notes
            .extend(crate::analyze::verdict::nagle::ack_timer_note(&result));
        if let (Some(before), true) = (progress.steps.last(), spec.phase == Phase::Recovery) {
            result.notes.extend(after_a_profiled_tail(before));
        }
        let mut observed = Observed::default();
        for observer in keeper.observers.iter_mut() {
            observer.step_finished(spec, &result, outcome.window, &mut observed);
        }
        if !observed.is_empty() {
            result.observed = Some(observed);
        }
        self.terminal.step_finished(&self.bars[index], &result);
        progress.interrupted |= outcome.interrupted;
        if progress.error.is_none() {
            let started = SystemTime::now()
                .checked_sub(outcome.window.0.elapsed())
                .unwrap_or_else(SystemTime::now);
            if let Err(error) = keeper.folder.append_step(
                &result,
                (&outcome.latency, &outcome.service),
                &outcome.by_request,
                started,
            ) {
                self.failed.store(true, Ordering::Relaxed);
                progress.error = Some(error);
            }
        }
        progress.steps.push(if keeper.slim {
            result.slimmed()
        } else {
            result
        });
        // The window's histograms, slices and buffers are freed: give the pages back, so
        // knee's RSS follows what it holds, not its highest point.
        crate::engine::release_free_memory();
    }
}

/// A recovery step that followed a profiled tail starts from the queue that tail left: it
/// says so, with what the tail cost.
fn after_a_profiled_tail(before: &StepResult) -> Option<String> {
    let tail = before.profiled.as_ref()?;
    Some(format!(
        "started after {}'s {:.1} s profiled tail (good throughput {:.0}/s there, {:.0}/s counted): the queue it met includes what profiling added",
        before.name, tail.seconds, tail.ok_rps, before.ok_rps
    ))
}

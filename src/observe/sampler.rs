//! The sampler: a thread that reads the host, the target process (and its children), the
//! generator itself and any Prometheus endpoints every `interval` (never under 200 ms, so CPU
//! figures mean something), appends each sample to `samples.jsonl`, and keeps a bounded
//! window of recent samples to summarize each step (min/mean/max per series). A sample is a
//! flat map of dotted names ("target.cpu_cores") to numbers, easy to plot and to query.

pub use crate::model::observed::Stat;

use super::reading::Reader;
pub use super::reading::SamplerConfig;
use super::remote::Feed;
use super::Observer;
use crate::model::observed::{Observed, Samplers};
use crate::model::step::StepResult;
use crate::plan::StepSpec;

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The floor of the sampling interval: CPU shares need time between two readings.
pub const MIN_INTERVAL: Duration = Duration::from_millis(200);
pub use crate::model::observed::Sample;

struct State {
    samples: VecDeque<(Instant, Sample)>,
    /// Readings of this host taken so far (the number of the last one).
    pushed: u64,
    /// Seconds since the start when the target was first seen gone.
    target_gone_at: Option<f64>,
    /// Where the host and target series come from ("host" → "/proc on this machine", or an
    /// exporter's URL), for the verdict and the reports.
    sources: BTreeMap<String, String>,
}

pub struct Sampler {
    state: Arc<Mutex<State>>,
    running: Arc<AtomicBool>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    target: Option<u32>,
    interval: Duration,
    /// When the sampler last began a reading (see `wait_past`).
    began: Arc<Mutex<Instant>>,
    feeds: Vec<Arc<Feed>>,
}

impl Sampler {
    /// Starts sampling now.
    pub fn start(mut config: SamplerConfig) -> std::io::Result<Sampler> {
        let mut file = match &config.samples_path {
            Some(path) => Some(File::create(path)?),
            None => None,
        };
        let state = Arc::new(Mutex::new(State {
            samples: VecDeque::new(),
            pushed: 0,
            target_gone_at: None,
            sources: BTreeMap::new(),
        }));
        let running = Arc::new(AtomicBool::new(true));
        let interval = config.interval.max(MIN_INTERVAL);
        let began = Arc::new(Mutex::new(Instant::now()));
        let began_t = began.clone();
        let mut reader = Reader::new(&mut config, interval);
        let (state_t, running_t) = (state.clone(), running.clone());
        let (feeds, keep) = (config.feeds.clone(), config.keep);
        let thread = std::thread::Builder::new()
            .name("knee-sampler".into())
            .spawn(move || {
                reader.read(); // the baseline for rates
                let mut next = Instant::now() + reader.interval;
                let mut write = |sample: &Sample| {
                    if let (Some(file), Ok(line)) = (file.as_mut(), serde_json::to_string(sample)) {
                        let _ = writeln!(file, "{line}");
                    }
                };
                while running_t.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    if now < next {
                        std::thread::sleep((next - now).min(Duration::from_millis(50)));
                        continue;
                    }
                    // Behind (a starved host): the next reading an interval from now, not a
                    // burst of catch-up readings a few ms apart whose rates mean nothing.
                    next = (next + reader.interval).max(now + reader.interval / 2);
                    let (sample, gone) = reader.read();
                    let pushed_from = now;
                    write(&sample);
                    let arrived: Vec<(Instant, Sample)> =
                        feeds.iter().flat_map(|feed| feed.drain()).collect();
                    arrived.iter().for_each(|(_, sample)| write(sample));
                    let mut state = state_t.lock().unwrap_or_else(|e| e.into_inner());
                    if gone && state.target_gone_at.is_none() {
                        state.target_gone_at = Some(sample.t_s);
                    }
                    state.sources = reader.sources();
                    for feed in &feeds {
                        feed.add_sources(&mut state.sources);
                    }
                    state.samples.push_back((pushed_from, sample));
                    state.pushed += 1;
                    for (at, sample) in arrived {
                        // An observer's samples arrive late: filed by when they were read.
                        let index = state.samples.partition_point(|(t, _)| *t <= at);
                        state.samples.insert(index, (at, sample));
                    }
                    while state.samples.len() > keep {
                        state.samples.pop_front();
                    }
                    drop(state);
                    *began_t.lock().unwrap_or_else(|e| e.into_inner()) = pushed_from;
                }
                if let Some(file) = file.as_mut() {
                    let _ = file.flush();
                }
            })?;
        Ok(Sampler {
            state,
            running,
            thread: Mutex::new(Some(thread)),
            target: config.target,
            interval,
            began,
            feeds: config.feeds,
        })
    }

    /// This host's readings numbered after `after` (1 is the first ever taken), at most
    /// `limit` of them, with the first number still held (a reader that asked for an older one
    /// lost samples). For `knee observe`, whose sampler has no feeds: an observer's samples
    /// would not be numbered.
    pub fn samples_after(&self, after: u64, limit: usize) -> (u64, Vec<(u64, Sample)>) {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let first = state.pushed + 1 - state.samples.len() as u64;
        let skip = after.saturating_sub(first - 1) as usize;
        let numbered = state
            .samples
            .iter()
            .enumerate()
            .skip(skip)
            .take(limit)
            .map(|(i, (_, sample))| (first + i as u64, sample.clone()))
            .collect();
        (first, numbered)
    }

    /// The number of the last reading taken (0 before the first).
    pub fn last_number(&self) -> u64 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).pushed
    }

    /// Seconds into the run when the target process was first seen gone.
    /// Where the host and target series come from.
    pub fn sources(&self) -> BTreeMap<String, String> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .sources
            .clone()
    }

    pub fn target_gone_at(&self) -> Option<f64> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .target_gone_at
    }

    /// min/mean/max of every series over [from, to].
    pub fn summarize(&self, from: Instant, to: Instant) -> (usize, BTreeMap<String, Stat>) {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let window: Vec<&Sample> = state
            .samples
            .iter()
            .filter(|(at, _)| *at >= from && *at <= to)
            .map(|(_, s)| s)
            .collect();
        let mut stats = summarize(&window);
        super::remote_replicas::add_service_sums(&mut stats);
        (window.len(), stats)
    }

    /// Waits (at most `limit`) until a sample begun after `at` is in, or the sampler stopped.
    pub fn wait_past(&self, at: Instant, limit: Duration) {
        let deadline = Instant::now() + limit;
        let behind = || {
            *self.began.lock().unwrap_or_else(|e| e.into_inner()) < at
                || !self.feeds.iter().all(|feed| feed.caught_up(at))
        };
        while behind() && self.running.load(Ordering::Relaxed) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Drops the samples taken before `at` (every step that needed them is summarized).
    pub fn forget_before(&self, at: Instant) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while state.samples.front().is_some_and(|(t, _)| *t < at) {
            state.samples.pop_front();
        }
    }

    /// Samples held in memory now.
    pub fn held(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .samples
            .len()
    }

    pub fn stop(&self) {
        self.running.store(false, Ordering::Relaxed);
        self.feeds.iter().for_each(|feed| feed.stop());
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop();
    }
}

/// min/mean/max per series over samples.
pub fn summarize(samples: &[&Sample]) -> BTreeMap<String, Stat> {
    let mut acc: BTreeMap<&str, (f64, f64, f64, usize)> = BTreeMap::new();
    for sample in samples {
        for (key, &value) in &sample.values {
            let entry = acc
                .entry(key)
                .or_insert((f64::INFINITY, 0.0, f64::NEG_INFINITY, 0));
            entry.0 = entry.0.min(value);
            entry.1 += value;
            entry.2 = entry.2.max(value);
            entry.3 += 1;
        }
    }
    acc.into_iter()
        .map(|(k, (min, sum, max, n))| {
            (
                k.to_string(),
                Stat {
                    min,
                    mean: sum / n as f64,
                    max,
                },
            )
        })
        .collect()
}

/// The sampler as an observer: each step gets the summary of its counted window.
pub struct SamplerObserver(pub Arc<Sampler>);

impl Observer for SamplerObserver {
    fn name(&self) -> &str {
        "samplers"
    }

    fn step_started(&mut self, _spec: &StepSpec, _starts_at: Instant) {}

    fn step_finished(
        &mut self,
        _spec: &StepSpec,
        _result: &StepResult,
        window: (Instant, Instant),
        observed: &mut Observed,
    ) {
        // A sample is filed under the instant its reading began; on a saturated host a
        // reading can take most of a second, so wait until the sampler has begun one past
        // the window's end: every sample of the window is then in.
        self.0
            .wait_past(window.1, self.0.interval * 4 + Duration::from_secs(1));
        let (count, series) = self.0.summarize(window.0, window.1);
        // Steps end in order, and the next one's window starts where this one's ended.
        self.0.forget_before(window.1);
        observed.samplers = Some(Samplers {
            samples: count as u64,
            target_pid: self.0.target,
            target_gone_at_s: self.0.target_gone_at(),
            sources: self.0.sources(),
            series,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A summarized step's samples are dropped from memory (a long soak keeps one window's
    /// worth); the file keeps them all.
    #[test]
    fn samples_before_a_summarized_step_are_forgotten() {
        let dir = std::env::temp_dir().join(format!("knee-sampler-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("samples.jsonl");
        let sampler = Sampler::start(SamplerConfig {
            samples_path: Some(path.clone()),
            ..SamplerConfig::new(MIN_INTERVAL, Instant::now())
        })
        .unwrap();
        let from = Instant::now();
        std::thread::sleep(Duration::from_millis(900));
        let to = Instant::now();
        let (count, series) = sampler.summarize(from, to);
        assert!(
            count >= 3 && series.contains_key("host.cpu_cores"),
            "{count}"
        );
        sampler.forget_before(to);
        assert!(sampler.held() <= 1, "{}", sampler.held());
        sampler.stop();
        let written = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(written >= count, "{written} lines written");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

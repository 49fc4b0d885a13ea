//! The sampler: a thread that reads the host, the target process (and its children), the
//! generator itself and any Prometheus endpoints every `interval` (never under 200 ms, so CPU
//! figures mean something), appends each sample to `samples.jsonl`, and keeps a bounded
//! window of recent samples to summarize each step (min/mean/max per series). A sample is a
//! flat map of dotted names ("target.cpu_cores") to numbers, easy to plot and to query.

pub use crate::model::observed::Stat;

use super::procfs::{self, ProcCounters};
use super::prometheus::{MetricsSource, Scraper};
use super::remote::Feed;
use super::Observer;
use crate::model::observed::{Observed, Samplers};
use crate::model::step::StepResult;
use crate::plan::StepSpec;

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The floor of the sampling interval: CPU shares need time between two readings.
pub const MIN_INTERVAL: Duration = Duration::from_millis(200);
/// Samples kept in memory at most (the run folder has them all): 2 hours at 500 ms. Once a
/// step is summarized, the samples before its end are dropped (`SamplerObserver`), so a long
/// soak keeps about one window's worth, not hours of them.
const KEEP: usize = 14_400;

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

/// What the sampler thread needs.
struct Reader {
    started: Instant,
    interval: Duration,
    target: Option<u32>,
    /// A target of several processes: each replica (`target` is the first).
    replicas: Vec<u32>,
    /// The local balancer in front of the target (`balancer.*`).
    balancer: Option<u32>,
    /// The target's listening port on this host, for its accept queue.
    listen_port: Option<u16>,
    metrics: Vec<Scraper>,
    /// Per endpoint: the number of its last scrape taken, and what it supplied.
    taken: Vec<(u64, super::exporters::Provided)>,
    ticks: f64,
    previous: Option<Previous>,
    /// The target is on another host: this machine's host-wide readings are the generator's
    /// host (`generator_host.*`, `generator_net.*`), never the target's.
    remote: bool,
    /// The target's cgroup and fd limits, the host's pressure and disks.
    limits: super::limits::Limits,
}

/// Cumulative counters of the last reading, for rates.
struct Previous {
    at: Instant,
    cpu: Option<procfs::CpuTimes>,
    throttled_us: Option<u64>,
    target: Option<ProcCounters>,
    replicas: Vec<Option<ProcCounters>>,
    balancer: Option<ProcCounters>,
    generator: Option<ProcCounters>,
    tcp: std::collections::HashMap<&'static str, u64>,
}

/// What a sampler reads, and where it puts it.
pub struct SamplerConfig {
    pub interval: Duration,
    pub target: Option<u32>,
    /// A target of several processes: each replica, the first `target` (empty for one).
    pub replicas: Vec<u32>,
    /// The local balancer in front of the target, sampled as `balancer.*`.
    pub balancer: Option<u32>,
    /// The target's listening port on this host, for its accept queue.
    pub listen_port: Option<u16>,
    pub metrics: Vec<MetricsSource>,
    /// Every sample as a JSON line; none keeps them in memory only (`knee observe`).
    pub samples_path: Option<PathBuf>,
    /// The run's start: samples' `t_s` counts from it.
    pub origin: Instant,
    /// The target is on another host (see `Reader::remote`).
    pub remote: bool,
    /// Samples held in memory at most.
    pub keep: usize,
    /// `knee observe` servers whose samples join this machine's.
    pub feeds: Vec<Arc<Feed>>,
}

impl SamplerConfig {
    /// A sampler of this host, writing nothing, keeping `KEEP` samples.
    pub fn new(interval: Duration, origin: Instant) -> SamplerConfig {
        SamplerConfig {
            interval,
            target: None,
            replicas: Vec::new(),
            balancer: None,
            listen_port: None,
            metrics: Vec::new(),
            samples_path: None,
            origin,
            remote: false,
            keep: KEEP,
            feeds: Vec::new(),
        }
    }
}

impl Sampler {
    /// Starts sampling now.
    pub fn start(config: SamplerConfig) -> std::io::Result<Sampler> {
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
        let mut reader = Reader {
            started: config.origin,
            interval,
            target: config.target,
            replicas: config.replicas,
            balancer: config.balancer,
            listen_port: config.listen_port,
            taken: vec![Default::default(); config.metrics.len()],
            metrics: config
                .metrics
                .into_iter()
                .map(|m| Scraper::start(m, interval))
                .collect(),
            ticks: procfs::clock_ticks(),
            previous: None,
            remote: config.remote,
            limits: super::limits::Limits::new(config.target),
        };
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

impl Reader {
    /// Where the host and target series come from, as of the last reading.
    fn sources(&self) -> BTreeMap<String, String> {
        let mut sources = BTreeMap::new();
        if !self.remote {
            sources.insert("host".to_string(), "/proc on this machine".to_string());
        }
        if let Some(pid) = self.target {
            sources.insert("target".to_string(), format!("/proc of pid {pid}"));
        }
        if let Some(cgroup) = self.limits.describe() {
            sources.insert("cgroup".to_string(), cgroup);
        }
        if let Some(device) = self.limits.io_limited_device() {
            sources.insert("io_limit".to_string(), device);
        }
        for (metrics, (_, provided)) in self.metrics.iter().zip(&self.taken) {
            for (group, given) in [("host", provided.host), ("target", provided.target)] {
                if given {
                    sources.entry(group.to_string()).or_insert_with(|| {
                        format!("{} ({})", metrics.url, metrics.exporter(group))
                    });
                }
            }
            if let Some(gc) = provided.gc {
                sources
                    .entry("gc".to_string())
                    .or_insert_with(|| format!("{} ({gc})", metrics.url));
            }
            if provided.cadvisor {
                sources
                    .entry("cgroup".to_string())
                    .or_insert_with(|| format!("{} (cAdvisor)", metrics.url));
            }
        }
        sources
    }

    /// Takes one sample; the bool is true when the target has gone.
    fn read(&mut self) -> (Sample, bool) {
        let now = Instant::now();
        let mut values = BTreeMap::new();
        let dt = self
            .previous
            .as_ref()
            .map(|p| now.duration_since(p.at).as_secs_f64().max(1e-3));
        let cpu = procfs::cpu_times();
        let cgroup = procfs::cgroup();
        if let (Some(cpu), Some(dt)) = (&cpu, dt) {
            if let Some(prev) = self.previous.as_ref().and_then(|p| p.cpu.as_ref()) {
                let share = |(b1, t1): (u64, u64), (b0, t0): (u64, u64)| {
                    (b1.saturating_sub(b0)) as f64 / (t1.saturating_sub(t0)).max(1) as f64
                };
                let per_core: Vec<f64> = cpu
                    .per_core
                    .iter()
                    .zip(&prev.per_core)
                    .map(|(a, b)| share(*a, *b))
                    .collect();
                values.insert("host.cpu_cores".into(), per_core.iter().sum());
                for (i, busy) in per_core.iter().enumerate() {
                    values.insert(format!("host.cpu{i}"), *busy);
                }
            }
            if let (Some(t1), Some(t0)) = (
                cgroup.throttled_us,
                self.previous.as_ref().and_then(|p| p.throttled_us),
            ) {
                values.insert(
                    "host.cgroup_throttled_share".into(),
                    t1.saturating_sub(t0) as f64 / 1e6 / dt,
                );
            }
        }
        if let Some(cpu) = &cpu {
            values.insert("host.run_queue".into(), cpu.procs_running as f64);
            values.insert("host.cores".into(), cpu.per_core.len() as f64);
        }
        if let Some(load) = procfs::load_average() {
            values.insert("host.load1".into(), load);
        }
        if let Some((total, available, swap_total, swap_free)) = procfs::memory_kib() {
            // LXCFS can report more available than total: never less than nothing used.
            values.insert(
                "host.mem_used_mb".into(),
                total.saturating_sub(available) as f64 / 1024.0,
            );
            values.insert("host.mem_available_mb".into(), available as f64 / 1024.0);
            values.insert(
                "host.swap_used_mb".into(),
                swap_total.saturating_sub(swap_free) as f64 / 1024.0,
            );
        }
        if let Some(limit) = cgroup.memory_limit {
            values.insert(
                "host.cgroup_memory_limit_mb".into(),
                limit as f64 / 1048576.0,
            );
        }
        if let Some(used) = cgroup.memory_used {
            values.insert("host.cgroup_memory_used_mb".into(), used as f64 / 1048576.0);
        }
        let generator = procfs::process(std::process::id());
        self.process_values("generator", generator.as_ref(), 1, dt, &mut values, |p| {
            p.generator.as_ref()
        });
        let mut gone = false;
        let mut target_counters = None;
        let replica_counters = self.read_replicas(dt, &mut values);
        if let Some(pid) = self.target {
            // Several replicas: the service is their sum; gone when every one is.
            let tree = if self.replicas.is_empty() {
                procfs::process_tree_counters(pid)
            } else {
                sum_of(&replica_counters)
            };
            gone = tree.is_none();
            values.insert("target.alive".into(), if gone { 0.0 } else { 1.0 });
            let processes = tree.as_ref().map_or(0, |(_, n)| *n);
            target_counters = tree.map(|(counters, _)| counters);
            self.process_values(
                "target",
                target_counters.as_ref(),
                processes,
                dt,
                &mut values,
                |p| p.target.as_ref(),
            );
        }
        let balancer = self.balancer.and_then(procfs::process_tree_counters);
        let processes = balancer.as_ref().map_or(0, |(_, n)| *n);
        let balancer = balancer.map(|(counters, _)| counters);
        self.process_values(
            "balancer",
            balancer.as_ref(),
            processes,
            dt,
            &mut values,
            |p| p.balancer.as_ref(),
        );
        if let Some(balancer) = self.balancer {
            // Its connections to its upstreams: those not to its own listening port.
            let upstream: usize = super::processes::downstreams(balancer, self.listen_port)
                .iter()
                .map(|(_, _, connections)| connections)
                .sum();
            values.insert("balancer.upstream_connections".into(), upstream as f64);
        }
        let tcp = procfs::tcp_counters();
        if let (Some(dt), Some(before)) = (dt, self.previous.as_ref().map(|p| &p.tcp)) {
            for (name, value) in &tcp {
                if let Some(was) = before.get(name) {
                    values.insert(
                        format!("net.{name}_per_s"),
                        value.saturating_sub(*was) as f64 / dt,
                    );
                }
            }
        }
        self.limits.read(now, &mut values);
        if let Some((waiting, backlog)) = self.listen_port.and_then(super::sockdiag::accept_queue) {
            values.insert("net.accept_queue".into(), waiting as f64);
            values.insert("net.accept_backlog".into(), backlog as f64);
        }
        if self.remote {
            values = values
                .into_iter()
                .map(|(key, value)| (crate::model::series::on_generator_host(key), value))
                .collect();
        }
        // Exporters fill what /proc did not (a remote target's host and process): each
        // endpoint's scrape that answered since the last reading (none: a gap in its series).
        for (scraper, taken) in self.metrics.iter().zip(&mut self.taken) {
            let Some(scraped) = scraper.take_after(taken.0) else {
                continue;
            };
            *taken = (scraped.number, scraped.provided);
            for (key, value) in scraped.values {
                values.entry(key).or_insert(value);
            }
        }
        let t_s = now.duration_since(self.started).as_secs_f64();
        self.previous = Some(Previous {
            at: now,
            cpu,
            throttled_us: cgroup.throttled_us,
            target: target_counters,
            replicas: replica_counters
                .into_iter()
                .map(|r| r.map(|(c, _)| c))
                .collect(),
            balancer,
            generator,
            tcp,
        });
        (Sample { t_s, values }, gone)
    }

    /// Each replica's figures (`replicaN.*`), and its counters (with its process count).
    fn read_replicas(
        &self,
        dt: Option<f64>,
        values: &mut BTreeMap<String, f64>,
    ) -> Vec<Option<(ProcCounters, usize)>> {
        let trees: Vec<Option<(ProcCounters, usize)>> = self
            .replicas
            .iter()
            .map(|pid| procfs::process_tree_counters(*pid))
            .collect();
        for (i, tree) in trees.iter().enumerate() {
            let prefix = format!("replica{}", i + 1);
            let (counters, processes) = tree.as_ref().map_or((None, 0), |(c, n)| (Some(c), *n));
            self.process_values(&prefix, counters, processes, dt, values, |p| {
                p.replicas.get(i).and_then(Option::as_ref)
            });
        }
        trees
    }

    /// Adds a process's figures under `prefix`; rates need the previous reading.
    fn process_values(
        &self,
        prefix: &str,
        now: Option<&ProcCounters>,
        processes: usize,
        dt: Option<f64>,
        values: &mut BTreeMap<String, f64>,
        previous: impl Fn(&Previous) -> Option<&ProcCounters>,
    ) {
        let Some(now) = now else { return };
        let mut put = |name: &str, value: f64| {
            values.insert(format!("{prefix}.{name}"), value);
        };
        put("rss_mb", now.rss_kib as f64 / 1024.0);
        put("threads", now.threads as f64);
        put("fds", now.fds as f64);
        put("processes", processes as f64);
        let (Some(dt), Some(before)) = (dt, self.previous.as_ref().and_then(previous)) else {
            return;
        };
        let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / dt;
        put(
            "cpu_cores",
            rate(now.cpu_ticks, before.cpu_ticks) / self.ticks,
        );
        put(
            "voluntary_ctx_per_s",
            rate(now.voluntary_ctx, before.voluntary_ctx),
        );
        put(
            "involuntary_ctx_per_s",
            rate(now.involuntary_ctx, before.involuntary_ctx),
        );
        put("read_bytes_per_s", rate(now.read_bytes, before.read_bytes));
        if prefix != "generator" {
            put(
                "write_calls_per_s",
                rate(now.write_calls, before.write_calls),
            );
        }
        put(
            "write_bytes_per_s",
            rate(now.write_bytes, before.write_bytes),
        );
    }
}

/// The replicas' counters summed, with their processes; None when every one is gone.
fn sum_of(replicas: &[Option<(ProcCounters, usize)>]) -> Option<(ProcCounters, usize)> {
    replicas
        .iter()
        .flatten()
        .cloned()
        .reduce(|(mut total, n), (counters, m)| {
            total.add(&counters);
            (total, n + m)
        })
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

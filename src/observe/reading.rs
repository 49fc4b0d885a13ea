//! One reading of everything the sampler watches on this host: the host's CPU, memory and
//! cgroup, the generator, the target (its process tree, or its replicas summed), a local
//! balancer, the kernel's TCP counters and the target's accept queue, the limits, and the
//! exporters' latest scrapes. Rates need two readings: each keeps its counters for the next.

use super::procfs::{self, ProcCounters};
use super::prometheus::{MetricsSource, Scraper};
use super::remote::Feed;
use crate::model::observed::Sample;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Samples kept in memory at most (the run folder has them all): 2 hours at 500 ms. Once a
/// step is summarized, the samples before its end are dropped (`SamplerObserver`), so a long
/// soak keeps about one window's worth, not hours of them.
const KEEP: usize = 14_400;

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
    /// The target is on another host: this machine's host-wide readings are then the
    /// generator's host (`generator_host.*`, `generator_net.*`), never the target's.
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

/// What the sampler thread reads, and the last reading's counters.
pub(super) struct Reader {
    started: Instant,
    pub(super) interval: Duration,
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

impl Reader {
    /// A reader of what `config` names (its replicas and endpoints taken from it), sampling
    /// every `interval`; nothing read yet.
    pub(super) fn new(config: &mut SamplerConfig, interval: Duration) -> Reader {
        let metrics = std::mem::take(&mut config.metrics);
        Reader {
            started: config.origin,
            interval,
            target: config.target,
            replicas: std::mem::take(&mut config.replicas),
            balancer: config.balancer,
            listen_port: config.listen_port,
            taken: vec![Default::default(); metrics.len()],
            metrics: metrics
                .into_iter()
                .map(|m| Scraper::start(m, interval))
                .collect(),
            ticks: procfs::clock_ticks(),
            previous: None,
            remote: config.remote,
            limits: super::limits::Limits::new(config.target),
        }
    }

    /// Where the host and target series come from, as of the last reading.
    pub(super) fn sources(&self) -> BTreeMap<String, String> {
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
    pub(super) fn read(&mut self) -> (Sample, bool) {
        let now = Instant::now();
        let mut values = BTreeMap::new();
        let dt = self
            .previous
            .as_ref()
            .map(|p| now.duration_since(p.at).as_secs_f64().max(1e-3));
        let cpu = procfs::cpu_times();
        let cgroup = procfs::cgroup();
        self.host_values(cpu.as_ref(), &cgroup, dt, &mut values);
        let generator = procfs::process(std::process::id());
        self.process_values("generator", generator.as_ref(), 1, dt, &mut values, |p| {
            p.generator.as_ref()
        });
        let replica_counters = self.read_replicas(dt, &mut values);
        let (target_counters, gone) = self.target_values(&replica_counters, dt, &mut values);
        let balancer = self.balancer_values(dt, &mut values);
        let tcp = procfs::tcp_counters();
        self.net_values(&tcp, dt, &mut values);
        self.limits.read(now, &mut values);
        if self.remote {
            values = values
                .into_iter()
                .map(|(key, value)| (crate::model::series::on_generator_host(key), value))
                .collect();
        }
        self.exporter_values(&mut values);
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

    /// The host's CPU (per core, against the last reading), run queue, load, memory and swap,
    /// and its cgroup's throttling and memory.
    fn host_values(
        &self,
        cpu: Option<&procfs::CpuTimes>,
        cgroup: &procfs::Cgroup,
        dt: Option<f64>,
        values: &mut BTreeMap<String, f64>,
    ) {
        if let (Some(cpu), Some(dt)) = (cpu, dt) {
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
        if let Some(cpu) = cpu {
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
    }

    /// The target's figures (`target.*`: its process tree, or its replicas summed), its
    /// counters, and whether it has gone (every replica gone).
    fn target_values(
        &self,
        replicas: &[Option<(ProcCounters, usize)>],
        dt: Option<f64>,
        values: &mut BTreeMap<String, f64>,
    ) -> (Option<ProcCounters>, bool) {
        let Some(pid) = self.target else {
            return (None, false);
        };
        let tree = if self.replicas.is_empty() {
            procfs::process_tree_counters(pid)
        } else {
            sum_of(replicas)
        };
        let gone = tree.is_none();
        values.insert("target.alive".into(), if gone { 0.0 } else { 1.0 });
        let processes = tree.as_ref().map_or(0, |(_, n)| *n);
        let counters = tree.map(|(counters, _)| counters);
        self.process_values("target", counters.as_ref(), processes, dt, values, |p| {
            p.target.as_ref()
        });
        (counters, gone)
    }

    /// The local balancer's figures (`balancer.*`) and its connections to its upstreams;
    /// its counters.
    fn balancer_values(
        &self,
        dt: Option<f64>,
        values: &mut BTreeMap<String, f64>,
    ) -> Option<ProcCounters> {
        let balancer = self.balancer.and_then(procfs::process_tree_counters);
        let processes = balancer.as_ref().map_or(0, |(_, n)| *n);
        let balancer = balancer.map(|(counters, _)| counters);
        self.process_values("balancer", balancer.as_ref(), processes, dt, values, |p| {
            p.balancer.as_ref()
        });
        if let Some(pid) = self.balancer {
            // Its connections to its upstreams: those not to its own listening port.
            let upstream: usize = super::processes::downstreams(pid, self.listen_port)
                .iter()
                .map(|(_, _, connections)| connections)
                .sum();
            values.insert("balancer.upstream_connections".into(), upstream as f64);
        }
        balancer
    }

    /// The host's TCP counters as rates (`net.*_per_s`), and the target's accept queue.
    fn net_values(
        &self,
        tcp: &std::collections::HashMap<&'static str, u64>,
        dt: Option<f64>,
        values: &mut BTreeMap<String, f64>,
    ) {
        if let (Some(dt), Some(before)) = (dt, self.previous.as_ref().map(|p| &p.tcp)) {
            for (name, value) in tcp {
                if let Some(was) = before.get(name) {
                    values.insert(
                        format!("net.{name}_per_s"),
                        value.saturating_sub(*was) as f64 / dt,
                    );
                }
            }
        }
        if let Some((waiting, backlog)) = self.listen_port.and_then(super::sockdiag::accept_queue) {
            values.insert("net.accept_queue".into(), waiting as f64);
            values.insert("net.accept_backlog".into(), backlog as f64);
        }
    }

    /// Exporters fill what /proc did not (a remote target's host and process): each
    /// endpoint's scrape that answered since the last reading (none: a gap in its series).
    fn exporter_values(&mut self, values: &mut BTreeMap<String, f64>) {
        for (scraper, taken) in self.metrics.iter().zip(&mut self.taken) {
            let Some(scraped) = scraper.take_after(taken.0) else {
                continue;
            };
            *taken = (scraped.number, scraped.provided);
            for (key, value) in scraped.values {
                values.entry(key).or_insert(value);
            }
        }
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

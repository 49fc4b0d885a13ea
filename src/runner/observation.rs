//! Everything watching the target during a run, put together: the target process (found or
//! started), the sampler, the observers on the target's host (`knee observe`), and the
//! step observers (profiles, off-CPU stacks, threads, processes) the session runs. It sits
//! with the runner because it composes the collectors (observe, flame), which know nothing
//! of each other.

use crate::demo::DemoChild;
use crate::error::Error;
use crate::flame::choose::CpuSource;
use crate::observe::processes::ProcessesReading;
use crate::observe::remote;
use crate::observe::sampler::{Sampler, SamplerConfig, SamplerObserver};
use crate::observe::target::{self, Spawned, TargetProcess};
use crate::observe::threads::ThreadsReading;
use crate::observe::windows::WindowObserver;
use crate::observe::{prometheus, Observer};
use crate::plan::RunPlan;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Everything watching the target during a run.
pub struct Observation {
    pub sampler: Option<Arc<Sampler>>,
    /// Takes the hold steps' flamegraphs (handed to the session by `observers`).
    profiler: Option<crate::flame::ProfilerObserver>,
    /// Takes the same steps' off-CPU profiles.
    offcpu: Option<crate::flame::offcpu::OffCpuObserver>,
    pub spawned: Option<Spawned>,
    pub target: Option<TargetProcess>,
    /// The target's listening port, when it is on this host.
    listen_port: Option<u16>,
    /// `knee observe` servers the target's host is read through.
    feeds: Vec<Arc<remote::Feed>>,
    /// The one of them that watches the target (its profiles and processes come from it).
    watching: Option<crate::plan::ObserverSpec>,
    /// Which profilers read the target, and why.
    profiling: Option<crate::model::run::Profiling>,
    /// A target of several processes: each replica's profilers, threads and off-CPU stacks.
    replicas: Option<super::replicas::ReplicasObserver>,
    /// A target of several processes on the observers' hosts, as run.json names it.
    remote_target: Option<TargetProcess>,
}

/// The profilers for the target's runtime (`--profiler auto`) or those asked for; what is
/// missing is said once, here.
fn choose_profilers(
    plan: &RunPlan,
    demo: Option<&DemoChild>,
    pid: Option<u32>,
    remote_runtime: Option<crate::model::run::Runtime>,
    watching: Option<&crate::plan::ObserverSpec>,
) -> crate::flame::choose::Choice {
    // knee's own process (an in-process target) has no runtime to choose for.
    let runtime = match pid {
        Some(pid) => Some(pid)
            .filter(|p| *p != std::process::id())
            .map(crate::observe::runtime::of),
        None => remote_runtime,
    };
    let choice = crate::flame::choose::choose(
        &plan.observe,
        demo.map(|d| d.base.as_str()),
        pid,
        runtime,
        watching,
    );
    for warning in &choice.warnings {
        crate::notice::say(format!("knee: {warning}"));
    }
    choice
}

/// A replica to watch: its pid and name, and the observer on its host (none: this host).
struct ToWatch {
    pid: u32,
    name: String,
    observer: Option<crate::plan::ObserverSpec>,
}

/// Each replica's own observers: the chosen profilers and its threads, as a one-process
/// target gets them (on this host, or asked of the observer that watches it).
fn watch_replicas(
    observe: &crate::plan::ObservePlan,
    choice: &crate::flame::choose::Choice,
    replicas: Vec<ToWatch>,
    dir: &Path,
) -> super::replicas::ReplicasObserver {
    let replicas = replicas
        .into_iter()
        .enumerate()
        .map(|(i, replica)| {
            let (pid, observer) = match &replica.observer {
                Some(spec) => (None, Some(spec)),
                None => (Some(replica.pid), None),
            };
            let threads: Box<dyn Observer> = match observer {
                Some(spec) => Box::new(WindowObserver::<ThreadsReading>::through(spec.clone())),
                None => Box::new(WindowObserver::local(ThreadsReading { pid: replica.pid })),
            };
            let mut observers = vec![threads];
            let cpu = match (&choice.cpu, observer) {
                (Some(CpuSource::Observer(_)), Some(spec)) => {
                    Some(CpuSource::Observer(spec.clone()))
                }
                (Some(_), Some(_)) | (None, _) => None,
                (Some(source), None) => Some(source.clone()),
            };
            if let Some(source) = cpu {
                observers.push(Box::new(crate::flame::ProfilerObserver::new(
                    source,
                    observe.profile_frequency,
                    pid,
                    dir.to_path_buf(),
                )));
            }
            let offcpu = crate::flame::offcpu::OffCpuObserver::new(
                observe,
                choice.waits,
                pid,
                observer,
                dir.to_path_buf(),
            );
            if let Ok(offcpu) = offcpu {
                observers.push(Box::new(offcpu));
            }
            super::replicas::Watched {
                index: i + 1,
                pid: replica.pid,
                name: replica.name,
                observers,
            }
        })
        .collect();
    super::replicas::ReplicasObserver {
        replicas,
        dir: dir.to_path_buf(),
    }
}

/// This host's replicas `pids`, to watch.
fn local_replicas(pids: &[u32]) -> Vec<ToWatch> {
    pids.iter()
        .map(|&pid| ToWatch {
            pid,
            name: crate::observe::replicas::name_of(pid),
            observer: None,
        })
        .collect()
}

/// The target of the processes `pids` (the first is `pid`; several are replicas).
fn several(pids: &[u32], by: &str) -> TargetProcess {
    let replicas = if pids.len() > 1 {
        pids.iter()
            .map(|&pid| crate::observe::replicas::local(pid))
            .collect()
    } else {
        Vec::new()
    };
    TargetProcess {
        pid: pids[0],
        found_by: by.into(),
        exited_at_s: None,
        exit_status: None,
        replicas,
        balancer: None,
    }
}

/// The upstreams of the balancer `pid` owning the URL's port, as the target (the balancer
/// recorded beside them); None when `pid` is no balancer knee knows, the URL is not plain
/// HTTP, or no local upstream was seen (said in one line).
fn follow_balancer(plan: &RunPlan, pid: u32, host: &str, port: u16) -> Option<TargetProcess> {
    use crate::observe::balancer;
    if !balancer::is_balancer(pid) || plan.target.base.scheme_str() != Some("http") {
        return None;
    }
    let name = crate::observe::replicas::name_of(pid);
    let path = plan.target.base.path();
    let followed = balancer::follow(pid, &format!("{host}:{port}"), path, port);
    if followed.upstreams.is_empty() {
        crate::notice::say(format!(
            "knee: target: {name} (pid {pid}) owns port {port}; {} requests showed no upstream on this host, so it is the target",
            followed.requests
        ));
        return None;
    }
    let pids: Vec<String> = followed.upstreams.iter().map(u32::to_string).collect();
    crate::notice::say(format!(
        "knee: target: {name} (pid {pid}) on port {port} forwards to pid {} (seen in {} requests before the load); the balancer is sampled beside them",
        pids.join(", "),
        followed.requests
    ));
    let mut target = several(&followed.upstreams, "balancer");
    target.balancer = Some(crate::observe::replicas::local(pid));
    Some(target)
}

/// The replicas the observers watch (none unless several): the processes of one observer
/// that watches several, or of several observers whose targets run one command; each
/// observer's samples renamed so theirs do not collide (`observe::remote_replicas`).
fn replicas_through(
    feeds: &[Arc<remote::Feed>],
) -> Vec<crate::observe::remote_replicas::RemoteReplica> {
    use crate::observe::remote_replicas;
    let service = remote_replicas::service_observers(feeds);
    let replicas = remote_replicas::replicas(&service);
    if replicas.len() > 1 {
        let named: Vec<String> = replicas
            .iter()
            .map(|r| format!("pid {} on {}", r.pid, r.spec.name))
            .collect();
        crate::notice::say(format!(
            "knee: target: {} replicas of one service, each sampled and profiled through its observer: {}",
            replicas.len(),
            named.join(", ")
        ));
    }
    replicas
}

/// Connects to each observer (its clock offset, its description) before any load: one that
/// cannot be read is an input error, said in one line.
fn connect_observers(
    specs: &[crate::plan::ObserverSpec],
    interval: Duration,
    origin: Instant,
) -> Result<Vec<Arc<remote::Feed>>, Error> {
    specs
        .iter()
        .map(|spec| {
            // On a plain thread: the clock's round trips must not each pay for leaving the
            // run's async setup (see observe::http).
            let connect = || remote::Feed::connect(spec.clone(), interval, origin);
            let feed = std::thread::scope(|scope| scope.spawn(connect).join())
                .map_err(|_| Error::input(format!("observer {}: connecting panicked", spec.name)))?
                .map_err(Error::input)?;
            let d = &feed.description;
            let record = feed.record();
            crate::notice::say(format!(
                "knee: observer {}: host {} ({} cores, {:.0} MB), target {}, clock offset {:+.1} ms (round trip {:.1} ms)",
                spec.name,
                d.host,
                d.cores,
                d.memory_mb,
                d.target
                    .as_ref()
                    .map_or("none".to_string(), |t| format!("pid {} ({})", t.pid, t.command)),
                record.clock_offset_ms,
                record.rtt_ms
            ));
            Ok(feed)
        })
        .collect()
}

impl Observation {
    /// Finds (or starts) the target process and starts the sampler, writing to `dir`.
    pub fn start(
        plan: &RunPlan,
        demo: Option<&DemoChild>,
        dir: &Path,
        origin: Instant,
    ) -> Result<Observation, Error> {
        let observe = &plan.observe;
        let host = plan.target.base.host().unwrap_or("").to_string();
        let port = plan.target.base.port_u16().unwrap_or(
            if plan.target.base.scheme_str() == Some("https") {
                443
            } else {
                80
            },
        );
        let spawned = match &observe.spawn {
            Some(command) => Some(Spawned::start(
                command,
                &format!("{host}:{port}"),
                Duration::from_secs(30),
            )?),
            None => None,
        };
        let found = |pid: u32, by: &str| several(&[pid], by);
        let target = if let Some(s) = &spawned {
            Some(found(s.pid(), "spawn"))
        } else if let Some(pid) = demo.and_then(DemoChild::pid) {
            Some(found(pid, "demo"))
        } else if !observe.pids.is_empty() {
            Some(several(&observe.pids, "pid"))
        } else if let Some(name) = &observe.process_name {
            let pids = crate::observe::replicas::by_name(name);
            if pids.is_empty() {
                return Err(Error::input(format!(
                    "--process-name {name}: no process of that name on this host"
                )));
            }
            Some(several(&pids, "process-name"))
        } else if observe.sample && !observe.remote_target {
            target::find_by_port(&host, port).map(|pid| {
                follow_balancer(plan, pid, &host, port).unwrap_or_else(|| found(pid, "port"))
            })
        } else {
            None
        };
        let mut metrics = observe.metrics.clone();
        if metrics.is_empty() {
            // The demo publishes its pool and lock waiters: watch them.
            let served = plan.demo.as_ref().is_some_and(|d| d.metrics);
            metrics.extend(
                demo.filter(|_| served)
                    .map(|d| format!("{}/metrics", d.base)),
            );
        }
        let sources = metrics
            .iter()
            .map(|url| {
                let headers = observe
                    .metrics_headers
                    .iter()
                    .map(|(name, value)| (name.clone(), value.0.clone()))
                    .collect();
                prometheus::MetricsSource::new(url, observe.metric_names.clone())
                    .map(|source| source.with_access(headers, observe.insecure))
                    .map_err(Error::input)
            })
            .collect::<Result<Vec<_>, _>>()?;
        // The target's host is this one only when the URL is local (and not declared remote)
        // or a process of this host was named as the target.
        let local = !observe.remote_target && target::is_local(&host);
        let remote = !local && target.is_none();
        let replica_pids: Vec<u32> = target
            .as_ref()
            .map(|t| t.replicas.iter().map(|r| r.pid).collect())
            .unwrap_or_default();
        let feeds = connect_observers(&observe.observers, observe.interval, origin)?;
        let remote_replicas = match target {
            Some(_) => Vec::new(),
            None => replicas_through(&feeds),
        };
        let sampler = if observe.sample {
            let sampler = Sampler::start(SamplerConfig {
                target: target.as_ref().map(|t| t.pid),
                replicas: replica_pids.clone(),
                balancer: target
                    .as_ref()
                    .and_then(|t| t.balancer.as_ref())
                    .map(|b| b.pid),
                listen_port: local.then_some(port),
                metrics: sources,
                samples_path: Some(dir.join("samples.jsonl")),
                remote,
                feeds: feeds.clone(),
                ..SamplerConfig::new(observe.interval, origin)
            })
            .map_err(|e| Error::Internal(anyhow::anyhow!("cannot start the sampler: {e}")))?;
            Some(Arc::new(sampler))
        } else {
            None
        };
        // Profiles of a target on another host are taken by the observer that watches it.
        let watching = feeds
            .iter()
            .find(|feed| feed.description.target.is_some())
            .map(|feed| feed.spec.clone());
        let watching = watching.as_ref();
        let pid = target.as_ref().map(|t| t.pid);
        let remote_runtime = feeds
            .iter()
            .filter_map(|feed| feed.description.target.as_ref())
            .find_map(|t| t.runtime);
        let choice = choose_profilers(plan, demo, pid, remote_runtime, watching);
        // A profiler that reads a process (not a URL through the balancer) reads each replica.
        let by_pid = !matches!(
            choice.cpu,
            Some(CpuSource::Pprof(..) | CpuSource::Observer(_))
        );
        if replica_pids.len() > 1 && by_pid && observe.sample {
            let replicas = watch_replicas(observe, &choice, local_replicas(&replica_pids), dir);
            return Ok(Observation {
                sampler,
                profiler: None,
                offcpu: None,
                listen_port: local.then_some(port),
                spawned,
                target,
                feeds,
                watching: None,
                profiling: Some(choice.profiling),
                replicas: Some(replicas),
                remote_target: None,
            });
        }
        if remote_replicas.len() > 1 && observe.sample {
            return Ok(Observation {
                remote_target: crate::observe::remote_replicas::target(&remote_replicas),
                replicas: Some(watch_replicas(
                    observe,
                    &choice,
                    remote_replicas
                        .into_iter()
                        .map(|r| ToWatch {
                            pid: r.pid,
                            // Said in the replicas' lines: where each one runs.
                            name: format!("{} on {}", r.name, r.spec.name),
                            observer: Some(r.spec),
                        })
                        .collect(),
                    dir,
                )),
                sampler,
                profiler: None,
                offcpu: None,
                listen_port: None,
                spawned,
                target,
                feeds,
                watching: watching.cloned(),
                profiling: Some(choice.profiling),
            });
        }
        let profiler = choice.cpu.map(|source| {
            crate::flame::ProfilerObserver::new(
                source,
                observe.profile_frequency,
                pid,
                dir.to_path_buf(),
            )
        });
        let offcpu = match crate::flame::offcpu::OffCpuObserver::new(
            observe,
            choice.waits,
            pid,
            watching,
            dir.to_path_buf(),
        ) {
            Ok(offcpu) => Some(offcpu),
            Err(why) => {
                if !why.is_empty() {
                    crate::notice::say(format!(
                        "knee: no off-CPU profiles: {why} (--offcpu off to say so)"
                    ));
                }
                None
            }
        };
        Ok(Observation {
            sampler,
            profiler,
            offcpu,
            listen_port: local.then_some(port),
            spawned,
            target,
            feeds,
            watching: watching.cloned(),
            profiling: Some(choice.profiling)
                .filter(|p| p.cpu.is_some() || p.offcpu.is_some() || !p.why.is_empty()),
            replicas: None,
            remote_target: None,
        })
    }

    /// The target's runtime and the profilers chosen for it (run.json's `profiling`).
    pub fn profiling(&self) -> Option<crate::model::run::Profiling> {
        self.profiling.clone()
    }

    /// Whether any profiler will record (the profiled steps then get their tail).
    pub fn profiles(&self) -> bool {
        let replicas = self
            .profiling
            .as_ref()
            .is_some_and(|p| p.cpu.is_some() || p.offcpu.is_some());
        self.profiler.is_some() || self.offcpu.is_some() || (self.replicas.is_some() && replicas)
    }

    /// The observers read, as run.json keeps them.
    pub fn observer_records(&self) -> Vec<remote::ObserverRecord> {
        self.feeds.iter().map(|feed| feed.record()).collect()
    }

    /// The observers to attach to the session (the profiler goes to the first caller).
    pub fn observers(&mut self) -> Vec<Box<dyn Observer>> {
        let mut observers: Vec<Box<dyn Observer>> = self
            .sampler
            .iter()
            .map(|s| Box::new(SamplerObserver(s.clone())) as Box<dyn Observer>)
            .collect();
        if let Some(profiler) = self.profiler.take() {
            observers.push(Box::new(profiler));
        }
        let own = std::process::id();
        let one_process = self.replicas.is_none();
        let local = self.target.as_ref().filter(|t| t.pid != own);
        if let Some(target) = local.filter(|_| self.sampler.is_some()) {
            let pid = target.pid;
            if one_process {
                observers.push(Box::new(WindowObserver::local(ThreadsReading { pid })));
            }
            observers.push(Box::new(WindowObserver::local(ProcessesReading {
                targets: target.pids(),
                listen_port: self.listen_port,
                generator: Some(own),
            })));
        }
        if let (None, Some(observer), Some(_)) = (&self.target, &self.watching, &self.sampler) {
            if one_process {
                let threads = WindowObserver::<ThreadsReading>::through(observer.clone());
                observers.push(Box::new(threads));
            }
            let processes = WindowObserver::<ProcessesReading>::through(observer.clone());
            observers.push(Box::new(processes));
        }
        if let Some(offcpu) = self.offcpu.take() {
            observers.push(Box::new(offcpu));
        }
        if let Some(replicas) = self.replicas.take() {
            observers.push(Box::new(replicas));
        }
        observers
    }

    /// Stops sampling; what became of the target.
    pub fn finish(&mut self) -> Option<TargetProcess> {
        if let Some(sampler) = &self.sampler {
            sampler.stop();
        }
        let Some(mut target) = self.target.clone() else {
            return self
                .remote_target
                .clone()
                .or_else(|| self.feeds.first().and_then(|feed| feed.target()));
        };
        target.exited_at_s = self.sampler.as_ref().and_then(|s| s.target_gone_at());
        target.exit_status = self.spawned.as_mut().and_then(Spawned::exit_status);
        Some(target)
    }
}

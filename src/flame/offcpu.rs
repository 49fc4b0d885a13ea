//! Off-CPU profiles: where the target waits while requests queue, beside where it burns CPU.
//!
//! Most bottlenecks on a staging box burn no CPU (a lock held across I/O, a pool, a
//! downstream), so a CPU flamegraph cannot show them. At each profiled step this observer
//! records, over the counted window, the time the target's threads spent switched out per
//! stack (`sched`: perf on the scheduler's tracepoint) or, for a Go service whose pprof URL
//! is given, the time goroutines spent blocked (Go's block profile; Go parks goroutines, so
//! its threads' stacks show only the runtime), and the mutex profile beside it. Each stack is
//! classified (`waits`): lock, pool, queue, socket, disk, sleep; idle and preempted time is
//! kept apart. The step records `observed.offcpu` and writes `flame/STEP.offcpu.{folded,svg}`
//! (microseconds per stack, drawn in a cool palette).

pub use crate::model::observed::{OffCpu, OffCpuSource, WaitSite};

use super::choose::WaitSource;
use super::sched::{self, Recording};
use super::take::{runtime_waits, Taken};
use super::waits::{self, Frame, WaitKind};
use crate::model::step::StepResult;
use crate::observe::Observer;
use crate::plan::{ObservePlan, ProfilerPlan, StepSpec};
use crate::stacks::folded::Folded;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How much of each profiled step's tail is recorded: perf on every context switch of a
/// target with hundreds of threads costs it real capacity while it runs (measured in
/// docs/), so a second from the middle of the tail, beside the CPU profile. Go's profiles
/// take whole seconds, so one second too.
const RECORDED: Duration = Duration::from_secs(1);

/// Wait sites kept per step.
pub const TOP_SITES: usize = 12;

/// Summaries of recordings.
pub trait Summarize {
    fn summarize(
        source: OffCpuSource,
        recording: &Recording,
        seconds: f64,
        requests: u64,
    ) -> OffCpu;
}

impl Summarize for OffCpu {
    /// Summarizes a recording of `seconds` during which `requests` completed.
    fn summarize(
        source: OffCpuSource,
        recording: &Recording,
        seconds: f64,
        requests: u64,
    ) -> OffCpu {
        let ms = |us: u64| (us as f64 / 100.0).round() / 10.0;
        let per_request = |us: u64| {
            (requests > 0).then(|| (us as f64 / 1000.0 / requests as f64 * 1000.0).round() / 1000.0)
        };
        let mut by_kind_us: BTreeMap<WaitKind, u64> = BTreeMap::new();
        for ((kind, _), us) in &recording.sites {
            *by_kind_us.entry(*kind).or_default() += us;
        }
        let sum = |pick: &dyn Fn(WaitKind) -> bool| -> u64 {
            by_kind_us
                .iter()
                .filter(|(k, _)| pick(**k))
                .map(|(_, us)| us)
                .sum()
        };
        let waiting_us = sum(&|k| k.is_waiting());
        let mut top: Vec<WaitSite> = recording
            .sites
            .iter()
            .filter(|((kind, _), _)| kind.is_waiting())
            .map(|((kind, site), us)| WaitSite {
                function: site.clone().unwrap_or_else(|| "(runtime)".into()),
                kind: *kind,
                ms: ms(*us),
                percent: (*us as f64 * 1000.0 / waiting_us.max(1) as f64).round() / 10.0,
                ms_per_request: per_request(*us),
            })
            .collect();
        top.sort_by(|a, b| b.ms.total_cmp(&a.ms).then(a.function.cmp(&b.function)));
        top.truncate(TOP_SITES);
        OffCpu {
            source,
            seconds,
            threads: recording.threads,
            switches: recording.switches,
            total_ms: ms(sum(&|_| true)),
            waiting_ms: ms(waiting_us),
            idle_ms: ms(sum(&|k| k == WaitKind::Idle)),
            preempted_ms: ms(sum(&|k| k == WaitKind::Preempted)),
            requests,
            ms_per_request: per_request(waiting_us),
            by_kind: by_kind_us
                .iter()
                .filter(|(k, _)| k.is_waiting())
                .map(|(k, us)| (k.as_str().to_string(), ms(*us)))
                .collect(),
            top,
            ..OffCpu::default()
        }
    }
}

/// A recording made of folded stacks whose values are µs (Go's block profile, converted).
pub fn recording_of(folded: Folded) -> Recording {
    let mut sites = BTreeMap::new();
    for (stack, us) in &folded.stacks {
        let leaf_first: Vec<Frame> = stack
            .rsplit(';')
            .map(|name| match name.strip_suffix("_[k]") {
                Some(kernel) => Frame {
                    name: kernel.to_string(),
                    kernel: true,
                    foreign: false,
                },
                None => Frame::user(name),
            })
            .collect();
        let c = waits::classify(&leaf_first, None);
        *sites.entry((c.kind, c.site)).or_default() += us;
    }
    Recording {
        folded,
        sites,
        threads: 0,
        switches: 0,
    }
}

/// Where off-CPU stacks come from.
#[derive(Clone)]
struct Sources {
    /// perf on this pid (a local target that is not knee itself).
    perf: Option<u32>,
    /// `knee observe` on the target's host, recording there.
    observer: Option<crate::plan::ObserverSpec>,
    /// Go's pprof base (`http://host:port/debug/pprof/`).
    go: Option<String>,
    /// Go's endpoint may have a self-signed certificate (-k).
    insecure: bool,
    /// The runtime's own view of its waits (py-spy, JFR) on this pid, in perf's place.
    runtime: Option<(WaitSource, u32)>,
    /// The first perf failure: later steps do not try again.
    perf_failed: Arc<Mutex<Option<String>>>,
}

struct Captures {
    seconds: f64,
    /// The threads' view: perf's context switches here, the observer's recording there, or
    /// the runtime's own (py-spy, JFR).
    threads: Option<Result<Taken, String>>,
    go_block: Option<Result<Folded, String>>,
    go_mutex: Option<Result<Folded, String>>,
}

pub struct OffCpuObserver {
    sources: Sources,
    dir: PathBuf,
    pending: crate::observe::Pending<Captures>,
}

impl OffCpuObserver {
    /// None (and the line to say why) when no off-CPU source can work for this target.
    pub fn new(
        observe: &ObservePlan,
        waits: Option<WaitSource>,
        pid: Option<u32>,
        observer: Option<&crate::plan::ObserverSpec>,
        dir: PathBuf,
    ) -> Result<OffCpuObserver, String> {
        if !observe.offcpu {
            return Err(String::new());
        }
        let go = match &observe.profiler {
            ProfilerPlan::Pprof(url)
                if url
                    .split('?')
                    .next()
                    .unwrap_or("")
                    .ends_with("/debug/pprof/profile")
                    && super::capture::identify(url, observe.insecure)
                        == super::capture::Endpoint::Other =>
            {
                url.split('?')
                    .next()
                    .and_then(|u| u.strip_suffix("profile"))
                    .map(str::to_string)
            }
            _ => None,
        };
        let runtime = waits.zip(pid);
        let perf = match pid {
            _ if runtime.is_some() => None,
            Some(pid) if pid == std::process::id() => {
                if go.is_none() {
                    return Err("the target is knee's own process (an in-process target)".into());
                }
                None
            }
            Some(pid) => match super::capture::perf_available() {
                Ok(()) => Some(pid),
                Err(why) if go.is_none() => return Err(why),
                Err(_) => None,
            },
            None if go.is_none() && observer.is_none() && !observe.observers.is_empty() => {
                return Err("no observer watches a target process".into())
            }
            // --no-sample: no target process was looked for, and nothing needs saying.
            None if go.is_none() && observer.is_none() && !observe.sample => {
                return Err(String::new())
            }
            None if go.is_none() && observer.is_none() => {
                return Err("no local target process (give --pid, --spawn, or a local port)".into())
            }
            None => None,
        };
        Ok(OffCpuObserver {
            sources: Sources {
                perf,
                // Go's own profiles say more than thread stacks of a Go service.
                observer: observer.filter(|_| pid.is_none() && go.is_none()).cloned(),
                go,
                insecure: observe.insecure,
                runtime,
                perf_failed: Arc::new(Mutex::new(None)),
            },
            dir,
            pending: crate::observe::Pending::new(),
        })
    }
}

impl Observer for OffCpuObserver {
    fn name(&self) -> &str {
        "offcpu"
    }

    fn step_started(&mut self, spec: &StepSpec, starts_at: Instant) {
        // Recorded in the step's tail, after its counted part (see runner::session).
        if spec.profile.is_zero() {
            return;
        }
        let sources = self.sources.clone();
        // A slice from the middle of the tail, not all of it (see RECORDED).
        let tail = spec.profile.as_secs_f64();
        let window = tail.min(RECORDED.as_secs_f64());
        let counted_from = starts_at
            + spec.warmup
            + spec.duration
            + Duration::from_secs_f64((tail - window) / 2.0);
        let scratch = self.dir.join("flame").join(&spec.name);
        self.pending.start_at(&spec.name, counted_from, move || {
            capture(&sources, window, &scratch)
        });
    }

    fn step_finished(
        &mut self,
        spec: &StepSpec,
        result: &StepResult,
        _window: (Instant, Instant),
        observed: &mut crate::model::Observed,
    ) {
        let Some(captures) = self.pending.finish(&spec.name) else {
            return;
        };
        let offcpu = self.write(spec, result, captures);
        if let Some(error) = &offcpu.error {
            crate::notice::say(format!(
                "knee: no off-CPU profile for {}: {error}",
                spec.name
            ));
        }
        observed.offcpu = Some(offcpu);
    }
}

/// Takes the step's recordings, side by side.
fn capture(sources: &Sources, window: f64, scratch: &std::path::Path) -> Captures {
    let go_seconds = super::capture::seconds_for(super::capture::Endpoint::Other, window);
    std::thread::scope(|scope| {
        let go = sources.go.as_ref().map(|base| {
            let (seconds, insecure) = (&go_seconds, sources.insecure);
            let block = scope.spawn(move || go_profile(base, "block", seconds, insecure));
            let mutex = scope.spawn(move || go_profile(base, "mutex", seconds, insecure));
            (block, mutex)
        });
        let threads = match (&sources.runtime, sources.perf, &sources.observer) {
            (Some((source, pid)), ..) => Some(runtime_waits(*source, *pid, window, scratch)),
            (None, Some(pid), _) => Some(perf_once(sources, || {
                sched::record(pid, window, scratch).map(Taken::perf)
            })),
            (None, None, Some(observer)) => Some(perf_once(sources, || {
                super::remote::offcpu(observer, window)
            })),
            (None, None, None) => None,
        };
        let (go_block, go_mutex) = match go {
            Some((block, mutex)) => (
                Some(block.join().unwrap_or_else(|_| Err("panicked".into()))),
                Some(mutex.join().unwrap_or_else(|_| Err("panicked".into()))),
            ),
            None => (None, None),
        };
        Captures {
            seconds: window,
            threads,
            go_block,
            go_mutex,
        }
    })
}

/// Records with perf unless it failed for good earlier in the run (then says why again).
fn perf_once(
    sources: &Sources,
    record: impl FnOnce() -> Result<Taken, String>,
) -> Result<Taken, String> {
    let failed = sources
        .perf_failed
        .lock()
        .map(|f| f.clone())
        .unwrap_or(None);
    if let Some(why) = failed {
        return Err(why);
    }
    let result = record();
    let lasting = result
        .as_ref()
        .err()
        .filter(|why| super::capture::lasting(why));
    if let (Some(why), Ok(mut failed)) = (lasting, sources.perf_failed.lock()) {
        *failed = Some(format!("{why} (not tried again in this run)"));
    }
    result
}

/// One of Go's delta profiles over the step (`block` or `mutex`), by delay in µs.
fn go_profile(
    base: &str,
    which: &str,
    seconds: &Result<f64, String>,
    insecure: bool,
) -> Result<Folded, String> {
    let seconds = seconds.clone()?;
    let url = format!("{base}{which}?seconds={seconds:.0}");
    let body = super::capture::http_get(
        &url,
        std::time::Duration::from_secs_f64(seconds + 30.0),
        insecure,
    )?;
    let profile = super::capture::decode(&body)?;
    let folded = Folded::from_pprof_value(&profile, "delay", 1000);
    if folded.total() == 0 {
        let enable = match which {
            "block" => "runtime.SetBlockProfileRate(1)",
            _ => "runtime.SetMutexProfileFraction(1)",
        };
        return Err(format!(
            "Go's {which} profile recorded nothing: if the service has not enabled it, call {enable} at its start"
        ));
    }
    Ok(folded)
}

impl OffCpuObserver {
    /// Picks the source, writes the step's files; what to record.
    fn write(&self, spec: &StepSpec, result: &StepResult, captures: Captures) -> OffCpu {
        // Requests completed while it recorded: the tail's rate (it recorded in the tail).
        let rate = result
            .profiled
            .as_ref()
            .map_or(result.achieved_rps, |tail| tail.achieved_rps);
        let requests = (rate * captures.seconds).round() as u64;
        let mut notes = Vec::new();
        let mut errors = Vec::new();
        let mut chosen: Option<(OffCpuSource, Recording)> = None;
        match captures.go_block {
            Some(Ok(folded)) => chosen = Some((OffCpuSource::GoBlockProfile, recording_of(folded))),
            Some(Err(e)) => {
                notes.push(e.clone());
                errors.push(e);
            }
            None => {}
        }
        match captures.go_mutex {
            Some(Ok(folded)) => {
                self.write_file(spec, "mutex.folded", folded.to_text().as_bytes());
                // The mutex profile's stacks are where contended locks were released.
                let total = folded.total().max(1) as f64;
                let sites = recording_of(folded).sites;
                let top = sites
                    .iter()
                    .filter_map(|((_, site), us)| Some((site.as_ref()?, *us)))
                    .max_by_key(|(_, us)| *us);
                if let Some((site, us)) = top {
                    notes.push(format!(
                        "Go's mutex profile: {:.0}% of the contention delay released in {site}",
                        us as f64 * 100.0 / total
                    ));
                }
            }
            Some(Err(e)) => notes.push(e),
            None => {}
        }
        match captures.threads {
            Some(Ok(taken)) if chosen.is_none() => {
                notes.extend(taken.note);
                chosen = Some((taken.source, taken.recording));
            }
            Some(Err(e)) => errors.push(e),
            _ => {}
        }
        let Some((source, recording)) = chosen else {
            return OffCpu {
                seconds: captures.seconds,
                notes,
                error: Some(errors.join("; ")),
                ..OffCpu::default()
            };
        };
        let mut offcpu = OffCpu::summarize(source, &recording, captures.seconds, requests);
        offcpu.notes = notes;
        if self.sources.runtime.is_none() {
            offcpu.observer = self.sources.observer.as_ref().map(|o| o.name.clone());
        }
        let taken = match &offcpu.observer {
            Some(observer) => format!("{source} on observer {observer}"),
            None => source.to_string(),
        };
        offcpu.folded =
            self.write_file(spec, "offcpu.folded", recording.folded.to_text().as_bytes());
        let subtitle = format!(
            "{taken}: {:.0} ms waiting, {:.0} ms idle, {:.0} ms preempted over {:.1} s (µs per stack)",
            offcpu.waiting_ms, offcpu.idle_ms, offcpu.preempted_ms, offcpu.seconds
        );
        match crate::stacks::render::offcpu_svg(
            &recording.folded,
            &super::title(spec, result),
            &subtitle,
        ) {
            Ok(svg) => offcpu.svg = self.write_file(spec, "offcpu.svg", &svg),
            Err(e) => offcpu.notes.push(format!("no off-CPU flamegraph: {e}")),
        }
        offcpu
    }

    fn write_file(&self, spec: &StepSpec, suffix: &str, bytes: &[u8]) -> Option<String> {
        super::write_step_file(&self.dir, &spec.name, suffix, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_keeps_idle_and_preempted_apart_and_ranks_sites() {
        let mut recording = Recording::default();
        let site = |s: &str| Some(s.to_string());
        recording
            .sites
            .insert((WaitKind::Lock, site("svc::append")), 60_000);
        recording
            .sites
            .insert((WaitKind::Sleep, site("svc::append")), 20_000);
        recording
            .sites
            .insert((WaitKind::Socket, site("svc::read_request")), 20_000);
        recording.sites.insert((WaitKind::Idle, None), 500_000);
        recording
            .sites
            .insert((WaitKind::Preempted, site("svc::hash")), 3_000);
        let s = OffCpu::summarize(OffCpuSource::PerfSchedSwitch, &recording, 1.0, 200);
        assert_eq!(s.waiting_ms, 100.0);
        assert_eq!(s.idle_ms, 500.0);
        assert_eq!(s.preempted_ms, 3.0);
        assert_eq!(s.total_ms, 603.0);
        assert_eq!(s.ms_per_request, Some(0.5));
        assert_eq!(s.top[0].function, "svc::append");
        assert_eq!(s.top[0].kind, WaitKind::Lock);
        assert_eq!(s.top[0].percent, 60.0);
        assert_eq!(s.top[0].ms_per_request, Some(0.3));
        assert_eq!(s.top.len(), 3, "idle and preempted are not wait sites");
        assert_eq!(s.by_kind["lock"], 60.0);
        assert!(!s.by_kind.contains_key("idle"));
    }

    #[test]
    fn go_stacks_are_classified_from_their_names() {
        let folded = Folded::parse(
            "net/http.(*conn).serve;main.main.func3;main.ledgerAppend;sync.(*Mutex).Lock 9000\n\
             net/http.(*conn).serve;main.main.func4;runtime.chansend1 1000\n",
        );
        let r = recording_of(folded);
        assert_eq!(
            r.sites[&(WaitKind::Lock, Some("main.ledgerAppend".into()))],
            9000
        );
        assert_eq!(
            r.sites[&(WaitKind::Queue, Some("main.main.func4".into()))],
            1000
        );
    }
}

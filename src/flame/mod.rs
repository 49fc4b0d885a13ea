//! Flamegraphs per step: "here is where the CPU went at the knee".
//!
//! The profiler is an observer. It profiles a hunt's hold steps, every step of a `knee run`
//! (load, steps, stress, sweep), and a soak's windows on a cadence (see `profiled`). Such a
//! step gets a tail after its counted part (`StepSpec::profile`: the same load, not
//! counted), and the profile covers the tail, from a pprof endpoint or from perf, so what
//! profiling costs the target stays out of the step's figures; when the
//! step ends it writes `flame/<step>.{pb.gz,folded,svg}` and records the samples taken, how
//! they compare with the CPU the target burnt, and the top functions by self and inclusive
//! samples (what makes "the bottleneck moved" readable as text). A profile that fails is a
//! one-line note in the step, never the end of the run.

pub use crate::model::observed::{FunctionShare, ProfileSource, StepProfile};

pub mod capture;
pub mod choose;
pub mod jfr;
pub mod jvm_attach;
pub mod node;
pub mod offcpu;
pub mod pyspy;
pub mod remote;
pub mod replicas;
pub mod sched;
pub mod take;
pub mod waits;

use crate::model::step::StepResult;
use crate::observe::procfs;
use crate::observe::Observer;
use crate::plan::{Phase, StepSpec};
use crate::stacks::render;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Rows kept in each top-functions table.
pub const TOP_FUNCTIONS: usize = 10;
/// A profile with fewer samples per CPU-second than this share of the frequency asked is
/// flagged as undersampled (the kernel's tick caps signal-driven profilers).
const UNDERSAMPLED_SHARE: f64 = 0.5;

use choose::CpuSource;

/// A soak profiles one window in this many, so about one every 10 minutes of soak (and never
/// two windows in a row: a window with no warm-up starts the instant the last one ends).
fn soak_cadence(window: std::time::Duration) -> usize {
    let every = (600.0 / window.as_secs_f64().max(1e-3)).ceil() as usize;
    every.max(2)
}

/// Whether a step gets a profile: a hunt's holds (not its probe and search steps, which
/// only find the knee), every step of a fixed-step run, one soak window in `soak_cadence`.
pub fn profiled(spec: &StepSpec) -> bool {
    match spec.phase {
        Phase::Hold | Phase::Step => true,
        Phase::Window => {
            let index: usize = spec.name.trim_start_matches("window-").parse().unwrap_or(1);
            (index - 1) % soak_cadence(spec.duration) == 0
        }
        Phase::Probe | Phase::Search | Phase::Recovery => false,
    }
}

struct Capture {
    result: Result<capture::Captured, String>,
    seconds: f64,
    cpu_seconds: Option<f64>,
    /// How the observer took it ("perf", "pprof"), when an observer did.
    remote_source: Option<ProfileSource>,
}

pub struct ProfilerObserver {
    source: CpuSource,
    frequency: u32,
    pid: Option<u32>,
    dir: PathBuf,
    pending: crate::observe::Pending<Capture>,
}

impl ProfilerObserver {
    /// Profiles with `source` (see `choose`) at `frequency` Hz.
    pub fn new(
        source: CpuSource,
        frequency: u32,
        pid: Option<u32>,
        dir: PathBuf,
    ) -> ProfilerObserver {
        if let CpuSource::Pprof(url, capture::Endpoint::KneeAgent, insecure) = &source {
            prime(url, *insecure);
        }
        ProfilerObserver {
            source,
            frequency,
            pid,
            dir,
            pending: crate::observe::Pending::new(),
        }
    }

    fn source_kind(&self) -> ProfileSource {
        self.source.profile_source()
    }
}

/// Takes one CPU profile of `seconds` with `source`.
pub(crate) fn take(
    source: &CpuSource,
    pid: Option<u32>,
    seconds: f64,
    frequency: u32,
    scratch: &std::path::Path,
) -> (Result<capture::Captured, String>, Option<remote::RemoteCpu>) {
    let local = |run: &dyn Fn(u32) -> Result<capture::Captured, String>| match pid {
        Some(pid) => run(pid),
        None => Err(format!(
            "{} needs the target's pid (--pid, --spawn or a local port)",
            source.name()
        )),
    };
    match source {
        CpuSource::Pprof(url, _, insecure) => {
            (capture::pprof(url, seconds, frequency, *insecure), None)
        }
        CpuSource::Perf => (
            local(&|pid| capture::perf(pid, seconds, frequency, scratch)),
            None,
        ),
        CpuSource::PySpy => (
            local(&|pid| pyspy::cpu(pid, seconds, frequency, scratch)),
            None,
        ),
        CpuSource::Jfr => (local(&|pid| jfr::cpu(pid, seconds, scratch)), None),
        CpuSource::Node => (local(&|pid| node::cpu(pid, seconds)), None),
        CpuSource::Observer(observer) => match remote::cpu(observer, seconds, frequency) {
            Ok((captured, said)) => (Ok(captured), Some(said)),
            Err(e) => (Err(e), None),
        },
    }
}

impl Observer for ProfilerObserver {
    fn name(&self) -> &str {
        "profile"
    }

    fn step_started(&mut self, spec: &StepSpec, starts_at: Instant) {
        // The profile covers the step's tail, after its counted part (see runner::session).
        if spec.profile.is_zero() {
            return;
        }
        let (source, frequency, pid) = (self.source.clone(), self.frequency, self.pid);
        let window = spec.profile.as_secs_f64();
        // What can be profiled of the tail (whole seconds, for most endpoints).
        let seconds = match &source {
            CpuSource::Pprof(_, endpoint, _) => capture::seconds_for(*endpoint, window),
            _ => Ok(window),
        };
        let tail_from = starts_at + spec.warmup + spec.duration;
        let scratch = self.dir.join("flame").join(&spec.name);
        self.pending.start_at(&spec.name, tail_from, move || {
            let cpu_before = pid.and_then(cpu_seconds);
            let (result, remote_cpu) = match &seconds {
                Err(e) => (Err(e.clone()), None),
                Ok(seconds) => take(&source, pid, *seconds, frequency, &scratch),
            };
            let cpu_seconds = cpu_before
                .zip(pid.and_then(cpu_seconds))
                .map(|(before, after)| after - before)
                .or(remote_cpu.as_ref().and_then(|r| r.cpu_seconds));
            Capture {
                result,
                seconds: seconds.unwrap_or(window),
                cpu_seconds,
                remote_source: remote_cpu.map(|r| r.source),
            }
        });
    }

    fn step_finished(
        &mut self,
        spec: &StepSpec,
        result: &StepResult,
        _window: (Instant, Instant),
        observed: &mut crate::model::Observed,
    ) {
        let Some(capture) = self.pending.finish(&spec.name) else {
            return;
        };
        let profile = self.write(spec, result, capture);
        if let Some(error) = &profile.error {
            crate::notice::say(format!("knee: no flamegraph for {}: {error}", spec.name));
        }
        observed.profile = Some(profile);
    }
}

impl ProfilerObserver {
    /// Writes the step's profile files; what to record about them.
    fn write(&self, spec: &StepSpec, result: &StepResult, capture: Capture) -> StepProfile {
        let observer = match &self.source {
            CpuSource::Observer(observer) => Some(observer.name.clone()),
            _ => None,
        };
        let mut profile = StepProfile {
            source: capture.remote_source.unwrap_or_else(|| self.source_kind()),
            observer,
            frequency_hz: self.frequency,
            frequency_asked_hz: None,
            seconds: capture.seconds,
            samples: 0,
            target_cpu_seconds: capture.cpu_seconds,
            samples_per_cpu_second: None,
            undersampled: false,
            svg: None,
            folded: None,
            pprof: None,
            top_self: Vec::new(),
            top_inclusive: Vec::new(),
            top_own: Vec::new(),
            error: None,
        };
        let captured = match capture.result {
            Ok(captured) => captured,
            Err(e) => {
                profile.error = Some(e);
                return profile;
            }
        };
        let folded = &captured.folded;
        if let Some(hz) = captured.sampled_hz.filter(|hz| *hz >= 0.5) {
            let hz = hz.round() as u32;
            if hz != self.frequency {
                profile.frequency_asked_hz = Some(self.frequency);
                profile.frequency_hz = hz;
            }
        }
        profile.samples = folded.total();
        profile.top_self = folded.top_self(TOP_FUNCTIONS);
        profile.top_inclusive = folded.top_inclusive(TOP_FUNCTIONS);
        profile.top_own = top_own(&captured.own, profile.samples);
        if let Some(cpu) = capture.cpu_seconds.filter(|c| *c > 0.05) {
            let rate = profile.samples as f64 / cpu;
            profile.samples_per_cpu_second = Some((rate * 10.0).round() / 10.0);
            // Only a signal-driven profiler's rate is capped by the kernel's tick; py-spy
            // samples the thread holding the GIL, JFR the threads in Java code.
            let signalled = matches!(profile.source, ProfileSource::Perf | ProfileSource::Pprof);
            profile.undersampled =
                signalled && rate < f64::from(profile.frequency_hz) * UNDERSAMPLED_SHARE;
        }
        let write =
            |suffix: &str, bytes: &[u8]| write_step_file(&self.dir, &spec.name, suffix, bytes);
        if let Some(pprof) = &captured.pprof {
            profile.pprof = write("pb.gz", pprof);
        }
        profile.folded = write("folded", folded.to_text().as_bytes());
        match render::flamegraph_svg(folded, &title(spec, result), &subtitle(&profile)) {
            Ok(svg) => profile.svg = write("svg", &svg),
            Err(e) => profile.error = Some(e),
        }
        profile
    }
}

/// Writes `flame/STEP.SUFFIX` into the run folder `dir`; its path relative to the folder,
/// None when it could not be written.
pub(crate) fn write_step_file(
    dir: &Path,
    step: &str,
    suffix: &str,
    bytes: &[u8],
) -> Option<String> {
    std::fs::create_dir_all(dir.join("flame")).ok()?;
    let relative = format!("flame/{step}.{suffix}");
    std::fs::write(dir.join(&relative), bytes).ok()?;
    Some(relative)
}

/// The service's own functions by samples, most first, with their share of all samples.
pub(crate) fn top_own(
    own: &std::collections::BTreeMap<String, u64>,
    total: u64,
) -> Vec<FunctionShare> {
    let mut rows: Vec<FunctionShare> = own
        .iter()
        .map(|(function, samples)| FunctionShare {
            function: function.clone(),
            samples: *samples,
            percent: (*samples as f64 * 1000.0 / total.max(1) as f64).round() / 10.0,
        })
        .collect();
    rows.sort_by(|a, b| b.samples.cmp(&a.samples).then(a.function.cmp(&b.function)));
    rows.truncate(TOP_FUNCTIONS);
    rows
}

pub(crate) fn title(spec: &StepSpec, result: &StepResult) -> String {
    let rate = result
        .offered_rps
        .map_or_else(|| "closed".to_string(), |r| format!("{r:.0} req/s offered"));
    format!(
        "{}: {rate}, {:.0} ok/s, p99 {:.1} ms",
        spec.name, result.ok_rps, result.latency_ms.p99
    )
}

fn subtitle(profile: &StepProfile) -> String {
    let cpu = profile.target_cpu_seconds.map_or(String::new(), |cpu| {
        format!(
            ", target CPU {:.2} cores",
            cpu / profile.seconds.max(f64::EPSILON)
        )
    });
    let flag = if profile.undersampled {
        " (UNDERSAMPLED)"
    } else {
        ""
    };
    let taken = match &profile.observer {
        Some(observer) => format!("{} on observer {observer}", profile.source),
        None => profile.source.to_string(),
    };
    format!(
        "{} samples over {:.1} s at {} Hz ({taken}){cpu}{flag}",
        profile.samples, profile.seconds, profile.frequency_hz
    )
}

/// Takes one short profile before any step runs, and throws it away. An in-process profiler
/// may allocate on first use what it keeps afterwards (pprof-rs: ~130 MB; knee's agent: the
/// executable's symbol table, about 3 MB); allocated in the middle of the hold steps, that
/// would read as the target's RSS jumping at the knee. Failures are ignored here: each step
/// reports its own.
fn prime(url: &str, insecure: bool) {
    let _ = capture::pprof(url, 0.05, 100, insecure);
}

/// CPU seconds a process tree has used so far.
fn cpu_seconds(pid: u32) -> Option<f64> {
    procfs::process_tree_counters(pid).map(|(c, _)| c.cpu_ticks as f64 / procfs::clock_ticks())
}

//! Which profilers read the target: its runtime's own (py-spy for Python, Java Flight
//! Recorder for a JVM, the inspector for Node.js) when `--profiler auto` (the default once
//! the target's process is known), perf for native code, a pprof endpoint when one is given,
//! or the observer that watches a remote target (which chooses by its target's runtime).
//! What was chosen and why is kept in run.json (`profiling`); a runtime whose profiler is
//! missing gets one line naming the install step, and perf in its place.

use super::capture::{self, Endpoint};
use crate::model::observed::ProfileSource;
use crate::model::run::{Profiling, Runtime};
use crate::plan::{ObservePlan, ObserverSpec, ProfilerPlan};

/// Where a step's CPU profile comes from.
#[derive(Clone, Debug)]
pub enum CpuSource {
    /// A pprof endpoint, what serves it, and whether its certificate may be self-signed (-k).
    Pprof(String, Endpoint, bool),
    Perf,
    PySpy,
    Jfr,
    Node,
    /// `knee observe` on the target's host takes it.
    Observer(ObserverSpec),
}

impl CpuSource {
    /// How its profiles are recorded (an observer's say what they are themselves).
    pub fn profile_source(&self) -> ProfileSource {
        match self {
            CpuSource::Pprof(..) => ProfileSource::Pprof,
            CpuSource::PySpy => ProfileSource::PySpy,
            CpuSource::Jfr => ProfileSource::Jfr,
            CpuSource::Node => ProfileSource::NodeInspector,
            CpuSource::Perf | CpuSource::Observer(_) => ProfileSource::Perf,
        }
    }

    /// The `--profiler` value that asks for it.
    pub fn flag(&self) -> &'static str {
        match self {
            CpuSource::Node => "node",
            other => other.name(),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            CpuSource::Pprof(..) => "pprof",
            CpuSource::Perf => "perf",
            CpuSource::PySpy => "py-spy",
            CpuSource::Jfr => "jfr",
            CpuSource::Node => "node inspector",
            CpuSource::Observer(_) => "the observer's",
        }
    }
}

/// A runtime's own view of where its threads wait (beside, or instead of, perf's).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WaitSource {
    PySpy,
    Jfr,
}

/// What reads the target, and why.
pub struct Choice {
    pub cpu: Option<CpuSource>,
    pub waits: Option<WaitSource>,
    pub profiling: Profiling,
    /// What is missing, each a line to say once (also in `profiling.why`).
    pub warnings: Vec<String>,
}

/// Chooses for `runtime` (None: the target's process is not known here).
pub fn choose(
    observe: &ObservePlan,
    demo_url: Option<&str>,
    pid: Option<u32>,
    runtime: Option<Runtime>,
    observer: Option<&ObserverSpec>,
) -> Choice {
    let mut why = Vec::new();
    let mut warnings = Vec::new();
    let cpu = match &observe.profiler {
        ProfilerPlan::Off => None,
        ProfilerPlan::Pprof(url) => Some(pprof(url.clone(), observe.insecure)),
        ProfilerPlan::DemoAgent => demo_url.map(|base| {
            pprof(
                format!(
                    "{}{}",
                    base.trim_end_matches('/'),
                    crate::agent::PROFILE_PATH
                ),
                observe.insecure,
            )
        }),
        ProfilerPlan::Perf => local_or_observer(CpuSource::Perf, pid, observer, &mut warnings),
        ProfilerPlan::PySpy => local_or_observer(CpuSource::PySpy, pid, observer, &mut warnings),
        ProfilerPlan::Jfr => local_or_observer(CpuSource::Jfr, pid, observer, &mut warnings),
        ProfilerPlan::Node => local_or_observer(CpuSource::Node, pid, observer, &mut warnings),
        ProfilerPlan::Auto => match (pid, runtime, observer) {
            (Some(_), Some(runtime), _) => {
                why.push(format!("auto: the target runs {}", runtime.as_str()));
                let (source, missing) = for_runtime(runtime);
                warnings.extend(missing);
                source
            }
            (Some(_), None, _) => {
                why.push("auto: the target is knee's own process, not profiled".into());
                None
            }
            (None, runtime, Some(observer)) => {
                let runs = runtime.map_or(String::new(), |r| format!(" ({})", r.as_str()));
                why.push(format!(
                    "auto: observer {} profiles its target{runs} with its runtime's profiler",
                    observer.name
                ));
                Some(CpuSource::Observer(observer.clone()))
            }
            _ => {
                why.push("auto: no target process known, no profiler (give --pid, --spawn or a local port)".into());
                None
            }
        },
    };
    if let Some(CpuSource::Pprof(url, ..)) = &cpu {
        why.push(format!("pprof: {}", crate::redact::redact_url(url)));
    }
    let waits = observe
        .offcpu
        .then(|| waits_for(runtime, pid, &mut why))
        .flatten();
    why.extend(warnings.iter().cloned());
    Choice {
        warnings,
        profiling: Profiling {
            runtime,
            cpu: cpu.as_ref().map(|c| c.name().to_string()),
            offcpu: waits.map(|w| match w {
                WaitSource::PySpy => "py-spy idle".to_string(),
                WaitSource::Jfr => "jfr events".to_string(),
            }),
            why,
        },
        cpu,
        waits,
    }
}

fn pprof(url: String, insecure: bool) -> CpuSource {
    let endpoint = capture::identify(&url, insecure);
    CpuSource::Pprof(url, endpoint, insecure)
}

/// A profiler run here when the target's pid is known; else the observer's; else none,
/// said.
fn local_or_observer(
    source: CpuSource,
    pid: Option<u32>,
    observer: Option<&ObserverSpec>,
    warnings: &mut Vec<String>,
) -> Option<CpuSource> {
    match (pid, observer) {
        (Some(_), _) => Some(source),
        (None, Some(observer)) => Some(CpuSource::Observer(observer.clone())),
        (None, None) => {
            warnings.push(format!(
                "--profiler {} needs the target's pid (--pid, --spawn, or a local port): no flamegraphs",
                source.flag()
            ));
            None
        }
    }
}

/// The runtime's own profiler; else perf (which still names the native frames); and the
/// line saying what to install, when something is missing.
pub fn for_runtime(runtime: Runtime) -> (Option<CpuSource>, Option<String>) {
    let own = match runtime {
        Runtime::Python => super::pyspy::available().map(|()| CpuSource::PySpy),
        Runtime::Jvm => super::jfr::available().map(|()| CpuSource::Jfr),
        Runtime::Node => Ok(CpuSource::Node),
        Runtime::Go | Runtime::Native => Err(String::new()),
    };
    let missing = match own {
        Ok(source) => return (Some(source), None),
        Err(missing) => missing,
    };
    match (super::capture::perf_available(), missing.is_empty()) {
        (Ok(()), true) => (Some(CpuSource::Perf), None),
        (Ok(()), false) => (
            Some(CpuSource::Perf),
            Some(format!("{missing}; perf profiles it meanwhile")),
        ),
        (Err(no_perf), true) => (None, Some(format!("no flamegraphs: {no_perf}"))),
        (Err(_), false) => (None, Some(format!("no flamegraphs: {missing}"))),
    }
}

/// The runtime's own view of waits, when it has one and its tool is here.
pub fn waits_of(runtime: Runtime) -> Option<WaitSource> {
    match runtime {
        Runtime::Python => super::pyspy::available().ok().map(|_| WaitSource::PySpy),
        Runtime::Jvm => super::jfr::available().ok().map(|_| WaitSource::Jfr),
        Runtime::Node | Runtime::Go | Runtime::Native => None,
    }
}

/// The runtime's own view of waits for a local target, and why not when it has none.
fn waits_for(
    runtime: Option<Runtime>,
    pid: Option<u32>,
    why: &mut Vec<String>,
) -> Option<WaitSource> {
    pid?;
    match runtime? {
        runtime @ (Runtime::Python | Runtime::Jvm) => waits_of(runtime),
        Runtime::Node => {
            why.push(
                "node: waits on promises are invisible to thread stacks; the off-CPU view shows libuv's threads only"
                    .into(),
            );
            None
        }
        Runtime::Go | Runtime::Native => None,
    }
}

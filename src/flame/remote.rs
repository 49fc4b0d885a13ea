//! Profiles taken on the target's host by `knee observe`, for a driver on another machine: the
//! CPU profile (its runtime's profiler, as `choose` picks for a local target: py-spy, JFR,
//! Node's inspector or perf; or its own pprof endpoint proxied) and the off-CPU recording
//! (py-spy's or JFR's waits, else perf on the scheduler's switches). The observer takes them
//! with the same code the driver uses locally and answers with the folded stacks and
//! what was measured beside them; the driver writes and judges them as its own. The observer
//! only ever profiles its own target (or one of its replicas), for a bounded time, one profile
//! of each kind per process at a time: nothing the driver sends is run.

use super::capture::{self, Captured};
use super::choose::CpuSource;
use super::sched::Recording;
use super::take::{runtime_waits, Taken};
use super::waits::WaitKind;
use crate::model::observed::OffCpuSource;
use crate::model::run::Runtime;
use crate::stacks::folded::Folded;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// The longest profile an observer takes on request.
pub const MAX_SECONDS: f64 = 30.0;
/// Sampling frequencies an observer accepts, Hz.
const FREQUENCIES: std::ops::RangeInclusive<u32> = 1..=999;

/// A CPU profile as the observer answers it (`GET /profile/cpu?seconds=S&frequency=F`).
#[derive(Debug, Serialize, Deserialize)]
pub struct RemoteCpu {
    /// perf, or pprof (the target's own endpoint, proxied).
    pub source: crate::model::observed::ProfileSource,
    pub seconds: f64,
    pub sampled_hz: Option<f64>,
    /// CPU seconds the target burnt during the profile, read on its host.
    pub cpu_seconds: Option<f64>,
    /// Folded stacks, one "stack count" per line.
    pub folded: String,
    /// Samples per function of the service's own code (runtimes' profilers only).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub own: std::collections::BTreeMap<String, u64>,
}

/// An off-CPU recording as the observer answers it (`GET /profile/offcpu?seconds=S`).
#[derive(Debug, Serialize, Deserialize)]
pub struct RemoteOffCpu {
    /// What recorded it (perf's context switches unless the target's runtime has its own).
    #[serde(default = "perf_sched")]
    pub source: OffCpuSource,
    /// What the recording's source notes (JFR: the GC pauses it saw).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub seconds: f64,
    /// Folded stacks, values in µs switched out.
    pub folded: String,
    /// µs per wait kind and site, as classified on the target's host.
    pub sites: Vec<(WaitKind, Option<String>, u64)>,
    pub threads: usize,
    pub switches: u64,
}

fn perf_sched() -> OffCpuSource {
    OffCpuSource::PerfSchedSwitch
}

/// What an observer needs to profile its target.
pub struct ProfileTarget<'a> {
    pub pid: u32,
    /// Its runtime: which profilers read it (`choose::for_runtime`).
    pub runtime: Runtime,
    /// The target's own pprof endpoint, when the observer was told to proxy it.
    pub pprof: Option<&'a str>,
    /// Where perf's recordings go while they are read.
    pub scratch: &'a Path,
}

/// Why a profile cannot be taken now: the request is wrong (400), another is being taken
/// (409), or this host cannot (503).
#[derive(Debug, PartialEq)]
pub enum Refusal {
    BadRequest(String),
    Busy,
    Unable(String),
}

/// One profile of each kind per process at a time: two perf sessions on one process distort
/// both (a target's replicas are profiled side by side).
static CPU_BUSY: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());
static OFFCPU_BUSY: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

/// A profile of `pid` being taken: the process is free again when it is dropped.
struct Turn {
    busy: &'static Mutex<BTreeSet<u32>>,
    pid: u32,
}

impl Turn {
    fn take(busy: &'static Mutex<BTreeSet<u32>>, pid: u32) -> Result<Turn, Refusal> {
        let mut taking = busy.lock().unwrap_or_else(|e| e.into_inner());
        if !taking.insert(pid) {
            return Err(Refusal::Busy);
        }
        Ok(Turn { busy, pid })
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut taking = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        taking.remove(&self.pid);
    }
}

/// Reads `name=` from a query string as a number.
pub(crate) fn query_number(query: &str, name: &str) -> Option<Result<f64, String>> {
    let raw = query
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))?;
    Some(
        raw.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("{name}= must be a number, not '{raw}'")),
    )
}

/// The seconds a request asks for: given, and within (0, MAX_SECONDS].
fn seconds_asked(query: &str) -> Result<f64, Refusal> {
    match query_number(query, "seconds") {
        Some(Ok(s)) if s > 0.0 && s <= MAX_SECONDS => Ok(s),
        Some(Ok(_)) => Err(Refusal::BadRequest(format!(
            "seconds= must be above 0 and at most {MAX_SECONDS:.0}"
        ))),
        Some(Err(e)) => Err(Refusal::BadRequest(e)),
        None => Err(Refusal::BadRequest("seconds= is required".into())),
    }
}

/// Takes a CPU profile of the observer's target, as asked by `query`.
pub fn serve_cpu(target: &ProfileTarget, query: &str) -> Result<RemoteCpu, Refusal> {
    let seconds = seconds_asked(query)?;
    let frequency = match query_number(query, "frequency") {
        None => 99,
        Some(Ok(f)) if FREQUENCIES.contains(&(f as u32)) && f.fract() == 0.0 => f as u32,
        Some(_) => {
            return Err(Refusal::BadRequest(
                "frequency= must be a whole number of Hz from 1 to 999".into(),
            ))
        }
    };
    let _turn = Turn::take(&CPU_BUSY, target.pid)?;
    // Its own pprof endpoint when told to proxy it; else its runtime's profiler.
    let (source, seconds) = match target.pprof {
        Some(url) => {
            let endpoint = capture::identify(url, false);
            let seconds = capture::seconds_for(endpoint, seconds).map_err(Refusal::Unable)?;
            (CpuSource::Pprof(url.to_string(), endpoint, false), seconds)
        }
        None => match super::choose::for_runtime(target.runtime) {
            (Some(source), _) => (source, seconds),
            (None, missing) => return Err(Refusal::Unable(missing.unwrap_or_default())),
        },
    };
    let cpu_before = super::cpu_seconds(target.pid);
    let (captured, _) = super::take(
        &source,
        Some(target.pid),
        seconds,
        frequency,
        target.scratch,
    );
    let captured = captured.map_err(Refusal::Unable)?;
    let cpu_seconds = cpu_before
        .zip(super::cpu_seconds(target.pid))
        .map(|(before, after)| after - before);
    Ok(RemoteCpu {
        source: source.profile_source(),
        seconds,
        sampled_hz: captured.sampled_hz,
        cpu_seconds,
        folded: captured.folded.to_text(),
        own: captured.own,
    })
}

/// Records the observer's target's context switches, as asked by `query`.
pub fn serve_offcpu(target: &ProfileTarget, query: &str) -> Result<RemoteOffCpu, Refusal> {
    let seconds = seconds_asked(query)?;
    let _turn = Turn::take(&OFFCPU_BUSY, target.pid)?;
    let taken = match super::choose::waits_of(target.runtime) {
        Some(source) => runtime_waits(source, target.pid, seconds, target.scratch),
        None => super::sched::record(target.pid, seconds, target.scratch).map(Taken::perf),
    };
    let Taken {
        source,
        recording,
        note,
    } = taken.map_err(Refusal::Unable)?;
    Ok(RemoteOffCpu {
        source,
        note,
        seconds,
        folded: recording.folded.to_text(),
        sites: recording
            .sites
            .into_iter()
            .map(|((kind, site), us)| (kind, site, us))
            .collect(),
        threads: recording.threads,
        switches: recording.switches,
    })
}

/// A CPU profile of the target through its observer, and what the observer said of it (its
/// source, the CPU the target burnt meanwhile; the stacks taken out).
pub fn cpu(
    observer: &crate::plan::ObserverSpec,
    seconds: f64,
    frequency: u32,
) -> Result<(Captured, RemoteCpu), String> {
    let path = format!("/profile/cpu?seconds={seconds:.3}&frequency={frequency}");
    let mut answer: RemoteCpu = ask(observer, &path, seconds)?;
    let captured = Captured {
        own: std::mem::take(&mut answer.own),
        ..Captured::stacks(
            Folded::parse(&std::mem::take(&mut answer.folded)),
            None,
            answer.sampled_hz,
        )
    };
    Ok((captured, answer))
}

/// An off-CPU recording of the target through its observer.
pub fn offcpu(observer: &crate::plan::ObserverSpec, seconds: f64) -> Result<Taken, String> {
    let answer: RemoteOffCpu = ask(
        observer,
        &format!("/profile/offcpu?seconds={seconds:.3}"),
        seconds,
    )?;
    let recording = Recording {
        folded: Folded::parse(&answer.folded),
        sites: answer
            .sites
            .into_iter()
            .map(|(kind, site, us)| ((kind, site), us))
            .collect(),
        threads: answer.threads,
        switches: answer.switches,
    };
    Ok(Taken {
        source: answer.source,
        recording,
        note: answer.note,
    })
}

/// GETs a profile from the observer: it answers once the profile is taken.
fn ask<T: serde::de::DeserializeOwned>(
    observer: &crate::plan::ObserverSpec,
    path: &str,
    seconds: f64,
) -> Result<T, String> {
    let timeout = Duration::from_secs_f64(seconds + 30.0);
    crate::observe::remote::read_json(observer, path, timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_bounded_and_checked() {
        let target = ProfileTarget {
            pid: std::process::id(),
            runtime: Runtime::Native,
            pprof: None,
            scratch: Path::new("/nonexistent"),
        };
        let bad = |query: &str| match serve_cpu(&target, query) {
            Err(Refusal::BadRequest(why)) => why,
            other => panic!("{query}: {other:?}"),
        };
        assert!(bad("").contains("seconds= is required"));
        assert!(bad("seconds=0").contains("above 0"));
        assert!(bad("seconds=31").contains("at most 30"));
        assert!(bad("seconds=NaN").contains("must be a number"));
        assert!(bad("seconds=1&frequency=5000").contains("1 to 999"));
        assert!(bad("seconds=1&frequency=9.5").contains("whole number"));
        assert!(matches!(
            serve_offcpu(&target, "seconds=-1"),
            Err(Refusal::BadRequest(_))
        ));
        // One of a kind per process at a time; another process is free.
        let _taking = Turn::take(&OFFCPU_BUSY, target.pid).unwrap();
        assert!(matches!(
            serve_offcpu(&target, "seconds=1"),
            Err(Refusal::Busy)
        ));
        assert!(Turn::take(&OFFCPU_BUSY, target.pid + 1).is_ok());
    }
}

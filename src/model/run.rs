//! A whole run as `run.json` keeps it: what was run against what, every step, and what the
//! analyses concluded. Read back by `knee report`, `compare` and `merge`, which refuse a
//! damaged file in one line.

use super::hunt::{KneeAnalysis, UslFit};
use super::soak::SoakAnalysis;
use super::step::StepResult;
use super::verdict::Verdict;
use crate::error::Error;
use crate::slo::Slo;
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

/// Everything about a run (`run.json`).
#[derive(Debug, Serialize, Deserialize)]
pub struct RunRecord {
    pub schema_version: u32,
    pub knee_version: String,
    pub name: String,
    pub kind: Kind,
    /// The command line, secrets redacted.
    pub command: Vec<String>,
    /// The target URL, secrets redacted.
    pub target: String,
    pub slo: Slo,
    pub started_at: String,
    pub finished_at: String,
    pub steps: Vec<StepResult>,
    pub interrupted: bool,
    /// Every counted step held its SLO.
    pub slo_held: bool,
    /// Steps where the generator, not the target, was the limit.
    pub generator_limited_steps: Vec<String>,
    /// `knee hunt`: the knee three ways, the failure mode past it, recovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hunt: Option<KneeAnalysis>,
    /// `kind = "stress"`: the failure mode past the highest rate that held, and recovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stress: Option<KneeAnalysis>,
    /// `kind = "sweep"`: the Universal Scalability Law fit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usl: Option<UslFit>,
    /// The bottleneck at the knee, with its evidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// `kind = "soak"`: trends and the leak / degradation verdicts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak: Option<SoakAnalysis>,
    /// This run was shard `index` of `count` (`--shard`); `knee merge` joins the shards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    /// The target process that was sampled, and whether it went away.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_process: Option<TargetProcess>,
    /// The `knee observe` servers the target's host was read through.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub observers: Vec<ObserverRecord>,
    /// How the run ended: completed, interrupted (Ctrl-C, SIGTERM: the last step partial),
    /// or killed (SIGKILL, the OOM killer, power: rebuilt afterwards from its folder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<Ended>,
    /// The machine knee ran on (the generator's host): a verdict re-made elsewhere judges
    /// with its cores, not the other machine's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_host: Option<Host>,
    /// What the run as a whole should say (a killed run: which steps were lost).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The target's runtime and the profilers chosen for it, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profiling: Option<Profiling>,
}

/// A target's runtime: what its own stacks are read with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// CPython (py-spy).
    Python,
    /// A JVM (Java Flight Recorder).
    Jvm,
    /// Node.js (its inspector).
    Node,
    /// Go (net/http/pprof, or perf).
    Go,
    /// Native code: Rust, C, C++ (perf, or knee's agent).
    Native,
}

impl Runtime {
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Python => "python",
            Runtime::Jvm => "jvm",
            Runtime::Node => "node",
            Runtime::Go => "go",
            Runtime::Native => "native",
        }
    }
}

/// The profilers a run used, for which runtime, and why (`profiling` in run.json).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Profiling {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<Runtime>,
    /// The CPU profiler ("py-spy", "jfr", "node inspector", "perf", "pprof"), if one runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// The off-CPU profiler, if one runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offcpu: Option<String>,
    /// Why these (auto: from the runtime), and what is missing and how to get it.
    pub why: Vec<String>,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ended {
    Completed,
    /// Ctrl-C or SIGTERM: the last step is partial, everything else was written.
    Interrupted,
    /// Killed outright (not known how): rebuilt from what the folder held.
    Killed,
}

/// A machine, as a run records it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Host {
    pub name: String,
    pub cores: usize,
    pub memory_mb: f64,
    pub kernel: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Hold the expected peak rate; does it meet the SLO?
    Load,
    /// Push through rising steps past the knee.
    Stress,
    /// Hold one rate for a long time, summarized in windows.
    Soak,
    /// Plain rate (or concurrency) steps.
    Steps,
    /// Find the knee: probe, ramp, bisect, then hold steps around it.
    Hunt,
    /// Closed-model concurrency steps 1, 2, 4, … N, with a Universal Scalability Law fit.
    Sweep,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Load => "load",
            Kind::Stress => "stress",
            Kind::Soak => "soak",
            Kind::Steps => "steps",
            Kind::Hunt => "hunt",
            Kind::Sweep => "sweep",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Shard `index` of `count` (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// Where this shard's uniform schedule starts, as a fraction of its own send interval:
    /// shard i of N sends at (i-1)/N of the interval, so the N schedules interleave into the
    /// whole rate's.
    pub fn phase(&self) -> f64 {
        f64::from(self.index - 1) / f64::from(self.count)
    }

    /// Parses "I/N" (1 ≤ I ≤ N ≤ 1000).
    pub fn parse(text: &str) -> Result<Shard, String> {
        let bad = || format!("--shard '{text}' must be I/N with 1 <= I <= N, e.g. 2/4");
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if index < 1 || index > count || count > 1000 {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// How the target's pid was found (kept in run.json).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TargetProcess {
    pub pid: u32,
    /// "pid" | "spawn" | "demo" | "port"
    pub found_by: String,
    /// Seconds into the run when the process was seen gone (it died, or was stopped early).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exited_at_s: Option<f64>,
    /// How the spawned process ended, when knee did not stop it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<String>,
    /// A target of several processes: every replica, `pid` the first (empty for one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<Replica>,
    /// The local balancer the URL's port belongs to, when knee followed it to the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balancer: Option<Replica>,
}

impl TargetProcess {
    /// Its processes: every replica, or its one process.
    pub fn pids(&self) -> Vec<u32> {
        match self.replicas.is_empty() {
            true => vec![self.pid],
            false => self.replicas.iter().map(|r| r.pid).collect(),
        }
    }
}

/// One process of a target of several.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Replica {
    pub pid: u32,
    /// Its command name (/proc/PID/comm).
    pub name: String,
    /// The observer (`knee observe`) on whose host it runs; none on this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observer: Option<String>,
}

/// An observer, as run.json keeps it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ObserverRecord {
    pub name: String,
    pub url: String,
    /// The observer's clock minus this machine's, in ms.
    pub clock_offset_ms: f64,
    /// The shortest round trip of the clock estimate (the offset is good to half of it).
    pub rtt_ms: f64,
    /// Samples received.
    pub samples: u64,
    /// Times samples went missing: the observer stopped answering, or it dropped some
    /// before they were fetched.
    pub gaps: u64,
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_pid: Option<u32>,
}

impl RunRecord {
    /// A run folder or its run.json → (the folder, run.json's path).
    pub fn locate(run: &Path) -> (PathBuf, PathBuf) {
        if run.is_dir() {
            (run.to_path_buf(), run.join("run.json"))
        } else {
            let dir = run.parent().unwrap_or(Path::new(".")).to_path_buf();
            (dir, run.to_path_buf())
        }
    }

    /// Reads run.json and checks its values (a hand-edited or damaged file must be refused
    /// in one line, not reach a panic in `knee merge`, `report` or `compare`).
    pub fn read(path: &Path) -> Result<RunRecord, Error> {
        let text = fs::read_to_string(path)
            .map_err(|e| Error::input(format!("{}: cannot read: {e}", path.display())))?;
        let record: RunRecord = serde_json::from_str(&text).map_err(|e| {
            Error::input(format!(
                "{}:{}:{}: {e}",
                path.display(),
                e.line(),
                e.column()
            ))
        })?;
        record
            .check()
            .map_err(|problem| Error::input(format!("{}: {problem}", path.display())))?;
        Ok(record)
    }

    /// The first value that cannot be right, in words.
    pub fn check(&self) -> Result<(), String> {
        for (i, step) in self.steps.iter().enumerate() {
            check_step(step).map_err(|e| format!("steps[{i}] ('{}'): {e}", step.name))?;
        }
        for (what, analysis) in [("hunt", &self.hunt), ("stress", &self.stress)] {
            let Some(a) = analysis else { continue };
            for (field, value) in [
                ("capacity_rps", a.capacity_rps),
                ("latency_knee_rps", a.latency_knee_rps),
                ("saturation_rps", a.saturation_rps),
                ("recovery_s", a.recovery_s),
            ] {
                if let Some(v) = value {
                    non_negative(v).map_err(|e| format!("{what}.{field} {e}"))?;
                }
            }
        }
        Ok(())
    }
}

/// `value` is a finite number ≥ 0, or says why not.
fn non_negative(value: f64) -> Result<(), String> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(format!("is {value} (must be a number >= 0)"))
    }
}

/// A step's figures are finite and ≥ 0, its shares within 0..=1, its counts consistent.
fn check_step(step: &StepResult) -> Result<(), String> {
    let g = &step.generator;
    let numbers = [
        ("duration_s", step.duration_s),
        ("warmup_s", step.warmup_s),
        ("offered_rps", step.offered_rps.unwrap_or(0.0)),
        ("achieved_rps", step.achieved_rps),
        ("ok_rps", step.ok_rps),
        ("in_flight_mean", step.in_flight_mean),
        ("generator.cpu_cores", g.cpu_cores),
        ("generator.send_lag_p99_ms", g.send_lag_p99_ms),
    ];
    for (field, value) in numbers {
        non_negative(value).map_err(|e| format!("{field} {e}"))?;
    }
    for (field, p) in [
        ("latency_ms", &step.latency_ms),
        ("service_ms", &step.service_ms),
    ] {
        for (name, value) in [
            ("mean", p.mean),
            ("p50", p.p50),
            ("p90", p.p90),
            ("p99", p.p99),
            ("p999", p.p999),
            ("max", p.max),
        ] {
            non_negative(value).map_err(|e| format!("{field}.{name} {e}"))?;
        }
    }
    if !(0.0..=1.0).contains(&step.error_rate) {
        return Err(format!(
            "error_rate is {} (must be between 0 and 1)",
            step.error_rate
        ));
    }
    if step.errors > step.requests {
        return Err(format!(
            "errors ({}) exceed requests ({})",
            step.errors, step.requests
        ));
    }
    Ok(())
}

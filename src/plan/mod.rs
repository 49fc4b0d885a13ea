//! The validated plan: what the command line and the TOML profile become once checked.
//! Nothing downstream re-parses strings; the engine, the run folder and the terminal only
//! see these types.

use crate::slo::Slo;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Uri};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

pub use crate::model::{Kind, Phase, Shard};

pub mod flow;
pub mod grpc;
mod observe;
pub use observe::{
    ObservePlan, ObserverSpec, ProfilerPlan, ServePlan, ServeTarget, TlsFiles, Token,
};

/// The highest rate one generator process accepts; above it, use shards.
pub const MAX_RATE: f64 = 1_000_000.0;
/// The finest hunt resolution: rates are rounded to 3 significant digits, so two rates
/// closer than 1 % may round to the same one (100 and 101 are 1 % apart).
pub const MIN_RESOLUTION: f64 = 0.01;
/// A hunt's search runs at most this many steps (bisection from a 1.5x ramp needs ~10).
pub const MAX_SEARCH_STEPS: usize = 30;
/// The most concurrent connections one generator process accepts.
pub const MAX_CONNECTIONS: usize = 20_000;

/// What the user asked knee to do.
#[derive(Debug)]
pub enum Job {
    Run(Box<RunPlan>),
    Demo(DemoConfig),
    /// Re-render the reports of a run folder from its run.json.
    Report {
        run: PathBuf,
        format: ReportFormat,
        /// Also write the SLO checks as JUnit XML here (`--junit`).
        junit: Option<PathBuf>,
    },
    /// Merge the run folders of shards into `out`.
    Merge {
        dirs: Vec<PathBuf>,
        out: PathBuf,
    },
    /// Compare two runs into the folder `out`.
    Compare {
        before: PathBuf,
        after: PathBuf,
        out: PathBuf,
        /// Fail (exit 1) when the capacity dropped by more than this fraction.
        fail_if_slower: Option<f64>,
        /// GitHub Actions' job summary, which compare.md is appended to.
        step_summary: Option<PathBuf>,
    },
    /// `knee observe`: serve this host's and a target's samples to a driver elsewhere.
    Observe(ServePlan),
    /// Print a shell's completion script.
    Completions(clap_complete::Shell),
    /// Print knee(1), or write every page into `out`.
    Man {
        out: Option<PathBuf>,
    },
    /// A profile from an access log or a HAR file.
    Import(ImportPlan),
}

/// `knee import`: what to read and how to write the profile.
#[derive(Debug, Clone)]
pub struct ImportPlan {
    pub file: PathBuf,
    /// The target's base URL (an access log does not say it; a HAR file's own is used else).
    pub url: Option<String>,
    pub format: ImportFormat,
    /// Where to write the profile; printed when None.
    pub out: Option<PathBuf>,
    /// Import the requests answered 4xx/5xx too.
    pub include_errors: bool,
    /// Real paths kept per endpoint (the most frequent).
    pub paths_per_endpoint: usize,
}

/// The formats `knee import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportFormat {
    /// What the file looks like.
    Auto,
    /// nginx's and Apache's combined or common log format.
    Clf,
    /// One JSON object per line.
    Json,
    /// A browser's HAR export.
    Har,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    /// Write report.md and report.html into the run folder.
    Files,
    /// Print run.json, read and re-encoded.
    Json,
}

#[derive(Debug)]
pub struct RunPlan {
    pub name: String,
    pub kind: Kind,
    pub target: TargetPlan,
    pub requests: Vec<RequestPlan>,
    pub mode: Mode,
    pub slo: Slo,
    /// No SLO was given; `slo` is `Slo::default_for_run()`.
    pub slo_is_default: bool,
    pub out: OutDir,
    /// Spawn `knee demo` and aim the target at it.
    pub demo: Option<DemoConfig>,
    /// The command line, for the run folder (redacted before it is written).
    pub command: Vec<String>,
    /// Draw the live progress bar (off in tests and when `--quiet`).
    pub progress: bool,
    pub observe: ObservePlan,
    /// This process is one of several generators: it offers 1/count of every rate.
    pub shard: Option<Shard>,
    /// Start the first step at this instant (shards start together).
    pub start_at: Option<std::time::SystemTime>,
    /// What a CI pipeline gets besides the exit code.
    pub ci: CiOutputs,
    /// A log's requests at their recorded times (`knee run --replay`): the one step's
    /// schedule, instead of a rate's.
    pub replay: Option<std::sync::Arc<RecordedSends>>,
    /// User flows (`[[flows]]`): a rate is then flows started per second, and `requests`
    /// are the flows' steps.
    pub flows: Option<std::sync::Arc<flow::Flows>>,
}

/// Requests at recorded times: (offset in seconds from the step's start, index into the
/// plan's requests), earliest first.
#[derive(Debug, Default)]
pub struct RecordedSends(pub Vec<(f64, u32)>);

/// Files a CI pipeline reads: the SLO checks as JUnit XML (`--junit`), and the job summary
/// report.md is appended to (`GITHUB_STEP_SUMMARY`, read once when the plan is made).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CiOutputs {
    pub junit: Option<PathBuf>,
    pub step_summary: Option<PathBuf>,
}

impl CiOutputs {
    /// `--junit FILE`, and the summary file GitHub Actions names in the environment.
    pub fn new(junit: Option<PathBuf>) -> CiOutputs {
        CiOutputs {
            junit,
            step_summary: std::env::var_os("GITHUB_STEP_SUMMARY")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
        }
    }
}

/// What to watch while the load runs.
/// What steps to run: fixed ones, or a hunt that decides them as it goes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Steps(Vec<StepSpec>),
    Hunt(HuntSettings),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HuntSettings {
    /// Never offer more than this.
    pub max_rate: Option<f64>,
    /// Bisection stops when held and failed rates are this close (0.05 = 5 %).
    pub resolution: f64,
    /// Concurrency levels of the closed-model probe that estimates the ceiling.
    pub probe: Vec<u32>,
    pub probe_duration: Duration,
    pub step_duration: Duration,
    pub step_warmup: Duration,
    /// Fractions of capacity to hold after the search (0.5, 0.8, 0.95, 1.05, 1.2).
    pub holds: Vec<f64>,
    pub hold_duration: Duration,
    pub hold_warmup: Duration,
    pub arrivals: Arrivals,
}

impl HuntSettings {
    pub fn new(step_duration: Duration, hold_duration: Duration) -> Self {
        HuntSettings {
            max_rate: None,
            resolution: 0.05,
            probe: vec![1, 4, 16, 64],
            probe_duration: Duration::from_millis(800),
            step_duration,
            step_warmup: default_warmup(step_duration),
            holds: vec![0.5, 0.8, 0.95, 1.05, 1.2],
            hold_duration,
            hold_warmup: default_warmup(hold_duration),
            arrivals: Arrivals::Uniform,
        }
    }
}

#[derive(Debug, Clone)]
pub enum OutDir {
    /// `reports/<utc-timestamp>-<name>/`
    Reports(PathBuf),
    /// `--out DIR`, used as is.
    Exact(PathBuf),
}

impl OutDir {
    /// `--out DIR` if given, else a dated folder under `reports/`.
    pub fn from_flag(out: Option<PathBuf>) -> OutDir {
        match out {
            Some(dir) => OutDir::Exact(dir),
            None => OutDir::Reports(PathBuf::from("reports")),
        }
    }

    /// The folder itself: DIR as given, or `reports/<utc-timestamp>-<name>`.
    pub fn folder(&self, name: &str, started: std::time::SystemTime) -> PathBuf {
        match self {
            OutDir::Exact(dir) => dir.clone(),
            OutDir::Reports(base) => base.join(format!("{}-{name}", folder_timestamp(started))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpVersion {
    Http1,
    Http2,
}

#[derive(Debug, Clone)]
pub struct TargetPlan {
    /// Scheme and authority (and a base path) of the target; request paths are joined to it.
    pub base: Uri,
    pub http: HttpVersion,
    /// Accept any TLS certificate (self-signed staging boxes).
    pub insecure: bool,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Upper bound of the connection pool in the open model.
    pub max_connections: usize,
    /// HTTP/2 streams in flight per connection (`--h2-streams`): up to this many workers
    /// share one connection (1: each worker its own).
    pub h2_streams: usize,
    /// Send each request of the mix once before any load, and stop on what cannot be right.
    pub check: TargetCheck,
}

/// The check of the target before any load: one request per entry of the mix; a refused
/// connection, a TLS failure, no answer, or an error status not allowed ends the run with
/// one line (exit 2) instead of a run of failures and a contradictory verdict.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetCheck {
    /// `--no-check`: skip it (to load a target meant to fail, e.g. to study its errors).
    pub skip: bool,
    /// Statuses ≥ 400 that are expected answers (`--allow-status 404,5xx`).
    pub allowed: Vec<StatusPattern>,
}

/// One status, or a class of them ("5xx").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusPattern {
    Code(u16),
    Class(u16),
}

impl StatusPattern {
    /// Parses "404,5xx".
    pub fn parse_list(text: &str) -> Result<Vec<StatusPattern>, String> {
        text.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| {
                let bad = || format!("'{t}' is not a status (404) or a class of them (5xx)");
                match t.strip_suffix("xx").or_else(|| t.strip_suffix("XX")) {
                    Some(class) => match class.parse::<u16>() {
                        Ok(c @ 1..=5) => Ok(StatusPattern::Class(c)),
                        _ => Err(bad()),
                    },
                    None => match t.parse::<u16>() {
                        Ok(code @ 100..=599) => Ok(StatusPattern::Code(code)),
                        _ => Err(bad()),
                    },
                }
            })
            .collect()
    }

    pub fn matches(&self, status: u16) -> bool {
        match *self {
            StatusPattern::Code(code) => code == status,
            StatusPattern::Class(class) => status / 100 == class,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RequestPlan {
    pub name: String,
    pub method: Method,
    /// Path and query, joined to the target base.
    pub path: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
    pub weight: u32,
    /// Its own objectives (`[requests.slo]`): the step holds only if it meets them too.
    pub slo: Option<crate::slo::Slo>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arrivals {
    /// Evenly spaced sends: rate r gives one send every 1/r s.
    Uniform,
    /// Exponential gaps with mean 1/r: bursts like real independent users.
    Poisson,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Load {
    /// Open model: requests leave on a schedule, whatever the target does.
    Rate { rps: f64, arrivals: Arrivals },
    /// Closed model: N connections each send the next request when the last one ends.
    Concurrency(u32),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepSpec {
    pub name: String,
    pub phase: Phase,
    pub load: Load,
    /// Measured but not counted: connections open, caches warm.
    pub warmup: Duration,
    /// The counted part of the step.
    pub duration: Duration,
    /// After the counted part, the same load for this long while the profilers record, not
    /// counted: what they cost the target stays out of the step's figures (zero: none).
    pub profile: Duration,
    /// Profile it even when a recovery step follows it (its stacks are the knee's): the
    /// recovery then says it started after a profiled tail.
    pub profile_before_recovery: bool,
}

impl StepSpec {
    /// The whole step: warm-up, counted part, profiled tail.
    pub fn length(&self) -> Duration {
        self.warmup + self.duration + self.profile
    }

    pub fn offered_rps(&self) -> Option<f64> {
        match self.load {
            Load::Rate { rps, .. } => Some(rps),
            Load::Concurrency(_) => None,
        }
    }
}

/// Default warm-up when none is given: a fifth of the step, at most one second.
pub fn default_warmup(duration: Duration) -> Duration {
    (duration / 5).min(Duration::from_secs(1))
}

/// Builds the named steps of a plan from its kind and load.
pub fn build_steps(
    kind: Kind,
    loads: &[Load],
    warmup: Option<Duration>,
    duration: Duration,
    window: Option<Duration>,
) -> Vec<StepSpec> {
    let warmup = warmup.unwrap_or_else(|| default_warmup(duration));
    let name_of = |load: &Load| match load {
        Load::Rate { rps, .. } => format!("rate-{}", fmt_rate(*rps)),
        Load::Concurrency(n) => format!("conc-{n}"),
    };
    if kind == Kind::Sweep {
        // A single concurrency N means the doubling sweep 1, 2, 4, … N.
        if let [Load::Concurrency(n)] = loads {
            let mut levels: Vec<u32> = std::iter::successors(Some(1u32), |c| c.checked_mul(2))
                .take_while(|c| c < n)
                .collect();
            levels.push(*n);
            let loads: Vec<Load> = levels.into_iter().map(Load::Concurrency).collect();
            return build_steps(Kind::Steps, &loads, Some(warmup), duration, None);
        }
    }
    if kind == Kind::Soak {
        // One load held for the whole duration, recorded in windows; only the first one warms up.
        let window = window.unwrap_or(Duration::from_secs(60)).min(duration);
        let count = (duration.as_secs_f64() / window.as_secs_f64()).ceil() as usize;
        return (0..count)
            .map(|i| StepSpec {
                profile: Duration::ZERO,
                profile_before_recovery: false,
                name: format!("window-{:03}", i + 1),
                phase: Phase::Window,
                load: loads[0],
                warmup: if i == 0 { warmup } else { Duration::ZERO },
                duration: window.min(duration.saturating_sub(window * i as u32)),
            })
            .collect();
    }
    loads
        .iter()
        .map(|load| StepSpec {
            profile: Duration::ZERO,
            profile_before_recovery: false,
            name: name_of(load),
            phase: Phase::Step,
            load: *load,
            warmup,
            duration,
        })
        .collect()
}

pub use crate::units::fmt_rate;

/// `20261126T161418Z`: sortable, and valid in file names everywhere.
pub fn folder_timestamp(at: std::time::SystemTime) -> String {
    let text = humantime::format_rfc3339_seconds(at).to_string(); // 2026-11-26T16:14:18Z
    text.replace(['-', ':'], "")
}

/// Bottlenecks of the demo to remove (`--demo-fix`, `knee demo --fix`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fixes {
    pub lock: bool,
    pub pool: bool,
    pub cpu: bool,
}

impl Fixes {
    /// Parses "lock,pool" (or "none").
    pub fn parse(text: &str) -> Result<Fixes, String> {
        let mut fixes = Fixes::default();
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match word {
                "lock" => fixes.lock = true,
                "pool" => fixes.pool = true,
                "cpu" => fixes.cpu = true,
                "none" => {}
                other => return Err(format!("unknown fix '{other}' (use lock, pool, cpu)")),
            }
        }
        Ok(fixes)
    }

    pub fn names(&self) -> Vec<&'static str> {
        [(self.lock, "lock"), (self.pool, "pool"), (self.cpu, "cpu")]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, name)| *name)
            .collect()
    }
}

/// Options of the embedded demo target (see `demo::stages`).
#[derive(Debug, Clone)]
pub struct DemoConfig {
    pub port: u16,
    /// CPU burnt inside the global lock by one /api request.
    pub lock_work: Duration,
    pub pool_slots: usize,
    /// How long an /api or /pool request holds its pool slot.
    pub pool_hold: Duration,
    /// CPU burnt by the CPU stage of one /api request.
    pub cpu_work: Duration,
    /// Bytes kept forever by each /leak request.
    pub leak_bytes: usize,
    pub fixes: Fixes,
    /// Print what each endpoint can take and exit.
    pub explain: bool,
    /// Serve /metrics (the pool and lock gauges).
    pub metrics: bool,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            port: 0,
            lock_work: Duration::from_millis(2),
            pool_slots: 7,
            pool_hold: Duration::from_millis(10),
            cpu_work: Duration::from_micros(100),
            leak_bytes: 64 * 1024,
            fixes: Fixes::default(),
            explain: false,
            metrics: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Shard;

    #[test]
    fn status_patterns_parse_and_match() {
        use super::StatusPattern;
        let allowed = StatusPattern::parse_list("404, 5xx").unwrap();
        assert!(allowed.iter().any(|p| p.matches(404)));
        assert!(allowed.iter().any(|p| p.matches(503)));
        assert!(!allowed.iter().any(|p| p.matches(401)));
        for bad in ["40", "6xx", "abc", "1000"] {
            assert!(StatusPattern::parse_list(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shards_parse_and_phase() {
        let s = Shard::parse("3/4").unwrap();
        assert_eq!((s.index, s.count), (3, 4));
        assert_eq!(s.phase(), 0.5);
        for bad in ["0/2", "3/2", "a/b", "2", "1/0"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }
}

//! What the observers saw during a step (`observed` in steps.jsonl and run.json), typed: the
//! sampled series (min/mean/max each), the CPU profile, the off-CPU profile and its wait
//! sites, the target's threads and the host's processes. Observers fill their part; the
//! analysis and the reports read it. Keys this version does not know are kept as they were
//! read (`other`), so a run folder written by a newer knee keeps them through `knee report`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `observed` of one step.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Observed {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samplers: Option<Samplers>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<StepProfile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offcpu: Option<OffCpu>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<Threads>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<Processes>,
    /// A target of several processes (`--pid` more than once, `--process-name`): what each
    /// replica's own observers saw; `profile` and `offcpu` above are then the service's,
    /// merged from them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<Vec<ReplicaObserved>>,
    /// A sharded step merged by `knee merge`: each shard's generator, samples and slices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<Vec<ShardPart>>,
    /// Keys of observers this version does not know, kept as read.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

impl Observed {
    /// Nothing was observed.
    pub fn is_empty(&self) -> bool {
        *self == Observed::default()
    }
}

/// One replica of a target of several processes, and what its own observers saw.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ReplicaObserved {
    /// 1, 2, …: its `replicaN.*` series.
    pub index: usize,
    pub pid: u32,
    /// Its command name.
    pub name: String,
    /// Its share of the service's work over the counted window (0–1): of the replicas' write
    /// calls (about one or a few per answer), else of their CPU when they used enough to
    /// count (ticks are 10 ms), else of their voluntary context switches (a blocking server
    /// blocks a few times per request). How the balancer spread it.
    pub share: Option<f64>,
    pub share_of: Option<ShareOf>,
    /// Its own profile, off-CPU stacks and threads (`observed` of a one-process target).
    pub observed: Box<Observed>,
}

/// What a replica's share of the work was read from.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum ShareOf {
    WriteCalls,
    Cpu,
    ContextSwitches,
}

impl ShareOf {
    pub fn words(self) -> &'static str {
        match self {
            ShareOf::WriteCalls => "write calls",
            ShareOf::Cpu => "CPU",
            ShareOf::ContextSwitches => "voluntary context switches",
        }
    }
}

/// `observed.samplers`: the sampled series over the step's counted window.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Samplers {
    #[serde(default)]
    pub samples: u64,
    #[serde(default)]
    pub target_pid: Option<u32>,
    #[serde(default)]
    pub target_gone_at_s: Option<f64>,
    /// Where each group of series came from ("host" → "/proc on this machine", or a URL).
    #[serde(default)]
    pub sources: BTreeMap<String, String>,
    #[serde(default)]
    pub series: BTreeMap<String, Stat>,
}

/// One shard's part of a merged step (`observed.shards`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ShardPart {
    pub generator: super::figures::GeneratorHealth,
    pub samplers: Option<Samplers>,
    pub slices: Vec<super::figures::Slice>,
}

// Where each observer's part of `observed` is, for a step.

/// One reading: seconds since the run started, and every series.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Sample {
    pub t_s: f64,
    #[serde(flatten)]
    pub values: BTreeMap<String, f64>,
}

/// min / mean / max of one series over a step.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct Stat {
    pub min: f64,
    pub mean: f64,
    pub max: f64,
}

/// What took a CPU profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProfileSource {
    /// A pprof endpoint: knee's agent, Go's net/http/pprof.
    Pprof,
    /// perf record on the target's pid.
    Perf,
    /// py-spy on a Python process.
    PySpy,
    /// Java Flight Recorder's execution samples.
    Jfr,
    /// Node.js's inspector (the V8 CPU profiler).
    #[serde(rename = "node inspector")]
    NodeInspector,
}

impl ProfileSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileSource::Pprof => "pprof",
            ProfileSource::Perf => "perf",
            ProfileSource::PySpy => "py-spy",
            ProfileSource::Jfr => "jfr",
            ProfileSource::NodeInspector => "node inspector",
        }
    }
}

impl std::fmt::Display for ProfileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What recorded an off-CPU profile.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum OffCpuSource {
    /// perf on the scheduler's tracepoint.
    #[default]
    #[serde(rename = "perf sched_switch")]
    PerfSchedSwitch,
    /// Go's block profile (goroutines, not threads).
    #[serde(rename = "go block profile")]
    GoBlockProfile,
    /// py-spy's samples of every thread, idle ones included, with native frames.
    #[serde(rename = "py-spy idle")]
    PySpyIdle,
    /// Java Flight Recorder's wait events (monitors, parks, sockets, files).
    #[serde(rename = "jfr events")]
    JfrEvents,
}

impl OffCpuSource {
    pub fn as_str(self) -> &'static str {
        match self {
            OffCpuSource::PerfSchedSwitch => "perf sched_switch",
            OffCpuSource::GoBlockProfile => "go block profile",
            OffCpuSource::PySpyIdle => "py-spy idle",
            OffCpuSource::JfrEvents => "jfr events",
        }
    }

    /// What waits in it: "threads" or "goroutines".
    pub fn unit(self) -> &'static str {
        match self {
            OffCpuSource::GoBlockProfile => "goroutines",
            _ => "threads",
        }
    }
}

impl std::fmt::Display for OffCpuSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a process group is to the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Target,
    Generator,
    Downstream,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Target => "target",
            Role::Generator => "generator",
            Role::Downstream => "downstream",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the profiler recorded for one hold step (`observed.profile` in steps.jsonl).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StepProfile {
    /// What took it.
    pub source: ProfileSource,
    /// The observer (`knee observe` on the target's host) that took it, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observer: Option<String>,
    /// The rate the samples were taken at (the profile's own period when it has one).
    pub frequency_hz: u32,
    /// The rate knee asked for, when the endpoint did something else (Go's takes 100 Hz).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_asked_hz: Option<u32>,
    pub seconds: f64,
    pub samples: u64,
    /// CPU the target used during the profile, from /proc (None when its pid is unknown).
    pub target_cpu_seconds: Option<f64>,
    /// Samples per CPU-second the target burnt; compare with `frequency_hz`.
    pub samples_per_cpu_second: Option<f64>,
    pub undersampled: bool,
    /// Files in the run folder, relative to it.
    pub svg: Option<String>,
    pub folded: Option<String>,
    pub pprof: Option<String>,
    pub top_self: Vec<FunctionShare>,
    pub top_inclusive: Vec<FunctionShare>,
    /// The service's own functions by the samples under them (each sample counted at its
    /// stack's first own frame from the leaf), when the profiler tells the service's code
    /// from its runtime's and libraries' (py-spy, JFR, Node's inspector).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top_own: Vec<FunctionShare>,
    /// Why there is no profile, when there is none.
    pub error: Option<String>,
}

/// One row of a top-functions table.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FunctionShare {
    pub function: String,
    pub samples: u64,
    /// Of all samples in the profile.
    pub percent: f64,
}

/// What the off-CPU profile of one step saw (`observed.offcpu`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct OffCpu {
    /// What recorded it.
    pub source: OffCpuSource,
    /// The observer (`knee observe` on the target's host) that recorded it, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observer: Option<String>,
    pub seconds: f64,
    /// Threads seen switching (perf).
    pub threads: usize,
    pub switches: u64,
    /// All time recorded off-CPU: waiting + idle + preempted.
    pub total_ms: f64,
    /// The application waiting for something (lock, pool, queue, socket, disk, sleep, other).
    pub waiting_ms: f64,
    /// Event loops and parked runtime or pool threads with nothing to do.
    pub idle_ms: f64,
    /// Runnable threads waiting for a CPU.
    pub preempted_ms: f64,
    /// Requests completed in the recorded window.
    pub requests: u64,
    /// `waiting_ms` per completed request.
    pub ms_per_request: Option<f64>,
    /// Waiting time by kind, ms.
    pub by_kind: BTreeMap<String, f64>,
    /// The wait sites with the most waiting time.
    pub top: Vec<WaitSite>,
    pub folded: Option<String>,
    pub svg: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Why there is no off-CPU profile, when there is none.
    pub error: Option<String>,
}

/// One place the application waits.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct WaitSite {
    /// The application function closest to the wait ("(runtime)" when there is none).
    pub function: String,
    pub kind: WaitKind,
    pub ms: f64,
    /// Of the step's waiting time.
    pub percent: f64,
    pub ms_per_request: Option<f64>,
}

/// What a thread or goroutine waited for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitKind {
    /// A mutex or read-write lock (also Python's GIL).
    Lock,
    /// A condition variable or semaphore: a pool's checkout.
    Pool,
    /// A channel: waiting for another thread's answer or for work handed over.
    Queue,
    /// A socket read, write or connect (a downstream, or a client).
    Socket,
    /// Disk I/O (uninterruptible sleep, `io_schedule`, fsync).
    Disk,
    /// A timer: the code asked to sleep.
    Sleep,
    /// Nothing to do: an event loop or a parked runtime/pool thread.
    Idle,
    /// Runnable but not running: preempted, waiting for a CPU.
    Preempted,
    /// Blocked on something not recognized.
    Other,
    /// Waiting for CPython's global interpreter lock (a lock, but the whole interpreter's).
    Gil,
}

impl WaitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WaitKind::Lock => "lock",
            WaitKind::Pool => "pool",
            WaitKind::Queue => "queue",
            WaitKind::Socket => "socket",
            WaitKind::Disk => "disk",
            WaitKind::Sleep => "sleep",
            WaitKind::Idle => "idle",
            WaitKind::Preempted => "preempted",
            WaitKind::Other => "other",
            WaitKind::Gil => "gil",
        }
    }

    /// Time that is not the application waiting for something.
    pub fn is_waiting(self) -> bool {
        !matches!(self, WaitKind::Idle | WaitKind::Preempted)
    }

    /// In words, for evidence lines: "blocked in a lock acquire".
    pub fn words(self) -> &'static str {
        match self {
            WaitKind::Lock => "blocked in a lock acquire",
            WaitKind::Pool => "waiting on a condition variable or semaphore (a pool checkout)",
            WaitKind::Queue => "waiting on a channel (work handed to another thread)",
            WaitKind::Socket => "blocked on a socket",
            WaitKind::Disk => "waiting for disk I/O",
            WaitKind::Sleep => "sleeping on a timer",
            WaitKind::Idle => "idle",
            WaitKind::Preempted => "runnable, waiting for a CPU",
            WaitKind::Other => "blocked (unrecognized wait)",
            WaitKind::Gil => "waiting for the GIL (CPython's global interpreter lock)",
        }
    }
}
/// One thread's share of the step (`observed.threads.busiest`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ThreadShare {
    pub tid: u32,
    pub name: String,
    pub cores: f64,
}

/// `observed.threads`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Threads {
    /// Threads alive at the end of the window.
    pub count: usize,
    /// All the threads' CPU over the window, in cores.
    pub cores: f64,
    pub busiest: Vec<ThreadShare>,
}

/// One process group's share of the step (`observed.processes.top`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Busy {
    pub name: String,
    /// The group's root (the first process of that name in its tree).
    pub pid: u32,
    pub processes: usize,
    /// Threads of all its processes, and how many were running or runnable (state R) at the
    /// step's end.
    #[serde(default)]
    pub threads: u64,
    #[serde(default)]
    pub running: usize,
    pub cores: f64,
    pub rss_mb: f64,
    /// The target, the generator or a downstream of the target, when it is one of those.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
}

/// A peer the target holds connections to (`observed.processes.downstreams`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Downstream {
    /// "127.0.0.1:5432"
    pub peer: String,
    pub connections: usize,
    /// The local process listening on the peer's port, when the peer is on this host.
    pub pid: Option<u32>,
    pub name: Option<String>,
    /// That process group's CPU over the step.
    pub cores: Option<f64>,
}

/// `observed.processes`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Processes {
    pub top: Vec<Busy>,
    pub downstreams: Vec<Downstream>,
}

impl PartialEq<&str> for ProfileSource {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<&str> for OffCpuSource {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<&str> for Role {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

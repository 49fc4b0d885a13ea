//! The command line (clap derive). `merge` turns it, with a TOML profile, into one validated
//! `plan::Job`; flags given on the command line override the profile.

mod generate;
mod grpc;
mod merge;
mod observe_flags;
mod replay;

pub use generate::{completions, man_page, man_pages_to};

use crate::error::Error;
use crate::plan::{Arrivals, DemoConfig, Fixes, Job, OutDir, ReportFormat};
use crate::profile::check_rate;
use crate::slo::Slo;
use crate::units::parse_duration;
use clap::{Args, Parser, Subcommand};
use merge::{hunt_plan, run_plan};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;
use std::time::SystemTime;

#[derive(Parser, Debug)]
#[command(
    name = "knee",
    version,
    about = "Find where a service breaks, and why."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a profile (load | stress | soak | steps | sweep | hunt), or a quick test from flags.
    Run(Box<RunArgs>),
    /// Find the knee of URL: probe, ramp, bisect, hold steps around it, classify the failure.
    Hunt(Box<HuntArgs>),
    /// Serve the embedded demo target, whose capacity is known by construction.
    Demo(DemoArgs),
    /// Re-render a run folder's report from its run.json (after an upgrade, say).
    Report(ReportArgs),
    /// Compare a run before a fix with a run after it: the knee and the bottleneck moving.
    Compare(CompareArgs),
    /// Merge the run folders of shards (`knee run --shard I/N`) into one run, exactly.
    Merge(MergeArgs),
    /// Run on the target's host: serve its samples (host, target process) to a driver on
    /// another machine (`knee hunt URL --observer http://THIS-HOST:PORT`). Read-only.
    Observe(ObserveArgs),
    /// Print the completion script for a shell, e.g. `knee completions bash > knee.bash`.
    Completions(CompletionsArgs),
    /// Print the man page knee(1), or with --out DIR write one page per subcommand there.
    Man(ManArgs),
    /// Turn an access log (nginx/Apache combined or common, JSON lines) or a HAR file into a
    /// profile: its endpoints, weighted as the traffic was.
    Import(ImportArgs),
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The access log or HAR file.
    pub file: PathBuf,
    /// The target's base URL, e.g. http://staging:8080 (needed for access logs; a HAR file's
    /// own host is used otherwise).
    #[arg(long)]
    pub url: Option<String>,
    /// auto, combined (or common: the same reader), json or har.
    #[arg(long, default_value = "auto", value_parser = parse_import_format)]
    pub format: crate::plan::ImportFormat,
    /// Write the profile to FILE (default: print it).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Import requests that were answered 4xx/5xx too (by default they are counted, not
    /// imported).
    #[arg(long)]
    pub include_errors: bool,
    /// Real paths kept per endpoint, the most frequent first.
    #[arg(long, default_value_t = 5, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub paths: u16,
}

fn parse_import_format(text: &str) -> Result<crate::plan::ImportFormat, String> {
    use crate::plan::ImportFormat;
    match text {
        "auto" => Ok(ImportFormat::Auto),
        "combined" | "common" | "clf" => Ok(ImportFormat::Clf),
        "json" | "jsonl" => Ok(ImportFormat::Json),
        "har" => Ok(ImportFormat::Har),
        other => Err(format!(
            "unknown format '{other}' (use auto, combined, common, json or har)"
        )),
    }
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, powershell or elvish.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// Write knee.1 and knee-<command>.1 into this folder (made if missing) instead of
    /// printing knee.1.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ObserveArgs {
    /// Address to serve on; beyond loopback a --token-file is required.
    #[arg(long, default_value = "127.0.0.1:9477")]
    pub listen: std::net::SocketAddr,
    /// The target's process id; repeated, the target is several processes (replicas of one
    /// service), each sampled and profiled.
    #[arg(long, conflicts_with_all = ["port", "spawn", "process_name"], required_unless_present_any = ["port", "spawn", "process_name"])]
    pub pid: Vec<u32>,
    /// The target is every process of this name on this host (the workers of a pre-fork
    /// master such as gunicorn, not the master): replicas, each sampled and profiled.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["port", "spawn"])]
    pub process_name: Option<String>,
    /// The target is the process listening on this port of this host (with --spawn: the port
    /// the started command listens on).
    #[arg(long)]
    pub port: Option<u16>,
    /// Start the target with this shell command, wait until --port answers, stop it at the end.
    #[arg(long, requires = "port")]
    pub spawn: Option<String>,
    /// A file holding the token every request must carry (Authorization: Bearer TOKEN).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Sampling interval (default 500ms, at least 200ms).
    #[arg(long, value_parser = parse_duration)]
    pub sample_every: Option<Duration>,
    /// CPU profiles asked of this observer come from the target's own pprof endpoint on this
    /// host (http://127.0.0.1:6060/debug/pprof/profile) rather than from perf.
    #[arg(long, value_name = "URL")]
    pub pprof: Option<String>,
    /// Serve over https with this certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl ObserveArgs {
    fn plan(self) -> Result<crate::plan::ServePlan, Error> {
        use crate::plan::ServeTarget;
        let target = match (self.pid, self.process_name, self.port, self.spawn) {
            (pids, _, _, _) if !pids.is_empty() => ServeTarget::Pids(pids),
            (_, Some(name), _, _) => ServeTarget::ProcessName(name),
            (_, None, Some(port), Some(command)) => ServeTarget::Spawn { command, port },
            (_, None, Some(port), None) => ServeTarget::Port(port),
            (_, None, None, _) => {
                return Err(Error::input(
                    "knee observe needs --pid, --process-name, --port or --spawn",
                ))
            }
        };
        let token = match &self.token_file {
            Some(path) => Some(crate::observe::token::read_file(path).map_err(Error::input)?),
            None => None,
        };
        if let Some(url) = &self.pprof {
            if !url.starts_with("http://") && !url.starts_with("https://") {
                return Err(Error::input(format!(
                    "knee observe: --pprof URL '{url}' must start with http:// or https://"
                )));
            }
        }
        Ok(crate::plan::ServePlan {
            listen: self.listen,
            target,
            token,
            pprof: self.pprof,
            tls: self
                .tls_cert
                .zip(self.tls_key)
                .map(|(cert, key)| crate::plan::TlsFiles { cert, key }),
            interval: self
                .sample_every
                .unwrap_or(Duration::from_millis(500))
                .max(crate::observe::sampler::MIN_INTERVAL),
        })
    }
}

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// The shards' run folders.
    #[arg(required = true, num_args = 2..)]
    pub dirs: Vec<PathBuf>,
    /// The merged run folder (default: reports/<utc-time>-merged).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// The run before (a run folder or its run.json).
    pub before: PathBuf,
    /// The run after.
    pub after: PathBuf,
    /// The comparison folder (default: reports/<utc-time>-compare).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Exit 1 when the capacity after is lower than before by more than this (e.g. 5%).
    #[arg(long, value_name = "PERCENT", value_parser = parse_percent)]
    pub fail_if_slower: Option<f64>,
}

/// "5%" or "5" → 5.0.
fn percent_number(text: &str) -> Result<f64, String> {
    text.trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("'{text}' is not a percentage"))
}

fn parse_percent(text: &str) -> Result<f64, String> {
    let percent = percent_number(text)?;
    if !(0.0..100.0).contains(&percent) {
        return Err(format!("'{text}' must be between 0% and 100%"));
    }
    Ok(percent / 100.0)
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The run folder (or its run.json).
    pub run: PathBuf,
    /// md (or html) writes report.md and report.html into the folder; json prints run.json,
    /// validated and normalized.
    #[arg(long, default_value = "md", value_parser = parse_report_format)]
    pub format: ReportFormat,
    /// Also write the run's SLO checks as JUnit XML to FILE.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

fn parse_report_format(text: &str) -> Result<ReportFormat, String> {
    match text {
        "md" | "markdown" => Ok(ReportFormat::Files),
        "json" => Ok(ReportFormat::Json),
        "html" => Ok(ReportFormat::Files),
        other => Err(format!(
            "unknown report format '{other}' (use md, html or json)"
        )),
    }
}

/// How to reach the target and what to send (shared by run and hunt).
#[derive(Args, Debug, Default, Clone)]
pub struct TargetArgs {
    /// HTTP method.
    #[arg(long, short = 'X')]
    pub method: Option<String>,
    /// Extra header "Name: value" (repeatable; ${ENV} is expanded).
    #[arg(long = "header", short = 'H')]
    pub headers: Vec<String>,
    /// Request body.
    #[arg(long)]
    pub body: Option<String>,
    /// Per-request timeout (default 10s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Connect timeout (default 3s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub connect_timeout: Option<Duration>,
    /// Speak HTTP/2 (h2 over TLS via ALPN, h2c prior knowledge over plain TCP).
    #[arg(long)]
    pub http2: bool,
    /// With --http2: HTTP/2 streams in flight per connection (default 1). Up to N requests
    /// share one connection, as gRPC clients and browsers load a service; the server's
    /// SETTINGS_MAX_CONCURRENT_STREAMS is honoured.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub h2_streams: Option<u32>,
    /// Call a gRPC unary method (package.Service/Method) instead of sending an HTTP request:
    /// --body is the request message as JSON (default {}), encoded from --proto or from the
    /// server's reflection; -H adds metadata. Implies --http2.
    #[arg(long, value_name = "METHOD")]
    pub grpc: Option<String>,
    /// With --grpc: the .proto file defining the service (its imports looked up beside it);
    /// without it, the server's reflection service is asked.
    #[arg(long, value_name = "FILE")]
    pub proto: Option<PathBuf>,
    /// Accept any TLS certificate (self-signed staging boxes).
    #[arg(long, short = 'k')]
    pub insecure: bool,
    /// Most connections the open model may open (default 512).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=20_000))]
    pub max_connections: Option<u32>,
    /// Error statuses the target is expected to answer (e.g. 404,5xx): the check before
    /// the load lets them through.
    #[arg(long, value_name = "CODES", value_delimiter = ',', value_parser = parse_status)]
    pub allow_status: Vec<crate::plan::StatusPattern>,
    /// Do not send each request once before the load to check the target.
    #[arg(long)]
    pub no_check: bool,
}

/// Where results go and what counts as holding (shared by run and hunt).
#[derive(Args, Debug, Default, Clone)]
pub struct CommonArgs {
    /// SLO, e.g. p99=50ms,errors=1%,min_rps=100.
    #[arg(long, value_name = "TERMS", value_parser = Slo::parse_list)]
    pub slo: Option<Slo>,
    /// Name of the run (used in the run folder's name).
    #[arg(long)]
    pub name: Option<String>,
    /// Run folder (default: reports/<utc-timestamp>-<name>/).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Also write the SLO checks as JUnit XML to FILE, one test case per step and objective
    /// (for CI). With GITHUB_STEP_SUMMARY set, report.md is appended to that file too.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Start the embedded demo target and aim at it (the URL's path is kept).
    #[arg(long)]
    pub demo: bool,
    /// With --demo: bottlenecks to remove (lock, pool, cpu; comma-separated).
    #[arg(long, value_name = "FIXES", value_parser = Fixes::parse)]
    pub demo_fix: Option<Fixes>,
    /// With --demo: the demo serves no /metrics, so its gauges name nothing.
    #[arg(long)]
    pub demo_no_metrics: bool,
    /// Arrival process of the open model: uniform or poisson.
    #[arg(long, value_parser = parse_arrivals)]
    pub arrivals: Option<Arrivals>,
    /// No progress bar.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// The target's process id (sampled: CPU, memory, threads, fds, context switches). Given
    /// more than once, each is a replica of one service: sampled and profiled each, judged
    /// together
    #[arg(long, value_name = "PID")]
    pub pid: Vec<u32>,
    /// Every process of this name is a replica of the target (its comm, executable or
    /// argv[0]; a pre-fork master's workers, not the master)
    #[arg(long, value_name = "NAME")]
    pub process_name: Option<String>,
    /// Start the target with this shell command, wait until the URL answers, stop it at the end.
    #[arg(long, value_name = "COMMAND")]
    pub spawn: Option<String>,
    /// The target runs on another host, even if its URL resolves here (a proxy or tunnel):
    /// discover nothing locally; this host is sampled as the generator's only
    /// (generator_host.*). Its host and process figures come from --metrics (node_exporter,
    /// process_*).
    #[arg(long, conflicts_with_all = ["pid", "process_name", "spawn", "demo"])]
    pub remote_target: bool,
    /// A `knee observe` on the target's host, [NAME=]http://host:port (repeatable: the app's
    /// host, the database's). Its host and target series replace local discovery (implies
    /// --remote-target); figures read through it are labelled NAME.
    #[arg(long = "observer", value_name = "[NAME=]URL", conflicts_with_all = ["pid", "process_name", "spawn", "demo", "no_sample"])]
    pub observers: Vec<String>,
    /// The observers' token, from a file (default: $KNEE_OBSERVER_TOKEN).
    #[arg(long, value_name = "FILE")]
    pub observer_token_file: Option<PathBuf>,
    /// A Prometheus /metrics URL to scrape each sample (repeatable).
    #[arg(long = "metrics")]
    pub metrics: Vec<String>,
    /// Metric names to keep from --metrics (repeatable; default: all, up to 100 series).
    #[arg(long = "metric")]
    pub metric_names: Vec<String>,
    /// A header "Name: value" sent with every --metrics scrape (repeatable; ${ENV} is
    /// expanded; the value is never printed or written). -k also covers https scrapes.
    #[arg(long = "metrics-header", value_name = "\"NAME: VALUE\"")]
    pub metrics_headers: Vec<String>,
    /// Sampling interval (default 500ms, at least 200ms).
    #[arg(long, value_parser = parse_duration)]
    pub sample_every: Option<Duration>,
    /// Do not sample the host, the target or the generator.
    #[arg(long)]
    pub no_sample: bool,
    /// Profile the hold steps from this pprof endpoint (knee's agent, Go's net/http/pprof):
    /// http://host:port/debug/pprof/profile.
    #[arg(long, value_name = "URL")]
    pub pprof: Option<String>,
    /// Where flamegraphs come from: auto (by the target's runtime: py-spy for Python, JFR for
    /// a JVM, the inspector for Node.js, perf for native code), pprof (the --pprof URL, or the
    /// demo's agent), perf, py-spy, jfr, node, or none. Default: pprof with a URL or the demo,
    /// else auto.
    #[arg(long, value_parser = ["auto", "pprof", "perf", "py-spy", "jfr", "node", "none"])]
    pub profiler: Option<String>,
    /// Sampling frequency asked of the profiler, in Hz (default 100).
    #[arg(long, value_name = "HZ")]
    pub profile_frequency: Option<u32>,
    /// Off-CPU profiles of the profiled steps, where the target's threads wait (perf
    /// sched_switch on a local target; Go's block and mutex profiles with a Go --pprof URL).
    /// Default: on.
    #[arg(long, value_parser = ["on", "off"])]
    pub offcpu: Option<String>,
}

#[derive(Args, Debug, Default)]
pub struct RunArgs {
    /// A TOML profile; flags below override what it says.
    pub profile: Option<PathBuf>,
    /// Target URL (overrides the profile's [target] url).
    #[arg(long)]
    pub url: Option<String>,
    /// Open model: one constant rate, requests per second.
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Open model: several rate steps, e.g. 100,200,400.
    #[arg(long, value_delimiter = ',', value_parser = parse_rate)]
    pub steps: Vec<f64>,
    /// Closed model: concurrent connections, each sending its next request when the last ends
    /// (a list makes steps: 10,20,40).
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u32).range(1..=20_000))]
    pub concurrency: Vec<u32>,
    /// Length of the (single) step, e.g. 10s.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Length of each step, e.g. 5s.
    #[arg(long, value_parser = parse_duration)]
    pub step_duration: Option<Duration>,
    /// Warm-up at the start of each step: measured, not counted (default: a fifth, ≤ 1s).
    #[arg(long, value_parser = parse_duration)]
    pub warmup: Option<Duration>,
    /// Be shard I of N generators: offer 1/N of every rate, phase-shifted so the shards'
    /// schedules interleave into the whole one. Merge the folders with `knee merge`.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Be one of N shards, the index taken from JOB_COMPLETION_INDEX (Kubernetes Indexed Job).
    #[arg(long, value_name = "N")]
    pub shards: Option<u32>,
    /// Start the first step at this instant (RFC 3339, UTC), so shards start together.
    #[arg(long, value_name = "TIME")]
    pub start_at: Option<String>,
    /// Send an access log's (or JSON log's) requests at their recorded times, in one step;
    /// needs --url. --speed or --rate scales the times.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["profile", "steps", "concurrency", "duration", "step_duration", "shard", "shards"])]
    pub replay: Option<PathBuf>,
    /// With --replay: how much faster than recorded (2 or 2x: twice as fast; 0.5: half).
    #[arg(long, value_name = "X", requires = "replay", conflicts_with = "rate", value_parser = parse_speed)]
    pub speed: Option<f64>,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// "2", "2x", "0.5x": a replay's speed, above 0 and at most 1000.
fn parse_speed(text: &str) -> Result<f64, String> {
    let number = text.trim().trim_end_matches(['x', 'X']);
    match number.parse::<f64>() {
        Ok(speed) if speed > 0.0 && speed <= 1000.0 => Ok(speed),
        _ => Err(format!(
            "'{text}' is not a speed: give a number above 0 and at most 1000, e.g. 2 or 2x"
        )),
    }
}

#[derive(Args, Debug, Default)]
pub struct HuntArgs {
    /// Target URL (with --demo, defaults to the demo's /api).
    pub url: Option<String>,
    /// A profile for the target, request mix, SLO and [hunt] settings; flags override it.
    #[arg(long)]
    pub profile: Option<PathBuf>,
    /// Never offer more than this many requests/s.
    #[arg(long, value_parser = parse_rate)]
    pub max_rate: Option<f64>,
    /// Stop bisecting when held and failed rates are this close (default 5%).
    #[arg(long, value_parser = crate::profile::parse_resolution)]
    pub resolution: Option<f64>,
    /// Length of each search step (default 2s, a fifth of it warm-up).
    #[arg(long, value_parser = parse_duration)]
    pub step_duration: Option<Duration>,
    /// Length of each hold step (default 4s).
    #[arg(long, value_parser = parse_duration)]
    pub hold_duration: Option<Duration>,
    /// Hold steps, in percent of capacity (default 50,80,95,105,120).
    #[arg(long, value_delimiter = ',', value_parser = parse_hold)]
    pub holds: Vec<f64>,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// CPU burnt inside the global lock by one /api request.
    #[arg(long, default_value = "2ms", value_parser = parse_duration)]
    pub lock_work: Duration,
    /// Slots of the "database" pool.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub pool_slots: u32,
    /// How long a request holds its pool slot.
    #[arg(long, default_value = "10ms", value_parser = parse_duration)]
    pub pool_hold: Duration,
    /// CPU burnt by the CPU stage of one /api request.
    #[arg(long, default_value = "100us", value_parser = parse_duration)]
    pub cpu_work: Duration,
    /// Bytes kept forever by each /leak request.
    #[arg(long, default_value_t = 65_536)]
    pub leak: usize,
    /// Bottlenecks to remove: lock (shard it), pool (8x bigger), cpu (memoize); comma-separated.
    #[arg(long, value_parser = Fixes::parse)]
    pub fix: Option<Fixes>,
    /// Print each stage's capacity and exit.
    #[arg(long)]
    pub explain: bool,
    /// Serve no /metrics (404): the pool and lock gauges name nothing, so only stacks can.
    #[arg(long)]
    pub no_metrics: bool,
}

impl DemoArgs {
    fn config(&self) -> DemoConfig {
        DemoConfig {
            port: self.port,
            lock_work: self.lock_work,
            pool_slots: self.pool_slots as usize,
            pool_hold: self.pool_hold,
            cpu_work: self.cpu_work,
            leak_bytes: self.leak,
            fixes: self.fix.unwrap_or_default(),
            explain: self.explain,
            metrics: !self.no_metrics,
        }
    }
}

fn parse_status(text: &str) -> Result<crate::plan::StatusPattern, String> {
    crate::plan::StatusPattern::parse_list(text)?
        .pop()
        .ok_or_else(|| format!("'{text}' is not a status"))
}

fn parse_hold(text: &str) -> Result<f64, String> {
    crate::profile::parse_hold_percent(percent_number(text)?)
}

fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a number"))?;
    check_rate(rate)
}

fn parse_arrivals(text: &str) -> Result<Arrivals, String> {
    match text {
        "uniform" => Ok(Arrivals::Uniform),
        "poisson" => Ok(Arrivals::Poisson),
        other => Err(format!(
            "unknown arrivals '{other}' (use uniform or poisson)"
        )),
    }
}

/// Parses the command line into a validated job. `--help` and `--version` come back as
/// `Ok(None)` after printing.
pub fn parse_job<I, T>(args: I) -> Result<Option<Job>, Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => {
            // `knee run --help | head` closes the pipe early: not an error, and no panic.
            use std::io::Write;
            let _ = write!(std::io::stdout(), "{err}");
            return Ok(None);
        }
        Err(err) => return Err(Error::input(usage_error(&err.to_string()))),
    };
    let command: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    Ok(Some(match cli.command {
        // `--replay`: the log's requests at their recorded times, not a profile's mix.
        Command::Run(run) if run.replay.is_some() => {
            Job::Run(Box::new(replay::plan(*run, command)?))
        }
        Command::Run(run) => Job::Run(Box::new(run_plan(*run, command)?)),
        Command::Hunt(hunt) => Job::Run(Box::new(hunt_plan(*hunt, command)?)),
        Command::Demo(demo) => Job::Demo(demo.config()),
        Command::Report(report) => Job::Report {
            run: report.run,
            format: report.format,
            junit: report.junit,
        },
        Command::Merge(merge) => Job::Merge {
            out: OutDir::from_flag(merge.out).folder("merged", SystemTime::now()),
            dirs: merge.dirs,
        },
        Command::Compare(compare) => Job::Compare {
            out: OutDir::from_flag(compare.out).folder("compare", SystemTime::now()),
            before: compare.before,
            after: compare.after,
            fail_if_slower: compare.fail_if_slower,
            step_summary: crate::plan::CiOutputs::new(None).step_summary,
        },
        Command::Observe(observe) => Job::Observe(observe.plan()?),
        Command::Completions(args) => Job::Completions(args.shell),
        Command::Man(args) => Job::Man { out: args.out },
        Command::Import(args) => {
            if let Some(url) = &args.url {
                if !url.starts_with("http://") && !url.starts_with("https://") {
                    return Err(Error::input(format!(
                        "knee import: --url '{url}' must start with http:// or https:// (e.g. http://staging:8080)"
                    )));
                }
            }
            Job::Import(crate::plan::ImportPlan {
                file: args.file,
                url: args.url,
                format: args.format,
                out: args.out,
                include_errors: args.include_errors,
                paths_per_endpoint: usize::from(args.paths),
            })
        }
    }))
}

/// clap's several-line usage error as one line: the problem, the value, clap's tip or the
/// values it takes, and the usage of the command it was for ("the following required
/// arguments were not provided: <RUN> (usage: knee report [OPTIONS] <RUN>; see --help)").
fn usage_error(text: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut usage = None;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("Usage:") {
            usage.get_or_insert_with(|| rest.trim().to_string());
        } else if line.starts_with("For more information") {
            continue;
        } else {
            parts.push(line.trim_start_matches("error: ").to_string());
        }
    }
    let mut message = String::new();
    for part in parts {
        if !message.is_empty() {
            message.push_str(if message.ends_with(':') { " " } else { "; " });
        }
        message.push_str(&part);
    }
    match usage {
        Some(usage) => format!("{message} (usage: {usage}; see --help)"),
        None => format!("{message} (see knee --help)"),
    }
}

//! The command line (clap derive), and its merge with a TOML profile into one validated
//! `plan::Job`. Flags given on the command line override the profile.

use crate::error::Error;
use crate::plan::{
    build_steps, Arrivals, DemoConfig, HttpVersion, Job, Kind, Load, OutDir, RequestPlan, RunPlan,
    TargetPlan,
};
use crate::profile::{self, check_rate, ProfileSpec, RequestSpec};
use crate::slo::Slo;
use crate::units::parse_duration;
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use http::{HeaderName, HeaderValue, Method, Uri};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

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
    /// Run a profile (load | stress | soak | steps), or a quick test from flags.
    Run(Box<RunArgs>),
    /// Serve the embedded demo target, whose capacity is known by construction.
    Demo(DemoArgs),
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
    /// Arrival process of the open model: uniform or poisson.
    #[arg(long, value_parser = parse_arrivals)]
    pub arrivals: Option<Arrivals>,
    /// HTTP method.
    #[arg(long, short = 'X')]
    pub method: Option<String>,
    /// Extra header "Name: value" (repeatable).
    #[arg(long = "header", short = 'H')]
    pub headers: Vec<String>,
    /// Request body.
    #[arg(long)]
    pub body: Option<String>,
    /// Per-request timeout (default 10s).
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Connect timeout (default 3s).
    #[arg(long, value_parser = parse_duration)]
    pub connect_timeout: Option<Duration>,
    /// Speak HTTP/2 (h2 over TLS via ALPN, h2c prior knowledge over plain TCP).
    #[arg(long)]
    pub http2: bool,
    /// Accept any TLS certificate (self-signed staging boxes).
    #[arg(long, short = 'k')]
    pub insecure: bool,
    /// Most connections the open model may open (default 512).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    pub max_connections: Option<u32>,
    /// SLO, e.g. p99=50ms,errors=1%,min_rps=100.
    #[arg(long, value_parser = Slo::parse_list)]
    pub slo: Option<Slo>,
    /// Name of the run (used in the run folder's name).
    #[arg(long)]
    pub name: Option<String>,
    /// Run folder (default: reports/<utc-timestamp>-<name>/).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Start the embedded demo target and aim at it (the profile's URL path is kept).
    #[arg(long)]
    pub demo: bool,
    /// No progress bar.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Slots of /pool (each request holds one for --hold).
    #[arg(long, default_value_t = 8)]
    pub slots: usize,
    /// How long a /pool request holds its slot.
    #[arg(long, default_value = "20ms", value_parser = parse_duration)]
    pub hold: Duration,
    /// CPU burnt by one /cpu request.
    #[arg(long, default_value = "2ms", value_parser = parse_duration)]
    pub cpu_work: Duration,
    /// Print each endpoint's capacity and exit.
    #[arg(long)]
    pub explain: bool,
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
            print!("{err}");
            return Ok(None);
        }
        Err(err) => {
            // clap's message is several lines; keep its first, which names the problem.
            let text = err.to_string();
            let first = text.lines().next().unwrap_or("bad usage");
            let first = first.trim_start_matches("error: ");
            return Err(Error::input(format!("{first} (see knee --help)")));
        }
    };
    let command: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    Ok(Some(match cli.command {
        Command::Run(run) => Job::Run(Box::new(run_plan(*run, command)?)),
        Command::Demo(demo) => Job::Demo(DemoConfig {
            port: demo.port,
            slots: demo.slots.max(1),
            hold: demo.hold,
            cpu_work: demo.cpu_work,
            explain: demo.explain,
        }),
    }))
}

/// Merges flags over the profile (if any) into one `RunPlan`.
pub fn run_plan(args: RunArgs, command: Vec<String>) -> Result<RunPlan, Error> {
    let profile: Option<ProfileSpec> = args.profile.as_deref().map(profile::load).transpose()?;
    let flag_loads = flag_loads(&args)?;
    let (kind, loads, duration) = match (&profile, flag_loads) {
        (_, Some((kind, loads))) => {
            let duration = args
                .duration
                .or(args.step_duration)
                .or(profile.as_ref().map(|p| p.duration))
                .ok_or_else(|| Error::input("--duration (or --step-duration) is required"))?;
            let kind = profile.as_ref().map_or(kind, |p| p.kind);
            (kind, loads, duration)
        }
        (Some(p), None) => (
            p.kind,
            p.loads.clone(),
            args.duration.or(args.step_duration).unwrap_or(p.duration),
        ),
        (None, None) => return Err(Error::input(
            "nothing to run: give a PROFILE.toml, or --url with --rate, --steps or --concurrency",
        )),
    };
    if duration.is_zero() {
        return Err(Error::input("--duration must be above 0"));
    }
    let url = args
        .url
        .clone()
        .or_else(|| profile.as_ref().map(|p| p.url.clone()))
        .or_else(|| args.demo.then(|| "http://127.0.0.1/pool".to_string()))
        .ok_or_else(|| {
            Error::input("no target: give --url URL (or a profile with [target] url)")
        })?;
    let base = parse_target_url(&url)?;
    let http = match (args.http2, profile.as_ref().and_then(|p| p.http)) {
        (true, _) => HttpVersion::Http2,
        (false, Some(v)) => v,
        (false, None) => HttpVersion::Http1,
    };
    let target = TargetPlan {
        base,
        http,
        insecure: args.insecure || profile.as_ref().is_some_and(|p| p.insecure),
        connect_timeout: args
            .connect_timeout
            .or(profile.as_ref().and_then(|p| p.connect_timeout))
            .unwrap_or(Duration::from_secs(3)),
        request_timeout: args
            .timeout
            .or(profile.as_ref().and_then(|p| p.timeout))
            .unwrap_or(Duration::from_secs(10)),
        max_connections: args
            .max_connections
            .map(|m| m as usize)
            .or(profile.as_ref().and_then(|p| p.max_connections))
            .unwrap_or(512),
    };
    let requests = request_plans(&args, profile.as_ref())?;
    let warmup = args.warmup.or(profile.as_ref().and_then(|p| p.warmup));
    let window = profile.as_ref().and_then(|p| p.window);
    let steps = build_steps(kind, &loads, warmup, duration, window);
    let slo = args
        .slo
        .clone()
        .or_else(|| profile.as_ref().map(|p| p.slo.clone()))
        .unwrap_or_default();
    // Without an SLO a step still has to answer: at most 1 % errors.
    let slo_is_default = slo.is_empty();
    let slo = if slo_is_default {
        Slo::default_for_run()
    } else {
        slo
    };
    let name = args
        .name
        .clone()
        .or_else(|| profile.as_ref().and_then(|p| p.name.clone()))
        .or_else(|| {
            args.profile
                .as_ref()
                .and_then(|p| p.file_stem())
                .map(|s| s.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| kind.as_str().to_string());
    let out = match &args.out {
        Some(dir) => OutDir::Exact(dir.clone()),
        None => OutDir::Reports(PathBuf::from("reports")),
    };
    Ok(RunPlan {
        name: sanitize_name(&name),
        kind,
        target,
        requests,
        steps,
        slo,
        slo_is_default,
        out,
        demo: args.demo.then(DemoConfig::default),
        command,
        progress: !args.quiet,
    })
}

/// The loads given by flags, if any, with the kind they imply.
fn flag_loads(args: &RunArgs) -> Result<Option<(Kind, Vec<Load>)>, Error> {
    let arrivals = args.arrivals.unwrap_or(Arrivals::Uniform);
    let given = [
        args.rate.is_some(),
        !args.steps.is_empty(),
        !args.concurrency.is_empty(),
    ];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(Error::input("give one of --rate, --steps or --concurrency"));
    }
    Ok(if let Some(rps) = args.rate {
        Some((Kind::Load, vec![Load::Rate { rps, arrivals }]))
    } else if !args.steps.is_empty() {
        let loads = args
            .steps
            .iter()
            .map(|&rps| Load::Rate { rps, arrivals })
            .collect();
        Some((Kind::Steps, loads))
    } else if !args.concurrency.is_empty() {
        let kind = if args.concurrency.len() == 1 {
            Kind::Load
        } else {
            Kind::Steps
        };
        Some((
            kind,
            args.concurrency
                .iter()
                .map(|&c| Load::Concurrency(c))
                .collect(),
        ))
    } else {
        None
    })
}

fn parse_target_url(url: &str) -> Result<Uri, Error> {
    let uri: Uri = url
        .parse()
        .map_err(|e| Error::input(format!("target URL '{url}' is not a valid URL: {e}")))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => {
            return Err(Error::input(format!(
                "target URL '{url}' must start with http:// or https://"
            )))
        }
    }
    if uri.host().is_none() {
        return Err(Error::input(format!("target URL '{url}' has no host")));
    }
    Ok(uri)
}

fn request_plans(args: &RunArgs, profile: Option<&ProfileSpec>) -> Result<Vec<RequestPlan>, Error> {
    let mut specs: Vec<RequestSpec> = match profile {
        Some(p) => p.requests.clone(),
        None => vec![RequestSpec {
            name: "default".to_string(),
            method: "GET".to_string(),
            path: String::new(),
            headers: Vec::new(),
            body: Vec::new(),
            weight: 1,
        }],
    };
    for spec in &mut specs {
        if let Some(method) = &args.method {
            spec.method = method.clone();
        }
        if let Some(body) = &args.body {
            spec.body = body.as_bytes().to_vec();
        }
        for header in &args.headers {
            let (name, value) = header
                .split_once(':')
                .ok_or_else(|| Error::input(format!("header '{header}' is not 'Name: value'")))?;
            let value = profile::expand_env(value.trim()).map_err(Error::input)?;
            spec.headers
                .retain(|(n, _)| !n.eq_ignore_ascii_case(name.trim()));
            spec.headers.push((name.trim().to_string(), value));
        }
    }
    specs.iter().map(request_plan).collect()
}

fn request_plan(spec: &RequestSpec) -> Result<RequestPlan, Error> {
    let method = Method::from_bytes(spec.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| Error::input(format!("'{}' is not an HTTP method", spec.method)))?;
    let headers = spec
        .headers
        .iter()
        .map(|(name, value)| {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| Error::input(format!("'{name}' is not a valid header name")))?;
            let value = HeaderValue::from_str(value).map_err(|_| {
                Error::input(format!(
                    "header {name} has a value that is not valid in HTTP"
                ))
            })?;
            Ok((name, value))
        })
        .collect::<Result<_, Error>>()?;
    if !spec.path.is_empty() && !spec.path.starts_with('/') && !spec.path.starts_with('?') {
        return Err(Error::input(format!(
            "request '{}': path '{}' must start with / or ?",
            spec.name, spec.path
        )));
    }
    Ok(RequestPlan {
        name: spec.name.clone(),
        method,
        path: spec.path.clone(),
        headers,
        body: Bytes::from(spec.body.clone()),
        weight: spec.weight,
    })
}

/// Keeps run-folder names to [A-Za-z0-9._-].
fn sanitize_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if clean.is_empty() {
        "run".to_string()
    } else {
        clean
    }
}

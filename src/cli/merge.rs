//! Merges the command line over a TOML profile into one validated `RunPlan`: run and hunt
//! share the target, the request mix, the SLO, the output and what to observe (`Base`).

use super::{CommonArgs, HuntArgs, RunArgs, TargetArgs};
use crate::error::Error;
use crate::plan::Shard;
use crate::plan::{
    build_steps, Arrivals, CiOutputs, DemoConfig, HttpVersion, HuntSettings, Kind, Load, Mode,
    ObservePlan, OutDir, RequestPlan, RunPlan, TargetPlan,
};
use crate::profile::{self, ProfileSpec, RequestSpec};
use crate::slo::Slo;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Uri};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Merges `knee run` flags over the profile (if any) into one `RunPlan`.
pub fn run_plan(args: RunArgs, command: Vec<String>) -> Result<RunPlan, Error> {
    let profile: Option<ProfileSpec> = args.profile.as_deref().map(profile::load).transpose()?;
    let flag_loads = flag_loads(&args)?;
    // A hunt profile hunts, unless the flags name the loads to run (its mix at fixed rates).
    if flag_loads.is_none() && profile.as_ref().is_some_and(|p| p.kind == Kind::Hunt) {
        if args.shard.is_some() || args.shards.is_some() {
            return Err(Error::input(
                "--shard splits fixed-step runs: a hunt adapts its rates to what it sees and cannot be split",
            ));
        }
        let hunt = HuntArgs {
            url: args.url,
            profile: None,
            target: args.target,
            common: args.common,
            step_duration: args.step_duration.or(args.duration),
            ..HuntArgs::default()
        };
        return build_hunt(hunt, profile, args.profile.as_deref(), command);
    }
    let (kind, loads, duration) = match (&profile, flag_loads) {
        (_, Some((kind, loads))) => {
            let duration = args
                .duration
                .or(args.step_duration)
                .or(profile.as_ref().map(|p| p.duration))
                .ok_or_else(|| Error::input(
                    "how long to run is missing: give --duration (e.g. --duration 30s; with --steps, --step-duration)",
                ))?;
            let kind = profile
                .as_ref()
                .map(|p| p.kind)
                .filter(|k| *k != Kind::Hunt)
                .unwrap_or(kind);
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
        return Err(Error::input(format!(
            "--duration {} must be above 0 (e.g. --duration 30s)",
            humantime::format_duration(duration)
        )));
    }
    let warmup = args.warmup.or(profile.as_ref().and_then(|p| p.warmup));
    let window = profile.as_ref().and_then(|p| p.window);
    let steps = build_steps(kind, &loads, warmup, duration, window);
    let shard = shard_of(&args)?;
    let start_at = start_at_of(&args)?;
    let base = Base::new(
        args.url,
        &args.target,
        &args.common,
        profile.as_ref(),
        args.profile.as_deref(),
        kind,
        "/pool",
    )?;
    let mut steps = steps;
    if let Some(shard) = shard {
        // Each shard offers its share; step names keep the whole rate, so shards' steps match.
        for step in &mut steps {
            match &mut step.load {
                Load::Rate { rps, .. } => *rps /= f64::from(shard.count),
                Load::Concurrency(_) => {
                    return Err(Error::input(
                        "--shard needs an open-model run (rates): a closed model cannot be split",
                    ))
                }
            }
        }
    }
    let mut plan = base.into_plan(kind, Mode::Steps(steps), command)?;
    plan.shard = shard;
    plan.start_at = start_at;
    Ok(plan)
}

/// `--shard I/N`, or `--shards N` (or `KNEE_SHARDS`) with the index from Kubernetes' Indexed
/// Job (`JOB_COMPLETION_INDEX`, 0-based).
fn shard_of(args: &RunArgs) -> Result<Option<Shard>, Error> {
    if let Some(text) = &args.shard {
        return Shard::parse(text).map(Some).map_err(Error::input);
    }
    let count = match args.shards {
        Some(n) => n,
        None => match std::env::var("KNEE_SHARDS") {
            Ok(n) => n
                .trim()
                .parse()
                .map_err(|_| Error::input(format!("KNEE_SHARDS='{n}' is not a number")))?,
            Err(_) => return Ok(None),
        },
    };
    let index: u32 = std::env::var("JOB_COMPLETION_INDEX")
        .map_err(|_| Error::input("--shards needs JOB_COMPLETION_INDEX (or use --shard I/N)"))?
        .trim()
        .parse()
        .map_err(|_| {
            Error::input(format!(
                "JOB_COMPLETION_INDEX '{}' is not a number (Kubernetes sets it in an Indexed Job; elsewhere use --shard I/N)",
                std::env::var("JOB_COMPLETION_INDEX").unwrap_or_default()
            ))
        })?;
    Shard::parse(&format!("{}/{count}", index + 1))
        .map(Some)
        .map_err(Error::input)
}

/// `--start-at RFC3339` or `KNEE_START_AT`; at most an hour ahead.
fn start_at_of(args: &RunArgs) -> Result<Option<std::time::SystemTime>, Error> {
    let Some(text) = args
        .start_at
        .clone()
        .or_else(|| std::env::var("KNEE_START_AT").ok())
    else {
        return Ok(None);
    };
    let at = humantime::parse_rfc3339_weak(text.trim()).map_err(|e| {
        Error::input(format!(
            "--start-at '{text}' is not an RFC 3339 time (e.g. 2026-11-26T20:00:00Z): {e}"
        ))
    })?;
    if at > std::time::SystemTime::now() + Duration::from_secs(3600) {
        return Err(Error::input(format!(
            "--start-at '{text}' is more than an hour away"
        )));
    }
    Ok(Some(at))
}

/// `knee hunt URL` (or a profile with kind = "hunt").
pub fn hunt_plan(args: HuntArgs, command: Vec<String>) -> Result<RunPlan, Error> {
    let profile: Option<ProfileSpec> = args.profile.as_deref().map(profile::load).transpose()?;
    let path = args.profile.clone();
    build_hunt(args, profile, path.as_deref(), command)
}

fn build_hunt(
    args: HuntArgs,
    profile: Option<ProfileSpec>,
    profile_path: Option<&Path>,
    command: Vec<String>,
) -> Result<RunPlan, Error> {
    let spec = profile.as_ref().map(|p| p.hunt.clone()).unwrap_or_default();
    let step_duration = args
        .step_duration
        .or(spec.step_duration)
        .or(profile
            .as_ref()
            .filter(|p| p.kind == Kind::Hunt)
            .map(|p| p.duration))
        .unwrap_or(Duration::from_secs(2));
    let hold_duration = args
        .hold_duration
        .or(spec.hold_duration)
        .unwrap_or(Duration::from_secs(4));
    if step_duration.is_zero() || hold_duration.is_zero() {
        return Err(Error::input(format!(
            "--step-duration {} and --hold-duration {} must both be above 0 (defaults: 2s and 4s)",
            humantime::format_duration(step_duration),
            humantime::format_duration(hold_duration)
        )));
    }
    let mut settings = HuntSettings::new(step_duration, hold_duration);
    settings.max_rate = args.max_rate.or(spec.max_rate);
    settings.resolution = args
        .resolution
        .or(spec.resolution)
        .unwrap_or(settings.resolution);
    if !args.holds.is_empty() {
        settings.holds = args.holds.clone();
    } else if let Some(holds) = spec.holds {
        settings.holds = holds;
    }
    if let Some(probe) = spec.probe {
        settings.probe = probe;
    }
    settings.arrivals = args
        .common
        .arrivals
        .or(spec.arrivals)
        .unwrap_or(Arrivals::Uniform);
    if let Some(warmup) = profile.as_ref().and_then(|p| p.warmup) {
        settings.step_warmup = warmup;
    }
    let base = Base::new(
        args.url,
        &args.target,
        &args.common,
        profile.as_ref(),
        profile_path,
        Kind::Hunt,
        "/api",
    )?;
    base.into_plan(Kind::Hunt, Mode::Hunt(settings), command)
}

/// `--junit FILE`, refused before the run when its folder does not exist (the run would
/// otherwise learn it only at the end).
fn junit_path(path: Option<&Path>) -> Result<Option<PathBuf>, Error> {
    let Some(path) = path else { return Ok(None) };
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !folder.is_dir() {
        return Err(Error::input(format!(
            "--junit {}: the folder {} does not exist (create it, or name a file in an existing one)",
            path.display(),
            folder.display()
        )));
    }
    Ok(Some(path.to_path_buf()))
}

/// The parts of a plan that run and hunt share: target, requests, SLO, output.
pub(super) struct Base {
    name: String,
    target: TargetPlan,
    requests: Vec<RequestPlan>,
    flows: Option<std::sync::Arc<crate::plan::flow::Flows>>,
    slo: Slo,
    slo_is_default: bool,
    out: OutDir,
    demo: Option<DemoConfig>,
    progress: bool,
    observe: ObservePlan,
    ci: CiOutputs,
}

impl Base {
    pub(super) fn new(
        url: Option<String>,
        args: &TargetArgs,
        common: &CommonArgs,
        profile: Option<&ProfileSpec>,
        profile_path: Option<&Path>,
        kind: Kind,
        demo_path: &str,
    ) -> Result<Base, Error> {
        if common.demo_fix.is_some() && !common.demo {
            return Err(Error::input(
                "--demo-fix removes the demo's bottlenecks, so it needs --demo: add --demo, or drop --demo-fix",
            ));
        }
        let url = url
            .or_else(|| profile.map(|p| p.url.clone()))
            .or_else(|| common.demo.then(|| format!("http://127.0.0.1{demo_path}")))
            .ok_or_else(|| {
                Error::input("no target: give a URL (or a profile with [target] url, or --demo)")
            })?;
        let base = parse_target_url(&url)?;
        let grpc = args.grpc.is_some() || profile.is_some_and(|p| p.grpc.is_some());
        if args.grpc.is_some() && profile.is_some_and(|p| !p.flows.is_empty()) {
            return Err(Error::input(
                "--grpc calls one method, not the profile's [[flows]]: give one or the other",
            ));
        }
        let http = match (args.http2 || grpc, profile.and_then(|p| p.http)) {
            (true, _) => HttpVersion::Http2,
            (false, Some(v)) => v,
            (false, None) => HttpVersion::Http1,
        };
        let h2_streams = args
            .h2_streams
            .map(|n| n as usize)
            .or(profile.and_then(|p| p.h2_streams))
            .unwrap_or(1);
        if h2_streams > 1 && http != HttpVersion::Http2 {
            return Err(Error::input(
                "--h2-streams multiplexes HTTP/2 streams: give --http2 too (or http = \"2\" in [target])",
            ));
        }
        let target = TargetPlan {
            h2_streams,
            base,
            http,
            insecure: args.insecure || profile.is_some_and(|p| p.insecure),
            connect_timeout: args
                .connect_timeout
                .or(profile.and_then(|p| p.connect_timeout))
                .unwrap_or(Duration::from_secs(3)),
            request_timeout: args
                .timeout
                .or(profile.and_then(|p| p.timeout))
                .unwrap_or(Duration::from_secs(10)),
            max_connections: args
                .max_connections
                .map(|m| m as usize)
                .or(profile.and_then(|p| p.max_connections))
                .unwrap_or(512),
            check: crate::plan::TargetCheck {
                skip: args.no_check || profile.is_some_and(|p| !p.check),
                allowed: if args.allow_status.is_empty() {
                    profile.map(|p| p.allow_status.clone()).unwrap_or_default()
                } else {
                    args.allow_status.clone()
                },
            },
        };
        let mut requests = request_plans(args, profile)?;
        if let Some(call) = super::grpc::request(args, profile, &target, &requests[0])? {
            requests = vec![call];
        }
        let flows = profile.filter(|p| !p.flows.is_empty()).map(|p| {
            std::sync::Arc::new(crate::plan::flow::Flows::over(p.flows.clone(), &requests))
        });
        let slo = common
            .slo
            .clone()
            .or_else(|| profile.map(|p| p.slo.clone()))
            .unwrap_or_default();
        // Without an SLO a run still has to answer: at most 1 % errors. (A hunt derives its
        // latency bound from its lowest step, see `hunt`.)
        let slo_is_default = slo.is_empty();
        let slo = if slo_is_default {
            Slo::default_for_run()
        } else {
            slo
        };
        let name = common
            .name
            .clone()
            .or_else(|| profile.and_then(|p| p.name.clone()))
            .or_else(|| {
                profile_path
                    .and_then(|p| p.file_stem())
                    .map(|s| s.to_string_lossy().into_owned())
            })
            // A gRPC run is named for its method (shop.Shop-Reserve).
            .or_else(|| {
                grpc.then(|| requests.first().map(|r| r.name.clone()))
                    .flatten()
            })
            .unwrap_or_else(|| kind.as_str().to_string());
        let out = OutDir::from_flag(common.out.clone());
        let demo = common.demo.then(|| DemoConfig {
            fixes: common.demo_fix.unwrap_or_default(),
            metrics: !common.demo_no_metrics,
            ..DemoConfig::default()
        });
        let observe = super::observe_flags::observe_plan(common, profile, target.insecure)?;
        Ok(Base {
            name: sanitize_name(&name),
            target,
            requests,
            flows,
            slo,
            slo_is_default,
            out,
            demo,
            progress: !common.quiet,
            observe,
            ci: CiOutputs::new(junit_path(common.junit.as_deref())?),
        })
    }

    pub(super) fn into_plan(
        self,
        kind: Kind,
        mode: Mode,
        command: Vec<String>,
    ) -> Result<RunPlan, Error> {
        Ok(RunPlan {
            name: self.name,
            kind,
            target: self.target,
            requests: self.requests,
            mode,
            slo: self.slo,
            slo_is_default: self.slo_is_default,
            out: self.out,
            demo: self.demo,
            command,
            progress: self.progress,
            observe: self.observe,
            shard: None,
            start_at: None,
            ci: self.ci,
            replay: None,
            flows: self.flows,
        })
    }
}

/// The loads given by flags, if any, with the kind they imply.
fn flag_loads(args: &RunArgs) -> Result<Option<(Kind, Vec<Load>)>, Error> {
    let arrivals = args.common.arrivals.unwrap_or(Arrivals::Uniform);
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

fn request_plans(
    args: &TargetArgs,
    profile: Option<&ProfileSpec>,
) -> Result<Vec<RequestPlan>, Error> {
    let specs: Vec<RequestSpec> = match profile {
        Some(p) => p.requests.clone(),
        None => vec![RequestSpec {
            name: "default".to_string(),
            method: "GET".to_string(),
            path: String::new(),
            headers: Vec::new(),
            body: Vec::new(),
            weight: 1,
            slo: None,
        }],
    };
    with_flags(args, specs)
}

/// The requests `specs` with the command line's method, body and headers applied.
pub(super) fn with_flags(
    args: &TargetArgs,
    mut specs: Vec<RequestSpec>,
) -> Result<Vec<RequestPlan>, Error> {
    for spec in &mut specs {
        if let Some(method) = &args.method {
            spec.method = method.clone();
        }
        if let Some(body) = &args.body {
            spec.body = body.as_bytes().to_vec();
        }
        for header in &args.headers {
            let (name, value) = header_flag(header)?;
            spec.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
            spec.headers.push((name, value));
        }
    }
    specs.iter().map(request_plan).collect()
}

/// `-H "Name: value"` → (name, value), `${ENV}` expanded.
fn header_flag(header: &str) -> Result<(String, String), Error> {
    let (name, value) = header
        .split_once(':')
        .ok_or_else(|| Error::input(format!("header '{header}' is not 'Name: value'")))?;
    let value = profile::expand_env(value.trim()).map_err(Error::input)?;
    Ok((name.trim().to_string(), value))
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
        slo: spec.slo.clone(),
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

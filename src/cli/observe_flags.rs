//! What to observe, from the flags over the profile's `[observe]`: the target's processes
//! (one way of naming them), the samplers, the scrapes, the profiler and its frequency, the
//! `knee observe` servers. Part of merging a command line into one plan (`merge`).

use super::CommonArgs;
use crate::error::Error;
use crate::plan::{ObservePlan, ProfilerPlan};
use crate::profile::{self, ProfileSpec};

/// The observe plan; `insecure` is the target's `-k`, which covers the control plane's https
/// endpoints too.
pub(super) fn observe_plan(
    common: &CommonArgs,
    profile: Option<&ProfileSpec>,
    insecure: bool,
) -> Result<ObservePlan, Error> {
    let mut observe = profile.map(|p| p.observe.clone()).unwrap_or_default();
    if !common.pid.is_empty() {
        observe.pids = common.pid.clone();
    }
    observe.process_name = common.process_name.clone().or(observe.process_name);
    observe.spawn = common.spawn.clone().or(observe.spawn);
    observe.remote_target |= common.remote_target;
    if observe.remote_target
        && (!observe.pids.is_empty()
            || observe.process_name.is_some()
            || observe.spawn.is_some()
            || common.demo)
    {
        return Err(Error::input(
            "remote_target: the target runs on another host, so --pid, --process-name, --spawn and --demo cannot name it here",
        ));
    }
    if !common.observers.is_empty() {
        let token = match &common.observer_token_file {
            Some(path) => Some(crate::observe::token::read_file(path).map_err(Error::input)?),
            None => crate::observe::token::from_env(),
        };
        observe.observers = common
            .observers
            .iter()
            .map(|o| crate::plan::ObserverSpec::parse(o, token.clone()))
            .collect::<Result<_, _>>()
            .map_err(Error::input)?;
        observe.remote_target = true;
    }
    if !common.metrics.is_empty() {
        observe.metrics = common.metrics.clone();
    }
    if !common.metric_names.is_empty() {
        observe.metric_names = common.metric_names.clone();
    }
    if !common.metrics_headers.is_empty() {
        observe.metrics_headers = metrics_headers(&common.metrics_headers)?;
    }
    observe.insecure = insecure;
    // -k covers the control plane's https endpoints: scrapes, pprof and observers alike.
    for observer in &mut observe.observers {
        observer.insecure = insecure;
    }
    observe.interval = common.sample_every.unwrap_or(observe.interval);
    observe.sample = !common.no_sample;
    if !observe.sample && !observe.observers.is_empty() {
        let names: Vec<&str> = observe.observers.iter().map(|o| o.name.as_str()).collect();
        return Err(Error::input(format!(
            "--no-sample turns the samplers off, and the observers the profile names ({}) feed them: drop --no-sample or the profile's observers",
            names.join(", ")
        )));
    }
    observe.profiler = profiler_plan(common, observe.profiler.clone())?;
    if let Some(offcpu) = &common.offcpu {
        observe.offcpu = offcpu == "on";
    }
    if let Some(hz) = common.profile_frequency {
        if !(1..=crate::agent::MAX_FREQUENCY).contains(&hz) {
            return Err(Error::input(format!(
                "--profile-frequency {hz} must be 1..={} Hz (default 99)",
                crate::agent::MAX_FREQUENCY
            )));
        }
        observe.profile_frequency = hz;
    }
    if observe.interval < crate::observe::sampler::MIN_INTERVAL {
        return Err(Error::input(format!(
            "--sample-every {} must be at least 200ms (CPU shares need time between readings)",
            humantime::format_duration(observe.interval)
        )));
    }
    if [
        !observe.pids.is_empty(),
        observe.process_name.is_some(),
        observe.spawn.is_some(),
        common.demo,
    ]
    .iter()
    .filter(|x| **x)
    .count()
        > 1
    {
        return Err(Error::input(
            "--pid, --process-name, --spawn and --demo each name the target's processes: give only one of them",
        ));
    }
    for url in &observe.metrics {
        crate::observe::prometheus::MetricsSource::new(url, Vec::new()).map_err(Error::input)?;
    }
    Ok(observe)
}

/// `--metrics-header "Name: value"` → (name, secret value), `${ENV}` expanded.
fn metrics_headers(given: &[String]) -> Result<Vec<(String, crate::plan::Token)>, Error> {
    given
        .iter()
        .map(|header| {
            let (name, value) = header.split_once(':').ok_or_else(|| {
                Error::input(format!(
                    "--metrics-header '{}' is not 'Name: value'",
                    header.split(':').next().unwrap_or("")
                ))
            })?;
            let value = profile::expand_env(value.trim()).map_err(Error::input)?;
            Ok((name.trim().to_string(), crate::plan::Token(value)))
        })
        .collect()
}

/// The profiler from the flags over the profile's: `--pprof URL` and `--profiler` win; the
/// demo profiles itself through its embedded agent unless told otherwise.
fn profiler_plan(common: &CommonArgs, from_profile: ProfilerPlan) -> Result<ProfilerPlan, Error> {
    if let Some(url) = &common.pprof {
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(Error::input(format!(
                "--pprof URL '{url}' must start with http:// or https:// (e.g. http://127.0.0.1:6060/debug/pprof/profile)"
            )));
        }
    }
    let plan = match (common.profiler.as_deref(), &common.pprof) {
        (Some("none"), _) => ProfilerPlan::Off,
        (Some("perf"), _) => ProfilerPlan::Perf,
        (Some("py-spy"), _) => ProfilerPlan::PySpy,
        (Some("jfr"), _) => ProfilerPlan::Jfr,
        (Some("node"), _) => ProfilerPlan::Node,
        (Some("auto"), None) => ProfilerPlan::Auto,
        (_, Some(url)) => ProfilerPlan::Pprof(url.clone()),
        (Some(_pprof), None) => match from_profile {
            ProfilerPlan::Pprof(url) => ProfilerPlan::Pprof(url),
            _ if common.demo => ProfilerPlan::DemoAgent,
            _ => {
                return Err(Error::input(
                    "--profiler pprof needs the target's pprof endpoint: add --pprof URL (e.g. http://127.0.0.1:6060/debug/pprof/profile)",
                ))
            }
        },
        (None, None) if from_profile == ProfilerPlan::Auto && common.demo => {
            ProfilerPlan::DemoAgent
        }
        (None, None) => from_profile,
    };
    Ok(plan)
}

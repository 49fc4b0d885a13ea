//! A profile's `[observe]` table: which process to watch, which profiler to use and how
//! often it samples, what to scrape, and the `knee observe` servers on other hosts.

use super::requests::expand_headers;
use super::{DurationValue, Source};
use crate::error::Error;
use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawObserve {
    interval: Option<DurationValue>,
    pid: Option<u32>,
    #[serde(default)]
    pids: Vec<u32>,
    process_name: Option<String>,
    spawn: Option<String>,
    #[serde(default)]
    metrics: Vec<String>,
    #[serde(default)]
    metric_names: Vec<String>,
    /// Headers sent with every scrape ("Authorization" = "Bearer ${TOKEN}").
    #[serde(default)]
    metrics_headers: BTreeMap<String, Spanned<String>>,
    /// A pprof endpoint to profile hold steps from.
    pprof: Option<String>,
    /// "perf", "pprof" or "none".
    profiler: Option<Spanned<String>>,
    profile_frequency: Option<Spanned<u32>>,
    /// Off-CPU profiles (default true).
    offcpu: Option<bool>,
    /// The target is on another host (see `ObservePlan::remote_target`).
    #[serde(default)]
    remote_target: bool,
    /// `knee observe` servers, "[NAME=]http://host:port" (token: KNEE_OBSERVER_TOKEN).
    #[serde(default)]
    observers: Vec<Spanned<String>>,
}

/// The `[observe]` table as the plan's `ObservePlan`: the profiler named, the frequency in
/// bounds, the scrape headers' `${VAR}` filled, each observer address checked.
pub(super) fn observe_plan(
    src: &Source,
    raw: RawObserve,
) -> Result<crate::plan::ObservePlan, Error> {
    use crate::plan::ProfilerPlan;
    let defaults = crate::plan::ObservePlan::default();
    let profiler =
        match (&raw.profiler, raw.pprof) {
            (None, None) => ProfilerPlan::Auto,
            (Some(name), url) => match (name.get_ref().as_str(), url) {
                ("none", _) => ProfilerPlan::Off,
                ("auto", _) => ProfilerPlan::Auto,
                ("perf", _) => ProfilerPlan::Perf,
                ("py-spy", _) => ProfilerPlan::PySpy,
                ("jfr", _) => ProfilerPlan::Jfr,
                ("node", _) => ProfilerPlan::Node,
                ("pprof", Some(url)) => ProfilerPlan::Pprof(url),
                ("pprof", None) => return Err(src.error_at(
                    Some(name.span()),
                    "profiler = \"pprof\" needs pprof = \"http://host:port/debug/pprof/profile\"",
                )),
                (other, _) => {
                    return Err(src.error_at(
                        Some(name.span()),
                        &format!(
                    "unknown profiler '{other}' (use auto, pprof, perf, py-spy, jfr, node or none)"
                ),
                    ))
                }
            },
            (None, Some(url)) => ProfilerPlan::Pprof(url),
        };
    let profile_frequency = match raw.profile_frequency {
        Some(f) if !(1..=crate::agent::MAX_FREQUENCY).contains(f.get_ref()) => {
            return Err(src.error_at(
                Some(f.span()),
                &format!(
                    "profile_frequency must be 1..={} Hz",
                    crate::agent::MAX_FREQUENCY
                ),
            ))
        }
        Some(f) => *f.get_ref(),
        None => defaults.profile_frequency,
    };
    Ok(crate::plan::ObservePlan {
        interval: raw.interval.map_or(defaults.interval, |d| d.0),
        pids: raw.pid.into_iter().chain(raw.pids).collect(),
        process_name: raw.process_name,
        spawn: raw.spawn,
        metrics: raw.metrics,
        metric_names: raw.metric_names,
        metrics_headers: expand_headers(src, &raw.metrics_headers, &[])?
            .into_iter()
            .map(|(name, value)| (name, crate::plan::Token(value)))
            .collect(),
        insecure: false,
        sample: true,
        profiler,
        profile_frequency,
        offcpu: raw.offcpu.unwrap_or(defaults.offcpu),
        remote_target: raw.remote_target || !raw.observers.is_empty(),
        observers: raw
            .observers
            .iter()
            .map(|o| {
                crate::plan::ObserverSpec::parse(o.get_ref(), crate::observe::token::from_env())
                    .map_err(|e| src.error_at(Some(o.span()), &e))
            })
            .collect::<Result<_, _>>()?,
    })
}

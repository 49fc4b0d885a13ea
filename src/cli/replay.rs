//! `knee run --replay FILE --url BASE [--speed X | --rate R]`: the plan of one step whose
//! schedule is a log's recorded times (`import::replay`), scaled by the speed (or to a mean
//! rate), with the log's own requests as the mix.

use super::merge::{with_flags, Base};
use super::RunArgs;
use crate::error::Error;
use crate::plan::{Arrivals, ImportFormat, Kind, Load, Mode, RecordedSends, RunPlan, StepSpec};
use crate::profile::RequestSpec;
use std::time::Duration;

pub(super) fn plan(args: RunArgs, command: Vec<String>) -> Result<RunPlan, Error> {
    let file = args.replay.clone().unwrap_or_default();
    let name = file.display().to_string();
    let text = std::fs::read_to_string(&file)
        .map_err(|e| Error::input(format!("{name}: cannot read: {e}")))?;
    let read = crate::import::read(&name, &text, ImportFormat::Auto)?;
    let replay =
        crate::import::replay::of(&read).map_err(|e| Error::input(format!("{name}: {e}")))?;
    let url = args
        .url
        .clone()
        .or_else(|| read.origin.clone())
        .ok_or_else(|| {
            Error::input(format!(
                "{name}: an access log does not say which host it served: give --url BASE"
            ))
        })?;
    let speed = match args.rate {
        Some(rate) => rate / replay.mean_rps(),
        None => args.speed.unwrap_or(1.0),
    };
    let seconds = replay.span_s / speed;
    let sends: Vec<(f64, u32)> = replay.sends.iter().map(|(t, r)| (t / speed, *r)).collect();
    let step = StepSpec {
        name: "replay".into(),
        phase: crate::model::Phase::Step,
        load: Load::Rate {
            rps: sends.len() as f64 / seconds,
            arrivals: Arrivals::Uniform,
        },
        // Every recorded request is counted: the log's first second is its first.
        warmup: Duration::ZERO,
        duration: Duration::from_secs_f64(seconds),
        profile: Duration::ZERO,
        profile_before_recovery: false,
    };
    let base = Base::new(
        Some(url),
        &args.target,
        &args.common,
        None,
        None,
        Kind::Load,
        "/",
    )?;
    let mut plan = base.into_plan(Kind::Load, Mode::Steps(vec![step]), command)?;
    let specs = replay
        .requests
        .iter()
        .map(|(name, method, path)| RequestSpec {
            name: name.clone(),
            method: method.clone(),
            path: path.clone(),
            headers: Vec::new(),
            body: Vec::new(),
            weight: 1,
            slo: None,
        })
        .collect();
    plan.requests = with_flags(&args.target, specs)?;
    plan.replay = Some(std::sync::Arc::new(RecordedSends(sends)));
    crate::notice::say(format!(
        "knee: replay: {} requests of {name} ({} distinct) over {:.1} s at {speed}x{}{}",
        replay.sends.len(),
        plan.requests.len(),
        seconds,
        match replay.errors {
            0 => String::new(),
            n => format!("; {n} answered 4xx/5xx left out"),
        },
        match replay.untimed {
            0 => String::new(),
            n => format!("; {n} without a time left out"),
        },
    ));
    Ok(plan)
}

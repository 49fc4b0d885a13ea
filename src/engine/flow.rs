//! One virtual user's flow, run by the worker that took it: its steps in order on the
//! worker's connection, each step's values put into the next (`plan::flow`). Each request
//! is measured from its own intended send time: the first step's is the flow's place in the
//! schedule, a later step's is the end of the step before plus the think time. So a slow
//! answer delays the rest of that user's flow, as it would a person, and the flows started
//! after it are not held back (the schedule starts flows, not requests).
//!
//! A flow stops at its first error (a transport failure, a status of 400 or more, or a value
//! its step could not take, `extract_failed`): the requests after it would only repeat the
//! failure (no token, no session). It also stops, uncounted, when its next request would be
//! due after the step's schedule has ended.

use super::client::{Client, Conn, Prepared};
use super::errors::{Answer, ErrorClass};
use super::flow_tally::FlowEnd;
use super::h1::Kept;
use super::record::{Outcome, Record};
use super::send::{send_timed, Job, StepCtx};
use crate::plan::flow::{Extract, FlowPlan, FlowStep, Flows, Vars};
use std::pin::Pin;
use std::time::Instant;
use tokio::time::Sleep;

/// Runs flow `job.request` from its first step (sent at `sent`); returns when its last
/// request ended, and how the flow ended.
pub async fn run(
    ctx: &StepCtx,
    flows: &Flows,
    conn: &mut Option<Conn>,
    mut deadline: Pin<&mut Sleep>,
    job: Job,
    sent: Instant,
) -> (Instant, FlowEnd) {
    let flow = &flows.list[job.request];
    let mut vars = first_vars(flow);
    let (mut intended, mut sent) = (job.intended, sent);
    let mut last_done = sent;
    for (index, step) in flow.steps.iter().enumerate() {
        if index > 0 {
            intended = last_done + flow.steps[index - 1].think;
            if intended >= ctx.schedule_end {
                ctx.recorder.add_flow(job.intended, last_done, FlowEnd::Cut);
                return (last_done, FlowEnd::Cut);
            }
            tokio::time::sleep_until(intended.into()).await;
            sent = Instant::now();
        }
        let record = if sent > ctx.drain_deadline {
            Record::not_sent(intended, sent, step.request)
        } else {
            send_step(
                ctx,
                conn,
                deadline.as_mut(),
                step,
                &mut vars,
                intended,
                sent,
            )
            .await
        };
        ctx.recorder.add(&record);
        last_done = record.done;
        let failed = match record.outcome {
            Outcome::Response(answer) => answer.error().is_some(),
            Outcome::Failed(_) => true,
        };
        if failed {
            ctx.recorder
                .add_flow(job.intended, last_done, FlowEnd::Failed);
            return (last_done, FlowEnd::Failed);
        }
    }
    ctx.recorder
        .add_flow(job.intended, last_done, FlowEnd::Completed);
    (last_done, FlowEnd::Completed)
}

/// A user's first values: the feeder's next row, if the flow has one.
fn first_vars(flow: &FlowPlan) -> Vars {
    let mut vars = Vars::default();
    if let Some(feeder) = &flow.feeder {
        for (name, value) in feeder.next_row() {
            vars.set(name, value.to_string());
        }
    }
    vars
}

/// Sends one step (rendered with the user's values) and takes its values from the answer;
/// a value it cannot take makes the step's record an `extract_failed` error.
async fn send_step(
    ctx: &StepCtx,
    conn: &mut Option<Conn>,
    deadline: Pin<&mut Sleep>,
    step: &FlowStep,
    vars: &mut Vars,
    intended: Instant,
    sent: Instant,
) -> Record {
    let Ok(rendered) = rendered(&ctx.client, step, vars) else {
        let mut record = Record::not_sent(intended, sent, step.request);
        record.outcome = Outcome::Failed(ErrorClass::Other);
        return record;
    };
    let prepared = rendered
        .as_ref()
        .unwrap_or_else(|| ctx.client.prepared(step.request));
    let mut kept = (!step.extract.is_empty()).then(Kept::default);
    let mut record = send_timed(
        ctx,
        conn,
        deadline,
        (intended, sent),
        step.request,
        prepared,
        kept.as_mut(),
    )
    .await;
    if let (Outcome::Response(answer), Some(kept)) = (record.outcome, &kept) {
        if answer.error().is_none() && take_values(step, kept, vars).is_err() {
            record.outcome = Outcome::Failed(ErrorClass::ExtractFailed);
        }
    }
    record
}

/// The step's request with the user's values in it, when it has any (its error: why it
/// cannot be sent, e.g. a value with a line break in a header).
fn rendered(client: &Client, step: &FlowStep, vars: &Vars) -> Result<Option<Prepared>, String> {
    match &step.template {
        Some(template) => vars
            .request(template)
            .and_then(|r| client.prepare(&r))
            .map(Some),
        None => Ok(None),
    }
}

/// Takes each of the step's values from its answer; the first it cannot take is the error.
fn take_values<'a>(step: &'a FlowStep, kept: &Kept, vars: &mut Vars) -> Result<(), &'a Extract> {
    for extract in &step.extract {
        match extract.from.apply(&kept.headers, &kept.body) {
            Some(value) => vars.set(&extract.var, value),
            None => return Err(extract),
        }
    }
    Ok(())
}

/// Why flow `index`, run once before the load, cannot work: the step, what it sent and
/// what came back (None: every step answered and gave its values).
pub async fn check_once(
    client: &Client,
    flows: &Flows,
    requests: &[crate::plan::RequestPlan],
    index: usize,
    allowed: &[crate::plan::StatusPattern],
) -> Option<(String, Result<Answer, ErrorClass>)> {
    let flow = &flows.list[index];
    let mut vars = first_vars(flow);
    let mut conn = None;
    for step in &flow.steps {
        let name = &requests[step.request].name;
        let rendered = match rendered(client, step, &vars) {
            Ok(rendered) => rendered,
            Err(why) => return Some((format!("{name}: {why}"), Err(ErrorClass::Other))),
        };
        let prepared = rendered
            .as_ref()
            .unwrap_or_else(|| client.prepared(step.request));
        let mut kept = Kept::default();
        let answer = tokio::time::timeout(
            client.request_timeout(),
            client.send_prepared(&mut conn, prepared, &mut None, Some(&mut kept)),
        )
        .await
        .unwrap_or(Err(ErrorClass::RequestTimeout));
        match answer {
            Ok(answer)
                if answer.error().is_none() || allowed.iter().any(|p| p.matches(answer.status)) => {
            }
            other => return Some((name.clone(), other)),
        }
        if let Err(extract) = take_values(step, &kept, &mut vars) {
            let why = format!(
                "{name}: no {} ({}) in the answer",
                extract.var,
                extract.from.describe()
            );
            return Some((why, Err(ErrorClass::ExtractFailed)));
        }
    }
    None
}

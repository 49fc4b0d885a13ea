//! `knee merge DIR...`: the run folders of shards (`knee run --shard I/N`) become one run
//! folder, exactly: each step's histograms are added from the shards' V2 interval logs
//! (percentiles are computed from the sum, never averaged), counts and error classes are
//! summed, the SLO is judged again on the whole, and what is per machine — generator health
//! and the samplers — is kept per shard under `observed.shards`. One generator-limited shard
//! marks the merged step generator-limited.

use crate::engine::record::percentiles;
use crate::error::Error;
use crate::model::step::StepResult;
use crate::output::{RunFolder, RunRecord};
use crate::plan::OutDir;
use crate::slo::StepFigures;
use anyhow::Context;
use hdrhistogram::Histogram;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

struct ShardRun {
    dir: PathBuf,
    record: RunRecord,
}

/// Merges shard folders into `out`; returns the merged run folder.
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<PathBuf, Error> {
    let mut shards = read_shards(dirs)?;
    let first = &shards[0].record;
    let mut steps = Vec::with_capacity(first.steps.len());
    let mut histograms = Vec::with_capacity(first.steps.len());
    for (i, step) in first.steps.iter().enumerate() {
        let parts: Vec<&StepResult> = shards.iter().map(|s| &s.record.steps[i]).collect();
        let added = added_histograms(&shards, &step.name)?;
        let mut merged = merged_step(&parts, &added.latency, &added.service, first);
        merged.by_request = merged_requests(&parts, &added.requests);
        if merged.by_request.len() != added.requests.len() {
            // Not every shard logged every name's histogram (a folder older than them).
            merged.by_request.clear();
        }
        for request in &merged.by_request {
            for failure in &request.slo_failures {
                merged
                    .slo_failures
                    .push(format!("{}: {failure}", request.name));
            }
        }
        merged.holds &= merged.by_request.iter().all(|r| r.holds);
        steps.push(merged);
        histograms.push(added);
    }
    let started = humantime::parse_rfc3339_weak(&first.started_at).unwrap_or(SystemTime::now());
    let mut folder = RunFolder::create(&OutDir::Exact(out.to_path_buf()), &first.name, started)?;
    for (step, added) in steps.iter().zip(&histograms) {
        let requests = match step.by_request.is_empty() {
            true => &[][..],
            false => &added.requests[..],
        };
        folder.append_step(step, (&added.latency, &added.service), requests, started)?;
    }
    let interrupted = shards.iter().any(|s| s.record.interrupted);
    // The first shard's record, taken rather than read again, becomes the merged one.
    let mut record = shards.swap_remove(0).record;
    record.command = std::iter::once("knee merge".to_string())
        .chain(dirs.iter().map(|d| d.display().to_string()))
        .collect();
    record.generator_limited_steps = steps
        .iter()
        .filter(|s| s.generator.limited)
        .map(|s| s.name.clone())
        .collect();
    record.slo_held = steps.iter().all(|s| s.holds);
    record.interrupted = interrupted;
    record.steps = steps;
    record.shard = None;
    // Verdicts and hunt analyses read one machine's samplers: not redone for a merge.
    record.verdict = None;
    record.hunt = None;
    record.stress = None;
    record.target_process = None;
    folder.write_run(&record)?;
    crate::report::write_all(&record, &folder.dir)?;
    Ok(folder.dir)
}

/// Reads the shard folders and checks they are the shards of one run.
fn read_shards(dirs: &[PathBuf]) -> Result<Vec<ShardRun>, Error> {
    if dirs.len() < 2 {
        return Err(Error::input(
            "knee merge needs the folders of at least two shards",
        ));
    }
    let mut shards = Vec::new();
    for dir in dirs {
        let (_, record) = crate::recover::load(dir)?;
        shards.push(ShardRun {
            dir: dir.clone(),
            record,
        });
    }
    let first = &shards[0];
    let names = |r: &RunRecord| r.steps.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
    for shard in &shards {
        let r = &shard.record;
        let here = shard.dir.display();
        let Some(s) = r.shard else {
            return Err(Error::input(format!(
                "{here} is not a shard's run (it was not run with --shard)"
            )));
        };
        if r.name != first.record.name
            || r.kind != first.record.kind
            || r.target != first.record.target
        {
            return Err(Error::input(format!(
                "{here} is another run: {} {} against {} (the first folder: {} {} against {})",
                r.kind, r.name, r.target, first.record.kind, first.record.name, first.record.target
            )));
        }
        if s.count as usize != dirs.len() {
            return Err(Error::input(format!(
                "{here} is shard {}/{}, but {} folders were given",
                s.index,
                s.count,
                dirs.len()
            )));
        }
        let (mine, theirs) = (names(r), names(&first.record));
        if mine != theirs {
            let missing: Vec<&String> = theirs.iter().filter(|n| !mine.contains(n)).collect();
            let extra: Vec<&String> = mine.iter().filter(|n| !theirs.contains(n)).collect();
            return Err(Error::input(format!(
                "{here} has other steps than {}: missing {missing:?}, extra {extra:?}",
                first.dir.display()
            )));
        }
    }
    let mut indices: Vec<u32> = shards
        .iter()
        .filter_map(|s| s.record.shard)
        .map(|s| s.index)
        .collect();
    indices.sort_unstable();
    indices.dedup();
    if indices.len() != shards.len() {
        let names: Vec<String> = shards.iter().map(|s| s.dir.display().to_string()).collect();
        return Err(Error::input(format!(
            "two of the folders are the same shard ({}): give each shard's folder once",
            names.join(", ")
        )));
    }
    Ok(shards)
}

/// The sum of the shards' histograms of one step: latency, service, and each request name's
/// (empty when some shard did not log them all).
struct Added {
    latency: Histogram<u64>,
    service: Histogram<u64>,
    requests: Vec<Histogram<u64>>,
}

fn added_histograms(shards: &[ShardRun], step: &str) -> Result<Added, Error> {
    let mut latency: Option<Histogram<u64>> = None;
    let mut service: Option<Histogram<u64>> = None;
    let mut requests: Vec<Option<Histogram<u64>>> = Vec::new();
    let mut logged_by_all = true;
    for shard in shards {
        let path = shard.dir.join("hist").join(format!("{step}.hlog"));
        let logged = crate::hlog::read(&path).map_err(Error::input)?;
        let names = shard
            .record
            .steps
            .iter()
            .find(|s| s.name == step)
            .map_or(0, |s| s.by_request.len());
        requests.resize_with(requests.len().max(names), || None);
        let mut found = 0;
        for (tag, histogram) in logged {
            let sum = match tag.as_str() {
                "latency" => &mut latency,
                "service" => &mut service,
                other => match other
                    .strip_prefix(crate::output::REQUEST_TAG)
                    .and_then(|i| i.parse::<usize>().ok())
                {
                    Some(i) if i < names => {
                        found += 1;
                        &mut requests[i]
                    }
                    _ => continue,
                },
            };
            match sum {
                Some(sum) => sum
                    .add(&histogram)
                    .with_context(|| format!("cannot add {}", path.display()))?,
                None => *sum = Some(histogram),
            }
        }
        logged_by_all &= found == names;
    }
    let missing = || {
        Error::input(format!(
            "no shard's hist/{step}.hlog holds a latency and a service histogram (damaged folders: re-run the shards)"
        ))
    };
    Ok(Added {
        latency: latency.ok_or_else(missing)?,
        service: service.ok_or_else(missing)?,
        requests: match logged_by_all {
            true => requests.into_iter().flatten().collect(),
            false => Vec::new(),
        },
    })
}

/// Each request name of the step over every shard: counts summed, percentiles from the sum
/// of its histograms, its own SLO judged again on the whole. Empty when the shards' names
/// differ or a histogram is missing.
fn merged_requests(
    parts: &[&StepResult],
    histograms: &[Histogram<u64>],
) -> Vec<crate::model::step::RequestResult> {
    let first = &parts[0].by_request;
    let same_names = parts.iter().all(|p| {
        p.by_request.len() == first.len()
            && p.by_request
                .iter()
                .zip(first)
                .all(|(a, b)| a.name == b.name)
    });
    if !same_names || histograms.len() != first.len() {
        return Vec::new();
    }
    first
        .iter()
        .enumerate()
        .map(|(i, request)| {
            fn of<'a>(p: &&'a StepResult, i: usize) -> &'a crate::model::step::RequestResult {
                &p.by_request[i]
            }
            let mut error_classes = std::collections::BTreeMap::new();
            for part in parts {
                for (class, n) in &of(part, i).error_classes {
                    *error_classes.entry(*class).or_default() += n;
                }
            }
            let figures = crate::engine::by_request::Figures {
                requests: parts.iter().map(|p| of(p, i).requests).sum(),
                ok_rps: parts.iter().map(|p| of(p, i).ok_rps).sum(),
                errors: parts.iter().map(|p| of(p, i).errors).sum(),
                error_classes,
            };
            crate::engine::by_request::judged(
                &request.name,
                figures,
                &histograms[i],
                request.slo.as_ref(),
            )
        })
        .collect()
}

/// One step of the whole run from the shards' parts of it.
fn merged_step(
    parts: &[&StepResult],
    latency: &Histogram<u64>,
    service: &Histogram<u64>,
    run: &RunRecord,
) -> StepResult {
    let sum_u = |f: &dyn Fn(&StepResult) -> u64| parts.iter().map(|s| f(s)).sum::<u64>();
    let sum_f = |f: &dyn Fn(&StepResult) -> f64| parts.iter().map(|s| f(s)).sum::<f64>();
    let mut step = parts[0].clone();
    step.offered_rps = parts[0]
        .offered_rps
        .map(|_| sum_f(&|s| s.offered_rps.unwrap_or(0.0)));
    step.concurrency = parts[0]
        .concurrency
        .map(|_| parts.iter().filter_map(|s| s.concurrency).sum());
    step.requests = sum_u(&|s| s.requests);
    step.achieved_rps = sum_f(&|s| s.achieved_rps);
    step.ok_rps = sum_f(&|s| s.ok_rps);
    step.errors = sum_u(&|s| s.errors);
    step.error_rate = step.errors as f64 / step.requests.max(1) as f64;
    step.warmup_requests = sum_u(&|s| s.warmup_requests);
    step.unfinished = sum_u(&|s| s.unfinished);
    step.in_flight_mean = sum_f(&|s| s.in_flight_mean);
    step.partial = parts.iter().any(|s| s.partial);
    step.error_classes.clear();
    step.status_codes.clear();
    for part in parts {
        for (class, n) in &part.error_classes {
            *step.error_classes.entry(*class).or_default() += n;
        }
        for (code, n) in &part.status_codes {
            *step.status_codes.entry(code.clone()).or_default() += n;
        }
    }
    step.latency_ms = percentiles(latency);
    step.service_ms = percentiles(service);
    let g = &mut step.generator;
    g.limited = parts.iter().any(|s| s.generator.limited);
    g.limited_reason = parts
        .iter()
        .filter_map(|s| s.generator.limited_reason.clone())
        .next();
    g.send_lag_p99_ms = parts
        .iter()
        .map(|s| s.generator.send_lag_p99_ms)
        .fold(0.0, f64::max);
    g.send_lag_max_ms = parts
        .iter()
        .map(|s| s.generator.send_lag_max_ms)
        .fold(0.0, f64::max);
    g.late_sends = sum_u(&|s| s.generator.late_sends);
    g.not_sent = sum_u(&|s| s.generator.not_sent);
    g.cpu_cores = sum_f(&|s| s.generator.cpu_cores);
    g.cpu_available = sum_f(&|s| s.generator.cpu_available);
    g.connections = sum_u(&|s| s.generator.connections);
    g.connections_mean = parts
        .iter()
        .map(|s| s.generator.connections_mean)
        .sum::<Option<f64>>();
    g.connections_opened = sum_u(&|s| s.generator.connections_opened);
    g.connections_closed = sum_u(&|s| s.generator.connections_closed);
    // Time slices are per machine and not aligned to each other: kept per shard only. Connect
    // times are not in the hlogs, so they cannot be added exactly: left out of the merge.
    step.slices.clear();
    step.connect_ms = None;
    step.tls_ms = None;
    // Each request name's figures are merged from its own histograms (`merged_requests`).
    step.by_request.clear();
    // Flows add up like requests (each shard started its share of them).
    step.flows = parts[0].flows.as_ref().map(|_| {
        let flow = |f: &dyn Fn(&crate::model::step::FlowFigures) -> u64| {
            sum_u(&|s| s.flows.as_ref().map_or(0, f))
        };
        crate::model::step::FlowFigures {
            started: flow(&|f| f.started),
            completed: flow(&|f| f.completed),
            failed: flow(&|f| f.failed),
            cut: flow(&|f| f.cut),
        }
    });
    step.notes = parts
        .iter()
        .enumerate()
        .flat_map(|(i, s)| s.notes.iter().map(move |n| format!("shard {}: {n}", i + 1)))
        .collect();
    step.observed = Some(crate::model::Observed {
        shards: Some(
            parts
                .iter()
                .map(|s| crate::model::observed::ShardPart {
                    generator: s.generator.clone(),
                    samplers: crate::model::observed::Samplers::of(s).cloned(),
                    slices: s.slices.clone(),
                })
                .collect(),
        ),
        ..crate::model::Observed::default()
    });
    let limited = step
        .generator
        .limited
        .then(|| step.generator.limited_reason.clone().unwrap_or_default());
    step.slo_checks = run.slo.judge(
        limited.as_deref(),
        &StepFigures {
            latency_us: latency,
            requests: step.requests,
            errors: step.errors,
            achieved_rps: step.achieved_rps,
            offered_rps: step.offered_rps,
        },
    );
    step.slo_failures = crate::slo::failures_of(&step.slo_checks);
    step.holds = step.slo_failures.is_empty() && !step.generator.limited && !step.partial;
    step
}

//! Runs a `RunPlan`: starts the demo if asked, then either the fixed steps or a hunt, each step
//! through one `Session` that runs it on the engine, tells the observers, writes it to the run
//! folder as it ends and prints it. Ctrl-C (or SIGTERM) ends the current step as partial;
//! everything measured so far is written.

use crate::analyze::{soak, verdict};
use crate::demo::DemoChild;
use crate::engine::Engine;
use crate::error::Error;
use crate::hunt::{self, usl, KneeAnalysis, StepRunner};
use crate::observe::target::TargetProcess;

use crate::output::{RunFolder, RunRecord};
use crate::plan::{Kind, Mode, RunPlan};
use crate::redact::redact_url;
use crate::terminal::{summary_table, Terminal};
use crate::Outcome;
use session::{Parts, Session};

mod observation;
mod replicas;
mod session;

pub use observation::Observation;

use anyhow::Context;
use std::path::PathBuf;
use std::time::SystemTime;
use tokio::sync::watch;

/// What a finished run leaves behind.
#[derive(Debug)]
pub struct RunSummary {
    pub outcome: Outcome,
    pub folder: PathBuf,
    pub record: RunRecord,
}

pub fn run(plan: RunPlan) -> Result<RunSummary, Error> {
    raise_fd_limit();
    steady_heap();
    // The orchestration (steps, the hunt, the progress bar) runs here; the load itself runs
    // on the engine's lanes, one thread per core.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run_plan(plan))
}

async fn run_plan(mut plan: RunPlan) -> Result<RunSummary, Error> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_stop_signal().await;
        let _ = stop_tx.send(true);
        // Keep the sender alive so receivers never see a closed channel.
        std::future::pending::<()>().await;
    });
    let demo = match &plan.demo {
        Some(config) => {
            let demo = DemoChild::start(config).await?;
            let path = plan
                .target
                .base
                .path_and_query()
                .map_or("/", |pq| pq.as_str())
                .to_string();
            plan.target.base = format!("{}{path}", demo.base)
                .parse()
                .context("the demo's address is not a valid URL")?;
            Some(demo)
        }
        None => None,
    };
    let (started, origin) = (SystemTime::now(), std::time::Instant::now());
    let folder = RunFolder::create(&plan.out, &plan.name, started)?;
    let planned = match &plan.mode {
        Mode::Steps(steps) => steps.len(),
        Mode::Hunt(_) => 0,
    };
    crate::notice::say(format!(
        "knee: {} '{}' against {} -> {}",
        plan.kind.as_str(),
        plan.name,
        redact_url(&plan.target.base.to_string()),
        folder.dir.display()
    ));
    let mut observation = match Observation::start(&plan, demo.as_ref(), &folder.dir, origin) {
        Ok(observation) => observation,
        Err(problem) => {
            // Nothing was measured (an observer that cannot be read, a target that would
            // not start): leave no half run folder behind.
            folder.discard();
            return Err(problem);
        }
    };
    if let Some(target) = &observation.target {
        crate::notice::say(format!(
            "knee: target process {} (found by {})",
            target.pid, target.found_by
        ));
    }
    let engine = Engine::new(&plan, engine_lanes(), stop_rx.clone()).await?;
    if let Err(problem) = engine.check_target(&plan.target, &plan.requests).await {
        // Nothing was measured: leave no half run folder behind.
        observation.finish();
        folder.discard();
        return Err(problem);
    }
    // From here on the folder is readable whatever happens to this process (recover).
    crate::recover::write_start(
        &folder.dir,
        &crate::recover::StartRecord {
            record: RunRecord {
                ended: None,
                profiling: observation.profiling(),
                ..RunRecord::new(&plan, started, Vec::new(), false)
            },
            mode: plan.mode.clone(),
            slo_is_default: plan.slo_is_default,
        },
    )?;
    let profiling = observation.profiles();
    let observers = observation.observers();
    let mut session = Session::new(Parts {
        engine,
        folder,
        terminal: Terminal::new(plan.progress),
        observers,
        stop: stop_rx,
        slo: plan.slo.clone(),
        planned,
        origin,
        slim: plan.kind == Kind::Soak,
        profiling,
    });
    wait_for_start(&plan).await;
    let mut analysis = Analysis::default();
    match &plan.mode {
        Mode::Steps(steps) if plan.kind == Kind::Stress => {
            analysis.stress = Some(hunt::stress(&mut session, steps).await?);
        }
        Mode::Steps(steps) if plan.kind == Kind::Soak => {
            // Windows of one long load: back to back, no pause between them.
            session.chain(steps).await?;
        }
        Mode::Steps(steps) if plan.shard.is_some() => {
            // Shards chain their steps (each starts when the last one's schedule ends), so
            // step k starts at --start-at + the same offset on every shard: no drift.
            session.chain(steps).await?;
        }
        Mode::Steps(steps) => {
            for spec in steps {
                if session.step(spec).await?.is_none() {
                    break;
                }
            }
            if plan.kind == Kind::Sweep {
                let points: Vec<(f64, f64)> = session
                    .steps()
                    .iter()
                    .filter_map(|s| s.concurrency.map(|c| (f64::from(c), s.ok_rps)))
                    .collect();
                analysis.usl = usl::fit(&points);
            }
        }
        Mode::Hunt(settings) => {
            analysis.hunt = Some(hunt::run(&mut session, settings, plan.slo_is_default).await?);
        }
    }
    analysis.target = observation.finish();
    analysis.observers = observation.observer_records();
    analysis.profiling = observation.profiling();
    if plan.kind == Kind::Soak {
        analysis.soak = Some(soak::analyze(session.steps()));
    }
    let capacity = analysis
        .hunt
        .as_ref()
        .or(analysis.stress.as_ref())
        .and_then(|a| a.capacity_rps);
    if plan.kind != Kind::Soak {
        let cores = crate::observe::procfs::this_host().cores;
        let found = verdict::verdict_on(session.steps(), capacity, session.slo(), cores);
        if found.kind == verdict::Kind::RateLimited {
            // The capacity the hunt found is the limiter's: the hunt says so.
            if let (Some(hunt), Some(capacity)) = (analysis.hunt.as_mut(), capacity) {
                hunt.notes.push(format!(
                    "the capacity found ({capacity:.0} req/s) is a rate limiter's, not the service's: past it the rest was answered 429/503 at once"
                ));
            }
        }
        analysis.verdict = Some(found);
    }
    drop(demo);
    finish(&plan, session, started, analysis)
}

/// What the run concluded beyond its steps.
#[derive(Default)]
struct Analysis {
    hunt: Option<KneeAnalysis>,
    stress: Option<KneeAnalysis>,
    usl: Option<usl::UslFit>,
    verdict: Option<verdict::Verdict>,
    soak: Option<soak::SoakAnalysis>,
    target: Option<TargetProcess>,
    observers: Vec<crate::observe::remote::ObserverRecord>,
    profiling: Option<crate::model::run::Profiling>,
}

fn finish(
    plan: &RunPlan,
    session: Session,
    started: SystemTime,
    analysis: Analysis,
) -> Result<RunSummary, Error> {
    let (mut steps, folder, slo, interrupted) = session.into_parts();
    if plan.kind == Kind::Soak {
        // Each window whole, as it was written (the slim copies served the analysis).
        steps = folder.read_steps()?;
    }
    let mut record = RunRecord::new(plan, started, steps, interrupted);
    record.slo = slo;
    record.hunt = analysis.hunt;
    record.stress = analysis.stress;
    record.usl = analysis.usl;
    record.verdict = analysis.verdict;
    record.soak = analysis.soak;
    record.shard = plan.shard;
    record.target_process = analysis.target;
    record.observers = analysis.observers;
    record.profiling = analysis.profiling;
    let run_json = folder.write_run(&record)?;
    let mut reports = crate::report::write_all(&record, &folder.dir)?;
    reports.extend(crate::report::ci::publish(&plan.ci, &record, &folder.dir)?);
    print!("\n{}", summary_table(&record.steps));
    if let Some(block) = record.hunt.as_ref().or(record.stress.as_ref()) {
        if let Some(curve) = crate::report::text_chart::knee_curve(&record) {
            print!("\n{curve}");
        }
        print!("{}", crate::terminal::verdict_block(block));
    }
    if let Some(fit) = &record.usl {
        println!("{}", fit.describe());
    }
    if let Some(v) = &record.verdict {
        print!("{}", bottleneck_block(v));
    }
    if let Some(soak) = &record.soak {
        for line in &soak.verdicts {
            println!("soak: {line}");
        }
        for line in &soak.notes {
            println!("soak note: {line}");
        }
    }
    if let Some(target) = &record.target_process {
        if let Some(at) = target.exited_at_s {
            println!(
                "!! the target process {} was gone {at:.1}s into the run{}",
                target.pid,
                target
                    .exit_status
                    .as_ref()
                    .map_or(String::new(), |s| format!(" ({s})"))
            );
        }
    }
    println!("{}", verdict_line(plan, &record));
    println!("run folder: {}", folder.dir.display());
    println!("run.json:   {}", run_json.display());
    for report in &reports {
        println!("report:     {}", report.display());
    }
    let outcome = if interrupted {
        Outcome::Interrupted
    } else if let Some(hunt) = &record.hunt {
        // A hunt succeeds when it found a capacity; its failing steps are the point.
        if hunt.capacity_rps.is_some() {
            Outcome::Passed
        } else {
            Outcome::SloFailed
        }
    } else if record.slo_held {
        Outcome::Passed
    } else {
        Outcome::SloFailed
    };
    Ok(RunSummary {
        outcome,
        folder: folder.dir.clone(),
        record,
    })
}

fn bottleneck_block(v: &verdict::Verdict) -> String {
    let mut out = format!(
        "\nbottleneck: {} (confidence {})\n",
        v.bottleneck, v.confidence
    );
    if let Some(site) = &v.site {
        out.push_str(&format!("  site: {site}\n"));
    }
    for line in v.broke_first.iter().chain(&v.evidence) {
        out.push_str(&format!("  - {line}\n"));
    }
    out.push_str(&format!("  to confirm: {}\n", v.confirm));
    if !v.holds.is_empty() {
        out.push_str("utilization at the hold steps:\n");
        for line in &v.holds {
            out.push_str(&format!("  {line}\n"));
        }
    }
    out
}

fn verdict_line(plan: &RunPlan, record: &RunRecord) -> String {
    let failed: Vec<&str> = record
        .steps
        .iter()
        .filter(|s| !s.holds)
        .map(|s| s.name.as_str())
        .collect();
    let what = if plan.slo_is_default && plan.kind != Kind::Hunt {
        "no SLO given; default: errors<=1% and achieved>=97% of offered".to_string()
    } else {
        format!("SLO {}", record.slo.describe())
    };
    let mut line = if plan.kind == Kind::Hunt {
        format!(
            "{} of {} steps held ({what})",
            record.steps.len() - failed.len(),
            record.steps.len()
        )
    } else if failed.is_empty() && !record.steps.is_empty() {
        format!("verdict: held on all {} steps ({what})", record.steps.len())
    } else {
        format!(
            "verdict: FAILED on {} of {} steps: {} ({what})",
            failed.len(),
            record.steps.len(),
            failed.join(", ")
        )
    };
    if !record.generator_limited_steps.is_empty() {
        line.push_str(&format!(
            "\n!! the generator was the limit in: {} -- those steps say nothing about the target",
            record.generator_limited_steps.join(", ")
        ));
    }
    if record.interrupted {
        line.push_str("\ninterrupted: the last step is partial");
    }
    line
}

pub(crate) async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// One engine lane per core (`KNEE_LANES` overrides, for experiments).
fn engine_lanes() -> usize {
    std::env::var("KNEE_LANES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Each step allocates its histograms afresh (a 1 µs–60 s, 3-digit HdrHistogram is ~210 KB,
/// and a step has a few dozen) and frees them when it is written. glibc serves blocks that
/// large from mmap and gives them back on free, but raises that threshold after the first
/// frees, so later steps' histograms come from the heap and fragment it: on a 10-minute soak
/// knee's RSS crept up window after window. A fixed threshold keeps them mmapped.
fn steady_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; 128 KiB is glibc's own default.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Many connections need many file descriptors: raise the soft limit to the hard one.
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out-pointer; setrlimit with values getrlimit returned.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// With `--start-at`, sleeps until then (shards start their first step together).
async fn wait_for_start(plan: &RunPlan) {
    let Some(at) = plan.start_at else { return };
    match at.duration_since(std::time::SystemTime::now()) {
        Ok(wait) => {
            crate::notice::say(format!(
                "knee: waiting {:.1} s for --start-at",
                wait.as_secs_f64()
            ));
            tokio::time::sleep(wait).await;
        }
        Err(late) => crate::notice::say(format!(
            "knee: --start-at passed {:.1} s ago: starting now (shards will not be aligned)",
            late.duration().as_secs_f64()
        )),
    }
}

//! Runs a `RunPlan`: starts the demo if asked, runs the steps in order through the engine,
//! writes each step to the run folder as it ends, and prints the summary. Ctrl-C (or SIGTERM)
//! ends the current step as partial; everything measured so far is written.

use crate::demo::DemoChild;
use crate::engine::cpu::ThreadCpu;
use crate::engine::Engine;
use crate::error::Error;
use crate::output::{RunFolder, RunRecord};
use crate::plan::RunPlan;
use crate::redact::redact_url;
use crate::terminal::{summary_table, Terminal};
use crate::Outcome;
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
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu = ThreadCpu::default();
    let register = cpu.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .thread_name("knee-engine")
        .on_thread_start(move || register.register_current_thread())
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run_steps(plan, cpu, cores as f64))
}

async fn run_steps(mut plan: RunPlan, cpu: ThreadCpu, cores: f64) -> Result<RunSummary, Error> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_stop_signal().await;
        let _ = stop_tx.send(true);
        // Keep the sender alive so receivers never see a closed channel.
        std::future::pending::<()>().await;
    });
    let _demo = match &plan.demo {
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
    let started = SystemTime::now();
    let mut folder = RunFolder::create(&plan.out, &plan.name, started)?;
    eprintln!(
        "knee: {} run '{}' against {} ({} step{}) -> {}",
        plan.kind.as_str(),
        plan.name,
        redact_url(&plan.target.base.to_string()),
        plan.steps.len(),
        if plan.steps.len() == 1 { "" } else { "s" },
        folder.dir.display()
    );
    let engine = Engine::new(&plan, cpu, cores, stop_rx.clone()).await?;
    let terminal = Terminal::new(plan.progress);
    let mut results = Vec::with_capacity(plan.steps.len());
    let mut interrupted = false;
    for (index, spec) in plan.steps.iter().enumerate() {
        if *stop_rx.borrow() {
            interrupted = true;
            break;
        }
        let bar = terminal.step_started(index, plan.steps.len(), spec);
        let step = engine
            .run_step(spec, &plan.slo, plan.target.request_timeout, bar.clone())
            .await;
        terminal.step_finished(&bar, &step.result);
        folder.append_step(&step.result, &step.latency)?;
        results.push(step.result);
        if step.interrupted {
            interrupted = true;
            break;
        }
    }
    let record = RunRecord::new(&plan, started, results, interrupted);
    let run_json = folder.write_run(&record)?;
    print!("\n{}", summary_table(&record.steps));
    println!("{}", verdict_line(&plan, &record));
    println!("run folder: {}", folder.dir.display());
    println!("run.json:   {}", run_json.display());
    let outcome = if interrupted {
        Outcome::Interrupted
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

fn verdict_line(plan: &RunPlan, record: &RunRecord) -> String {
    let failed: Vec<&str> = record
        .steps
        .iter()
        .filter(|s| !s.holds)
        .map(|s| s.name.as_str())
        .collect();
    let what = if plan.slo_is_default {
        "no SLO given; default: errors<=1% and achieved>=97% of offered".to_string()
    } else {
        format!("SLO {}", describe_slo(plan))
    };
    let mut line = if failed.is_empty() && !record.steps.is_empty() {
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

fn describe_slo(plan: &RunPlan) -> String {
    let slo = &plan.slo;
    let mut terms: Vec<String> = slo
        .latency
        .iter()
        .map(|b| format!("{}<={}ms", b.label(), b.limit_ms))
        .collect();
    if let Some(rate) = slo.max_error_rate {
        terms.push(format!("errors<={}%", rate * 100.0));
    }
    if let Some(rps) = slo.min_rps {
        terms.push(format!("throughput>={rps}/s"));
    }
    terms.join(", ")
}

async fn wait_for_stop_signal() {
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

//! knee: a load-test harness that hunts bottlenecks. The binary is a thin shell around
//! [`run`], so tests drive the whole tool in-process.

#[cfg(feature = "agent")]
pub mod agent;
#[cfg(feature = "harness")]
pub mod analyze;
#[cfg(feature = "harness")]
pub mod cli;
#[cfg(feature = "harness")]
pub mod compare;
#[cfg(feature = "harness")]
pub mod demo;
#[cfg(feature = "harness")]
pub mod engine;
#[cfg(feature = "harness")]
pub mod error;
#[cfg(feature = "harness")]
pub mod flame;
#[cfg(feature = "harness")]
pub mod hlog;
#[cfg(feature = "harness")]
pub mod hunt;
#[cfg(feature = "harness")]
pub mod import;
#[cfg(feature = "harness")]
pub mod model;
#[cfg(feature = "harness")]
pub mod notice;
#[cfg(feature = "harness")]
pub mod observe;
#[cfg(feature = "harness")]
pub mod output;
#[cfg(feature = "harness")]
pub mod plan;
#[cfg(feature = "harness")]
pub mod profile;
#[cfg(feature = "harness")]
pub mod recover;
#[cfg(feature = "harness")]
pub mod redact;
#[cfg(feature = "harness")]
pub mod report;
#[cfg(feature = "harness")]
pub mod runner;
#[cfg(feature = "harness")]
pub mod serve;
#[cfg(feature = "harness")]
pub mod shards;
#[cfg(feature = "harness")]
pub mod slo;
#[cfg(feature = "harness")]
pub mod stacks;
#[cfg(feature = "harness")]
pub mod terminal;
#[cfg(feature = "harness")]
pub mod units;

#[cfg(feature = "agent")]
pub mod pprof_proto;

#[cfg(feature = "harness")]
pub use error::Error;
#[cfg(feature = "harness")]
pub use harness_entry::{run, Outcome};

#[cfg(feature = "harness")]
mod harness_entry {
    use crate::plan::Job;
    use crate::{cli, compare, demo, report, runner, serve, Error};
    use std::ffi::OsString;

    /// How a command ended, when it did not fail outright.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Outcome {
        /// Every SLO held (or there was nothing to check).
        Passed,
        /// A step missed its SLO.
        SloFailed,
        /// Ctrl-C: the partial result was written.
        Interrupted,
        /// `knee compare --fail-if-slower`: the capacity fell by more than allowed.
        Slower,
    }

    impl Outcome {
        pub fn exit_code(self) -> i32 {
            match self {
                Outcome::Passed => 0,
                Outcome::SloFailed | Outcome::Slower => 1,
                Outcome::Interrupted => 130,
            }
        }
    }

    /// Runs knee with these arguments (the first is the program name).
    pub fn run<I, T>(args: I) -> Result<Outcome, Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let Some(job) = cli::parse_job(args)? else {
            return Ok(Outcome::Passed);
        };
        match job {
            Job::Run(plan) => runner::run(*plan).map(|summary| summary.outcome),
            Job::Report { run, format, junit } => {
                report::rerender(&run, format, junit.as_deref()).map(|_| Outcome::Passed)
            }
            Job::Merge { dirs, out } => {
                let dir = crate::shards::merge(&dirs, &out)?;
                println!("merged run folder: {}", dir.display());
                println!("run.json:          {}", dir.join("run.json").display());
                Ok(Outcome::Passed)
            }
            Job::Compare {
                before,
                after,
                out,
                fail_if_slower,
                step_summary,
            } => {
                let capacity = compare::run(&before, &after, &out)?;
                if let Some(summary) = step_summary {
                    report::ci::append_summary(&summary, &out.join("compare.md"), &out)?;
                }
                match fail_if_slower {
                    Some(limit) if compare::slower_than(&capacity, limit) => {
                        crate::notice::say(format!(
                            "knee: capacity fell by more than {:.1} %: {}",
                            limit * 100.0,
                            capacity.describe("req/s")
                        ));
                        Ok(Outcome::Slower)
                    }
                    _ => Ok(Outcome::Passed),
                }
            }
            Job::Import(plan) => crate::import::run(&plan).map(|_| Outcome::Passed),
            Job::Completions(shell) => {
                std::io::Write::write_all(&mut std::io::stdout(), &cli::completions(shell))?;
                Ok(Outcome::Passed)
            }
            Job::Man { out: None } => {
                std::io::Write::write_all(&mut std::io::stdout(), &cli::man_page()?)?;
                Ok(Outcome::Passed)
            }
            Job::Man { out: Some(dir) } => {
                for page in cli::man_pages_to(&dir)? {
                    println!("{}", page.display());
                }
                Ok(Outcome::Passed)
            }
            Job::Demo(config) if config.explain => {
                print!("{}", demo::explain(&config));
                Ok(Outcome::Passed)
            }
            Job::Observe(plan) => {
                let observer = serve::start(&plan)?;
                let watched = match observer.replicas.len() {
                    0 => format!("pid {}", observer.pid),
                    n => format!(
                        "{n} processes (pids {}), each a replica",
                        observer
                            .replicas
                            .iter()
                            .map(u32::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                println!(
                    "knee observe: {watched} on {}://{} ({})",
                    if plan.tls.is_some() { "https" } else { "http" },
                    observer.address,
                    if plan.token.is_some() {
                        "every request needs the token"
                    } else {
                        "loopback only, no token"
                    }
                );
                let _ = std::io::Write::flush(&mut std::io::stdout());
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(runner::wait_for_stop_signal());
                drop(observer);
                Ok(Outcome::Passed)
            }
            Job::Demo(config) => {
                let runtime = tokio::runtime::Runtime::new()?;
                runtime.block_on(demo::serve(config))?;
                Ok(Outcome::Passed)
            }
        }
    }
}

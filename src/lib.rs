//! knee: a load-test harness that hunts bottlenecks. The binary is a thin shell around
//! [`run`], so tests drive the whole tool in-process.

pub mod analyze;
pub mod cli;
pub mod demo;
pub mod engine;
pub mod error;
pub mod hunt;
pub mod observe;
pub mod output;
pub mod plan;
pub mod profile;
pub mod redact;
pub mod report;
pub mod runner;
pub mod slo;
pub mod step;
pub mod terminal;
pub mod units;

pub use error::Error;
use plan::Job;
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
}

impl Outcome {
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::Passed => 0,
            Outcome::SloFailed => 1,
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
        Job::Report { run, format } => report::rerender(&run, format).map(|_| Outcome::Passed),
        Job::Demo(config) if config.explain => {
            print!("{}", demo::explain(&config));
            Ok(Outcome::Passed)
        }
        Job::Demo(config) => {
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(demo::serve(config))?;
            Ok(Outcome::Passed)
        }
    }
}

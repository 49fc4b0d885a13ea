//! The run folder: `steps.jsonl` appended and flushed as each step ends (a crash loses at most
//! the current step), `hist/<step>.hgrm` per step, and `run.json` at the end.

use crate::model::run::Ended;
pub use crate::model::RunRecord;

use crate::error::Error;
use crate::model::step::{StepResult, SCHEMA_VERSION};
use crate::plan::{OutDir, RunPlan};
use crate::redact::{redact_command, redact_url};
use anyhow::Context;
use hdrhistogram::Histogram;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::time::SystemTime;

pub struct RunFolder {
    pub dir: PathBuf,
    steps: File,
}

impl RunFolder {
    pub fn create(out: &OutDir, name: &str, started: SystemTime) -> Result<RunFolder, Error> {
        let dir = out.folder(name, started);
        fs::create_dir_all(dir.join("hist"))
            .with_context(|| format!("cannot create run folder {}", dir.display()))?;
        let steps_path = dir.join("steps.jsonl");
        let steps = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&steps_path)
            .with_context(|| format!("cannot create {}", steps_path.display()))?;
        Ok(RunFolder { dir, steps })
    }

    /// Appends one step and pushes it to disk before the next step starts.
    /// Appends the step to steps.jsonl (synced) and writes its histograms: `hist/STEP.hgrm`
    /// (percentile text, for reading) and `hist/STEP.hlog` (V2 interval log, for tools and
    /// merging). `started` is when the step's counted window began.
    pub fn append_step(
        &mut self,
        step: &StepResult,
        (latency, service): (&Histogram<u64>, &Histogram<u64>),
        by_request: &[Histogram<u64>],
        started: SystemTime,
    ) -> Result<(), Error> {
        let mut line = serde_json::to_string(step).context("cannot encode step")?;
        line.push('\n');
        self.steps
            .write_all(line.as_bytes())
            .and_then(|_| self.steps.sync_data())
            .with_context(|| format!("cannot write {}", self.dir.join("steps.jsonl").display()))?;
        let hist_path = self.dir.join("hist").join(format!("{}.hgrm", step.name));
        fs::write(&hist_path, percentile_distribution(latency))
            .with_context(|| format!("cannot write {}", hist_path.display()))?;
        crate::hlog::write(
            &hist_path.with_extension("hlog"),
            started,
            std::time::Duration::try_from_secs_f64(step.duration_s).unwrap_or_default(),
            &histogram_tags(latency, service, by_request)
                .iter()
                .map(|(tag, h)| (tag.as_str(), *h))
                .collect::<Vec<_>>(),
        )
        .map_err(|e| Error::Internal(anyhow::anyhow!(e)))?;
        Ok(())
    }

    /// The steps written so far, read back from steps.jsonl (a soak keeps only slim copies
    /// of its windows in memory; run.json and the reports get the whole of each).
    pub fn read_steps(&self) -> Result<Vec<StepResult>, Error> {
        let path = self.dir.join("steps.jsonl");
        let text =
            fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        text.lines()
            .filter(|line| !line.trim().is_empty())
            .enumerate()
            .map(|(i, line)| {
                serde_json::from_str(line)
                    .with_context(|| format!("{}:{}: not a step", path.display(), i + 1))
                    .map_err(Error::Internal)
            })
            .collect()
    }

    /// Removes what `create` made (and the sampler's file), when nothing was measured; a
    /// folder that held anything else stays.
    pub fn discard(self) {
        let _ = fs::remove_file(self.dir.join(crate::recover::START));
        let _ = fs::remove_file(self.dir.join("steps.jsonl"));
        let _ = fs::remove_file(self.dir.join("samples.jsonl"));
        let _ = fs::remove_dir(self.dir.join("hist"));
        let _ = fs::remove_dir(&self.dir);
    }

    /// Writes run.json (whole or not at all), and drops what a killed run would have been
    /// rebuilt from (`recover`): the folder is whole.
    pub fn write_run(&self, record: &RunRecord) -> Result<PathBuf, Error> {
        let text = serde_json::to_string_pretty(record).context("cannot encode run.json")?;
        let path = crate::recover::write_atomically(&self.dir, "run.json", &(text + "\n"))?;
        let _ = fs::remove_file(self.dir.join(crate::recover::START));
        let _ = fs::remove_file(self.dir.join(crate::recover::RUNNING));
        Ok(path)
    }

    /// Names the chain of steps starting now (`steps.running`): a run killed during it says
    /// which steps were lost.
    pub fn begin_chain(&self, names: &[&str]) -> Result<(), Error> {
        let text = serde_json::to_string(names).context("cannot encode the step names")?;
        crate::recover::write_atomically(&self.dir, crate::recover::RUNNING, &text).map(|_| ())
    }
}

impl RunRecord {
    pub fn new(
        plan: &RunPlan,
        started: SystemTime,
        steps: Vec<StepResult>,
        interrupted: bool,
    ) -> Self {
        let slo_held = !steps.is_empty() && steps.iter().all(|s| s.holds);
        RunRecord {
            schema_version: SCHEMA_VERSION,
            knee_version: env!("CARGO_PKG_VERSION").to_string(),
            name: plan.name.clone(),
            kind: plan.kind,
            command: redact_command(&plan.command),
            target: redact_url(&plan.target.base.to_string()),
            slo: plan.slo.clone(),
            started_at: humantime::format_rfc3339_millis(started).to_string(),
            finished_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            generator_limited_steps: steps
                .iter()
                .filter(|s| s.generator.limited)
                .map(|s| s.name.clone())
                .collect(),
            steps,
            interrupted,
            slo_held,
            hunt: None,
            stress: None,
            usl: None,
            verdict: None,
            soak: None,
            shard: None,
            target_process: None,
            observers: Vec::new(),
            ended: Some(if interrupted {
                Ended::Interrupted
            } else {
                Ended::Completed
            }),
            generator_host: Some(crate::observe::procfs::this_host()),
            notes: Vec::new(),
            profiling: None,
        }
    }
}

/// HdrHistogram's percentile-distribution text (as `outputPercentileDistribution` prints it),
/// values in milliseconds, so the usual plotters and `hdr-plot` read it.
pub fn percentile_distribution(hist: &Histogram<u64>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    for v in hist.iter_quantiles(5) {
        total += v.count_since_last_iteration();
        let q = v.quantile_iterated_to();
        let value_ms = v.value_iterated_to() as f64 / 1000.0;
        if q < 1.0 {
            let _ = writeln!(
                out,
                "{value_ms:12.3} {q:14.12} {total:10} {:14.2}",
                1.0 / (1.0 - q)
            );
        } else {
            let _ = writeln!(out, "{value_ms:12.3} {q:14.12} {total:10}");
        }
    }
    let _ = writeln!(
        out,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        hist.mean() / 1000.0,
        hist.stdev() / 1000.0
    );
    let _ = writeln!(
        out,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        hist.max() as f64 / 1000.0,
        hist.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        hist.buckets(),
        (2 * 10u64.pow(u32::from(hist.sigfig()))).next_power_of_two()
    );
    out
}

/// The tag each histogram of a step's hlog goes under: `latency`, `service`, and for a mix of
/// several request names `request-I` (the I-th of `by_request`; tags cannot hold a name's
/// spaces).
pub fn histogram_tags<'a>(
    latency: &'a Histogram<u64>,
    service: &'a Histogram<u64>,
    by_request: &'a [Histogram<u64>],
) -> Vec<(String, &'a Histogram<u64>)> {
    [
        ("latency".to_string(), latency),
        ("service".to_string(), service),
    ]
    .into_iter()
    .chain(
        by_request
            .iter()
            .enumerate()
            .map(|(i, h)| (format!("{REQUEST_TAG}{i}"), h)),
    )
    .collect()
}

/// The prefix of a request name's histogram tag in a step's hlog.
pub const REQUEST_TAG: &str = "request-";

#[cfg(test)]
mod float_tests {
    /// run.json is read back by `knee merge`, `compare` and `report`: floats must come back
    /// bit for bit (serde_json's default parser may miss by one ulp; seen on a merged mean).
    #[test]
    fn floats_read_back_exactly() {
        for x in [
            0.224_037_500_000_000_06_f64,
            0.1 + 0.2,
            1e-7 / 3.0,
            123_456.789_012_345_67,
        ] {
            let text = serde_json::to_string(&x).unwrap();
            let back: f64 = serde_json::from_str(&text).unwrap();
            assert_eq!(back.to_bits(), x.to_bits(), "{text}");
        }
    }
}

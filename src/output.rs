//! The run folder: `steps.jsonl` appended and flushed as each step ends (a crash loses at most
//! the current step), `hist/<step>.hgrm` per step, and `run.json` at the end.

use crate::analyze::soak::SoakAnalysis;
use crate::analyze::verdict::Verdict;
use crate::error::Error;
use crate::hunt::usl::UslFit;
use crate::hunt::KneeAnalysis;
use crate::observe::target::TargetProcess;
use crate::plan::{OutDir, RunPlan};
use crate::redact::{redact_command, redact_url};
use crate::slo::Slo;
use crate::step::{StepResult, SCHEMA_VERSION};
use anyhow::Context;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Everything about a run (`run.json`).
#[derive(Debug, Serialize, Deserialize)]
pub struct RunRecord {
    pub schema_version: u32,
    pub knee_version: String,
    pub name: String,
    pub kind: String,
    /// The command line, secrets redacted.
    pub command: Vec<String>,
    /// The target URL, secrets redacted.
    pub target: String,
    pub slo: Slo,
    pub started_at: String,
    pub finished_at: String,
    pub steps: Vec<StepResult>,
    pub interrupted: bool,
    /// Every counted step held its SLO.
    pub slo_held: bool,
    /// Steps where the generator, not the target, was the limit.
    pub generator_limited_steps: Vec<String>,
    /// `knee hunt`: the knee three ways, the failure mode past it, recovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hunt: Option<KneeAnalysis>,
    /// `kind = "stress"`: the failure mode past the highest rate that held, and recovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stress: Option<KneeAnalysis>,
    /// `kind = "sweep"`: the Universal Scalability Law fit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usl: Option<UslFit>,
    /// The bottleneck at the knee, with its evidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// `kind = "soak"`: trends and the leak / degradation verdicts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak: Option<SoakAnalysis>,
    /// This run was shard `index` of `count` (`--shard`); `knee merge` joins the shards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<crate::plan::Shard>,
    /// The target process that was sampled, and whether it went away.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_process: Option<TargetProcess>,
    /// The `knee observe` servers the target's host was read through.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub observers: Vec<crate::observe::remote::ObserverRecord>,
}

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
        latency: &Histogram<u64>,
        service: &Histogram<u64>,
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
            &[("latency", latency), ("service", service)],
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
        let _ = fs::remove_file(self.dir.join("steps.jsonl"));
        let _ = fs::remove_file(self.dir.join("samples.jsonl"));
        let _ = fs::remove_dir(self.dir.join("hist"));
        let _ = fs::remove_dir(&self.dir);
    }

    pub fn write_run(&self, record: &RunRecord) -> Result<PathBuf, Error> {
        let path = self.dir.join("run.json");
        let text = serde_json::to_string_pretty(record).context("cannot encode run.json")?;
        // Write then rename, so run.json is never half-written.
        let tmp = self.dir.join("run.json.tmp");
        fs::write(&tmp, text + "\n")
            .and_then(|_| fs::rename(&tmp, &path))
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
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
            kind: plan.kind.as_str().to_string(),
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
        }
    }

    /// A run folder or its run.json → (the folder, run.json's path).
    pub fn locate(run: &Path) -> (PathBuf, PathBuf) {
        if run.is_dir() {
            (run.to_path_buf(), run.join("run.json"))
        } else {
            let dir = run.parent().unwrap_or(Path::new(".")).to_path_buf();
            (dir, run.to_path_buf())
        }
    }

    /// Reads run.json and checks its values (a hand-edited or damaged file must be refused
    /// in one line, not reach a panic in `knee merge`, `report` or `compare`).
    pub fn read(path: &Path) -> Result<RunRecord, Error> {
        let text = fs::read_to_string(path)
            .map_err(|e| Error::input(format!("{}: cannot read: {e}", path.display())))?;
        let record: RunRecord = serde_json::from_str(&text).map_err(|e| {
            Error::input(format!(
                "{}:{}:{}: {e}",
                path.display(),
                e.line(),
                e.column()
            ))
        })?;
        record
            .check()
            .map_err(|problem| Error::input(format!("{}: {problem}", path.display())))?;
        Ok(record)
    }

    /// The first value that cannot be right, in words.
    pub fn check(&self) -> Result<(), String> {
        for (i, step) in self.steps.iter().enumerate() {
            check_step(step).map_err(|e| format!("steps[{i}] ('{}'): {e}", step.name))?;
        }
        for (what, analysis) in [("hunt", &self.hunt), ("stress", &self.stress)] {
            let Some(a) = analysis else { continue };
            for (field, value) in [
                ("capacity_rps", a.capacity_rps),
                ("latency_knee_rps", a.latency_knee_rps),
                ("saturation_rps", a.saturation_rps),
                ("recovery_s", a.recovery_s),
            ] {
                if let Some(v) = value {
                    non_negative(v).map_err(|e| format!("{what}.{field} {e}"))?;
                }
            }
        }
        Ok(())
    }
}

/// `value` is a finite number ≥ 0, or says why not.
fn non_negative(value: f64) -> Result<(), String> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(format!("is {value} (must be a number >= 0)"))
    }
}

/// A step's figures are finite and ≥ 0, its shares within 0..=1, its counts consistent.
fn check_step(step: &StepResult) -> Result<(), String> {
    let g = &step.generator;
    let numbers = [
        ("duration_s", step.duration_s),
        ("warmup_s", step.warmup_s),
        ("offered_rps", step.offered_rps.unwrap_or(0.0)),
        ("achieved_rps", step.achieved_rps),
        ("ok_rps", step.ok_rps),
        ("in_flight_mean", step.in_flight_mean),
        ("generator.cpu_cores", g.cpu_cores),
        ("generator.send_lag_p99_ms", g.send_lag_p99_ms),
    ];
    for (field, value) in numbers {
        non_negative(value).map_err(|e| format!("{field} {e}"))?;
    }
    for (field, p) in [
        ("latency_ms", &step.latency_ms),
        ("service_ms", &step.service_ms),
    ] {
        for (name, value) in [
            ("mean", p.mean),
            ("p50", p.p50),
            ("p90", p.p90),
            ("p99", p.p99),
            ("p999", p.p999),
            ("max", p.max),
        ] {
            non_negative(value).map_err(|e| format!("{field}.{name} {e}"))?;
        }
    }
    if !(0.0..=1.0).contains(&step.error_rate) {
        return Err(format!(
            "error_rate is {} (must be between 0 and 1)",
            step.error_rate
        ));
    }
    if step.errors > step.requests {
        return Err(format!(
            "errors ({}) exceed requests ({})",
            step.errors, step.requests
        ));
    }
    Ok(())
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

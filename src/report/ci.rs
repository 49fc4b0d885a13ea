//! What a CI pipeline reads of a run besides the exit code: the SLO checks as JUnit XML
//! (`--junit FILE`) and, under GitHub Actions, report.md appended to the job's summary page
//! (the file `GITHUB_STEP_SUMMARY` names). Written after the run folder, so a CI output that
//! cannot be written never costs the run's own results.

use super::{junit, Exporter};
use crate::error::Error;
use crate::model::RunRecord;
use crate::plan::CiOutputs;
use anyhow::Context;
use std::io::Write;
use std::path::{Path, PathBuf};

/// GitHub refuses a step summary above 1 MiB; a larger report is pointed to, not appended.
const STEP_SUMMARY_LIMIT: usize = 1024 * 1024;

/// Writes what `outputs` asks for; returns the paths written, for the run's last lines.
pub fn publish(outputs: &CiOutputs, run: &RunRecord, dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut written = Vec::new();
    if let Some(path) = &outputs.junit {
        std::fs::write(path, junit::Junit.render(run, dir))
            .with_context(|| format!("--junit {}: cannot write", path.display()))?;
        written.push(path.clone());
    }
    if let Some(path) = &outputs.step_summary {
        let report = dir.join(super::markdown::Markdown.file_name());
        append_summary(path, &report, dir)?;
        written.push(path.clone());
    }
    Ok(written)
}

/// Appends the Markdown file `report` (in the folder `dir`) to the job summary `path`.
pub fn append_summary(path: &Path, report: &Path, dir: &Path) -> Result<(), Error> {
    let text = std::fs::read_to_string(report)
        .with_context(|| format!("cannot read {}", report.display()))?;
    let header = format!(
        "<!-- knee -->\nknee: `{}` (the links below are files in that folder).\n\n",
        dir.display()
    );
    let body = if header.len() + text.len() > STEP_SUMMARY_LIMIT {
        format!(
            "{} is {} KiB, over the step summary's 1 MiB: see it in the folder.\n",
            report.file_name().unwrap_or_default().to_string_lossy(),
            text.len() / 1024
        )
    } else {
        text
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("GITHUB_STEP_SUMMARY={}: cannot open", path.display()))?;
    file.write_all(format!("{header}{body}\n").as_bytes())
        .with_context(|| format!("GITHUB_STEP_SUMMARY={}: cannot append", path.display()))?;
    Ok(())
}

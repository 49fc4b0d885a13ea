//! A run killed outright — SIGKILL, the OOM killer, a pod evicted past its grace period, a
//! machine that loses power — keeps its finished steps in steps.jsonl (each fsync'd as it
//! ended) but never writes run.json. So everything else a report needs is written when the
//! run starts (`run.start.json`: the run's record without steps, and the plan of its steps
//! or its hunt), and each chain of steps names itself as it starts (`steps.running`).
//!
//! `load` reads a run folder: its run.json, or — when there is none — the run rebuilt from
//! what is there: the finished steps (a last line cut in half by the kill is dropped, and
//! said so), the run marked `interrupted` and `ended: killed`, the steps that were running
//! said to be lost, and the analyses made from the steps that finished. A hunt is replayed:
//! its own logic runs again over the recorded steps, so its capacity, knee and failure mode
//! are what the run would have said had it stopped there. The rebuilt run.json is written,
//! so the folder is whole afterwards.

use crate::analyze::{soak, verdict};
use crate::error::Error;
use crate::hunt::{self, usl, StepRunner};
use crate::model::run::Ended;
use crate::model::{Kind, RunRecord, StepResult};
use crate::plan::{Mode, StepSpec};
use crate::slo::Slo;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// What a run writes as it starts.
pub const START: &str = "run.start.json";
/// The names of the chain of steps running (rewritten as each chain starts).
pub const RUNNING: &str = "steps.running";

/// Everything a report needs besides the steps, as the run starts.
#[derive(Serialize, Deserialize)]
pub struct StartRecord {
    /// The run's record: no steps yet.
    pub record: RunRecord,
    /// The steps planned, or the hunt's settings.
    pub mode: Mode,
    /// The SLO was knee's default (a hunt then adds a latency bound from its first step).
    pub slo_is_default: bool,
}

/// Writes `name` in `dir` whole or not at all (write, then rename).
pub fn write_atomically(dir: &Path, name: &str, text: &str) -> Result<PathBuf, Error> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, &path))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Writes run.start.json.
pub fn write_start(dir: &Path, start: &StartRecord) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(start).context("cannot encode run.start.json")?;
    write_atomically(dir, START, &(text + "\n")).map(|_| ())
}

/// A run folder's run: its run.json, or rebuilt from what the run left (see the header),
/// with the folder. `path` is a run folder or a run.json file.
pub fn load(path: &Path) -> Result<(PathBuf, RunRecord), Error> {
    let (dir, json) = RunRecord::locate(path);
    if json.exists() || !dir.join(START).exists() {
        if !json.exists() {
            return Err(Error::input(format!(
                "{}: no run.json there, and no {START} to rebuild one from (give a run folder)",
                path.display()
            )));
        }
        return Ok((dir, RunRecord::read(&json)?));
    }
    let record = rebuild(&dir)?;
    let text = serde_json::to_string_pretty(&record).context("cannot encode run.json")?;
    let written = write_atomically(&dir, "run.json", &(text + "\n"))?;
    let _ = std::fs::remove_file(dir.join(START));
    let _ = std::fs::remove_file(dir.join(RUNNING));
    crate::notice::say(format!(
        "knee: {} had no run.json (the run was killed): rebuilt it from the steps it finished ({}): {}",
        dir.display(),
        record.steps.len(),
        written.display()
    ));
    Ok((dir, record))
}

/// The run of a killed run's folder.
fn rebuild(dir: &Path) -> Result<RunRecord, Error> {
    let start_path = dir.join(START);
    let text = std::fs::read_to_string(&start_path)
        .map_err(|e| Error::input(format!("{}: cannot read: {e}", start_path.display())))?;
    let start: StartRecord = serde_json::from_str(&text).map_err(|e| {
        Error::input(format!(
            "{}:{}:{}: {e}",
            start_path.display(),
            e.line(),
            e.column()
        ))
    })?;
    let steps = finished_steps(dir)?;
    let mut record = start.record;
    record.notes.extend(lost_steps(dir, &steps));
    record.finished_at = humantime::format_rfc3339_millis(last_written(dir)).to_string();
    record.interrupted = true;
    record.ended = Some(Ended::Killed);
    record.slo_held = false;
    record.generator_limited_steps = steps
        .iter()
        .filter(|s| s.generator.limited)
        .map(|s| s.name.clone())
        .collect();
    let mut replay = Replay::new(steps, record.slo.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .context("cannot start a runtime")?;
    match (&start.mode, record.kind) {
        (Mode::Hunt(settings), _) => {
            record.hunt =
                Some(runtime.block_on(hunt::run(&mut replay, settings, start.slo_is_default))?);
        }
        (Mode::Steps(steps), Kind::Stress) => {
            record.stress = Some(runtime.block_on(hunt::stress(&mut replay, steps))?);
        }
        (Mode::Steps(steps), _) => {
            let _ = runtime.block_on(replay.chain(steps))?;
        }
    }
    record.slo = replay.slo.clone();
    let steps = replay.recorded;
    match record.kind {
        Kind::Soak => record.soak = Some(soak::analyze(&steps)),
        Kind::Sweep => {
            let points: Vec<(f64, f64)> = steps
                .iter()
                .filter_map(|s| s.concurrency.map(|c| (f64::from(c), s.ok_rps)))
                .collect();
            record.usl = usl::fit(&points);
        }
        _ => {}
    }
    if record.kind != Kind::Soak {
        let capacity = record
            .hunt
            .as_ref()
            .or(record.stress.as_ref())
            .and_then(|a| a.capacity_rps);
        let cores = record.generator_host.as_ref().map_or(1, |h| h.cores.max(1));
        record.verdict = Some(verdict::verdict_on(&steps, capacity, &record.slo, cores));
    }
    record.steps = steps;
    record
        .check()
        .map_err(|problem| Error::input(format!("{}: {problem}", dir.display())))?;
    Ok(record)
}

/// The steps steps.jsonl holds. A last line the kill cut in half is dropped, said in one
/// line; any other line that is not a step is an error naming it.
fn finished_steps(dir: &Path) -> Result<Vec<StepResult>, Error> {
    let path = dir.join("steps.jsonl");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(Error::input(format!(
                "{}: cannot read: {e}",
                path.display()
            )))
        }
    };
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .collect();
    let mut steps = Vec::with_capacity(lines.len());
    for (i, (number, line)) in lines.iter().enumerate() {
        match serde_json::from_str::<StepResult>(line) {
            Ok(step) => steps.push(step),
            Err(_) if i + 1 == lines.len() => {
                crate::notice::say(format!(
                    "knee: {}:{}: the last line is not a whole step (the kill cut its write short): dropped",
                    path.display(),
                    number + 1
                ));
                // The file keeps the whole steps only, as a finished run's does.
                let whole: String = lines[..i].iter().map(|(_, l)| format!("{l}\n")).collect();
                write_atomically(dir, "steps.jsonl", &whole)?;
            }
            Err(e) => {
                return Err(Error::input(format!(
                    "{}:{}:{}: not a step: {e}",
                    path.display(),
                    number + 1,
                    e.column()
                )))
            }
        }
    }
    Ok(steps)
}

/// What the run was doing when it was killed, said as lost.
fn lost_steps(dir: &Path, finished: &[StepResult]) -> Option<String> {
    let running: Vec<String> = std::fs::read_to_string(dir.join(RUNNING))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default();
    let lost: Vec<&String> = running
        .iter()
        .filter(|name| !finished.iter().any(|s| &&s.name == name))
        .collect();
    Some(if lost.is_empty() {
        "the run was killed (not known how) between steps: no step was lost".to_string()
    } else {
        let names: Vec<&str> = lost.iter().map(|s| s.as_str()).collect();
        format!(
            "the run was killed (not known how) while {} ran: {} lost",
            names.join(", "),
            if names.len() == 1 {
                "that step is"
            } else {
                "those steps are"
            }
        )
    })
}

/// When the folder was last written to: the run's end, as near as can be known.
fn last_written(dir: &Path) -> SystemTime {
    ["steps.jsonl", "samples.jsonl", START]
        .iter()
        .filter_map(|name| std::fs::metadata(dir.join(name)).ok()?.modified().ok())
        .max()
        .unwrap_or_else(SystemTime::now)
}

/// Steps that already ran, handed back by name in the order a replayed hunt asks for them;
/// the first one that did not finish ends the replay as an interruption.
struct Replay {
    /// What steps.jsonl holds, not yet handed out.
    left: Vec<StepResult>,
    /// Handed out so far: the run's steps.
    recorded: Vec<StepResult>,
    slo: Slo,
    interrupted: bool,
}

impl Replay {
    fn new(steps: Vec<StepResult>, slo: Slo) -> Replay {
        Replay {
            left: steps,
            recorded: Vec::new(),
            slo,
            interrupted: false,
        }
    }
}

impl StepRunner for Replay {
    async fn chain(&mut self, specs: &[StepSpec]) -> Result<Vec<StepResult>, Error> {
        let mut results = Vec::new();
        for spec in specs {
            if self.interrupted {
                break;
            }
            let Some(index) = self.left.iter().position(|s| s.name == spec.name) else {
                self.interrupted = true;
                break;
            };
            let step = self.left.remove(index);
            self.recorded.push(step.clone());
            results.push(step);
        }
        Ok(results)
    }

    fn steps(&self) -> &[StepResult] {
        &self.recorded
    }

    fn slo(&self) -> &Slo {
        &self.slo
    }

    fn slo_mut(&mut self) -> &mut Slo {
        &mut self.slo
    }

    fn interrupted(&self) -> bool {
        self.interrupted
    }
}

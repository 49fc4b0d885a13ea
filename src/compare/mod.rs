//! `knee compare RUN_A RUN_B`: the knee and the bottleneck moving between a run before a fix
//! and a run after it. Both runs are read from their run.json; nothing is re-measured. The
//! comparison pairs hold steps by name (hold-095 with hold-095: the same fraction of each
//! run's own capacity), so a differential flamegraph compares like with like.

pub mod html;
pub mod markdown;

use crate::error::Error;
use crate::model::observed::{OffCpu, StepProfile};
use crate::model::step::{Phase, StepResult};
use crate::model::RunRecord;
use crate::stacks;
use anyhow::Context;
use std::path::{Path, PathBuf};

/// One side of the comparison.
pub struct Side {
    /// How the reports name it: the run folder's name.
    pub label: String,
    pub dir: PathBuf,
    pub run: RunRecord,
}

/// A number before and after.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shift {
    pub before: Option<f64>,
    pub after: Option<f64>,
}

impl Shift {
    pub fn delta(&self) -> Option<f64> {
        Some(self.after? - self.before?)
    }

    /// Relative change in percent.
    pub fn percent(&self) -> Option<f64> {
        let before = self.before.filter(|b| *b > 0.0)?;
        Some((self.after? - before) / before * 100.0)
    }

    /// "477 → 675 req/s (+198, +41.5 %)".
    pub fn describe(&self, unit: &str) -> String {
        let value = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
        let change = match (self.delta(), self.percent()) {
            (Some(d), Some(p)) => format!(" ({d:+.0}, {p:+.1} %)"),
            (Some(d), None) => format!(" ({d:+.0})"),
            _ => String::new(),
        };
        format!(
            "{} → {} {unit}{change}",
            value(self.before),
            value(self.after)
        )
    }
}

/// A hold step present in both runs.
pub struct HoldPair<'a> {
    pub name: String,
    pub before: &'a StepResult,
    pub after: &'a StepResult,
    /// The differential flamegraph, relative to the comparison folder.
    pub diff_svg: Option<String>,
    /// The differential off-CPU flamegraph (where requests waited), likewise.
    pub diff_offcpu_svg: Option<String>,
}

pub struct Comparison<'a> {
    /// The comparison folder (the differential flamegraphs are in it).
    pub out: PathBuf,
    pub before: &'a Side,
    pub after: &'a Side,
    pub capacity: Shift,
    pub latency_knee: Shift,
    pub saturation: Shift,
    /// "serialized on a lock; 93 % of samples in `critical_section` (hold-095)".
    pub verdict_before: String,
    pub verdict_after: String,
    /// Runs of different numbers of replicas: the capacity's ratio against theirs, and
    /// whether the bottleneck stayed in each replica (`scale_line`).
    pub scale: Option<String>,
    pub holds: Vec<HoldPair<'a>>,
}

impl Side {
    /// Reads a run folder (or its run.json).
    pub fn read(path: &Path) -> Result<Side, Error> {
        let (dir, run) = crate::recover::load(path)?;
        let json = if path.is_dir() {
            dir.join("run.json")
        } else {
            path.to_path_buf()
        };
        // The folder's name; for a file other than run.json, the file's ("a.run.json" → "a").
        let file = json.file_name().map(|n| n.to_string_lossy().into_owned());
        let label = match file.as_deref() {
            Some(name) if name != "run.json" => name
                .trim_end_matches(".json")
                .trim_end_matches(".run")
                .to_string(),
            _ => dir
                .canonicalize()
                .ok()
                .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| run.name.clone()),
        };
        Ok(Side { label, dir, run })
    }

    /// The run's capacity: the hunt's or stress test's, else the highest rate that held.
    pub fn capacity(&self) -> Option<f64> {
        let knee = self.run.hunt.as_ref().or(self.run.stress.as_ref());
        knee.and_then(|k| k.capacity_rps).or_else(|| {
            self.run
                .steps
                .iter()
                .filter(|s| s.holds)
                .filter_map(|s| s.offered_rps)
                .reduce(f64::max)
        })
    }

    /// How many processes the target was: its replicas, else one when it was known.
    pub fn replicas(&self) -> Option<usize> {
        let target = self.run.target_process.as_ref()?;
        Some(target.replicas.len().max(1))
    }

    pub fn hold_steps(&self) -> impl Iterator<Item = &StepResult> {
        self.run.steps.iter().filter(|s| s.phase == Phase::Hold)
    }

    /// The bottleneck in one line, with where the CPU went at the profiled hold step
    /// closest below the knee.
    pub fn verdict_line(&self) -> String {
        let mut line = match &self.run.verdict {
            Some(v) => v.bottleneck.clone(),
            None => "no verdict".to_string(),
        };
        // Which endpoint broke first, for a mix: the one a fix moved.
        if let Some(first) = self
            .run
            .verdict
            .as_ref()
            .and_then(|v| v.broke_first.as_ref())
        {
            line.push_str(&format!("; {first}"));
        }
        if let Some(knee) = self.run.verdict.as_ref().and_then(|v| v.knee_step.as_ref()) {
            let cpu = self
                .run
                .steps
                .iter()
                .find(|s| &s.name == knee)
                .and_then(|s| crate::analyze::mean(s, "target.cpu_cores"));
            if let Some(cpu) = cpu {
                line.push_str(&format!(", target CPU {cpu:.2} cores at {knee}"));
            }
        }
        let profiled = self
            .hold_steps()
            .filter(|s| s.holds)
            .filter_map(|s| StepProfile::of(s).map(|p| (s, p)))
            .filter(|(_, p)| p.samples > 0)
            .last();
        if let Some((step, profile)) = profiled {
            if let Some(top) = profile.top_self.first() {
                line.push_str(&format!(
                    "; {:.0} % of samples in `{}` ({})",
                    top.percent, top.function, step.name
                ));
            }
        }
        line
    }
}

/// Compares two runs and draws the differential flamegraphs into `out`.
pub fn compare<'a>(before: &'a Side, after: &'a Side, out: &Path) -> Comparison<'a> {
    let knee = |side: &'a Side| side.run.hunt.as_ref().or(side.run.stress.as_ref());
    let (a, b) = (knee(before), knee(after));
    let holds = before
        .hold_steps()
        .filter_map(|x| {
            let y = after.hold_steps().find(|y| y.name == x.name)?;
            Some(HoldPair {
                name: x.name.clone(),
                before: x,
                after: y,
                diff_svg: differential(before, x, after, y, out),
                diff_offcpu_svg: offcpu_differential(before, x, after, y, out),
            })
        })
        .collect();
    Comparison {
        out: out.to_path_buf(),
        before,
        after,
        capacity: Shift {
            before: before.capacity(),
            after: after.capacity(),
        },
        latency_knee: Shift {
            before: a.and_then(|k| k.latency_knee_rps),
            after: b.and_then(|k| k.latency_knee_rps),
        },
        saturation: Shift {
            before: a.and_then(|k| k.saturation_rps),
            after: b.and_then(|k| k.saturation_rps),
        },
        verdict_before: before.verdict_line(),
        verdict_after: after.verdict_line(),
        scale: scale_line(before, after),
        holds,
    }
}

/// "1 → 2 replicas: capacity ×1.98 (×2 the replicas); the bottleneck stayed in each replica:
/// serialized on a lock in X (in 2 of 2 replicas)", or "…: the bottleneck moved out of the
/// replicas: <the after run's>". None when both runs had as many processes, or either is
/// unknown.
pub fn scale_line(before: &Side, after: &Side) -> Option<String> {
    let (n, m) = (before.replicas()?, after.replicas()?);
    if n == m {
        return None;
    }
    let ratio = after.capacity()? / before.capacity().filter(|c| *c > 0.0)?;
    let (was, now) = (before.run.verdict.as_ref()?, after.run.verdict.as_ref()?);
    let in_every = m == 1
        || now
            .bottleneck
            .ends_with(&format!("(in {m} of {m} replicas)"));
    let stayed = was.kind == now.kind && was.site == now.site && in_every;
    let what = if stayed {
        format!("the bottleneck stayed in each replica: {}", now.bottleneck)
    } else {
        format!("the bottleneck moved: now {}", now.bottleneck)
    };
    Some(format!(
        "{n} → {m} replicas: capacity ×{ratio:.2} (×{:.2} the replicas); {what}",
        m as f64 / n as f64
    ))
}

/// The differential flamegraph of one hold step pair, if both were profiled.
fn differential(
    before: &Side,
    x: &StepResult,
    after: &Side,
    y: &StepResult,
    out: &Path,
) -> Option<String> {
    let a = stacks::load_folded(&before.dir, StepProfile::of(x)?)?;
    let b = stacks::load_folded(&after.dir, StepProfile::of(y)?)?;
    let title = format!("{}: {} → {}", x.name, before.label, after.label);
    draw_differential(&a, &b, &title, out, &format!("diff-{}.svg", x.name))
}

/// The differential off-CPU flamegraph of one hold step pair, if both have off-CPU profiles.
fn offcpu_differential(
    before: &Side,
    x: &StepResult,
    after: &Side,
    y: &StepResult,
    out: &Path,
) -> Option<String> {
    let load = |side: &Side, step: &StepResult| {
        let folded = OffCpu::of(step)?.folded.clone()?;
        let text = std::fs::read_to_string(side.dir.join(folded)).ok()?;
        Some(stacks::folded::Folded::parse(&text))
    };
    let (a, b) = (load(before, x)?, load(after, y)?);
    let title = format!("off-CPU {}: {} → {}", x.name, before.label, after.label);
    draw_differential(&a, &b, &title, out, &format!("diff-offcpu-{}.svg", x.name))
}

fn draw_differential(
    a: &stacks::folded::Folded,
    b: &stacks::folded::Folded,
    title: &str,
    out: &Path,
    name: &str,
) -> Option<String> {
    let subtitle =
        "after's stacks, coloured by the change since before (normalized): red grew, blue shrank";
    let svg = stacks::render::differential_svg(a, b, title, subtitle).ok()?;
    std::fs::write(out.join(name), svg).ok()?;
    Some(name.to_string())
}

/// `knee compare`: writes compare.md and compare.html into `out`; the capacity shift.
pub fn run(before: &Path, after: &Path, out: &Path) -> Result<Shift, Error> {
    let (a, b) = (Side::read(before)?, Side::read(after)?);
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let comparison = compare(&a, &b, out);
    for (name, bytes) in [
        ("compare.md", markdown::render(&comparison)),
        ("compare.html", html::render(&comparison)),
    ] {
        let path = out.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    }
    print!("{}", summary(&comparison));
    println!("compare.md:   {}", out.join("compare.md").display());
    println!("compare.html: {}", out.join("compare.html").display());
    Ok(comparison.capacity)
}

/// The terminal summary (also the top of compare.md).
pub fn summary(c: &Comparison) -> String {
    let scale = c
        .scale
        .as_ref()
        .map_or(String::new(), |s| format!("  scale: {s}\n"));
    format!(
        "knee compare: {} → {}\n  capacity      {}\n  latency knee  {}\n  saturation    {}\n  was: {}\n  now: {}\n{scale}",
        c.before.label,
        c.after.label,
        c.capacity.describe("req/s"),
        c.latency_knee.describe("req/s"),
        c.saturation.describe("req/s"),
        c.verdict_before,
        c.verdict_after,
    )
}

/// Whether B is slower than A by more than `threshold` (a fraction: 0.05 is 5 %).
pub fn slower_than(capacity: &Shift, threshold: f64) -> bool {
    match (capacity.before, capacity.after) {
        (Some(a), Some(b)) => b < a * (1.0 - threshold),
        (Some(_), None) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifts_are_described_with_absolute_and_relative_change() {
        let s = Shift {
            before: Some(480.0),
            after: Some(675.0),
        };
        assert_eq!(s.describe("req/s"), "480 → 675 req/s (+195, +40.6 %)");
        assert!(!slower_than(&s, 0.05));
        let worse = Shift {
            before: Some(480.0),
            after: Some(450.0),
        };
        assert!(slower_than(&worse, 0.05), "-6.25 % is more than 5 %");
        assert!(!slower_than(&worse, 0.10));
    }
}

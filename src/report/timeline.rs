//! The run as it happened, on one time axis from the run's start: offered and achieved
//! requests/s, errors/s and p50/p99 per time slice (each step's `slices`), the target's CPU
//! and memory from samples.jsonl, step starts marked and a hunt's phases shaded. It is the
//! first thing people look at in a load tester's report, and the only chart that makes sense
//! for a one-step run. compare.html overlays two of them.

use super::charts::{self, Band, Chart, Legend, Mark, Series, Style, PALETTE, WIDE};
use crate::model::Phase;
use crate::model::RunRecord;
use serde::Deserialize;
use std::io::BufRead;
use std::path::Path;

/// At most this many points per series, whatever the run's length.
const MAX_POINTS: usize = 1500;
/// Above this many steps, step starts are marked without their names.
const NAMED_STEPS: usize = 16;

/// One step's place on the time line.
pub struct Span {
    pub name: String,
    pub phase: Phase,
    pub from: f64,
    pub to: f64,
}

/// The series of one run against time (s from its start).
#[derive(Default)]
pub struct Timeline {
    pub spans: Vec<Span>,
    pub offered: Vec<(f64, f64)>,
    /// The run's load is user flows: `offered` counts flows started, not requests.
    pub flows: bool,
    pub achieved: Vec<(f64, f64)>,
    pub errors: Vec<(f64, f64)>,
    pub p50: Vec<(f64, f64)>,
    pub p99: Vec<(f64, f64)>,
    pub target_cpu: Vec<(f64, f64)>,
    pub host_cpu: Vec<(f64, f64)>,
    pub generator_cpu: Vec<(f64, f64)>,
    pub target_rss: Vec<(f64, f64)>,
}

/// The few columns of samples.jsonl the timeline draws.
#[derive(Deserialize)]
struct SampleRow {
    t_s: f64,
    #[serde(rename = "target.cpu_cores")]
    target_cpu: Option<f64>,
    #[serde(rename = "host.cpu_cores")]
    host_cpu: Option<f64>,
    #[serde(rename = "generator.cpu_cores")]
    generator_cpu: Option<f64>,
    #[serde(rename = "target.rss_mb")]
    target_rss: Option<f64>,
}

impl Timeline {
    /// The run's time line; samples are read from `dir/samples.jsonl` when it is there.
    /// Steps recorded before `started_s` existed are laid end to end from 0.
    pub fn read(run: &RunRecord, dir: &Path) -> Timeline {
        let mut t = Timeline {
            flows: crate::model::RateUnit::of_steps(&run.steps) == crate::model::RateUnit::Flows,
            ..Timeline::default()
        };
        let mut next = 0.0;
        for step in &run.steps {
            let from = step.started_s.unwrap_or(next);
            let to = from + step.warmup_s + step.duration_s;
            next = to;
            // Each step its own segment (NaN breaks the line): pauses between steps stay empty.
            if let Some(rate) = step.offered_rps {
                t.offered.extend([(from, rate), (to, rate), (to, f64::NAN)]);
            }
            let len = slice_len(step);
            for slice in &step.slices {
                let at = from + slice.t_s + len / 2.0;
                t.achieved.push((at, slice.completed_rps));
                t.errors.push((at, slice.errors as f64 / len));
                if slice.requests > slice.errors {
                    t.p50.push((at, slice.p50_ms));
                    t.p99.push((at, slice.p99_ms));
                }
            }
            for series in [&mut t.achieved, &mut t.errors, &mut t.p50, &mut t.p99] {
                if series.last().is_some_and(|p| p.1.is_finite()) {
                    series.push((to, f64::NAN));
                }
            }
            t.spans.push(Span {
                name: step.name.clone(),
                phase: step.phase,
                from,
                to,
            });
        }
        t.read_samples(&dir.join("samples.jsonl"));
        t.thin();
        t
    }

    /// Streams samples.jsonl (a day-long soak's file is large), keeping four columns.
    fn read_samples(&mut self, path: &Path) {
        let Ok(file) = std::fs::File::open(path) else {
            return;
        };
        for line in std::io::BufReader::new(file).lines().map_while(Result::ok) {
            let Ok(row) = serde_json::from_str::<SampleRow>(&line) else {
                continue;
            };
            let t = row.t_s;
            let put = |series: &mut Vec<(f64, f64)>, v: Option<f64>| {
                if let Some(v) = v.filter(|v| v.is_finite()) {
                    series.push((t, v));
                }
            };
            put(&mut self.target_cpu, row.target_cpu);
            put(&mut self.host_cpu, row.host_cpu);
            put(&mut self.generator_cpu, row.generator_cpu);
            put(&mut self.target_rss, row.target_rss);
        }
    }

    fn thin(&mut self) {
        use charts::{max_of, mean_of, thin};
        for (series, merge) in [
            (&mut self.achieved, mean_of as fn(&[f64]) -> f64),
            (&mut self.errors, mean_of),
            (&mut self.p50, mean_of),
            (&mut self.p99, max_of),
            (&mut self.target_cpu, mean_of),
            (&mut self.host_cpu, mean_of),
            (&mut self.generator_cpu, mean_of),
            (&mut self.target_rss, max_of),
        ] {
            *series = thin(series, MAX_POINTS, merge);
        }
    }

    /// Step starts, named on the first chart when there are few steps.
    fn marks(&self, named: bool) -> Vec<Mark> {
        let name = named && self.spans.len() <= NAMED_STEPS;
        self.spans
            .iter()
            .skip(1)
            .map(|s| Mark {
                x: s.from,
                label: if name { s.name.clone() } else { String::new() },
            })
            .collect()
    }

    /// A hunt's or a stress run's phases, shaded: each run of steps in one phase.
    fn bands(&self) -> Vec<Band> {
        let mut bands: Vec<Band> = Vec::new();
        for span in &self.spans {
            match bands.last_mut() {
                Some(band) if band.label == phase_name(span.phase) => band.to = span.to,
                _ => bands.push(Band {
                    from: span.from,
                    to: span.to,
                    label: phase_name(span.phase).to_string(),
                    color: phase_color(span.phase),
                }),
            }
        }
        let phases: std::collections::BTreeSet<&str> =
            bands.iter().map(|b| b.label.as_str()).collect();
        if phases.len() < 2 {
            return Vec::new();
        }
        bands
    }

    /// The report's time charts, as SVG strings: requests, latency, CPU, memory.
    pub fn charts(&self) -> Vec<String> {
        let x = "time (s)";
        let mut requests = Chart::new("Requests over time", x, "req/s", WIDE);
        requests.series = vec![
            Series::new(
                match self.flows {
                    true => "flows offered/s",
                    false => "offered",
                },
                self.offered.clone(),
                5,
                Style::Line,
            ),
            Series::new("achieved", self.achieved.clone(), 0, Style::Line),
            Series::new("errors", self.errors.clone(), 3, Style::Line),
        ];
        let mut latency = Chart::new(
            "Latency over time (from the intended send)",
            x,
            "ms (log)",
            WIDE,
        );
        latency.log_y = true;
        latency.series = vec![
            Series::new("p50", self.p50.clone(), 0, Style::Line),
            Series::new("p99", self.p99.clone(), 3, Style::Line),
        ];
        let mut cpu = Chart::new("CPU over time", x, "cores", WIDE);
        cpu.series = vec![
            Series::new("target", self.target_cpu.clone(), 3, Style::Line),
            Series::new("host", self.host_cpu.clone(), 0, Style::Line),
            Series::new("generator", self.generator_cpu.clone(), 2, Style::Line),
        ];
        let mut memory = Chart::new("Target memory over time", x, "RSS (MB)", WIDE);
        memory.series = vec![Series::new("RSS", self.target_rss.clone(), 4, Style::Line)];
        [
            (requests, true),
            (latency, false),
            (cpu, false),
            (memory, false),
        ]
        .into_iter()
        .filter(|(c, _)| c.has_data())
        .map(|(mut chart, first)| {
            chart.legend = Legend::Beside;
            chart.marks = self.marks(first);
            chart.bands = self.bands();
            chart.svg()
        })
        .collect()
    }
}

/// Seconds per slice of a step (slices split its whole length, warm-up included).
fn slice_len(step: &crate::model::step::StepResult) -> f64 {
    match step.slices.as_slice() {
        [a, b, ..] => (b.t_s - a.t_s).max(1e-3),
        _ => (step.warmup_s + step.duration_s).max(1e-3),
    }
}

pub fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Probe => "probe",
        Phase::Search => "search",
        Phase::Hold => "holds",
        Phase::Step => "steps",
        Phase::Window => "windows",
        Phase::Recovery => "recovery",
    }
}

fn phase_color(phase: Phase) -> plotters::style::RGBColor {
    match phase {
        Phase::Probe => PALETTE[5],
        Phase::Search => PALETTE[0],
        Phase::Hold => PALETTE[2],
        Phase::Step | Phase::Window => PALETTE[4],
        Phase::Recovery => PALETTE[1],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::step::{Slice, StepResult};

    fn step(name: &str, phase: Phase, started: f64, rate: f64) -> StepResult {
        let mut s = crate::model::step::testing::step(name, phase, rate, rate, 5.0);
        s.started_s = Some(started);
        s.warmup_s = 0.0;
        s.duration_s = 1.0;
        s.slices = (0..4)
            .map(|i| Slice {
                t_s: i as f64 * 0.25,
                requests: 10,
                errors: 1,
                completed_rps: rate,
                p50_ms: 1.0,
                p99_ms: 5.0,
            })
            .collect();
        s
    }

    #[test]
    fn slices_and_samples_land_on_the_run_time_line() {
        let mut run: RunRecord =
            serde_json::from_str(include_str!("../../tests/fixtures/hunt-cpu-bound.run.json"))
                .unwrap();
        run.steps = vec![
            step("probe", Phase::Probe, 0.5, 100.0),
            step("search-1", Phase::Search, 2.0, 400.0),
            step("search-2", Phase::Search, 3.0, 800.0),
        ];
        let dir = std::env::temp_dir().join(format!("knee-timeline-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("samples.jsonl"),
            "{\"t_s\":1.0,\"target.cpu_cores\":0.5,\"target.rss_mb\":20}\nnot json\n{\"t_s\":2.0,\"host.cpu_cores\":1.5}\n",
        )
        .unwrap();
        let t = Timeline::read(&run, &dir);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(t.offered[3], (2.0, 400.0), "offered is a staircase");
        assert!(t.offered[2].1.is_nan(), "broken between steps");
        assert_eq!(t.achieved.len(), 15, "4 slices and a break per step");
        assert!(
            (t.achieved[5].0 - 2.125).abs() < 1e-9,
            "{:?}",
            t.achieved[5]
        );
        assert!(
            (t.errors[0].1 - 4.0).abs() < 1e-9,
            "1 error per 0.25 s slice"
        );
        assert_eq!(t.target_cpu, vec![(1.0, 0.5)]);
        assert_eq!(t.host_cpu, vec![(2.0, 1.5)]);
        let bands = t.bands();
        assert_eq!(bands.len(), 2);
        assert_eq!(
            (bands[1].label.as_str(), bands[1].from, bands[1].to),
            ("search", 2.0, 4.0)
        );
        assert_eq!(t.marks(true)[0].label, "search-1");
        assert_eq!(t.charts().len(), 4);
    }
}

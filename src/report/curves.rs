//! Charts with one point per step: the knee curve (p99 against good throughput, the curve
//! that shows where a service bends) and the per-step figures against offered rate (or
//! concurrency). Points are sorted by load within each phase and each phase is its own
//! series, so a search that went up and down never zigzags across the axis; probe and
//! recovery steps are lone markers. A soak's windows get their trend charts instead.

use super::charts::{Chart, Legend, Mark, Series, Style, GRID, WIDE};
use crate::analyze::mean;
use crate::model::step::StepResult;
use crate::model::RunRecord;
use crate::model::{Phase, RateUnit};

/// Open-model runs are plotted against offered rate (their closed-model probe steps left
/// out: concurrency is not on that axis), closed-model runs against concurrency.
fn open_model(run: &RunRecord) -> bool {
    run.steps.iter().any(|s| s.offered_rps.is_some())
}

fn load_axis(run: &RunRecord) -> &'static str {
    match open_model(run) {
        true => RateUnit::of_steps(&run.steps).offered_axis(),
        false => "concurrency",
    }
}

/// A run of user flows: its rates count flows, not requests.
fn flows(run: &RunRecord) -> bool {
    RateUnit::of_steps(&run.steps) == RateUnit::Flows
}

/// The load a step is plotted at, on its run's axis.
fn load_of(run_is_open: bool, s: &StepResult) -> Option<f64> {
    if run_is_open {
        s.offered_rps
    } else {
        s.concurrency.map(f64::from)
    }
}

/// The distinct loads a run was measured at (a one-step run has one: no per-step charts).
pub fn distinct_loads(run: &RunRecord) -> usize {
    let open = open_model(run);
    let mut loads: Vec<f64> = run.steps.iter().filter_map(|s| load_of(open, s)).collect();
    loads.sort_by(f64::total_cmp);
    loads.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
    loads.len()
}

/// The knee curve of a run: (good req/s, p99 ms) per step, probe and recovery left out,
/// in order of offered load.
pub fn knee_points(run: &RunRecord) -> Vec<(f64, f64)> {
    let open = open_model(run);
    let load = |s: &StepResult| load_of(open, s).unwrap_or(0.0);
    let mut steps: Vec<&StepResult> = run
        .steps
        .iter()
        .filter(|s| !matches!(s.phase, Phase::Recovery) && s.requests > 0)
        .filter(|s| load_of(open, s).is_some())
        .collect();
    steps.sort_by(|a, b| load(a).total_cmp(&load(b)));
    steps
        .iter()
        .map(|s| (s.ok_rps, s.latency_ms.p99.max(0.001)))
        .collect()
}

/// Capacity, latency knee and saturation as labelled marks (`suffix` tells two runs apart);
/// figures that coincide share one mark ("capacity = latency knee 425/s").
pub fn knee_marks(run: &RunRecord, suffix: &str) -> Vec<Mark> {
    let Some(k) = run.hunt.as_ref().or(run.stress.as_ref()) else {
        return Vec::new();
    };
    let mut named: Vec<(Vec<&str>, f64)> = Vec::new();
    for (name, x) in [
        ("capacity", k.capacity_rps),
        ("latency knee", k.latency_knee_rps),
        ("saturation", k.saturation_rps),
    ] {
        let Some(x) = x else { continue };
        match named.iter_mut().find(|(_, at)| (*at - x).abs() < 0.5) {
            Some((names, _)) => names.push(name),
            None => named.push((vec![name], x)),
        }
    }
    named
        .into_iter()
        .map(|(names, x)| Mark {
            x,
            label: format!("{}{suffix} {x:.0}/s", names.join(" = ")),
        })
        .collect()
}

/// The steps of the knee curve that held their SLO and those that did not.
fn held_and_failed(run: &RunRecord) -> [Vec<(f64, f64)>; 2] {
    let (mut held, mut failed) = (Vec::new(), Vec::new());
    for s in run
        .steps
        .iter()
        .filter(|s| s.phase != Phase::Recovery && s.requests > 0)
    {
        if load_of(open_model(run), s).is_none() {
            continue;
        }
        let point = (s.ok_rps, s.latency_ms.p99.max(0.001));
        if s.holds {
            held.push(point);
        } else {
            failed.push(point);
        }
    }
    [held, failed]
}

/// The knee chart of one run: the curve in order of offered load, each step marked by
/// whether it held the SLO.
pub fn knee_chart(run: &RunRecord) -> Chart<'static> {
    let mut chart = Chart::new(
        "The knee: p99 against good throughput (one point per step, joined by offered load)",
        if flows(run) {
            "good throughput (completed flows/s)"
        } else {
            "good throughput (ok req/s)"
        },
        "p99 ms (log)",
        (WIDE.0, 380),
    );
    chart.log_y = true;
    let [held, failed] = held_and_failed(run);
    chart.series = vec![
        Series::new("", knee_points(run), 5, Style::Line),
        Series::new("held the SLO", held, 2, Style::Points),
        Series::new("failed the SLO", failed, 3, Style::Crosses),
    ];
    chart.marks = knee_marks(run, "");
    // Low throughput at high latency: the one corner a knee curve leaves empty (lower right
    // is where it bends, and the legend hid the points around the knee there).
    chart.legend = Legend::UpperLeft;
    chart
}

/// One figure of the steps, as one series per phase (in the order the phases ran), each
/// sorted by load. The first sweep (search or steps) carries the legend; holds are a second
/// line in the same color, the probe lone dots and recovery crosses (the page says so).
fn by_phase<'a>(
    run: &'a RunRecord,
    label: &'a str,
    color: usize,
    y: &dyn Fn(&StepResult) -> Option<f64>,
) -> Vec<Series<'a>> {
    let mut phases: Vec<Phase> = Vec::new();
    for s in &run.steps {
        if !phases.contains(&s.phase) {
            phases.push(s.phase);
        }
    }
    let open = open_model(run);
    let mut labelled = false;
    phases
        .into_iter()
        .map(|phase| {
            let mut points: Vec<(f64, f64)> = run
                .steps
                .iter()
                .filter(|s| s.phase == phase)
                .filter_map(|s| Some((load_of(open, s)?, y(s)?)))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let style = match phase {
                Phase::Probe => Style::Points,
                Phase::Recovery => Style::Crosses,
                _ => Style::LinePoints,
            };
            let legend = style == Style::LinePoints && !std::mem::replace(&mut labelled, true);
            Series::new(if legend { label } else { "" }, points, color, style)
        })
        .collect()
}

/// The per-step charts for a run of several loads.
pub fn step_charts(run: &RunRecord) -> Vec<String> {
    let x = load_axis(run);
    let ok = |s: &StepResult| (s.requests > 0).then_some(s.latency_ms.p50);
    let unit = RateUnit::of_steps(&run.steps).per_second();
    let mut throughput = Chart::new("Throughput per step", x, unit, GRID);
    throughput.series = [
        by_phase(run, "achieved", 0, &|s| Some(s.achieved_rps)),
        by_phase(run, "good (not errors)", 2, &|s| Some(s.ok_rps)),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut latency = Chart::new(
        "Latency per step (from the intended send)",
        x,
        "ms (log)",
        GRID,
    );
    latency.log_y = true;
    latency.series = [
        by_phase(run, "p50", 0, &ok),
        by_phase(run, "p99", 3, &|s| {
            (s.requests > 0).then_some(s.latency_ms.p99)
        }),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut errors = Chart::new("Errors per step", x, "% of requests", GRID);
    errors.series = by_phase(run, "errors", 3, &|s| Some(100.0 * s.error_rate));
    let mut cpu = Chart::new("CPU per step", x, "cores", GRID);
    cpu.series = [
        by_phase(run, "target", 3, &|s| mean(s, "target.cpu_cores")),
        by_phase(run, "host", 0, &|s| mean(s, "host.cpu_cores")),
        by_phase(run, "generator", 2, &|s| Some(s.generator.cpu_cores)),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut memory = Chart::new("Target memory per step", x, "RSS (MB)", GRID);
    memory.series = by_phase(run, "RSS", 4, &|s| mean(s, "target.rss_mb"));
    let mut lag = Chart::new("Generator: send lag p99 per step", x, "ms", GRID);
    lag.series = by_phase(run, "send lag p99", 1, &|s| {
        Some(s.generator.send_lag_p99_ms)
    });
    let marks = || knee_marks(run, "").into_iter().take(1).collect::<Vec<_>>();
    [throughput, latency, errors, cpu, memory, lag]
        .into_iter()
        .filter(Chart::has_data)
        .map(|mut c| {
            if load_axis(run).starts_with("offered") {
                c.marks = marks();
            }
            c.svg()
        })
        .collect()
}

/// A soak's windows: RSS, open fds and p99 per window with their trend lines, the evidence
/// the soak verdict reads.
pub fn soak_charts(run: &RunRecord) -> Vec<String> {
    let mut end = 0.0;
    let windows: Vec<(f64, &StepResult)> = run
        .steps
        .iter()
        .map(|s| {
            end = s.started_s.unwrap_or(end) + s.warmup_s + s.duration_s;
            (end, s)
        })
        .collect();
    type Figure<'f> = (&'f str, &'f str, &'f dyn Fn(&StepResult) -> Option<f64>);
    let figures: [Figure; 3] = [
        ("Target memory per window", "RSS (MB)", &|s| {
            mean(s, "target.rss_mb")
        }),
        ("Target open fds per window", "fds", &|s| {
            mean(s, "target.fds")
        }),
        ("p99 per window", "ms", &|s| {
            (s.requests > 0).then_some(s.latency_ms.p99)
        }),
    ];
    figures
        .into_iter()
        .map(|(title, unit, y)| {
            let points: Vec<(f64, f64)> = windows
                .iter()
                .filter_map(|(t, s)| Some((*t, y(s)?)))
                .collect();
            let trend = trend(&points);
            let mut chart = Chart::new(title, "time (s)", unit, GRID);
            chart.series = vec![Series::new("per window", points, 4, Style::LinePoints)];
            chart.series.extend(trend);
            chart
        })
        .filter(Chart::has_data)
        .map(|c| c.svg())
        .collect()
}

/// The least-squares trend through a soak's windows, the first (warm-up) left out as the
/// soak analysis does.
fn trend(points: &[(f64, f64)]) -> Option<Series<'static>> {
    let fitted = points.get(1..)?;
    let (slope, intercept, _) = crate::analyze::linear_fit(fitted)?;
    let (x0, x1) = (fitted.first()?.0, fitted.last()?.0);
    Some(Series::new(
        "trend",
        vec![(x0, intercept + slope * x0), (x1, intercept + slope * x1)],
        3,
        Style::Line,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(steps: Vec<StepResult>) -> RunRecord {
        let mut run: RunRecord =
            serde_json::from_str(include_str!("../../tests/fixtures/hunt-cpu-bound.run.json"))
                .unwrap();
        run.steps = steps;
        run
    }

    #[test]
    fn a_search_that_went_up_and_down_is_drawn_sorted_per_phase() {
        let r = run(vec![
            crate::model::step::testing::step("probe", Phase::Probe, 50.0, 50.0, 1.0),
            crate::model::step::testing::step("s1", Phase::Search, 800.0, 500.0, 90.0),
            crate::model::step::testing::step("s2", Phase::Search, 400.0, 400.0, 2.0),
            crate::model::step::testing::step("s3", Phase::Search, 600.0, 590.0, 9.0),
            crate::model::step::testing::step("h1", Phase::Hold, 550.0, 550.0, 4.0),
            crate::model::step::testing::step("recovery", Phase::Recovery, 50.0, 50.0, 1.0),
        ]);
        let series = by_phase(&r, "p99", 3, &|s| Some(s.latency_ms.p99));
        assert_eq!(series.len(), 4, "probe, search, hold, recovery");
        let search = &series[1];
        assert_eq!(
            search.points.iter().map(|p| p.0).collect::<Vec<_>>(),
            vec![400.0, 600.0, 800.0]
        );
        assert_eq!(series[0].style, Style::Points);
        assert_eq!(series[3].style, Style::Crosses);
        // The knee curve: by offered load, recovery left out; x is good throughput.
        let curve = knee_points(&r);
        assert_eq!(curve.len(), 5);
        assert_eq!(curve[1], (400.0, 2.0));
        assert_eq!(curve[4], (500.0, 90.0), "overload: throughput falls back");
        assert_eq!(distinct_loads(&r), 5);
    }
}

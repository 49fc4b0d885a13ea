//! The knee curve in the terminal: p99 and good throughput against offered rate as two small
//! braille charts (the textplots crate), printed at the end of a hunt or a stress run above
//! the verdict block, so the bend is seen without opening a file. Plain text, no colour
//! codes: it reads the same in a CI log as in a terminal.

use crate::model::Phase;
use crate::model::RunRecord;
use textplots::{Chart, LabelBuilder, LabelFormat, Plot, Shape};

/// Braille dots across and down (two dots per column, four per row: 60 × 8 characters).
const WIDTH: u32 = 120;
const HEIGHT: u32 = 32;

/// The two charts, or None when the run has fewer than three loads (no curve to see).
pub fn knee_curve(run: &RunRecord) -> Option<String> {
    let mut steps: Vec<(f64, f64, f64)> = run
        .steps
        .iter()
        .filter(|s| s.phase != Phase::Recovery && s.requests > 0)
        .filter_map(|s| Some((s.offered_rps?, s.latency_ms.p99, s.ok_rps)))
        .collect();
    steps.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut loads: Vec<f64> = steps.iter().map(|s| s.0).collect();
    loads.dedup();
    if loads.len() < 3 {
        return None;
    }
    let (x0, x1) = (loads[0], loads[loads.len() - 1]);
    let capacity = run
        .hunt
        .as_ref()
        .or(run.stress.as_ref())
        .and_then(|k| k.capacity_rps);
    let p99: Vec<(f32, f32)> = steps.iter().map(|s| (s.0 as f32, s.1 as f32)).collect();
    let ok: Vec<(f32, f32)> = steps.iter().map(|s| (s.0 as f32, s.2 as f32)).collect();
    let mut out = String::new();
    let marked = capacity.map_or(String::new(), |c| format!(" (| capacity {c:.0}/s)"));
    let unit = crate::model::RateUnit::of_steps(&run.steps).per_second();
    out.push_str(&format!("p99 (ms) against offered rate ({unit}){marked}\n"));
    out.push_str(&chart(&p99, x0, x1, capacity));
    out.push_str(&format!(
        "good throughput (ok {unit}) against offered rate ({unit})\n"
    ));
    out.push_str(&chart(&ok, x0, x1, capacity));
    Some(out)
}

fn chart(points: &[(f32, f32)], x0: f64, x1: f64, mark: Option<f64>) -> String {
    let (lo, hi) = points
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), p| {
            (a.min(p.1), b.max(p.1))
        });
    let (lo, hi) = (lo.min(0.0), if hi > lo { hi } else { lo + 1.0 });
    let mark: Vec<(f32, f32)> = mark
        .filter(|m| (x0..=x1).contains(m))
        .map(|m| vec![(m as f32, lo), (m as f32, hi)])
        .unwrap_or_default();
    let curve = Shape::Lines(points);
    let capacity = Shape::Lines(&mark);
    let mut chart = Chart::new_with_y_range(WIDTH, HEIGHT, x0 as f32, x1 as f32, lo, hi);
    let chart = chart
        .x_label_format(LabelFormat::Custom(Box::new(|v| format!("{v:.0}"))))
        .y_label_format(LabelFormat::Custom(Box::new(|v| format!("{v:.0}"))))
        .lineplot(&curve)
        .lineplot(&capacity);
    chart.axis();
    chart.figures();
    // The crate pads with U+2800 (blank braille); plain spaces copy better into tickets.
    chart.to_string().replace('\u{2800}', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::step::testing::step;

    #[test]
    fn a_hunt_gets_both_curves_and_a_one_step_run_none() {
        let mut run: RunRecord =
            serde_json::from_str(include_str!("../../tests/fixtures/hunt-cpu-bound.run.json"))
                .unwrap();
        run.steps = vec![
            step("s1", Phase::Search, 100.0, 100.0, 2.0),
            step("s2", Phase::Search, 400.0, 400.0, 3.0),
            step("s3", Phase::Search, 800.0, 500.0, 900.0),
            step("recovery", Phase::Recovery, 100.0, 100.0, 2.0),
        ];
        let text = knee_curve(&run).expect("three loads make a curve");
        assert!(
            text.starts_with("p99 (ms) against offered rate (req/s)"),
            "{text}"
        );
        assert!(text.contains("good throughput (ok req/s)"), "{text}");
        assert!(
            text.contains("900"),
            "the y axis reaches the worst p99: {text}"
        );
        assert!(
            text.contains("800"),
            "the x axis reaches the highest rate: {text}"
        );
        assert!(
            text.chars().any(|c| ('\u{2801}'..='\u{28ff}').contains(&c)),
            "braille dots are drawn: {text}"
        );
        assert!(!text.contains('\u{1b}'), "no colour codes");
        run.steps.truncate(1);
        assert!(knee_curve(&run).is_none());
    }
}

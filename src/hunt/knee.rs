//! The knee, three ways: capacity (highest offered rate that held), the latency knee (Kneedle on
//! offered rate vs p99: where the curve bends), and saturation throughput (the plateau of good
//! responses per second). Plus a Little's-law consistency check per step.

use crate::model::figures::IN_FLIGHT_EVERY;
use crate::model::step::StepResult;

/// Kneedle (Satopää et al., 2011) for a convex increasing curve such as p99 vs offered rate:
/// normalise both axes to [0, 1] and take the point furthest below the diagonal. Returns the
/// x of the knee, or None when the curve does not bend enough (`min_bend` of the unit square).
pub fn kneedle(points: &[(f64, f64)], min_bend: f64) -> Option<f64> {
    let mut points: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    points.dedup_by(|a, b| a.0 == b.0);
    if points.len() < 3 {
        return None;
    }
    let (x0, x1) = (points[0].0, points[points.len() - 1].0);
    let y0 = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let y1 = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    if x1 <= x0 || y1 <= y0 {
        return None;
    }
    let (best_x, best_diff) = points
        .iter()
        .map(|&(x, y)| (x, (x - x0) / (x1 - x0) - (y - y0) / (y1 - y0)))
        .fold((x0, f64::NEG_INFINITY), |best, cur| {
            if cur.1 > best.1 {
                cur
            } else {
                best
            }
        });
    (best_diff >= min_bend).then_some(best_x)
}

/// The Little's-law check: the mean number of requests in flight (sampled) should equal
/// throughput × mean service time. Returns a note when they differ by more than 25 % and by
/// more than the sampling noise: the count in flight is about Poisson (variance = mean) and
/// is sampled every 10 ms, so over a short step with few in flight the sampled mean wanders
/// (2.8 measured vs 2.2 predicted was seen on a healthy 600 ms step). The tolerance is three
/// standard errors of that mean, counting the samples as half independent.
pub fn littles_law_note(step: &StepResult) -> Option<String> {
    // A flow step's achieved rate counts flows; what is in flight are its requests.
    let rate = match step.flows {
        Some(_) => step.requests as f64 / step.duration_s.max(1e-9),
        None => step.achieved_rps,
    };
    let predicted = rate * step.service_ms.mean / 1000.0;
    let measured = step.in_flight_mean;
    if predicted.max(measured) < 0.5 {
        return None; // too few in flight for the ratio to mean anything
    }
    let samples = (step.duration_s / IN_FLIGHT_EVERY.as_secs_f64()).max(2.0);
    let noise = 3.0 * (predicted / (samples / 2.0)).sqrt();
    let tolerance = (0.25 * predicted).max(noise);
    ((measured - predicted).abs() > tolerance).then(|| {
        format!(
            "Little's law does not hold: {measured:.1} in flight measured vs {predicted:.1} = \
             {:.0}/s x {:.1}ms (timeouts or requests queued outside the histograms?)",
            rate, step.service_ms.mean
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(duration_s: f64, rps: f64, service_ms: f64, in_flight: f64) -> StepResult {
        let run: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/hunt-cpu-bound.run.json"))
                .unwrap();
        let mut step: StepResult = serde_json::from_value(run["steps"][0].clone()).unwrap();
        step.duration_s = duration_s;
        step.achieved_rps = rps;
        step.service_ms.mean = service_ms;
        step.in_flight_mean = in_flight;
        step
    }

    #[test]
    fn littles_law_allows_for_sampling_noise_on_short_steps() {
        // 102/s x 21.3 ms = 2.2 predicted; 2.8 sampled over 600 ms is noise (seen: healthy).
        assert_eq!(littles_law_note(&step(0.6, 102.0, 21.3, 2.8)), None);
        // The same gap over a minute is not noise.
        assert!(littles_law_note(&step(60.0, 102.0, 21.3, 2.8)).is_some());
        // Requests stuck in flight while nothing completes: 40 vs 0.
        assert!(littles_law_note(&step(0.6, 0.0, 0.0, 40.0)).is_some());
        // Exactly as predicted.
        assert_eq!(littles_law_note(&step(0.6, 400.0, 10.0, 4.0)), None);
    }

    #[test]
    fn finds_the_bend_of_a_hockey_stick() {
        // Flat until 50, then steep.
        let points: Vec<(f64, f64)> = (0..=20)
            .map(|i| {
                let x = i as f64 * 5.0;
                (
                    x,
                    if x <= 50.0 {
                        1.0
                    } else {
                        1.0 + 2.0 * (x - 50.0)
                    },
                )
            })
            .collect();
        assert_eq!(kneedle(&points, 0.1), Some(50.0));
    }

    #[test]
    fn finds_the_knee_of_a_queueing_curve() {
        // M/M/1: latency 1/(μ − λ) with μ = 100; the curve bends between 80 and 95.
        let points: Vec<(f64, f64)> = (1..=19)
            .map(|i| (i as f64 * 5.0, 1.0 / (100.0 - i as f64 * 5.0)))
            .collect();
        let knee = kneedle(&points, 0.1).unwrap();
        assert!((80.0..=95.0).contains(&knee), "{knee}");
    }

    #[test]
    fn a_straight_line_has_no_knee() {
        let points: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 2.0 * i as f64)).collect();
        assert_eq!(kneedle(&points, 0.1), None);
    }
}

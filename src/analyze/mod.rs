//! Analysis of a finished run: the bottleneck verdict (which resource saturated where latency
//! broke, USE-style) and the soak trends (leaks, degradation).

pub mod soak;
pub mod verdict;

use crate::model::observed::{Samplers, Stat};
use crate::model::step::StepResult;

/// The sampler's min/mean/max of `key` during `step`, if it was sampled.
pub fn series(step: &StepResult, key: &str) -> Option<Stat> {
    Samplers::of(step)?.series.get(key).copied()
}

/// The mean of `key` during `step`.
pub fn mean(step: &StepResult, key: &str) -> Option<f64> {
    series(step, key).map(|s| s.mean)
}

/// How many samples the step got.
pub fn sample_count(step: &StepResult) -> u64 {
    Samplers::of(step).map_or(0, |s| s.samples)
}

/// Least-squares line through (x, y): (slope, intercept, R²).
pub fn linear_fit(points: &[(f64, f64)]) -> Option<(f64, f64, f64)> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    let syy: f64 = points.iter().map(|p| (p.1 - mean_y).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let r_squared = if syy == 0.0 {
        0.0
    } else {
        (sxy * sxy) / (sxx * syy)
    };
    Some((slope, mean_y - slope * mean_x, r_squared))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_a_line() {
        let points: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 3.0 * i as f64 + 1.0)).collect();
        let (slope, intercept, r2) = linear_fit(&points).unwrap();
        assert!(
            (slope - 3.0).abs() < 1e-9 && (intercept - 1.0).abs() < 1e-9 && (r2 - 1.0).abs() < 1e-9
        );
        let flat: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 5.0)).collect();
        assert_eq!(linear_fit(&flat).unwrap().2, 0.0);
    }
}

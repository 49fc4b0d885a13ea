//! The Universal Scalability Law, X(N) = λN / (1 + σ(N−1) + κN(N−1)), fitted to a closed-model
//! sweep. Rewritten as N/X = a + b(N−1) + cN(N−1) with a = 1/λ, b = σ/λ, c = κ/λ it is linear
//! in (a, b, c), so ordinary least squares recovers the parameters exactly from exact points.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UslFit {
    /// Throughput of one client, requests/s.
    pub lambda: f64,
    /// Contention (serialized share).
    pub sigma: f64,
    /// Coherency (crosstalk) cost.
    pub kappa: f64,
    /// Concurrency of peak throughput, √((1−σ)/κ); None when κ ≤ 0 (no retrograde region).
    pub peak_concurrency: Option<f64>,
    /// Predicted throughput at the peak (or at the largest N measured when there is none).
    pub peak_throughput: f64,
    /// Goodness of fit on X.
    pub r_squared: f64,
}

impl UslFit {
    pub fn predict(&self, n: f64) -> f64 {
        self.lambda * n / (1.0 + self.sigma * (n - 1.0) + self.kappa * n * (n - 1.0))
    }
}

/// Fits (concurrency, throughput) points; needs at least three distinct concurrencies.
pub fn fit(points: &[(f64, f64)]) -> Option<UslFit> {
    let points: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(n, x)| *n >= 1.0 && *x > 0.0 && n.is_finite() && x.is_finite())
        .collect();
    let mut distinct: Vec<f64> = points.iter().map(|p| p.0).collect();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    if distinct.len() < 3 {
        return None;
    }
    // Normal equations for y = a + b·u + c·v with u = N−1, v = N(N−1), y = N/X.
    let mut ata = [[0.0f64; 3]; 3];
    let mut aty = [0.0f64; 3];
    for &(n, x) in &points {
        let row = [1.0, n - 1.0, n * (n - 1.0)];
        let y = n / x;
        for i in 0..3 {
            aty[i] += row[i] * y;
            for j in 0..3 {
                ata[i][j] += row[i] * row[j];
            }
        }
    }
    let [a, b, c] = solve3(ata, aty)?;
    if a <= 0.0 {
        return None;
    }
    let (lambda, sigma, kappa) = (1.0 / a, b / a, c / a);
    let mean_x = points.iter().map(|p| p.1).sum::<f64>() / points.len() as f64;
    let mut fit = UslFit {
        lambda,
        sigma,
        kappa,
        peak_concurrency: (kappa > 0.0 && sigma < 1.0).then(|| ((1.0 - sigma) / kappa).sqrt()),
        peak_throughput: 0.0,
        r_squared: 0.0,
    };
    let (ss_res, ss_tot) = points.iter().fold((0.0, 0.0), |(res, tot), &(n, x)| {
        (
            res + (x - fit.predict(n)).powi(2),
            tot + (x - mean_x).powi(2),
        )
    });
    fit.r_squared = if ss_tot > 0.0 {
        1.0 - ss_res / ss_tot
    } else {
        1.0
    };
    let largest = *distinct.last().unwrap_or(&1.0);
    fit.peak_throughput = fit.predict(fit.peak_concurrency.unwrap_or(largest));
    Some(fit)
}

/// Solves a 3×3 system by Gaussian elimination with partial pivoting.
fn solve3(mut m: [[f64; 3]; 3], mut v: [f64; 3]) -> Option<[f64; 3]> {
    for col in 0..3 {
        let pivot = (col..3).max_by(|&i, &j| m[i][col].abs().total_cmp(&m[j][col].abs()))?;
        if m[pivot][col].abs() < 1e-300 {
            return None;
        }
        m.swap(col, pivot);
        v.swap(col, pivot);
        for row in col + 1..3 {
            let f = m[row][col] / m[col][col];
            let pivot_row = m[col];
            for (cell, pivot_cell) in m[row].iter_mut().zip(pivot_row).skip(col) {
                *cell -= f * pivot_cell;
            }
            v[row] -= f * v[col];
        }
    }
    let mut x = [0.0; 3];
    for row in (0..3).rev() {
        let tail: f64 = (row + 1..3).map(|k| m[row][k] * x[k]).sum();
        x[row] = (v[row] - tail) / m[row][row];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_exact_parameters() {
        let truth = UslFit {
            lambda: 1200.0,
            sigma: 0.05,
            kappa: 0.002,
            peak_concurrency: None,
            peak_throughput: 0.0,
            r_squared: 1.0,
        };
        let points: Vec<(f64, f64)> = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]
            .iter()
            .map(|&n| (n, truth.predict(n)))
            .collect();
        let fit = fit(&points).unwrap();
        assert!((fit.lambda - 1200.0).abs() < 1e-3, "{fit:?}");
        assert!((fit.sigma - 0.05).abs() < 1e-3, "{fit:?}");
        assert!((fit.kappa - 0.002).abs() < 1e-3, "{fit:?}");
        assert!((fit.r_squared - 1.0).abs() < 1e-9);
        let peak = ((1.0 - 0.05) / 0.002f64).sqrt();
        assert!((fit.peak_concurrency.unwrap() - peak).abs() < 1e-3);
    }

    #[test]
    fn needs_three_concurrencies() {
        assert!(fit(&[(1.0, 10.0), (2.0, 19.0)]).is_none());
        assert!(fit(&[(1.0, 10.0), (1.0, 11.0), (2.0, 19.0)]).is_none());
    }
}

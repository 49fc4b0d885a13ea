//! Soak analysis: one rate held for a long time, recorded as windows (the soak's steps).
//! Trend lines (least squares) of the target's RSS, fds and threads and of p99 over time,
//! reported as slope per hour with R². A *leak* is steady growth: R² ≥ 0.8 and growth over
//! the soak of at least max(8 MB, 10 % of the first window's RSS) (fds: at least 10). A
//! *degradation* is p99 drifting up: R² ≥ 0.6 and the last window's p99 ≥ 1.5× the first's.
//! The first window (warm-up: caches, connections, allocator) is left out of the trends.

use super::{linear_fit, mean};
use crate::plan::Phase;
use crate::step::StepResult;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const LEAK_R2: f64 = 0.8;
pub const LEAK_MIN_MB: f64 = 8.0;
pub const LEAK_MIN_SHARE: f64 = 0.10;
pub const LEAK_MIN_FDS: f64 = 10.0;
pub const DEGRADE_R2: f64 = 0.6;
pub const DEGRADE_FACTOR: f64 = 1.5;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Trend {
    pub slope_per_hour: f64,
    pub r_squared: f64,
    pub first: f64,
    pub last: f64,
    pub points: usize,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SoakAnalysis {
    pub windows: usize,
    pub trends: BTreeMap<String, Trend>,
    pub leak: bool,
    pub degradation: bool,
    pub verdicts: Vec<String>,
}

/// One figure of a window.
type WindowValue = Box<dyn Fn(&StepResult) -> Option<f64>>;

pub fn analyze(steps: &[StepResult]) -> SoakAnalysis {
    let windows: Vec<&StepResult> = steps.iter().filter(|s| s.phase == Phase::Window).collect();
    let mut analysis = SoakAnalysis {
        windows: windows.len(),
        ..SoakAnalysis::default()
    };
    // x: the middle of each window, seconds from the start of the soak.
    let mut elapsed = 0.0;
    let mut times = Vec::new();
    for w in &windows {
        let start = elapsed + w.warmup_s;
        times.push(start + w.duration_s / 2.0);
        elapsed = start + w.duration_s;
    }
    let series: [(&str, WindowValue); 4] = [
        ("rss_mb", Box::new(|s| mean(s, "target.rss_mb"))),
        ("fds", Box::new(|s| mean(s, "target.fds"))),
        ("threads", Box::new(|s| mean(s, "target.threads"))),
        (
            "p99_ms",
            Box::new(|s| (s.requests > 0).then_some(s.latency_ms.p99)),
        ),
    ];
    for (name, value) in &series {
        let points: Vec<(f64, f64)> = windows
            .iter()
            .zip(&times)
            .skip(1)
            .filter_map(|(w, t)| value(w).map(|v| (*t, v)))
            .collect();
        if let Some((slope, _, r2)) = linear_fit(&points) {
            analysis.trends.insert(
                name.to_string(),
                Trend {
                    slope_per_hour: slope * 3600.0,
                    r_squared: r2,
                    first: points[0].1,
                    last: points[points.len() - 1].1,
                    points: points.len(),
                },
            );
        }
    }
    judge(&mut analysis);
    analysis
}

fn judge(analysis: &mut SoakAnalysis) {
    let trends = analysis.trends.clone();
    if let Some(rss) = trends.get("rss_mb") {
        let growth = rss.last - rss.first;
        let needed = LEAK_MIN_MB.max(LEAK_MIN_SHARE * rss.first);
        if rss.r_squared >= LEAK_R2 && growth >= needed && rss.slope_per_hour > 0.0 {
            analysis.leak = true;
            analysis.verdicts.push(format!(
                "leak: target RSS grew steadily from {:.1} MB to {:.1} MB ({:+.0} MB/hour, R² {:.2})",
                rss.first, rss.last, rss.slope_per_hour, rss.r_squared
            ));
        }
    }
    if let Some(fds) = trends.get("fds") {
        if fds.r_squared >= LEAK_R2
            && fds.last - fds.first >= LEAK_MIN_FDS
            && fds.slope_per_hour > 0.0
        {
            analysis.leak = true;
            analysis.verdicts.push(format!(
                "leak: open fds grew steadily from {:.0} to {:.0} ({:+.0}/hour, R² {:.2})",
                fds.first, fds.last, fds.slope_per_hour, fds.r_squared
            ));
        }
    }
    if let Some(p99) = trends.get("p99_ms") {
        if p99.r_squared >= DEGRADE_R2
            && p99.last >= DEGRADE_FACTOR * p99.first
            && p99.slope_per_hour > 0.0
        {
            analysis.degradation = true;
            analysis.verdicts.push(format!(
                "degradation: p99 drifted from {:.1}ms to {:.1}ms ({:+.1} ms/hour, R² {:.2})",
                p99.first, p99.last, p99.slope_per_hour, p99.r_squared
            ));
        }
    }
    if analysis.verdicts.is_empty() {
        analysis.verdicts.push(if trends.contains_key("rss_mb") {
            "steady: no leak (RSS, fds) and no latency drift".to_string()
        } else {
            "no leak verdict: the target process is unknown (give --pid, --spawn or --demo); no latency drift".to_string()
        });
    }
}

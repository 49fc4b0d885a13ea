//! Soak analysis: one rate held for a long time, recorded as windows (the soak's steps).
//! Trend lines (least squares) of the target's RSS, fds and threads and of p99 over time,
//! reported as slope per hour with R². A *leak* is steady growth: R² ≥ 0.8 and growth over
//! the soak of at least max(8 MB, 10 % of the first window's RSS) (fds: at least 10). A
//! *degradation* is p99 drifting up: R² ≥ 0.6 and the last window's p99 ≥ 1.5× the first's.
//! The first window (warm-up: caches, connections, allocator) is left out of the trends.
//!
//! knee's own doing is not the target's leak: every connection knee holds to the target is
//! an open fd in it (and a thread, in a thread-per-connection server). So the fd and thread
//! trends are judged on what remains once knee's connections (`generator.connections_mean`,
//! per window) are taken away; a rise that tracks them is named in the evidence, not called
//! a leak. (A 90 s soak of nginx at 5,000 req/s was called "leaking fds, 155 → 222" when
//! every one of them was a connection knee had opened.)

use super::{linear_fit, mean};
use crate::model::step::StepResult;
use crate::model::Phase;
use std::collections::BTreeMap;

pub const LEAK_R2: f64 = 0.8;
pub const LEAK_MIN_MB: f64 = 8.0;
pub const LEAK_MIN_SHARE: f64 = 0.10;
pub const LEAK_MIN_FDS: f64 = 10.0;
pub const DEGRADE_R2: f64 = 0.6;
pub const DEGRADE_FACTOR: f64 = 1.5;

pub use crate::model::soak::{SoakAnalysis, Trend};

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
    let knee_connections = |s: &StepResult| s.generator.connections_mean;
    let series: [(&str, WindowValue); 7] = [
        ("rss_mb", Box::new(|s| mean(s, "target.rss_mb"))),
        ("fds", Box::new(|s| mean(s, "target.fds"))),
        ("threads", Box::new(|s| mean(s, "target.threads"))),
        (
            "p99_ms",
            Box::new(|s| (s.requests > 0).then_some(s.latency_ms.p99)),
        ),
        ("knee_connections", Box::new(knee_connections)),
        (
            "fds_beyond_knee",
            Box::new(move |s| Some(mean(s, "target.fds")? - knee_connections(s)?)),
        ),
        (
            "threads_beyond_knee",
            Box::new(move |s| Some(mean(s, "target.threads")? - knee_connections(s)?)),
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

/// Whether a count (fds, threads) grows steadily.
fn grows(trend: &Trend) -> bool {
    trend.r_squared >= LEAK_R2
        && trend.last - trend.first >= LEAK_MIN_FDS
        && trend.slope_per_hour > 0.0
}

/// A leak of fds or threads, judged on what remains beyond knee's own connections: "leak: …"
/// when that grows, an explanation when only the raw count does, nothing when neither.
fn count_leak(trends: &BTreeMap<String, Trend>, what: &str, raw: &str) -> Option<String> {
    let count = trends.get(raw).filter(|t| grows(t))?;
    let beyond = trends.get(&format!("{raw}_beyond_knee"));
    let knee = trends.get("knee_connections");
    let knee_words = |k: &Trend| {
        format!(
            "knee's own connections to it went {:.0} → {:.0}",
            k.first, k.last
        )
    };
    match (beyond, knee) {
        (Some(beyond), Some(k)) if !grows(beyond) => Some(format!(
            "not a leak: {what} grew from {:.0} to {:.0}, and {}; beyond them the count went {:.0} → {:.0}",
            count.first, count.last, knee_words(k), beyond.first, beyond.last
        )),
        (Some(beyond), Some(k)) => Some(format!(
            "leak: {what} grew steadily from {:.0} to {:.0} ({:+.0}/hour, R² {:.2}); {}, so {:+.0} of them are the target's own",
            count.first, count.last, count.slope_per_hour, count.r_squared, knee_words(k), beyond.last - beyond.first
        )),
        _ => Some(format!(
            "leak: {what} grew steadily from {:.0} to {:.0} ({:+.0}/hour, R² {:.2})",
            count.first, count.last, count.slope_per_hour, count.r_squared
        )),
    }
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
    for (what, raw) in [("open fds", "fds"), ("threads", "threads")] {
        if let Some(line) = count_leak(&trends, what, raw) {
            let leak = line.starts_with("leak");
            analysis.leak |= leak;
            if leak {
                analysis.verdicts.push(line);
            } else {
                analysis.notes.push(line);
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::step::testing::step;

    /// Eight 10 s windows; the target's fds are `fds(i)`, knee's connections `conns(i)`.
    fn soak(fds: impl Fn(f64) -> f64, conns: impl Fn(f64) -> f64) -> SoakAnalysis {
        let windows: Vec<StepResult> = (0..8)
            .map(|i| {
                let i = f64::from(i);
                let mut w = step(&format!("window-{i}"), Phase::Window, 5000.0, 5000.0, 0.7)
                    .with("target.rss_mb", 12.0)
                    .with("target.threads", 3.0)
                    .with("target.fds", fds(i));
                w.duration_s = 10.0;
                w.warmup_s = 0.0;
                w.generator.connections_mean = Some(conns(i));
                w
            })
            .collect();
        analyze(&windows)
    }

    /// nginx's fds rose in lockstep with knee's own connections to it: not a leak.
    #[test]
    fn fds_that_track_knees_own_connections_are_not_a_leak() {
        let steady = soak(|i| 40.0 + 10.0 * i, |i| 2.0 + 10.0 * i);
        assert!(!steady.leak, "{steady:#?}");
        assert!(steady.verdicts[0].starts_with("steady"), "{steady:#?}");
        assert!(
            steady.notes[0].starts_with("not a leak: open fds grew from 50 to 110, and knee's own connections to it went 12 → 72"),
            "{steady:#?}"
        );
    }

    #[test]
    fn fds_that_grow_beyond_knees_connections_are_a_leak() {
        let leaking = soak(|i| 40.0 + 10.0 * i, |_| 8.0);
        assert!(leaking.leak, "{leaking:#?}");
        assert!(
            leaking.verdicts[0].starts_with("leak: open fds grew steadily from 50 to 110"),
            "{leaking:#?}"
        );
        assert!(
            leaking.verdicts[0].ends_with("so +60 of them are the target's own"),
            "{leaking:#?}"
        );
    }
}

//! Service-level objectives: the thresholds a step must meet to *hold*.
//! One parser serves `--slo p99=50ms,errors=1%` and the profile's `[slo]` table, so both
//! accept the same terms. Checks run on the step's full histogram (any percentile), never on
//! pre-computed summary figures.

use crate::model::figures::ProfiledWindow;
use crate::model::figures::SloCheck;
use crate::units::{fmt_ms, parse_duration, parse_fraction};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// A step fails when achieved throughput is below this share of the offered rate (open model).
pub const MIN_ACHIEVED_SHARE: f64 = 0.97;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Slo {
    /// Latency bounds on the corrected latency (from the intended send time).
    pub latency: Vec<LatencyBound>,
    /// Highest allowed share of requests that ended in an error (0.01 = 1 %).
    pub max_error_rate: Option<f64>,
    /// Lowest allowed achieved throughput, requests per second.
    pub min_rps: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyBound {
    /// 50, 90, 99, 99.9 ...; 100 means the maximum.
    pub percentile: f64,
    pub limit_ms: f64,
}

impl LatencyBound {
    pub fn label(&self) -> String {
        if self.percentile >= 100.0 {
            "max".to_string()
        } else {
            format!("p{}", self.percentile)
        }
    }
}

impl Slo {
    /// Whether a step's profiled tail held the SLO's latency and error bounds. The tail keeps
    /// only summary percentiles, so a bound is read at the nearest stored percentile at or
    /// above its own (p95 at p99): a tail that passes held at least that well.
    pub fn tail_holds(&self, tail: &ProfiledWindow) -> bool {
        self.holds_on(&tail.latency_ms, tail.requests, tail.errors)
    }

    /// Whether figures kept as summary percentiles (a profiled tail, one request of a mix)
    /// held the latency and error bounds: a bound is read at the nearest stored percentile
    /// at or above its own; the throughput floor is the step's, not theirs.
    pub fn holds_on(
        &self,
        l: &crate::model::figures::Percentiles,
        requests: u64,
        errors: u64,
    ) -> bool {
        let errors_held = self
            .max_error_rate
            .is_none_or(|max| requests == 0 || errors as f64 / requests as f64 <= max);
        let latency_held = self.latency.iter().all(|bound| {
            let value = match bound.percentile {
                p if p <= 50.0 => l.p50,
                p if p <= 90.0 => l.p90,
                p if p <= 99.0 => l.p99,
                p if p <= 99.9 => l.p999,
                _ => l.max,
            };
            requests == 0 || value <= bound.limit_ms
        });
        errors_held && latency_held
    }
}

/// What a step measured, as far as the SLO needs it.
pub struct StepFigures<'a> {
    pub latency_us: &'a Histogram<u64>,
    pub requests: u64,
    pub errors: u64,
    pub achieved_rps: f64,
    pub offered_rps: Option<f64>,
}

impl Slo {
    /// Parses `p99=50ms,errors=1%,min_rps=100`.
    pub fn parse_list(text: &str) -> Result<Slo, String> {
        let mut slo = Slo::default();
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (key, value) = term
                .split_once('=')
                .ok_or_else(|| format!("SLO term '{term}' is not KEY=VALUE (e.g. p99=50ms)"))?;
            slo.add_term(key.trim(), value.trim())?;
        }
        Ok(slo)
    }

    /// Adds one term: `p99`/`p99.9`/`p50`/`max` = duration, `errors` = percentage,
    /// `min_rps` = number.
    pub fn add_term(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "errors" | "error_rate" => self.max_error_rate = Some(parse_fraction(value)?),
            "min_rps" | "throughput" => {
                let rps: f64 = value
                    .parse()
                    .map_err(|_| format!("SLO {key} = '{value}' is not a number"))?;
                if !(rps.is_finite() && rps > 0.0) {
                    return Err(format!("SLO {key} = '{value}' must be above 0"));
                }
                self.min_rps = Some(rps);
            }
            _ => {
                let percentile = parse_percentile_key(key)?;
                let limit = parse_duration(value).map_err(|e| format!("SLO {key}: {e}"))?;
                self.latency.retain(|b| b.percentile != percentile);
                self.latency.push(LatencyBound {
                    percentile,
                    limit_ms: limit.as_secs_f64() * 1000.0,
                });
            }
        }
        Ok(())
    }

    /// The SLO of a run that declares none: at most 1 % errors (and, in the open model,
    /// achieved ≥ 97 % of offered, which every step is held to).
    pub fn default_for_run() -> Slo {
        Slo {
            max_error_rate: Some(0.01),
            ..Slo::default()
        }
    }

    /// "p99<=50ms, errors<=1%, throughput>=100/s"
    pub fn describe(&self) -> String {
        let mut terms: Vec<String> = self
            .latency
            .iter()
            .map(|b| format!("{}<={}", b.label(), crate::units::fmt_ms(b.limit_ms)))
            .collect();
        if let Some(rate) = self.max_error_rate {
            terms.push(format!("errors<={}%", rate * 100.0));
        }
        if let Some(rps) = self.min_rps {
            terms.push(format!("throughput>={rps}/s"));
        }
        terms.join(", ")
    }

    pub fn is_empty(&self) -> bool {
        self.latency.is_empty() && self.max_error_rate.is_none() && self.min_rps.is_none()
    }

    /// Every way the step missed its objectives, as short human sentences. Empty = it held.
    pub fn failures(&self, step: &StepFigures) -> Vec<String> {
        failures_of(&self.checks(step))
    }

    /// The step's checks; when the generator could not keep up, one failing check saying so
    /// instead (the target's figures then say nothing about the target).
    pub fn judge(&self, generator_limited: Option<&str>, step: &StepFigures) -> Vec<SloCheck> {
        match generator_limited {
            Some(reason) => vec![SloCheck {
                objective: "the generator kept up".into(),
                measured: format!("generator-limited: {reason}"),
                failure: Some(format!("generator-limited: {reason}")),
            }],
            None => self.checks(step),
        }
    }

    /// Each objective the step is held to, passed or not, with the measured figure: the
    /// achieved share of the offered rate (open model), then errors, throughput and each
    /// latency bound. A step where no request completed gets that one failing check.
    pub fn checks(&self, step: &StepFigures) -> Vec<SloCheck> {
        let mut checks = Vec::new();
        if let Some(offered) = step.offered_rps {
            let share = MIN_ACHIEVED_SHARE * 100.0;
            checks.push(check(
                format!("achieved >= {share:.0}% of offered {offered:.1}/s"),
                format!("achieved {:.1}/s", step.achieved_rps),
                step.achieved_rps < offered * MIN_ACHIEVED_SHARE,
                || {
                    format!(
                        "achieved {:.1}/s < {share:.0}% of offered {offered:.1}/s",
                        step.achieved_rps
                    )
                },
            ));
        }
        if step.requests == 0 {
            checks.push(check(
                "a request completed".into(),
                "no request completed".into(),
                true,
                || "no request completed".into(),
            ));
            return checks;
        }
        if let Some(max_rate) = self.max_error_rate {
            let rate = step.errors as f64 / step.requests as f64;
            checks.push(check(
                format!("errors <= {}%", max_rate * 100.0),
                format!(
                    "errors {:.2}% ({} of {})",
                    rate * 100.0,
                    step.errors,
                    step.requests
                ),
                rate > max_rate,
                || format!("errors {:.2}% > {:.2}%", rate * 100.0, max_rate * 100.0),
            ));
        }
        if let Some(min_rps) = self.min_rps {
            checks.push(check(
                format!("throughput >= {min_rps}/s"),
                format!("throughput {:.1}/s", step.achieved_rps),
                step.achieved_rps < min_rps,
                || format!("throughput {:.1}/s < {min_rps}/s", step.achieved_rps),
            ));
        }
        for bound in &self.latency {
            let value_ms = percentile_ms(step.latency_us, bound.percentile);
            let (value, limit) = (fmt_ms(value_ms), fmt_ms(bound.limit_ms));
            checks.push(check(
                format!("{} <= {limit}", bound.label()),
                format!("{} {value}", bound.label()),
                !step.latency_us.is_empty() && value_ms > bound.limit_ms,
                || format!("{} {value} > {limit}", bound.label()),
            ));
        }
        checks
    }
}

/// The failure sentences of these checks, in order.
pub fn failures_of(checks: &[SloCheck]) -> Vec<String> {
    checks.iter().filter_map(|c| c.failure.clone()).collect()
}

fn check(
    objective: String,
    measured: String,
    missed: bool,
    failure: impl FnOnce() -> String,
) -> SloCheck {
    SloCheck {
        objective,
        measured,
        failure: missed.then(failure),
    }
}

/// The value at a percentile of a microsecond histogram, in milliseconds.
pub fn percentile_ms(hist: &Histogram<u64>, percentile: f64) -> f64 {
    if hist.is_empty() {
        return 0.0;
    }
    let us = if percentile >= 100.0 {
        hist.max()
    } else {
        hist.value_at_quantile(percentile / 100.0)
    };
    us as f64 / 1000.0
}

fn parse_percentile_key(key: &str) -> Result<f64, String> {
    if key == "max" {
        return Ok(100.0);
    }
    let unknown =
        || format!("unknown SLO term '{key}' (use p50, p90, p99, p99.9, max, errors, min_rps)");
    let digits = key.strip_prefix('p').ok_or_else(unknown)?;
    // "p999" is the common spelling of p99.9.
    let percentile: f64 = match digits {
        "999" => 99.9,
        "9999" => 99.99,
        _ => digits.parse().map_err(|_| unknown())?,
    };
    if !(percentile > 0.0 && percentile < 100.0) {
        return Err(format!(
            "SLO percentile '{key}' must be between p0 and p100"
        ));
    }
    Ok(percentile)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_terms() {
        let slo = Slo::parse_list("p99=50ms, errors=1%,p99.9=0.2s,max=1s,min_rps=10").unwrap();
        assert_eq!(slo.max_error_rate, Some(0.01));
        assert_eq!(slo.min_rps, Some(10.0));
        let labels: Vec<_> = slo
            .latency
            .iter()
            .map(|b| (b.label(), b.limit_ms))
            .collect();
        assert_eq!(
            labels,
            vec![
                ("p99".to_string(), 50.0),
                ("p99.9".to_string(), 200.0),
                ("max".to_string(), 1000.0)
            ]
        );
        assert!(Slo::parse_list("p99").unwrap_err().contains("KEY=VALUE"));
        assert!(Slo::parse_list("q99=1ms")
            .unwrap_err()
            .contains("unknown SLO term"));
        assert!(Slo::parse_list("p99=fast").is_err());
    }

    #[test]
    fn checks_a_step() {
        let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        for us in 1..=1000u64 {
            hist.record(us * 100).unwrap(); // 0.1 ms .. 100 ms, uniform
        }
        let slo = Slo::parse_list("p50=60ms,p99=50ms,errors=1%").unwrap();
        let figures = StepFigures {
            latency_us: &hist,
            requests: 1000,
            errors: 20,
            achieved_rps: 95.0,
            offered_rps: Some(100.0),
        };
        let failures = slo.failures(&figures);
        assert_eq!(failures.len(), 3, "{failures:?}");
        assert!(failures[0].starts_with("achieved 95.0/s"));
        assert!(failures[1].starts_with("errors 2.00%"));
        assert!(
            failures[2].starts_with("p99 99.") && failures[2].ends_with("> 50.0ms"),
            "{failures:?}"
        );
        let checks = slo.checks(&figures);
        let objectives: Vec<&str> = checks.iter().map(|c| c.objective.as_str()).collect();
        assert_eq!(
            objectives,
            [
                "achieved >= 97% of offered 100.0/s",
                "errors <= 1%",
                "p50 <= 60.0ms",
                "p99 <= 50.0ms"
            ]
        );
        assert_eq!(checks[1].measured, "errors 2.00% (20 of 1000)");
        assert!(checks[2].failure.is_none() && checks[2].measured.starts_with("p50 50."));
        assert_eq!(failures_of(&checks), failures);
        let limited = slo.judge(Some("CPU 100%"), &figures);
        assert_eq!(limited.len(), 1);
        assert_eq!(
            limited[0].failure.as_deref(),
            Some("generator-limited: CPU 100%")
        );
    }
}

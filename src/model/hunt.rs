//! What a hunt or a stress test concluded (`hunt` and `stress` in run.json): the knee three
//! ways, why the search stopped, how the service failed past the knee, the hold steps, and
//! a sweep's Universal Scalability Law fit.

use serde::{Deserialize, Serialize};

/// What a hunt (or a stress test) concluded. Stable names: see BRIEF's `hunt` object.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct KneeAnalysis {
    /// Highest offered rate whose step held.
    pub capacity_rps: Option<f64>,
    /// Where p99 vs offered rate bends (Kneedle).
    pub latency_knee_rps: Option<f64>,
    /// The plateau of good responses per second.
    pub saturation_rps: Option<f64>,
    pub failure_mode: Option<FailureMode>,
    /// Seconds at half capacity until p99 was back within the SLO; None if it did not recover.
    pub recovery_s: Option<f64>,
    /// Whether a recovery step ran (so `recovery_s: null` means "did not recover").
    pub recovery_measured: bool,
    /// The closed-model probe's best throughput.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_ceiling_rps: Option<f64>,
    /// Why the search stopped (or `steps` for a stress test).
    pub ending: Ending,
    /// The SLO the steps were judged by, in words; `slo_default` when knee chose it.
    pub slo: String,
    pub slo_default: bool,
    /// The hold steps: fraction of capacity → what happened.
    pub holds: Vec<HoldLine>,
    pub notes: Vec<String>,
    /// What its rates count: requests, or user flows started (`[[flows]]`).
    #[serde(default, skip_serializing_if = "RateUnit::is_requests")]
    pub rate_unit: RateUnit,
}

/// What an offered rate counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateUnit {
    #[default]
    Requests,
    /// User flows started per second: each flow is several requests.
    Flows,
}

impl RateUnit {
    pub fn of(step: &crate::model::StepResult) -> RateUnit {
        match step.flows {
            Some(_) => RateUnit::Flows,
            None => RateUnit::Requests,
        }
    }

    /// A run's unit: flows/s when any of its steps ran user flows.
    pub fn of_steps<'a>(steps: impl IntoIterator<Item = &'a crate::model::StepResult>) -> RateUnit {
        match steps.into_iter().any(|s| s.flows.is_some()) {
            true => RateUnit::Flows,
            false => RateUnit::Requests,
        }
    }

    /// A chart's load axis in this unit.
    pub fn offered_axis(self) -> &'static str {
        match self {
            RateUnit::Requests => "offered rate (req/s)",
            RateUnit::Flows => "offered rate (flows/s)",
        }
    }

    fn is_requests(&self) -> bool {
        *self == RateUnit::Requests
    }

    /// "req/s" or "flows/s".
    pub fn per_second(self) -> &'static str {
        match self {
            RateUnit::Requests => "req/s",
            RateUnit::Flows => "flows/s",
        }
    }
}

impl KneeAnalysis {
    /// The recovery in words, for reports.
    pub fn recovery_text(&self) -> String {
        match (self.recovery_measured, self.recovery_s) {
            (false, _) => "-".into(),
            (true, Some(s)) => format!("{s:.2} s at half capacity"),
            (true, None) => "did not recover within the step".into(),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HoldLine {
    pub fraction: f64,
    pub step: String,
    pub offered_rps: f64,
    pub ok_rps: f64,
    pub p99_ms: f64,
    pub error_rate: f64,
    pub holds: bool,
}

impl PartialEq<&str> for Ending {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Why a hunt's search stopped (`hunt.ending`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// Held and failed rates are within the resolution.
    Converged,
    /// Held and failed rates are as close as 3-significant-digit rates can be (the next
    /// bisection would offer one of them again).
    ConvergedAtRounding,
    /// The step at `--max-rate` held: capacity is at least that.
    HeldAtMaxRate,
    /// Even the lowest rate failed.
    NothingHeld,
    /// The search ran `MAX_SEARCH_STEPS` steps without converging.
    SearchStepCap,
    /// The generator was the limit before the target was.
    GeneratorLimited,
    /// Ctrl-C, SIGTERM, or a run killed and rebuilt.
    Interrupted,
    /// A stress test: fixed steps, no search.
    #[default]
    Steps,
}

impl Ending {
    /// The name kept in `hunt.ending`.
    pub fn as_str(self) -> &'static str {
        match self {
            Ending::Converged => "converged",
            Ending::ConvergedAtRounding => "converged_at_rounding",
            Ending::HeldAtMaxRate => "held_at_max_rate",
            Ending::NothingHeld => "nothing_held",
            Ending::SearchStepCap => "search_step_cap",
            Ending::GeneratorLimited => "generator_limited",
            Ending::Interrupted => "interrupted",
            Ending::Steps => "steps",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// It took the overload: the step held.
    Holds,
    /// Fast rejections, bounded latency, good throughput held near capacity.
    ShedsGracefully,
    /// Latency grows through the step while few requests fail: an unbounded queue.
    QueuesWithoutBound,
    /// Good throughput fell well below capacity.
    Collapses,
    /// Connections refused after having worked, or the process is gone.
    Crashes,
    /// Slower and over the SLO, but stable: neither queueing without bound nor collapsing.
    Degrades,
    /// The kernel dropped connections (the listen queue overflowed): a tail at TCP's SYN
    /// retransmission timeout while the median stays flat.
    DropsConnections,
}

impl FailureMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureMode::Holds => "holds",
            FailureMode::ShedsGracefully => "sheds_gracefully",
            FailureMode::QueuesWithoutBound => "queues_without_bound",
            FailureMode::Collapses => "collapses",
            FailureMode::Crashes => "crashes",
            FailureMode::Degrades => "degrades",
            FailureMode::DropsConnections => "drops_connections",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            FailureMode::Holds => "holds: it took the overload within its SLO",
            FailureMode::ShedsGracefully => {
                "sheds gracefully: fast rejections, bounded latency, throughput held at capacity"
            }
            FailureMode::QueuesWithoutBound => {
                "queues without bound: latency grows through the step while few requests fail"
            }
            FailureMode::Collapses => "collapses: good throughput falls well below capacity",
            FailureMode::Crashes => "crashes: connections refused after having worked",
            FailureMode::Degrades => "degrades: slower than the SLO allows, but stable",
            FailureMode::DropsConnections => {
                "drops connections: the listen queue overflowed; clients waited for SYN retransmits (a 1 s tail, the median flat)"
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UslFit {
    /// Throughput of one client, requests/s.
    pub lambda: f64,
    /// Contention (serialized share), ≥ 0.
    pub sigma: f64,
    /// Coherency (crosstalk) cost, ≥ 0.
    pub kappa: f64,
    /// Concurrency of peak throughput, √((1−σ)/κ); None when κ = 0 or σ ≥ 1 (no peak).
    pub peak_concurrency: Option<f64>,
    /// Predicted throughput at the peak (or at the largest N measured when there is none).
    pub peak_throughput: f64,
    /// Goodness of fit on X.
    pub r_squared: f64,
    /// R² ≥ 0.8: the coefficients describe the points.
    #[serde(default = "yes")]
    pub follows_usl: bool,
    /// What the points do, in words (always set; the finding when the law does not fit).
    #[serde(default)]
    pub shape: String,
}

fn yes() -> bool {
    true
}

impl UslFit {
    /// The fit in one line, for the terminal and report.md.
    pub fn describe(&self) -> String {
        let fit = self;
        if !fit.follows_usl {
            return format!(
                "USL: the points do not follow the Universal Scalability Law (R^2 {:.2} on throughput): {}",
                fit.r_squared, fit.shape
            );
        }
        format!(
            "USL fit: lambda {:.1} req/s per client, sigma (contention) {:.4}, kappa (coherency) {:.5}, \
             peak at {} clients ({:.0} req/s), R^2 {:.3}; {}",
            fit.lambda,
            fit.sigma,
            fit.kappa,
            fit.peak_concurrency.map_or("no finite".into(), |n| format!("{n:.1}")),
            fit.peak_throughput,
            fit.r_squared,
            fit.shape
        )
    }
}

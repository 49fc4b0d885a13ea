//! The per-step result: the machine-readable contract of `steps.jsonl` and `run.json`
//! (see BRIEF). Field names are stable; add fields freely, rename none without bumping
//! `SCHEMA_VERSION`. Times are milliseconds as floats, rates per second.

pub use super::figures::{
    ByConnection, ConnectTimes, ConnectionLatency, GeneratorHealth, Percentiles, ProfiledWindow,
    Slice, SloCheck,
};
use super::observed::{Observed, OffCpu, Processes, Samplers, StepProfile, Threads};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use super::error_class::ErrorClass;

pub const SCHEMA_VERSION: u32 = 1;

/// What a step is for, in a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Probe,
    Search,
    Hold,
    Step,
    Window,
    Recovery,
}

/// The flows of a step whose load is user flows: those started in the counted window, and
/// how they ended. `achieved_rps` and `ok_rps` are then flows per second (ended, and ended
/// with every step answered below 400), `offered_rps` flows started per second; requests,
/// errors and latency stay per request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FlowFigures {
    pub started: u64,
    /// Every step answered (below 400) and every value taken.
    pub completed: u64,
    /// Stopped by an error: a transport failure, a status of 400 or more, a failed
    /// extraction.
    pub failed: u64,
    /// Stopped because the step ended before their next request was due.
    pub cut: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepResult {
    pub name: String,
    pub phase: Phase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offered_rps: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// When the step began (its warm-up), seconds from the run's start: the time line the
    /// samples (`samples.jsonl` `t_s`) are on too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_s: Option<f64>,
    /// Counted part of the step (after warm-up), seconds.
    pub duration_s: f64,
    pub warmup_s: f64,
    /// Requests whose intended send time fell in the counted part, whatever their outcome.
    pub requests: u64,
    /// Responses received (any status) per second of the counted part.
    pub achieved_rps: f64,
    /// Responses that were not errors, per second.
    pub ok_rps: f64,
    pub errors: u64,
    pub error_rate: f64,
    pub error_classes: BTreeMap<ErrorClass, u64>,
    pub status_codes: BTreeMap<String, u64>,
    /// From the intended send time (no coordinated omission).
    pub latency_ms: Percentiles,
    /// From the actual send.
    pub service_ms: Percentiles,
    /// TCP connect time of each connection the step's requests opened (SYN retransmits
    /// included): a 1 s tail here is the kernel's listen queue, not the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_ms: Option<ConnectTimes>,
    /// TLS handshake time of the same connections, kept apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ms: Option<ConnectTimes>,
    /// Latency on fresh connections against reused ones (when any connection was reused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by_connection: Option<ByConnection>,
    pub generator: GeneratorHealth,
    /// The step met its SLO (and, in the open model, achieved ≥ 97 % of offered).
    pub holds: bool,
    pub slo_failures: Vec<String>,
    /// Each objective the step was held to, passed or not, with the measured figure (the
    /// failures above are the ones that missed). Absent in runs recorded before it was kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slo_checks: Vec<SloCheck>,
    /// Cut short (Ctrl-C).
    pub partial: bool,
    pub warmup_requests: u64,
    /// Requests in flight when the step was cut short; not counted anywhere else.
    pub unfinished: u64,
    /// Mean number of requests in flight (sampled every 10 ms), for the Little's-law check.
    #[serde(default)]
    pub in_flight_mean: f64,
    /// The profiled tail after the counted part (the same load while the profilers
    /// recorded), not counted: its own figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profiled: Option<ProfiledWindow>,
    /// The step in time slices (from its start, warm-up included): how it evolved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slices: Vec<Slice>,
    /// Consistency notes (e.g. Little's law did not hold).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Each request of a mix of several, on its own (its histogram merged across shards).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_request: Vec<RequestResult>,
    /// A load of user flows: their counts (the step's rates are then flows per second).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flows: Option<FlowFigures>,
    /// What the observers saw during the step: samples, profiles, threads, processes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<Observed>,
}
/// One request of the mix over a step's counted window.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RequestResult {
    /// Its name in the profile (`[[requests]] name`, or its method and path).
    pub name: String,
    /// Requests whose intended send time fell in the counted window.
    pub requests: u64,
    /// Its good answers completed in the window, per second.
    pub ok_rps: f64,
    pub errors: u64,
    pub error_rate: f64,
    pub error_classes: BTreeMap<ErrorClass, u64>,
    /// From the intended send time, as the step's.
    pub latency_ms: Percentiles,
    /// Whether it has an SLO of its own (`[requests.slo]`); its failures fail the step.
    pub own_slo: bool,
    /// That SLO (so `knee merge` judges the shards' sum by it again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<crate::slo::Slo>,
    pub holds: bool,
    pub slo_failures: Vec<String>,
}

impl StepResult {
    /// Good answers per second: `ok_rps`, except in a flow step (whose `ok_rps` counts
    /// flows), where it is the sum of its requests' own (a one-request flow: its flows).
    pub fn good_requests_per_s(&self) -> f64 {
        match (&self.flows, self.by_request.is_empty()) {
            (Some(_), false) => self.by_request.iter().map(|r| r.ok_rps).sum(),
            _ => self.ok_rps,
        }
    }
}

impl StepResult {
    /// What a long soak keeps of a window in memory while it runs: no time slices, and of
    /// what was observed only the target's and the generator's sampled series (what the soak
    /// analysis reads). The whole window is in steps.jsonl, which run.json is built from at
    /// the end, so a day-long soak does not hold a day of slices and samples.
    pub fn slimmed(mut self) -> StepResult {
        self.slices = Vec::new();
        self.observed = self.observed.take().and_then(|observed| {
            let samplers = observed.samplers?;
            let series = samplers
                .series
                .into_iter()
                .filter(|(name, _)| name.starts_with("target.") || name.starts_with("generator."))
                .collect();
            Some(Observed {
                samplers: Some(super::observed::Samplers {
                    samples: samplers.samples,
                    series,
                    ..Default::default()
                }),
                ..Observed::default()
            })
        });
        self
    }

    /// "500/s" (open model) or "c=50" (closed model), for report tables.
    pub fn load_label(&self) -> String {
        match (self.offered_rps, self.concurrency) {
            (Some(rps), _) => format!("{}/s", crate::units::fmt_rate(rps)),
            (None, Some(c)) => format!("c={c}"),
            _ => "-".into(),
        }
    }

    /// Whether the step held, in one word: "partial", "generator-limited", "yes" or "no".
    pub fn holds_word(&self) -> &'static str {
        match (self.holds, self.partial, self.generator.limited) {
            (_, true, _) => "partial",
            (_, _, true) => "generator-limited",
            (true, ..) => "yes",
            (false, ..) => "no",
        }
    }
}
impl StepProfile {
    /// The CPU profile recorded in a step, if any.
    pub fn of(step: &StepResult) -> Option<&StepProfile> {
        step.observed.as_ref()?.profile.as_ref()
    }
}

impl OffCpu {
    /// The off-CPU profile recorded in a step, if any.
    pub fn of(step: &StepResult) -> Option<&OffCpu> {
        step.observed.as_ref()?.offcpu.as_ref()
    }
}

impl Threads {
    pub fn of(step: &StepResult) -> Option<&Threads> {
        step.observed.as_ref()?.threads.as_ref()
    }
}

impl Processes {
    pub fn of(step: &StepResult) -> Option<&Processes> {
        step.observed.as_ref()?.processes.as_ref()
    }
}

impl Samplers {
    pub fn of(step: &StepResult) -> Option<&Samplers> {
        step.observed.as_ref()?.samplers.as_ref()
    }
}

/// Steps built by hand for unit tests of the analyses (verdict, soak, hunt).
#[cfg(test)]
pub mod testing {
    use super::*;
    use serde_json::json;

    /// An open-model step at `offered` req/s with good throughput `ok` and p99 `p99_ms`;
    /// it holds unless told otherwise.
    pub fn step(name: &str, phase: Phase, offered: f64, ok: f64, p99_ms: f64) -> StepResult {
        StepResult {
            name: name.into(),
            phase,
            offered_rps: Some(offered),
            concurrency: None,
            duration_s: 4.0,
            warmup_s: 0.8,
            requests: (offered * 4.0) as u64,
            achieved_rps: ok,
            ok_rps: ok,
            errors: 0,
            error_rate: 0.0,
            error_classes: BTreeMap::new(),
            status_codes: BTreeMap::new(),
            latency_ms: Percentiles {
                p50: p99_ms / 4.0,
                p99: p99_ms,
                ..Percentiles::default()
            },
            service_ms: Percentiles {
                p50: p99_ms / 4.0,
                p99: p99_ms,
                ..Percentiles::default()
            },
            connect_ms: None,
            tls_ms: None,
            by_connection: None,
            generator: GeneratorHealth::default(),
            holds: true,
            slo_failures: Vec::new(),
            slo_checks: Vec::new(),
            partial: false,
            warmup_requests: 0,
            unfinished: 0,
            in_flight_mean: 0.0,
            started_s: None,
            slices: Vec::new(),
            profiled: None,
            notes: Vec::new(),
            by_request: Vec::new(),
            flows: None,
            observed: None,
        }
    }

    impl StepResult {
        /// Marks the step as failing its SLO.
        pub fn failing(mut self) -> Self {
            self.holds = false;
            self.slo_failures = vec!["p99 over the bound".into()];
            self
        }

        /// Sets a sampled series' mean (min and max alike), and the sample count to 8.
        pub fn with(self, key: &str, mean: f64) -> Self {
            self.with_stat(key, mean, mean, mean)
        }

        /// Sets a sampled series' min, mean and max.
        pub fn with_stat(mut self, key: &str, min: f64, mean: f64, max: f64) -> Self {
            let observed = self.observed.get_or_insert_with(Observed::default);
            let samplers =
                observed
                    .samplers
                    .get_or_insert_with(|| super::super::observed::Samplers {
                        samples: 8,
                        ..Default::default()
                    });
            samplers.series.insert(
                key.to_string(),
                super::super::observed::Stat { min, mean, max },
            );
            self
        }

        /// Sets another observer's findings (`observed.NAME`), given as JSON.
        pub fn with_observed(mut self, name: &str, value: serde_json::Value) -> Self {
            let observed = self.observed.take().unwrap_or_default();
            let mut as_json = serde_json::to_value(observed).expect("observed encodes");
            as_json[name] = value;
            self.observed = Some(serde_json::from_value(as_json).expect("observed decodes"));
            self
        }

        /// Adds errors of `class`, `count` of them.
        pub fn with_errors(mut self, class: &str, count: u64) -> Self {
            let class: ErrorClass = class.parse().expect("a known error class");
            *self.error_classes.entry(class).or_default() += count;
            self.errors += count;
            self.error_rate = self.errors as f64 / self.requests.max(1) as f64;
            self
        }
    }

    #[test]
    fn a_slimmed_window_keeps_what_the_soak_analysis_reads() {
        let mut window = step("window-002", Phase::Window, 100.0, 100.0, 5.0)
            .with("target.rss_mb", 40.0)
            .with("host.cpu0", 0.5)
            .with_observed("processes", json!({"top": [], "downstreams": []}));
        window.slices = vec![Slice::default(); 40];
        let slim = window.clone().slimmed();
        assert!(slim.slices.is_empty());
        let samplers = Samplers::of(&slim).unwrap();
        assert_eq!(samplers.series["target.rss_mb"].mean, 40.0);
        assert!(!samplers.series.contains_key("host.cpu0"));
        assert_eq!(samplers.samples, 8);
        assert!(slim.observed.as_ref().unwrap().processes.is_none());
        assert_eq!(slim.latency_ms, window.latency_ms);
    }
}

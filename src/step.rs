//! The per-step result: the machine-readable contract of `steps.jsonl` and `run.json`
//! (see BRIEF). Field names are stable; add fields freely, rename none without bumping
//! `SCHEMA_VERSION`. Times are milliseconds as floats, rates per second.

use crate::plan::Phase;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const SCHEMA_VERSION: u32 = 1;

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
    pub error_classes: BTreeMap<String, u64>,
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
    pub generator: GeneratorHealth,
    /// The step met its SLO (and, in the open model, achieved ≥ 97 % of offered).
    pub holds: bool,
    pub slo_failures: Vec<String>,
    /// Cut short (Ctrl-C).
    pub partial: bool,
    pub warmup_requests: u64,
    /// Requests in flight when the step was cut short; not counted anywhere else.
    pub unfinished: u64,
    /// Mean number of requests in flight (sampled every 10 ms), for the Little's-law check.
    #[serde(default)]
    pub in_flight_mean: f64,
    /// The step in time slices (from its start, warm-up included): how it evolved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slices: Vec<Slice>,
    /// Consistency notes (e.g. Little's law did not hold).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// What the samplers observed during the step (later issues).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<serde_json::Value>,
}

/// One time slice of a step. Requests are placed by intended send time, completions by the
/// time they completed.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Slice {
    /// Start of the slice, seconds from the start of the step.
    pub t_s: f64,
    pub requests: u64,
    pub errors: u64,
    /// Responses completed in the slice, per second.
    pub completed_rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// How long connections took to open, in milliseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ConnectTimes {
    pub count: u64,
    /// Connects that took at least 0.9 s: their SYN was dropped and sent again after TCP's
    /// 1 s retransmission timeout (a full listen queue, or loss).
    #[serde(default)]
    pub syn_retransmitted: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl ConnectTimes {
    /// Share of the connects that waited for a SYN retransmit.
    pub fn retransmitted_share(&self) -> f64 {
        self.syn_retransmitted as f64 / self.count.max(1) as f64
    }

    /// The rung of TCP's SYN retransmission ladder (1 s, then 3 s, then 7 s after the first
    /// SYN) the connect p99 sits on, in ms: the sign of SYNs dropped by a full listen queue.
    pub fn retransmit_rung(&self) -> Option<f64> {
        [
            (1000.0, 900.0, 1400.0),
            (3000.0, 2800.0, 3600.0),
            (7000.0, 6500.0, 7900.0),
        ]
        .iter()
        .find(|(_, lo, hi)| (*lo..=*hi).contains(&self.p99))
        .map(|(rung, ..)| *rung)
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl StepResult {
    /// What a long soak keeps of a window in memory while it runs: no time slices, and of
    /// what was observed only the target's and the generator's sampled series (what the soak
    /// analysis reads). The whole window is in steps.jsonl, which run.json is built from at
    /// the end, so a day-long soak does not hold a day of slices and samples.
    pub fn slimmed(mut self) -> StepResult {
        self.slices = Vec::new();
        self.observed = self.observed.as_ref().and_then(|observed| {
            let samplers = observed.get("samplers")?;
            let series: serde_json::Map<String, serde_json::Value> = samplers
                .get("series")?
                .as_object()?
                .iter()
                .filter(|(name, _)| name.starts_with("target.") || name.starts_with("generator."))
                .map(|(name, stat)| (name.clone(), stat.clone()))
                .collect();
            let mut kept = serde_json::Map::new();
            kept.insert("series".into(), series.into());
            if let Some(samples) = samplers.get("samples") {
                kept.insert("samples".into(), samples.clone());
            }
            Some(serde_json::json!({ "samplers": kept }))
        });
        self
    }

    /// "500/s" (open model) or "c=50" (closed model), for report tables.
    pub fn load_label(&self) -> String {
        match (self.offered_rps, self.concurrency) {
            (Some(rps), _) => format!("{}/s", crate::plan::fmt_rate(rps)),
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

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct GeneratorHealth {
    /// Actual send − intended send, over all sent requests (includes waiting for a free
    /// connection, which a slow target causes).
    pub send_lag_p50_ms: f64,
    pub send_lag_p99_ms: f64,
    pub send_lag_max_ms: f64,
    /// How late the scheduler itself handed requests out: the generator's own lateness.
    pub dispatch_lag_p99_ms: f64,
    /// Share of one core the scheduler thread used (open model).
    #[serde(default)]
    pub dispatcher_busy: f64,
    /// Requests sent later than the lateness bound after their intended time.
    pub late_sends: u64,
    /// The lateness bound used for `late_sends` and `limited`, ms.
    pub lag_bound_ms: f64,
    /// Requests never sent (backlog full or drain deadline passed).
    pub not_sent: u64,
    /// CPU used by the generator's threads, in cores.
    pub cpu_cores: f64,
    /// Cores the generator may use.
    pub cpu_available: f64,
    /// knee's connections to the target: the most open at once in the counted window.
    pub connections: u64,
    /// ...their mean over the window (sampled every 10 ms)...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections_mean: Option<f64>,
    /// ...and how many were opened and closed during it.
    #[serde(default)]
    pub connections_opened: u64,
    #[serde(default)]
    pub connections_closed: u64,
    /// The generator, not the target, was the limit: this step says nothing about the target.
    pub limited: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limited_reason: Option<String>,
    /// The scheduler was late although idle: another process held the CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_contention: Option<String>,
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
            generator: GeneratorHealth::default(),
            holds: true,
            slo_failures: Vec::new(),
            partial: false,
            warmup_requests: 0,
            unfinished: 0,
            in_flight_mean: 0.0,
            started_s: None,
            slices: Vec::new(),
            notes: Vec::new(),
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
            let observed = self.observed.get_or_insert_with(|| json!({}));
            let samplers = observed
                .as_object_mut()
                .expect("observed is an object")
                .entry("samplers")
                .or_insert_with(|| json!({"samples": 8, "series": {}}));
            samplers["series"][key] = json!({"min": min, "mean": mean, "max": max});
            self
        }

        /// Sets another observer's findings (`observed.NAME`).
        pub fn with_observed(mut self, name: &str, value: serde_json::Value) -> Self {
            let observed = self.observed.get_or_insert_with(|| json!({}));
            observed[name] = value;
            self
        }

        /// Adds errors of `class`, `count` of them.
        pub fn with_errors(mut self, class: &str, count: u64) -> Self {
            *self.error_classes.entry(class.into()).or_default() += count;
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
            .with_observed("processes", json!({"groups": [1, 2, 3]}));
        window.slices = vec![Slice::default(); 40];
        let slim = window.clone().slimmed();
        assert!(slim.slices.is_empty());
        assert_eq!(crate::analyze::mean(&slim, "target.rss_mb"), Some(40.0));
        assert_eq!(crate::analyze::mean(&slim, "host.cpu0"), None);
        assert_eq!(crate::analyze::sample_count(&slim), 8);
        assert!(slim.observed.as_ref().unwrap().get("processes").is_none());
        assert_eq!(slim.latency_ms, window.latency_ms);
    }
}

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

/// Where a failed request lands: every failure in exactly one class, named the same way in
/// every output. Ordered (and hashed) by name, as the classes' maps are written, so a map of
/// them can be looked up by the name too (`error_classes.get("http_5xx")`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Nothing listens on the port (RST to our SYN).
    ConnectRefused,
    /// No answer to the connect within the connect timeout.
    ConnectTimeout,
    /// Any other connect failure (unreachable, out of local ports, ...).
    ConnectOther,
    /// TLS handshake failed (bad certificate, not TLS at all, ...).
    Tls,
    /// The whole request took longer than the request timeout.
    RequestTimeout,
    /// The connection was reset or closed before a whole response arrived.
    ConnectionReset,
    /// The peer did not speak HTTP (garbage, bad status line, oversized head).
    Protocol,
    /// The head arrived but reading the body failed.
    BodyRead,
    /// A 4xx response.
    #[serde(rename = "http_4xx")]
    Http4xx,
    /// A 5xx response.
    #[serde(rename = "http_5xx")]
    Http5xx,
    /// Due to be sent but never sent: every connection busy and the backlog full, or the
    /// step's drain deadline passed.
    NotSent,
    /// The server reset the request's HTTP/2 stream (RST_STREAM: refused, cancelled, ...).
    #[serde(rename = "h2_reset")]
    H2Reset,
    /// The server ended the HTTP/2 connection (GOAWAY) before the request was answered.
    #[serde(rename = "h2_goaway")]
    H2GoAway,
    /// A flow could not take a value from the answer (json, header or regex found nothing):
    /// the flow stops there, and the request is counted as this error.
    ExtractFailed,
    /// A gRPC call answered with a status other than OK (the `grpc-status` of its trailers):
    /// one class per code, named `grpc_` and the code (`grpc_resource_exhausted`).
    /// gRPC status 1 (CANCELLED) in a whole answer.
    GrpcCancelled,
    /// gRPC UNKNOWN (2).
    GrpcUnknown,
    /// gRPC INVALID_ARGUMENT (3).
    GrpcInvalidArgument,
    /// gRPC DEADLINE_EXCEEDED (4).
    GrpcDeadlineExceeded,
    /// gRPC NOT_FOUND (5).
    GrpcNotFound,
    /// gRPC ALREADY_EXISTS (6).
    GrpcAlreadyExists,
    /// gRPC PERMISSION_DENIED (7).
    GrpcPermissionDenied,
    /// gRPC RESOURCE_EXHAUSTED (8).
    GrpcResourceExhausted,
    /// gRPC FAILED_PRECONDITION (9).
    GrpcFailedPrecondition,
    /// gRPC ABORTED (10).
    GrpcAborted,
    /// gRPC OUT_OF_RANGE (11).
    GrpcOutOfRange,
    /// gRPC UNIMPLEMENTED (12).
    GrpcUnimplemented,
    /// gRPC INTERNAL (13).
    GrpcInternal,
    /// gRPC UNAVAILABLE (14).
    GrpcUnavailable,
    /// gRPC DATA_LOSS (15).
    GrpcDataLoss,
    /// gRPC UNAUTHENTICATED (16).
    GrpcUnauthenticated,
    /// Anything else.
    Other,
}

impl ErrorClass {
    pub const ALL: [ErrorClass; 31] = [
        ErrorClass::ConnectRefused,
        ErrorClass::ConnectTimeout,
        ErrorClass::ConnectOther,
        ErrorClass::Tls,
        ErrorClass::RequestTimeout,
        ErrorClass::ConnectionReset,
        ErrorClass::Protocol,
        ErrorClass::BodyRead,
        ErrorClass::Http4xx,
        ErrorClass::Http5xx,
        ErrorClass::NotSent,
        ErrorClass::H2Reset,
        ErrorClass::H2GoAway,
        ErrorClass::ExtractFailed,
        ErrorClass::GrpcCancelled,
        ErrorClass::GrpcUnknown,
        ErrorClass::GrpcInvalidArgument,
        ErrorClass::GrpcDeadlineExceeded,
        ErrorClass::GrpcNotFound,
        ErrorClass::GrpcAlreadyExists,
        ErrorClass::GrpcPermissionDenied,
        ErrorClass::GrpcResourceExhausted,
        ErrorClass::GrpcFailedPrecondition,
        ErrorClass::GrpcAborted,
        ErrorClass::GrpcOutOfRange,
        ErrorClass::GrpcUnimplemented,
        ErrorClass::GrpcInternal,
        ErrorClass::GrpcUnavailable,
        ErrorClass::GrpcDataLoss,
        ErrorClass::GrpcUnauthenticated,
        ErrorClass::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::ConnectRefused => "connect_refused",
            ErrorClass::ConnectTimeout => "connect_timeout",
            ErrorClass::ConnectOther => "connect_other",
            ErrorClass::Tls => "tls",
            ErrorClass::RequestTimeout => "request_timeout",
            ErrorClass::ConnectionReset => "connection_reset",
            ErrorClass::Protocol => "protocol",
            ErrorClass::BodyRead => "body_read",
            ErrorClass::Http4xx => "http_4xx",
            ErrorClass::Http5xx => "http_5xx",
            ErrorClass::NotSent => "not_sent",
            ErrorClass::H2Reset => "h2_reset",
            ErrorClass::H2GoAway => "h2_goaway",
            ErrorClass::ExtractFailed => "extract_failed",
            ErrorClass::GrpcCancelled => "grpc_cancelled",
            ErrorClass::GrpcUnknown => "grpc_unknown",
            ErrorClass::GrpcInvalidArgument => "grpc_invalid_argument",
            ErrorClass::GrpcDeadlineExceeded => "grpc_deadline_exceeded",
            ErrorClass::GrpcNotFound => "grpc_not_found",
            ErrorClass::GrpcAlreadyExists => "grpc_already_exists",
            ErrorClass::GrpcPermissionDenied => "grpc_permission_denied",
            ErrorClass::GrpcResourceExhausted => "grpc_resource_exhausted",
            ErrorClass::GrpcFailedPrecondition => "grpc_failed_precondition",
            ErrorClass::GrpcAborted => "grpc_aborted",
            ErrorClass::GrpcOutOfRange => "grpc_out_of_range",
            ErrorClass::GrpcUnimplemented => "grpc_unimplemented",
            ErrorClass::GrpcInternal => "grpc_internal",
            ErrorClass::GrpcUnavailable => "grpc_unavailable",
            ErrorClass::GrpcDataLoss => "grpc_data_loss",
            ErrorClass::GrpcUnauthenticated => "grpc_unauthenticated",
            ErrorClass::Other => "other",
        }
    }

    pub fn index(self) -> usize {
        ErrorClass::ALL.iter().position(|c| *c == self).unwrap_or(0)
    }

    /// The class of a gRPC status code, if it is an error (a code past 16 is UNKNOWN, as
    /// gRPC's own clients read it).
    pub fn of_grpc(code: u32) -> Option<ErrorClass> {
        match code {
            0 => None,
            // ALL lists the gRPC classes in the order of their codes.
            1..=16 => Some(ErrorClass::ALL[ErrorClass::GrpcCancelled.index() + code as usize - 1]),
            _ => Some(ErrorClass::GrpcUnknown),
        }
    }

    /// A gRPC status code's name as gRPC spells it: OK, RESOURCE_EXHAUSTED, ...
    pub fn grpc_status_name(code: u32) -> String {
        ErrorClass::of_grpc(code)
            .and_then(ErrorClass::grpc_code_name)
            .unwrap_or_else(|| "OK".into())
    }

    /// A gRPC status code's name as gRPC spells it (RESOURCE_EXHAUSTED), for a gRPC class.
    pub fn grpc_code_name(self) -> Option<String> {
        self.as_str()
            .strip_prefix("grpc_")
            .map(str::to_ascii_uppercase)
    }

    /// The class of an HTTP status, if it is an error.
    pub fn of_status(status: u16) -> Option<ErrorClass> {
        match status {
            400..=499 => Some(ErrorClass::Http4xx),
            500..=599 => Some(ErrorClass::Http5xx),
            _ => None,
        }
    }
}

impl Ord for ErrorClass {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl std::hash::Hash for ErrorClass {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl std::borrow::Borrow<str> for ErrorClass {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialOrd for ErrorClass {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl std::str::FromStr for ErrorClass {
    type Err = String;

    fn from_str(name: &str) -> Result<ErrorClass, String> {
        ErrorClass::ALL
            .into_iter()
            .find(|c| c.as_str() == name)
            .ok_or_else(|| format!("'{name}' is not an error class"))
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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

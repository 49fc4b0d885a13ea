//! Workers emit one plain `Record` per request into `Shards`: one `StepRecorder` per thread
//! (fixed-size histograms and counters: nothing per request is kept), behind an uncontended
//! lock, so recording costs no channel hop and no wake-up. At the end of the step the shards
//! are merged (histograms add exactly) into the step's `StepResult`.

use super::errors::ErrorClass;
use crate::model::step::{
    ByConnection, ConnectTimes, ConnectionLatency, GeneratorHealth, ProfiledWindow, Slice,
    StepResult,
};
use crate::plan::StepSpec;
use crate::slo::{Slo, StepFigures};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub use super::sample::{new_histogram, percentiles, Outcome, Record, Timeline, HIST_MAX_US};

fn record_us(hist: &mut Histogram<u64>, d: Duration) {
    hist.saturating_record((d.as_micros() as u64).clamp(1, HIST_MAX_US));
}

/// What the profiled tail got: requests by intended send time, responses by completion.
struct TailRecorder {
    latency: Histogram<u64>,
    requests: u64,
    errors: u64,
    responses: u64,
    ok: u64,
}

impl TailRecorder {
    fn new() -> Self {
        TailRecorder {
            latency: Histogram::new_with_bounds(1, HIST_MAX_US, 3)
                .expect("static histogram bounds are valid"),
            requests: 0,
            errors: 0,
            responses: 0,
            ok: 0,
        }
    }

    fn merge(&mut self, other: &TailRecorder) {
        let _ = self.latency.add(&other.latency);
        self.requests += other.requests;
        self.errors += other.errors;
        self.responses += other.responses;
        self.ok += other.ok;
    }

    fn window(&self, seconds: f64) -> ProfiledWindow {
        let seconds = seconds.max(1e-9);
        ProfiledWindow {
            seconds: (seconds * 1000.0).round() / 1000.0,
            requests: self.requests,
            errors: self.errors,
            achieved_rps: self.responses as f64 / seconds,
            ok_rps: self.ok as f64 / seconds,
            latency_ms: percentiles(&self.latency),
        }
    }
}

/// Per-slice figures; the histogram is coarser (2 digits) to keep slices small.
struct SliceRecorder {
    latency: Histogram<u64>,
    requests: u64,
    errors: u64,
    completed: u64,
}

impl SliceRecorder {
    fn merge(&mut self, other: &SliceRecorder) {
        let _ = self.latency.add(&other.latency);
        self.requests += other.requests;
        self.errors += other.errors;
        self.completed += other.completed;
    }

    fn new() -> Self {
        SliceRecorder {
            latency: Histogram::new_with_bounds(1, HIST_MAX_US, 2)
                .expect("static histogram bounds are valid"),
            requests: 0,
            errors: 0,
            completed: 0,
        }
    }
}

/// knee's own connections over a step's counted window, sampled every 10 ms.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConnWindow {
    sum: u64,
    samples: u64,
    pub peak: u64,
    /// (opened, closed) counters at the first and the last sample of the window.
    first: Option<(u64, u64)>,
    last: (u64, u64),
}

impl ConnWindow {
    pub fn mean(&self) -> Option<f64> {
        (self.samples > 0).then(|| self.sum as f64 / self.samples as f64)
    }

    /// Connections opened and closed during the window.
    pub fn churn(&self) -> (u64, u64) {
        let (o0, c0) = self.first.unwrap_or(self.last);
        (
            self.last.0.saturating_sub(o0),
            self.last.1.saturating_sub(c0),
        )
    }

    fn merge(&mut self, other: &ConnWindow) {
        self.sum += other.sum;
        self.samples += other.samples;
        self.peak = self.peak.max(other.peak);
        self.first = self.first.or(other.first);
        self.last = (self.last.0.max(other.last.0), self.last.1.max(other.last.1));
    }
}

pub struct StepRecorder {
    pub connections: ConnWindow,
    timeline: Timeline,
    slice_len: Duration,
    slices: Vec<SliceRecorder>,
    in_flight_sum: u64,
    in_flight_samples: u64,
    pub latency: Histogram<u64>,
    pub service: Histogram<u64>,
    pub send_lag: Histogram<u64>,
    /// TCP connect and TLS handshake times of the connections the step's requests opened.
    connect: Histogram<u64>,
    tls: Histogram<u64>,
    lag_bound: Duration,
    requests: u64,
    responses_in_window: u64,
    ok_in_window: u64,
    errors: u64,
    error_classes: [u64; ErrorClass::ALL.len()],
    status_codes: BTreeMap<u16, u64>,
    late_sends: u64,
    warmup_requests: u64,
    tail: TailRecorder,
    /// Latency of answers on connections the request opened, and on reused ones.
    fresh: Histogram<u64>,
    reused: Histogram<u64>,
    /// Each request of a mix of several, on its own.
    by_request: super::by_request::ByRequest,
    /// The load is user flows (their tally gives the step's rates).
    flow_mode: bool,
    flows: super::flow_tally::FlowTally,
}

/// Live figures for the progress bar.
#[derive(Clone, Copy, Debug, Default)]
pub struct Live {
    pub requests: u64,
    pub errors: u64,
    pub achieved_rps: f64,
    pub p99_ms: f64,
}

impl StepRecorder {
    pub fn new(
        timeline: Timeline,
        lag_bound: Duration,
        named: std::sync::Arc<super::by_request::Named>,
    ) -> Self {
        let total = timeline.end.saturating_duration_since(timeline.start);
        let slice_len = (total / 40).max(Duration::from_millis(50));
        let count = (total.as_secs_f64() / slice_len.as_secs_f64()).ceil() as usize;
        StepRecorder {
            connections: ConnWindow::default(),
            timeline,
            slice_len,
            slices: (0..count.max(1)).map(|_| SliceRecorder::new()).collect(),
            in_flight_sum: 0,
            in_flight_samples: 0,
            latency: new_histogram(),
            service: new_histogram(),
            send_lag: new_histogram(),
            connect: new_histogram(),
            tls: new_histogram(),
            lag_bound,
            requests: 0,
            responses_in_window: 0,
            ok_in_window: 0,
            errors: 0,
            error_classes: [0; ErrorClass::ALL.len()],
            status_codes: BTreeMap::new(),
            late_sends: 0,
            warmup_requests: 0,
            tail: TailRecorder::new(),
            fresh: Histogram::new_with_bounds(1, HIST_MAX_US, 2)
                .expect("static histogram bounds are valid"),
            reused: Histogram::new_with_bounds(1, HIST_MAX_US, 2)
                .expect("static histogram bounds are valid"),
            flow_mode: named.flows,
            by_request: super::by_request::ByRequest::new(named),
            flows: Default::default(),
        }
    }

    fn slice_of(&mut self, at: Instant) -> Option<&mut SliceRecorder> {
        let offset = at.checked_duration_since(self.timeline.start)?;
        // u64 nanoseconds: a u128 division per record is slow on the hot path.
        let index = (offset.as_nanos() as u64 / (self.slice_len.as_nanos() as u64).max(1)) as usize;
        self.slices.get_mut(index)
    }

    /// Requests sent later than the lateness bound.
    pub fn late_sends(&self) -> u64 {
        self.late_sends
    }

    /// Requests whose intended send time fell in the counted window.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// Requests never sent.
    pub fn not_sent(&self) -> u64 {
        self.error_classes[ErrorClass::NotSent.index()]
    }

    /// A sample of how many requests are in flight (counted window only).
    pub fn sample_in_flight(&mut self, now: Instant, in_flight: u64) {
        if now >= self.timeline.counted_from && now < self.timeline.end {
            self.in_flight_sum += in_flight;
            self.in_flight_samples += 1;
        }
    }

    /// A sample of knee's open connections and its opened/closed counters (counted window).
    pub fn sample_connections(&mut self, now: Instant, (open, opened, closed): (u64, u64, u64)) {
        if now >= self.timeline.counted_from && now < self.timeline.end {
            let c = &mut self.connections;
            c.sum += open;
            c.samples += 1;
            c.peak = c.peak.max(open);
            c.first.get_or_insert((opened, closed));
            c.last = (opened, closed);
        }
    }

    fn add_to_slices(&mut self, r: &Record) {
        let is_error = match r.outcome {
            Outcome::Response(answer) => answer.error().is_some(),
            Outcome::Failed(_) => true,
        };
        if let Some(slice) = self.slice_of(r.intended) {
            slice.requests += 1;
            slice.errors += u64::from(is_error);
            if let Outcome::Response(_) = r.outcome {
                slice
                    .latency
                    .saturating_record((r.latency().as_micros() as u64).clamp(1, HIST_MAX_US));
            }
        }
        if let Outcome::Response(_) = r.outcome {
            if let Some(slice) = self.slice_of(r.done) {
                slice.completed += 1;
            }
        }
    }

    fn slice_results(&self) -> Vec<Slice> {
        let len = self.slice_len.as_secs_f64();
        self.slices
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let p = percentiles(&s.latency);
                Slice {
                    t_s: i as f64 * len,
                    requests: s.requests,
                    errors: s.errors,
                    completed_rps: s.completed as f64 / len,
                    p50_ms: p.p50,
                    p99_ms: p.p99,
                }
            })
            .collect()
    }

    pub fn add(&mut self, r: &Record) {
        // The tail's throughput, like the counted window's, is what completed in it.
        if let Outcome::Response(answer) = r.outcome {
            if r.done >= self.timeline.end && r.done < self.timeline.until {
                self.tail.responses += 1;
                self.tail.ok += u64::from(answer.error().is_none());
            }
        }
        if r.intended >= self.timeline.end {
            self.add_to_tail(r);
            return;
        }
        self.add_to_slices(r);
        // Throughput counts completions inside the counted window, whichever request they
        // answer: past capacity, responses to queued requests arrive after the window.
        let in_window = r.done >= self.timeline.counted_from && r.done < self.timeline.end;
        if let Outcome::Response(answer) = r.outcome {
            if in_window {
                self.responses_in_window += 1;
                if answer.error().is_none() {
                    self.ok_in_window += 1;
                }
            }
        }
        if let Outcome::Response(_) = r.outcome {
            // Fresh against reused connections, warm-up included: most connections open
            // there.
            let by = if r.connected.is_some() {
                &mut self.fresh
            } else {
                &mut self.reused
            };
            record_us(by, r.latency());
        }
        if r.intended < self.timeline.counted_from {
            self.warmup_requests += 1;
            return;
        }
        self.requests += 1;
        self.by_request.add(r, in_window);
        if let Some(c) = r.connected {
            record_us(&mut self.connect, c.tcp);
            if let Some(tls) = c.tls {
                record_us(&mut self.tls, tls);
            }
        }
        if let Some(sent) = r.sent {
            let lag = sent.saturating_duration_since(r.intended);
            record_us(&mut self.send_lag, lag);
            if lag > self.lag_bound {
                self.late_sends += 1;
            }
        }
        match r.outcome {
            Outcome::Response(answer) => {
                *self.status_codes.entry(answer.status).or_insert(0) += 1;
                // Every response counts in latency, errors included: a fast 503 is still a
                // response the user waited for.
                record_us(&mut self.latency, r.latency());
                if let Some(sent) = r.sent {
                    record_us(&mut self.service, r.done.saturating_duration_since(sent));
                }
                if let Some(class) = answer.error() {
                    self.count_error(class);
                }
            }
            Outcome::Failed(class) => self.count_error(class),
        }
    }

    /// A request of the profiled tail (the counted part's responses still arriving then
    /// were counted by `add`).
    fn add_to_tail(&mut self, r: &Record) {
        let tail = &mut self.tail;
        tail.requests += 1;
        match r.outcome {
            Outcome::Response(answer) => {
                record_us(&mut tail.latency, r.latency());
                tail.errors += u64::from(answer.error().is_some());
            }
            Outcome::Failed(_) => tail.errors += 1,
        }
    }

    /// Adds another shard of the same step.
    pub fn merge(&mut self, other: &StepRecorder) {
        let _ = self.latency.add(&other.latency);
        let _ = self.service.add(&other.service);
        let _ = self.send_lag.add(&other.send_lag);
        let _ = self.connect.add(&other.connect);
        let _ = self.tls.add(&other.tls);
        for (mine, theirs) in self.slices.iter_mut().zip(&other.slices) {
            mine.merge(theirs);
        }
        self.in_flight_sum += other.in_flight_sum;
        self.in_flight_samples += other.in_flight_samples;
        self.connections.merge(&other.connections);
        self.requests += other.requests;
        self.responses_in_window += other.responses_in_window;
        self.ok_in_window += other.ok_in_window;
        self.errors += other.errors;
        for (mine, theirs) in self.error_classes.iter_mut().zip(other.error_classes) {
            *mine += theirs;
        }
        for (code, n) in &other.status_codes {
            *self.status_codes.entry(*code).or_insert(0) += n;
        }
        self.late_sends += other.late_sends;
        self.warmup_requests += other.warmup_requests;
        self.tail.merge(&other.tail);
        let _ = self.fresh.add(&other.fresh);
        let _ = self.reused.add(&other.reused);
        self.by_request.merge(&other.by_request);
        self.flows.merge(&other.flows);
    }

    /// Each request name's latency histogram (a mix of several names), for the hlogs.
    pub fn request_histograms(&self) -> Vec<Histogram<u64>> {
        self.by_request.histograms()
    }

    /// A flow that started at `started` ended at `done`, this way.
    pub fn add_flow(&mut self, started: Instant, done: Instant, end: super::flow_tally::FlowEnd) {
        self.flows.add(&self.timeline, started, done, end);
    }

    fn count_error(&mut self, class: ErrorClass) {
        self.errors += 1;
        self.error_classes[class.index()] += 1;
    }

    fn counted_seconds(&self, now: Instant) -> f64 {
        let until = now.min(self.timeline.end);
        until
            .saturating_duration_since(self.timeline.counted_from)
            .as_secs_f64()
    }

    pub fn live(&self, now: Instant) -> Live {
        let seconds = self.counted_seconds(now);
        Live {
            requests: self.requests + self.warmup_requests,
            errors: self.errors,
            achieved_rps: match (seconds > 0.0, self.flow_mode) {
                (false, _) => 0.0,
                (true, false) => self.responses_in_window as f64 / seconds,
                (true, true) => self.flows.rates(seconds).0,
            },
            p99_ms: percentiles(&self.latency).p99,
        }
    }

    /// The step's result. `ended` is when the schedule stopped (early on Ctrl-C).
    pub fn finish(
        &self,
        spec: &StepSpec,
        slo: &Slo,
        ended: Instant,
        generator: GeneratorHealth,
        partial: bool,
        unfinished: u64,
    ) -> StepResult {
        let tail_seconds = ended
            .min(self.timeline.until)
            .saturating_duration_since(self.timeline.end)
            .as_secs_f64();
        let duration_s = self.counted_seconds(ended).max(1e-9);
        let (achieved_rps, ok_rps) = match self.flow_mode {
            true => self.flows.rates(duration_s),
            false => (
                self.responses_in_window as f64 / duration_s,
                self.ok_in_window as f64 / duration_s,
            ),
        };
        // A partial step's offered rate was offered for a shorter time: judge it by that.
        let offered_rps = spec.offered_rps();
        let limited = generator
            .limited
            .then(|| generator.limited_reason.clone().unwrap_or_default());
        let slo_checks = slo.judge(
            limited.as_deref(),
            &StepFigures {
                latency_us: &self.latency,
                requests: self.requests,
                errors: self.errors,
                achieved_rps,
                offered_rps,
            },
        );
        let mut slo_failures = crate::slo::failures_of(&slo_checks);
        // A request's own SLO holds the step to it too.
        let by_request = self.by_request.results(duration_s);
        for request in &by_request {
            for failure in &request.slo_failures {
                slo_failures.push(format!("{}: {failure}", request.name));
            }
        }
        StepResult {
            name: spec.name.clone(),
            phase: spec.phase,
            offered_rps,
            concurrency: match spec.load {
                crate::plan::Load::Concurrency(n) => Some(n),
                crate::plan::Load::Rate { .. } => None,
            },
            started_s: None,
            duration_s,
            warmup_s: spec.warmup.as_secs_f64(),
            requests: self.requests,
            achieved_rps,
            ok_rps,
            errors: self.errors,
            error_rate: if self.requests > 0 {
                self.errors as f64 / self.requests as f64
            } else {
                0.0
            },
            error_classes: ErrorClass::ALL
                .iter()
                .filter(|c| self.error_classes[c.index()] > 0)
                .map(|c| (*c, self.error_classes[c.index()]))
                .collect(),
            status_codes: self
                .status_codes
                .iter()
                .map(|(code, n)| (code.to_string(), *n))
                .collect(),
            latency_ms: percentiles(&self.latency),
            service_ms: percentiles(&self.service),
            connect_ms: connect_times(&self.connect),
            tls_ms: connect_times(&self.tls),
            by_connection: (!self.reused.is_empty()).then(|| ByConnection {
                fresh: connection_latency(&self.fresh),
                reused: connection_latency(&self.reused),
            }),
            generator,
            holds: slo_failures.is_empty(),
            slo_failures,
            slo_checks,
            partial,
            warmup_requests: self.warmup_requests,
            unfinished,
            in_flight_mean: if self.in_flight_samples > 0 {
                self.in_flight_sum as f64 / self.in_flight_samples as f64
            } else {
                0.0
            },
            slices: self.slice_results(),
            profiled: (!spec.profile.is_zero() && tail_seconds > 0.0).then(|| {
                let mut window = self.tail.window(tail_seconds);
                if self.flow_mode {
                    (window.achieved_rps, window.ok_rps) = self.flows.tail_rates(tail_seconds);
                }
                window
            }),
            notes: Vec::new(),
            by_request,
            flows: self.flow_mode.then(|| self.flows.figures()),
            observed: None,
        }
    }
}

/// The delayed-ACK timer's band, µs: Linux's 40 ms, rounded up to the next tick or two.
const ACK_TIMER_US: (u64, u64) = (38_000, 52_000);

fn connection_latency(hist: &Histogram<u64>) -> ConnectionLatency {
    let p = percentiles(hist);
    ConnectionLatency {
        requests: hist.len(),
        p50_ms: p.p50,
        p99_ms: p.p99,
        at_ack_timer: hist.count_between(ACK_TIMER_US.0, ACK_TIMER_US.1) as f64
            / hist.len().max(1) as f64,
    }
}

/// Connection times of a step: None when it opened no connection.
fn connect_times(hist: &Histogram<u64>) -> Option<ConnectTimes> {
    let p = (!hist.is_empty()).then(|| percentiles(hist))?;
    Some(ConnectTimes {
        count: hist.len(),
        syn_retransmitted: hist.count_between(900_000, HIST_MAX_US),
        p50: p.p50,
        p90: p.p90,
        p99: p.p99,
        max: p.max,
    })
}

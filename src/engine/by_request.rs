//! Figures per request of the mix: a service's traffic is several endpoints of very different
//! cost, and which one broke first (and at what share of the load) is what a fix needs. Each
//! shard keeps, per request name, its own counters and a latency histogram (two significant
//! digits: per-endpoint percentiles to 1 %, a twelfth of the step histogram's memory), merged
//! exactly across shards when the step ends. A mix of one name keeps nothing here: the
//! step's own figures are that request's.

use super::errors::ErrorClass;
use super::sample::{percentiles, Outcome, Record, HIST_MAX_US};
use crate::model::step::RequestResult;
use crate::slo::{Slo, StepFigures};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One request's figures over a step's counted window.
struct Counts {
    latency: Histogram<u64>,
    requests: u64,
    ok_in_window: u64,
    errors: u64,
    error_classes: [u64; ErrorClass::ALL.len()],
}

impl Counts {
    fn new() -> Self {
        Counts {
            latency: Histogram::new_with_bounds(1, HIST_MAX_US, 2)
                .expect("static histogram bounds are valid"),
            requests: 0,
            ok_in_window: 0,
            errors: 0,
            error_classes: [0; ErrorClass::ALL.len()],
        }
    }

    fn merge(&mut self, other: &Counts) {
        let _ = self.latency.add(&other.latency);
        self.requests += other.requests;
        self.ok_in_window += other.ok_in_window;
        self.errors += other.errors;
        for (mine, theirs) in self.error_classes.iter_mut().zip(other.error_classes) {
            *mine += theirs;
        }
    }
}

/// The mix's requests by name: an imported endpoint is one name over several real paths, so
/// its figures are those of every request of that name. Each name's own SLO is the first one
/// a request of that name was given.
#[derive(Clone, Debug, Default)]
pub struct Named {
    /// Distinct, in the profile's order.
    pub names: Vec<String>,
    pub slos: Vec<Option<Slo>>,
    /// Each request's name, as its index in `names`.
    pub of_request: Vec<usize>,
    /// The load is user flows: the step's rates are flows per second (see `flow_tally`).
    pub flows: bool,
}

impl Named {
    pub fn of(requests: &[crate::plan::RequestPlan]) -> Named {
        let mut named = Named::default();
        for request in requests {
            let index = match named.names.iter().position(|n| *n == request.name) {
                Some(index) => index,
                None => {
                    named.names.push(request.name.clone());
                    named.slos.push(None);
                    named.names.len() - 1
                }
            };
            if named.slos[index].is_none() {
                named.slos[index] = request.slo.clone();
            }
            named.of_request.push(index);
        }
        named
    }
}

/// Per-request figures of one shard (empty for a mix of one request).
pub struct ByRequest {
    named: Arc<Named>,
    counts: Vec<Counts>,
}

impl ByRequest {
    pub fn new(named: Arc<Named>) -> Self {
        let count = if named.names.len() > 1 {
            named.names.len()
        } else {
            0
        };
        ByRequest {
            named,
            counts: (0..count).map(|_| Counts::new()).collect(),
        }
    }

    /// A request whose intended send time fell in the counted window; `answered_in_window`
    /// when its good answer completed there (throughput counts completions).
    pub fn add(&mut self, r: &Record, answered_in_window: bool) {
        let Some(&name) = self.named.of_request.get(r.request as usize) else {
            return;
        };
        let Some(counts) = self.counts.get_mut(name) else {
            return;
        };
        counts.requests += 1;
        match r.outcome {
            Outcome::Response(answer) => {
                let us = r.latency().as_micros() as u64;
                counts.latency.saturating_record(us.clamp(1, HIST_MAX_US));
                match answer.error() {
                    Some(class) => {
                        counts.errors += 1;
                        counts.error_classes[class.index()] += 1;
                    }
                    None => counts.ok_in_window += u64::from(answered_in_window),
                }
            }
            Outcome::Failed(class) => {
                counts.errors += 1;
                counts.error_classes[class.index()] += 1;
            }
        }
    }

    pub fn merge(&mut self, other: &ByRequest) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            mine.merge(theirs);
        }
    }

    /// Each request's result over `duration_s`, judged by its own SLO when it has one.
    pub fn results(&self, duration_s: f64) -> Vec<RequestResult> {
        self.counts
            .iter()
            .zip(&self.named.names)
            .zip(&self.named.slos)
            .map(|((c, name), slo)| {
                let figures = Figures {
                    requests: c.requests,
                    ok_rps: c.ok_in_window as f64 / duration_s.max(1e-9),
                    errors: c.errors,
                    error_classes: ErrorClass::ALL
                        .iter()
                        .filter(|k| c.error_classes[k.index()] > 0)
                        .map(|k| (*k, c.error_classes[k.index()]))
                        .collect(),
                };
                judged(name, figures, &c.latency, slo.as_ref())
            })
            .collect()
    }

    /// Each name's latency histogram, in `results`' order (for the run folder's hlogs, so
    /// `knee merge` adds them exactly).
    pub fn histograms(&self) -> Vec<Histogram<u64>> {
        self.counts.iter().map(|c| c.latency.clone()).collect()
    }
}

/// A request name's counts over a step.
pub struct Figures {
    pub requests: u64,
    pub ok_rps: f64,
    pub errors: u64,
    pub error_classes: BTreeMap<ErrorClass, u64>,
}

/// A name's result: its figures, percentiles of `latency`, and its own SLO judged on them.
pub fn judged(
    name: &str,
    figures: Figures,
    latency: &Histogram<u64>,
    slo: Option<&Slo>,
) -> RequestResult {
    let slo_failures = slo.map_or_else(Vec::new, |slo| {
        let checks = slo.judge(
            None,
            &StepFigures {
                latency_us: latency,
                requests: figures.requests,
                errors: figures.errors,
                achieved_rps: figures.ok_rps,
                offered_rps: None,
            },
        );
        crate::slo::failures_of(&checks)
    });
    RequestResult {
        name: name.to_string(),
        requests: figures.requests,
        ok_rps: figures.ok_rps,
        errors: figures.errors,
        error_rate: figures.errors as f64 / figures.requests.max(1) as f64,
        error_classes: figures.error_classes,
        latency_ms: percentiles(latency),
        own_slo: slo.is_some(),
        slo: slo.cloned(),
        holds: slo_failures.is_empty(),
        slo_failures,
    }
}

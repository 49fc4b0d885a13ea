//! Which request of a mix broke first. A service's traffic is several endpoints, and the
//! whole mix's p99 hides which of them gave way: the expensive one breaks at a load the cheap
//! ones carry easily. Each request is judged on its own figures (`step.by_request`) by its own
//! SLO when it has one, else by the run's latency and error bounds; a request broke at the
//! lowest offered rate from which it failed at every higher step (one noisy step below does
//! not count), and the others are said with the highest rate they held at. A hunt's hold
//! steps are read alone when they have the mix: the search's short steps past the knee can
//! hold by luck (a queue not yet built), the holds are the measured ones.

use crate::model::step::{RequestResult, StepResult};
use crate::model::Phase;
use crate::slo::Slo;
use crate::units::fmt_ms;
use std::collections::BTreeMap;

/// Whether one request of the mix held at a step.
fn held(request: &RequestResult, slo: &Slo) -> bool {
    match request.own_slo {
        true => request.holds,
        false => slo.holds_on(&request.latency_ms, request.requests, request.errors),
    }
}

/// What a request did over the steps, lowest offered rate first.
#[derive(Default)]
struct Course<'a> {
    /// (offered rate, the step, its figures, held)
    steps: Vec<(f64, &'a StepResult, &'a RequestResult, bool)>,
}

impl Course<'_> {
    /// The step from which it failed at every higher one.
    fn broke_at(&self) -> Option<(f64, &StepResult, &RequestResult)> {
        let last_held = self.steps.iter().rposition(|s| s.3);
        let first = last_held.map_or(0, |i| i + 1);
        self.steps.get(first).map(|s| (s.0, s.1, s.2))
    }

    fn held_to(&self) -> Option<f64> {
        self.steps
            .iter()
            .filter(|s| s.3)
            .map(|s| s.0)
            .reduce(f64::max)
    }
}

/// "search broke first: p99 420ms at 310 req/s total (93 req/s of it), while item held to
/// 600 req/s"; None for a mix of one request, or when no request broke.
pub fn broke_first(steps: &[StepResult], slo: &Slo) -> Option<String> {
    let mixed = |s: &&StepResult| s.by_request.len() > 1 && s.offered_rps.is_some();
    let holds = steps.iter().filter(mixed).any(|s| s.phase == Phase::Hold);
    let mut ordered: Vec<(f64, &StepResult)> = steps
        .iter()
        .filter(mixed)
        .filter(|s| match holds {
            true => s.phase == Phase::Hold,
            false => s.phase != Phase::Recovery,
        })
        .filter_map(|s| Some((s.offered_rps?, s)))
        .collect();
    ordered.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut courses: BTreeMap<&str, Course> = BTreeMap::new();
    for (offered, step) in &ordered {
        for request in &step.by_request {
            let course = courses.entry(request.name.as_str()).or_default();
            course
                .steps
                .push((*offered, step, request, held(request, slo)));
        }
    }
    let (name, (offered, step, request)) = courses
        .iter()
        .filter_map(|(name, c)| Some((*name, c.broke_at()?)))
        .min_by(|a, b| a.1 .0.total_cmp(&b.1 .0))?;
    let own_rate = request.requests as f64 / step.duration_s.max(1e-9);
    let (unit, total) = match crate::model::RateUnit::of(step) {
        crate::model::RateUnit::Flows => ("flows/s", ""),
        crate::model::RateUnit::Requests => ("req/s", " total"),
    };
    let why = match request.error_rate > slo.max_error_rate.unwrap_or(1.0) {
        true => format!("errors {:.1}%", request.error_rate * 100.0),
        false => format!("p99 {}", fmt_ms(request.latency_ms.p99)),
    };
    let others: Vec<String> = courses
        .iter()
        .filter(|(other, _)| **other != name)
        .map(|(other, c)| match c.held_to() {
            Some(rate) => format!("{other} held to {rate:.0} {unit}"),
            None => format!("{other} held at no step"),
        })
        .collect();
    let mut line = format!(
        "{name} broke first: {why} at {offered:.0} {unit}{total} ({own_rate:.0} req/s of it)"
    );
    if !others.is_empty() {
        line.push_str(&format!(", while {}", others.join(", ")));
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::figures::Percentiles;
    use crate::model::step::testing::step;

    fn request(name: &str, requests: u64, p99: f64) -> RequestResult {
        RequestResult {
            name: name.into(),
            requests,
            ok_rps: requests as f64 / 4.0,
            errors: 0,
            error_rate: 0.0,
            error_classes: BTreeMap::new(),
            latency_ms: Percentiles {
                p50: p99 / 4.0,
                p99,
                p999: p99,
                max: p99,
                ..Percentiles::default()
            },
            own_slo: false,
            slo: None,
            holds: true,
            slo_failures: Vec::new(),
        }
    }

    /// A step of 30 % search (slow) and 70 % item (fast) at `offered` req/s.
    fn mixed(name: &str, offered: f64, search_p99: f64, item_p99: f64) -> StepResult {
        let mut s = step(
            name,
            Phase::Search,
            offered,
            offered,
            search_p99.max(item_p99),
        );
        let total = offered * 4.0;
        s.by_request = vec![
            request("search", (total * 0.3) as u64, search_p99),
            request("item", (total * 0.7) as u64, item_p99),
        ];
        s
    }

    #[test]
    fn the_endpoint_that_broke_first_is_named_with_its_share_of_the_load() {
        let slo = Slo::parse_list("p99=100ms,errors=1%").unwrap();
        let steps = [
            mixed("search-100", 100.0, 20.0, 5.0),
            // A spike below: search recovers at the next step, so it did not break here.
            mixed("search-200", 200.0, 150.0, 6.0),
            mixed("search-250", 250.0, 40.0, 6.0),
            mixed("search-310", 310.0, 420.0, 8.0),
            mixed("search-450", 450.0, 900.0, 30.0),
            mixed("search-600", 600.0, 2000.0, 90.0),
            mixed("search-700", 700.0, 3000.0, 400.0),
        ];
        assert_eq!(
            broke_first(&steps, &slo).as_deref(),
            Some("search broke first: p99 420ms at 310 req/s total (93 req/s of it), while item held to 600 req/s")
        );
        // Its own, stricter SLO makes item the first.
        let mut own = steps.clone();
        for s in &mut own {
            let item = &mut s.by_request[1];
            item.own_slo = true;
            item.holds = item.latency_ms.p99 <= 5.0;
        }
        let said = broke_first(&own, &slo).unwrap();
        assert!(
            said.starts_with("item broke first: p99 6.00ms at 200 req/s total (140 req/s of it)"),
            "{said}"
        );
        // One request: nothing to say.
        let single: Vec<StepResult> = steps
            .iter()
            .cloned()
            .map(|mut s| {
                s.by_request.truncate(1);
                s
            })
            .collect();
        assert_eq!(broke_first(&single, &slo), None);
        // A hunt: its holds are read, not a short search step past the knee that held.
        let mut hunt = vec![
            mixed("search-300", 300.0, 40.0, 5.0),
            mixed("search-600", 600.0, 60.0, 8.0),
        ];
        for (name, rate, p99) in [("hold-050", 250.0, 20.0), ("hold-105", 520.0, 900.0)] {
            let mut hold = mixed(name, rate, p99, 6.0);
            hold.phase = Phase::Hold;
            hunt.push(hold);
        }
        let said = broke_first(&hunt, &slo).unwrap();
        assert!(said.starts_with("search broke first: p99 900ms at 520 req/s total (156 req/s of it), while item held to 520"), "{said}");
    }
}

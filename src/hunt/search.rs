//! The rate search as a pure state machine, so it can be tested without a network: ramp
//! geometrically from well below the probed ceiling until a step fails, then bisect between
//! the last rate that held and the first that failed until they are within the resolution.

pub use crate::model::hunt::Ending;

/// Each ramp step offers this much more than the last.
pub const RAMP_FACTOR: f64 = 1.5;
/// The ramp starts at this share of the probed ceiling.
pub const RAMP_START_SHARE: f64 = 0.3;
/// Below this rate the search gives up: the target holds nothing.
pub const MIN_RATE: f64 = 1.0;

#[derive(Debug, Clone)]
pub struct Search {
    resolution: f64,
    max_rate: Option<f64>,
    next: Option<f64>,
    held: Option<f64>,
    failed: Option<f64>,
    steps: usize,
    /// Why it stopped early, when it did.
    cut: Option<Ending>,
}

impl Search {
    pub fn new(ceiling_estimate: f64, resolution: f64, max_rate: Option<f64>) -> Self {
        let start = (ceiling_estimate * RAMP_START_SHARE).max(MIN_RATE);
        let start = max_rate.map_or(start, |m| start.min(m));
        Search {
            resolution: resolution.max(crate::plan::MIN_RESOLUTION),
            max_rate,
            next: Some(round_rate(start)),
            held: None,
            failed: None,
            steps: 0,
            cut: None,
        }
    }

    /// The next rate to try, or None when the search is over.
    pub fn next_rate(&self) -> Option<f64> {
        self.next
    }

    pub fn highest_held(&self) -> Option<f64> {
        self.held
    }

    pub fn lowest_failed(&self) -> Option<f64> {
        self.failed
    }

    /// Records the outcome of the step at `rate` and decides the next one.
    pub fn record(&mut self, rate: f64, holds: bool) {
        if holds {
            self.held = Some(self.held.map_or(rate, |h| h.max(rate)));
        } else {
            self.failed = Some(self.failed.map_or(rate, |f| f.min(rate)));
        }
        self.steps += 1;
        self.next = match (self.held, self.failed) {
            (Some(held), Some(failed)) if (failed - held) / held <= self.resolution => None,
            (Some(held), Some(failed)) => {
                let middle = round_rate((held + failed) / 2.0);
                if middle <= held || middle >= failed {
                    self.cut = Some(Ending::ConvergedAtRounding);
                    None
                } else {
                    Some(middle)
                }
            }
            (Some(held), None) => match self.max_rate {
                Some(max) if held >= max => None,
                Some(max) => Some(round_rate((held * RAMP_FACTOR).min(max))),
                None => Some(round_rate(held * RAMP_FACTOR)),
            },
            (None, Some(failed)) if failed / 2.0 < MIN_RATE => None,
            (None, Some(failed)) => Some(round_rate(failed / 2.0)),
            (None, None) => self.next,
        };
        if self.next.is_some() && self.steps >= crate::plan::MAX_SEARCH_STEPS {
            self.next = None;
            self.cut = Some(Ending::SearchStepCap);
        }
    }

    pub fn ending(&self) -> Ending {
        if let Some(cut) = self.cut {
            return cut;
        }
        match (self.held, self.failed) {
            (None, _) => Ending::NothingHeld,
            (Some(_), None) => Ending::HeldAtMaxRate,
            (Some(_), Some(_)) => Ending::Converged,
        }
    }
}

/// Rates are kept to 3 significant digits (readable step names, no false precision).
pub fn round_rate(rate: f64) -> f64 {
    if rate <= 0.0 {
        return rate;
    }
    let digits = rate.log10().floor() as i32;
    let scale = 10f64.powi(digits - 2);
    (rate / scale).round() * scale
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the search against a target that holds every rate up to `capacity`.
    fn hunt(capacity: f64, ceiling: f64, max_rate: Option<f64>) -> (Search, Vec<f64>) {
        let mut search = Search::new(ceiling, 0.05, max_rate);
        let mut tried = Vec::new();
        while let Some(rate) = search.next_rate() {
            tried.push(rate);
            search.record(rate, rate <= capacity);
            assert!(tried.len() < 40, "search does not converge: {tried:?}");
        }
        (search, tried)
    }

    #[test]
    fn converges_within_the_resolution() {
        for (capacity, ceiling) in [
            (500.0, 520.0),
            (500.0, 2000.0),
            (500.0, 100.0),
            (37.0, 40.0),
        ] {
            let (search, tried) = hunt(capacity, ceiling, None);
            let held = search.highest_held().unwrap();
            let failed = search.lowest_failed().unwrap();
            assert!(held <= capacity && failed > capacity, "{tried:?}");
            assert!((failed - held) / held <= 0.05, "{tried:?}");
            assert!(
                held >= capacity * 0.94,
                "capacity {capacity}: found {held} via {tried:?}"
            );
            assert_eq!(search.ending(), Ending::Converged);
        }
    }

    #[test]
    fn stops_at_max_rate_and_when_nothing_holds() {
        let (search, tried) = hunt(10_000.0, 500.0, Some(800.0));
        assert_eq!(search.ending(), Ending::HeldAtMaxRate);
        assert_eq!(*tried.last().unwrap(), 800.0);
        let (search, _) = hunt(0.5, 100.0, None);
        assert_eq!(search.ending(), Ending::NothingHeld);
    }

    /// A resolution finer than rounding allows used to bisect forever between two rates
    /// whose midpoint rounds back to one of them.
    #[test]
    fn ends_when_rounding_stops_the_bisection_and_at_the_step_cap() {
        let mut search = Search::new(1000.0, 0.0001, None);
        let mut tried = Vec::new();
        while let Some(rate) = search.next_rate() {
            tried.push(rate);
            search.record(rate, rate <= 999.4);
            assert!(tried.len() <= crate::plan::MAX_SEARCH_STEPS, "{tried:?}");
        }
        let (held, failed) = (
            search.highest_held().unwrap(),
            search.lowest_failed().unwrap(),
        );
        assert!(held <= 999.4 && failed > 999.4, "{tried:?}");
        assert!((failed - held) / held <= 0.011, "{held} {failed}");
        let distinct: std::collections::BTreeSet<u64> = tried.iter().map(|r| r.to_bits()).collect();
        assert_eq!(
            distinct.len(),
            tried.len(),
            "a rate was offered twice: {tried:?}"
        );
        // A target that holds at random never converges: the cap ends it.
        let mut search = Search::new(1000.0, 0.05, None);
        let mut n = 0u32;
        while let Some(rate) = search.next_rate() {
            n += 1;
            search.record(rate, n % 2 == 0 || rate < 10.0);
        }
        assert!(n as usize <= crate::plan::MAX_SEARCH_STEPS);
        assert!(matches!(
            search.ending(),
            Ending::SearchStepCap | Ending::Converged | Ending::ConvergedAtRounding
        ));
    }

    #[test]
    fn rounds_to_three_digits() {
        assert_eq!(round_rate(1234.5), 1230.0);
        assert_eq!(round_rate(99.94), 99.9);
        assert_eq!(round_rate(150.0), 150.0);
    }
}

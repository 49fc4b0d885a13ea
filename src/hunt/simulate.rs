//! A simulated target the hunt can drive in no time: a service of known capacity, service
//! time and way of failing, answering each step with what such a service would show (its
//! latency histogram judged by the real SLO, its time slices, its errors). The hunt runs
//! probe → search → holds → overload → recovery against it in milliseconds, so the search's
//! edge cases (a max rate, nothing holding, the generator limited, Ctrl-C mid-search) are
//! tested without load.

use super::StepRunner;
use crate::engine::record::{new_histogram, percentiles};
use crate::error::Error;
use crate::model::step::{GeneratorHealth, Slice, StepResult};
use crate::model::ErrorClass;
use crate::plan::{Load, Phase, StepSpec};
use crate::slo::{Slo, StepFigures};
use std::collections::BTreeMap;

/// How the simulated service behaves past its capacity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PastCapacity {
    /// Every request is served, in turn: a queue grows through the step.
    Queues,
    /// What it cannot serve is answered 503 at once.
    Sheds,
}

/// A service of known capacity.
#[derive(Clone, Debug)]
pub struct Service {
    pub capacity_rps: f64,
    /// Service time of one request, alone.
    pub service_ms: f64,
    pub past_capacity: PastCapacity,
    /// Above this offered rate the generator is the limit (its steps say so).
    pub generator_limit_rps: Option<f64>,
    /// Search steps at or above this rate fail on a passing spike (a second of waiting),
    /// whatever the capacity: the hunt's holds, longer and warm, do not meet it.
    pub search_spike_from_rps: Option<f64>,
}

/// Runs steps against a `Service` with no load and no time.
pub struct Simulation {
    pub service: Service,
    pub slo: Slo,
    pub steps: Vec<StepResult>,
    /// Ctrl-C arrives after this many steps.
    pub interrupt_after: Option<usize>,
    interrupted: bool,
    /// Requests queued when the last step ended (an overload's backlog meets the next step).
    backlog: f64,
    /// The steps asked to be profiled right before a recovery step.
    pub profiled_before_recovery: Vec<String>,
}

impl Simulation {
    pub fn new(service: Service, slo: Slo) -> Simulation {
        Simulation {
            service,
            slo,
            steps: Vec::new(),
            interrupt_after: None,
            interrupted: false,
            backlog: 0.0,
            profiled_before_recovery: Vec::new(),
        }
    }

    /// What the service shows for one step, and the backlog it leaves.
    fn run_step(&mut self, spec: &StepSpec) -> StepResult {
        let s = &self.service;
        let seconds = spec.duration.as_secs_f64();
        let (offered, concurrency) = match spec.load {
            Load::Rate { rps, .. } => (rps, None),
            Load::Concurrency(n) => {
                // Closed model: n clients back to back, at most the capacity.
                let rate = (f64::from(n) * 1000.0 / s.service_ms).min(s.capacity_rps);
                (rate, Some(n))
            }
        };
        let requests = (offered * seconds).round() as u64;
        let slices = 20u64;
        let mut latency = new_histogram();
        let mut slice_results = Vec::new();
        let mut errors = 0u64;
        let mut served = 0.0;
        let excess = (offered - s.capacity_rps).max(0.0);
        for i in 0..slices {
            let t = seconds * (i as f64 + 0.5) / slices as f64;
            let per_slice = requests * (i + 1) / slices - requests * i / slices;
            // Queueing delay: the backlog carried in, grown by the excess, drained by spare
            // capacity; ρ/(1-ρ) waiting below capacity.
            let queued = match s.past_capacity {
                PastCapacity::Queues => {
                    (self.backlog + excess * t - (s.capacity_rps - offered).max(0.0) * t).max(0.0)
                }
                PastCapacity::Sheds => 0.0,
            };
            let rho = (offered / s.capacity_rps).min(0.99);
            let wait_ms =
                queued / s.capacity_rps * 1000.0 + s.service_ms * rho / (1.0 - rho).max(0.05) * 0.5;
            let shed = match s.past_capacity {
                PastCapacity::Sheds => (excess / offered.max(1e-9) * per_slice as f64) as u64,
                PastCapacity::Queues => 0,
            };
            let spike = spec.phase == Phase::Search
                && s.search_spike_from_rps.is_some_and(|from| offered >= from);
            let wait_ms = wait_ms + if spike { 1_000.0 } else { 0.0 };
            let p99 = s.service_ms + wait_ms * 2.0;
            for k in 0..per_slice {
                // Spread over 0.5–1.5× the mean, the same way whatever the slice's count.
                let n = (requests * i / slices + k) as f64;
                let spread = 0.5 + (n * 0.618_034).fract();
                let ms = if k < shed {
                    0.1
                } else {
                    (s.service_ms + wait_ms) * spread
                };
                latency.saturating_record((ms * 1000.0).max(1.0) as u64);
            }
            errors += shed;
            served += (per_slice - shed) as f64;
            slice_results.push(Slice {
                t_s: seconds * i as f64 / slices as f64,
                requests: per_slice,
                errors: shed,
                completed_rps: per_slice as f64 / (seconds / slices as f64),
                p50_ms: s.service_ms + wait_ms,
                p99_ms: p99,
            });
        }
        if s.past_capacity == PastCapacity::Queues {
            self.backlog = (self.backlog + (offered - s.capacity_rps) * seconds).max(0.0);
        }
        let achieved = (served.min(s.capacity_rps * seconds) + errors as f64) / seconds;
        let ok = served.min(s.capacity_rps * seconds) / seconds;
        let limited = s.generator_limit_rps.is_some_and(|g| offered > g);
        let figures = StepFigures {
            latency_us: &latency,
            requests,
            errors,
            achieved_rps: achieved,
            offered_rps: concurrency.is_none().then_some(offered),
        };
        let slo_checks = self.slo.judge(limited.then_some("simulated"), &figures);
        let slo_failures = crate::slo::failures_of(&slo_checks);
        let mut error_classes = BTreeMap::new();
        if errors > 0 {
            error_classes.insert(ErrorClass::Http5xx, errors);
        }
        StepResult {
            name: spec.name.clone(),
            phase: spec.phase,
            offered_rps: concurrency.is_none().then_some(offered),
            concurrency,
            started_s: None,
            duration_s: seconds,
            warmup_s: spec.warmup.as_secs_f64(),
            requests,
            achieved_rps: achieved,
            ok_rps: ok,
            errors,
            error_rate: errors as f64 / requests.max(1) as f64,
            error_classes,
            status_codes: BTreeMap::new(),
            latency_ms: percentiles(&latency),
            service_ms: percentiles(&latency),
            connect_ms: None,
            tls_ms: None,
            by_connection: None,
            generator: GeneratorHealth {
                limited,
                limited_reason: limited.then(|| "simulated".to_string()),
                ..GeneratorHealth::default()
            },
            holds: slo_failures.is_empty(),
            slo_failures,
            slo_checks,
            partial: false,
            warmup_requests: 0,
            unfinished: 0,
            in_flight_mean: 0.0,
            profiled: None,
            slices: slice_results,
            notes: Vec::new(),
            by_request: Vec::new(),
            flows: None,
            observed: None,
        }
    }
}

impl StepRunner for Simulation {
    async fn chain(&mut self, specs: &[StepSpec]) -> Result<Vec<StepResult>, Error> {
        let mut results = Vec::new();
        for spec in specs {
            if self.interrupt_after.is_some_and(|n| self.steps.len() >= n) {
                self.interrupted = true;
                break;
            }
            if spec.profile_before_recovery {
                self.profiled_before_recovery.push(spec.name.clone());
            }
            let result = self.run_step(spec);
            self.steps.push(result.clone());
            results.push(result);
        }
        if !specs.iter().any(|s| s.phase == Phase::Recovery) && specs.len() == 1 {
            // A step on its own is followed by a pause: the queue drains.
            self.backlog = 0.0;
        }
        Ok(results)
    }

    fn steps(&self) -> &[StepResult] {
        &self.steps
    }

    fn slo(&self) -> &Slo {
        &self.slo
    }

    fn slo_mut(&mut self) -> &mut Slo {
        &mut self.slo
    }

    fn interrupted(&self) -> bool {
        self.interrupted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Ending, FailureMode};
    use crate::plan::HuntSettings;
    use std::time::Duration;

    fn settings() -> HuntSettings {
        HuntSettings::new(Duration::from_secs(2), Duration::from_secs(4))
    }

    fn service(capacity: f64, past: PastCapacity) -> Service {
        Service {
            capacity_rps: capacity,
            service_ms: 2.0,
            past_capacity: past,
            generator_limit_rps: None,
            search_spike_from_rps: None,
        }
    }

    fn hunt(sim: &mut Simulation, settings: &HuntSettings) -> crate::model::KneeAnalysis {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime
            .block_on(super::super::run(sim, settings, false))
            .unwrap()
    }

    fn slo() -> Slo {
        Slo::parse_list("p99=50ms,errors=1%").unwrap()
    }

    #[test]
    fn the_hunt_converges_on_a_known_capacity_in_no_time() {
        for capacity in [40.0, 480.0, 2_000.0, 37_000.0] {
            let mut sim = Simulation::new(service(capacity, PastCapacity::Queues), slo());
            let found = hunt(&mut sim, &settings());
            let cap = found.capacity_rps.unwrap();
            assert!(
                cap <= capacity && cap >= 0.9 * capacity,
                "capacity {capacity}: found {cap} ({:?})",
                found.ending
            );
            assert!(
                matches!(
                    found.ending,
                    Ending::Converged | Ending::ConvergedAtRounding
                ),
                "{:?}",
                found.ending
            );
            assert_eq!(found.failure_mode, Some(FailureMode::QueuesWithoutBound));
            assert!(found.recovery_measured);
            assert_eq!(found.holds.len(), 5);
            let names: Vec<&str> = sim.steps.iter().map(|s| s.name.as_str()).collect();
            assert_eq!(names.last(), Some(&"recovery"), "{names:?}");
        }
    }

    #[test]
    fn the_overload_is_profiled_when_no_hold_above_capacity_failed_before_it() {
        for (holds, profiled) in [(vec![0.5, 1.001, 1.2], true), (vec![0.5, 1.1, 1.2], false)] {
            let mut sim = Simulation::new(service(480.0, PastCapacity::Queues), slo());
            let settings = HuntSettings {
                holds,
                ..settings()
            };
            hunt(&mut sim, &settings);
            let held = |name: &str| sim.steps.iter().find(|s| s.name == name).unwrap().holds;
            let first_above = if profiled { "hold-100" } else { "hold-110" };
            // Just above the capacity found, the hold still held (the capacity was found a
            // little low): the overload is the knee's only failing hold, so it is profiled.
            assert_eq!(held(first_above), profiled, "{:?}", sim.steps);
            assert!(!held("hold-120"));
            let expected: Vec<String> = if profiled {
                vec!["hold-120".into()]
            } else {
                Vec::new()
            };
            assert_eq!(sim.profiled_before_recovery, expected);
        }
    }

    #[test]
    fn when_every_hold_above_a_spiked_search_holds_the_holds_go_on_up_to_the_knee() {
        // Capacity 480, but every search step from 300 up fails on a spike: the search
        // settles near 300, and its holds up to 120 % (about 360) all hold.
        let spiky = Service {
            search_spike_from_rps: Some(300.0),
            ..service(480.0, PastCapacity::Queues)
        };
        let mut sim = Simulation::new(spiky, slo());
        let found = hunt(&mut sim, &settings());
        let names: Vec<&str> = sim.steps.iter().map(|s| s.name.as_str()).collect();
        let capacity = found.capacity_rps.unwrap();
        assert!((400.0..=480.0).contains(&capacity), "{capacity} {names:?}");
        let last = found.holds.last().unwrap();
        assert!(!last.holds && last.offered_rps > 480.0, "{:?}", found.holds);
        assert!(last.step.starts_with("hold-1"), "{names:?}");
        assert!(found
            .notes
            .iter()
            .any(|n| n.contains("holds went on upward")));
        assert_eq!(found.failure_mode, Some(FailureMode::QueuesWithoutBound));
        // The verdict's knee is that failing hold, profiled, not the spiked search step.
        let (knee, below) =
            crate::analyze::verdict::knee_steps_for_tests(&sim.steps, found.capacity_rps);
        assert_eq!(knee.unwrap().name, last.step, "{names:?}");
        assert_eq!(below.unwrap().phase, Phase::Hold);
        // Without the spike, nothing of this happens.
        let mut plain = Simulation::new(service(480.0, PastCapacity::Queues), slo());
        let found = hunt(&mut plain, &settings());
        assert_eq!(found.holds.len(), 5);
        assert!(!found
            .notes
            .iter()
            .any(|n| n.contains("holds went on upward")));
    }

    #[test]
    fn a_max_rate_below_capacity_is_held_at_max_rate() {
        let mut sim = Simulation::new(service(1_000.0, PastCapacity::Queues), slo());
        let settings = HuntSettings {
            max_rate: Some(300.0),
            ..settings()
        };
        let found = hunt(&mut sim, &settings);
        assert_eq!(found.ending, Ending::HeldAtMaxRate);
        assert_eq!(found.capacity_rps, Some(300.0));
        assert!(sim
            .steps
            .iter()
            .all(|s| s.phase != Phase::Search || s.offered_rps <= Some(300.0)));
    }

    #[test]
    fn nothing_holds_on_a_service_slower_than_the_slo() {
        let mut sim = Simulation::new(
            Service {
                service_ms: 80.0,
                ..service(100.0, PastCapacity::Queues)
            },
            slo(),
        );
        let found = hunt(&mut sim, &settings());
        assert_eq!(found.ending, Ending::NothingHeld, "{found:?}");
        assert_eq!(found.capacity_rps, None);
        assert!(found.holds.is_empty(), "no holds without a capacity");
    }

    #[test]
    fn a_generator_limited_step_ends_the_search_and_says_so() {
        let mut sim = Simulation::new(
            Service {
                generator_limit_rps: Some(2_500.0),
                ..service(5_000.0, PastCapacity::Queues)
            },
            slo(),
        );
        let found = hunt(&mut sim, &settings());
        assert_eq!(found.ending, Ending::GeneratorLimited);
        let capacity = found.capacity_rps.unwrap();
        assert!((1_000.0..=2_500.0).contains(&capacity), "{capacity}");
        assert!(
            found
                .notes
                .iter()
                .any(|n| n.contains("the generator is the limit")),
            "{:?}",
            found.notes
        );
    }

    #[test]
    fn ctrl_c_in_the_search_keeps_what_held() {
        let mut sim = Simulation::new(service(1_000.0, PastCapacity::Queues), slo());
        sim.interrupt_after = Some(6);
        let found = hunt(&mut sim, &settings());
        assert_eq!(found.ending, Ending::Interrupted);
        assert_eq!(sim.steps.len(), 6);
        assert!(found.capacity_rps.is_some(), "{found:?}");
        assert!(found.holds.is_empty(), "no holds after Ctrl-C");
    }

    #[test]
    fn a_service_that_sheds_is_told_from_one_that_queues() {
        let mut sim = Simulation::new(service(800.0, PastCapacity::Sheds), slo());
        let found = hunt(&mut sim, &settings());
        assert_eq!(
            found.failure_mode,
            Some(FailureMode::ShedsGracefully),
            "{found:?}"
        );
        assert_eq!(
            found.recovery_s,
            Some(0.0),
            "nothing queued: recovered at once"
        );
    }
}

//! Observing a target of several processes (`observe::replicas`): each replica gets the
//! observers a one-process target gets (its runtime's profiler, its off-CPU stacks, its
//! threads), run under a step name of its own (`hold-105.r2`, so its files are its own);
//! the step's `observed.replicas` keeps what each saw, and `observed.profile` / `offcpu`
//! become the service's, merged (`flame::replicas`). A replica's waits are counted per
//! request against its share of the requests, read from its share of the service's CPU
//! (the balancer's own split is not visible from here).

use crate::flame::replicas::{merge_offcpu, merge_profiles, per_replica_requests};
use crate::model::observed::{ReplicaObserved, ShareOf};
use crate::model::step::StepResult;
use crate::model::{series, Observed};
use crate::observe::Observer;
use crate::plan::StepSpec;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

/// One replica and its own observers.
pub struct Watched {
    pub index: usize,
    pub pid: u32,
    pub name: String,
    pub observers: Vec<Box<dyn Observer>>,
}

pub struct ReplicasObserver {
    pub replicas: Vec<Watched>,
    pub dir: PathBuf,
}

/// Each replica's share of the work: of the replicas' write calls over the window (an
/// answer is one or a few), else of their CPU when it is enough to count (at 0.02 cores a
/// replica's CPU is a few 10 ms ticks a second, and one tick more is a share of 30 %), else
/// of their voluntary context switches; none when nothing was read.
fn shares(observed: &Observed, replicas: &[Watched]) -> (BTreeMap<usize, f64>, Option<ShareOf>) {
    let mean = |index: usize, field: &str| {
        observed
            .samplers
            .as_ref()
            .and_then(|s| s.series.get(&series::replica(index, field)))
            .map(|stat| stat.mean)
    };
    for (field, of, enough) in [
        ("write_calls_per_s", ShareOf::WriteCalls, 0.0),
        ("cpu_cores", ShareOf::Cpu, MIN_CPU_FOR_SHARES),
        ("voluntary_ctx_per_s", ShareOf::ContextSwitches, 0.0),
    ] {
        let each: BTreeMap<usize, f64> = replicas
            .iter()
            .filter_map(|r| Some((r.index, mean(r.index, field)?)))
            .collect();
        let total: f64 = each.values().sum();
        if each.len() == replicas.len() && total > enough {
            let shares = each.into_iter().map(|(i, v)| (i, v / total)).collect();
            return (shares, Some(of));
        }
    }
    (BTreeMap::new(), None)
}

/// The replicas' CPU, in cores, below which their shares of it are left unread.
const MIN_CPU_FOR_SHARES: f64 = 0.2;

/// The step as a replica's observers see it: its name marked with the replica.
fn as_replica(spec: &StepSpec, index: usize) -> StepSpec {
    StepSpec {
        name: format!("{}.r{index}", spec.name),
        ..spec.clone()
    }
}

impl Observer for ReplicasObserver {
    fn name(&self) -> &str {
        "replicas"
    }

    fn step_started(&mut self, spec: &StepSpec, starts_at: Instant) {
        for replica in &mut self.replicas {
            let spec = as_replica(spec, replica.index);
            for observer in &mut replica.observers {
                observer.step_started(&spec, starts_at);
            }
        }
    }

    fn step_finished(
        &mut self,
        spec: &StepSpec,
        result: &StepResult,
        window: (Instant, Instant),
        observed: &mut Observed,
    ) {
        let (shares, share_of) = shares(observed, &self.replicas);
        let mut parts = Vec::new();
        for replica in &mut self.replicas {
            let own_spec = as_replica(spec, replica.index);
            let mut own = Observed::default();
            for observer in &mut replica.observers {
                observer.step_finished(&own_spec, result, window, &mut own);
            }
            parts.push(ReplicaObserved {
                index: replica.index,
                pid: replica.pid,
                name: replica.name.clone(),
                share: shares.get(&replica.index).copied(),
                share_of,
                observed: Box::new(own),
            });
        }
        let title = crate::flame::title(spec, result);
        let profiles: Vec<_> = parts
            .iter()
            .filter_map(|p| p.observed.profile.as_ref())
            .collect();
        if let Some(profile) = merge_profiles(&self.dir, &spec.name, &title, &profiles) {
            observed.profile = Some(profile);
        }
        let waits: Vec<_> = parts
            .iter()
            .filter_map(|p| p.observed.offcpu.as_ref())
            .collect();
        // Requests completed while the waits were recorded (the same window for each).
        let requests = waits.first().map_or(result.requests, |w| w.requests);
        if let Some(offcpu) = merge_offcpu(&self.dir, &spec.name, &title, &waits, requests) {
            observed.offcpu = Some(offcpu);
        }
        for part in &mut parts {
            if let (Some(offcpu), Some(share)) = (part.observed.offcpu.as_mut(), part.share) {
                per_replica_requests(offcpu, share);
            }
        }
        observed.replicas = Some(parts);
    }
}

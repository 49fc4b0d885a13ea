//! The verdict across the replicas of a target of several processes. The service's verdict
//! is judged on the merged view (its CPU is every replica's, its waits all of theirs); each
//! replica is then judged alone, on its own series, profile and waits (its waits per request
//! against its own share of the requests), and the verdict says in how many the same
//! bottleneck was found, and whether the balancer spread the work unevenly.

use super::table::UNEVEN_SHARE;
use super::{rank, signals, waits_baseline, Context};
use crate::model::observed::ReplicaObserved;
use crate::model::step::StepResult;
use crate::model::verdict::Verdict;
use crate::slo::Slo;

/// The knee step's replicas, when the target had several.
fn replicas_of(step: &StepResult) -> Option<&[ReplicaObserved]> {
    let replicas = step.observed.as_ref()?.replicas.as_deref()?;
    (replicas.len() > 1).then_some(replicas)
}

/// `step` as replica `index` alone saw it: its own profile, waits and threads, and its
/// `replicaN.*` series as the target's; None when the step has no such replica.
pub fn view(step: &StepResult, index: usize) -> Option<StepResult> {
    let observed = step.observed.as_ref()?;
    let replica = observed
        .replicas
        .as_ref()?
        .iter()
        .find(|r| r.index == index)?;
    let mut own = (*replica.observed).clone();
    own.processes = observed.processes.clone();
    if let Some(samplers) = &observed.samplers {
        let mut samplers = samplers.clone();
        let prefix = format!("replica{index}.");
        let mine: Vec<(String, crate::model::Stat)> = samplers
            .series
            .iter()
            .filter_map(|(k, v)| Some((format!("target.{}", k.strip_prefix(&prefix)?), *v)))
            .collect();
        samplers.series.retain(|k, _| !k.starts_with("replica"));
        samplers.series.extend(mine);
        samplers.target_pid = Some(replica.pid);
        own.samplers = Some(samplers);
    }
    own.replicas = None;
    Some(StepResult {
        observed: Some(own),
        ..step.clone()
    })
}

/// Judges each replica alone and adds to `v`: in how many of them its bottleneck was, each
/// one's own, and an uneven spread.
pub fn across(ctx: &Context, slo: &Slo, v: &mut Verdict) {
    let Some(replicas) = replicas_of(ctx.knee) else {
        return;
    };
    let mut same = 0;
    let mut lines = Vec::new();
    for replica in replicas {
        let Some(knee) = view(ctx.knee, replica.index) else {
            continue;
        };
        let below = ctx.below.and_then(|b| view(b, replica.index));
        // Only hold steps can be a wait baseline (`waits_baseline`): the others are not viewed.
        let baseline: Vec<StepResult> = ctx
            .steps
            .iter()
            .filter(|s| s.phase == crate::model::Phase::Hold)
            .filter_map(|s| view(s, replica.index))
            .collect();
        let waits_below = waits_baseline(&baseline, below.as_ref(), slo);
        let own = rank(signals::all(&Context {
            knee: &knee,
            below: below.as_ref(),
            waits_below,
            ..*ctx
        }));
        if own.kind == v.kind && own.site == v.site {
            same += 1;
        }
        // Its share of the good answers at the knee, read from its share of the work.
        let good = ctx.knee.good_requests_per_s();
        let share = replica
            .share
            .zip(replica.share_of)
            .map_or(String::new(), |(s, of)| {
                format!(
                    "; {:.0} % of the service's {}: about {:.0} of its {good:.0} good req/s",
                    s * 100.0,
                    of.words(),
                    s * good
                )
            });
        lines.push(format!(
            "replica {} (pid {}, {}): {}{share}",
            replica.index, replica.pid, replica.name, own.bottleneck
        ));
    }
    let n = replicas.len();
    v.bottleneck = format!("{} (in {same} of {n} replicas)", v.bottleneck);
    v.evidence.extend(lines);
    if let Some(line) = uneven(replicas) {
        v.evidence.push(line);
    }
}

/// "uneven spread: replica 2 did 75 % of the work (write calls; an even share is 50 %)",
/// when one replica's share is at least `UNEVEN_SHARE` times an even one.
fn uneven(replicas: &[ReplicaObserved]) -> Option<String> {
    let even = 1.0 / replicas.len() as f64;
    let busiest = replicas
        .iter()
        .filter_map(|r| Some((r, r.share?, r.share_of?)))
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    (busiest.1 >= UNEVEN_SHARE * even).then(|| {
        format!(
            "uneven spread: replica {} (pid {}) did {:.0} % of the work ({}; an even share is {:.0} %)",
            busiest.0.index,
            busiest.0.pid,
            busiest.1 * 100.0,
            busiest.2.words(),
            even * 100.0
        )
    })
}

#[cfg(test)]
mod tests {
    use crate::analyze::verdict::verdict_on;
    use crate::model::step::testing::step;
    use crate::model::Phase;
    use crate::slo::Slo;
    use serde_json::json;

    /// Two replicas, each a busy core at the knee; the first did three parts of four.
    fn replicas(
        step: crate::model::step::StepResult,
        cpu: [f64; 2],
    ) -> crate::model::step::StepResult {
        let each = |index: usize, share: f64| {
            json!({"index": index, "pid": 100 + index, "name": "api", "share": share,
                   "share_of": "cpu", "observed": {}})
        };
        step.with("host.cores", 2.0)
            .with("target.cpu_cores", cpu[0] + cpu[1])
            .with("replica1.cpu_cores", cpu[0])
            .with("replica2.cpu_cores", cpu[1])
            .with_observed("replicas", json!([each(1, 0.75), each(2, 0.25)]))
    }

    #[test]
    fn each_replica_is_judged_with_its_share_of_the_good_answers() {
        let below = replicas(
            step("hold-095", Phase::Hold, 950.0, 950.0, 12.0),
            [0.7, 0.6],
        );
        let knee = replicas(
            step("hold-105", Phase::Hold, 1050.0, 1000.0, 900.0).failing(),
            [0.99, 0.98],
        );
        let v = verdict_on(&[below, knee], Some(950.0), &Slo::default(), 2);
        // The service is CPU-bound; each replica alone is one busy core.
        assert!(v.bottleneck.ends_with(" of 2 replicas)"), "{v:#?}");
        assert!(
            v.evidence
                .iter()
                .any(|e| e.starts_with("replica 1 (pid 101, api): ")
                    && e.ends_with(
                        "; 75 % of the service's CPU: about 750 of its 1000 good req/s"
                    )),
            "{v:#?}"
        );
        assert!(
            v.evidence
                .iter()
                .any(|e| e.starts_with("uneven spread: replica 1 (pid 101) did 75 % of the work")),
            "{v:#?}"
        );
    }
}

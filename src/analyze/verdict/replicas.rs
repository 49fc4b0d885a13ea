//! The verdict across the replicas of a target of several processes. The service's verdict
//! is judged on the merged view (its CPU is every replica's, its waits all of theirs); each
//! replica is then judged alone, on its own series, profile and waits (its waits per request
//! against its own share of the requests), and the verdict says in how many the same
//! bottleneck was found, and whether the balancer spread the work unevenly.

use super::table::{Rank, BALANCER_BUSY, UNEVEN_SHARE};
use super::{rank, signals, waits_baseline, Context, Finding};
use crate::model::observed::ReplicaObserved;
use crate::model::step::StepResult;
use crate::model::verdict::Kind;
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
        let baseline: Vec<StepResult> = ctx
            .steps
            .iter()
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
        let share = replica
            .share
            .zip(replica.share_of)
            .map_or(String::new(), |(s, of)| {
                format!("; {:.0} % of the service's {}", s * 100.0, of.words())
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

/// The balancer in front of the service (`balancer.*`, when knee followed one) at its CPU:
/// at least `BALANCER_BUSY` of its worker processes (a master and its workers: one core per
/// worker) or of the host's cores, when fewer.
pub fn balancer(ctx: &Context) -> Option<Finding> {
    let cpu = ctx.at_knee("balancer.cpu_cores")?;
    let processes = ctx.at_knee("balancer.processes").unwrap_or(1.0).round();
    let workers = if processes > 1.0 {
        processes - 1.0
    } else {
        1.0
    };
    let ceiling = workers.min(ctx.cores);
    if cpu < BALANCER_BUSY * ceiling {
        return None;
    }
    let was = ctx
        .below("balancer.cpu_cores")
        .map_or(String::new(), |b| format!(" (below the knee: {b:.2})"));
    let mut finding = Finding::new(
        Kind::Balancer,
        Rank::SaturatedBalancer,
        format!("the balancer in front of the service, at {cpu:.2} cores"),
    )
    .evidence(format!(
        "the balancer used {cpu:.2} cores at the knee{was}, with {workers:.0} worker process(es) on {:.0} cores: {:.0} % of what it can use",
        ctx.cores,
        cpu * 100.0 / ceiling
    ))
    .confirm("more worker processes for the balancer (nginx worker_processes, HAProxy nbthread), or one balancer per host");
    if let Some(target) = ctx.target_cpu() {
        finding = finding.evidence(format!("the service behind it used {target:.2} cores"));
    }
    finding.site = None;
    Some(finding)
}

#[cfg(test)]
mod tests {
    use crate::analyze::verdict::verdict;
    use crate::model::step::testing::step;
    use crate::model::Phase;

    #[test]
    fn a_balancer_at_its_workers_cpu_is_named_and_one_with_room_is_not() {
        let pair = |balancer_cpu: f64| {
            let below = step("hold-095", Phase::Hold, 4750.0, 4750.0, 12.0)
                .with("host.cores", 2.0)
                .with("target.cpu_cores", 0.5)
                .with("balancer.cpu_cores", 0.7)
                .with("balancer.processes", 2.0);
            let knee = step("hold-105", Phase::Hold, 5250.0, 4800.0, 900.0)
                .failing()
                .with("host.cores", 2.0)
                .with("target.cpu_cores", 0.55)
                .with("balancer.cpu_cores", balancer_cpu)
                .with("balancer.processes", 2.0);
            verdict(&[below, knee], Some(4750.0), 0.01)
        };
        // nginx with one worker (a master and a worker) at a full core.
        let v = pair(0.97);
        assert_eq!(v.kind.to_string(), "balancer", "{v:#?}");
        assert!(
            v.evidence.iter().any(|e| e.contains(
                "the balancer used 0.97 cores at the knee (below the knee: 0.70), with 1 worker process(es) on 2 cores: 97 %"
            )),
            "{v:#?}"
        );
        let v = pair(0.6);
        assert_ne!(v.kind.to_string(), "balancer", "{v:#?}");
    }
}

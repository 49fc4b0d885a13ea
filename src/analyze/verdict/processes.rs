//! Signals from the other processes on the target's host (`observe::processes`): a
//! downstream the target talks to that saturated, and the names behind "outside the target".

use super::table::{Rank, BALANCER_BUSY, SATURATED_DOWNSTREAM_CORES, WAITING_SHARE};
use super::{Context, Finding};
use crate::model::observed::{Processes, Role};
use crate::model::verdict::Kind;

/// The target waits (little CPU) while a process it holds connections to is CPU-bound.
pub fn downstream(ctx: &Context) -> Option<Finding> {
    let processes = Processes::of(ctx.knee)?;
    let cpu = ctx.target_cpu()?;
    if cpu >= WAITING_SHARE * ctx.cores {
        return None;
    }
    let (d, cores, name) = processes
        .downstreams
        .iter()
        .filter_map(|d| Some((d, d.cores?, d.name.clone()?)))
        .filter(|(_, cores, _)| *cores >= SATURATED_DOWNSTREAM_CORES)
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    let pid = d.pid.map_or(String::new(), |p| format!("pid {p}, "));
    let mut finding = Finding::new(
        Kind::Downstream,
        Rank::SaturatedDownstream,
        format!(
            "downstream: {name} ({pid}{}) CPU-bound at {cores:.2} of {:.0} cores",
            d.peer, ctx.cores
        ),
    )
    .evidence(format!(
        "the target used {cpu:.2} cores and held {} connections to {name} at {}",
        d.connections, d.peer
    ))
    .confirm(format!(
        "{name}'s own view of the load (its slow queries, its plans: a missing index, a full scan)"
    ));
    let group = processes
        .top
        .iter()
        .find(|b| b.name == name && b.role == Some(Role::Downstream));
    if let Some(group) = group {
        finding = finding.evidence(format!(
            "{name}: {} processes, {} threads, {} running at the step's end",
            group.processes, group.threads, group.running
        ));
    }
    if let Some(below) = ctx
        .below
        .and_then(Processes::of)
        .and_then(|p| p.downstreams.iter().find(|b| b.peer == d.peer))
        .and_then(|b| b.cores)
    {
        finding = finding.evidence(format!(
            "{name} used {below:.2} cores below the knee, {cores:.2} at it"
        ));
    }
    finding.site = Some(format!("{name} ({})", d.peer));
    Some(finding)
}

/// "busiest: postgres 1.46 (downstream), python3 0.05 (target)" for a hold line.
pub fn busiest_line(step: &crate::model::step::StepResult) -> Option<String> {
    let processes = Processes::of(step)?;
    let names: Vec<String> = processes
        .top
        .iter()
        .filter(|b| b.cores >= 0.05)
        .take(3)
        .map(|b| match &b.role {
            Some(role) => format!("{} {:.2} ({role})", b.name, b.cores),
            None => format!("{} {:.2}", b.name, b.cores),
        })
        .collect();
    (!names.is_empty()).then(|| format!("busiest: {}", names.join(", ")))
}

/// "the target held 16 connections to 10.0.0.5:5432" for a socket wait's evidence.
pub fn connections_line(ctx: &Context) -> Option<String> {
    let processes = Processes::of(ctx.knee)?;
    let peers: Vec<String> = processes
        .downstreams
        .iter()
        .take(3)
        .map(|d| match &d.name {
            Some(name) => format!("{} to {name} at {}", d.connections, d.peer),
            None => format!("{} to {}", d.connections, d.peer),
        })
        .collect();
    (!peers.is_empty()).then(|| format!("the target held connections: {}", peers.join(", ")))
}

/// CPU outside the target that its downstreams explain, at the knee.
pub fn downstream_cores(ctx: &Context) -> f64 {
    Processes::of(ctx.knee).map_or(0.0, |p| {
        p.top
            .iter()
            .filter(|b| b.role == Some(Role::Downstream))
            .map(|b| b.cores)
            .sum()
    })
}

/// "postgres 1.20, knee (the generator) 0.31" — who used the CPU outside the target and its
/// downstreams at the knee, busiest first.
pub fn others_named(ctx: &Context) -> Option<String> {
    let processes = Processes::of(ctx.knee)?;
    let names: Vec<String> = processes
        .top
        .iter()
        .filter(|b| !matches!(b.role, Some(Role::Target) | Some(Role::Downstream)))
        .filter(|b| b.cores >= 0.05)
        .take(3)
        .map(|b| match b.role {
            Some(Role::Generator) => {
                format!("{} (the generator, pid {}) {:.2}", b.name, b.pid, b.cores)
            }
            _ => format!("{} (pid {}) {:.2}", b.name, b.pid, b.cores),
        })
        .collect();
    (!names.is_empty()).then(|| names.join(", "))
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
    if let Some(connections) = ctx.at_knee("balancer.upstream_connections") {
        let was = ctx
            .below("balancer.upstream_connections")
            .map_or(String::new(), |b| format!(" (below the knee: {b:.0})"));
        finding = finding.evidence(format!(
            "it held {connections:.0} connections to its upstreams at the knee{was}"
        ));
    }
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
                .with("balancer.processes", 2.0)
                .with("balancer.upstream_connections", 14.0);
            let knee = step("hold-105", Phase::Hold, 5250.0, 4800.0, 900.0)
                .failing()
                .with("host.cores", 2.0)
                .with("target.cpu_cores", 0.55)
                .with("balancer.cpu_cores", balancer_cpu)
                .with("balancer.processes", 2.0)
                .with("balancer.upstream_connections", 31.0);
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
        assert!(
            v.evidence
                .iter()
                .any(|e| e
                    == "it held 31 connections to its upstreams at the knee (below the knee: 14)"),
            "{v:#?}"
        );
        let v = pair(0.6);
        assert_ne!(v.kind.to_string(), "balancer", "{v:#?}");
    }
}

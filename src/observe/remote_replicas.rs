//! Replicas on other hosts: each `knee observe` watches its host's processes of the service
//! (`--pid` repeated or `--process-name` there: `replicaN.*`, `target.*` their sum), and
//! several observers whose targets run the same command are one service with a replica (or
//! a few) on each host. Their series are renumbered so they do not collide on the driver's
//! time line (`replica1.*`… across the hosts, in the order the observers were given; the
//! other hosts' own series under `NAME.*`), and the service's `target.*` is the sum of its
//! replicas over a step's window (`add_service_sums`), because the hosts' samples are taken
//! at different moments. The replicas' profiles and threads are asked of the observer that
//! watches each (`ObserverSpec::for_replica`).

use super::relabel::Relabel;
use super::remote::Feed;
use crate::model::observed::Stat;
use crate::model::run::{Replica, TargetProcess};
use crate::model::series::REPLICA_FIELDS;
use crate::plan::ObserverSpec;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One replica, and the observer to ask about it.
#[derive(Clone, Debug)]
pub struct RemoteReplica {
    /// Its observer, asked about this replica when its observer watches several.
    pub spec: ObserverSpec,
    pub pid: u32,
    pub name: String,
}

/// The command a process runs, numbers aside: two replicas differ by their ports.
fn command_shape(command: &str) -> String {
    let mut shape = String::with_capacity(command.len());
    for c in command.chars() {
        if !c.is_ascii_digit() {
            shape.push(c);
        } else if !shape.ends_with('#') {
            shape.push('#');
        }
    }
    shape
}

/// The program a command line runs (its first word's file name).
fn program(command: &str) -> String {
    let first = command.split_whitespace().next().unwrap_or("?");
    first.rsplit('/').next().unwrap_or(first).to_string()
}

/// The observers watching the service: the first that watches a target, and every other
/// whose target runs the same command (numbers aside), each with its relabelling when there
/// are several (none when one observer watches every replica); the other observers' series
/// are set apart under their names. Each feed is told how to relabel its samples.
pub fn service_observers(feeds: &[Arc<Feed>]) -> Vec<Arc<Feed>> {
    let shape = |f: &Feed| {
        f.description
            .target
            .as_ref()
            .map(|t| command_shape(&t.command))
    };
    let Some(first) = feeds.iter().find(|f| f.description.target.is_some()) else {
        return Vec::new();
    };
    let in_service = |f: &Feed| shape(f) == shape(first);
    let several_hosts = feeds.iter().filter(|f| in_service(f)).count() > 1;
    let mut base = 0;
    let mut service = Vec::new();
    for feed in feeds {
        let relabel = |base, first, several, apart| Relabel {
            base,
            first,
            observer: feed.spec.name.clone(),
            several,
            apart,
        };
        if !in_service(feed) {
            feed.relabel(relabel(0, false, false, true));
            continue;
        }
        let count = feed
            .description
            .target
            .as_ref()
            .map_or(1, |t| t.replicas.len().max(1));
        if several_hosts {
            feed.relabel(relabel(base, base == 0, count > 1, false));
        }
        base += count;
        service.push(feed.clone());
    }
    service
}

/// Every replica the service's observers watch, in order (empty unless there are several).
pub fn replicas(service: &[Arc<Feed>]) -> Vec<RemoteReplica> {
    let all: Vec<RemoteReplica> = service
        .iter()
        .filter_map(|feed| Some((feed, feed.description.target.as_ref()?)))
        .flat_map(|(feed, target)| {
            let one = RemoteReplica {
                spec: feed.spec.clone(),
                pid: target.pid,
                name: program(&target.command),
            };
            match target.replicas.len() {
                0 | 1 => vec![one],
                _ => target
                    .replicas
                    .iter()
                    .enumerate()
                    .map(|(i, r)| RemoteReplica {
                        spec: feed.spec.for_replica(i + 1),
                        pid: r.pid,
                        name: r.name.clone(),
                    })
                    .collect(),
            }
        })
        .collect();
    if all.len() > 1 {
        all
    } else {
        Vec::new()
    }
}

/// The target as run.json names it: the replicas, each with its observer.
pub fn target(replicas: &[RemoteReplica]) -> Option<TargetProcess> {
    let first = replicas.first()?;
    Some(TargetProcess {
        pid: first.pid,
        found_by: format!("observer:{}", first.spec.name),
        exited_at_s: None,
        exit_status: None,
        replicas: replicas
            .iter()
            .map(|r| Replica {
                pid: r.pid,
                name: r.name.clone(),
                observer: Some(r.spec.name.clone()),
            })
            .collect(),
        balancer: None,
    })
}

/// The service's `target.*` over a window as the sum of its replicas', when no sampler read
/// it whole (replicas on several hosts): means add up exactly; the sum of the minima and of
/// the maxima bound it.
pub fn add_service_sums(stats: &mut BTreeMap<String, Stat>) {
    if stats.contains_key("target.cpu_cores") || !stats.contains_key("replica2.cpu_cores") {
        return;
    }
    for field in REPLICA_FIELDS {
        let each: Vec<Stat> = (1..)
            .map_while(|n| stats.get(&format!("replica{n}.{field}")).copied())
            .collect();
        if each.is_empty() {
            continue;
        }
        let sum = each.iter().fold(
            Stat {
                min: 0.0,
                mean: 0.0,
                max: 0.0,
            },
            |total, s| Stat {
                min: total.min + s.min,
                mean: total.mean + s.mean,
                max: total.max + s.max,
            },
        );
        stats.insert(format!("target.{field}"), sum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_is_the_sum_of_its_replicas_when_none_read_it_whole() {
        let stat = |min, mean, max| Stat { min, mean, max };
        let mut stats: BTreeMap<String, Stat> = [
            ("replica1.cpu_cores".to_string(), stat(0.2, 0.3, 0.4)),
            ("replica2.cpu_cores".to_string(), stat(0.1, 0.5, 0.6)),
            ("replica1.rss_mb".to_string(), stat(10.0, 10.0, 10.0)),
        ]
        .into();
        add_service_sums(&mut stats);
        let cpu = stats["target.cpu_cores"];
        assert!((cpu.mean - 0.8).abs() < 1e-9 && (cpu.max - 1.0).abs() < 1e-9);
        assert_eq!(stats["target.rss_mb"].mean, 10.0);
        // A sampler that read the service whole is left as it read it.
        stats.insert("target.cpu_cores".into(), stat(0.0, 0.1, 0.2));
        add_service_sums(&mut stats);
        assert_eq!(stats["target.cpu_cores"].mean, 0.1);
    }

    #[test]
    fn replicas_differ_by_their_numbers_only() {
        assert_eq!(
            command_shape("/srv/ledger --port 8001 lock"),
            command_shape("/srv/ledger --port 18002 lock")
        );
        assert_ne!(
            command_shape("/srv/ledger lock"),
            command_shape("postgres -D /var/lib/postgresql/15/main")
        );
        assert_eq!(program("/usr/bin/python3 app.py"), "python3");
    }
}

//! Renaming an observer's samples on the driver's time line, so that several observers'
//! series do not collide: a service's replicas numbered across hosts (`replicaN.*`), the
//! other hosts' own series under the observer's name (`remote_replicas` decides which).

use crate::model::series::REPLICA_FIELDS;
use std::collections::BTreeMap;

/// How an observer's samples are renamed when the service spans several observers' hosts.
#[derive(Clone, Debug, PartialEq)]
pub struct Relabel {
    /// Replicas numbered before this observer's (its first is `base + 1`).
    pub base: usize,
    /// The first observer's host is the target's host (`host.*`); the others' are `NAME.*`.
    pub first: bool,
    pub observer: String,
    /// Whether the observer watches several processes (its samples have `replicaN.*`).
    pub several: bool,
    /// Not the service's: every series under `NAME.*` (a database host's observer).
    pub apart: bool,
}

impl Relabel {
    /// The samples' names on the driver's time line.
    pub fn apply(&self, values: BTreeMap<String, f64>) -> BTreeMap<String, f64> {
        values
            .into_iter()
            .filter_map(|(key, value)| Some((self.rename(&key)?, value)))
            .collect()
    }

    fn rename(&self, key: &str) -> Option<String> {
        if self.apart {
            return Some(format!("{}.{key}", self.observer));
        }
        if let Some((head, field)) = key.split_once('.') {
            if let Some(n) = head.strip_prefix("replica") {
                let n: usize = n.parse().ok()?;
                return Some(format!("replica{}.{field}", self.base + n));
            }
            if head == "target" && REPLICA_FIELDS.contains(&field) {
                // One process is one replica; several have their own series, and the
                // service's sum is made over all hosts.
                return (!self.several).then(|| format!("replica{}.{field}", self.base + 1));
            }
        }
        Some(match self.first {
            true => key.to_string(),
            false => format!("{}.{key}", self.observer),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn each_hosts_replicas_are_numbered_after_the_last_hosts() {
        // The first host watches one process: its target is replica 1, its host the host.
        let first = Relabel {
            base: 0,
            first: true,
            observer: "a".into(),
            several: false,
            apart: false,
        };
        let read = first.apply(values(&[
            ("target.cpu_cores", 0.5),
            ("target.cgroup_cpu_quota_cores", 1.0),
            ("host.cpu_busy", 0.4),
        ]));
        assert_eq!(
            read,
            values(&[
                ("replica1.cpu_cores", 0.5),
                ("target.cgroup_cpu_quota_cores", 1.0),
                ("host.cpu_busy", 0.4),
            ])
        );
        // The second watches two: they are replicas 2 and 3; its target's sum is left to
        // the driver, its host's series are its own.
        let second = Relabel {
            base: 1,
            first: false,
            observer: "b".into(),
            several: true,
            apart: false,
        };
        let read = second.apply(values(&[
            ("target.cpu_cores", 0.9),
            ("replica1.cpu_cores", 0.4),
            ("replica2.write_calls_per_s", 200.0),
            ("host.cpu_busy", 0.7),
            ("replicaX.cpu_cores", 1.0),
        ]));
        assert_eq!(
            read,
            values(&[
                ("replica2.cpu_cores", 0.4),
                ("replica3.write_calls_per_s", 200.0),
                ("b.host.cpu_busy", 0.7),
            ])
        );
        // Another service's observer (a database host): all its own.
        let apart = Relabel {
            apart: true,
            observer: "db".into(),
            ..second
        };
        assert_eq!(
            apart.apply(values(&[("target.cpu_cores", 0.2), ("host.cpu_busy", 0.1)])),
            values(&[("db.target.cpu_cores", 0.2), ("db.host.cpu_busy", 0.1)])
        );
    }
}

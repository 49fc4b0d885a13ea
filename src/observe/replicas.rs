//! A target of several processes: replicas behind a balancer (`--pid` given more than once),
//! or every process of one name (`--process-name`, the workers a pre-fork master forks:
//! gunicorn, Puma, nginx, PHP-FPM). The sampler reads each replica on its own (`replicaN.*`)
//! and the service as their sum (`target.*`); the profilers read each replica (runner's
//! `replicas`), and the verdict says in how many of them the bottleneck was.

use std::collections::HashMap;
use std::fs;

/// A process's command name (/proc/PID/comm), "?" when it is gone.
pub fn name_of(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Process `pid` of this host as a replica of the target (named by its command name).
pub fn local(pid: u32) -> crate::model::run::Replica {
    crate::model::run::Replica {
        pid,
        name: name_of(pid),
        observer: None,
    }
}

/// The processes named `name` (their command name, or the file name of their executable or
/// of their argv[0]), without a master whose descendants include others of that name: the
/// workers are the replicas, not the process that forked them. knee itself never is one.
/// Sorted by pid.
pub fn by_name(name: &str) -> Vec<u32> {
    let own = std::process::id();
    let parents = super::procfs::parents();
    let matching: Vec<u32> = parents
        .keys()
        .copied()
        .filter(|&pid| pid != own && is_named(pid, name))
        .collect();
    workers(&matching, &parents)
}

/// Of `matching`, those with no other of `matching` among their descendants (`parents`:
/// each process's parent). Sorted by pid.
pub fn workers(matching: &[u32], parents: &HashMap<u32, u32>) -> Vec<u32> {
    let mut masters = std::collections::HashSet::new();
    for &pid in matching {
        let mut at = parents.get(&pid).copied();
        // Bounded: a pid's ancestry ends at 0 or 1, and never has more than the pids seen.
        for _ in 0..parents.len() {
            let Some(ancestor) = at.filter(|a| *a > 1) else {
                break;
            };
            if matching.contains(&ancestor) {
                masters.insert(ancestor);
            }
            at = parents.get(&ancestor).copied();
        }
    }
    let mut workers: Vec<u32> = matching
        .iter()
        .copied()
        .filter(|p| !masters.contains(p))
        .collect();
    workers.sort_unstable();
    workers
}

/// Whether `pid` goes by `name`: its comm (cut to 15 bytes by the kernel), its executable's
/// file name, or its argv[0]'s (an interpreter's script: `gunicorn`, `puma`).
fn is_named(pid: u32, name: &str) -> bool {
    let comm = name_of(pid);
    let cut: String = name.chars().take(15).collect();
    if comm == name || (name.len() > 15 && comm == cut) {
        return true;
    }
    let file_name = |path: &str| path.rsplit('/').next().unwrap_or(path).to_string();
    let exe = fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .map(|p| file_name(&p.to_string_lossy()));
    let argv0 = fs::read(format!("/proc/{pid}/cmdline")).ok().and_then(|c| {
        let first = c.split(|b| *b == 0).next()?;
        Some(file_name(&String::from_utf8_lossy(first)))
    });
    exe.as_deref() == Some(name) || argv0.as_deref() == Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_master_of_workers_of_its_name_is_not_a_replica() {
        // 100 forks 101 and 102 (all named alike); 200 and 300 are separate processes.
        let parents: HashMap<u32, u32> = [
            (100, 1),
            (101, 100),
            (102, 100),
            (200, 1),
            (300, 250),
            (250, 1),
        ]
        .into_iter()
        .collect();
        assert_eq!(workers(&[100, 101, 102], &parents), vec![101, 102]);
        assert_eq!(workers(&[300, 200], &parents), vec![200, 300]);
        // A process that is no master of its name's: kept.
        assert_eq!(workers(&[250, 101], &parents), vec![101, 250]);
    }

    #[test]
    fn processes_are_found_by_their_name() {
        let mut children: Vec<std::process::Child> = (0..2)
            .map(|_| {
                std::process::Command::new("sleep")
                    .arg("5")
                    .spawn()
                    .unwrap()
            })
            .collect();
        let found = by_name("sleep");
        for child in &children {
            assert!(found.contains(&child.id()), "{found:?}");
        }
        assert_eq!(name_of(children[0].id()), "sleep");
        for child in &mut children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

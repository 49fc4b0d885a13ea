//! Who else is busy on the target's host, and what the target talks to.
//!
//! "The host used 2.00 of 2 cores, 1.96 of them outside the target" is only useful with
//! names: per step, the busiest process groups by CPU (a program and its children of the
//! same name: a postmaster and its backends are one `postgres`), and the target's
//! **downstreams**: its established outbound TCP connections (its fds' socket inodes in
//! /proc/net/tcp{,6}) grouped by peer, each local peer matched to the process listening on
//! that port, with that process's CPU over the step.

pub use crate::model::observed::{Busy, Downstream, Processes, Role};

use super::procfs;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Process groups listed per step.
const TOP: usize = 6;

#[derive(Clone, Debug)]
pub struct Proc {
    ppid: u32,
    name: String,
    ticks: u64,
    rss_pages: u64,
    threads: u64,
    running: bool,
}

pub type Snapshot = HashMap<u32, Proc>;

/// Every process on the host.
pub fn snapshot() -> Snapshot {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Snapshot::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            Some((pid, parse_stat(&stat)?))
        })
        .collect()
}

fn parse_stat(stat: &str) -> Option<Proc> {
    let (name, ticks) = procfs::parse_stat_name_and_ticks(stat)?;
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 2..)?
        .split_whitespace()
        .collect();
    Some(Proc {
        ppid: fields.get(1)?.parse().ok()?,
        name,
        ticks,
        rss_pages: fields.get(21)?.parse().ok()?,
        threads: fields.get(17)?.parse().ok()?,
        running: fields.first() == Some(&"R"),
    })
}

/// The root of `pid`'s group: up through parents of the same name.
fn group_root(pid: u32, procs: &Snapshot) -> u32 {
    let mut root = pid;
    for _ in 0..64 {
        let (Some(me), Some(parent)) = (
            procs.get(&root),
            procs.get(&root).and_then(|p| procs.get(&p.ppid)),
        ) else {
            break;
        };
        if parent.name != me.name {
            break;
        }
        root = me.ppid;
    }
    root
}

/// CPU per process group between two snapshots `seconds` apart, busiest first.
fn busiest(before: &Snapshot, after: &Snapshot, seconds: f64) -> Vec<Busy> {
    let ticks_per_s = procfs::clock_ticks();
    let page_mb = 4096.0 / 1048576.0;
    let mut groups: BTreeMap<u32, Busy> = BTreeMap::new();
    for (pid, proc_) in after {
        let was = before.get(pid).map_or(0, |p| p.ticks);
        let root = group_root(*pid, after);
        let group = groups.entry(root).or_insert_with(|| Busy {
            name: proc_.name.clone(),
            pid: root,
            processes: 0,
            threads: 0,
            running: 0,
            cores: 0.0,
            rss_mb: 0.0,
            role: None,
        });
        group.processes += 1;
        group.threads += proc_.threads;
        group.running += usize::from(proc_.running);
        group.cores += proc_.ticks.saturating_sub(was) as f64 / ticks_per_s / seconds.max(1e-3);
        group.rss_mb += proc_.rss_pages as f64 * page_mb;
    }
    let mut top: Vec<Busy> = groups.into_values().collect();
    top.sort_by(|a, b| b.cores.total_cmp(&a.cores).then(a.pid.cmp(&b.pid)));
    for busy in &mut top {
        busy.cores = (busy.cores * 100.0).round() / 100.0;
        busy.rss_mb = busy.rss_mb.round();
    }
    top
}

/// The target's established TCP connections by peer, except its clients' connections to it:
/// those whose local port is `listen_port` or any port the target listens on (an observer
/// given only a pid knows no port).
pub fn downstreams(target: u32, listen_port: Option<u16>) -> Vec<(String, u16, usize)> {
    let inodes: HashSet<String> = procfs::process_tree(target)
        .iter()
        .filter_map(|pid| std::fs::read_dir(format!("/proc/{pid}/fd")).ok())
        .flat_map(|fds| fds.flatten())
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|link| {
            let link = link.to_string_lossy().into_owned();
            Some(
                link.strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_string(),
            )
        })
        .collect();
    // (local port, remote address, state) of the target's sockets.
    let mut sockets: Vec<(Option<u16>, String, String)> = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(remote), Some(state), Some(inode)) =
                (f.get(1), f.get(2), f.get(3), f.get(9))
            else {
                continue;
            };
            if !inodes.contains(*inode) {
                continue;
            }
            let local_port = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            sockets.push((local_port, remote.to_string(), state.to_string()));
        }
    }
    // 0A: LISTEN.
    let listening: HashSet<u16> = sockets
        .iter()
        .filter(|(_, _, state)| state == "0A")
        .filter_map(|(port, _, _)| *port)
        .chain(listen_port)
        .collect();
    let mut peers: BTreeMap<(String, u16), usize> = BTreeMap::new();
    // 01: ESTABLISHED; a connection to a port the target listens on is a client's.
    for (local_port, remote, _) in sockets.iter().filter(|(_, _, state)| state == "01") {
        if local_port.is_some_and(|port| listening.contains(&port)) {
            continue;
        }
        if let Some(peer) = parse_address(remote) {
            *peers.entry(peer).or_default() += 1;
        }
    }
    peers
        .into_iter()
        .map(|((ip, port), n)| (ip, port, n))
        .collect()
}

/// "0100007F:1538" (little-endian IPv4) or the 32-hex-digit IPv6 form → ("127.0.0.1", 5432).
fn parse_address(hex: &str) -> Option<(String, u16)> {
    let (ip, port) = hex.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match ip.len() {
        8 => {
            let v = u32::from_str_radix(ip, 16).ok()?;
            std::net::Ipv4Addr::from(v.to_le_bytes()).to_string()
        }
        32 => {
            let mut bytes = [0u8; 16];
            for (i, word) in (0..4).map(|i| &ip[i * 8..i * 8 + 8]).enumerate() {
                let v = u32::from_str_radix(word, 16).ok()?;
                bytes[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
            }
            let v6 = std::net::Ipv6Addr::from(bytes);
            v6.to_ipv4_mapped()
                .map_or_else(|| v6.to_string(), |v4| v4.to_string())
        }
        _ => return None,
    };
    Some((ip, port))
}

fn is_local(ip: &str) -> bool {
    ip.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
}

/// The target's processes (the first, or its replicas: each one's group is the target's) and
/// what else ran on their host over a window, between two snapshots `seconds` apart; the
/// downstreams are the first one's. `generator` is the load generator's pid when it runs on
/// this host.
pub fn observe_window(
    targets: &[u32],
    listen_port: Option<u16>,
    generator: Option<u32>,
    (before, after): (&Snapshot, &Snapshot),
    seconds: f64,
) -> Processes {
    let mut top = busiest(before, after, seconds);
    let first = targets.first().copied().unwrap_or(0);
    let downstreams: Vec<Downstream> = downstreams(first, listen_port)
        .into_iter()
        .map(|(ip, port, connections)| {
            let pid = is_local(&ip)
                .then(|| procfs::listener_of_port(port))
                .flatten();
            let group = pid.and_then(|pid| {
                let root = group_root(pid, after);
                top.iter().find(|b| b.pid == root)
            });
            Downstream {
                peer: format!("{ip}:{port}"),
                connections,
                pid,
                name: group.map(|g| g.name.clone()),
                cores: group.map(|g| g.cores),
            }
        })
        .collect();
    let target_roots: Vec<u32> = targets.iter().map(|&t| group_root(t, after)).collect();
    let generator_root = generator.map(|pid| group_root(pid, after));
    for busy in &mut top {
        busy.role = if target_roots.contains(&busy.pid) {
            Some(Role::Target)
        } else if Some(busy.pid) == generator_root {
            Some(Role::Generator)
        } else if downstreams
            .iter()
            .filter_map(|d| d.pid)
            .any(|pid| group_root(pid, after) == busy.pid)
        {
            Some(Role::Downstream)
        } else {
            None
        };
    }
    // The busiest, and the (first) target's group wherever it ranks: it is what the others
    // are compared with.
    let target_root = group_root(first, after);
    let target_group = top.iter().skip(TOP).position(|b| b.pid == target_root);
    if let Some(index) = target_group {
        top.swap(TOP - 1, TOP + index);
    }
    top.truncate(TOP);
    Processes { top, downstreams }
}

/// The host's processes over a step's window (`observed.processes`): `generator` is the load
/// generator's pid when it runs on this host (none for `knee observe`).
#[derive(Clone)]
pub struct ProcessesReading {
    /// The target's processes: one, or its replicas.
    pub targets: Vec<u32>,
    pub listen_port: Option<u16>,
    pub generator: Option<u32>,
}

impl super::windows::Reading for ProcessesReading {
    const KIND: &'static str = "processes";
    type Begun = Snapshot;
    type Read = Processes;

    fn begin(&self) -> Snapshot {
        snapshot()
    }

    fn store(read: Processes, observed: &mut crate::model::Observed) {
        observed.processes = Some(read);
    }

    fn end(&self, before: Snapshot, seconds: f64) -> Option<Processes> {
        let after = snapshot();
        Some(observe_window(
            &self.targets,
            self.listen_port,
            self.generator,
            (&before, &after),
            seconds,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc_(ppid: u32, name: &str, ticks: u64) -> Proc {
        Proc {
            ppid,
            name: name.into(),
            ticks,
            rss_pages: 256,
            threads: 1,
            running: false,
        }
    }

    #[test]
    fn a_program_and_its_same_named_children_are_one_group() {
        let before: Snapshot = [
            (10, proc_(1, "postgres", 0)),
            (11, proc_(10, "postgres", 0)),
            (12, proc_(10, "postgres", 0)),
            (20, proc_(1, "python3", 0)),
            (21, proc_(20, "sh", 0)),
        ]
        .into();
        let mut after = before.clone();
        after.get_mut(&11).unwrap().ticks = 150;
        after.get_mut(&12).unwrap().ticks = 40;
        after.get_mut(&20).unwrap().ticks = 10;
        after.insert(13, proc_(10, "postgres", 10));
        let ticks = procfs::clock_ticks();
        let top = busiest(&before, &after, 200.0 / ticks);
        assert_eq!(top[0].name, "postgres");
        assert_eq!(top[0].pid, 10);
        assert_eq!(top[0].processes, 4);
        assert_eq!(top[0].threads, 4);
        assert_eq!(
            top[0].cores, 1.0,
            "(150 + 40 + 10) ticks over 200 ticks of time"
        );
        assert_eq!(top[1].name, "python3");
        assert_eq!(top[1].processes, 1, "its child `sh` is a group of its own");
    }

    #[test]
    fn the_target_is_listed_however_idle() {
        let before: Snapshot = (1..=8)
            .map(|pid| (pid, proc_(0, &format!("busy{pid}"), 0)))
            .chain([(4_000_000, proc_(0, "service", 0))])
            .collect();
        let mut after = before.clone();
        for pid in 1..=8 {
            after.get_mut(&pid).unwrap().ticks = 10 * u64::from(pid);
        }
        let seen = observe_window(&[4_000_000], None, None, (&before, &after), 1.0);
        assert_eq!(seen.top.len(), TOP);
        assert_eq!(seen.top[0].name, "busy8");
        let last = seen.top.last().unwrap();
        assert_eq!(
            (last.name.as_str(), last.role),
            ("service", Some(Role::Target))
        );
    }

    #[test]
    fn proc_net_addresses_decode() {
        assert_eq!(
            parse_address("0100007F:1538"),
            Some(("127.0.0.1".into(), 5432))
        );
        assert_eq!(
            parse_address("0000000000000000FFFF00000100007F:1F90"),
            Some(("127.0.0.1".into(), 8080))
        );
        assert_eq!(
            parse_address("00000000000000000000000001000000:0050"),
            Some(("::1".into(), 80))
        );
        assert_eq!(parse_address("zz"), None);
    }

    #[test]
    fn finds_this_process_outbound_connection_and_its_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let _client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let peers = downstreams(std::process::id(), None);
        // Both ends are ours: the client's connection to `port`, and the server's back.
        assert!(
            peers
                .iter()
                .any(|(ip, p, n)| ip == "127.0.0.1" && *p == port && *n >= 1),
            "{peers:?}"
        );
        let peers = downstreams(std::process::id(), Some(port));
        assert!(
            peers.iter().any(|(_, p, _)| *p == port),
            "the client side's local port is not the listening one: {peers:?}"
        );
        // The server's end (local port = the listening port) is a client's connection to us,
        // known as such from the listening socket even without the port given.
        let client_port = _client.local_addr().unwrap().port();
        let peers = downstreams(std::process::id(), None);
        assert!(
            !peers.iter().any(|(_, p, _)| *p == client_port),
            "{peers:?}"
        );
    }
}

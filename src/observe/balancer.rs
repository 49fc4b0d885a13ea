//! Following a local balancer to its upstreams. When the URL's port belongs to a proxy knee
//! knows (nginx, HAProxy, Envoy, Traefik, Caddy, Apache httpd, Varnish), the service is what
//! it forwards to, not the proxy. Which processes those are shows only while it forwards:
//! before any step, knee sends a short burst of requests (at most `REQUESTS`, from `CLIENTS`
//! threads, within `WITHIN`) and reads the balancer's established connections to local
//! listeners as they happen (`processes::downstreams`). The upstreams found on this host
//! become the target (its replicas when several); the balancer is sampled beside them
//! (`balancer.*`). Upstreams on other hosts are not followed: the balancer stays the target.

use super::{procfs, replicas, target};
use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Proxies and balancers knee follows, by command name.
pub const KNOWN: [&str; 8] = [
    "nginx", "haproxy", "envoy", "traefik", "caddy", "httpd", "apache2", "varnishd",
];
/// The discovery burst: requests sent at most, from this many clients, within this time.
pub const REQUESTS: usize = 200;
const CLIENTS: usize = 4;
const WITHIN: Duration = Duration::from_secs(2);

/// Whether `pid` is a balancer knee knows (its command name).
pub fn is_balancer(pid: u32) -> bool {
    KNOWN.contains(&replicas::name_of(pid).as_str())
}

/// What the burst found: the upstreams' pids (sorted), and the requests it sent.
pub struct Followed {
    pub upstreams: Vec<u32>,
    pub requests: usize,
}

/// Sends the burst of `GET path` to `authority` (host:port, plain HTTP) and collects the
/// local processes `balancer` (and its workers) connected to while it ran; `listen_port` is
/// the balancer's own, whose connections are its clients'.
pub fn follow(balancer: u32, authority: &str, path: &str, listen_port: u16) -> Followed {
    let sent = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    let mut upstreams = BTreeSet::new();
    let mut owners: HashMap<u16, Option<u32>> = HashMap::new();
    let tree: Vec<u32> = procfs::process_tree(balancer);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..CLIENTS {
            scope.spawn(|| {
                while !done.load(Ordering::Relaxed) && started.elapsed() < WITHIN {
                    if sent.fetch_add(1, Ordering::Relaxed) >= REQUESTS {
                        break;
                    }
                    let _ = get(authority, path);
                }
            });
        }
        while started.elapsed() < WITHIN && sent.load(Ordering::Relaxed) < REQUESTS + CLIENTS {
            for (ip, port, _) in super::processes::downstreams(balancer, Some(listen_port)) {
                if !target::is_local(&ip) {
                    continue;
                }
                let owner = *owners
                    .entry(port)
                    .or_insert_with(|| procfs::listener_of_port(port));
                if let Some(pid) = owner.filter(|p| !tree.contains(p)) {
                    upstreams.insert(pid);
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        done.store(true, Ordering::Relaxed);
    });
    Followed {
        upstreams: upstreams.into_iter().collect(),
        requests: sent.load(Ordering::Relaxed).min(REQUESTS),
    }
}

/// One `GET` on a connection of its own, read to its end (bounded by timeouts).
fn get(authority: &str, path: &str) -> std::io::Result<()> {
    use std::net::ToSocketAddrs;
    let address = authority
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("no address"))?;
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_millis(500))?;
    stream.set_read_timeout(Some(Duration::from_millis(500)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nUser-Agent: knee (finding the upstreams)\r\n\r\n"
    )?;
    let mut sink = [0u8; 4096];
    while stream.read(&mut sink)? > 0 {}
    Ok(())
}

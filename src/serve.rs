//! `knee observe`: the same binary, run on the target's host, serving what the samplers read
//! there to a driver on another machine (`--observer`), so a remote target is as well observed
//! as a local one. Read-only and small on purpose: GETs of `/time` (for the driver's clock
//! estimate), `/describe`, `/samples?after=N`, `/processes/{begin,end}` (who was busy on
//! this host over a step's window, and the target's downstreams) and `/threads/{begin,end}`
//! (the target's CPU per thread; `observe::windows`), and `/profile/cpu` and
//! `/profile/offcpu`
//! (profiles of its one target, bounded in time, one of each at a time: `flame::remote`);
//! nothing else is run on request, 127.0.0.1 unless a token guards it, the token checked on
//! every request in constant time. Samples are numbered, held in memory (a bounded ring) and fetched
//! incrementally, on the observer's own clock (the driver estimates the offset).

use crate::error::Error;
use crate::flame::remote::{ProfileTarget, Refusal};
use crate::observe::processes::ProcessesReading;
use crate::observe::procfs;
use crate::observe::remote::{Batch, DescribedTarget, Description};
use crate::observe::sampler::{Sampler, SamplerConfig};
use crate::observe::target::{self, Spawned};
use crate::observe::threads::ThreadsReading;
use crate::observe::windows::{Reading, Windows};
use crate::plan::{ServePlan, ServeTarget, TlsFiles, Token};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Samples held for drivers: 20 minutes at the default 500 ms (a driver fetches every
/// interval; one that falls further behind is told it lost some).
const KEEP: usize = 2_400;
/// Samples in one answer at most (the driver asks again for the rest).
const BATCH: usize = 600;
/// Requests served at once at most; more are closed unanswered.
const MAX_CONNECTIONS: usize = 16;
const MAX_REQUEST_HEAD: usize = 16 << 10;

/// A running observer: stopped (its thread ended, a spawned target stopped) when dropped.
pub struct Observer {
    running: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    _spawned: Option<Spawned>,
    sampler: Arc<Sampler>,
    pub address: std::net::SocketAddr,
    pub pid: u32,
    /// A target of several processes: each one (empty for one).
    pub replicas: Vec<u32>,
}

/// What every request needs to be answered.
struct Shared {
    sampler: Arc<Sampler>,
    token: Option<Token>,
    target: DescribedTarget,
    origin_unix_s: f64,
    /// The target's own pprof endpoint, when CPU profiles are proxied to it.
    pprof: Option<String>,
    /// Where perf's recordings are written while they are read.
    scratch: std::path::PathBuf,
    /// The target's runtime: which profilers read it.
    runtime: crate::model::run::Runtime,
    /// The target's listening port, when known (its clients' connections are not its
    /// downstreams).
    listen_port: Option<u16>,
    /// Windows begun by a driver, held until it ends them.
    windows: Windows,
    /// Every connection speaks TLS when set (--tls-cert, --tls-key).
    tls: Option<Arc<rustls::ServerConfig>>,
    /// A target of several processes: each one (`replica=N` names the Nth, from 1); empty
    /// for one.
    replicas: Vec<u32>,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Refuses to listen beyond loopback without a token: anyone who can reach the port could
/// read the target's figures.
pub fn check_exposure(plan: &ServePlan) -> Result<(), Error> {
    if plan.token.is_none() && !plan.listen.ip().is_loopback() {
        return Err(Error::input(format!(
            "knee observe: refusing to listen on {} without --token-file (anyone who reaches it could read the target's figures); listen on 127.0.0.1 or give a token",
            plan.listen
        )));
    }
    Ok(())
}

/// Finds or starts the target, starts sampling it, and serves on the plan's address.
pub fn start(plan: &ServePlan) -> Result<Observer, Error> {
    check_exposure(plan)?;
    let FoundTarget {
        pids,
        port,
        found_by,
        spawned,
    } = find_target(&plan.target)?;
    if pids.len() > 1 && plan.pprof.is_some() {
        return Err(Error::input(
            "knee observe: --pprof reads one process; a target of several is profiled by each one's runtime profiler (leave --pprof out)",
        ));
    }
    let pid = pids[0];
    let replicas = if pids.len() > 1 { pids } else { Vec::new() };
    let described = replicas.clone();
    let tls = plan.tls.as_ref().map(tls_config).transpose()?;
    let origin = Instant::now();
    let origin_unix_s = unix_now();
    let sampler = Sampler::start(SamplerConfig {
        target: Some(pid),
        replicas: replicas.clone(),
        listen_port: port,
        keep: KEEP,
        ..SamplerConfig::new(plan.interval, origin)
    })
    .map_err(|e| Error::Internal(anyhow::anyhow!("cannot start the sampler: {e}")))?;
    let sampler = Arc::new(sampler);
    let listener = TcpListener::bind(plan.listen).map_err(|e| {
        Error::input(format!(
            "knee observe: cannot listen on {}: {e}",
            plan.listen
        ))
    })?;
    let address = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let runtime = crate::observe::runtime::of(pid);
    let shared = Arc::new(Shared {
        sampler: sampler.clone(),
        token: plan.token.clone(),
        target: DescribedTarget {
            pid,
            command: command_line(pid),
            found_by: found_by.into(),
            runtime: Some(runtime),
            replicas: replicas
                .iter()
                .map(|&pid| crate::observe::replicas::local(pid))
                .collect(),
        },
        origin_unix_s,
        pprof: plan.pprof.clone(),
        scratch: std::env::temp_dir().join(format!("knee-observe-{}", std::process::id())),
        runtime,
        tls,
        listen_port: port,
        windows: Windows::default(),
        replicas,
    });
    let running = Arc::new(AtomicBool::new(true));
    let accepting = running.clone();
    let thread = std::thread::Builder::new()
        .name("knee-observe".into())
        .spawn(move || accept_loop(&listener, &shared, &accepting))?;
    Ok(Observer {
        running,
        thread: Some(thread),
        _spawned: spawned,
        sampler,
        address,
        pid,
        replicas: described,
    })
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.running.store(false, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.sampler.stop();
    }
}

/// The process the observer watches, how it was found, and the child to stop if it was spawned.
struct FoundTarget {
    /// The target's processes: one, or its replicas.
    pids: Vec<u32>,
    port: Option<u16>,
    found_by: &'static str,
    spawned: Option<Spawned>,
}

fn find_target(target: &ServeTarget) -> Result<FoundTarget, Error> {
    match target {
        ServeTarget::Pids(pids) => {
            if let Some(pid) = pids.iter().find(|&&p| procfs::process(p).is_none()) {
                return Err(Error::input(format!(
                    "knee observe: no process {pid} on this host"
                )));
            }
            // Each pid once, in the order given (`--pid 5 --pid 6 --pid 5` is 5 and 6).
            let mut pids = pids.clone();
            let mut seen = std::collections::HashSet::new();
            pids.retain(|pid| seen.insert(*pid));
            Ok(FoundTarget {
                pids,
                port: None,
                found_by: "pid",
                spawned: None,
            })
        }
        ServeTarget::ProcessName(name) => {
            let pids = crate::observe::replicas::by_name(name);
            if pids.is_empty() {
                return Err(Error::input(format!(
                    "knee observe: no process named '{name}' on this host (its comm, executable or argv[0])"
                )));
            }
            Ok(FoundTarget {
                pids,
                port: None,
                found_by: "process-name",
                spawned: None,
            })
        }
        ServeTarget::Port(port) => target::find_by_port("127.0.0.1", *port)
            .map(|pid| FoundTarget {
                pids: vec![pid],
                port: Some(*port),
                found_by: "port",
                spawned: None,
            })
            .ok_or_else(|| {
                Error::input(format!(
                    "knee observe: no process of this host listens on port {port}"
                ))
            }),
        ServeTarget::Spawn { command, port } => {
            let spawned = Spawned::start(
                command,
                &format!("127.0.0.1:{port}"),
                Duration::from_secs(30),
            )?;
            Ok(FoundTarget {
                pids: vec![spawned.pid()],
                port: Some(*port),
                found_by: "spawn",
                spawned: Some(spawned),
            })
        }
    }
}

/// The target's command line, arguments joined by spaces (at most 300 characters).
fn command_line(pid: u32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let text: String = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    text.chars().take(300).collect()
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>, running: &AtomicBool) {
    let active = Arc::new(AtomicUsize::new(0));
    while running.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                if active.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                    continue; // dropped: closed unanswered
                }
                active.fetch_add(1, Ordering::Relaxed);
                let (shared, done) = (shared.clone(), active.clone());
                let spawned = std::thread::Builder::new()
                    .name("knee-observe-request".into())
                    .spawn(move || {
                        answer(stream, &shared);
                        done.fetch_sub(1, Ordering::Relaxed);
                    });
                if spawned.is_err() {
                    active.fetch_sub(1, Ordering::Relaxed);
                }
            }
            // Nothing to accept: wait for a connection (accepted at once, so the driver's
            // clock round trips are not lengthened on our side), at most 100 ms.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => wait_readable(listener),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn wait_readable(listener: &TcpListener) {
    use std::os::fd::AsRawFd;
    let mut poll = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the listener, which outlives the call.
    unsafe { libc::poll(&mut poll, 1, 100) };
}

/// The server's TLS settings from PEM files: an unreadable or mismatched file is an input
/// error naming it.
fn tls_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, Error> {
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    let named = |path: &std::path::Path, why: String| {
        Error::input(format!("knee observe: {}: {why}", path.display()))
    };
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| named(&files.cert, format!("not a PEM certificate chain ({e})")))?;
    if certs.is_empty() {
        return Err(named(&files.cert, "holds no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| named(&files.key, format!("not a PEM private key ({e})")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| named(&files.cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| named(&files.key, format!("does not fit the certificate ({e})")))?;
    Ok(Arc::new(config))
}

/// Reads one request and answers it, over TLS when the observer has a certificate; the
/// connection is closed after.
fn answer(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    match &shared.tls {
        Some(config) => {
            let Ok(connection) = rustls::ServerConnection::new(config.clone()) else {
                return;
            };
            let mut tls = rustls::StreamOwned::new(connection, stream);
            exchange(&mut tls, shared);
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
        None => exchange(&mut { stream }, shared),
    }
}

fn exchange(stream: &mut (impl Read + Write), shared: &Shared) {
    let Some(head) = read_head(stream) else {
        return;
    };
    let (status, body) = respond(&head, shared);
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        409 => "Conflict",
        503 => "Service Unavailable",
        _ => "Method Not Allowed",
    };
    let challenge = if status == 401 {
        "WWW-Authenticate: Bearer\r\n"
    } else {
        ""
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{challenge}Connection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
    let _ = stream.flush();
}

fn read_head(stream: &mut impl Read) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut buffer = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buffer).ok().filter(|n| *n > 0)?;
        head.extend_from_slice(&buffer[..n]);
        if head.len() > MAX_REQUEST_HEAD {
            return None;
        }
    }
    Some(head)
}

/// The status and JSON body for a request head.
fn respond(head: &[u8], shared: &Shared) -> (u16, Vec<u8>) {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    if !matches!(request.parse(head), Ok(httparse::Status::Complete(_))) {
        return error(400, "not an HTTP request");
    }
    if let Some(token) = &shared.token {
        let given = request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("authorization"))
            .map(|h| h.value);
        if !crate::observe::token::authorizes(given, token) {
            return error(401, "a bearer token is required (Authorization: Bearer …)");
        }
    }
    if request.method != Some("GET") {
        return error(405, "only GET");
    }
    let path = request.path.unwrap_or("/");
    let (route, query) = path.split_once('?').unwrap_or((path, ""));
    match route {
        "/time" => json(&serde_json::json!({ "now_unix_s": unix_now() })),
        "/describe" => json(&describe(shared)),
        "/samples" => {
            let after = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("after="))
                .map(str::parse::<u64>);
            match after {
                Some(Ok(after)) => json(&samples(shared, after)),
                None => json(&samples(shared, 0)),
                Some(Err(_)) => error(400, "after= must be a sample number"),
            }
        }
        "/processes/begin" => json(&shared.windows.begin(&processes(shared))),
        "/processes/end" => end_window(shared, &processes(shared), query),
        _ => match process_asked(shared, query) {
            Ok(pid) => of_process(route, query, pid, shared),
            Err(why) => error(400, &why),
        },
    }
}

/// The process `replica=N` names (the Nth of a target of several, from 1), else the target.
fn process_asked(shared: &Shared, query: &str) -> Result<u32, String> {
    let Some(asked) = crate::flame::remote::query_number(query, "replica") else {
        return Ok(shared.target.pid);
    };
    let count = shared.replicas.len();
    asked
        .ok()
        .filter(|n| n.fract() == 0.0 && *n >= 1.0 && *n as usize <= count)
        .map(|n| shared.replicas[n as usize - 1])
        .ok_or_else(|| match count {
            0 => "replica= names one of several processes, and this observer watches one".into(),
            _ => format!("replica= must be a number from 1 to {count}"),
        })
}

/// What is read of one of the target's processes: its threads over a window, its profiles.
fn of_process(route: &str, query: &str, pid: u32, shared: &Shared) -> (u16, Vec<u8>) {
    let threads = ThreadsReading { pid };
    match route {
        "/threads/begin" => json(&shared.windows.begin(&threads)),
        "/threads/end" => end_window(shared, &threads, query),
        "/profile/cpu" => profile(shared, pid, |t| crate::flame::remote::serve_cpu(t, query)),
        "/profile/offcpu" => profile(shared, pid, |t| {
            crate::flame::remote::serve_offcpu(t, query)
        }),
        _ => error(
            404,
            "knee observe serves /time, /describe, /samples?after=N, /processes/begin, /processes/end?id=N, /threads/begin, /threads/end?id=N, /profile/cpu?seconds=S and /profile/offcpu?seconds=S (the last four take &replica=N for a target of several processes)",
        ),
    }
}

/// The host's processes as this observer reads them: no generator here.
fn processes(shared: &Shared) -> ProcessesReading {
    let mut targets = shared.replicas.clone();
    if targets.is_empty() {
        targets.push(shared.target.pid);
    }
    ProcessesReading {
        targets,
        listen_port: shared.listen_port,
        generator: None,
    }
}

/// Ends the window `id=` names: what was read over it (null when there is nothing to say),
/// or 404.
fn end_window<R: Reading>(shared: &Shared, reading: &R, query: &str) -> (u16, Vec<u8>) {
    let id = crate::flame::remote::query_number(query, "id").and_then(Result::ok);
    match id.and_then(|id| shared.windows.end(reading, id as u64)) {
        Some(read) => json(&read),
        None => error(
            404,
            "no such window (never begun, ended already, or begun too long ago)",
        ),
    }
}

/// A profile of the target's process `pid` (taken before answering), or why not.
fn profile<T: serde::Serialize>(
    shared: &Shared,
    pid: u32,
    take: impl FnOnce(&ProfileTarget) -> Result<T, Refusal>,
) -> (u16, Vec<u8>) {
    let target = ProfileTarget {
        pid,
        runtime: shared.runtime,
        pprof: shared.pprof.as_deref(),
        // Each process's own: its replicas are profiled side by side.
        scratch: &shared.scratch.join(format!("profile-{pid}")),
    };
    match take(&target) {
        Ok(profile) => json(&profile),
        Err(Refusal::BadRequest(why)) => error(400, &why),
        Err(Refusal::Busy) => error(
            409,
            "a profile of this kind is being taken; ask again after it",
        ),
        Err(Refusal::Unable(why)) => error(503, &why),
    }
}

fn error(status: u16, why: &str) -> (u16, Vec<u8>) {
    (
        status,
        serde_json::json!({ "error": why }).to_string().into_bytes(),
    )
}

fn json(value: &impl serde::Serialize) -> (u16, Vec<u8>) {
    match serde_json::to_vec(value) {
        Ok(body) => (200, body),
        Err(e) => error(400, &e.to_string()),
    }
}

fn describe(shared: &Shared) -> Description {
    let host = procfs::this_host();
    Description {
        host: host.name,
        cores: host.cores,
        memory_mb: host.memory_mb,
        kernel: host.kernel,
        target: Some(shared.target.clone()),
        now_unix_s: unix_now(),
        last: shared.sampler.last_number(),
    }
}

/// The samples after `after`, without the observer's own process (`generator.*` here is
/// knee observe itself, nothing the driver should read as its generator).
fn samples(shared: &Shared, after: u64) -> Batch {
    let (first, numbered) = shared.sampler.samples_after(after, BATCH);
    let samples = numbered
        .into_iter()
        .map(|(seq, sample)| {
            let mut values: BTreeMap<String, f64> = sample
                .values
                .into_iter()
                .filter(|(k, _)| !k.starts_with("generator."))
                .collect();
            values.insert("seq".into(), seq as f64);
            values.insert("t_s".into(), sample.t_s);
            values
        })
        .collect();
    Batch {
        origin_unix_s: shared.origin_unix_s,
        first,
        samples,
    }
}

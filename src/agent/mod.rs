//! The profiling agent a Rust service embeds so knee can show where its CPU went at the knee.
//!
//! It speaks Go's protocol, `GET /debug/pprof/profile?seconds=N&frequency=F`, and answers with
//! a gzipped pprof protobuf, so `go tool pprof`, Pyroscope and speedscope read what it serves,
//! and knee's harness reads anything those tools' agents serve. Sampling is its own
//! ([`sampler`]: a SIGPROF timer and a backtrace per sample into a table that lives only as
//! long as the profile); samples that land in libc, libgcc, pthread or the vDSO are dropped,
//! because unwinding from there is unsafe.
//!
//! Safety for the host service: the agent runs on its own thread and runtime ([`start`]), or
//! as a handler inside the service's own hyper server ([`handle`]); a profile is built on a
//! separate thread, so a panic there becomes a 500, never the host's panic. One profile at a
//! time (the timer and the signal are process-wide): an overlapping request gets 409.
//!
//! On Linux the timer signal is driven by the kernel's tick: whatever frequency is asked, a
//! process gets at most about one sample per tick per CPU-second (~250/s here). The answer says
//! how many samples were taken, in the `X-Samples` header and in the profile's comment.

mod sampler;
mod symbols;

use crate::pprof_proto::{self, Profile, StringTable};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use prost::Message;
use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The path, as Go's net/http/pprof serves it.
pub const PROFILE_PATH: &str = "/debug/pprof/profile";
/// Where the agent says what it is (Go's pprof answers 404 there, at once), so knee knows
/// it may ask for fractions of a second and should take a throw-away profile first.
pub const IDENTIFY_PATH: &str = "/debug/pprof/knee";
/// The first words of the agent's answer at [`IDENTIFY_PATH`].
pub const IDENTITY: &str = "knee agent";
/// Longest profile one request may ask for.
pub const MAX_SECONDS: f64 = 60.0;
/// Highest sampling frequency one request may ask for (Hz).
pub const MAX_FREQUENCY: u32 = 1000;
/// Where [`start`] listens unless `KNEE_AGENT_ADDR` says otherwise: loopback only.
pub const DEFAULT_ADDR: &str = "127.0.0.1:6060";

static BUSY: AtomicBool = AtomicBool::new(false);

/// A running agent; it serves until the process exits.
pub struct Agent {
    addr: SocketAddr,
}

impl Agent {
    /// Where it listens (useful when started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Starts the agent on `KNEE_AGENT_ADDR`, or 127.0.0.1:6060, on a thread of its own.
pub fn start() -> std::io::Result<Agent> {
    let addr = std::env::var("KNEE_AGENT_ADDR").unwrap_or_else(|_| DEFAULT_ADDR.to_string());
    start_on(&addr)
}

/// Starts the agent on `addr` (e.g. "127.0.0.1:0") on a thread of its own.
pub fn start_on(addr: &str) -> std::io::Result<Agent> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("knee-agent".into())
        .spawn(move || runtime.block_on(accept_loop(listener)))?;
    Ok(Agent { addr })
}

async fn accept_loop(listener: std::net::TcpListener) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|req| async move {
                Ok::<_, std::convert::Infallible>(handle(req).await)
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}

/// Answers one request; mount it at `/debug/pprof/` in a service's own hyper server
/// ([`PROFILE_PATH`] and [`IDENTIFY_PATH`] are served).
pub async fn handle<B>(req: Request<B>) -> Response<Full<Bytes>> {
    if req.uri().path() == IDENTIFY_PATH {
        return text(
            StatusCode::OK,
            &format!("{IDENTITY} {}", env!("CARGO_PKG_VERSION")),
        );
    }
    if req.uri().path() != PROFILE_PATH {
        return text(StatusCode::NOT_FOUND, "only /debug/pprof/profile is served");
    }
    let ask = match ProfileRequest::parse(req.uri().query().unwrap_or("")) {
        Ok(ask) => ask,
        Err(message) => return text(StatusCode::BAD_REQUEST, &message),
    };
    if BUSY.swap(true, Ordering::AcqRel) {
        return text(StatusCode::CONFLICT, "a profile is already being taken");
    }
    let answer = match profile_worker() {
        Ok(worker) => {
            let (reply, answer) = std::sync::mpsc::channel();
            let sent = worker
                .lock()
                .map_err(|_| "the profile thread is gone".to_string())
                .and_then(|w| {
                    w.send((ask, reply))
                        .map_err(|_| "the profile thread is gone".to_string())
                });
            match sent {
                Ok(()) => tokio::task::spawn_blocking(move || answer.recv())
                    .await
                    .map_err(|_| "the profile was lost".to_string())
                    .and_then(|got| got.map_err(|_| "profiling panicked".to_string()))
                    .and_then(|taken| taken),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(format!("cannot start the profile thread: {e}")),
    };
    BUSY.store(false, Ordering::Release);
    match answer {
        Ok((body, samples)) => Response::builder()
            .header("content-type", "application/octet-stream")
            .header(
                "content-disposition",
                "attachment; filename=\"profile.pb.gz\"",
            )
            .header("x-samples", samples.to_string())
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "bad response")),
        Err(message) => text(StatusCode::INTERNAL_SERVER_ERROR, &message),
    }
}

type Taken = Result<(Vec<u8>, i64), String>;
type Job = (ProfileRequest, std::sync::mpsc::Sender<Taken>);

/// The one thread that takes profiles. One long-lived thread, not one per request: each
/// profile allocates its sample table (2.3 MB) and resolves symbols, and on a fresh thread
/// each time glibc would put that in a fresh arena, growing the host's RSS with every profile.
fn profile_worker() -> std::io::Result<&'static std::sync::Mutex<std::sync::mpsc::Sender<Job>>> {
    static WORKER: std::sync::OnceLock<std::sync::Mutex<std::sync::mpsc::Sender<Job>>> =
        std::sync::OnceLock::new();
    if let Some(worker) = WORKER.get() {
        return Ok(worker);
    }
    let (jobs, inbox) = std::sync::mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("knee-agent-profile".into())
        .spawn(move || {
            for (ask, reply) in inbox {
                let taken = std::panic::catch_unwind(|| take_profile(ask))
                    .unwrap_or_else(|_| Err("profiling panicked".into()));
                release_free_memory();
                let _ = reply.send(taken);
            }
        })?;
    Ok(WORKER.get_or_init(|| std::sync::Mutex::new(jobs)))
}

/// Gives the memory the profile freed back to the OS, so the host's RSS (which knee also
/// watches) is not left inflated by profiling.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: malloc_trim only releases free heap pages; it has no preconditions.
        unsafe {
            malloc_trim(0);
        }
    }
}

fn text(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{message}\n"))));
    *response.status_mut() = status;
    response
}

/// What a request asked for, validated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProfileRequest {
    /// Fractions are accepted (Go takes whole seconds only), for short test steps.
    pub seconds: f64,
    pub frequency: u32,
}

impl ProfileRequest {
    /// Parses `seconds=N&frequency=F` (defaults 30 s and 100 Hz, as Go's).
    pub fn parse(query: &str) -> Result<ProfileRequest, String> {
        let mut ask = ProfileRequest {
            seconds: 30.0,
            frequency: 100,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "seconds" => {
                    ask.seconds = value
                        .parse()
                        .ok()
                        .filter(|s: &f64| s.is_finite() && *s > 0.0)
                        .ok_or(format!("seconds must be a positive number, not {value:?}"))?;
                    if ask.seconds > MAX_SECONDS {
                        return Err(format!("seconds is capped at {MAX_SECONDS}, not {value}"));
                    }
                }
                "frequency" => {
                    ask.frequency = value
                        .parse()
                        .ok()
                        .filter(|f| (1..=MAX_FREQUENCY).contains(f))
                        .ok_or(format!(
                            "frequency must be 1..={MAX_FREQUENCY} Hz, not {value:?}"
                        ))?;
                }
                _ => {}
            }
        }
        Ok(ask)
    }
}

/// Samples for the asked time; the gzipped profile and how many samples it holds.
fn take_profile(ask: ProfileRequest) -> Result<(Vec<u8>, i64), String> {
    let started = SystemTime::now();
    let taken = sampler::sample(ask.frequency, Duration::from_secs_f64(ask.seconds))?;
    let elapsed = started.elapsed().unwrap_or_default();
    let profile = encode(&taken, ask.frequency, started, elapsed);
    drop(taken);
    // The parsed DWARF (tens of MB for a binary with debug info) is not kept between
    // profiles: the next one parses it again (tens of ms) rather than the host holding it.
    backtrace::clear_symbol_cache();
    let samples = profile.sample.iter().map(|s| s.value[0]).sum();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&profile.encode_to_vec())
        .and_then(|_| gz.finish())
        .map(|bytes| (bytes, samples))
        .map_err(|e| format!("cannot compress the profile: {e}"))
}

/// One function of a frame (a frame holds its inlined functions, innermost first).
struct Symbol {
    /// Demangled, hash included (`a::b::h0123…`).
    name: String,
    /// As in the binary (mangled).
    sys_name: String,
    filename: String,
    line: u32,
    /// The function's start address, as backtrace reports it.
    addr: Option<usize>,
}

/// The functions at `ip`, innermost first; an address nothing names is its own name.
fn resolve(ip: usize) -> Vec<Symbol> {
    let mut symbols = Vec::new();
    backtrace::resolve(ip as *mut std::ffi::c_void, |symbol| {
        let (name, sys_name) = match symbol.name() {
            Some(name) => (
                name.to_string(),
                String::from_utf8_lossy(name.as_bytes()).into_owned(),
            ),
            None => (format!("{ip:#x}"), String::new()),
        };
        symbols.push(Symbol {
            name,
            sys_name,
            filename: symbol
                .filename()
                .map(|f| f.display().to_string())
                .unwrap_or_default(),
            line: symbol.lineno().unwrap_or(0),
            addr: symbol.addr().map(|a| a as usize),
        });
    });
    if symbols.is_empty() {
        symbols.push(Symbol {
            name: format!("{ip:#x}"),
            sys_name: String::new(),
            filename: String::new(),
            line: 0,
            addr: None,
        });
    }
    symbols
}

/// A frame's function name, as its full path where the executable's symbol table has it
/// (`physical`: the frame's own function, not one inlined into it; see `symbols`).
fn function_name(symbol: &Symbol, physical: bool) -> String {
    let full = symbol
        .addr
        .filter(|_| physical)
        .and_then(|addr| symbols::full_path(addr as u64, strip_hash(&symbol.name)));
    match full {
        Some(path) => path.to_string(),
        None => strip_hash(&symbol.name).to_string(),
    }
}

/// `f::h0123456789abcdef` → `f`.
fn strip_hash(name: &str) -> &str {
    match name.rsplit_once("::h") {
        Some((head, hash)) if hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()) => {
            head
        }
        _ => name,
    }
}

/// The sampled stacks as a pprof profile: one location per distinct frame (its inlined
/// functions as lines, innermost first), samples of [count, cpu nanoseconds].
fn encode(
    taken: &sampler::Taken,
    frequency: u32,
    started: SystemTime,
    elapsed: Duration,
) -> Profile {
    let mut strings = StringTable::new();
    let mut functions: HashMap<(String, String, String), u64> = HashMap::new();
    let mut locations: HashMap<Vec<(u64, i64)>, u64> = HashMap::new();
    let mut profile = Profile::default();
    let period = 1_000_000_000 / i64::from(frequency.max(1));
    let thread_key = strings.intern("thread");
    let mut resolved: HashMap<usize, Vec<Symbol>> = HashMap::new();
    for stack in &taken.stacks {
        let mut sample = pprof_proto::Sample::default();
        for &ip in &stack.frames {
            let frame = resolved.entry(ip).or_insert_with(|| resolve(ip));
            let lines: Vec<(u64, i64)> = frame
                .iter()
                .enumerate()
                .map(|(i, symbol)| {
                    let key = (
                        function_name(symbol, i + 1 == frame.len()),
                        symbol.sys_name.clone(),
                        symbol.filename.clone(),
                    );
                    let next = functions.len() as u64 + 1;
                    let id = *functions.entry(key.clone()).or_insert_with(|| {
                        profile.function.push(pprof_proto::Function {
                            id: next,
                            name: strings.intern(&key.0),
                            system_name: strings.intern(&key.1),
                            filename: strings.intern(&key.2),
                            start_line: 0,
                        });
                        next
                    });
                    (id, i64::from(symbol.line))
                })
                .collect();
            let next = locations.len() as u64 + 1;
            let id = *locations.entry(lines.clone()).or_insert_with(|| {
                profile.location.push(pprof_proto::Location {
                    id: next,
                    line: lines
                        .iter()
                        .map(|&(function_id, line)| pprof_proto::Line { function_id, line })
                        .collect(),
                    ..Default::default()
                });
                next
            });
            sample.location_id.push(id);
        }
        let count = stack.count as i64;
        sample.value = vec![count, count * period];
        sample.label.push(pprof_proto::Label {
            key: thread_key,
            str: strings.intern(&stack.thread),
            ..Default::default()
        });
        profile.sample.push(sample);
    }
    let samples: i64 = profile.sample.iter().map(|s| s.value[0]).sum();
    let value_type = |strings: &mut StringTable, kind: &str, unit: &str| pprof_proto::ValueType {
        r#type: strings.intern(kind),
        unit: strings.intern(unit),
    };
    profile.sample_type = vec![
        value_type(&mut strings, "samples", "count"),
        value_type(&mut strings, "cpu", "nanoseconds"),
    ];
    profile.period_type = Some(value_type(&mut strings, "cpu", "nanoseconds"));
    profile.period = period;
    profile.time_nanos = started
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    profile.duration_nanos = elapsed.as_nanos() as i64;
    let lost = match taken.lost {
        0 => String::new(),
        n => format!(" ({n} more lost: the sample table was full)"),
    };
    profile.comment = vec![strings.intern(&format!(
        "knee agent: {samples} samples taken at {frequency} Hz asked{lost}"
    ))];
    profile.string_table = strings.into_vec();
    profile
}

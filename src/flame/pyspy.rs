//! Python's own stacks, by py-spy (it reads a CPython process's memory from outside; no
//! change to the service). perf on a Python service sees only the interpreter
//! (`_PyEval_EvalFrameDefault`); py-spy sees the Python functions.
//!
//! - The CPU profile: `py-spy record --format raw` of the threads that are running, folded
//!   as knee's other profiles are.
//! - The waits: the same with `--idle --native`, every thread, idle ones included, with the
//!   C frames under the Python ones. Each sample of a thread is 1/rate seconds of its wall
//!   time; a stack that ends in a blocking call is a wait, classified from its frames: a
//!   `threading.Lock` acquired in the service's code (`PyThread_acquire_lock_timed` right
//!   under it) is a lock; under `Condition.wait` / `Semaphore.acquire` a pool; under
//!   `Queue.get` a queue; a socket call (`sock_recv*`, a database driver's `pqSocketCheck`) a
//!   socket; `time.sleep` a sleep; waiting to take the GIL back (`take_gil`'s condition wait,
//!   with no blocking call nearer) the GIL. A stack that ends in none of these was running,
//!   and is not a wait.
//!
//! Frames are named `module.function (file:line)`; a frame is the service's own code unless
//! its file is the standard library's or an installed package's (under `lib/python3.*`), and
//! the first own frame from the leaf is the wait's site.

use super::capture::Captured;
use super::sched::Recording;
use crate::model::observed::WaitKind;
use crate::stacks::folded::Folded;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// The py-spy binary: `KNEE_PY_SPY`, else `py-spy` on the PATH.
fn binary() -> String {
    std::env::var("KNEE_PY_SPY").unwrap_or_else(|_| "py-spy".into())
}

/// Whether py-spy runs here; the line to say when it does not.
pub fn available() -> Result<(), String> {
    match Command::new(binary()).arg("--version").output() {
        Ok(out) if out.status.success() => Ok(()),
        _ => Err(
            "py-spy not found: install it (pip install py-spy) to see the Python functions; perf shows only the interpreter"
                .into(),
        ),
    }
}

/// How often the waits are sampled. Their native frames are read from a paused process,
/// and each pause unwinds every thread: measured on a thread-per-connection service at
/// 400 req/s (a few tens of threads), one second at 100 Hz cut its throughput to 66/s (p99
/// 2.97 s, a backlog that spilled into the next step); at 20 Hz p99 was 40 ms; at 10 Hz
/// 21.7 ms and at 5 Hz 18.7 ms, throughput kept. Past its knee the same service runs
/// hundreds of threads, and 10 Hz cut the tail's throughput by half: the rate falls as the
/// threads grow, to keep about `WAIT_SAMPLES` thread-samples a second.
pub const WAITS_RATE: std::ops::RangeInclusive<u32> = 2..=10;
const WAIT_SAMPLES: u32 = 1000;

/// The rate for a process with `threads` threads.
pub fn waits_rate(threads: usize) -> u32 {
    let threads = u32::try_from(threads.max(1)).unwrap_or(u32::MAX);
    (WAIT_SAMPLES / threads).clamp(*WAITS_RATE.start(), *WAITS_RATE.end())
}

/// Records `pid` for `seconds` at `rate` Hz; the raw folded lines. The CPU profile reads
/// the process without pausing it (`--nonblocking`); the waits need native frames, which
/// py-spy reads only from a paused process (one second of it, in the step's tail, at
/// `waits_rate`).
fn record(pid: u32, seconds: f64, rate: u32, idle: bool, scratch: &Path) -> Result<String, String> {
    let name = if idle {
        "py-spy.idle.txt"
    } else {
        "py-spy.txt"
    };
    let out = super::capture::perf_data(scratch, name)?;
    let seconds = (seconds.ceil().max(1.0) as u64).to_string();
    let mut command = Command::new(binary());
    // Worker processes too (gunicorn, uwsgi, multiprocessing: the pid is their parent).
    command
        .args(["record", "--pid", &pid.to_string(), "--format", "raw"])
        .args([
            "--rate",
            &rate.to_string(),
            "--full-filenames",
            "--subprocesses",
        ])
        .args(["--duration", &seconds])
        .arg("--output")
        .arg(&out);
    if idle {
        command.args(["--idle", "--native"]);
    } else {
        // The thread holding the GIL is the one running Python: at a knee, hundreds of
        // threads woken from their sockets wait to take it back, and py-spy, reading
        // without pausing, counts them as running (measured: 18 of 193 samples in the
        // function burning the CPU without --gil, 36 of 44 with it).
        command.args(["--gil", "--nonblocking"]);
    }
    let output = command
        .output()
        .map_err(|e| format!("cannot run py-spy: {e}"))?;
    let text = std::fs::read_to_string(&out);
    let _ = std::fs::remove_file(&out);
    if !output.status.success() {
        return Err(format!(
            "py-spy record failed: {}",
            super::capture::first_line(&output.stderr)
        ));
    }
    text.map_err(|e| format!("py-spy wrote nothing readable: {e}"))
}

/// The CPU profile: the running threads' stacks, Python functions named.
pub fn cpu(pid: u32, seconds: f64, rate: u32, scratch: &Path) -> Result<Captured, String> {
    let raw = record(pid, seconds, rate, false, scratch)?;
    Ok(cpu_profile(&raw, rate))
}

/// The CPU profile from py-spy's raw output.
pub fn cpu_profile(raw: &str, rate: u32) -> Captured {
    let mut captured = Captured::stacks(Folded::default(), None, Some(f64::from(rate)));
    for (frames, count) in lines(raw) {
        let names: Vec<String> = frames.iter().map(|f| f.name()).collect();
        *captured.folded.stacks.entry(names.join(";")).or_default() += count;
        if let Some(own) = frames.iter().rev().find(|f| f.is_own()) {
            *captured.own.entry(own.function_name()).or_default() += count;
        }
    }
    captured
}

/// The waits: every thread's stacks at `waits_rate`, each sample 1/rate s of its time; µs
/// per stack.
pub fn waits(pid: u32, seconds: f64, scratch: &Path) -> Result<Recording, String> {
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(1, |d| d.count());
    let rate = waits_rate(threads);
    let raw = record(pid, seconds, rate, true, scratch)?;
    Ok(recording(&raw, rate))
}

/// A recording from py-spy's idle, native raw output.
pub fn recording(raw: &str, rate: u32) -> Recording {
    let us_per_sample = 1_000_000 / u64::from(rate.max(1));
    let mut recording = Recording::default();
    let mut sites: BTreeMap<(WaitKind, Option<String>), u64> = BTreeMap::new();
    for (frames, count) in lines(raw) {
        let Some((kind, site)) = classify(&frames) else {
            continue; // running: not a wait
        };
        let us = count * us_per_sample;
        let names: Vec<String> = frames.iter().map(|f| f.name()).collect();
        *recording.folded.stacks.entry(names.join(";")).or_default() += us;
        *sites.entry((kind, site)).or_default() += us;
        recording.switches += count;
    }
    recording.sites = sites;
    recording
}

/// One frame of py-spy's output: "function (file:line)" or "symbol (library)".
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    pub function: String,
    /// The Python file (full path) or the library / C file.
    pub file: String,
    pub line: Option<u32>,
}

impl Frame {
    fn parse(text: &str) -> Frame {
        let text = text.trim();
        match text.rsplit_once(" (") {
            Some((function, rest)) => {
                let inside = rest.trim_end_matches(')');
                let (file, line) = match inside.rsplit_once(':') {
                    Some((file, line)) => (file.to_string(), line.parse().ok()),
                    None => (inside.to_string(), None),
                };
                Frame {
                    function: function.to_string(),
                    file,
                    line,
                }
            }
            None => Frame {
                function: text.to_string(),
                file: String::new(),
                line: None,
            },
        }
    }

    fn is_python(&self) -> bool {
        self.file.ends_with(".py") || self.file.starts_with('<')
    }

    /// Python code of the service itself: not the standard library's, not a package's.
    pub fn is_own(&self) -> bool {
        self.is_python()
            && !self.file.starts_with('<')
            && ![
                "/lib/python",
                "/lib64/python",
                "site-packages",
                "dist-packages",
            ]
            .iter()
            .any(|m| self.file.contains(m))
    }

    /// "module.function (file.py)": the function, whichever of its lines ran.
    pub fn function_name(&self) -> String {
        Frame {
            line: None,
            ..self.clone()
        }
        .name()
    }

    /// "module.function (file.py:line)" for Python, "symbol" for native frames.
    pub fn name(&self) -> String {
        if !self.is_python() {
            return self.function.clone();
        }
        let module = module_of(&self.file);
        let file = Path::new(&self.file)
            .file_name()
            .map_or(self.file.clone(), |f| f.to_string_lossy().into_owned());
        let line = self.line.map_or(String::new(), |l| format!(":{l}"));
        if module.is_empty() {
            format!("{} ({file}{line})", self.function)
        } else {
            format!("{module}.{} ({file}{line})", self.function)
        }
    }
}

/// "http.server" for ".../lib/python3.11/http/server.py", "orders" for "/srv/app/orders.py".
fn module_of(file: &str) -> String {
    let relative = ["site-packages/", "dist-packages/"]
        .iter()
        .find_map(|m| file.split_once(m).map(|(_, r)| r.to_string()))
        .or_else(|| {
            let (_, rest) = file.split_once("/lib/python")?;
            rest.split_once('/').map(|(_, r)| r.to_string())
        })
        .unwrap_or_else(|| {
            Path::new(file)
                .file_name()
                .map_or(String::new(), |f| f.to_string_lossy().into_owned())
        });
    relative
        .trim_end_matches(".py")
        .trim_end_matches("/__init__")
        .replace('/', ".")
}

/// Each raw line: its frames (root first) and its count.
fn lines(raw: &str) -> impl Iterator<Item = (Vec<Frame>, u64)> + '_ {
    raw.lines().filter_map(|line| {
        let (stack, count) = line.rsplit_once(' ')?;
        let count: u64 = count.trim().parse().ok()?;
        Some((stack.split(';').map(Frame::parse).collect(), count))
    })
}

/// What a stack (root first) waits for, and the service's function nearest the wait; None
/// when it was running.
pub fn classify(frames: &[Frame]) -> Option<(WaitKind, Option<String>)> {
    let site = frames.iter().rev().find(|f| f.is_own()).map(Frame::name);
    let has = |names: &[&str]| {
        frames.iter().rev().take_while(|f| !f.is_own()).any(|f| {
            names
                .iter()
                .any(|n| f.function == *n || f.function.ends_with(n))
        })
    };
    let nearest_python = frames
        .iter()
        .rev()
        .take_while(|f| !f.is_own())
        .find(|f| f.is_python())
        .map(|f| f.function.as_str());
    let leaf = frames.last().map_or("", |f| f.function.as_str());
    let kind = if has(&[
        "PyThread_acquire_lock_timed",
        "acquire_timed",
        "lock_PyThread_acquire_lock",
    ]) {
        match nearest_python {
            Some(f) if f.starts_with("Queue.") => WaitKind::Queue,
            Some(f) if f.starts_with("Condition.wait") || f.contains("Semaphore.acquire") => {
                WaitKind::Pool
            }
            Some(f) if f.starts_with("Event.wait") || f.starts_with("Thread.join") => {
                WaitKind::Other
            }
            _ => WaitKind::Lock,
        }
    } else if leaf.starts_with("pthread_cond_timedwait")
        || has(&["take_gil"])
        || frames
            .iter()
            .rev()
            .take(3)
            .any(|f| f.function.starts_with("pthread_cond_timedwait"))
    {
        WaitKind::Gil
    } else if has(&["time_sleep", "pysleep", "clock_nanosleep"]) {
        WaitKind::Sleep
    } else if has(&[
        "select_poll_poll",
        "select_epoll_poll",
        "select_select",
        "epoll_wait",
    ]) || matches!(nearest_python, Some(f) if f.contains("Selector.select"))
    {
        WaitKind::Idle
    } else if has(&[
        "sock_recv",
        "sock_recv_into",
        "sock_recv_guts",
        "sock_send",
        "sock_sendall",
        "sock_accept",
        "sock_connect",
        "sock_call",
        "sock_call_ex",
        "pqSocketCheck",
        "pqWait",
        "PQexec",
        "_ssl__SSLSocket_read",
    ]) {
        WaitKind::Socket
    } else {
        return None;
    };
    // A wait with none of the service's functions above it is the runtime's own: idle.
    let kind = if site.is_none() && kind != WaitKind::Gil {
        WaitKind::Idle
    } else {
        kind
    };
    Some((kind, site))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIB: &str = "/usr/lib/python3.11";
    const APP: &str = "/srv/app/service.py";

    fn stack(frames: &[(&str, &str)]) -> Vec<Frame> {
        frames
            .iter()
            .map(|(f, file)| Frame::parse(&format!("{f} ({file})")))
            .collect()
    }

    #[test]
    fn python_frames_are_named_by_module() {
        let f = Frame::parse(&format!(
            "BaseHTTPRequestHandler.handle ({LIB}/http/server.py:438)"
        ));
        assert_eq!(
            f.name(),
            "http.server.BaseHTTPRequestHandler.handle (server.py:438)"
        );
        assert!(!f.is_own());
        let own = Frame::parse(&format!("ledger_append ({APP}:23)"));
        assert_eq!(own.name(), "service.ledger_append (service.py:23)");
        assert!(own.is_own());
        let native = Frame::parse("sock_recv_into (socketmodule.c:3631)");
        assert_eq!(native.name(), "sock_recv_into");
    }

    #[test]
    fn waits_are_classified_from_their_frames() {
        let threading = format!("{LIB}/threading.py:320");
        let lock = stack(&[
            ("Thread.run", &threading),
            ("ledger_append", &format!("{APP}:23")),
            ("PyThread_acquire_lock_timed", "libpython3.11.so.1.0"),
            ("0x7f1d (libc.so.6)", "libc.so.6"),
        ]);
        assert_eq!(
            classify(&lock),
            Some((
                WaitKind::Lock,
                Some("service.ledger_append (service.py:23)".into())
            ))
        );
        let pool = stack(&[
            ("checkout_slot", &format!("{APP}:31")),
            ("Semaphore.acquire", &format!("{LIB}/threading.py:505")),
            ("Condition.wait", &threading),
            ("PyThread_acquire_lock_timed", "libpython3.11.so.1.0"),
        ]);
        assert_eq!(classify(&pool).unwrap().0, WaitKind::Pool);
        let gil = stack(&[
            ("price_quote", &format!("{APP}:44")),
            ("pthread_cond_timedwait", "libc.so.6"),
            ("0x7f1d0eaa412b", "libc.so.6"),
        ]);
        assert_eq!(
            classify(&gil),
            Some((
                WaitKind::Gil,
                Some("service.price_quote (service.py:44)".into())
            ))
        );
        // After a recv returned, taking the GIL back is waiting for the GIL.
        let back = stack(&[
            ("fetch_quote", &format!("{APP}:12")),
            ("sock_recv_into", "socketmodule.c:3631"),
            ("sock_call_ex", "socketmodule.c:923"),
            ("pthread_cond_timedwait", "libc.so.6"),
        ]);
        assert_eq!(classify(&back).unwrap().0, WaitKind::Gil);
        let downstream = stack(&[
            ("fetch_quote", &format!("{APP}:12")),
            ("sock_recv_into", "socketmodule.c:3631"),
            ("sock_call_ex", "socketmodule.c:923"),
            ("0x7f1d0eaa9753", "libc.so.6"),
        ]);
        assert_eq!(classify(&downstream).unwrap().0, WaitKind::Socket);
        // A server thread reading its client's next request: no own frame, idle.
        let reading = stack(&[
            (
                "BaseHTTPRequestHandler.handle_one_request",
                &format!("{LIB}/http/server.py:404"),
            ),
            ("sock_recv_into", "socketmodule.c:3631"),
            ("0x7f1d0eaa9753", "libc.so.6"),
        ]);
        assert_eq!(classify(&reading).unwrap().0, WaitKind::Idle);
        let running = stack(&[("price_quote", &format!("{APP}:44"))]);
        assert_eq!(classify(&running), None);
    }

    #[test]
    fn the_waits_rate_falls_as_threads_grow() {
        assert_eq!(waits_rate(8), 10);
        assert_eq!(waits_rate(200), 5);
        assert_eq!(waits_rate(600), 2);
        assert_eq!(waits_rate(0), 10);
    }

    #[test]
    fn a_recording_weighs_each_sample_by_the_rate() {
        let raw = format!(
            "ledger_append ({APP}:23);PyThread_acquire_lock_timed (libpython3.11.so.1.0) 30\n\
             price_quote ({APP}:44) 70\n"
        );
        let r = recording(&raw, 100);
        assert_eq!(
            r.sites[&(
                WaitKind::Lock,
                Some("service.ledger_append (service.py:23)".into())
            )],
            300_000
        );
        assert_eq!(r.sites.len(), 1, "the running stack is no wait");
    }
}

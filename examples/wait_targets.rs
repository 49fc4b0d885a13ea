//! Services whose bottleneck burns no CPU (and one that burns one core), for knee's off-CPU
//! tests: each names nothing for knee (no metrics), so only its stacks can tell.
//!
//! `wait_targets MODE [SECONDS]` listens on 127.0.0.1 (a free port, printed as the first line
//! on stdout), serves HTTP/1.1 keep-alive with one thread per connection, and exits after
//! SECONDS (default 120) or when its stdin, a pipe, closes (the test that started it has gone).
//!
//! - `lock`: each request appends to a ledger under one global Mutex, sleeping 5 ms while
//!   holding it (the lock held across I/O): 200 req/s at most, whatever the cores.
//! - `pool`: each request checks out one of 4 slots (Mutex + Condvar) and holds it 20 ms:
//!   200 req/s.
//! - `downstream`: each request asks a backend over TCP (a second process, `backend` mode,
//!   that answers one query at a time in 5 ms): 200 req/s.
//! - `single`: each request is computed by one worker thread (`worker-0`), 2 ms of CPU each:
//!   500 req/s, on one core of many.
//!
//! With `WAIT_TARGETS_WORKERS=N`, a pre-fork server: this process picks the port, starts N
//! workers of the same program and mode that each listen on it (SO_REUSEPORT: the kernel
//! spreads the connections), prints the port and then the workers' pids on one line, and
//! serves nothing itself. N replicas of a 200 req/s lock serve 200 × N.

#[path = "shared/exit_after.rs"]
mod exit_after;
use exit_after::exit_after;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

const LOCK_HOLD: Duration = Duration::from_millis(5);
const POOL_SLOTS: usize = 4;
const POOL_HOLD: Duration = Duration::from_millis(20);
const BACKEND_WORK: Duration = Duration::from_millis(5);
const SINGLE_WORK: Duration = Duration::from_millis(2);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).cloned().unwrap_or_default();
    let seconds: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(120);
    if !["lock", "pool", "downstream", "single", "backend"].contains(&mode.as_str()) {
        eprintln!("usage: wait_targets lock|pool|downstream|single|backend [SECONDS]");
        std::process::exit(2);
    }
    let given: Option<u16> = std::env::var("WAIT_TARGETS_PORT")
        .ok()
        .and_then(|p| p.parse().ok());
    let listener = reuseport_listener(given.unwrap_or(0));
    let port = listener.local_addr().expect("local address").port();
    exit_after(Duration::from_secs(seconds));
    if let Some(workers) = std::env::var("WAIT_TARGETS_WORKERS")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        return prefork(&mode, seconds, listener, workers);
    }
    if mode == "backend" {
        println!("{port}");
        return serve(listener, backend_connection);
    }
    if mode == "downstream" {
        let backend = start_backend(seconds);
        BACKEND.set(backend).expect("set once");
    }
    if mode == "single" {
        start_worker();
    }
    println!("{port}");
    let handler: fn(TcpStream) = match mode.as_str() {
        "lock" => |s| http_connection(s, ledger_append),
        "pool" => |s| http_connection(s, with_pool_slot),
        "downstream" => |s| http_connection(s, fetch_quote),
        _ => |s| http_connection(s, compute_on_worker),
    };
    serve(listener, handler);
}

/// A listener on 127.0.0.1:`port` (0: a free one) that others may share (SO_REUSEPORT).
fn reuseport_listener(port: u16) -> TcpListener {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket calls on a descriptor this function owns until it hands it over.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket");
        let one: libc::c_int = 1;
        for option in [libc::SO_REUSEADDR, libc::SO_REUSEPORT] {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                option,
                &one as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        let address = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
            },
            sin_zero: [0; 8],
        };
        let bound = libc::bind(
            fd,
            &address as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert!(
            bound == 0 && libc::listen(fd, 1024) == 0,
            "bind 127.0.0.1:{port}"
        );
        TcpListener::from_raw_fd(fd)
    }
}

/// The pre-fork master: starts `workers` of this program on the port, prints the port and
/// their pids, lets go of its own socket (so every connection goes to a worker), and waits.
fn prefork(mode: &str, seconds: u64, listener: TcpListener, workers: usize) {
    let port = listener.local_addr().expect("local address").port();
    let exe = std::env::current_exe().expect("own path");
    let mut children: Vec<std::process::Child> = (0..workers)
        .map(|_| {
            use std::os::unix::process::CommandExt;
            let mut command = std::process::Command::new(&exe);
            command
                .args([mode, &seconds.to_string()])
                .env_remove("WAIT_TARGETS_WORKERS")
                .env("WAIT_TARGETS_PORT", port.to_string())
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped());
            // SAFETY: prctl is async-signal-safe; a worker ends when its master does.
            unsafe {
                command.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                    Ok(())
                });
            }
            let mut child = command.spawn().expect("start a worker");
            let mut line = String::new();
            BufReader::new(child.stdout.take().expect("stdout"))
                .read_line(&mut line)
                .expect("the worker's port");
            child
        })
        .collect();
    drop(listener);
    let pids: Vec<String> = children.iter().map(|c| c.id().to_string()).collect();
    println!("{port}");
    println!("{}", pids.join(" "));
    // The workers end with this process (their parent-death signal).
    for child in &mut children {
        let _ = child.wait();
    }
}

fn serve(listener: TcpListener, handler: fn(TcpStream)) {
    for stream in listener.incoming().flatten() {
        let _ = stream.set_nodelay(true);
        std::thread::spawn(move || handler(stream));
    }
}

/// Reads requests (head only: GETs) and answers each with what `work` returns.
fn http_connection(stream: TcpStream, work: fn() -> u64) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
    let mut writer = stream;
    while read_request(&mut reader) {
        let body = work().to_string();
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

#[inline(never)]
fn read_request(reader: &mut BufReader<TcpStream>) -> bool {
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return false,
            Ok(_) if line == "\r\n" || line == "\n" => return true,
            Ok(_) => {}
        }
    }
}

static LEDGER: Mutex<u64> = Mutex::new(0);

/// The lock held across I/O: every request waits for the one before it.
#[inline(never)]
fn ledger_append() -> u64 {
    let mut ledger = LEDGER.lock().unwrap_or_else(|e| e.into_inner());
    std::thread::sleep(LOCK_HOLD);
    *ledger += 1;
    *ledger
}

static SLOTS: Mutex<usize> = Mutex::new(POOL_SLOTS);
static SLOT_FREED: Condvar = Condvar::new();

/// A connection pool of `POOL_SLOTS`: check one out (waiting for it), use it, give it back.
#[inline(never)]
fn with_pool_slot() -> u64 {
    checkout();
    std::thread::sleep(POOL_HOLD);
    *SLOTS.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    SLOT_FREED.notify_one();
    1
}

#[inline(never)]
fn checkout() {
    let mut free = SLOTS.lock().unwrap_or_else(|e| e.into_inner());
    while *free == 0 {
        free = SLOT_FREED.wait(free).unwrap_or_else(|e| e.into_inner());
    }
    *free -= 1;
}

static BACKEND: OnceLock<u16> = OnceLock::new();

thread_local! {
    static BACKEND_CONN: std::cell::RefCell<Option<BufReader<TcpStream>>> =
        const { std::cell::RefCell::new(None) };
}

/// One query to the backend over this thread's connection to it.
#[inline(never)]
fn fetch_quote() -> u64 {
    // Used after the call, so that the call is not a tail call (whose frame would vanish).
    let answer = BACKEND_CONN.with(|cell| {
        let mut conn = cell.borrow_mut();
        if conn.is_none() {
            let port = *BACKEND.get().expect("backend started");
            let stream = TcpStream::connect(("127.0.0.1", port)).expect("backend connects");
            let _ = stream.set_nodelay(true);
            *conn = Some(BufReader::new(stream));
        }
        let reader = conn.as_mut().expect("connected");
        if reader.get_mut().write_all(b"quote\n").is_err() {
            *conn = None;
            return 0;
        }
        let mut answer = String::new();
        match reader.read_line(&mut answer) {
            Ok(n) if n > 0 => answer.trim().parse().unwrap_or(0),
            _ => {
                *conn = None;
                0
            }
        }
    });
    std::hint::black_box(answer)
}

/// Starts this program in `backend` mode and returns its port.
fn start_backend(seconds: u64) -> u16 {
    let exe = std::env::current_exe().expect("own path");
    let mut child = std::process::Command::new(exe)
        .args(["backend", &seconds.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the backend");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("backend port");
    // The backend's stdin stays open while this process lives (it exits with us).
    std::mem::forget(child);
    line.trim().parse().expect("a port")
}

static BACKEND_BUSY: Mutex<u64> = Mutex::new(0);

/// The backend: one query at a time, `BACKEND_WORK` each.
fn backend_connection(stream: TcpStream) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
    let mut writer = stream;
    let mut line = String::new();
    while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
        line.clear();
        let answer = {
            let mut busy = BACKEND_BUSY.lock().unwrap_or_else(|e| e.into_inner());
            std::thread::sleep(BACKEND_WORK);
            *busy += 1;
            *busy
        };
        if writeln!(writer, "{answer}").is_err() {
            return;
        }
    }
}

type Job = mpsc::Sender<u64>;
static WORK: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();

fn start_worker() {
    let (jobs, queue) = mpsc::channel::<Job>();
    WORK.set(Mutex::new(jobs)).expect("set once");
    std::thread::Builder::new()
        .name("worker-0".into())
        .spawn(move || {
            for reply in queue {
                let _ = reply.send(burn_cpu(SINGLE_WORK));
            }
        })
        .expect("spawn the worker");
}

/// Hands the request to the one worker thread and waits for its answer.
#[inline(never)]
fn compute_on_worker() -> u64 {
    let (reply, answer) = mpsc::channel();
    let jobs = WORK.get().expect("worker started").lock().unwrap().clone();
    if jobs.send(reply).is_err() {
        return 0;
    }
    answer.recv().unwrap_or(0)
}

/// Burns `work` of this thread's CPU time.
#[inline(never)]
fn burn_cpu(work: Duration) -> u64 {
    let start = Instant::now();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    while start.elapsed() < work {
        for _ in 0..64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
    }
    x
}

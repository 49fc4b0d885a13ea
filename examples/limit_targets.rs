//! Services bent by a *limit* rather than by a resource running out by itself, for knee's
//! tests of the limits a staging box sets. Each names nothing for knee (no metrics).
//!
//! `limit_targets MODE [ARG] [SECONDS]` listens on 127.0.0.1 (a free port, printed as the
//! first line on stdout), serves HTTP/1.1 keep-alive with one thread per connection, and
//! exits after SECONDS (default 120) or when its stdin, a pipe, closes.
//!
//! - `cpu`: 2 ms of CPU per request; the test moves the process into a cgroup with a CPU
//!   quota (0.5 cores: 250 req/s).
//! - `slow NOFILE`: sets its own RLIMIT_NOFILE to NOFILE and answers each request after
//!   200 ms: connections pile up until accept fails (EMFILE) and the rest wait in the
//!   backlog.
//! - `fsync DIR`: appends a 4 KiB record to its connection's journal in DIR, written
//!   through (O_DIRECT | O_DSYNC: each request is one write the device must finish), with no
//!   lock between connections: they wait on the disk (or on their cgroup's I/O limit, which
//!   the test sets), not on each other.
//! - `limiter RATE`: a token bucket of RATE/s (burst RATE/10): what it cannot admit is
//!   answered 429 at once; what it admits, at once too.
//! - `nagle`: answers in two writes (head, then body) with Nagle's algorithm left on, as
//!   Python's http.server does: on a reused connection the body waits for the client's
//!   delayed ACK (40 ms on Linux).

#[path = "shared/exit_after.rs"]
mod exit_after;
use exit_after::exit_after;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

const CPU_WORK: Duration = Duration::from_millis(2);
const SLOW: Duration = Duration::from_millis(200);
/// What `fsync` writes per request: one block.
const BLOCK: usize = 4096;

static JOURNALS: OnceLock<std::path::PathBuf> = OnceLock::new();

thread_local! {
    static JOURNAL: std::cell::RefCell<Option<(std::fs::File, Block)>> = const { std::cell::RefCell::new(None) };
}

/// One block, aligned as O_DIRECT wants it.
struct Block(*mut u8);

impl Block {
    fn new() -> Block {
        let layout = std::alloc::Layout::from_size_align(BLOCK, BLOCK).expect("a block layout");
        // SAFETY: a non-zero size; the block lives as long as its thread's journal.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!ptr.is_null(), "out of memory");
        Block(ptr)
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: BLOCK bytes allocated in `new`, never freed while the thread lives.
        unsafe { std::slice::from_raw_parts(self.0, BLOCK) }
    }
}
static BUCKET: OnceLock<Mutex<Bucket>> = OnceLock::new();

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).cloned().unwrap_or_default();
    let arg = args.get(2).cloned().unwrap_or_default();
    let takes_arg = ["slow", "fsync", "limiter"].contains(&mode.as_str());
    let seconds: u64 = args
        .get(if takes_arg { 3 } else { 2 })
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    if !["cpu", "slow", "fsync", "limiter", "nagle"].contains(&mode.as_str()) {
        eprintln!("usage: limit_targets cpu|slow NOFILE|fsync DIR|limiter RATE|nagle [SECONDS]");
        std::process::exit(2);
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = listener.local_addr().expect("local address").port();
    exit_after(Duration::from_secs(seconds));
    match mode.as_str() {
        "slow" => set_nofile(arg.parse().expect("NOFILE")),
        "fsync" => JOURNALS.set(arg.into()).expect("set once"),
        "limiter" => {
            let rate: f64 = arg.parse().expect("RATE");
            BUCKET.set(Mutex::new(Bucket::new(rate))).expect("set once");
        }
        _ => {}
    }
    println!("{port}");
    let handler: fn(TcpStream) = match mode.as_str() {
        "cpu" => |s| http_connection(s, true, || (200, burn_cpu(CPU_WORK))),
        "slow" => |s| http_connection(s, true, slow_answer),
        "fsync" => |s| http_connection(s, true, append_journal),
        "limiter" => |s| http_connection(s, true, admit),
        _ => |s| http_connection(s, false, || (200, 1)),
    };
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                std::thread::spawn(move || handler(stream));
            }
            // Out of file descriptors (EMFILE): the connection stays in the backlog.
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn set_nofile(limit: u64) {
    let rlimit = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: setrlimit with a valid struct; lowering one's own limit needs no privilege.
    unsafe {
        libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit);
    }
}

/// Reads requests (GETs, head only) and answers each with `work`'s (status, value); with
/// `nodelay` false the head and the body go out in two writes, Nagle on.
fn http_connection(stream: TcpStream, nodelay: bool, work: fn() -> (u16, u64)) {
    let _ = stream.set_nodelay(nodelay);
    // Out of file descriptors: the connection is closed unanswered, as a server out of
    // them does.
    let Ok(clone) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(clone);
    let mut writer = stream;
    while read_request(&mut reader) {
        let (status, value) = work();
        let body = format!("{value}\n");
        let reason = if status == 200 {
            "OK"
        } else {
            "Too Many Requests"
        };
        let head = format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        let written = if nodelay {
            writer.write_all(format!("{head}{body}").as_bytes())
        } else {
            writer
                .write_all(head.as_bytes())
                .and_then(|_| writer.write_all(body.as_bytes()))
        };
        if written.is_err() {
            return;
        }
    }
}

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

#[inline(never)]
fn slow_answer() -> (u16, u64) {
    std::thread::sleep(SLOW);
    (200, 1)
}

/// One line appended to this connection's journal, made durable before the answer.
#[inline(never)]
fn append_journal() -> (u16, u64) {
    let ok = JOURNAL.with(|cell| {
        let mut journal = cell.borrow_mut();
        if journal.is_none() {
            use std::os::unix::fs::OpenOptionsExt;
            let dir = JOURNALS.get().expect("journal folder set");
            let name = format!("journal-{:?}", std::thread::current().id());
            *journal = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
                .open(dir.join(name.replace(['(', ')'], "")))
                .ok()
                .map(|file| (file, Block::new()));
        }
        let Some((file, block)) = journal.as_mut() else {
            return false;
        };
        // The same block again and again: a journal that reuses its slot.
        use std::os::unix::fs::FileExt;
        file.write_all_at(block.bytes(), 0).is_ok()
    });
    (if ok { 200 } else { 500 }, 1)
}

/// A token bucket: RATE tokens a second, at most RATE/10 banked.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: f64) -> Bucket {
        Bucket {
            rate,
            tokens: rate / 10.0,
            at: Instant::now(),
        }
    }
}

#[inline(never)]
fn admit() -> (u16, u64) {
    let bucket = BUCKET.get().expect("bucket set");
    let mut b = bucket.lock().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * b.rate).min(b.rate / 10.0);
    b.at = now;
    if b.tokens >= 1.0 {
        b.tokens -= 1.0;
        (200, 1)
    } else {
        (429, 0)
    }
}

/// This thread's CPU time so far.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer; CLOCK_THREAD_CPUTIME_ID is always there on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Burns `work` of this thread's CPU time (CPU time, not wall time: a throttled thread
/// must still do all of its work).
#[inline(never)]
fn burn_cpu(work: Duration) -> u64 {
    let start = thread_cpu();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    while thread_cpu() - start < work {
        for _ in 0..64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
    }
    x
}

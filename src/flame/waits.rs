//! What a blocked stack is waiting for, and where in the application it waits.
//!
//! An off-CPU stack (a thread switched out, from perf; or a goroutine that blocked, from Go's
//! block profile) is read from the leaf up through the kernel, the C library and the
//! language's runtime until the first *application* frame: that frame is the wait's `site`
//! (the function that called `Mutex::lock`, that checked out of the pool, that read from the
//! downstream's socket). What the frames below it do decides the `kind`; the marker nearest
//! the leaf wins (a `Condvar::wait` that re-takes its mutex on waking is a lock wait at that
//! instant).
//!
//! Idle is told from waiting by the stack alone: a thread whose whole stack is runtime and
//! library frames (an executor's worker parked for work, a pool thread waiting for a job) or
//! that sleeps in `epoll_wait` (an event loop) is idle; a wait under an application frame is
//! the application waiting. What remains ambiguous (a thread-per-connection server reading
//! its client's next request is a socket wait too) is settled by the verdict, which looks for
//! the wait whose time *per request* grows at the knee: waiting for clients shrinks per
//! request as load rises, a bottleneck's wait grows.

pub use crate::model::observed::WaitKind;

/// One frame of a stack.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    pub name: String,
    /// A kernel frame.
    pub kernel: bool,
    /// From a shared library other than the target's executable (libc, libpthread, ...).
    pub foreign: bool,
}

impl Frame {
    pub fn user(name: &str) -> Frame {
        Frame {
            name: name.to_string(),
            kernel: false,
            foreign: false,
        }
    }

    /// Part of the runtime or a library, not the application.
    fn is_library(&self) -> bool {
        self.kernel || self.foreign || is_runtime_name(&self.name)
    }
}

/// How a stack was classified.
#[derive(Clone, Debug, PartialEq)]
pub struct Classified {
    pub kind: WaitKind,
    /// The application function closest to the wait.
    pub site: Option<String>,
}

/// Frames of languages' runtimes and common libraries, by the start of their names: Rust's
/// std and the crates every server pulls in, Go's standard library, CPython, the C library.
const RUNTIME_PREFIXES: &[&str] = &[
    "std::",
    "core::",
    "alloc::",
    "<std::",
    "<core::",
    "<alloc::",
    "<&",
    "<dyn ",
    "tokio::",
    "<tokio::",
    "mio::",
    "<mio::",
    "parking_lot",
    "<parking_lot",
    "crossbeam",
    "<crossbeam",
    "futures",
    "<futures",
    "hyper::",
    "<hyper::",
    "hyper_util",
    "<hyper_util",
    "h2::",
    "<h2::",
    "rayon",
    "<rayon",
    "async_std",
    "flume::",
    "<flume::",
    "__rust",
    "__rdl",
    "_start",
    "__libc",
    "__GI_",
    "__lll",
    "__pthread",
    "pthread_",
    "__futex",
    "__clock",
    "__nanosleep",
    "__poll",
    "__select",
    "__recv",
    "__read",
    "__write",
    "__send",
    "__accept",
    "__new_sem",
    "sem_",
    "epoll_",
    "runtime.",
    "runtime/",
    "sync.",
    "sync/",
    "internal/",
    "syscall.",
    "net.",
    "net/",
    "bufio.",
    "io.",
    "os.",
    "time.",
    "context.",
    "database/sql.",
    "_Py",
    "Py",
    "take_gil",
    "drop_gil",
    "[unknown]",
    "0x",
];

/// C library functions whose short names an application could also use as a prefix.
const RUNTIME_NAMES: &[&str] = &[
    "syscall",
    "clone",
    "clone3",
    "start_thread",
    "futex",
    "nanosleep",
    "clock_nanosleep",
    "usleep",
    "poll",
    "ppoll",
    "select",
    "pselect",
    "recv",
    "recvfrom",
    "recvmsg",
    "read",
    "pread",
    "pread64",
    "readv",
    "write",
    "writev",
    "send",
    "sendto",
    "sendmsg",
    "accept",
    "accept4",
    "connect",
    "fsync",
    "fdatasync",
];

fn is_runtime_name(name: &str) -> bool {
    RUNTIME_NAMES.contains(&name) || RUNTIME_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Kernel frames, by name: where a thread blocked.
const KERNEL_MARKERS: &[(&str, WaitKind)] = &[
    ("io_schedule", WaitKind::Disk),
    ("folio_wait", WaitKind::Disk),
    ("blkdev_", WaitKind::Disk),
    ("jbd2_", WaitKind::Disk),
    ("ep_poll", WaitKind::Idle),
    ("do_epoll_wait", WaitKind::Idle),
    ("inet_csk_accept", WaitKind::Idle),
    ("sk_wait_data", WaitKind::Socket),
    ("tcp_recvmsg", WaitKind::Socket),
    ("unix_stream_read", WaitKind::Socket),
    ("sk_stream_wait", WaitKind::Socket),
    ("inet_wait_for_connect", WaitKind::Socket),
    ("do_sys_poll", WaitKind::Socket),
    ("do_select", WaitKind::Socket),
    ("do_nanosleep", WaitKind::Sleep),
    ("hrtimer_nanosleep", WaitKind::Sleep),
];

/// User-space frames, by a part of their name (nearest the leaf wins).
const USER_MARKERS: &[(&str, WaitKind)] = &[
    ("lock_contended", WaitKind::Lock),
    ("Mutex>::lock", WaitKind::Lock),
    ("Mutex<T>>::lock", WaitKind::Lock),
    ("pthread_mutex_lock", WaitKind::Lock),
    ("__lll_lock_wait", WaitKind::Lock),
    ("pthread_rwlock", WaitKind::Lock),
    ("RwLock", WaitKind::Lock),
    ("raw_mutex", WaitKind::Lock),
    ("raw_rwlock", WaitKind::Lock),
    ("sync.(*Mutex).Lock", WaitKind::Lock),
    ("sync.(*RWMutex)", WaitKind::Lock),
    ("Condvar", WaitKind::Pool),
    ("pthread_cond_", WaitKind::Pool),
    ("sem_wait", WaitKind::Pool),
    ("sem_timedwait", WaitKind::Pool),
    ("Semaphore", WaitKind::Pool),
    ("sync.(*Cond).Wait", WaitKind::Pool),
    ("semaphore.(*Weighted).Acquire", WaitKind::Pool),
    ("mpsc", WaitKind::Queue),
    ("mpmc", WaitKind::Queue),
    ("crossbeam_channel", WaitKind::Queue),
    ("flume::", WaitKind::Queue),
    ("runtime.chanrecv", WaitKind::Queue),
    ("runtime.chansend", WaitKind::Queue),
    ("runtime.selectgo", WaitKind::Queue),
    ("epoll_wait", WaitKind::Idle),
    ("thread::sleep", WaitKind::Sleep),
    ("thread::functions::sleep", WaitKind::Sleep),
    ("time.Sleep", WaitKind::Sleep),
    ("fsync", WaitKind::Disk),
    ("fdatasync", WaitKind::Disk),
];

/// Classifies a stack given leaf first, with the thread's state when it switched out
/// (`R` preempted, `D` uninterruptible, `S` sleeping; None when unknown, as in Go's profiles).
pub fn classify(leaf_first: &[Frame], state: Option<char>) -> Classified {
    let app_at = leaf_first.iter().position(|f| !f.is_library());
    // Interpreted and runtime-only stacks (CPython, a driver's C library) have no
    // application frame: their site is the first non-kernel frame not a C library or runtime
    // call (libpq's `pqSocketCheck`), when the wait is one that code waits on.
    let library_site = || {
        leaf_first
            .iter()
            .find(|f| !f.kernel && !is_runtime_name(&f.name))
            .map(|f| f.name.clone())
    };
    let site = app_at.map(|i| leaf_first[i].name.clone());
    let below_site = &leaf_first[..app_at.unwrap_or(leaf_first.len())];
    let kind = match state {
        Some('R') => WaitKind::Preempted,
        Some('D') => WaitKind::Disk,
        _ => marked_kind(below_site).unwrap_or(WaitKind::Other),
    };
    // A stack with no application frame parked on a futex, a condvar or a channel is the
    // runtime waiting for work; one blocked on a socket, the disk or a lock (the GIL) is
    // code waiting. An event loop's epoll is idle wherever it is called from.
    match (kind, site) {
        (WaitKind::Preempted | WaitKind::Idle, site) => Classified { kind, site },
        (WaitKind::Socket | WaitKind::Disk | WaitKind::Lock, None) => Classified {
            kind,
            site: library_site(),
        },
        (_, None) => Classified {
            kind: WaitKind::Idle,
            site: None,
        },
        (kind, site) => Classified { kind, site },
    }
}

/// Frames that decide the kind wherever they are under the site: the GIL waits on a
/// condvar, database/sql's pool and Go's HTTP client on a select.
const DECISIVE: &[(&str, WaitKind)] = &[
    ("take_gil", WaitKind::Lock),
    ("database/sql.(*DB).conn", WaitKind::Pool),
    ("net/http.(*persistConn)", WaitKind::Socket),
    ("net/http.(*Transport)", WaitKind::Socket),
];

/// The kind named by the marker nearest the leaf (after the decisive ones).
fn marked_kind(frames: &[Frame]) -> Option<WaitKind> {
    let decisive = DECISIVE
        .iter()
        .find(|(marker, _)| frames.iter().any(|f| f.name.contains(marker)));
    if let Some((_, kind)) = decisive {
        return Some(*kind);
    }
    frames
        .iter()
        .find_map(|frame| {
            let markers = if frame.kernel {
                KERNEL_MARKERS
            } else {
                USER_MARKERS
            };
            markers
                .iter()
                .find(|(marker, _)| frame.name.contains(marker))
                .map(|(_, kind)| *kind)
        })
        .or_else(|| {
            // A futex wait with no lock frame above it: std's mutex always goes through its
            // out-of-line `lock_contended`, while a condition variable's or a park's wait is
            // inlined into its caller in optimized builds. So: a condvar or semaphore.
            frames
                .iter()
                .any(|f| f.kernel && f.name.contains("futex_wait"))
                .then_some(WaitKind::Pool)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(name: &str) -> Frame {
        Frame {
            name: name.into(),
            kernel: true,
            foreign: false,
        }
    }

    fn libc(name: &str) -> Frame {
        Frame {
            name: name.into(),
            kernel: false,
            foreign: true,
        }
    }

    fn user(names: &[&str]) -> Vec<Frame> {
        names.iter().map(|n| Frame::user(n)).collect()
    }

    fn stack(kernel_frames: &[&str], libc_frames: &[&str], user_frames: &[&str]) -> Vec<Frame> {
        let mut frames: Vec<Frame> = kernel_frames.iter().map(|n| kernel(n)).collect();
        frames.extend(libc_frames.iter().map(|n| libc(n)));
        frames.extend(user(user_frames));
        frames
    }

    const FUTEX: &[&str] = &["__schedule", "schedule", "futex_wait", "do_futex"];

    /// Stacks as perf recorded them from a Rust thread-per-connection server.
    #[test]
    fn rust_lock_pool_socket_and_sleep() {
        let lock = stack(
            FUTEX,
            &["syscall"],
            &[
                "<std::sys::sync::mutex::futex::Mutex>::lock_contended",
                "wait_targets::ledger_append",
                "wait_targets::http_connection",
                "std::sys::backtrace::__rust_begin_short_backtrace",
            ],
        );
        let c = classify(&lock, Some('S'));
        assert_eq!(c.kind, WaitKind::Lock);
        assert_eq!(c.site.as_deref(), Some("wait_targets::ledger_append"));

        let pool = stack(
            FUTEX,
            &["syscall"],
            &[
                "std::sys::pal::unix::futex::futex_wait",
                "<std::sys::sync::condvar::futex::Condvar>::wait",
                "wait_targets::checkout",
                "wait_targets::with_pool_slot",
            ],
        );
        assert_eq!(
            classify(&pool, Some('S')),
            Classified {
                kind: WaitKind::Pool,
                site: Some("wait_targets::checkout".into())
            }
        );

        let socket = stack(
            &["schedule", "sk_wait_data", "tcp_recvmsg", "sock_recvmsg"],
            &["__libc_recv"],
            &[
                "<std::net::tcp::TcpStream as std::io::Read>::read_buf",
                "std::io::append_to_string",
                "wait_targets::fetch_quote",
            ],
        );
        let c = classify(&socket, Some('S'));
        assert_eq!(c.kind, WaitKind::Socket);
        assert_eq!(c.site.as_deref(), Some("wait_targets::fetch_quote"));

        let sleep = stack(
            &["schedule", "do_nanosleep", "hrtimer_nanosleep"],
            &[],
            &[
                "std::thread::functions::sleep",
                "wait_targets::ledger_append",
            ],
        );
        assert_eq!(classify(&sleep, Some('S')).kind, WaitKind::Sleep);
        let channel = stack(
            FUTEX,
            &["syscall"],
            &[
                "std::thread::park",
                "std::sync::mpmc::context::Context::wait_until",
                "std::sync::mpmc::list::Channel<T>>::recv",
                "wait_targets::compute_on_worker",
            ],
        );
        assert_eq!(classify(&channel, Some('S')).kind, WaitKind::Queue);
    }

    /// Optimized builds inline `Condvar::wait` into its caller: a bare futex under an
    /// application frame is a condvar (std's mutex waits in its out-of-line lock_contended).
    #[test]
    fn an_inlined_condvar_wait_is_a_pool() {
        let inlined = stack(
            FUTEX,
            &["syscall"],
            &[
                "knee::demo::stages::Chain::checkout",
                "knee::demo::stages::Chain::pool_stage",
            ],
        );
        let c = classify(&inlined, Some('S'));
        assert_eq!(c.kind, WaitKind::Pool);
        assert_eq!(
            c.site.as_deref(),
            Some("knee::demo::stages::Chain::checkout")
        );
    }

    #[test]
    fn runtime_only_stacks_and_event_loops_are_idle() {
        // tokio's blocking pool waiting for a job: no application frame.
        let parked = stack(
            FUTEX,
            &["syscall"],
            &[
                "<std::sys::sync::condvar::futex::Condvar>::wait_timeout",
                "tokio::runtime::blocking::pool::Inner::run",
                "std::sys::backtrace::__rust_begin_short_backtrace",
            ],
        );
        let c = classify(&parked, Some('S'));
        assert_eq!((c.kind, c.site), (WaitKind::Idle, None));
        let event_loop = stack(
            &["schedule", "ep_poll", "do_epoll_wait"],
            &["epoll_wait"],
            &["mio::poll::Poll::poll", "myservice::main"],
        );
        assert_eq!(classify(&event_loop, Some('S')).kind, WaitKind::Idle);
        let accept = stack(
            &["schedule", "inet_csk_accept"],
            &["accept4"],
            &["std::net::tcp::TcpListener::accept", "myservice::serve"],
        );
        assert_eq!(classify(&accept, Some('S')).kind, WaitKind::Idle);
    }

    #[test]
    fn thread_state_decides_preempted_and_disk() {
        let busy = stack(
            &["__schedule", "preempt_schedule"],
            &[],
            &["myservice::hash"],
        );
        assert_eq!(classify(&busy, Some('R')).kind, WaitKind::Preempted);
        let disk = stack(
            &["schedule", "io_schedule", "folio_wait_bit"],
            &["__libc_pread"],
            &["myservice::load_page"],
        );
        let c = classify(&disk, Some('D'));
        assert_eq!(c.kind, WaitKind::Disk);
        assert_eq!(c.site.as_deref(), Some("myservice::load_page"));
    }

    /// Go's block profile: goroutine stacks, no kernel, no thread state.
    #[test]
    fn go_block_profile_stacks() {
        let lock = user(&[
            "sync.(*Mutex).Lock",
            "main.ledgerAppend",
            "main.handleLedger",
            "net/http.HandlerFunc.ServeHTTP",
        ]);
        let c = classify(&lock, None);
        assert_eq!(c.kind, WaitKind::Lock);
        assert_eq!(c.site.as_deref(), Some("main.ledgerAppend"));
        let pool = user(&[
            "runtime.selectgo",
            "database/sql.(*DB).conn",
            "database/sql.(*DB).query",
            "main.lookupOrders",
        ]);
        let c = classify(&pool, None);
        assert_eq!(
            c.kind,
            WaitKind::Pool,
            "database/sql's pool, not its select"
        );
        let slots = user(&["runtime.chanrecv1", "main.acquireSlot", "main.handleSlots"]);
        assert_eq!(classify(&slots, None).kind, WaitKind::Queue);
    }

    /// CPython blocked in libpq's poll: no application frame, but a socket wait, at the
    /// driver's function.
    #[test]
    fn an_interpreter_waiting_on_its_database_driver_is_a_socket_wait() {
        let stack = stack(
            &["schedule", "do_sys_poll", "__x64_sys_poll"],
            &["__GI___poll", "pqSocketCheck", "pqWait", "PQexecFinish"],
            &["_PyEval_EvalFrameDefault", "PyObject_Call"],
        );
        let c = classify(&stack, Some('S'));
        assert_eq!(c.kind, WaitKind::Socket);
        assert_eq!(c.site.as_deref(), Some("pqSocketCheck"));
    }

    /// CPython waiting for the GIL: a condvar underneath, but a lock.
    #[test]
    fn python_gil_is_a_lock() {
        let gil = stack(
            FUTEX,
            &["pthread_cond_timedwait"],
            &["take_gil", "PyEval_RestoreThread", "sock_recv_impl"],
        );
        let c = classify(&gil, Some('S'));
        assert_eq!(c.kind, WaitKind::Lock);
        assert_eq!(c.site.as_deref(), Some("sock_recv_impl"));
    }
}

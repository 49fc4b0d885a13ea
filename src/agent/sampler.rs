//! The agent's own CPU sampler. pprof-rs keeps its sample table (40–64 MB, touched page by
//! page) in a process-wide static that it allocates again each time a profile stops, so a
//! service embedding the agent kept that memory from its first profile on (the demo: 6.9 MB
//! idle, 136 MB after one profile). Here the table is allocated when a profile starts and
//! freed when it ends.
//!
//! The SIGPROF handler (an ITIMER_PROF timer: CPU time, as Go's and pprof-rs's) writes only
//! into that preallocated table — no allocation, no lock: a sample claims a slot with a
//! compare-and-swap or adds to the slot of the same stack. Samples whose interrupted
//! instruction is in libc, libgcc, pthread or the vDSO are dropped, because unwinding from
//! there is not safe (as pprof-rs does). Frames are resolved to symbols after the timer is
//! off and every handler has returned.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Frames kept per sample (the innermost ones).
pub const DEPTH: usize = 64;
/// Distinct (stack, thread) pairs one profile can hold; samples past that are counted lost.
const SLOTS: usize = 4096;
/// Slots a sample looks at before it counts itself lost.
const PROBES: usize = 64;
/// A slot's key while its claimant writes it.
const WRITING: u64 = 1;
/// Libraries whose samples are dropped (unwinding from inside them is not safe).
const BLOCKLIST: [&str; 4] = ["libc", "libgcc", "pthread", "vdso"];

struct Slot {
    /// 0 empty, WRITING, or the stack's hash (bit 1 set, so never 0 or 1) once published.
    key: AtomicU64,
    count: AtomicU64,
    /// Written once by the claimant before `key` is published, read after.
    stack: UnsafeCell<Stack>,
}

#[derive(Clone, Copy)]
struct Stack {
    depth: usize,
    frames: [usize; DEPTH],
    thread: [u8; 16],
}

/// The table one profile writes into.
struct Table {
    slots: Box<[Slot]>,
    lost: AtomicU64,
    blocked: AtomicU64,
    /// Address ranges of the blocklisted libraries' code.
    blocklist: Vec<(usize, usize)>,
}

// SAFETY: a slot's stack is written only by the handler that claimed the slot (the CAS from
// 0 to WRITING is won once) and read only after its key is published with Release.
unsafe impl Sync for Table {}

static TABLE: AtomicPtr<Table> = AtomicPtr::new(std::ptr::null_mut());
static IN_HANDLER: AtomicUsize = AtomicUsize::new(0);

/// One distinct stack of a profile: frames innermost first, the thread's name, how often.
pub struct Sampled {
    pub frames: Vec<usize>,
    pub thread: String,
    pub count: u64,
}

/// What one profile took.
pub struct Taken {
    pub stacks: Vec<Sampled>,
    /// Samples that found the table full.
    pub lost: u64,
}

/// Samples the whole process's CPU at `frequency` Hz for `seconds`. The caller makes sure
/// only one profile runs at a time (the agent's one profile thread).
pub fn sample(frequency: u32, seconds: Duration) -> Result<Taken, String> {
    let table = Box::into_raw(Box::new(Table::new()));
    TABLE.store(table, Ordering::SeqCst);
    let installed = install(frequency);
    if installed.is_ok() {
        std::thread::sleep(seconds);
    }
    uninstall();
    TABLE.store(std::ptr::null_mut(), Ordering::SeqCst);
    while IN_HANDLER.load(Ordering::SeqCst) > 0 {
        std::hint::spin_loop();
    }
    // SAFETY: no handler can reach the table any more (it is unpublished and none is running).
    let table = unsafe { Box::from_raw(table) };
    installed?;
    Ok(table.taken())
}

impl Table {
    fn new() -> Table {
        let slots = (0..SLOTS)
            .map(|_| Slot {
                key: AtomicU64::new(0),
                count: AtomicU64::new(0),
                stack: UnsafeCell::new(Stack {
                    depth: 0,
                    frames: [0; DEPTH],
                    thread: [0; 16],
                }),
            })
            .collect();
        Table {
            slots,
            lost: AtomicU64::new(0),
            blocked: AtomicU64::new(0),
            blocklist: blocklisted_code(),
        }
    }

    fn taken(&self) -> Taken {
        let stacks = self
            .slots
            .iter()
            .filter(|s| s.key.load(Ordering::Acquire) > WRITING)
            .map(|slot| {
                // SAFETY: the key is published, so the stack is written and will not change.
                let stack = unsafe { &*slot.stack.get() };
                let name_len = stack.thread.iter().position(|&b| b == 0).unwrap_or(16);
                Sampled {
                    frames: stack.frames[..stack.depth].to_vec(),
                    thread: String::from_utf8_lossy(&stack.thread[..name_len]).into_owned(),
                    count: slot.count.load(Ordering::Relaxed),
                }
            })
            .collect();
        Taken {
            stacks,
            lost: self.lost.load(Ordering::Relaxed),
        }
    }

    /// Adds one sample: to the slot holding the same stack, or to a free one.
    fn add(&self, stack: &Stack) {
        let key = hash(stack) | 2;
        let start = (key as usize) % SLOTS;
        for probe in 0..PROBES {
            let slot = &self.slots[(start + probe) % SLOTS];
            let key_now = slot.key.load(Ordering::Acquire);
            if key_now == 0
                && slot
                    .key
                    .compare_exchange(0, WRITING, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                // SAFETY: this handler won the slot; nobody reads it until published.
                unsafe { *slot.stack.get() = *stack };
                slot.count.store(1, Ordering::Relaxed);
                slot.key.store(key, Ordering::Release);
                return;
            }
            // SAFETY: a published key means a written stack that no longer changes.
            if key_now == key && same(unsafe { &*slot.stack.get() }, stack) {
                slot.count.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        self.lost.fetch_add(1, Ordering::Relaxed);
    }

    fn blocked(&self, pc: usize) -> bool {
        self.blocklist.iter().any(|&(lo, hi)| pc >= lo && pc < hi)
    }
}

fn same(a: &Stack, b: &Stack) -> bool {
    a.depth == b.depth && a.thread == b.thread && a.frames[..a.depth] == b.frames[..b.depth]
}

/// FNV-1a over the frames and the thread's name.
fn hash(stack: &Stack) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let words = stack.frames[..stack.depth].iter().map(|&f| f as u64);
    for word in words.chain(std::iter::once(u64::from_le_bytes(
        stack.thread[..8].try_into().unwrap_or([0; 8]),
    ))) {
        h = (h ^ word).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The executable code ranges of the blocklisted libraries, from /proc/self/maps.
fn blocklisted_code() -> Vec<(usize, usize)> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let range = fields.next()?;
            let perms = fields.next()?;
            let path = fields.nth(3).unwrap_or("");
            let name = path.rsplit('/').next().unwrap_or(path);
            if !perms.contains('x') || !BLOCKLIST.iter().any(|b| name.contains(b)) {
                return None;
            }
            let (lo, hi) = range.split_once('-')?;
            Some((
                usize::from_str_radix(lo, 16).ok()?,
                usize::from_str_radix(hi, 16).ok()?,
            ))
        })
        .collect()
}

/// The SIGPROF handler: one sample of the interrupted thread.
extern "C" fn on_sigprof(_: libc::c_int, _: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // SAFETY: errno is this thread's; it is put back as it was.
    let errno = unsafe { *libc::__errno_location() };
    IN_HANDLER.fetch_add(1, Ordering::SeqCst);
    let table = TABLE.load(Ordering::SeqCst);
    if !table.is_null() {
        // SAFETY: the table stays allocated while a handler is counted in IN_HANDLER.
        record(unsafe { &*table }, context);
    }
    IN_HANDLER.fetch_sub(1, Ordering::SeqCst);
    unsafe { *libc::__errno_location() = errno };
}

fn record(table: &Table, context: *mut libc::c_void) {
    let pc = interrupted_pc(context);
    if pc == 0 || table.blocked(pc) {
        table.blocked.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let mut stack = Stack {
        depth: 0,
        frames: [0; DEPTH],
        thread: [0; 16],
    };
    // The first frames are this handler's and the signal trampoline's: the sample starts at
    // the interrupted instruction.
    let mut reached = false;
    // SAFETY: the other threads' handlers do not unwind this thread; this is what pprof-rs
    // does from its handler, with the same blocklist.
    unsafe {
        backtrace::trace_unsynchronized(|frame| {
            let ip = frame.ip() as usize;
            reached |= ip == pc;
            // The outermost frame's return address is 0: the end of the stack, not a frame.
            if reached && ip != 0 {
                stack.frames[stack.depth] = ip;
                stack.depth += 1;
            }
            stack.depth < DEPTH
        });
    }
    if stack.depth == 0 {
        stack.frames[0] = pc;
        stack.depth = 1;
    }
    // SAFETY: PR_GET_NAME writes at most 16 bytes into the buffer given.
    unsafe { libc::prctl(libc::PR_GET_NAME, stack.thread.as_mut_ptr()) };
    table.add(&stack);
}

#[cfg(target_arch = "x86_64")]
fn interrupted_pc(context: *mut libc::c_void) -> usize {
    if context.is_null() {
        return 0;
    }
    let context = context as *const libc::ucontext_t;
    // SAFETY: the kernel passes a valid ucontext to an SA_SIGINFO handler.
    unsafe { (*context).uc_mcontext.gregs[libc::REG_RIP as usize] as usize }
}

#[cfg(target_arch = "aarch64")]
fn interrupted_pc(context: *mut libc::c_void) -> usize {
    if context.is_null() {
        return 0;
    }
    let context = context as *const libc::ucontext_t;
    // SAFETY: the kernel passes a valid ucontext to an SA_SIGINFO handler.
    unsafe { (*context).uc_mcontext.pc as usize }
}

static PREVIOUS: AtomicPtr<libc::sigaction> = AtomicPtr::new(std::ptr::null_mut());

/// Installs the handler and starts the timer.
fn install(frequency: u32) -> Result<(), String> {
    // SAFETY: plain sigaction/setitimer calls with initialized structs.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            on_sigprof;
        action.sa_sigaction = handler as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        let previous = Box::into_raw(Box::new(std::mem::zeroed::<libc::sigaction>()));
        if libc::sigaction(libc::SIGPROF, &action, previous) != 0 {
            drop(Box::from_raw(previous));
            return Err(format!(
                "cannot install the SIGPROF handler: {}",
                std::io::Error::last_os_error()
            ));
        }
        PREVIOUS.store(previous, Ordering::SeqCst);
        let interval = 1_000_000 / i64::from(frequency.max(1));
        let tick = libc::timeval {
            tv_sec: (interval / 1_000_000) as libc::time_t,
            tv_usec: (interval % 1_000_000) as libc::suseconds_t,
        };
        let timer = libc::itimerval {
            it_interval: tick,
            it_value: tick,
        };
        if libc::setitimer(libc::ITIMER_PROF, &timer, std::ptr::null_mut()) != 0 {
            return Err(format!(
                "cannot start the profiling timer: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

/// Stops the timer and puts the previous SIGPROF disposition back.
fn uninstall() {
    // SAFETY: as in `install`; a SIGPROF still pending after the timer stops reaches our
    // handler only while it is installed, and it finds no table after `sample` unpublishes it.
    unsafe {
        let off: libc::itimerval = std::mem::zeroed();
        libc::setitimer(libc::ITIMER_PROF, &off, std::ptr::null_mut());
        let previous = PREVIOUS.swap(std::ptr::null_mut(), Ordering::SeqCst);
        if !previous.is_null() {
            let previous = Box::from_raw(previous);
            libc::sigaction(libc::SIGPROF, &*previous, std::ptr::null_mut());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spins in its own code, looking at the clock (in the vDSO, whose samples are dropped)
    /// only every million rounds.
    #[inline(never)]
    fn sampler_spin(until: std::time::Instant) -> u64 {
        let mut x = 0u64;
        while std::time::Instant::now() < until {
            for _ in 0..1_000_000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
        x
    }

    #[test]
    fn samples_the_busy_function_and_frees_its_table() {
        let busy = std::thread::spawn(|| {
            sampler_spin(std::time::Instant::now() + Duration::from_millis(700))
        });
        let taken = sample(200, Duration::from_millis(500)).unwrap();
        busy.join().unwrap();
        let total: u64 = taken.stacks.iter().map(|s| s.count).sum();
        assert!(
            total >= 10,
            "a busy thread for 0.5 s at 200 Hz: {total} samples"
        );
        let mut in_spin = 0;
        for stack in &taken.stacks {
            let mut named = false;
            for &ip in &stack.frames {
                backtrace::resolve(ip as *mut std::ffi::c_void, |symbol| {
                    named |= symbol
                        .name()
                        .is_some_and(|n| n.to_string().contains("sampler_spin"));
                });
            }
            if named {
                in_spin += stack.count;
            }
        }
        assert!(
            in_spin * 2 >= total,
            "most samples are in the spinning function: {in_spin} of {total}"
        );
        assert!(TABLE.load(Ordering::SeqCst).is_null());
    }
}

//! Off-CPU stacks from the scheduler: `perf record -e sched:sched_switch --switch-events`
//! on the target's threads. Each switch-out is a sample with the thread's stack (unwound with
//! DWARF: binaries without frame pointers are the usual case) and its state; the thread's
//! next switch-in (a PERF_RECORD_SWITCH event) ends the wait. The time between the two is
//! what that stack cost, summed per stack in microseconds. A wait still open when the
//! recording ends is counted up to its end; waits that began before it started are not seen.

use super::capture;
use super::waits::{self, Classified, Frame, WaitKind};
use crate::stacks::folded::Folded;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command;

/// What one recording saw.
#[derive(Debug, Default)]
pub struct Recording {
    /// Thread name first, root to leaf, kernel frames suffixed `_[k]`; values in µs.
    pub folded: Folded,
    /// Microseconds per (kind, site).
    pub sites: BTreeMap<(WaitKind, Option<String>), u64>,
    pub threads: usize,
    pub switches: u64,
}

/// Records `pid`'s context switches for `seconds` and reads them back.
pub fn record(pid: u32, seconds: f64, scratch: &Path) -> Result<Recording, String> {
    let perf = capture::perf_binary();
    let data = capture::perf_data(scratch, "offcpu.perf.data")?;
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    // Threads that exit while perf attaches to them can fail the recording: tried again.
    let attempt = capture::retried(|| record_once(&perf, pid, seconds, &data));
    if let Err(e) = attempt {
        let _ = std::fs::remove_file(&data);
        return Err(e);
    }
    // No inline expansion: the symbol table's full paths are what a site needs, and
    // resolving inlined frames costs perf script most of its time.
    // Reading the recording back takes seconds of CPU: it yields to the load and the target.
    crate::observe::in_background();
    let script = crate::observe::as_background(&mut Command::new(&perf))
        .args(["script", "--no-inline", "--show-switch-events"])
        .args(["-F", "tid,time,event,trace,ip,sym,dso", "-i"])
        .arg(&data)
        .output()
        .map_err(|e| format!("cannot run {perf} script: {e}"));
    let _ = std::fs::remove_file(&data);
    let script = script?;
    if !script.status.success() {
        return Err(format!(
            "perf script failed: {}",
            capture::first_line(&script.stderr)
        ));
    }
    Ok(parse(
        &String::from_utf8_lossy(&script.stdout),
        exe.as_deref(),
    ))
}

fn record_once(perf: &str, pid: u32, seconds: f64, data: &Path) -> Result<(), String> {
    let recorded = Command::new(perf)
        .args(["record", "-e", "sched:sched_switch", "--switch-events"])
        .args(["--call-graph", "dwarf,8192", "-p", &pid.to_string(), "-o"])
        .arg(data)
        .args(["--", "sleep", &format!("{seconds:.3}")])
        .output()
        .map_err(|e| capture::perf_spawn_error(perf, &e, "for off-CPU profiles"))?;
    if recorded.status.success() {
        return Ok(());
    }
    Err(format!(
        "perf record -e sched:sched_switch failed: {}",
        capture::last_line(&recorded.stderr)
    ))
}

/// A switch-out waiting for its thread's next switch-in.
struct Out {
    at: f64,
    stack: String,
    classified: Classified,
}

/// Reads `perf script` output (the fields `record` asks for). `exe` is the file name of the
/// target's executable: frames from other files are libraries.
pub fn parse(script: &str, exe: Option<&str>) -> Recording {
    let mut recording = Recording::default();
    let mut open: HashMap<u32, Out> = HashMap::new();
    let mut threads = std::collections::HashSet::new();
    let mut last_time = 0.0f64;
    let mut lines = script.lines().peekable();
    while let Some(line) = lines.next() {
        let Some((tid, time, rest)) = header(line) else {
            continue;
        };
        last_time = last_time.max(time);
        if rest.contains("PERF_RECORD_SWITCH IN") {
            if let Some(out) = open.remove(&tid) {
                recording.add(out, time);
            }
        } else if rest.contains("sched:sched_switch:") {
            let mut frames = Vec::new();
            while let Some(frame) = lines.peek().and_then(|l| frame(l, exe)) {
                frames.push(frame);
                lines.next();
            }
            let comm = between(rest, "prev_comm=", " prev_pid=").unwrap_or("?");
            let state = between(rest, "prev_state=", " ")
                .and_then(|s| s.chars().next())
                .filter(char::is_ascii_alphabetic);
            threads.insert(tid);
            recording.switches += 1;
            let classified = waits::classify(&frames, state);
            let stack = folded_stack(comm, &frames);
            open.insert(
                tid,
                Out {
                    at: time,
                    stack,
                    classified,
                },
            );
        }
    }
    for (_, out) in open.drain() {
        recording.add(out, last_time);
    }
    recording.threads = threads.len();
    recording
}

impl Recording {
    fn add(&mut self, out: Out, until: f64) {
        let us = ((until - out.at).max(0.0) * 1e6).round() as u64;
        if us == 0 {
            return;
        }
        *self.folded.stacks.entry(out.stack).or_default() += us;
        *self
            .sites
            .entry((out.classified.kind, out.classified.site))
            .or_default() += us;
    }
}

/// `  TID  SECONDS: rest` → (tid, seconds, rest).
fn header(line: &str) -> Option<(u32, f64, &str)> {
    if line.starts_with('\t') {
        return None;
    }
    let trimmed = line.trim_start();
    let (tid, rest) = trimmed.split_once(char::is_whitespace)?;
    let tid = tid.parse().ok()?;
    let rest = rest.trim_start();
    let (time, rest) = rest.split_once(':')?;
    Some((tid, time.trim().parse().ok()?, rest))
}

/// `\tADDR SYMBOL (DSO)` → a frame.
fn frame(line: &str, exe: Option<&str>) -> Option<Frame> {
    let line = line.strip_prefix('\t')?.trim_start();
    let (_address, rest) = line.split_once(' ')?;
    let (name, dso) = rest.rsplit_once(" (")?;
    let dso = dso.strip_suffix(')')?;
    let kernel = dso.starts_with("[kernel");
    let file = dso.rsplit('/').next().unwrap_or(dso);
    let foreign = !kernel
        && match exe {
            Some(exe) => file != exe,
            None => file.contains(".so") || file.starts_with('['),
        };
    Some(Frame {
        name: crate::stacks::folded::clean_name(name),
        kernel,
        foreign,
    })
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let rest = &text[from..];
    Some(rest.find(end).map_or(rest, |to| &rest[..to]))
}

/// Root first, the thread's name as the root frame; kernel frames marked as inferno does.
fn folded_stack(comm: &str, leaf_first: &[Frame]) -> String {
    let mut frames = vec![comm.replace(';', ",")];
    frames.extend(leaf_first.iter().rev().map(|f| {
        if f.kernel {
            format!("{}_[k]", f.name)
        } else {
            f.name.clone()
        }
    }));
    frames.join(";")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A trimmed `perf script` of the lock target: thread 11 blocks on the ledger's mutex for
    /// 4 ms, thread 12 sleeps 5 ms holding it, thread 11 is then preempted and never resumes.
    const SCRIPT: &str = "\
   11  100.000000: PERF_RECORD_SWITCH IN
   11  100.001000: sched:sched_switch: prev_comm=wait targets prev_pid=11 prev_prio=120 prev_state=S ==> next_comm=x next_pid=12 next_prio=120
\tffffffff8144f296 futex_do_wait ([kernel.kallsyms])
\tffffffff8225a101 do_syscall_64 ([kernel.kallsyms])
\t          101829 syscall (/usr/lib/x86_64-linux-gnu/libc.so.6)
\t           4fda5 <std::sys::sync::mutex::futex::Mutex>::lock_contended (/tmp/wait_targets)
\t           2be92 wait_targets::ledger_append (/tmp/wait_targets)
\t           2c0f8 wait_targets::http_connection (/tmp/wait_targets)

   11  100.001010: PERF_RECORD_SWITCH OUT
   12  100.001020: PERF_RECORD_SWITCH IN
   12  100.001030: sched:sched_switch: prev_comm=wait_targets prev_pid=12 prev_prio=120 prev_state=S ==> next_comm=x next_pid=0 next_prio=120
\tffffffff8226d2de do_nanosleep ([kernel.kallsyms])
\t           656e6 std::thread::functions::sleep (/tmp/wait_targets)
\t           2be3f wait_targets::ledger_append (/tmp/wait_targets)

   11  100.005000: PERF_RECORD_SWITCH IN
   12  100.006030: PERF_RECORD_SWITCH IN
   11  100.006500: sched:sched_switch: prev_comm=wait targets prev_pid=11 prev_prio=120 prev_state=R+ ==> next_comm=x next_pid=0 next_prio=120
\tffffffff82265908 __schedule ([kernel.kallsyms])
\t           2c0f8 wait_targets::http_connection (/tmp/wait_targets)

   12  100.007500: PERF_RECORD_SWITCH OUT
";

    #[test]
    fn switch_out_to_switch_in_is_the_stacks_time() {
        let r = parse(SCRIPT, Some("wait_targets"));
        assert_eq!(r.switches, 3);
        assert_eq!(r.threads, 2);
        let lock = &r.sites[&(WaitKind::Lock, Some("wait_targets::ledger_append".into()))];
        assert_eq!(*lock, 4000, "{:?}", r.sites);
        let sleep = &r.sites[&(WaitKind::Sleep, Some("wait_targets::ledger_append".into()))];
        assert_eq!(*sleep, 5000);
        // Still switched out at the end: counted to the last event (1 ms).
        let preempted = &r.sites[&(
            WaitKind::Preempted,
            Some("wait_targets::http_connection".into()),
        )];
        assert_eq!(*preempted, 1000);
        let text = r.folded.to_text();
        assert!(
            text.contains(
                "wait targets;wait_targets::http_connection;wait_targets::ledger_append;\
                 <std::sys::sync::mutex::futex::Mutex>::lock_contended;syscall;\
                 do_syscall_64_[k];futex_do_wait_[k] 4000"
            ),
            "{text}"
        );
    }

    #[test]
    fn frames_from_other_files_are_libraries() {
        let f = frame("\t 101829 syscall (/usr/lib/libc.so.6)", Some("svc")).unwrap();
        assert!(f.foreign && !f.kernel);
        let f = frame("\t 2be92 svc::f (/opt/svc)", Some("svc")).unwrap();
        assert!(!f.foreign);
        let f = frame("\t 2be92 a (b) (/opt/svc)", Some("svc")).unwrap();
        assert_eq!(f.name, "a (b)");
        assert!(frame("not a frame", None).is_none());
    }
}

//! A JVM's own stacks, by Java Flight Recorder (part of every JDK: `JFR.start`, `JFR.stop`
//! as jcmd would send them, through `jvm_attach`, then `jfr print --json`). perf on a JVM sees JIT-compiled frames it cannot
//! name; JFR names every frame `package.Class.method`.
//!
//! - The CPU profile: `jdk.ExecutionSample` every 10 ms per running thread, folded.
//! - The waits, each event with its stack and duration (thresholds at 1 ms: JFR's defaults
//!   drop waits under 10–20 ms, which is most of them at a knee): `jdk.JavaMonitorEnter`
//!   (a `synchronized` section: lock), `jdk.JavaMonitorWait` (`Object.wait`: pool),
//!   `jdk.ThreadPark` by what it parked on (a `ReentrantLock`: lock; a `Semaphore`: pool; a
//!   queue: queue), `jdk.SocketRead`/`SocketWrite` (a downstream), `jdk.FileRead`/`FileWrite`/
//!   `FileForce` (disk), `jdk.ThreadSleep` (sleep), and `jdk.GarbageCollection` (pauses, said
//!   in a note). Each wait counts only its part inside the recording.
//!
//! A frame is the service's own unless its class is the JDK's (`java.`, `javax.`, `jdk.`,
//! `sun.`, `com.sun.`) or a common framework's; the first own frame from the leaf is the site.
//! A wait with no own frame (a pool worker parked for its next task, the JDK HTTP server
//! reading the next request) is idle.

use super::capture::Captured;
use super::jvm_attach::{in_target, jcmd};
use super::sched::Recording;
use crate::model::observed::WaitKind;
use crate::stacks::folded::Folded;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

/// Events of the CPU profile and of the waits, and JFR's settings for them.
const CPU_EVENTS: &str = "jdk.ExecutionSample";
const WAIT_EVENTS: &str = "jdk.JavaMonitorEnter,jdk.JavaMonitorWait,jdk.ThreadPark,jdk.SocketRead,jdk.SocketWrite,jdk.FileRead,jdk.FileWrite,jdk.FileForce,jdk.ThreadSleep,jdk.GarbageCollection";

/// Classes that are not the service's own code.
const LIBRARIES: [&str; 20] = [
    "java.",
    "javax.",
    "jdk.",
    "sun.",
    "com.sun.",
    "kotlin.",
    "kotlinx.",
    "scala.",
    "org.springframework.",
    "org.apache.",
    "io.netty.",
    "reactor.",
    "io.undertow.",
    "org.eclipse.jetty.",
    "com.fasterxml.",
    "ch.qos.",
    "org.slf4j.",
    "org.hibernate.",
    "com.zaxxer.",
    "io.micrometer.",
];

/// A JDK tool: `KNEE_JFR` (for `jfr`), else the name on the PATH.
fn tool(name: &str) -> String {
    std::env::var(format!("KNEE_{}", name.to_uppercase())).unwrap_or_else(|_| name.into())
}

/// Whether `jfr` (a JDK's tool that reads recordings) runs here; the line to say when not.
pub fn available() -> Result<(), String> {
    let ok = Command::new(tool("jfr"))
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success() || !o.stdout.is_empty());
    if ok {
        return Ok(());
    }
    Err(
        "jfr not found: install a JDK (Debian's openjdk-17-jdk-headless) to see the Java methods; perf cannot name JIT-compiled frames"
            .into(),
    )
}

/// Records `events` of JVM `pid` for `seconds`; the JSON `jfr print` made of them, and the
/// recording's window. The recording is started and stopped through the attach socket
/// (`jvm_attach`, milliseconds); its settings and its file live in the target's /tmp (a
/// container's, if it runs in one), read here through /proc.
fn record(
    pid: u32,
    seconds: f64,
    events: &str,
    settings: &str,
    scratch: &Path,
) -> Result<(Value, (SystemTime, SystemTime)), String> {
    // The CPU profile and the waits record side by side: each its own files and name.
    let what = if events == CPU_EVENTS { "cpu" } else { "waits" };
    let step = scratch
        .file_name()
        .map_or("step".into(), |n| n.to_string_lossy().into_owned());
    let name = format!("knee-{}-{step}-{what}", std::process::id());
    let (jfc, out) = (format!("/tmp/{name}.jfc"), format!("/tmp/{name}.jfr"));
    let (jfc_here, out_here) = (in_target(pid, &jfc), in_target(pid, &out));
    write_readable(&jfc_here, settings)?;
    let started = SystemTime::now();
    let start = jcmd(pid, &format!("JFR.start name={name} settings={jfc}"));
    let _ = std::fs::remove_file(&jfc_here);
    start?;
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let stopped = SystemTime::now();
    jcmd(pid, &format!("JFR.stop name={name} filename={out}"))?;
    crate::observe::in_background();
    let printed = crate::observe::as_background(&mut Command::new(tool("jfr")))
        .args(["print", "--json", "--stack-depth", "64", "--events", events])
        .arg(&out_here)
        .output()
        .map_err(|e| format!("cannot run jfr: {e}"));
    let _ = std::fs::remove_file(&out_here);
    let printed = printed?;
    if !printed.status.success() {
        return Err(format!(
            "jfr print failed: {}",
            super::capture::first_line(&printed.stderr)
        ));
    }
    let json = serde_json::from_slice(&printed.stdout)
        .map_err(|e| format!("jfr print wrote no JSON knee can read: {e}"))?;
    Ok((json, (started, stopped)))
}

/// Writes a file the target (maybe another user) can read.
fn write_readable(path: &Path, text: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text)
        .and_then(|()| std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// JFR settings: the execution sampler, or the wait events at a 1 ms threshold.
fn settings(cpu: bool) -> String {
    let event = |name: &str, extra: &str| {
        format!(
            "  <event name=\"{name}\"><setting name=\"enabled\">true</setting>{extra}</event>\n"
        )
    };
    let mut body = String::new();
    if cpu {
        body += &event(
            "jdk.ExecutionSample",
            "<setting name=\"period\">10 ms</setting>",
        );
    } else {
        for name in WAIT_EVENTS.split(',') {
            let extra = if name == "jdk.GarbageCollection" {
                "<setting name=\"threshold\">0 ms</setting>"
            } else {
                "<setting name=\"stackTrace\">true</setting><setting name=\"threshold\">1 ms</setting>"
            };
            body += &event(name, extra);
        }
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<configuration version=\"2.0\" label=\"knee\" description=\"knee\" provider=\"knee\">\n{body}</configuration>\n"
    )
}

/// The CPU profile of `pid` over `seconds`.
pub fn cpu(pid: u32, seconds: f64, scratch: &Path) -> Result<Captured, String> {
    let (json, _) = record(pid, seconds, CPU_EVENTS, &settings(true), scratch)?;
    Ok(cpu_profile(&json))
}

/// The CPU profile from `jfr print --json` of execution samples (one per 10 ms).
pub fn cpu_profile(json: &Value) -> Captured {
    let mut captured = Captured::stacks(Folded::default(), None, Some(100.0));
    for event in events(json) {
        let frames = frames(event);
        if frames.is_empty() {
            continue;
        }
        let names: Vec<&str> = frames.iter().rev().map(|f| f.name.as_str()).collect();
        *captured.folded.stacks.entry(names.join(";")).or_default() += 1;
        if let Some(own) = frames.iter().find(|f| f.own) {
            *captured.own.entry(own.name.clone()).or_default() += 1;
        }
    }
    captured
}

/// The waits of `pid` over `seconds`, and a note on GC pauses.
pub fn waits(
    pid: u32,
    seconds: f64,
    scratch: &Path,
) -> Result<(Recording, Option<String>), String> {
    let (json, window) = record(pid, seconds, WAIT_EVENTS, &settings(false), scratch)?;
    Ok(recording(&json, window))
}

/// A recording from `jfr print --json` of the wait events over `window`.
pub fn recording(json: &Value, window: (SystemTime, SystemTime)) -> (Recording, Option<String>) {
    let mut recording = Recording::default();
    let mut sites: BTreeMap<(WaitKind, Option<String>), u64> = BTreeMap::new();
    let (mut gc_us, mut gcs) = (0u64, 0u64);
    for event in events(json) {
        let kind_of_event = event["type"].as_str().unwrap_or("");
        let us = inside(event, window);
        if kind_of_event == "jdk.GarbageCollection" {
            gc_us += us;
            gcs += 1;
            continue;
        }
        let frames = frames(event);
        let site = frames.iter().find(|f| f.own).map(|f| f.name.clone());
        let parked = event["values"]["parkedClass"]["name"]
            .as_str()
            .unwrap_or("")
            .replace('/', ".");
        let kind = match (kind_of_event, site.is_some()) {
            (_, false) => WaitKind::Idle,
            ("jdk.JavaMonitorEnter", _) => WaitKind::Lock,
            ("jdk.JavaMonitorWait", _) => WaitKind::Pool,
            ("jdk.ThreadPark", _) => parked_kind(&parked),
            ("jdk.SocketRead" | "jdk.SocketWrite", _) => WaitKind::Socket,
            ("jdk.FileRead" | "jdk.FileWrite" | "jdk.FileForce", _) => WaitKind::Disk,
            ("jdk.ThreadSleep", _) => WaitKind::Sleep,
            _ => WaitKind::Other,
        };
        if us == 0 {
            continue;
        }
        let names: Vec<&str> = frames.iter().rev().map(|f| f.name.as_str()).collect();
        *recording.folded.stacks.entry(names.join(";")).or_default() += us;
        *sites.entry((kind, site)).or_default() += us;
        recording.switches += 1;
    }
    recording.sites = sites;
    let note = (gcs > 0).then(|| {
        format!(
            "JFR: {gcs} garbage collections paused the JVM {:.0} ms over the recording",
            gc_us as f64 / 1000.0
        )
    });
    (recording, note)
}

/// What a park waited on, by the class it parked on.
fn parked_kind(class: &str) -> WaitKind {
    if class.contains("Semaphore") {
        WaitKind::Pool
    } else if class.contains("ReentrantLock")
        || class.contains("ReadWriteLock")
        || class.contains("StampedLock")
    {
        WaitKind::Lock
    } else if class.contains("Queue")
        || class.contains("CompletableFuture")
        || class.contains("Exchanger")
    {
        WaitKind::Queue
    } else if class.contains("ConditionObject") {
        // A condition: of a pool's checkout or a queue's take (the frames above say which).
        WaitKind::Pool
    } else {
        WaitKind::Other
    }
}

fn events(json: &Value) -> impl Iterator<Item = &Value> {
    json["recording"]["events"].as_array().into_iter().flatten()
}

/// A frame of a JFR stack: `package.Class.method`, and whether it is the service's own.
pub struct Frame {
    pub name: String,
    pub own: bool,
}

/// An event's frames, leaf first, hidden (lambda) frames left out.
fn frames(event: &Value) -> Vec<Frame> {
    event["values"]["stackTrace"]["frames"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| !f["method"]["hidden"].as_bool().unwrap_or(false))
        .filter_map(|f| {
            let class = f["method"]["type"]["name"].as_str()?.replace('/', ".");
            let method = f["method"]["name"].as_str()?;
            let own =
                !LIBRARIES.iter().any(|l| class.starts_with(l)) && !class.contains("$$Lambda");
            Some(Frame {
                name: format!("{class}.{method}"),
                own,
            })
        })
        .collect()
}

/// Microseconds of an event inside the recording's window.
fn inside(event: &Value, (from, to): (SystemTime, SystemTime)) -> u64 {
    let values = &event["values"];
    let Some(duration) = values["duration"].as_str().and_then(iso_duration) else {
        return 0;
    };
    let start = values["startTime"]
        .as_str()
        .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
        .unwrap_or(from);
    let end = start + duration;
    let (a, b) = (start.max(from), end.min(to));
    b.duration_since(a).map_or(0, |d| d.as_micros() as u64)
}

/// "PT0.013701153S" (an ISO 8601 duration, as `jfr print` writes them).
pub fn iso_duration(text: &str) -> Option<Duration> {
    let rest = text.strip_prefix("PT")?;
    let mut seconds = 0.0;
    let mut number = String::new();
    for c in rest.chars() {
        match c {
            'H' => seconds += number.parse::<f64>().ok()? * 3600.0,
            'M' => seconds += number.parse::<f64>().ok()? * 60.0,
            'S' => seconds += number.parse::<f64>().ok()?,
            _ => {
                number.push(c);
                continue;
            }
        }
        number.clear();
    }
    Duration::try_from_secs_f64(seconds).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_durations_are_read() {
        assert_eq!(
            iso_duration("PT0.013701153S"),
            Some(Duration::from_nanos(13_701_153))
        );
        assert_eq!(iso_duration("PT1M2S"), Some(Duration::from_secs(62)));
        assert_eq!(iso_duration("P1D"), None);
    }

    fn frame(class: &str, method: &str) -> Value {
        serde_json::json!({"method": {"type": {"name": class}, "name": method, "hidden": false}})
    }

    #[test]
    fn wait_events_become_sites_clipped_to_the_window() {
        let t0 = humantime::parse_rfc3339_weak("2026-12-02T15:26:13Z").unwrap();
        let json = serde_json::json!({"recording": {"events": [
            {"type": "jdk.JavaMonitorEnter", "values": {
                "startTime": "2026-12-02T15:26:13.100Z", "duration": "PT0.050S",
                "stackTrace": {"frames": [frame("RuntimeService", "ledgerAppend"),
                                          frame("com/sun/net/httpserver/Filter$Chain", "doFilter")]}}},
            {"type": "jdk.ThreadPark", "values": {
                "startTime": "2026-12-02T15:26:12.000Z", "duration": "PT1.5S",
                "parkedClass": {"name": "java/util/concurrent/Semaphore$NonfairSync"},
                "stackTrace": {"frames": [frame("jdk/internal/misc/Unsafe", "park"),
                                          frame("java/util/concurrent/Semaphore", "acquire"),
                                          frame("RuntimeService", "checkoutSlot")]}}},
            {"type": "jdk.ThreadPark", "values": {
                "startTime": "2026-12-02T15:26:13.000Z", "duration": "PT0.5S",
                "parkedClass": {"name": "java/util/concurrent/locks/AbstractQueuedSynchronizer$ConditionObject"},
                "stackTrace": {"frames": [frame("java/util/concurrent/LinkedBlockingQueue", "take"),
                                          frame("java/util/concurrent/ThreadPoolExecutor", "getTask")]}}},
            {"type": "jdk.GarbageCollection", "values": {
                "startTime": "2026-12-02T15:26:13.200Z", "duration": "PT0.010S"}}
        ]}});
        let (r, note) = recording(&json, (t0, t0 + Duration::from_secs(1)));
        assert_eq!(
            r.sites[&(WaitKind::Lock, Some("RuntimeService.ledgerAppend".into()))],
            50_000
        );
        // Parked from before the recording: only its part inside counts.
        assert_eq!(
            r.sites[&(WaitKind::Pool, Some("RuntimeService.checkoutSlot".into()))],
            500_000
        );
        assert_eq!(
            r.sites[&(WaitKind::Idle, None)],
            500_000,
            "a worker waiting for a task"
        );
        assert!(note
            .unwrap()
            .contains("1 garbage collections paused the JVM 10 ms"));
    }
}

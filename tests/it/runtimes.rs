//! A service's bottleneck named in its own language: small services in Python
//! (tests/fixtures/python), on a JVM (tests/fixtures/java) and on Node.js
//! (tests/fixtures/node), each with its bottleneck in a function of its own code. knee
//! chooses each runtime's profiler by itself (`--profiler auto`, the default: py-spy, Java
//! Flight Recorder, Node's inspector) and each verdict must have the right kind and a site
//! naming the service's function, not the interpreter's or the standard library's.
//!
//! Each runtime's service is started once and shared by its tests (a JVM takes seconds to
//! start); they exit when the test binary does (their stdin closes).

use crate::tools::{have, missing};
use crate::util::{knee_bin, serial, spawn_reading_first_line, TempDir};
use knee::model::RunRecord;
use std::process::{Child, Command};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// A service of ours, started once per test binary.
struct Service {
    _child: Child,
    port: String,
    pid: u32,
}

impl Service {
    fn start(command: &mut Command) -> Service {
        let (child, port) = spawn_reading_first_line(command);
        assert!(port.parse::<u16>().is_ok(), "{command:?} printed {port:?}");
        Service {
            pid: child.id(),
            _child: child,
            port,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

fn fixture(path: &str) -> String {
    format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"))
}

/// The shared service `start` makes, when its runtime (and its profiler) is here.
fn shared(
    cell: &'static OnceLock<Option<Mutex<Service>>>,
    tools: &[&str],
    test: &str,
    start: impl FnOnce() -> Service,
) -> Option<&'static Mutex<Service>> {
    if !tools.iter().all(|tool| have(tool, test)) {
        return None;
    }
    cell.get_or_init(|| Some(Mutex::new(start()))).as_ref()
}

fn python(test: &str) -> Option<&'static Mutex<Service>> {
    static PYTHON: OnceLock<Option<Mutex<Service>>> = OnceLock::new();
    shared(&PYTHON, &["python3", "py-spy"], test, || {
        Service::start(Command::new("python3").arg(fixture("python/runtime_service.py")))
    })
}

fn jvm(test: &str) -> Option<&'static Mutex<Service>> {
    static JVM: OnceLock<Option<Mutex<Service>>> = OnceLock::new();
    let tools = ["java", "jcmd", "jfr"];
    if !tools.iter().all(|tool| jdk_tool(tool)) {
        missing("a JDK (java, jcmd, jfr)", test);
        return None;
    }
    shared(&JVM, &[], test, || {
        // The source launcher compiles it in memory: no build step, no class files.
        Service::start(
            Command::new("java")
                .args(["-XX:+UseSerialGC", "-Xmx256m"])
                .arg(fixture("java/RuntimeService.java")),
        )
    })
}

/// The JDK's tools answer `-h` (not `--version`).
fn jdk_tool(tool: &str) -> bool {
    Command::new(tool)
        .arg("-h")
        .output()
        .is_ok_and(|o| o.status.success() || !o.stdout.is_empty())
}

fn node(test: &str) -> Option<&'static Mutex<Service>> {
    static NODE: OnceLock<Option<Mutex<Service>>> = OnceLock::new();
    shared(&NODE, &["node"], test, || {
        Service::start(Command::new("node").arg(fixture("node/service.js")))
    })
}

/// The serial lock and a runtime's shared service, when the runtime is here.
fn take(
    runtime: fn(&str) -> Option<&'static Mutex<Service>>,
    test: &str,
) -> Option<(MutexGuard<'static, ()>, MutexGuard<'static, Service>)> {
    let serial = serial();
    let service = runtime(test)?;
    Some((serial, service.lock().unwrap_or_else(|e| e.into_inner())))
}

/// `knee run` of `path` at `rates` in 1 s steps, the target named by its pid and nothing
/// said of its runtime; its record and what it printed.
fn knee(
    service: &Service,
    path: &str,
    rates: &str,
    extra: &[&str],
) -> (TempDir, RunRecord, String) {
    let pid = service.pid.to_string();
    let mut args = vec!["--pid", pid.as_str()];
    args.extend_from_slice(extra);
    knee_at(&service.url(path), rates, &args)
}

/// `knee run` of `url` at `rates` in 1 s steps (p99 ≤ 60 ms) with `extra`.
fn knee_at(url: &str, rates: &str, extra: &[&str]) -> (TempDir, RunRecord, String) {
    let out = TempDir::new("runtimes");
    let output = Command::new(knee_bin())
        .args(["run", "--url", url, "--steps", rates])
        .args(["--step-duration", "1s", "--warmup", "300ms"])
        .args([
            "--sample-every",
            "200ms",
            "--slo",
            "p99=60ms",
            "-q",
            "--out",
        ])
        .arg(out.path())
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.code().is_some_and(|c| c <= 1), "{stderr}");
    let record = RunRecord::read(&out.join("run.json")).unwrap();
    (out, record, stderr)
}

fn said(record: &RunRecord) -> String {
    let v = record.verdict.as_ref().unwrap();
    format!(
        "{} ({}, site {:?}): {}",
        v.bottleneck,
        v.kind,
        v.site,
        v.evidence.join(" | ")
    )
}

/// The verdict's kind and site, and the knee step's flamegraph from `source`.
fn assert_named(dir: &TempDir, record: &RunRecord, kind: &str, site: &str, source: &str) {
    let verdict = record.verdict.as_ref().expect("a verdict");
    eprintln!("{kind}: {}", said(record));
    assert_eq!(verdict.kind, kind, "{}", said(record));
    assert!(
        verdict.site.as_deref().is_some_and(|s| s.contains(site)),
        "site should name {site}: {}",
        said(record)
    );
    let profiling = record
        .profiling
        .as_ref()
        .expect("run.json says how it profiled");
    assert_eq!(profiling.cpu.as_deref(), Some(source), "{profiling:?}");
    let knee_step = record.steps.last().unwrap();
    let profile = knee_step
        .observed
        .as_ref()
        .and_then(|o| o.profile.as_ref())
        .expect("the knee step was profiled");
    assert_eq!(profile.source.as_str(), source);
    // Where the CPU went for a CPU-bound kind, where the threads waited (read by the
    // runtime's own view of its waits) for the others.
    let offcpu = knee_step.observed.as_ref().and_then(|o| o.offcpu.as_ref());
    let svg = match kind {
        "cpu_bound" | "single_thread" => profile.svg.as_ref(),
        _ => {
            let offcpu = offcpu.expect("an off-CPU profile");
            let waits = match source {
                "py-spy" => "py-spy idle",
                "jfr" => "jfr events",
                _ => "perf sched_switch",
            };
            assert_eq!(offcpu.source.as_str(), waits);
            offcpu.svg.as_ref()
        }
    };
    let svg = std::fs::read_to_string(dir.join(svg.expect("a flamegraph"))).unwrap();
    let function = site.rsplit('.').next().unwrap();
    assert!(svg.contains(function), "the flamegraph names {function}");
}

#[test]
fn python_lock_pool_and_gil_are_named_by_their_functions() {
    let Some((_serial, service)) = take(
        python,
        "python_lock_pool_and_gil_are_named_by_their_functions",
    ) else {
        return;
    };
    // One lock held 2 ms: at most 500 req/s.
    let (dir, record, _) = knee(&service, "/lock", "150,300,700", &[]);
    assert_named(
        &dir,
        &record,
        "lock",
        "runtime_service.ledger_append",
        "py-spy",
    );
    // 4 slots held 20 ms: at most 200 req/s.
    let (dir, record, _) = knee(&service, "/pool", "60,120,320", &[]);
    assert_named(
        &dir,
        &record,
        "pool",
        "runtime_service.checkout_slot",
        "py-spy",
    );
    // 2 ms of pure Python under the GIL: about one core, whatever the threads.
    let (dir, record, _) = knee(&service, "/cpu", "120,250,650", &[]);
    assert_named(
        &dir,
        &record,
        "single_thread",
        "runtime_service.price_quote",
        "py-spy",
    );
    let verdict = record.verdict.as_ref().unwrap();
    assert!(verdict.bottleneck.contains("the GIL"), "{}", said(&record));
}

#[test]
fn python_through_an_observer_is_named_as_a_local_one() {
    let Some((_serial, service)) =
        take(python, "python_through_an_observer_is_named_as_a_local_one")
    else {
        return;
    };
    // knee observe on the "target's host" reads it with its runtime's profilers.
    let observed = crate::observer::Observed::start(&["--pid", &service.pid.to_string()]);
    let observer = format!("app={}", observed.url);
    let (_out, record, _) = knee_at(
        &service.url("/lock"),
        "150,300,700",
        &["--observer", &observer],
    );
    eprintln!("through the observer: {}", said(&record));
    let verdict = record.verdict.as_ref().unwrap();
    assert_eq!(verdict.kind, "lock", "{}", said(&record));
    assert!(
        verdict
            .site
            .as_deref()
            .is_some_and(|s| s.contains("runtime_service.ledger_append")),
        "{}",
        said(&record)
    );
    let profiling = record.profiling.as_ref().unwrap();
    assert_eq!(
        profiling.runtime.map(|r| r.as_str()),
        Some("python"),
        "{profiling:?}"
    );
    let observed_step = record.steps[2].observed.as_ref().unwrap();
    let (profile, offcpu) = (
        observed_step.profile.as_ref().unwrap(),
        observed_step.offcpu.as_ref().unwrap(),
    );
    assert_eq!(
        (profile.source.as_str(), profile.observer.as_deref()),
        ("py-spy", Some("app"))
    );
    assert_eq!(
        (offcpu.source.as_str(), offcpu.observer.as_deref()),
        ("py-spy idle", Some("app"))
    );
}

#[test]
fn python_without_py_spy_is_said_with_the_install_step() {
    let Some((_serial, service)) = take(
        python,
        "python_without_py_spy_is_said_with_the_install_step",
    ) else {
        return;
    };
    let out = TempDir::new("no-py-spy");
    let output = Command::new(knee_bin())
        .args([
            "run",
            "--url",
            &service.url("/lock"),
            "--pid",
            &service.pid.to_string(),
        ])
        .args([
            "--steps",
            "50",
            "--step-duration",
            "500ms",
            "--warmup",
            "0s",
            "--offcpu",
            "off",
        ])
        .args(["--out"])
        .arg(out.path())
        .env("KNEE_PY_SPY", "/nonexistent/py-spy")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.code().is_some_and(|c| c <= 1), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("py-spy not found"))
        .unwrap_or_else(|| panic!("one line says py-spy is missing: {stderr}"));
    assert!(line.contains("pip install py-spy"), "{line}");
    assert_eq!(
        stderr.matches("py-spy not found").count(),
        1,
        "said once: {stderr}"
    );
    let record = RunRecord::read(&out.join("run.json")).unwrap();
    let profiling = record.profiling.unwrap();
    assert_eq!(profiling.runtime.map(|r| r.as_str()), Some("python"));
    assert!(profiling
        .why
        .iter()
        .any(|w| w.contains("pip install py-spy")));
}

#[test]
fn jvm_synchronized_semaphore_and_cpu_are_named_by_their_methods() {
    let Some((_serial, service)) = take(
        jvm,
        "jvm_synchronized_semaphore_and_cpu_are_named_by_their_methods",
    ) else {
        return;
    };
    // Warm the JIT first: the first seconds of a JVM are its compiler's.
    let _ = knee(
        &service,
        "/cpu",
        "200",
        &["--profiler", "none", "--offcpu", "off"],
    );
    // A synchronized section holding 2 ms: at most 500 req/s.
    let (dir, record, _) = knee(&service, "/sync", "150,300,700", &[]);
    assert_named(&dir, &record, "lock", "RuntimeService.ledgerAppend", "jfr");
    // 4 permits held 20 ms: at most 200 req/s.
    let (dir, record, _) = knee(&service, "/pool", "60,120,320", &[]);
    assert_named(&dir, &record, "pool", "RuntimeService.checkoutSlot", "jfr");
    // 2 ms of CPU per request on every core.
    let (dir, record, _) = knee(&service, "/cpu", "200,450,1400", &[]);
    assert_named(
        &dir,
        &record,
        "cpu_bound",
        "RuntimeService.priceQuote",
        "jfr",
    );
}

#[test]
fn node_event_loop_is_named_by_its_javascript_function() {
    let Some((_serial, service)) =
        take(node, "node_event_loop_is_named_by_its_javascript_function")
    else {
        return;
    };
    // 2 ms of JavaScript per request on the event loop: about 500 req/s.
    let (dir, record, _) = knee(&service, "/cpu", "120,250,650", &[]);
    assert_named(
        &dir,
        &record,
        "single_thread",
        "renderInvoice",
        "node inspector",
    );
    let verdict = record.verdict.as_ref().unwrap();
    assert!(
        verdict.bottleneck.starts_with("the event loop"),
        "{}",
        said(&record)
    );
    let profiling = record.profiling.as_ref().unwrap();
    assert!(
        profiling
            .why
            .iter()
            .any(|w| w.contains("invisible to thread stacks")),
        "{profiling:?}"
    );
    // The inspector is closed again once the profile is taken.
    assert!(std::net::TcpStream::connect("127.0.0.1:9229").is_err());
}

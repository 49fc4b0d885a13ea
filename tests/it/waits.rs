//! Where requests wait: services whose bottleneck burns no CPU (examples/wait_targets.rs, a
//! separate process each), hunted with no --metrics, so only their stacks (off-CPU, from perf)
//! and their threads' CPU can name the kind and the site. Go's goroutines wait where thread
//! stacks cannot see: its block profile names them.

use crate::tools::{have, GoService};
use crate::util::{check_run_folder, knee_bin, serial, spawn_reading_first_line, TempDir};
use knee::flame::offcpu::OffCpu;
use knee::output::RunRecord;
use std::process::{Child, Command};

/// One of examples/wait_targets.rs's services (stopped when dropped).
struct WaitTarget {
    child: Child,
    url: String,
}

impl WaitTarget {
    fn start(mode: &str) -> WaitTarget {
        let binary = crate::util::example_binary("wait_targets");
        let (child, port) = spawn_reading_first_line(Command::new(&binary).args([mode, "180"]));
        let url = format!("http://127.0.0.1:{port}/");
        WaitTarget { child, url }
    }
}

impl Drop for WaitTarget {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Holds long enough for a second of off-CPU recording (Go's profiles take whole seconds).
pub const HUNT: [&str; 8] = [
    "--step-duration",
    "600ms",
    "--hold-duration",
    "1s",
    "--holds",
    "95,120",
    "--max-rate",
    "1500",
];

/// `knee hunt URL` as a child process; its run folder, record and stderr.
fn hunt(url: &str, extra: &[&str], env: &[(&str, &str)]) -> (TempDir, RunRecord, String) {
    let out = TempDir::new("waits");
    let output = Command::new(knee_bin())
        .args(["hunt", url, "-q", "--out"])
        .arg(out.path())
        .args(HUNT)
        .args(extra)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.code().is_some_and(|c| c <= 1), "{stderr}");
    let record = RunRecord::read(&out.join("run.json")).unwrap();
    (out, record, stderr)
}

/// The verdict's kind and site for a wait target, with its off-CPU files checked.
fn judged(mode: &str) -> (String, Option<String>, String) {
    let (kind, site, bottleneck, _) = judged_with_record(mode);
    (kind, site, bottleneck)
}

fn judged_with_record(mode: &str) -> (String, Option<String>, String, RunRecord) {
    let target = WaitTarget::start(mode);
    let (dir, record, stderr) = hunt(&target.url, &[], &[]);
    let verdict = record.verdict.clone().unwrap();
    let knee_step = record
        .steps
        .iter()
        .find(|s| Some(&s.name) == verdict.knee_step.as_ref())
        .unwrap();
    let offcpu = OffCpu::of(knee_step).expect("an off-CPU profile at the knee");
    assert_eq!(offcpu.error, None, "{stderr}");
    assert_eq!(offcpu.source, "perf sched_switch");
    assert!(offcpu.switches > 0 && offcpu.waiting_ms > 0.0, "{offcpu:?}");
    let svg = std::fs::read_to_string(dir.join(offcpu.svg.as_ref().unwrap())).unwrap();
    assert!(svg.contains("<svg") && svg.contains("off-CPU"), "{mode}");
    let folded = std::fs::read_to_string(dir.join(offcpu.folded.as_ref().unwrap())).unwrap();
    assert!(folded.lines().count() > 1, "{folded}");
    check_run_folder(dir.path()).unwrap();
    // The reports show each step's off-CPU flamegraph and its top wait sites.
    let markdown = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        markdown.contains("## Where requests waited (off-CPU)")
            && markdown.contains(&format!("({})", offcpu.svg.as_ref().unwrap())),
        "{markdown}"
    );
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("alt=\"off-CPU flamegraph of"), "{mode}");
    eprintln!(
        "{mode}: capacity {:?}, verdict {} at {:?}: {:#?}",
        record.hunt.as_ref().and_then(|h| h.capacity_rps),
        verdict.kind,
        verdict.site,
        verdict.evidence
    );
    (
        verdict.kind.to_string(),
        verdict.site,
        verdict.bottleneck,
        record,
    )
}

#[test]
fn a_lock_held_across_io_is_named_from_the_stacks() {
    let _serial = serial();
    if !have("perf", "a_lock_held_across_io_is_named_from_the_stacks") {
        return;
    }
    let (kind, site, _) = judged("lock");
    assert_eq!(kind, "lock");
    assert_eq!(site.as_deref(), Some("wait_targets::ledger_append"));
}

#[test]
fn a_pool_checkout_is_named_from_the_stacks() {
    let _serial = serial();
    if !have("perf", "a_pool_checkout_is_named_from_the_stacks") {
        return;
    }
    let (kind, site, _) = judged("pool");
    assert_eq!(kind, "pool");
    assert_eq!(site.as_deref(), Some("wait_targets::checkout"));
}

#[test]
fn a_slow_downstream_is_named_from_the_stacks() {
    let _serial = serial();
    if !have("perf", "a_slow_downstream_is_named_from_the_stacks") {
        return;
    }
    let (kind, site, _, record) = judged_with_record("downstream");
    assert_eq!(kind, "downstream");
    assert_eq!(site.as_deref(), Some("wait_targets::fetch_quote"));
    // The target's connections to its backend, matched to the process listening there.
    let knee_step = record.verdict.as_ref().unwrap().knee_step.clone().unwrap();
    let step = record.steps.iter().find(|s| s.name == knee_step).unwrap();
    let processes = knee::observe::processes::Processes::of(step).unwrap();
    let backend = processes
        .downstreams
        .iter()
        .find(|d| d.name.as_deref() == Some("wait_targets"))
        .unwrap_or_else(|| panic!("{processes:?}"));
    assert!(
        backend.connections >= 1 && backend.pid.is_some(),
        "{backend:?}"
    );
    assert!(
        processes
            .top
            .iter()
            .any(|b| b.role.is_some_and(|r| r == "target")),
        "{processes:?}"
    );
}

#[test]
fn one_saturated_thread_is_not_a_lock() {
    let _serial = serial();
    if !have("perf", "one_saturated_thread_is_not_a_lock") {
        return;
    }
    let (kind, site, bottleneck) = judged("single");
    assert_eq!(kind, "single_thread", "{bottleneck}");
    assert_eq!(site.as_deref(), Some("worker-0"));
    assert!(bottleneck.contains("`worker-0`"), "{bottleneck}");
}

/// Without perf the run says so once and the verdict falls back to what the samplers see.
#[test]
fn without_perf_the_run_says_so_and_falls_back() {
    let _serial = serial();
    let target = WaitTarget::start("lock");
    let (_dir, record, stderr) = hunt(&target.url, &[], &[("KNEE_PERF", "/nonexistent/perf")]);
    let line = stderr
        .lines()
        .find(|l| l.contains("no off-CPU profiles"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains("perf not found"), "{line}");
    let verdict = record.verdict.unwrap();
    assert_eq!(verdict.kind, "waiting", "{verdict:#?}");
    assert!(verdict.site.is_none());
    assert!(record.steps.iter().all(|s| OffCpu::of(s).is_none()));
}

/// Go parks goroutines: the block profile names the lock and the function that took it.
#[test]
fn go_block_profiles_name_the_lock_a_goroutine_waits_on() {
    let _serial = serial();
    let test = "go_block_profiles_name_the_lock_a_goroutine_waits_on";
    let Some(service) = GoService::start(&["-profile-waits"], test) else {
        return;
    };
    let pprof = format!("{}/debug/pprof/profile", service.base);
    let url = format!("{}/ledger", service.base);
    let (_dir, record, stderr) = hunt(&url, &["--pprof", &pprof], &[]);
    let verdict = record.verdict.unwrap();
    let knee_step = record
        .steps
        .iter()
        .find(|s| Some(&s.name) == verdict.knee_step.as_ref())
        .unwrap();
    let offcpu = OffCpu::of(knee_step).unwrap();
    assert_eq!(offcpu.source, "go block profile", "{offcpu:?} {stderr}");
    assert_eq!(verdict.kind, "lock", "{verdict:#?}");
    assert_eq!(verdict.site.as_deref(), Some("main.ledgerAppend"));
    assert!(
        offcpu.notes.iter().any(|n| n.contains("mutex profile")),
        "{offcpu:?}"
    );
}

/// A Go service that has not turned its profiles on is told how.
#[test]
fn a_go_service_without_block_profiles_is_told_how() {
    let _serial = serial();
    let test = "a_go_service_without_block_profiles_is_told_how";
    let Some(service) = GoService::start(&[], test) else {
        return;
    };
    let pprof = format!("{}/debug/pprof/profile", service.base);
    let url = format!("{}/ledger", service.base);
    let (_dir, record, stderr) = hunt(&url, &["--pprof", &pprof, "--holds", "120"], &[]);
    let told = record
        .steps
        .iter()
        .filter_map(OffCpu::of)
        .flat_map(|o| o.notes.iter().cloned().chain(o.error.clone()))
        .chain(stderr.lines().map(str::to_string))
        .any(|line| line.contains("runtime.SetBlockProfileRate(1)"));
    assert!(told, "{stderr}");
}

//! A target of several processes: a pre-fork server (examples/wait_targets.rs with
//! `WAIT_TARGETS_WORKERS`, workers sharing one port by SO_REUSEPORT, each a 200 req/s lock),
//! found by `--process-name`, and the same workers named by `--pid` twice.

use crate::tools::have;
use crate::util::{knee_bin, serial, TempDir};
use knee::output::RunRecord;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};

/// A pre-fork master and its workers (they end with it), run from a copy of the program
/// under a name of its own, so `--process-name` finds these processes and no other test's.
struct PreFork {
    master: Child,
    url: String,
    workers: Vec<u32>,
    name: String,
    _dir: TempDir,
}

impl PreFork {
    fn start(workers: usize) -> PreFork {
        let program = crate::util::example_binary("wait_targets");
        let dir = TempDir::new("replicas");
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("ledger{}x{n}", std::process::id() % 100_000);
        let copy = dir.join(&name);
        std::fs::copy(&program, &copy).unwrap();
        // A copy just written may be open for writing in a child another test forks at the
        // same moment ("text file busy"): try again, a few times.
        let mut tries = 0;
        let mut master = loop {
            let started = Command::new(&copy)
                .args(["lock", "180"])
                .env("WAIT_TARGETS_WORKERS", workers.to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn();
            match started {
                Err(e) if e.raw_os_error() == Some(26) && tries < 20 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => break other.unwrap(),
            }
        };
        let mut lines = std::io::BufReader::new(master.stdout.take().unwrap()).lines();
        let port = lines.next().unwrap().unwrap();
        let pids = lines.next().unwrap().unwrap();
        PreFork {
            master,
            url: format!("http://127.0.0.1:{}/", port.trim()),
            workers: pids
                .split_whitespace()
                .map(|p| p.parse().unwrap())
                .collect(),
            name,
            _dir: dir,
        }
    }
}

impl Drop for PreFork {
    fn drop(&mut self) {
        let _ = self.master.kill();
        let _ = self.master.wait();
    }
}

fn knee(args: &[&str], out: &TempDir) -> (RunRecord, String) {
    let output = Command::new(knee_bin())
        .args(args)
        .args(["-q", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.code().is_some_and(|c| c <= 1), "{stderr}");
    (RunRecord::read(&out.join("run.json")).unwrap(), stderr)
}

#[test]
fn a_pre_fork_servers_workers_are_found_by_name_and_judged_each() {
    let _serial = serial();
    if !have(
        "perf",
        "a_pre_fork_servers_workers_are_found_by_name_and_judged_each",
    ) {
        return;
    }
    let server = PreFork::start(2);
    let out = TempDir::new("replicas-hunt");
    let (record, stderr) = knee(
        &[
            "hunt",
            &server.url,
            "--process-name",
            &server.name,
            "--step-duration",
            "600ms",
            "--hold-duration",
            "1s",
            "--holds",
            "95,120",
            "--max-rate",
            "1500",
        ],
        &out,
    );
    // The workers, not their master.
    let target = record.target_process.as_ref().unwrap();
    let mut found: Vec<u32> = target.replicas.iter().map(|r| r.pid).collect();
    found.sort_unstable();
    assert_eq!(found, server.workers, "{stderr}");
    assert_eq!(target.found_by, "process-name");
    // Two locks of 200 req/s each: the service holds about 400.
    let capacity = record.hunt.as_ref().and_then(|h| h.capacity_rps).unwrap();
    assert!((250.0..=480.0).contains(&capacity), "capacity {capacity}");
    let verdict = record.verdict.clone().unwrap();
    eprintln!(
        "capacity {capacity}: {} {:#?}",
        verdict.bottleneck, verdict.evidence
    );
    assert_eq!(verdict.kind.to_string(), "lock", "{verdict:#?}");
    assert_eq!(verdict.site.as_deref(), Some("wait_targets::ledger_append"));
    assert!(
        verdict.bottleneck.ends_with("(in 2 of 2 replicas)"),
        "{verdict:#?}"
    );
    for (i, pid) in server.workers.iter().enumerate() {
        let line = format!("replica {} (pid {pid}, ", i + 1);
        let said = verdict.evidence.iter().find(|e| e.starts_with(&line));
        assert!(
            said.is_some_and(|l| l.contains("serialized on a lock in wait_targets::ledger_append")),
            "{line}: {verdict:#?}"
        );
    }
    // Each replica's own off-CPU view and the service's, summed from them.
    let knee_step = record
        .steps
        .iter()
        .find(|s| Some(&s.name) == verdict.knee_step.as_ref())
        .unwrap();
    let observed = knee_step.observed.as_ref().unwrap();
    let replicas = observed.replicas.as_ref().unwrap();
    assert_eq!(replicas.len(), 2);
    let waits = |o: &knee::model::Observed| o.offcpu.as_ref().map_or(0.0, |w| w.waiting_ms);
    let service = waits(observed);
    let summed: f64 = replicas.iter().map(|r| waits(&r.observed)).sum();
    assert!(
        service > 0.0 && (service - summed).abs() < 1.0,
        "{service} vs {summed}"
    );
    for replica in replicas {
        let svg = replica.observed.offcpu.as_ref().and_then(|o| o.svg.clone());
        assert!(
            svg.as_deref()
                .is_some_and(|s| s.contains(&format!(".r{}.", replica.index))),
            "{svg:?}"
        );
        assert!(out.join(svg.unwrap().as_str()).exists());
        assert!(
            replica.share.is_some_and(|s| s > 0.0 && s < 1.0),
            "{replica:?}"
        );
    }
    let series = &observed.samplers.as_ref().unwrap().series;
    let cpu = |key: &str| series.get(key).map_or(f64::NAN, |s| s.mean);
    assert!(cpu("replica1.cpu_cores") >= 0.0 && cpu("replica2.cpu_cores") >= 0.0);
    assert!(
        cpu("target.cpu_cores") + 1e-9 >= cpu("replica1.cpu_cores"),
        "{series:?}"
    );
}

#[test]
fn pids_given_twice_are_two_replicas_sampled_each() {
    let server = PreFork::start(2);
    let out = TempDir::new("replicas-pids");
    let (a, b) = (server.workers[0].to_string(), server.workers[1].to_string());
    let (record, stderr) = knee(
        &[
            "run",
            "--url",
            &server.url,
            "--rate",
            "40",
            "--duration",
            "1s",
            "--pid",
            &a,
            "--pid",
            &b,
            "--profiler",
            "none",
            "--offcpu",
            "off",
        ],
        &out,
    );
    let target = record.target_process.as_ref().unwrap();
    assert_eq!(target.pid, server.workers[0], "{stderr}");
    assert_eq!(target.replicas.len(), 2);
    let step = &record.steps[0];
    let series = &step
        .observed
        .as_ref()
        .unwrap()
        .samplers
        .as_ref()
        .unwrap()
        .series;
    for key in [
        "replica1.rss_mb",
        "replica2.rss_mb",
        "replica2.threads",
        "target.rss_mb",
    ] {
        assert!(series.contains_key(key), "{key}: {series:?}");
    }
    let rss = |key: &str| series[key].mean;
    assert!((rss("target.rss_mb") - rss("replica1.rss_mb") - rss("replica2.rss_mb")).abs() < 0.5);
    // --process-name of no process: one line, exit 2.
    let output = Command::new(knee_bin())
        .args([
            "run",
            "--url",
            &server.url,
            "--rate",
            "10",
            "--duration",
            "200ms",
            "--process-name",
            "no-such-proc-x",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--process-name no-such-proc-x: no process of that name"),
        "{stderr}"
    );
}

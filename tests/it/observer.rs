//! `knee observe` on loopback, standing in for the target's host: the driver runs with
//! `--observer` (nothing discovered locally), the observer samples the demo as a process of
//! its own. Its token, its refusal to listen beyond loopback without one, its numbered
//! samples, the verdicts read through it against local sampling, and a run that outlives it.

use crate::util::*;
use knee::output::RunRecord;
use std::io::{Read, Write};
use std::process::{Child, Command};

/// A running `knee observe` (killed when dropped) and its base URL.
pub struct Observed {
    child: Child,
    pub url: String,
}

impl Observed {
    pub fn start(args: &[&str]) -> Observed {
        let (child, line) = spawn_reading_first_line(
            Command::new(knee_bin())
                .args([
                    "observe",
                    "--listen",
                    "127.0.0.1:0",
                    "--sample-every",
                    "200ms",
                ])
                .args(args),
        );
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://") || w.starts_with("https://"))
            .unwrap_or_else(|| panic!("knee observe said: {line}"))
            .to_string();
        Observed { child, url }
    }

    pub fn authority(&self) -> &str {
        self.url.split_once("://").unwrap().1
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The demo as a process of its own; its pid and base URL.
struct Demo {
    child: Child,
    base: String,
}

impl Demo {
    fn start() -> Demo {
        let (child, line) =
            spawn_reading_first_line(Command::new(knee_bin()).args(["demo", "--port", "0"]));
        let base = line.rsplit(' ').next().unwrap().to_string();
        assert!(base.starts_with("http://127.0.0.1:"), "{line}");
        Demo { child, base }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET with an optional bearer token: the status and the body.
pub fn get(authority: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(authority).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {authority}\r\n{auth}\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = answer.split_once("\r\n\r\n").unwrap().1.to_string();
    (status, body)
}

/// `knee run` of `path` at `rates` (800 ms steps), with `extra` (an observer, or --pid).
fn run(demo: &Demo, path: &str, rates: &str, extra: &[&str]) -> (RunRecord, String) {
    let mut args = verdict_run_args(&format!("{}{path}", demo.base), rates);
    args.extend(extra.iter().map(|a| a.to_string()));
    knee_child(&args)
}

#[test]
fn observe_refuses_to_listen_beyond_loopback_without_a_token() {
    let output = Command::new(knee_bin())
        .args(["observe", "--listen", "0.0.0.0:0", "--pid"])
        .arg(std::process::id().to_string())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("without --token-file"), "{stderr}");
}

#[test]
fn observe_answers_only_with_its_token_and_numbers_its_samples() {
    let dir = TempDir::new("observe-token");
    let token_file = dir.join("token");
    std::fs::write(&token_file, "right-token\n").unwrap();
    let pid = std::process::id().to_string();
    let observed = Observed::start(&["--pid", &pid, "--token-file", token_file.to_str().unwrap()]);
    let at = observed.authority();
    assert_eq!(get(at, "/describe", None).0, 401);
    assert_eq!(get(at, "/describe", Some("wrong-token")).0, 401);
    assert_eq!(get(at, "/samples?after=0", Some("right-toke")).0, 401);
    let (status, body) = get(at, "/describe", Some("right-token"));
    assert_eq!(status, 200, "{body}");
    let description: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        description["target"]["pid"].as_u64(),
        Some(pid.parse().unwrap())
    );
    assert!(description["cores"].as_u64().unwrap() >= 1, "{body}");

    // Bounded: ~1 s of 200 ms samples, then the next ones only.
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let batch = |after: u64| -> Vec<serde_json::Value> {
        let (status, body) = get(at, &format!("/samples?after={after}"), Some("right-token"));
        assert_eq!(status, 200, "{body}");
        let batch: serde_json::Value = serde_json::from_str(&body).unwrap();
        batch["samples"].as_array().unwrap().clone()
    };
    let first = batch(0);
    assert!(first.len() >= 3, "{first:?}");
    let seqs: Vec<u64> = first
        .iter()
        .map(|s| s["seq"].as_f64().unwrap() as u64)
        .collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    assert!(first.iter().any(|s| s.get("target.cpu_cores").is_some()));
    assert!(first.iter().all(|s| s.get("generator.cpu_cores").is_none()));
    let last = *seqs.last().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let next = batch(last);
    assert!(!next.is_empty());
    assert_eq!(next[0]["seq"].as_f64(), Some((last + 1) as f64));
}

/// The demo's /cpu (CPU-bound, ~950 req/s on 2 cores) and /pool (7 slots x 10 ms, 700 req/s,
/// sleeping) read through an observer, and /pool read locally: the same kinds.
#[test]
fn verdicts_through_an_observer_match_local_sampling() {
    let _serial = serial();
    let demo = Demo::start();
    let observed = Observed::start(&["--pid", &demo.pid()]);
    let observer = format!("app={}", observed.url);

    // Without off-CPU recording, as the local test of /cpu: perf on every context switch of
    // a saturated target takes CPU from it.
    let (cpu, _) = run(
        &demo,
        "/cpu",
        "300,1400",
        &["--observer", &observer, "--offcpu", "off"],
    );
    let v = cpu.verdict.clone().unwrap();
    assert_eq!(v.kind, "cpu_bound", "{v:#?}");
    assert!(
        v.evidence.iter().any(|e| e.contains("observer app")),
        "{v:#?}"
    );
    let target = cpu.target_process.clone().unwrap();
    assert_eq!(target.found_by, "observer:app");
    assert_eq!(target.pid.to_string(), demo.pid());
    let seen = &cpu.observers[0];
    assert!(seen.samples >= 6 && seen.gaps == 0, "{seen:?}");
    assert!(
        seen.rtt_ms < 200.0 && seen.clock_offset_ms.abs() < 50.0,
        "{seen:?}"
    );
    // The generator's host is this machine, sampled apart.
    assert!(knee::analyze::series(&cpu.steps[0], "generator_host.cpu_cores").is_some());

    // The pool sleeps: only stacks of where its threads wait name it, and the observer takes
    // them (off-CPU, and a CPU flamegraph with --profiler perf) on the target's host.
    let perf = crate::tools::have("perf", "verdicts_through_an_observer_match_local_sampling");
    let profiled = ["--profiler", "perf"];
    let (remote, _) = run(
        &demo,
        "/pool",
        "300,1100",
        &["--observer", &observer, profiled[0], profiled[1]],
    );
    let (local, _) = run(
        &demo,
        "/pool",
        "300,1100",
        &["--pid", &demo.pid(), profiled[0], profiled[1]],
    );
    let (r, l) = (remote.verdict.clone().unwrap(), local.verdict.unwrap());
    eprintln!(
        "pool: through the observer {} (site {:?}), locally {} (site {:?})",
        r.bottleneck, r.site, l.bottleneck, l.site
    );
    assert_eq!(
        (&r.kind, &r.site),
        (&l.kind, &l.site),
        "through the observer {r:#?}\nlocally {l:#?}"
    );
    if !perf {
        return;
    }
    assert_eq!(r.kind, "pool", "{r:#?}");
    let knee = remote
        .steps
        .iter()
        .find(|s| Some(&s.name) == r.knee_step.as_ref())
        .unwrap();
    // Who was busy on the target's host and its threads, read there over the step's window.
    let threads = knee::observe::threads::Threads::of(knee).expect("threads");
    assert!(
        threads.count >= 7,
        "the demo's pool threads at least: {threads:?}"
    );
    let processes = knee::observe::processes::Processes::of(knee).expect("processes");
    assert!(
        processes
            .top
            .iter()
            .any(|b| b.role.is_some_and(|r| r == "target") && b.pid.to_string() == demo.pid()),
        "{processes:?}"
    );
    let offcpu = knee::flame::offcpu::OffCpu::of(knee).expect("an off-CPU profile");
    assert_eq!(offcpu.observer.as_deref(), Some("app"), "{offcpu:?}");
    assert!(offcpu.switches > 0 && offcpu.waiting_ms > 0.0, "{offcpu:?}");
    let profile = knee::flame::StepProfile::of(knee).expect("a CPU profile");
    assert_eq!(
        (profile.observer.as_deref(), profile.source.as_str()),
        (Some("app"), "perf"),
        "{profile:?}"
    );
    assert!(
        profile.samples > 0 && profile.svg.is_some() && profile.target_cpu_seconds.is_some(),
        "{profile:?}"
    );
}

/// What an observer refuses to profile: no seconds, or more than it allows.
#[test]
fn observer_profiles_are_bounded() {
    let pid = std::process::id().to_string();
    let observed = Observed::start(&["--pid", &pid]);
    let at = observed.authority();
    let (status, body) = get(at, "/profile/cpu", None);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("seconds= is required"), "{body}");
    let (status, body) = get(at, "/profile/offcpu?seconds=600", None);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("at most 30"), "{body}");
}

#[test]
fn a_run_outlives_its_observer_and_records_the_gap() {
    let _serial = serial();
    let demo = Demo::start();
    let mut observed = Observed::start(&["--pid", &demo.pid()]);
    let observer = format!("app={}", observed.url);
    let killer = std::thread::spawn({
        let pid = observed.child.id();
        move || {
            std::thread::sleep(std::time::Duration::from_millis(1500));
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    });
    let (record, stderr) = run(&demo, "/", "100,100,100", &["--observer", &observer]);
    killer.join().unwrap();
    let _ = observed.child.wait();
    assert_eq!(record.steps.len(), 3);
    let seen = &record.observers[0];
    assert!(seen.gaps >= 1 && seen.samples >= 2, "{seen:?}");
    assert_eq!(stderr.matches("stopped answering").count(), 1, "{stderr}");
}

/// An observer over https (a self-signed certificate, as on a staging box): refused by a
/// driver that verifies certificates, read with -k; a key that is not the certificate's is
/// an input error naming the file.
#[test]
fn an_observer_serves_https_with_its_own_certificate() {
    let _serial = serial();
    let dir = TempDir::new("observe-tls");
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let wrong_key = dir.join("wrong.pem");
    std::fs::write(&wrong_key, other.signing_key.serialize_pem()).unwrap();
    let pid = std::process::id().to_string();
    let refused = Command::new(knee_bin())
        .args([
            "observe",
            "--listen",
            "127.0.0.1:0",
            "--pid",
            &pid,
            "--tls-cert",
        ])
        .arg(&cert)
        .arg("--tls-key")
        .arg(&wrong_key)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{said}");
    assert!(
        said.contains("wrong.pem") && said.contains("does not fit"),
        "{said}"
    );

    let demo = Demo::start();
    let (cert_arg, key_arg) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let observed = Observed::start(&[
        "--pid",
        &demo.pid(),
        "--tls-cert",
        cert_arg,
        "--tls-key",
        key_arg,
    ]);
    assert!(observed.url.starts_with("https://"), "{}", observed.url);
    let observer = format!("app={}", observed.url);
    let url = format!("{}/", demo.base);
    let steps = [
        "run",
        "--url",
        &url,
        "--steps",
        "100",
        "--step-duration",
        "800ms",
    ];
    let unverified = Command::new(knee_bin())
        .args(steps)
        .args(["--observer", &observer, "-q", "--out"])
        .arg(dir.join("refused"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&unverified.stderr);
    assert_eq!(unverified.status.code(), Some(2), "{said}");
    assert!(
        said.contains("-k accepts a self-signed certificate"),
        "{said}"
    );
    assert!(
        !dir.join("refused").exists(),
        "a run folder for a run that never began"
    );
    let mut args = steps.to_vec();
    args.extend(["--observer", &observer, "-k", "--sample-every", "200ms"]);
    let (record, _) = knee_child(&args);
    let seen = &record.observers[0];
    assert!(
        seen.url.starts_with("https://") && seen.samples >= 2,
        "{seen:?}"
    );
    assert_eq!(record.target_process.unwrap().found_by, "observer:app");
}

/// The observer reads its host's processes over a window it is asked for: the target's
/// outbound connection (to a listener of its own, here) is a downstream, matched to the
/// process that listens.
#[test]
fn the_observer_reads_who_is_busy_the_targets_threads_and_its_downstreams() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (_server, _) = listener.accept().unwrap();
    let pid = std::process::id();
    let observed = Observed::start(&["--pid", &pid.to_string()]);
    let at = observed.authority();
    // A window begun, then ended: what was read over it.
    let window = |kind: &str| -> String {
        let (status, body) = get(at, &format!("/{kind}/begin"), None);
        assert_eq!(status, 200, "{body}");
        let ticket: serde_json::Value = serde_json::from_str(&body).unwrap();
        let id = ticket["id"].as_u64().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        let (status, body) = get(at, &format!("/{kind}/end?id={id}"), None);
        assert_eq!(status, 200, "{body}");
        // Ended once.
        assert_eq!(get(at, &format!("/{kind}/end?id={id}"), None).0, 404);
        body
    };
    let body = window("processes");
    let processes: knee::observe::processes::Processes = serde_json::from_str(&body).unwrap();
    let peer = format!("127.0.0.1:{port}");
    let downstream = processes.downstreams.iter().find(|d| d.peer == peer);
    assert!(
        downstream.is_some_and(|d| d.pid == Some(pid) && d.connections >= 1),
        "{processes:?}"
    );
    // No generator on the observer's host: knee observe itself is not one.
    assert!(
        !processes.top.is_empty()
            && processes
                .top
                .iter()
                .all(|b| !b.role.is_some_and(|r| r == "generator")),
        "{processes:?}"
    );
    assert_eq!(get(at, "/threads/end?id=99", None).0, 404);
    // CPU per thread of the target (this test binary's threads).
    let body = window("threads");
    let threads: knee::observe::threads::Threads = serde_json::from_str(&body).unwrap();
    assert!(
        threads.count >= 1 && !threads.busiest.is_empty(),
        "{threads:?}"
    );
}

//! The profiling agent (served from this test process), pprof decoding, and flamegraphs
//! from perf. The demo's flamegraphs and `knee compare` are tested with the demo hunts in
//! hunt.rs.

use crate::util::*;
use knee::flame::capture;
use knee::stacks::folded::Folded;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The agent, started once for this test binary on a free port.
fn agent_url() -> String {
    static AGENT: OnceLock<knee::agent::Agent> = OnceLock::new();
    let agent = AGENT.get_or_init(|| knee::agent::start_on("127.0.0.1:0").expect("agent"));
    format!("http://{}{}", agent.addr(), knee::agent::PROFILE_PATH)
}

/// GET `url`: status, headers (lowercased), body.
fn get(url: &str) -> (u16, String, Vec<u8>) {
    let rest = url.strip_prefix("http://").unwrap();
    let (authority, path) = rest.split_at(rest.find('/').unwrap());
    let mut stream = std::net::TcpStream::connect(authority).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n").unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&response[..split]).to_lowercase();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head, response[split + 4..].to_vec())
}

/// The busy function the profile must find, with an inlined leaf of its own.
#[inline(never)]
fn agent_test_hot_loop(stop: &AtomicBool) -> u64 {
    let mut x = 1u64;
    while !stop.load(Ordering::Relaxed) {
        x = std::hint::black_box(agent_test_inlined_leaf(x));
    }
    x
}

#[inline(always)]
fn agent_test_inlined_leaf(mut x: u64) -> u64 {
    let mut i = 0u64;
    while i < 100_000 {
        // Plain operators only: a call, even inlined, would be the leaf.
        x = (x ^ (x >> 7)) | (i & 1);
        i += 1;
    }
    x
}

#[test]
fn the_agent_profiles_a_busy_service_and_refuses_what_it_should() {
    let _serial = serial();
    let url = agent_url();
    let stop = Arc::new(AtomicBool::new(false));
    let busy = {
        let stop = stop.clone();
        std::thread::spawn(move || agent_test_hot_loop(&stop))
    };
    let profile = {
        let url = url.clone();
        std::thread::spawn(move || get(&format!("{url}?seconds=1.5&frequency=100")))
    };
    std::thread::sleep(Duration::from_millis(300));
    let (overlap, _, _) = get(&format!("{url}?seconds=1"));
    assert_eq!(overlap, 409, "one profile at a time");
    let (status, head, body) = profile.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    busy.join().unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));

    // Round trip: the samples the agent says it took are the folded stacks' total.
    let said: u64 = head
        .lines()
        .find_map(|l| l.strip_prefix("x-samples: "))
        .expect("x-samples header")
        .trim()
        .parse()
        .unwrap();
    let decoded = capture::decode(&body).unwrap();
    let folded = Folded::from_pprof(&decoded);
    assert_eq!(folded.total(), said);
    assert!(
        said >= 20,
        "a busy thread for 1.5 s at 100 Hz: {said} samples"
    );
    // The hot function is on the stacks, by its full path (the test binary is built with
    // line tables only, whose DWARF names are bare), with its inlined leaf after it (callers
    // first; an inlined frame keeps the name DWARF gives it).
    let hot: u64 = folded
        .stacks
        .iter()
        .filter(|(stack, _)| {
            stack.ends_with("it::flame::agent_test_hot_loop;agent_test_inlined_leaf")
        })
        .map(|(_, n)| n)
        .sum();
    assert!(
        hot * 2 >= said,
        "most samples end in the inlined leaf under the hot loop: {hot} of {said}\n{}",
        folded.to_text()
    );
    assert_eq!(
        folded.top_self(1)[0].function,
        "agent_test_inlined_leaf",
        "{:?}",
        folded.top_self(5)
    );

    go_tool_pprof_reads_full_paths(&body);

    let (status, _, body) = get(&format!("{url}?seconds=61"));
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("capped at 60"));
    let (status, _, _) = get(&format!("{url}?seconds=1&frequency=100000"));
    assert_eq!(status, 400);
    let (status, _, _) = get(&format!("{url}?seconds=abc"));
    assert_eq!(status, 400);
}

/// `go tool pprof -top` reads the agent's profile and shows the full path (where Go is).
fn go_tool_pprof_reads_full_paths(profile: &[u8]) {
    if !crate::tools::have("go", "the_agent_profiles_a_busy_service (go tool pprof)") {
        return;
    }
    let dir = TempDir::new("pprof-top");
    let path = dir.join("agent.pb.gz");
    std::fs::write(&path, profile).unwrap();
    let top = std::process::Command::new("go")
        .args(["tool", "pprof", "-top"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&top.stdout);
    assert!(
        top.status.success(),
        "{}",
        String::from_utf8_lossy(&top.stderr)
    );
    assert!(text.contains("it::flame::agent_test_hot_loop"), "{text}");
}

/// A hunt against an in-process lock target, profiled by perf through this process's pid.
fn perf_hunt(perf: Option<&str>) -> (std::process::Output, Vec<serde_json::Value>, String) {
    let target = http_target(Http::Lock {
        work: Duration::from_millis(4),
    });
    let out = TempDir::new("perf-hunt");
    let mut command = std::process::Command::new(knee_bin());
    command
        .args([
            "hunt",
            &target.url("/"),
            "-q",
            "--profiler",
            "perf",
            "--pid",
        ])
        .arg(std::process::id().to_string())
        .args(["--max-rate", "400", "--step-duration", "500ms"])
        .args(["--hold-duration", "1s", "--holds", "95", "--out"])
        .arg(out.path());
    if let Some(perf) = perf {
        command.env("KNEE_PERF", perf);
    }
    let output = command.output().unwrap();
    let folded = std::fs::read_to_string(out.join("flame/hold-095.folded")).unwrap_or_default();
    (output, read_steps_jsonl(out.path()), folded)
}

#[test]
fn without_perf_the_run_goes_on_and_says_why_there_is_no_flamegraph() {
    let _serial = serial();
    let (output, steps, _) = perf_hunt(Some("/nonexistent/perf"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("perf not found"), "{stderr}");
    let hold = steps.iter().find(|s| s["name"] == "hold-095").unwrap();
    let error = hold["observed"]["profile"]["error"].as_str().unwrap();
    assert!(error.contains("install linux-perf"), "{error}");
}

/// Only where perf is installed and allowed (this machine has it; a clean CI machine does
/// not, and says so on stderr).
#[test]
fn perf_profiles_a_local_process() {
    let works = std::process::Command::new("perf")
        .args([
            "record",
            "-q",
            "-e",
            "cpu-clock",
            "-o",
            "/tmp/knee-perf-check.data",
            "true",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    if !works {
        crate::tools::missing(
            "perf (installed and allowed)",
            "perf_profiles_a_local_process",
        );
        return;
    }
    let _serial = serial();
    let (output, steps, folded) = perf_hunt(None);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let hold = steps.iter().find(|s| s["name"] == "hold-095").unwrap();
    let profile = &hold["observed"]["profile"];
    assert_eq!(profile["source"], "perf", "{profile}");
    // Samples are counted, not weighted by their period (10 ms of cpu-clock each at 100 Hz):
    // a 1 s profile of at most 2 cores at 100 Hz holds at most ~200 of them. (perf takes
    // few of this in-process target's: 9 to 17 per second of ~0.95 cores spinning, which
    // the profile reports as undersampled; the bound below only asks that it saw some.)
    let samples = profile["samples"].as_u64().unwrap();
    assert!((5..=300).contains(&samples), "{profile}");
    let per_cpu_second = profile["samples_per_cpu_second"].as_f64().unwrap();
    assert!(per_cpu_second <= 150.0, "{profile}");
    // The stacks (DWARF-unwound, so they reach the caller of a leaf in the clock) hold the
    // lock target's work; the top-10 tables may be filled by frames on most stacks.
    let in_section: u64 = folded
        .lines()
        .filter(|l| l.contains("critical_section"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(
        in_section * 2 >= samples,
        "most samples are in the lock target's work: {in_section} of {samples}\n{folded}"
    );
}

/// Go's own net/http/pprof: whole seconds only (anything else is read as its 30 s default)
/// and 100 Hz whatever is asked. knee must not prime it, must ask whole seconds, and must
/// report the rate the profile was actually taken at.
#[test]
fn a_go_service_is_profiled_through_its_own_pprof_endpoint_without_stalling() {
    let test = "a_go_service_is_profiled_through_its_own_pprof_endpoint_without_stalling";
    // Serial before the Go build: `go build` takes both cores for seconds.
    let _serial = serial();
    let Some(go) = crate::tools::GoService::start(&["-cpu", "2ms"], test) else {
        return;
    };
    let out = TempDir::new("go-pprof");
    let started = std::time::Instant::now();
    let output = std::process::Command::new(knee_bin())
        .args(["hunt", &format!("{}/cpu", go.base), "-q", "--pprof"])
        .arg(format!("{}/debug/pprof/profile", go.base))
        .args(["--profile-frequency", "250", "--max-rate", "300"])
        .args(["--step-duration", "500ms", "--hold-duration", "1200ms"])
        .args(["--holds", "80,105", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    // Primed with a fractional profile, Go's endpoint took 30 s before the first step.
    assert!(took < Duration::from_secs(30), "the hunt took {took:?}");
    let steps = read_steps_jsonl(out.path());
    let hold = steps.iter().find(|s| s["name"] == "hold-080").unwrap();
    let profile = &hold["observed"]["profile"];
    assert_eq!(profile["error"], serde_json::Value::Null, "{profile}");
    assert_eq!(
        profile["seconds"], 1.0,
        "whole seconds of the 1.2 s window: {profile}"
    );
    assert_eq!(
        profile["frequency_hz"], 100,
        "Go samples at 100 Hz: {profile}"
    );
    assert_eq!(profile["frequency_asked_hz"], 250, "{profile}");
    // Every sample may share one stack (then no function is left in the inclusive table,
    // which leaves out those on every stack): the self table names the work.
    let functions = format!("{}{}", profile["top_self"], profile["top_inclusive"]);
    let folded = std::fs::read_to_string(out.join("flame/hold-080.folded")).unwrap();
    assert!(folded.contains("main.burn"), "{functions}\n{folded}");
    assert!(profile["samples"].as_u64().unwrap() >= 20, "{profile}");
}

/// `knee run --pprof` profiles each step (it used to take none, silently); a soak profiles
/// one window in many (here the first of three 1 s windows: one per 10 minutes of soak).
#[test]
fn knee_run_profiles_each_step_and_a_soak_on_a_cadence() {
    let _serial = serial();
    let target = http_target(Http::Lock {
        work: Duration::from_millis(2),
    });
    let out = TempDir::new("run-pprof");
    let url = target.url("/");
    let pprof = agent_url();
    let (outcome, record) = knee_run(
        out.path(),
        &[
            "--url",
            &url,
            "--steps",
            "100,200",
            "--step-duration",
            "1s",
            "--warmup",
            "200ms",
            "--pprof",
            &pprof,
            "--no-sample",
        ],
    );
    outcome.unwrap();
    let record = record.unwrap();
    for step in &record.steps {
        let profile = knee::flame::StepProfile::of(step).expect("every step is profiled");
        assert!(
            profile.error.is_none() && profile.samples > 0,
            "{profile:?}"
        );
        assert!(out.join(profile.svg.as_ref().unwrap()).exists());
    }

    let soak_dir = TempDir::new("soak-pprof");
    let profile = soak_dir.join("soak.toml");
    std::fs::write(
        &profile,
        format!(
            "kind = \"soak\"\n[target]\nurl = \"{url}\"\n[load]\nrate = 100\nwarmup = \"200ms\"\n\
             duration = \"3s\"\nwindow = \"1s\"\n[observe]\npprof = \"{pprof}\"\n"
        ),
    )
    .unwrap();
    let (outcome, record) = knee_run(
        &soak_dir.join("run"),
        &[profile.to_str().unwrap(), "--no-sample"],
    );
    outcome.unwrap();
    let windows = record.unwrap().steps;
    assert_eq!(windows.len(), 3);
    let profiled: Vec<&str> = windows
        .iter()
        .filter(|w| knee::flame::StepProfile::of(w).is_some())
        .map(|w| w.name.as_str())
        .collect();
    assert_eq!(profiled, ["window-001"]);
}

/// An https pprof endpoint with a self-signed certificate: refused without -k (the step's
/// profile says why, naming the certificate), fetched with it (this one answers text, so the
/// profile then fails as "not a pprof protobuf": the TLS part worked).
#[test]
fn an_https_pprof_endpoint_with_a_self_signed_certificate_needs_k() {
    let endpoint = text_target("not a profile\n".into(), false, true, None);
    let pprof = endpoint
        .url("/debug/pprof/profile")
        .replacen("http://", "https://", 1);
    let target = http_target(Http::Fast);
    let url = target.url("/");
    let profile_error = |extra: &[&str]| {
        let mut args = vec!["run", "--url", &url, "--rate", "20"];
        args.extend(["--duration", "2s", "--warmup", "0s", "--pprof", &pprof]);
        args.extend(["--offcpu", "off", "--no-sample"]);
        args.extend_from_slice(extra);
        let (record, _) = knee_child(&args);
        let step = &record.steps[0];
        knee::flame::StepProfile::of(step)
            .and_then(|p| p.error.clone())
            .unwrap_or_default()
    };
    let refused = profile_error(&[]);
    assert!(refused.contains("certificate"), "{refused}");
    let fetched = profile_error(&["-k"]);
    assert!(
        fetched.contains("not a pprof protobuf") || fetched.contains("not valid gzip"),
        "{fetched}"
    );
}

/// `--no-sample` looks for no target process, so no profiler has one to miss: the run says
/// nothing about off-CPU profiles (it used to say "no local target process").
#[test]
fn no_sample_says_nothing_about_missing_profiles() {
    let target = http_target(Http::Fast);
    let url = target.url("/");
    let (record, stderr) = knee_child(&[
        "run",
        "--url",
        &url,
        "--rate",
        "20",
        "--duration",
        "300ms",
        "--no-sample",
    ]);
    assert_eq!(record.steps.len(), 1);
    assert!(!stderr.contains("off-CPU"), "{stderr}");
    assert!(!stderr.contains("no local target process"), "{stderr}");
}

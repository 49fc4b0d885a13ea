//! `knee hunt` and `kind = "stress"` / `"sweep"` against targets whose capacity and failure
//! mode are known by construction. Steps are short (≤ 600 ms) to keep the suite quick.

use crate::util::*;
use knee::output::RunRecord;
use std::process::Command;
use std::time::Duration;

const SHORT: [&str; 6] = [
    "--step-duration",
    "600ms",
    "--hold-duration",
    "600ms",
    "--holds",
    "95,120",
];

/// Runs `knee hunt URL` in-process with short steps; returns run.json.
fn hunt(url: &str, extra: &[&str]) -> RunRecord {
    let out = TempDir::new("hunt");
    let out_text = out.path().to_string_lossy().to_string();
    let mut args = vec!["knee", "hunt", url, "-q", "--out", &out_text];
    args.extend_from_slice(&SHORT);
    args.extend_from_slice(extra);
    let outcome = knee::run(args);
    assert!(outcome.is_ok(), "{outcome:?}");
    RunRecord::read(&out.join("run.json")).expect("run.json")
}

fn assert_within(found: f64, truth: f64, share: f64, what: &str) {
    eprintln!("{what}: found {found:.0} req/s, truth {truth:.0} req/s");
    assert!(
        (found - truth).abs() <= truth * share,
        "{what}: found {found:.0} req/s, truth {truth:.0} req/s (±{:.0}%)",
        share * 100.0
    );
}

#[test]
fn hunt_finds_the_capacity_of_a_pool() {
    let _serial = serial();
    // 4 slots x 10 ms = 400 req/s.
    let target = http_target(Http::Pool {
        slots: 4,
        hold: Duration::from_millis(10),
        shed: false,
    });
    let record = hunt(&target.url("/"), &[]);
    let found = record.hunt.as_ref().unwrap();
    assert_within(found.capacity_rps.unwrap(), 400.0, 0.10, "pool capacity");
    assert_eq!(found.ending, "converged");
    // The hold steps ran, and the one past capacity was classified.
    let names: Vec<&str> = record.steps.iter().map(|s| s.name.as_str()).collect();
    assert!(
        names.contains(&"hold-095") && names.contains(&"hold-120") && names.contains(&"recovery"),
        "{names:?}"
    );
    assert!(found.failure_mode.is_some());
    assert!(found.saturation_rps.unwrap() <= 440.0);
}

#[test]
fn hunt_finds_the_capacity_of_a_lock() {
    let _serial = serial();
    // One lock around 2.5 ms of CPU = 400 req/s.
    let target = http_target(Http::Lock {
        work: Duration::from_micros(2500),
    });
    let record = hunt(&target.url("/"), &["--slo", "p99=100ms,errors=1%"]);
    let found = record.hunt.unwrap();
    assert_within(found.capacity_rps.unwrap(), 400.0, 0.10, "lock capacity");
    assert!(!found.slo_default);
}

#[test]
fn a_queue_without_bound_is_named() {
    let _serial = serial();
    let target = http_target(Http::Pool {
        slots: 4,
        hold: Duration::from_millis(10),
        shed: false,
    });
    let record = hunt(&target.url("/"), &["--slo", "p99=50ms"]);
    let found = record.hunt.unwrap();
    assert_eq!(
        found.failure_mode.map(|m| m.as_str()),
        Some("queues_without_bound"),
        "{:?}",
        found.holds
    );
    // The queue the overload left takes time to drain at half the capacity.
    assert!(found.recovery_measured);
}

/// Runs a stress profile with `rates` against `url`; returns run.json.
fn stress(url: &str, rates: &str) -> RunRecord {
    let dir = TempDir::new("stress");
    let profile = dir.join("stress.toml");
    std::fs::write(
        &profile,
        format!(
            "kind = \"stress\"\n[target]\nurl = \"{url}\"\ntimeout = \"2s\"\n[load]\nrates = [{rates}]\n\
             warmup = \"100ms\"\nduration = \"500ms\"\n[slo]\np99 = \"50ms\"\nerrors = \"1%\"\n"
        ),
    )
    .unwrap();
    let out = dir.join("out");
    let outcome = knee::run([
        "knee",
        "run",
        "-q",
        "--out",
        out.to_str().unwrap(),
        profile.to_str().unwrap(),
    ]);
    assert!(outcome.is_ok(), "{outcome:?}");
    RunRecord::read(&out.join("run.json")).unwrap()
}

#[test]
fn a_target_that_rejects_above_its_capacity_sheds_gracefully() {
    let _serial = serial();
    // 8 slots x 10 ms: 800 req/s; at 300 req/s about 3 are busy, so nothing is shed yet.
    let target = http_target(Http::Pool {
        slots: 8,
        hold: Duration::from_millis(10),
        shed: true,
    });
    let record = stress(&target.url("/"), "150, 300, 1300");
    let found = record.stress.unwrap();
    assert_eq!(found.capacity_rps, Some(300.0));
    assert_eq!(
        found.failure_mode.map(|m| m.as_str()),
        Some("sheds_gracefully"),
        "{:?}",
        record.steps.last()
    );
    let overload = record.steps.iter().find(|s| s.name == "rate-1300").unwrap();
    assert!(overload.error_classes.get("http_5xx").copied().unwrap_or(0) > 0);
    // A shedding service recovers at once.
    assert_eq!(
        found.recovery_s.map(|s| s < 0.6),
        Some(true),
        "{:?}",
        found.recovery_s
    );
}

#[test]
fn a_target_that_exits_mid_step_crashes() {
    let _serial = serial();
    // Dies 0.9 s after its first request: in the middle of the second step.
    let target = http_target(Http::DiesAfter(Duration::from_millis(900)));
    let record = stress(&target.url("/"), "100, 200");
    let found = record.stress.unwrap();
    assert_eq!(
        found.failure_mode.map(|m| m.as_str()),
        Some("crashes"),
        "{:?}",
        record.steps
    );
    assert!(
        found.recovery_measured && found.recovery_s.is_none(),
        "a dead target does not recover"
    );
}

#[test]
fn a_sweep_fits_the_universal_scalability_law() {
    let _serial = serial();
    // 4 slots x 5 ms: throughput grows as N / 5 ms up to 4, then stays at 800/s.
    let target = http_target(Http::Pool {
        slots: 4,
        hold: Duration::from_millis(5),
        shed: false,
    });
    let out = TempDir::new("sweep");
    let dir = TempDir::new("sweep-profile");
    let profile = dir.join("sweep.toml");
    std::fs::write(
        &profile,
        format!(
            "kind = \"sweep\"\n[target]\nurl = \"{}\"\n[load]\nconcurrency = 16\nwarmup = \"100ms\"\nduration = \"400ms\"\n",
            target.url("/")
        ),
    )
    .unwrap();
    let (outcome, record) = knee_run(out.path(), &[profile.to_str().unwrap()]);
    assert!(outcome.is_ok());
    let record = record.unwrap();
    let levels: Vec<u32> = record.steps.iter().filter_map(|s| s.concurrency).collect();
    assert_eq!(levels, vec![1, 2, 4, 8, 16]);
    let fit = record.usl.expect("a USL fit");
    assert!(fit.r_squared > 0.8, "{fit:?}");
    assert!(
        (150.0..=260.0).contains(&fit.lambda),
        "one client does about 1/5ms: {fit:?}"
    );
    assert!(fit.sigma > 0.0 && fit.sigma < 1.0, "{fit:?}");
}

/// `knee hunt --demo` with the given fixes, as a child process (the demo is this binary).
fn hunt_demo(fix: Option<&str>, extra: &[&str]) -> (TempDir, RunRecord) {
    let out = TempDir::new("demo-hunt");
    let mut command = Command::new(knee_bin());
    command
        .args(["hunt", "--demo", "-q", "--out"])
        .arg(out.path())
        .args(SHORT)
        .args(extra);
    if let Some(fix) = fix {
        command.args(["--demo-fix", fix]);
    }
    let output = command.output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let record = RunRecord::read(&out.join("run.json")).unwrap();
    assert_knee_curve_printed(&String::from_utf8_lossy(&output.stdout), &record);
    (out, record)
}

/// The end of a hunt shows the knee curve in the terminal, above the verdict block, and
/// report.html has the timeline, the knee chart with the capacity marked, and the per-step
/// charts.
fn assert_knee_curve_printed(stdout: &str, record: &RunRecord) {
    let chart = stdout
        .find("p99 (ms) against offered rate (req/s)")
        .unwrap_or_else(|| panic!("no knee curve in the terminal: {stdout}"));
    let verdict = stdout.find("knee verdict").unwrap_or(usize::MAX);
    assert!(
        chart < verdict,
        "the curve comes above the verdict: {stdout}"
    );
    let curve = &stdout[chart..];
    assert!(
        curve.contains("good throughput (ok req/s) against offered rate"),
        "{stdout}"
    );
    assert!(
        curve
            .chars()
            .any(|c| ('\u{2801}'..='\u{28ff}').contains(&c)),
        "braille dots: {stdout}"
    );
    let capacity = record.hunt.as_ref().unwrap().capacity_rps.unwrap();
    assert!(
        curve.contains(&format!("capacity {capacity:.0}/s")),
        "{stdout}"
    );
}

/// The demo profiles itself: one flamegraph per hold step; `top` is the top self function
/// at the 95 % hold.
fn assert_flamegraphs(dir: &TempDir, record: &RunRecord, top: &str) {
    let holds: Vec<_> = record
        .steps
        .iter()
        .filter(|s| s.phase == knee::plan::Phase::Hold)
        .collect();
    assert_eq!(holds.len(), 2, "--holds 95,120");
    for step in &holds {
        let profile = knee::flame::StepProfile::of(step).expect("a profile per hold step");
        assert_eq!(profile.error, None, "{}", step.name);
        let svg = std::fs::read_to_string(dir.join(profile.svg.as_ref().unwrap())).unwrap();
        assert!(
            svg.contains("<svg") && svg.contains(&step.name),
            "{}",
            step.name
        );
        assert!(dir.join(&format!("flame/{}.pb.gz", step.name)).exists());
        assert!(profile.samples > 0, "{profile:?}");
        if step.name == "hold-095" {
            assert!(
                profile.top_self[0].function.ends_with(top),
                "top self at hold-095: {:?}",
                profile.top_self
            );
        }
    }
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(
        html.contains("data:image/svg+xml;base64,"),
        "flamegraphs embedded"
    );
    let markdown = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(markdown.contains("(flame/hold-095.svg)"), "{markdown}");
}

#[test]
fn the_demo_knee_moves_when_the_lock_is_fixed() {
    let _serial = serial();
    // The stacks name lock and pool (off-CPU profiles need perf).
    if !crate::tools::have("perf", "the_demo_knee_moves_when_the_lock_is_fixed") {
        return;
    }
    let config = knee::plan::DemoConfig::default();
    let lock_truth = knee::demo::bottleneck(&config);
    assert_eq!(lock_truth.name, "lock");
    let (first_dir, first) = hunt_demo(None, &[]);
    let before = first.hunt.clone().unwrap().capacity_rps.unwrap();
    // 15 %, not 10 % as for the in-process targets: the demo is a second process sharing the
    // two cores with knee, and each request also pays the lock's handoff (waking the next
    // waiter), 0.1-0.3 ms on top of the 2 ms held: found 428-480 req/s of 500 here.
    assert_within(before, lock_truth.capacity_rps, 0.15, "demo (lock)");
    let verdict = first.verdict.clone().unwrap();
    assert_eq!(verdict.kind, "lock", "{verdict:#?}");
    assert_flamegraphs(&first_dir, &first, "critical_section");

    let fixed = knee::plan::DemoConfig {
        fixes: knee::plan::Fixes::parse("lock").unwrap(),
        ..config
    };
    let next = knee::demo::bottleneck(&fixed);
    assert_eq!(next.name, "pool");
    // With no /metrics: the pool is named from the stacks alone.
    let (second_dir, second) = hunt_demo(Some("lock"), &["--demo-no-metrics"]);
    let after = second.hunt.clone().unwrap().capacity_rps.unwrap();
    let verdict = second.verdict.clone().unwrap();
    assert_eq!(
        verdict.kind, "pool",
        "after --fix lock the pool is next: {verdict:#?}"
    );
    assert_eq!(
        verdict.site.as_deref(),
        Some("knee::demo::stages::Chain::checkout"),
        "{verdict:#?}"
    );
    assert!(
        !verdict.evidence.iter().any(|e| e.contains("knee_demo_")),
        "no gauge was scraped: {verdict:#?}"
    );
    let expected = next.capacity_rps / lock_truth.capacity_rps;
    let moved = after / before;
    assert!(
        (moved - expected).abs() <= expected * 0.15,
        "the knee moved {moved:.2}x ({before:.0} -> {after:.0} req/s), expected {expected:.2}x"
    );
    compare_the_demo_runs(&first_dir, &second_dir);
}

/// `knee compare` on the demo before and after `--fix lock`: the knee moves up, the verdict
/// changes, a differential flamegraph is drawn; reversed, `--fail-if-slower` fails.
fn compare_the_demo_runs(before: &TempDir, after: &TempDir) {
    let out = TempDir::new("compare");
    let run = |a: &TempDir, b: &TempDir, extra: &[&str]| {
        let output = Command::new(knee_bin())
            .arg("compare")
            .arg(a.path())
            .arg(b.path())
            .arg("--out")
            .arg(out.path())
            .args(extra)
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let (code, stdout) = run(before, after, &["--fail-if-slower", "5%"]);
    assert_eq!(code, Some(0), "{stdout}");
    let capacity = stdout.lines().find(|l| l.contains("capacity")).unwrap();
    assert!(capacity.contains("(+"), "the knee moved up: {stdout}");
    let was = stdout.lines().find(|l| l.contains("was:")).unwrap();
    let now = stdout.lines().find(|l| l.contains("now:")).unwrap();
    assert!(
        was.contains("lock in knee::demo::stages::Chain::locked_stage"),
        "{stdout}"
    );
    assert!(
        now.contains("pool in knee::demo::stages::Chain::checkout"),
        "{stdout}"
    );
    let markdown = std::fs::read_to_string(out.join("compare.md")).unwrap();
    assert!(
        markdown.contains("[diff-hold-095.svg](diff-hold-095.svg)"),
        "{markdown}"
    );
    assert!(
        markdown.contains("[diff-offcpu-hold-095.svg](diff-offcpu-hold-095.svg)"),
        "the off-CPU profiles are compared too: {markdown}"
    );
    let diff = std::fs::read_to_string(out.join("diff-hold-095.svg")).unwrap();
    assert!(diff.contains("<svg"));
    let html = std::fs::read_to_string(out.join("compare.html")).unwrap();
    assert!(html.matches("<svg").count() >= 2, "overlaid charts");
    let (code, stdout) = run(after, before, &["--fail-if-slower", "5%"]);
    assert_eq!(code, Some(1), "reversed, the capacity fell: {stdout}");
}

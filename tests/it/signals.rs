//! Ctrl-C: the current step ends as partial, everything is written, exit code 130.

use crate::util::*;
use knee::output::RunRecord;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn sigint_leaves_a_partial_run_and_exits_130() {
    let _serial = serial();
    let target = http_target(Http::Fast);
    let out = TempDir::new("sigint");
    let run_dir = out.join("run");
    let child = Command::new(knee_bin())
        .args([
            "run",
            "-q",
            "--url",
            &target.url("/"),
            "--steps",
            "100,100,100",
        ])
        .args(["--step-duration", "1s", "--warmup", "0s", "--out"])
        .arg(&run_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the first step is on disk, then interrupt the second.
    let deadline = Instant::now() + Duration::from_secs(20);
    while read_steps_jsonl(&run_dir).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(400));
    // SAFETY: sending SIGINT to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let lines = read_steps_jsonl(&run_dir);
    assert_eq!(lines.len(), 2, "the finished step and the partial one");
    assert_eq!(lines[1]["partial"], true);
    let record = RunRecord::read(&run_dir.join("run.json")).expect("valid run.json");
    assert!(record.interrupted);
    assert_eq!(record.steps.len(), 2);
    let partial = &record.steps[1];
    assert!(partial.partial);
    assert!(
        partial.duration_s > 0.2 && partial.duration_s < 0.9,
        "{}",
        partial.duration_s
    );
    assert!(
        partial.requests > 20,
        "what was measured before Ctrl-C is kept"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("interrupted"),
        "the summary is printed: {stdout}"
    );
}

/// Starts `knee ARGS -q --out DIR` as a child, waits until steps.jsonl holds a line for which
/// `enough` is true, and kills it with SIGKILL: nothing of knee's own ends the run.
fn kill_when(
    run_dir: &std::path::Path,
    args: &[&str],
    enough: impl Fn(&[serde_json::Value]) -> bool,
) {
    let mut child = Command::new(knee_bin())
        .args(args)
        .arg("-q")
        .arg("--out")
        .arg(run_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !enough(&read_steps_jsonl(run_dir)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL),
        "the run ended before it was killed: {status:?}"
    );
    assert!(enough(&read_steps_jsonl(run_dir)), "it never got that far");
    assert!(
        !run_dir.join("run.json").exists(),
        "a killed run writes no run.json"
    );
}

/// `knee report FOLDER` on a killed run's folder: exit 0, and what it said on stderr.
fn report(run_dir: &std::path::Path) -> String {
    let output = Command::new(knee_bin())
        .arg("report")
        .arg(run_dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    stderr
}

#[test]
fn a_run_killed_after_two_steps_keeps_its_report() {
    let _serial = serial();
    let target = http_target(Http::Fast);
    let out = TempDir::new("sigkill");
    let url = target.url("/");
    let args = [
        "run",
        "--url",
        url.as_str(),
        "--steps",
        "100,200,300,400",
        "--step-duration",
        "1s",
    ];
    let run_dir = out.join("run");
    // Each step is a chain of its own: killed right after the second step's line, the run
    // may still be between steps (steps.running names rate-200, finished). Wait until the
    // third has begun, so one step is lost.
    let third_running = |steps: &[serde_json::Value]| {
        steps.len() >= 2
            && std::fs::read_to_string(run_dir.join("steps.running"))
                .is_ok_and(|names| names.contains("rate-300"))
    };
    kill_when(&run_dir, &args, third_running);
    let stderr = report(&run_dir);
    assert!(
        stderr.contains("rebuilt it from the steps it finished (2)"),
        "{stderr}"
    );
    let record = RunRecord::read(&run_dir.join("run.json")).expect("a rebuilt run.json");
    assert_eq!(record.steps.len(), 2);
    assert!(record.interrupted);
    assert_eq!(record.ended, Some(knee::model::run::Ended::Killed));
    assert!(
        record
            .notes
            .iter()
            .any(|n| n.contains("rate-300") && n.contains("lost")),
        "{:?}",
        record.notes
    );
    assert_eq!(record.steps[1].offered_rps, Some(200.0));
    for report in ["report.md", "report.html"] {
        let text = std::fs::read_to_string(run_dir.join(report)).unwrap();
        assert!(text.contains("rate-200"), "{report}");
    }
    assert!(
        !run_dir.join("run.start.json").exists(),
        "the folder is whole again"
    );

    // Killed again, and the last line cut in half as a kill in the middle of the write
    // leaves it: that step is dropped, said in one line, never a panic.
    let cut_dir = out.join("cut");
    kill_when(&cut_dir, &args, |steps| steps.len() >= 2);
    let steps = cut_dir.join("steps.jsonl");
    let text = std::fs::read_to_string(&steps).unwrap();
    let last_start = text.trim_end().rfind('\n').unwrap() + 1;
    let cut = last_start + (text.len() - last_start) / 2;
    std::fs::write(&steps, &text[..cut]).unwrap();
    let stderr = report(&cut_dir);
    assert!(
        stderr.contains("steps.jsonl:2: the last line is not a whole step"),
        "{stderr}"
    );
    let record = RunRecord::read(&cut_dir.join("run.json")).expect("a rebuilt run.json");
    assert_eq!(record.steps.len(), 1);
    assert!(cut_dir.join("report.html").exists());
}

#[test]
fn a_hunt_killed_in_its_holds_still_gives_its_capacity() {
    let _serial = serial();
    // One lock around 2 ms of work: 500 req/s by construction.
    let target = http_target(Http::Lock {
        work: Duration::from_millis(2),
    });
    let out = TempDir::new("sigkill-hunt");
    let run_dir = out.join("hunt");
    let url = target.url("/");
    kill_when(
        &run_dir,
        &[
            "hunt",
            url.as_str(),
            "--step-duration",
            "600ms",
            "--hold-duration",
            "600ms",
            "--holds",
            "50,95,120",
            "--profiler",
            "none",
            "--offcpu",
            "off",
        ],
        |steps| steps.iter().any(|s| s["name"] == "hold-095"),
    );
    report(&run_dir);
    let record = RunRecord::read(&run_dir.join("run.json")).expect("a rebuilt run.json");
    let hunt = record.hunt.as_ref().expect("the hunt's analysis");
    let capacity = hunt.capacity_rps.expect("the search had finished");
    assert!(
        (425.0..=575.0).contains(&capacity),
        "capacity {capacity} (500 by construction)"
    );
    assert!(record.interrupted);
    assert!(
        hunt.ending == "converged" || hunt.ending == "converged_at_rounding",
        "the search had finished: {:?}",
        hunt.ending
    );
    assert!(
        hunt.holds.iter().any(|h| h.step == "hold-095"),
        "{:?}",
        hunt.holds
    );
    assert!(record.verdict.is_some());
}

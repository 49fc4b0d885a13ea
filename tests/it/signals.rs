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

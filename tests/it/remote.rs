//! A target on another host, stood in for by `--remote-target` on loopback: nothing is
//! discovered locally, this machine is sampled as the generator's host only, and the
//! target's host and process figures come from the exporters people already run (a real
//! node_exporter, and the Go client library's process_* metrics of a real Go service).

use crate::tools::{GoService, NodeExporter};
use crate::util::*;
use knee::analyze::mean;
use knee::output::RunRecord;
use std::process::Command;

/// `knee run` of /cpu at 300 and 1100 req/s, 1 s warm-up and 2 s counted per step (the Go
/// service burns 2 ms a request: about 950 req/s on 2 cores) with `--remote-target` and
/// `extra`; run.json and the folder.
fn remote_run(go: &GoService, extra: &[String]) -> (RunRecord, TempDir) {
    let out = TempDir::new("remote");
    let output = Command::new(knee_bin())
        .args([
            "run",
            "--url",
            &format!("{}/cpu", go.base),
            "--steps",
            "300,1100",
        ])
        .args([
            "--step-duration",
            "2s",
            "--warmup",
            "1s",
            "--sample-every",
            "200ms",
        ])
        .args([
            "--slo",
            "p99=60ms",
            "--offcpu",
            "off",
            "--remote-target",
            "-q",
            "--out",
        ])
        .arg(out.path())
        .args(extra)
        .output()
        .unwrap();
    assert!(
        matches!(output.status.code(), Some(0) | Some(1)),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    (RunRecord::read(&out.join("run.json")).unwrap(), out)
}

/// The figures come from the exporters, say so, and a CPU-bound target is called CPU-bound
/// from them. An overloaded service answers its own /metrics late, later and later as its
/// queue grows: its counters are timed at the middle of each scrape's round trip (timed by
/// the answer they read 0.84-1.57 cores for 1.76 and the kind varied from run to run).
#[test]
fn exporters_give_a_remote_target_its_host_and_process_figures() {
    let test = "exporters_give_a_remote_target_its_host_and_process_figures";
    let _serial = serial();
    let (Some(node), Some(go)) = (
        NodeExporter::start(test),
        GoService::start(&["-cpu", "2ms"], test),
    ) else {
        return;
    };
    let metrics = format!("{}/metrics", go.base);
    let (record, _out) = remote_run(
        &go,
        &[
            "--metrics".into(),
            node.metrics.clone(),
            "--metrics".into(),
            metrics.clone(),
        ],
    );
    assert!(
        record.target_process.is_none(),
        "nothing was discovered locally"
    );
    let (below, knee) = (&record.steps[0], &record.steps[1]);
    let cpu_below = mean(below, "target.cpu_cores").expect("process_cpu_seconds_total");
    assert!(
        (0.3..1.2).contains(&cpu_below),
        "300 req/s x 2 ms: {cpu_below}"
    );
    let cpu_knee = mean(knee, "target.cpu_cores").expect("some scrape answered at the knee");
    assert!(
        cpu_knee >= 1.5 * cpu_below,
        "the target's CPU grew with the load: {cpu_below} -> {cpu_knee}"
    );
    assert!(mean(knee, "target.rss_mb").unwrap() > 1.0);
    assert!(mean(knee, "target.fds").unwrap() >= 3.0);
    assert_eq!(
        mean(knee, "host.cores"),
        Some(cores()),
        "from node_exporter"
    );
    assert!(
        mean(knee, "host.cpu_cores").unwrap() >= 1.6,
        "node_exporter saw the box saturated"
    );
    assert!(
        mean(knee, "generator_host.cpu_cores").is_some(),
        "this machine, as the generator's"
    );
    let sources = serde_json::to_value(
        &below
            .observed
            .as_ref()
            .unwrap()
            .samplers
            .as_ref()
            .unwrap()
            .sources,
    )
    .unwrap();
    assert_eq!(
        sources["host"],
        format!("{} (node_exporter)", node.metrics),
        "{sources}"
    );
    assert_eq!(
        sources["target"],
        format!("{metrics} (process_* metrics)"),
        "{sources}"
    );
    // Any line of the verdict about the target's CPU says where it was read.
    let verdict = record.verdict.unwrap();
    assert_eq!(verdict.kind, "cpu_bound", "{verdict:#?}");
    for line in verdict
        .evidence
        .iter()
        .filter(|e| e.contains("the target used"))
    {
        assert!(line.contains(&metrics), "{line}");
    }
}

#[test]
fn a_remote_target_without_exporters_is_not_judged_from_this_machine() {
    let test = "a_remote_target_without_exporters_is_not_judged_from_this_machine";
    let _serial = serial();
    let Some(go) = GoService::start(&["-cpu", "2ms"], test) else {
        return;
    };
    let (record, out) = remote_run(&go, &[]);
    assert!(
        record.target_process.is_none(),
        "the port's owner is not looked up"
    );
    let verdict = record.verdict.clone().unwrap();
    assert_eq!(verdict.kind, "unclear", "{verdict:#?}");
    assert!(
        verdict.bottleneck.contains("host is not observed"),
        "{verdict:#?}"
    );
    let samples = std::fs::read_to_string(out.join("samples.jsonl")).unwrap();
    assert!(
        samples.contains("\"generator_host.cpu_cores\""),
        "this host, as the generator's"
    );
    assert!(
        !samples.contains("\"host.cpu_cores\""),
        "no host series claims the target's host"
    );
}

#[test]
fn a_remote_target_cannot_be_named_by_a_local_pid() {
    let out = TempDir::new("remote-pid");
    let (outcome, _) = knee_run(
        out.path(),
        &[
            "--url",
            "http://127.0.0.1:9/",
            "--remote-target",
            "--pid",
            "1",
        ],
    );
    let error = outcome.unwrap_err();
    assert_eq!(error.exit_code(), 2, "{error}");
}

fn cores() -> f64 {
    std::thread::available_parallelism().map_or(1, |n| n.get()) as f64
}

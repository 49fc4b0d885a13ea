//! Replicas on the observers' hosts: `knee observe` watching several processes
//! (`--process-name`, `--pid` twice), and a service spread over two observers, hunted through
//! both. Loopback stands in for the hosts: each observer sees only the processes it was
//! given, as it would on a host of its own.

use crate::observer::{get, Observed};
use crate::replicas::PreFork;
use crate::tools::have;
use crate::util::{knee_bin, knee_child_in, serial, TempDir};
use crate::waits::HUNT;
use std::process::Command;

#[test]
fn an_observer_watches_every_process_of_a_name_and_answers_for_each() {
    let server = PreFork::start(2);
    let observer = Observed::start(&["--process-name", &server.name]);
    let (status, body) = get(observer.authority(), "/describe", None);
    assert_eq!(status, 200, "{body}");
    let described: serde_json::Value = serde_json::from_str(&body).unwrap();
    let target = &described["target"];
    let pids: Vec<u64> = target["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["pid"].as_u64().unwrap())
        .collect();
    let workers: Vec<u64> = server.workers.iter().map(|&p| u64::from(p)).collect();
    assert_eq!(pids, workers, "{body}");
    assert_eq!(target["found_by"], "process-name");
    // Each replica's threads by its number; a number it does not have is refused.
    let (status, body) = get(observer.authority(), "/threads/begin?replica=2", None);
    assert_eq!(status, 200, "{body}");
    let (status, body) = get(observer.authority(), "/threads/begin?replica=3", None);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("from 1 to 2"), "{body}");
    // Its samples carry each replica's series and their sum.
    std::thread::sleep(std::time::Duration::from_millis(700));
    let (_, body) = get(observer.authority(), "/samples", None);
    for key in ["replica1.rss_mb", "replica2.rss_mb", "target.rss_mb"] {
        assert!(body.contains(key), "{key}: {body}");
    }
    // No process of the name: one line, exit 2.
    let output = Command::new(knee_bin())
        .args(["observe", "--listen", "127.0.0.1:0", "--process-name"])
        .arg("no-such-proc-y")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no process named 'no-such-proc-y'"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[test]
fn a_service_spread_over_two_observers_is_judged_as_one_of_three_replicas() {
    let _serial = serial();
    let test = "a_service_spread_over_two_observers_is_judged_as_one_of_three_replicas";
    if !have("perf", test) {
        return;
    }
    // Three workers of 200 req/s each: one watched by observer a, two by observer b.
    let server = PreFork::start(3);
    let w: Vec<String> = server.workers.iter().map(u32::to_string).collect();
    let a = Observed::start(&["--pid", &w[0]]);
    let b = Observed::start(&["--pid", &w[1], "--pid", &w[2]]);
    let out = TempDir::new("replicas-remote");
    let (observer_a, observer_b) = (format!("a={}", a.url), format!("b={}", b.url));
    let mut args = vec![
        "hunt",
        server.url.as_str(),
        "--observer",
        observer_a.as_str(),
        "--observer",
        observer_b.as_str(),
        // Three locks queue at 80 % of their 600 req/s: a generous SLO keeps a search
        // step's spike from settling the hunt (and its profiled holds) well below.
        "--slo",
        "p99=250ms",
    ];
    args.extend(HUNT);
    let (record, stderr) = knee_child_in(&out, &args);
    let target = record.target_process.as_ref().unwrap();
    assert_eq!(target.found_by, "observer:a", "{stderr}");
    let watched: Vec<(u32, Option<&str>)> = target
        .replicas
        .iter()
        .map(|r| (r.pid, r.observer.as_deref()))
        .collect();
    let w = &server.workers;
    assert_eq!(
        watched,
        vec![(w[0], Some("a")), (w[1], Some("b")), (w[2], Some("b"))],
        "{stderr}"
    );
    let capacity = record.hunt.as_ref().and_then(|h| h.capacity_rps).unwrap();
    let verdict = record.verdict.clone().unwrap();
    eprintln!(
        "capacity {capacity}: {} {:#?}",
        verdict.bottleneck, verdict.evidence
    );
    assert!((380.0..=720.0).contains(&capacity), "capacity {capacity}");
    assert_eq!(verdict.kind.to_string(), "lock", "{verdict:#?}");
    assert_eq!(verdict.site.as_deref(), Some("wait_targets::ledger_append"));
    assert!(
        verdict.bottleneck.contains(" of 3 replicas)"),
        "{verdict:#?}"
    );
    let named = verdict
        .evidence
        .iter()
        .filter(|e| e.starts_with("replica ") && e.contains("ledger_append"))
        .count();
    assert!(named >= 2, "{verdict:#?}");
    assert!(
        verdict
            .evidence
            .iter()
            .any(|e| e.starts_with(&format!("replica 3 (pid {}, ", w[2])) && e.contains(" on b)")),
        "{verdict:#?}"
    );
    // The hosts' series apart, the replicas numbered across them, the service their sum.
    let observed = crate::util::knee_step(&record).observed.as_ref().unwrap();
    let series = &observed.samplers.as_ref().unwrap().series;
    let mean = |key: &str| series.get(key).map(|s| s.mean);
    let rss: Vec<f64> = (1..=3)
        .map(|n| mean(&format!("replica{n}.rss_mb")).unwrap_or_else(|| panic!("{series:?}")))
        .collect();
    let total = mean("target.rss_mb").unwrap();
    assert!((total - rss.iter().sum::<f64>()).abs() < 0.01, "{series:?}");
    assert!(
        series.keys().any(|k| k.starts_with("b.host.")),
        "{series:?}"
    );
    assert!(series.contains_key("host.cores"), "{series:?}");
    // Each replica's off-CPU view came from its own observer; the service's is their sum.
    let replicas = observed.replicas.as_ref().unwrap();
    assert_eq!(replicas.len(), 3);
    for replica in replicas {
        let offcpu = replica.observed.offcpu.as_ref().unwrap();
        let expected = if replica.index == 1 { "a" } else { "b" };
        assert_eq!(offcpu.observer.as_deref(), Some(expected), "{offcpu:?}");
    }
    let service = observed.offcpu.as_ref().unwrap();
    assert_eq!(service.observer.as_deref(), Some("a, b"));
    // report.html shows each replica's views.
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    let section = html.split("<h2>Replicas</h2>").nth(1).unwrap_or_default();
    assert!(
        section.contains("replica 3 (pid") && section.contains("data:image/svg+xml;base64,"),
        "{}",
        &section[..section.len().min(2000)]
    );
}

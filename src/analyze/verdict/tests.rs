//! One test per signal, each with a constructed step pair (the step below the knee, which
//! held, and the knee step, which did not), and tests of the ranking.

use super::*;
use crate::model::step::testing::step;

/// A hold pair on a 2-core host: below the knee at 475 req/s, the knee at 525.
pub(super) fn pair() -> (StepResult, StepResult) {
    let below = step("hold-095", Phase::Hold, 475.0, 475.0, 12.0).with("host.cores", 2.0);
    let knee = step("hold-105", Phase::Hold, 525.0, 480.0, 900.0)
        .failing()
        .with("host.cores", 2.0);
    (below, knee)
}

pub(super) fn judge(below: StepResult, knee: StepResult) -> Verdict {
    verdict(&[below, knee], Some(475.0), 0.01)
}

#[test]
fn errors_above_the_slo_name_the_top_class() {
    let (below, knee) = pair();
    let knee = knee
        .with_errors("connection_reset", 90)
        .with_errors("http_5xx", 10)
        .with("target.cpu_cores", 0.3);
    let v = judge(below, knee);
    assert_eq!(v.kind, "errors", "{v:#?}");
    assert_eq!(v.symptom.map(|c| c.as_str()), Some("connection_reset"));
    assert!(v.bottleneck.contains("connection_reset"), "{v:#?}");
    assert!(v
        .evidence
        .iter()
        .any(|e| e.contains("most as connection_reset (90)")));
}

/// Errors and a saturated resource: the resource is the cause, the errors its symptom.
#[test]
fn errors_are_named_beside_a_saturated_resource() {
    let (below, knee) = pair();
    let knee = knee
        .with_errors("connection_reset", 100)
        .with("target.cpu_cores", 1.95);
    let v = judge(below, knee);
    assert_eq!(v.kind, "cpu_bound", "{v:#?}");
    assert_eq!(v.symptom.map(|c| c.as_str()), Some("connection_reset"));
    assert_eq!(
        v.bottleneck,
        "CPU-bound (target), with failing requests (connection_reset)"
    );
    assert_eq!(v.confidence, "high");
}

/// One core busy is a cause worth naming beside the errors (a single thread, a GIL).
#[test]
fn errors_beside_one_busy_core() {
    let (below, knee) = pair();
    let v = judge(
        below,
        knee.with_errors("connection_reset", 100)
            .with("target.cpu_cores", 0.98),
    );
    assert_eq!(v.kind, "serialized", "{v:#?}");
    assert_eq!(v.symptom.map(|c| c.as_str()), Some("connection_reset"));
    // Too little CPU to name a cause: the errors are the verdict.
    let (below, knee) = pair();
    let v = judge(
        below,
        knee.with_errors("connection_reset", 100)
            .with("target.cpu_cores", 0.1),
    );
    assert_eq!(v.kind, "errors", "{v:#?}");
}

#[test]
fn memory_pressure_from_swap_the_cgroup_limit_or_an_rss_jump() {
    let cases = [
        (
            vec![("host.swap_used_mb", 0.0)],
            vec![("host.swap_used_mb", 120.0)],
        ),
        (
            vec![],
            vec![
                ("host.cgroup_memory_used_mb", 950.0),
                ("host.cgroup_memory_limit_mb", 1000.0),
            ],
        ),
        (
            vec![("target.rss_mb", 100.0)],
            vec![("target.rss_mb", 190.0)],
        ),
    ];
    for (below_series, knee_series) in cases {
        let (mut below, mut knee) = pair();
        for (k, v) in &below_series {
            below = below.with(k, *v);
        }
        for (k, v) in &knee_series {
            knee = knee.with(k, *v);
        }
        knee = knee.with("target.cpu_cores", 1.95);
        let v = judge(below, knee);
        assert_eq!(v.kind, "memory_pressure", "{knee_series:?}: {v:#?}");
        assert_eq!(v.confidence, "high");
    }
    // A small RSS rise is not pressure.
    let (below, knee) = pair();
    let v = judge(
        below.with("target.rss_mb", 100.0),
        knee.with("target.rss_mb", 120.0)
            .with("target.cpu_cores", 0.2),
    );
    assert_ne!(v.kind, "memory_pressure", "{v:#?}");
}

#[test]
fn cpu_at_ninety_percent_of_the_cores_is_cpu_bound_with_high_confidence() {
    let (below, knee) = pair();
    let v = judge(
        below.with("target.cpu_cores", 1.7),
        knee.with("target.cpu_cores", 1.85)
            .with("host.run_queue", 4.0),
    );
    assert_eq!(
        (v.kind.as_str(), v.confidence.as_str()),
        ("cpu_bound", "high")
    );
    assert!(v
        .evidence
        .iter()
        .any(|e| e == "the target used 1.85 of 2 cores (below the knee: 1.70)"));
    let (below, knee) = pair();
    let v = judge(below, knee.with("target.cpu_cores", 1.75));
    assert_eq!(
        (v.kind.as_str(), v.confidence.as_str()),
        ("cpu_bound", "medium")
    );
}

#[test]
fn a_growing_queue_gauge_says_something_queues_but_not_what() {
    for name in ["db_pool_waiting", "app_lock_waiters", "work_queue_length"] {
        let key = format!("metrics.{name}");
        let (below, knee) = pair();
        let v = judge(
            below.with(&key, 0.2),
            knee.with(&key, 40.0).with("target.cpu_cores", 1.75),
        );
        assert_eq!(
            v.kind, "waiting",
            "{name}: the name decides nothing: {v:#?}"
        );
        assert_eq!(v.confidence, "high", "with the target's CPU known");
        assert!(v.bottleneck.contains(name));
    }
    // Without a target process the gauge still speaks, at medium confidence.
    let (below, knee) = pair();
    let v = judge(
        below.with("metrics.db_pool_waiting", 0.0),
        knee.with("metrics.db_pool_waiting", 30.0),
    );
    assert_eq!(
        (v.kind.as_str(), v.confidence.as_str()),
        ("waiting", "medium")
    );
    // A gauge that does not double is no signal.
    let (below, knee) = pair();
    let v = judge(
        below.with("metrics.db_pool_waiting", 20.0),
        knee.with("metrics.db_pool_waiting", 30.0)
            .with("target.cpu_cores", 0.3),
    );
    assert_eq!(v.kind, "waiting", "{v:#?}");
    assert!(!v.bottleneck.contains("db_pool_waiting"), "{v:#?}");
}

#[test]
fn one_thread_at_a_full_core_is_not_a_lock() {
    let threads = |busiest: f64, rest: f64| {
        serde_json::json!({"count": 9, "cores": busiest + rest, "busiest": [
            {"tid": 7, "name": "worker-0", "cores": busiest},
            {"tid": 8, "name": "conn-1", "cores": rest}]})
    };
    let (below, knee) = pair();
    let v = judge(
        below.with("target.cpu_cores", 0.9),
        knee.with("target.cpu_cores", 1.05)
            .with_observed("threads", threads(0.99, 0.06)),
    );
    assert_eq!(v.kind, "single_thread", "{v:#?}");
    assert!(v.bottleneck.contains("`worker-0` at 0.99 cores"), "{v:#?}");
    // Many threads taking turns: one core in all, no thread near a core of its own.
    let (below, knee) = pair();
    let v = judge(
        below.with("target.cpu_cores", 0.9),
        knee.with("target.cpu_cores", 1.05)
            .with_observed("threads", threads(0.3, 0.75)),
    );
    assert_eq!(v.kind, "serialized", "{v:#?}");
}

/// Names, not labels; and the known false friends are not queues.
#[test]
fn queue_names_are_matched_on_names_and_false_friends_are_not_queues() {
    use crate::model::series::names_a_queue;
    for queue in [
        "metrics.db_pool_waiting",
        "metrics.hikaricp_connections_pending{pool=\"main\"}",
        "metrics.request_queue_length",
        "metrics.puma_backlog",
        "metrics.app_lock_waiters",
    ] {
        assert!(names_a_queue(queue), "{queue}");
    }
    for friend in [
        // Micrometer's thread states: "waiting" is a label value, not the name.
        "metrics.jvm_threads_states_threads{state=\"waiting\"}",
        // nginx's waiting connections are idle keep-alive connections.
        "metrics.nginx_connections_waiting",
        // Machine-level pressure from node_exporter, not the service's queue.
        "metrics.node_pressure_cpu_waiting_seconds_total",
        "metrics.kube_pod_status_phase{phase=\"Pending\"}",
        // A word inside another word is not the word.
        "metrics.awaiting_approval_total",
        "metrics.http_requests_total",
    ] {
        assert!(!names_a_queue(friend), "{friend}");
    }
}

#[test]
fn a_full_host_with_others_on_it_is_host_contention() {
    let (below, knee) = pair();
    let v = judge(
        below,
        knee.with("target.cpu_cores", 1.2)
            .with("host.cpu_cores", 1.98),
    );
    assert_eq!(
        (v.kind.as_str(), v.confidence.as_str()),
        ("host_contention", "medium")
    );
    assert!(
        v.evidence
            .iter()
            .any(|e| e.contains("0.78 of them outside the target")),
        "{v:#?}"
    );
    for (key, value) in [
        ("generator.cpu_cores", 0.6),
        ("host.cgroup_throttled_share", 0.3),
    ] {
        let (below, knee) = pair();
        let v = judge(below, knee.with("target.cpu_cores", 0.5).with(key, value));
        assert_eq!(v.kind, "host_contention", "{key}: {v:#?}");
    }
}

#[test]
fn about_one_core_busy_is_serialized() {
    let (below, knee) = pair();
    let v = judge(
        below,
        knee.with("target.cpu_cores", 0.9)
            .with("host.cpu_cores", 1.1)
            .with("target.voluntary_ctx_per_s", 5000.0)
            .with("target.involuntary_ctx_per_s", 200.0),
    );
    assert_eq!(
        (v.kind.as_str(), v.confidence.as_str()),
        ("serialized", "medium")
    );
    assert!(v
        .evidence
        .iter()
        .any(|e| e.starts_with("5000 voluntary context switches/s")));
    assert!(
        v.evidence
            .iter()
            .any(|e| e.starts_with("also seen: waiting")),
        "0.9 of 2 cores is also under half: {v:#?}"
    );
}

#[test]
fn little_cpu_is_waiting_and_disk_io_is_mentioned() {
    let (below, knee) = pair();
    let v = judge(
        below,
        knee.with("target.cpu_cores", 0.2)
            .with("host.cpu_cores", 0.4)
            .with("target.write_bytes_per_s", 8e6),
    );
    assert_eq!(
        (v.kind.as_str(), v.confidence.as_str()),
        ("waiting", "medium")
    );
    assert!(
        v.evidence.iter().any(|e| e == "disk I/O 8.0 MB/s"),
        "{v:#?}"
    );
}

/// Without a target process only the host speaks, at low confidence.
#[test]
fn without_a_target_process_only_host_level_verdicts_at_low_confidence() {
    let (below, knee) = pair();
    let v = judge(below, knee.clone().with("host.cpu_cores", 1.9));
    assert_eq!(
        (v.bottleneck.as_str(), v.confidence.as_str()),
        ("CPU-bound (host)", "low")
    );
    let (below, _) = pair();
    let v = judge(below, knee.with("host.cpu_cores", 0.6));
    assert_eq!(
        (v.bottleneck.as_str(), v.confidence.as_str()),
        ("not CPU: waiting somewhere", "low")
    );
}

#[test]
fn cpu_between_the_rules_is_unclear() {
    let (below, knee) = pair();
    // 1.5 of 2 cores: over one core, under 85 %, the host not full.
    let v = judge(
        below,
        knee.with("target.cpu_cores", 1.5)
            .with("host.cpu_cores", 1.6),
    );
    assert_eq!((v.kind.as_str(), v.confidence.as_str()), ("unclear", "low"));
}

/// 1.68 of 2 cores on a full host (measured: /cpu with a busy loop beside it): the target
/// holds most of a saturated CPU, so it is CPU-bound; with less than 75 % of it, it is not.
#[test]
fn most_of_a_full_host_is_cpu_bound() {
    let (below, knee) = pair();
    let full = knee.with("host.cpu_cores", 2.0);
    let v = judge(below, full.clone().with("target.cpu_cores", 1.68));
    assert_eq!(
        (v.kind.as_str(), v.confidence.as_str()),
        ("cpu_bound", "medium")
    );
    assert!(
        v.evidence.iter().any(|e| e.contains("held 84% of it")),
        "{v:#?}"
    );
    let (below, _) = pair();
    let v = judge(below, full.with("target.cpu_cores", 1.45));
    assert_ne!(v.kind, "cpu_bound", "{v:#?}");
}

#[test]
fn few_samples_cap_the_confidence() {
    let (below, mut knee) = pair();
    knee = knee.with("target.cpu_cores", 1.95);
    knee.observed
        .as_mut()
        .unwrap()
        .samplers
        .as_mut()
        .unwrap()
        .samples = 2;
    let v = judge(below, knee);
    assert_eq!(
        (v.kind.as_str(), v.confidence.as_str()),
        ("cpu_bound", "medium")
    );
    assert!(v
        .evidence
        .iter()
        .any(|e| e == "only 2 samples in the knee step"));
}

#[test]
fn when_nothing_held_the_verdict_says_so() {
    let low = step("rate-100", Phase::Step, 100.0, 60.0, 900.0)
        .failing()
        .with("host.cores", 2.0)
        .with("target.cpu_cores", 1.96);
    let v = verdict(&[low], None, 0.01);
    assert!(
        v.bottleneck.starts_with("nothing held: CPU-bound"),
        "{v:#?}"
    );
    assert!(
        v.evidence[0].starts_with("no step held, not even at 100 req/s (rate-100)"),
        "{v:#?}"
    );
    // A hunt whose probe got no good answer has only probe steps.
    let mut probe = step("probe-c1", Phase::Probe, 0.0, 0.0, 0.0)
        .failing()
        .with_errors("http_5xx", 40);
    probe.offered_rps = None;
    probe.concurrency = Some(1);
    let v = verdict(&[probe], None, 0.01);
    assert!(
        v.bottleneck
            .starts_with("nothing held: failing requests (http_5xx)"),
        "{v:#?}"
    );
    assert_eq!(v.knee_step.as_deref(), Some("probe-c1"));
}

#[test]
fn every_step_holding_is_no_knee() {
    let (below, _) = pair();
    let v = verdict(&[below], Some(475.0), 0.01);
    assert_eq!(v.bottleneck, "no knee reached: every step held");
}

/// The kernel dropped SYNs at the knee: the accept queue is the bottleneck, with the connect
/// tail as evidence, whatever the (idle) target's CPU says.
#[test]
fn listen_overflows_at_the_knee_are_the_accept_queue() {
    let (below, mut knee) = pair();
    knee = knee
        .with("net.listen_overflows_per_s", 120.0)
        .with("net.syncookies_sent_per_s", 6.0)
        .with_stat("net.accept_queue", 0.0, 4.2, 5.0)
        .with("net.accept_backlog", 5.0)
        .with("target.cpu_cores", 0.3);
    knee.connect_ms = Some(crate::model::step::ConnectTimes {
        count: 900,
        syn_retransmitted: 90,
        p50: 0.2,
        p90: 1.0,
        p99: 1020.0,
        max: 1100.0,
    });
    let v = judge(below.with("net.listen_overflows_per_s", 0.0), knee);
    assert_eq!(
        (v.kind.as_str(), v.confidence.as_str()),
        ("accept_queue", "high"),
        "{v:#?}"
    );
    let lines = v.evidence.join("\n");
    assert!(
        lines.contains("120 SYNs dropped per second at the knee (below it: 0)"),
        "{lines}"
    );
    assert!(
        lines.contains("90 of 900 connects (10%) took 0.9 s or more"),
        "{lines}"
    );
    assert!(lines.contains("on the 1 s rung"), "{lines}");
    assert!(lines.contains("up to 5 connections waiting"), "{lines}");
    assert!(
        lines.contains("the listening socket's backlog is 5: raise it"),
        "{lines}"
    );
    assert!(lines.contains("SYN cookies were sent, 6/s"), "{lines}");
}

#[test]
fn retransmits_without_overflows_are_the_network() {
    let (below, knee) = pair();
    let v = judge(
        below.with("net.retransmitted_segments_per_s", 2.0),
        knee.with("net.retransmitted_segments_per_s", 300.0)
            .with("net.tcp_timeouts_per_s", 40.0)
            .with("target.cpu_cores", 0.3),
    );
    assert_eq!(v.kind, "network", "{v:#?}");
    // Overflows at the same time are the accept queue's, not the path's.
    let (below, knee) = pair();
    let v = judge(
        below,
        knee.with("net.retransmitted_segments_per_s", 300.0)
            .with("net.listen_overflows_per_s", 50.0),
    );
    assert_eq!(v.kind, "accept_queue", "{v:#?}");
}

fn processes(downstream_cores: f64, others: &[(&str, f64)]) -> serde_json::Value {
    let mut top = vec![
        serde_json::json!({"name": "python3", "pid": 40, "processes": 1, "cores": 0.04, "rss_mb": 30.0, "role": "target"}),
        serde_json::json!({"name": "postgres", "pid": 10, "processes": 9, "cores": downstream_cores, "rss_mb": 200.0, "role": "downstream"}),
    ];
    for (i, (name, cores)) in others.iter().enumerate() {
        top.push(serde_json::json!({"name": name, "pid": 100 + i, "processes": 1, "cores": cores, "rss_mb": 10.0}));
    }
    serde_json::json!({"top": top, "downstreams": [
        {"peer": "127.0.0.1:5432", "connections": 16, "pid": 10, "name": "postgres", "cores": downstream_cores}]})
}

#[test]
fn a_saturated_downstream_is_named_and_is_not_host_contention() {
    let (below, knee) = pair();
    let v = judge(
        below
            .with("target.cpu_cores", 0.04)
            .with_observed("processes", processes(1.2, &[])),
        knee.with("target.cpu_cores", 0.04)
            .with("host.cpu_cores", 2.0)
            .with_observed("processes", processes(1.96, &[])),
    );
    assert_eq!(v.kind, "downstream", "{v:#?}");
    assert_eq!(v.site.as_deref(), Some("postgres (127.0.0.1:5432)"));
    assert!(
        v.bottleneck
            .contains("downstream: postgres (pid 10, 127.0.0.1:5432) CPU-bound at 1.96 of 2 cores"),
        "{v:#?}"
    );
    assert!(
        v.evidence
            .iter()
            .any(|e| e.contains("the target used 0.04 cores and held 16 connections")),
        "{v:#?}"
    );
    assert!(
        !v.evidence.iter().any(|e| e.contains("host contention")),
        "postgres works for the target: {v:#?}"
    );
}

#[test]
fn host_contention_names_who_else_is_busy() {
    let (below, knee) = pair();
    let v = judge(
        below.with("target.cpu_cores", 0.5),
        knee.with("target.cpu_cores", 0.5)
            .with("host.cpu_cores", 1.95)
            .with_observed("processes", processes(0.0, &[("ffmpeg", 1.3)])),
    );
    assert_eq!(v.kind, "host_contention", "{v:#?}");
    assert!(
        v.evidence
            .iter()
            .any(|e| e == "outside the target: ffmpeg (pid 100) 1.30"),
        "{v:#?}"
    );
    assert!(v.confirm.contains("ffmpeg"), "{v:#?}");
}

/// A remote target: this machine's readings are the generator's host's. Without exporters
/// nothing is known of the target's host, and the verdict says so instead of reading this
/// machine; with them, the target's CPU line says where it was read, and the generator
/// (elsewhere) is no contention on the target's host.
#[test]
fn a_remote_target_is_judged_on_its_own_host_or_not_at_all() {
    let (below, knee) = pair();
    let remote = |s: StepResult| {
        s.with("generator_host.cores", 2.0)
            .with("generator_host.cpu_cores", 1.9)
    };
    let v = judge(remote(below.clone()), remote(knee.clone()));
    assert_eq!(v.kind, "unclear", "{v:#?}");
    assert!(v.bottleneck.contains("host is not observed"), "{v:#?}");

    let source = serde_json::json!({"host": "http://staging:9100/metrics (node_exporter)",
                        "target": "http://staging:8080/metrics (process_* metrics)"});
    let observed = |s: StepResult, cpu: f64| {
        let mut s = remote(s)
            .with("target.cpu_cores", cpu)
            .with("host.cpu_cores", 1.97)
            .with("generator.cpu_cores", 0.9);
        s.observed
            .as_mut()
            .unwrap()
            .samplers
            .as_mut()
            .unwrap()
            .sources = serde_json::from_value(source.clone()).unwrap();
        s
    };
    let v = judge(observed(below, 1.5), observed(knee, 1.92));
    assert_eq!(v.kind, "cpu_bound", "{v:#?}");
    assert!(
        v.evidence
            .iter()
            .any(|e| e.contains("read from http://staging:8080/metrics (process_* metrics)")),
        "{v:#?}"
    );
    assert!(
        !v.evidence.iter().any(|e| e.contains("host contention")),
        "the generator runs elsewhere: {v:#?}"
    );
}

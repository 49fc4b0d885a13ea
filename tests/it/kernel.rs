//! The kernel's queues: a server that accepts too slowly from a tiny listen backlog makes the
//! kernel drop SYNs; clients wait for TCP's 1 s SYN retransmit. knee must say so, with the
//! overflow rate and the connect-time tail, and must count connects per connection, not per
//! request. The counters are this machine's (other processes move them too): bounds are wide.

use crate::util::*;
use std::time::Duration;

#[test]
fn a_server_with_a_tiny_backlog_is_an_accept_queue_bottleneck() {
    let _serial = serial();
    // One accept every ~5 ms: about 200 connections (requests) per second, backlog 2.
    let server = SlowAcceptor::start(2, Duration::from_millis(5));
    let out = TempDir::new("backlog");
    let url = server.url();
    let (outcome, record) = knee_run(
        out.path(),
        &[
            "--url",
            &url,
            "--steps",
            "60,400",
            "--step-duration",
            "2500ms",
            "--warmup",
            "500ms",
            "--sample-every",
            "250ms",
            "--timeout",
            "5s",
            "--slo",
            "p99=200ms",
        ],
    );
    assert!(outcome.is_ok(), "{outcome:?}");
    let record = record.unwrap();
    let (low, high) = (&record.steps[0], &record.steps[1]);
    assert!(low.holds, "{:?}", low.slo_failures);
    let connect = high.connect_ms.clone().expect("connects were timed");
    assert!(
        connect.p99 >= 900.0 && connect.syn_retransmitted > 0,
        "the tail lives in the connect, past TCP's 1 s SYN retransmit: {connect:?}"
    );
    let v = record.verdict.unwrap();
    assert_eq!(v.kind, "accept_queue", "{v:#?}");
    let overflow = v
        .evidence
        .iter()
        .find(|e| e.starts_with("the listen backlog overflowed:"))
        .unwrap_or_else(|| panic!("{v:#?}"));
    assert!(
        overflow.contains("SYNs dropped per second at the knee"),
        "{overflow}"
    );
    assert!(
        v.evidence
            .iter()
            .any(|e| e.starts_with("clients waited for the SYN retransmit: ")),
        "{v:#?}"
    );
}

/// A keep-alive target: one connect per connection, however many requests ride on it.
#[test]
fn a_keep_alive_target_counts_connects_per_connection_not_per_request() {
    let _serial = serial();
    let target = http_target(Http::Fast);
    let out = TempDir::new("keepalive-connects");
    let (outcome, record) = knee_run(
        out.path(),
        &[
            "--url",
            &target.url("/"),
            "--rate",
            "200",
            "--duration",
            "1s",
            "--warmup",
            "0s",
            "--no-sample",
        ],
    );
    outcome.unwrap();
    let step = record.unwrap().steps.remove(0);
    let connect = step
        .connect_ms
        .clone()
        .expect("the first connections are timed");
    assert!(step.requests >= 150, "{}", step.requests);
    assert!(connect.count >= 1 && connect.count <= 8, "{connect:?}");
    assert!(
        connect.count <= step.generator.connections_opened + 2,
        "{connect:?} {:?}",
        step.generator
    );
    assert!(connect.p99 < 100.0, "{connect:?}");
}

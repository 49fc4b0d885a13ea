//! One test per signal of the limits a staging box sets, each with a constructed step pair
//! (the step below the knee, which held, and the knee step, which did not).

use super::*;
use crate::model::step::testing::step;
use crate::model::step::{ByConnection, ConnectionLatency};

fn pair() -> (StepResult, StepResult) {
    let below = step("hold-095", Phase::Hold, 237.0, 237.0, 12.0).with("host.cores", 2.0);
    let knee = step("hold-105", Phase::Hold, 262.0, 245.0, 900.0)
        .failing()
        .with("host.cores", 2.0);
    (below, knee)
}

fn judge(below: StepResult, knee: StepResult) -> Verdict {
    verdict(&[below, knee], Some(237.0), 0.01)
}

#[test]
fn a_cgroup_quota_that_runs_out_is_named_with_its_cores() {
    let (below, knee) = pair();
    let limited = |s: StepResult, throttled: f64, cpu: f64| {
        s.with("target.cgroup_cpu_quota_cores", 0.5)
            .with("target.cgroup_throttled_share", throttled)
            .with("target.cpu_cores", cpu)
            .with("host.cpu_cores", cpu + 0.1)
    };
    let v = judge(limited(below, 0.08, 0.45), limited(knee, 0.93, 0.49));
    assert_eq!(
        (v.kind, v.confidence),
        (Kind::CpuThrottled, Confidence::High),
        "{v:#?}"
    );
    assert!(v.bottleneck.contains("0.50 cores"), "{v:#?}");
    let text = v.evidence.join("\n");
    assert!(
        text.contains("throttled in 93 % of periods at the knee (8 % below it)"),
        "{text}"
    );
    assert!(text.contains("the host had 1.4 idle cores"), "{text}");
    assert!(text.contains("the quota is the capacity"), "{text}");
    // Below its quota, a target is not throttled, whatever the quota.
    let (below, knee) = pair();
    let v = judge(limited(below, 0.0, 0.2), limited(knee, 0.02, 0.25));
    assert_ne!(v.kind, Kind::CpuThrottled, "{v:#?}");
}

#[test]
fn a_cgroup_at_its_memory_limit_is_named() {
    let (below, knee) = pair();
    let knee = knee
        .with("target.cgroup_memory_limit_mb", 256.0)
        .with_stat("target.cgroup_memory_used_mb", 200.0, 240.0, 251.0)
        .with("target.cgroup_memory_max_events_per_s", 14.0)
        .with("target.cpu_cores", 0.4);
    let v = judge(below, knee);
    assert_eq!(v.kind, Kind::MemoryLimit, "{v:#?}");
    assert!(
        v.evidence.iter().any(|e| e.contains("251 of 256 MB")),
        "{v:#?}"
    );
    assert!(
        v.evidence.iter().any(|e| e.contains("14.0 times a second")),
        "{v:#?}"
    );
}

#[test]
fn file_descriptors_at_their_limit_while_requests_time_out() {
    let (below, knee) = pair();
    let knee = knee
        .with("target.fd_limit", 64.0)
        .with_stat("target.fds", 40.0, 60.0, 63.0)
        .with_errors("request_timeout", 50)
        .with("target.cpu_cores", 0.01);
    let v = judge(below, knee);
    assert_eq!(v.kind, Kind::FdLimit, "{v:#?}");
    assert!(
        v.evidence
            .iter()
            .any(|e| e.contains("63 of 64 file descriptors")),
        "{v:#?}"
    );
    // Far from the limit: not this.
    let (below, knee) = pair();
    let knee = knee
        .with("target.fd_limit", 1024.0)
        .with_stat("target.fds", 40.0, 60.0, 63.0)
        .with_errors("request_timeout", 50);
    assert_ne!(judge(below, knee).kind, Kind::FdLimit);
}

#[test]
fn gc_pauses_that_grow_at_the_knee_are_gc() {
    let (below, knee) = pair();
    let v = judge(
        below
            .with("target.gc_pause_share", 0.02)
            .with("target.cpu_cores", 1.2),
        knee.with("target.gc_pause_share", 0.31)
            .with("target.cpu_cores", 1.3),
    );
    assert_eq!(v.kind, Kind::Gc, "{v:#?}");
    assert!(v
        .evidence
        .iter()
        .any(|e| e.contains("31 % of the time at the knee, 2 % below it")));
}

#[test]
fn a_limiter_is_told_from_an_overload() {
    let below = step("search-700", Phase::Search, 700.0, 700.0, 1.0).with("host.cores", 2.0);
    let mut knee = step("search-1000", Phase::Search, 1000.0, 800.0, 1.2)
        .failing()
        .with_errors("http_4xx", 800)
        .with("host.cores", 2.0)
        .with("target.cpu_cores", 0.07);
    knee.status_codes.insert("429".into(), 800);
    let mut higher = knee.clone();
    higher.name = "search-1500".into();
    higher.offered_rps = Some(1500.0);
    higher.ok_rps = 805.0;
    let v = verdict(&[below, knee, higher], Some(700.0), 0.01);
    assert_eq!(v.kind, Kind::RateLimited, "{v:#?}");
    assert!(v.bottleneck.contains("800 req/s"), "{v:#?}");
    assert!(
        v.evidence.iter().any(|e| e.contains("answered 429")),
        "{v:#?}"
    );
    assert!(v
        .evidence
        .iter()
        .any(|e| e.contains("the capacity this run found is the limiter's")));
    // Good throughput falling past the knee is an overload, not a limiter.
    let below = step("search-700", Phase::Search, 700.0, 700.0, 1.0).with("host.cores", 2.0);
    let mut knee = step("search-1000", Phase::Search, 1000.0, 800.0, 1.2)
        .failing()
        .with_errors("http_5xx", 800)
        .with("host.cores", 2.0);
    knee.status_codes.insert("503".into(), 800);
    let mut collapsed = knee.clone();
    collapsed.name = "search-1500".into();
    collapsed.offered_rps = Some(1500.0);
    collapsed.ok_rps = 300.0;
    let v = verdict(&[below, knee, collapsed], Some(700.0), 0.01);
    assert_ne!(v.kind, Kind::RateLimited, "{v:#?}");
}

#[test]
fn answers_stalled_at_the_ack_timer_on_reused_connections_are_nagle() {
    let (below, mut knee) = pair();
    let latency = |p50: f64, share: f64| ConnectionLatency {
        requests: 900,
        p50_ms: p50,
        p99_ms: 44.0,
        at_ack_timer: share,
    };
    knee.by_connection = Some(ByConnection {
        fresh: latency(0.4, 0.0),
        reused: latency(43.5, 0.97),
    });
    let knee = knee.with("target.cpu_cores", 0.05);
    let v = judge(below, knee.clone());
    assert_eq!(v.kind, Kind::Nagle, "{v:#?}");
    assert!(v.confirm.contains("TCP_NODELAY"));
    assert!(nagle::ack_timer_note(&knee).is_some());
    // Fresh connections as slow as reused ones: the service is slow, not Nagle.
    let (below, mut knee) = pair();
    knee.by_connection = Some(ByConnection {
        fresh: latency(43.0, 0.9),
        reused: latency(43.5, 0.97),
    });
    assert_ne!(judge(below, knee).kind, Kind::Nagle);
}

#[test]
fn a_busy_disk_the_target_writes_to_is_named() {
    let (below, knee) = pair();
    let v = judge(
        below
            .with("disk.vda.util", 0.4)
            .with("target.cpu_cores", 0.05),
        knee.with("disk.vda.util", 0.98)
            .with("disk.vda.queue", 2.1)
            .with("disk.vda.await_ms", 4.1)
            .with("target.write_bytes_per_s", 3.2e6)
            .with("target.cpu_cores", 0.05),
    );
    assert_eq!(v.kind, Kind::Disk, "{v:#?}");
    assert!(v.evidence.iter().any(
        |e| e.contains("vda 98 % busy at the knee (below it: 40 %), queue 2.1, 4.1 ms per I/O")
    ));
}

//! The wait-site signals: a site named when its wait grows per request at the knee, and the
//! baseline it grows from when the step below was profiled past the knee.

use super::tests::{judge, pair};
use super::*;
use crate::model::figures::{Percentiles, ProfiledWindow};
use crate::model::step::testing::step;

/// An off-CPU profile: (function, kind, ms per request) sites, `idle_ms` idle.
fn offcpu(sites: &[(&str, &str, f64)], idle_ms: f64) -> serde_json::Value {
    let requests = 500.0;
    let waiting: f64 = sites.iter().map(|s| s.2 * requests).sum();
    let top: Vec<serde_json::Value> = sites
        .iter()
        .map(|(function, kind, per)| {
            serde_json::json!({"function": function, "kind": kind, "ms": per * requests,
                "percent": per * requests * 100.0 / waiting.max(1e-9), "ms_per_request": per})
        })
        .collect();
    serde_json::json!({"source": "perf sched_switch", "seconds": 1.0, "threads": 40,
        "switches": 900, "total_ms": waiting + idle_ms, "waiting_ms": waiting,
        "idle_ms": idle_ms, "preempted_ms": 0.0, "requests": requests as u64,
        "ms_per_request": waiting / requests, "by_kind": {}, "top": top,
        "folded": null, "svg": null, "error": null})
}

#[test]
fn the_wait_site_that_grows_per_request_names_kind_and_site() {
    for (kind, site_kind, function) in [
        ("lock", "lock", "svc::ledger_append"),
        ("pool", "pool", "svc::checkout"),
        ("downstream", "socket", "svc::fetch_quote"),
        ("disk", "disk", "svc::load_page"),
    ] {
        let (below, knee) = pair();
        // Waiting for clients shrinks per request at the knee; the bottleneck's wait grows.
        let below = below.with("target.cpu_cores", 0.05).with_observed(
            "offcpu",
            offcpu(
                &[
                    ("svc::read_request", "socket", 15.0),
                    (function, site_kind, 0.4),
                ],
                0.0,
            ),
        );
        let knee = knee.with("target.cpu_cores", 0.06).with_observed(
            "offcpu",
            offcpu(
                &[
                    ("svc::read_request", "socket", 7.0),
                    (function, site_kind, 214.0),
                ],
                0.0,
            ),
        );
        let v = judge(below, knee);
        assert_eq!(v.kind, kind, "{v:#?}");
        assert_eq!(v.site.as_deref(), Some(function), "{v:#?}");
        assert_eq!(v.confidence, "high", "{v:#?}");
        let line = v
            .evidence
            .iter()
            .find(|e| e.contains("per request"))
            .unwrap();
        assert!(
            line.contains("0.40 ms per request below the knee, 214 at it"),
            "{line}"
        );
    }
}

#[test]
fn a_wait_that_does_not_grow_per_request_is_no_wait_site() {
    let (below, knee) = pair();
    let below = below.with("target.cpu_cores", 0.05).with_observed(
        "offcpu",
        offcpu(&[("svc::read_request", "socket", 15.0)], 0.0),
    );
    let knee = knee.with("target.cpu_cores", 0.05).with_observed(
        "offcpu",
        offcpu(&[("svc::read_request", "socket", 14.0)], 0.0),
    );
    let v = judge(below, knee);
    assert_eq!(v.kind, "waiting", "{v:#?}");
    assert!(v.site.is_none(), "{v:#?}");
}

#[test]
fn only_idle_threads_while_latency_climbs_points_at_the_runtime() {
    let (below, knee) = pair();
    let below = below
        .with("target.cpu_cores", 0.2)
        .with_observed("offcpu", offcpu(&[("svc::handler", "sleep", 1.0)], 5000.0));
    let knee = knee
        .with("target.cpu_cores", 0.2)
        .with_observed("offcpu", offcpu(&[("svc::handler", "sleep", 1.0)], 9000.0));
    let v = judge(below, knee);
    assert!(v.bottleneck.contains("async runtime"), "{v:#?}");
    assert!(v.confirm.contains("tokio-console"), "{v:#?}");
}

/// A profiled tail with p99 `p99_ms`, nothing failed.
fn tail(p99_ms: f64) -> ProfiledWindow {
    ProfiledWindow {
        seconds: 2.0,
        requests: 800,
        errors: 0,
        achieved_rps: 400.0,
        ok_rps: 400.0,
        latency_ms: Percentiles {
            p99: p99_ms,
            ..Percentiles::default()
        },
    }
}

#[test]
fn waits_recorded_past_the_knee_are_no_baseline() {
    let lock = |ms: f64| offcpu(&[("shop.refresh_catalog (shop.py:10)", "lock", ms)], 0.0);
    // The profiler's pauses put the 95 % hold's tail past the knee: its lock waits are
    // already the knee's. The 80 % hold's tail held.
    let mut lower =
        step("hold-080", Phase::Hold, 400.0, 400.0, 3.0).with_observed("offcpu", lock(0.5));
    lower.profiled = Some(tail(8.0));
    let (below, knee) = pair();
    let mut below = below.with_observed("offcpu", lock(32.0));
    below.profiled = Some(tail(117.0));
    let knee = knee
        .with("target.cpu_cores", 0.2)
        .with_observed("offcpu", lock(33.0));
    let slo = Slo {
        latency: vec![crate::slo::LatencyBound {
            percentile: 99.0,
            limit_ms: 30.0,
        }],
        max_error_rate: Some(0.01),
        min_rps: None,
    };
    let steps = [lower, below, knee];
    let v = verdict_on(&steps, Some(475.0), &slo, 2);
    assert_eq!(v.kind, "lock", "{v:#?}");
    assert_eq!(v.site.as_deref(), Some("shop.refresh_catalog (shop.py:10)"));
    assert!(
        v.evidence.iter().any(|e| e.contains(
            "0.50 ms per request at hold-080 (hold-095 missed the SLO while profiled), 33 at it"
        )),
        "{v:#?}"
    );
    // Judged from the step just below (the old baseline), the lock did not grow.
    let mut below_only = steps[1].clone();
    below_only.profiled = None;
    let v = verdict_on(&[below_only, steps[2].clone()], Some(475.0), &slo, 2);
    assert_ne!(v.kind, "lock", "{v:#?}");
}

#[test]
fn a_lock_contended_below_the_knee_grows_from_the_lowest_hold() {
    let lock = |ms: f64| offcpu(&[("app.reserve (app.py:36)", "lock", ms)], 0.0);
    // At 95 % the lock's queue is already long (8 ms per request), at the knee 12 ms: not
    // twice the step below, but twelve times the 50 % hold's.
    let lowest =
        step("hold-050", Phase::Hold, 250.0, 250.0, 6.0).with_observed("offcpu", lock(1.0));
    let (below, knee) = pair();
    let below = below.with_observed("offcpu", lock(8.0));
    let knee = knee
        .with("target.cpu_cores", 0.3)
        .with_observed("offcpu", lock(12.0));
    let steps = [lowest.clone(), below.clone(), knee.clone()];
    let v = verdict(&steps, Some(475.0), 0.01);
    assert_eq!(v.kind, "lock", "{v:#?}");
    assert_eq!(v.site.as_deref(), Some("app.reserve (app.py:36)"));
    assert!(
        v.evidence.iter().any(|e| e.contains(
            "1.0 ms per request at hold-050 (the lowest hold; 8.0 at hold-095), 12 at it"
        )),
        "{v:#?}"
    );
    // Without the lowest hold it is not named: 8 → 12 ms is no doubling.
    let v = verdict(&[below.clone(), knee.clone()], Some(475.0), 0.01);
    assert_ne!(v.kind, "lock", "{v:#?}");
    // A lowest hold that failed is no baseline either.
    let v = verdict(&[lowest.failing(), below, knee], Some(475.0), 0.01);
    assert_ne!(v.kind, "lock", "{v:#?}");
}

//! The engine against targets of known behaviour: rate accuracy, latency accuracy, and
//! latency measured from the intended send time (no coordinated omission).

use crate::util::*;
use knee::Outcome;
use std::time::Duration;

#[test]
fn open_model_delivers_the_offered_rate() {
    let _serial = serial();
    let target = http_target(Http::Fast);
    let out = TempDir::new("rate");
    let url = target.url("/");
    let (outcome, record) = knee_run(
        out.path(),
        &[
            "--url",
            &url,
            "--rate",
            "2000",
            "--duration",
            "1s",
            "--warmup",
            "200ms",
        ],
    );
    assert_eq!(outcome.unwrap(), Outcome::Passed);
    let record = record.expect("run.json written");
    let step = &record.steps[0];
    let achieved = step.achieved_rps;
    assert!(
        (achieved - 2000.0).abs() <= 2000.0 * 0.03,
        "achieved {achieved}/s is not within 3% of 2000/s"
    );
    assert!(
        step.requests >= 1940 && step.requests <= 2060,
        "{} requests",
        step.requests
    );
    assert_eq!(step.errors, 0);
    assert_eq!(step.status_codes.get("200").copied(), Some(step.requests));
    assert!(
        !step.generator.limited,
        "{:?}",
        step.generator.limited_reason
    );
    // The steps.jsonl line carries the same step.
    let lines = read_steps_jsonl(out.path());
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["requests"].as_u64(), Some(step.requests));
    assert!(out.join("hist/rate-2000.hgrm").exists());
    // The V2 interval log holds the whole distributions: every response, and the same p99.
    let logged = knee::hlog::read(&out.join("hist/rate-2000.hlog")).unwrap();
    let tags: Vec<&str> = logged.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(tags, ["latency", "service"]);
    let latency = &logged[0].1;
    assert_eq!(latency.len(), step.requests);
    let p99_ms = latency.value_at_quantile(0.99) as f64 / 1000.0;
    assert!(
        (p99_ms - step.latency_ms.p99).abs() <= step.latency_ms.p99 * 0.01 + 0.001,
        "{p99_ms} vs {}",
        step.latency_ms.p99
    );
}

#[test]
fn fixed_sleep_target_reports_its_latency() {
    let _serial = serial();
    let target = http_target(Http::Sleep(Duration::from_millis(20)));
    let out = TempDir::new("sleep");
    let url = target.url("/");
    let (outcome, record) = knee_run(
        out.path(),
        &[
            "--url",
            &url,
            "--rate",
            "100",
            "--duration",
            "1s",
            "--slo",
            "p50=25ms",
        ],
    );
    assert_eq!(outcome.unwrap(), Outcome::Passed);
    let step = &record.unwrap().steps[0];
    let p50 = step.latency_ms.p50;
    assert!(
        (20.0..=23.0).contains(&p50),
        "p50 {p50}ms is not within 20..23ms"
    );
    assert!(step.service_ms.p50 >= 20.0 && step.service_ms.p50 <= p50 + 0.01);
}

#[test]
fn a_stall_shows_in_latency_from_the_intended_send_time() {
    let _serial = serial();
    let target = http_target(Http::Stall {
        from: Duration::from_millis(300),
        length: Duration::from_millis(300),
    });
    let out = TempDir::new("stall");
    let url = target.url("/");
    // Two connections: the requests due during the stall queue in the generator.
    let (outcome, record) = knee_run(
        out.path(),
        &[
            "--url",
            &url,
            "--rate",
            "400",
            "--duration",
            "1s",
            "--warmup",
            "0s",
            "--max-connections",
            "2",
        ],
    );
    assert!(outcome.is_ok());
    let step = &record.unwrap().steps[0];
    assert!(
        step.latency_ms.p99 >= 200.0,
        "latency p99 {}ms misses the stall",
        step.latency_ms.p99
    );
    assert!(
        step.service_ms.p99 < 100.0,
        "service p99 {}ms: the queued requests were served fast once sent",
        step.service_ms.p99
    );
    // About 400/s x 0.3 s = 120 requests were due while both connections were stuck.
    assert!(
        step.generator.late_sends >= 60,
        "late sends {}",
        step.generator.late_sends
    );
    assert!(step.generator.send_lag_max_ms >= 200.0);
    // A stall on the target is not the generator's fault.
    assert!(
        !step.generator.limited,
        "{:?}",
        step.generator.limited_reason
    );
}

#[test]
fn closed_model_keeps_n_requests_in_flight() {
    let _serial = serial();
    let target = http_target(Http::Sleep(Duration::from_millis(10)));
    let out = TempDir::new("closed");
    let url = target.url("/");
    let (outcome, record) = knee_run(
        out.path(),
        &[
            "--url",
            &url,
            "--concurrency",
            "4,8",
            "--duration",
            "600ms",
            "--warmup",
            "100ms",
        ],
    );
    assert!(outcome.is_ok());
    let steps = record.unwrap().steps;
    assert_eq!(steps.len(), 2);
    // Little's law: throughput = concurrency / latency, about 4/10.1ms and 8/10.1ms.
    for (step, n) in steps.iter().zip([4.0, 8.0]) {
        assert_eq!(step.concurrency, Some(n as u32));
        let expected = n / (step.latency_ms.mean / 1000.0);
        assert!(
            (step.achieved_rps - expected).abs() < expected * 0.15,
            "{}: achieved {} vs {expected} expected",
            step.name,
            step.achieved_rps
        );
        assert!(
            step.achieved_rps > n * 60.0,
            "{} too slow: {}",
            step.name,
            step.achieved_rps
        );
    }
}

#[test]
fn poisson_arrivals_average_the_rate() {
    let _serial = serial();
    let target = http_target(Http::Fast);
    let out = TempDir::new("poisson");
    let url = target.url("/");
    let (_, record) = knee_run(
        out.path(),
        &[
            "--url",
            &url,
            "--rate",
            "500",
            "--duration",
            "1s",
            "--arrivals",
            "poisson",
        ],
    );
    let step = &record.unwrap().steps[0];
    // Poisson counts over 1 s at 500/s have a standard deviation of about 22.
    assert!(
        (400..=600).contains(&step.requests),
        "{} requests",
        step.requests
    );
}

#[test]
fn a_weighted_mix_sends_each_request_in_proportion() {
    let _serial = serial();
    // The test target answers 404 on /missing and 200 elsewhere.
    let target = http_target(Http::Fast);
    let dir = TempDir::new("mix");
    let profile = dir.join("mix.toml");
    let text = format!(
        r#"
name = "mix"
[target]
url = "{}"
allow_status = "404"
[[requests]]
name = "home"
path = "/"
weight = 3
[[requests]]
name = "missing"
path = "/missing"
weight = 1
[load]
rate = 400
duration = "1s"
"#,
        target.url("")
    );
    std::fs::write(&profile, text).unwrap();
    let out = dir.join("out");
    let (outcome, record) = knee_run(&out, &[profile.to_str().unwrap()]);
    assert!(outcome.is_ok());
    let step = &record.unwrap().steps[0];
    let missing = step.error_classes.get("http_4xx").copied().unwrap_or(0);
    let ok = step.status_codes.get("200").copied().unwrap_or(0);
    assert_eq!(missing + ok, step.requests);
    // One in four, give or take: the binomial standard deviation is about 9 of 400.
    assert!(
        (60..=140).contains(&missing),
        "{missing} of {} went to /missing",
        step.requests
    );
}

/// knee's own connection cap is knee's limit, not the target's: a target answering every
/// request in a flat 20 ms, offered 150 req/s through 2 connections (3 are needed), used to
/// "fail" as if the target could not take it. With enough connections it holds.
#[test]
fn knees_own_connection_cap_marks_the_step_generator_limited() {
    let _serial = serial();
    let target = http_target(Http::Sleep(Duration::from_millis(20)));
    let url = target.url("/");
    let run = |max: &str| {
        let out = TempDir::new("cap");
        let (_, record) = knee_run(
            out.path(),
            &[
                "--url",
                &url,
                "--rate",
                "150",
                "--duration",
                "1s",
                "--warmup",
                "200ms",
                "--max-connections",
                max,
                "--no-sample",
            ],
        );
        record.unwrap().steps.remove(0)
    };
    let capped = run("2");
    let reason = capped.generator.limited_reason.clone().unwrap_or_default();
    assert!(capped.generator.limited, "{:#?}", capped.generator);
    assert!(reason.starts_with("connections:"), "{reason}");
    assert!(reason.contains("--max-connections"), "{reason}");
    assert!(!capped.holds, "a generator-limited step never holds");
    let enough = run("16");
    assert!(!enough.generator.limited, "{:#?}", enough.generator);
    assert!(enough.holds, "{:?}", enough.slo_failures);
}

/// knee's pool fits the load: over a soak of a fast target its connections stay a small
/// multiple of what the rate x latency needs, window after window (they used to grow after
/// every scheduling hiccup and never shrink), and they are counted per window.
#[test]
fn the_connection_pool_fits_the_load_over_a_soak() {
    let _serial = serial();
    let target = http_target(Http::Fast);
    let dir = TempDir::new("pool-soak");
    let profile = dir.join("soak.toml");
    std::fs::write(
        &profile,
        format!(
            "kind = \"soak\"\n[target]\nurl = \"{}\"\n[load]\nrate = 2000\nwarmup = \"500ms\"\n\
             duration = \"6s\"\nwindow = \"1s\"\n",
            target.url("/")
        ),
    )
    .unwrap();
    let (outcome, record) = knee_run(
        &dir.join("run"),
        &[profile.to_str().unwrap(), "--no-sample"],
    );
    outcome.unwrap();
    let windows = record.unwrap().steps;
    assert_eq!(windows.len(), 6);
    // 2,000 req/s x well under a millisecond is one or two in flight; a lane keeps a few more
    // for headroom, and a box busy with other tests (the scheduler 20 ms late at p99 in one CI
    // run: 40 requests due at once) makes it open some more, kept for 5 s. The pool that only
    // grew held 133 to 203. A window knee itself marks as disturbed by another process (the
    // dispatcher late while idle: 16.8 ms at p99 in one CI run, 48 connections for the burst)
    // is not judged on its pool; most windows of a run are not, and at least three are judged.
    let calm: Vec<_> = windows
        .iter()
        .filter(|w| w.generator.host_contention.is_none())
        .collect();
    assert!(calm.len() >= 3, "{windows:#?}");
    for w in calm {
        let g = &w.generator;
        assert!(g.connections <= 24, "{}: {g:?}", w.name);
        assert!(g.connections_mean.unwrap() <= 20.0, "{}: {g:?}", w.name);
    }
    let opened_after_warmup: u64 = windows[1..]
        .iter()
        .map(|w| w.generator.connections_opened)
        .sum();
    assert!(opened_after_warmup <= 10, "{windows:#?}");
}

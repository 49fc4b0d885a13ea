//! A failing target is data: each error class is produced by a purpose-built target and
//! classified right, and the run completes with everything written.

use crate::util::*;
use std::collections::BTreeMap;

/// Runs 20 requests (100/s for 200 ms) at `url`; returns the step's error classes.
fn classes_for(url: &str, extra: &[&str]) -> (u64, BTreeMap<String, u64>) {
    let out = TempDir::new("errors");
    // The check before the load would stop at the first failure: these targets fail on purpose.
    let mut args = vec![
        "--no-check",
        "--url",
        url,
        "--rate",
        "100",
        "--duration",
        "200ms",
        "--warmup",
        "0s",
    ];
    args.extend_from_slice(extra);
    let (outcome, record) = knee_run(out.path(), &args);
    assert!(
        outcome.is_ok(),
        "a failing target must not fail the run: {outcome:?}"
    );
    let record = record.expect("run.json is written even when every request fails");
    let step = &record.steps[0];
    assert!(!step.holds);
    (
        step.requests,
        step.error_classes
            .iter()
            .map(|(class, n)| (class.to_string(), *n))
            .collect(),
    )
}

fn assert_only(url: &str, extra: &[&str], class: &str) {
    let (requests, classes) = classes_for(url, extra);
    assert!(requests >= 15, "{requests} requests");
    assert_eq!(
        classes.get(class).copied(),
        Some(requests),
        "{url}: {classes:?}"
    );
    assert_eq!(classes.len(), 1, "{url}: {classes:?}");
}

#[test]
fn connect_refused() {
    let url = format!("http://127.0.0.1:{}/", closed_port());
    assert_only(&url, &[], "connect_refused");
}

#[test]
fn connect_timeout() {
    let (listener, _fillers) = full_backlog();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    assert_only(
        &url,
        &["--connect-timeout", "100ms", "--timeout", "2s"],
        "connect_timeout",
    );
}

#[test]
fn request_timeout() {
    let target = raw_target(Raw::Hang);
    assert_only(&target.url("/"), &["--timeout", "150ms"], "request_timeout");
}

#[test]
fn requests_stuck_in_flight_break_littles_law_and_the_step_says_so() {
    // 100/s against a target that never answers, 400 ms timeout: about 40 requests are in
    // flight, while throughput x mean service time is 0.
    let target = raw_target(Raw::Hang);
    let out = TempDir::new("little");
    let url = target.url("/");
    let (_, record) = knee_run(
        out.path(),
        &[
            "--no-check",
            "--url",
            &url,
            "--rate",
            "100",
            "--duration",
            "600ms",
            "--warmup",
            "0s",
            "--timeout",
            "400ms",
            "--no-sample",
        ],
    );
    let step = &record.unwrap().steps[0];
    assert!(
        step.in_flight_mean >= 10.0,
        "in flight {}",
        step.in_flight_mean
    );
    assert!(
        step.notes
            .iter()
            .any(|n| n.contains("Little's law does not hold")),
        "{:?}",
        step.notes
    );
    // A healthy step carries no such note.
    let healthy = http_target(Http::Sleep(std::time::Duration::from_millis(20)));
    let out = TempDir::new("little-ok");
    let url = healthy.url("/");
    let (_, record) = knee_run(
        out.path(),
        &[
            "--no-check",
            "--url",
            &url,
            "--rate",
            "100",
            "--duration",
            "600ms",
            "--no-sample",
        ],
    );
    let step = &record.unwrap().steps[0];
    assert!(step.notes.is_empty(), "{:?}", step.notes);
    assert!(
        (1.0..=3.5).contains(&step.in_flight_mean),
        "100/s x 20 ms = 2 in flight: {}",
        step.in_flight_mean
    );
}

#[test]
fn connection_closed_without_an_answer() {
    let target = raw_target(Raw::Close);
    assert_only(&target.url("/"), &[], "connection_reset");
}

#[test]
fn garbage_instead_of_http() {
    let target = raw_target(Raw::Garbage);
    assert_only(&target.url("/"), &[], "protocol");
}

#[test]
fn body_cut_short() {
    let target = raw_target(Raw::ShortBody);
    assert_only(&target.url("/"), &[], "body_read");
}

#[test]
fn tls_to_a_plain_http_server() {
    let target = http_target(Http::Fast);
    let url = format!("https://{}/", target.addr);
    assert_only(&url, &["--insecure"], "tls");
}

#[test]
fn http_4xx_and_5xx() {
    let not_found = http_target(Http::Status(404));
    assert_only(&not_found.url("/"), &[], "http_4xx");
    let unavailable = http_target(Http::Status(503));
    let (requests, classes) = classes_for(&unavailable.url("/"), &[]);
    assert_eq!(classes.get("http_5xx").copied(), Some(requests));
}

#[test]
fn requests_that_could_not_be_sent_are_counted() {
    // One connection, a target that never answers: after the drain deadline the requests
    // still waiting for the connection are counted as not sent.
    let target = raw_target(Raw::Hang);
    let out = TempDir::new("notsent");
    let url = target.url("/");
    let (_, record) = knee_run(
        out.path(),
        &[
            "--no-check",
            "--url",
            &url,
            "--rate",
            "100",
            "--duration",
            "500ms",
            "--warmup",
            "0s",
            "--timeout",
            "200ms",
            "--max-connections",
            "1",
        ],
    );
    let step = &record.unwrap().steps[0];
    let timeouts = step
        .error_classes
        .get("request_timeout")
        .copied()
        .unwrap_or(0);
    let not_sent = step.error_classes.get("not_sent").copied().unwrap_or(0);
    assert!(timeouts >= 2, "{:?}", step.error_classes);
    assert!(not_sent >= 40, "{:?}", step.error_classes);
    assert_eq!(
        timeouts + not_sent,
        step.requests,
        "every request is accounted for"
    );
    assert_eq!(step.generator.not_sent, not_sent);
}

#[test]
fn a_target_that_dies_mid_run_leaves_a_complete_run() {
    let _serial = serial();
    let mut target = http_target(Http::Fast);
    let out = TempDir::new("dies");
    let url = target.url("/");
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(700));
        target.stop();
    });
    let (outcome, record) = knee_run(
        out.path(),
        &[
            "--no-check",
            "--url",
            &url,
            "--steps",
            "100,100",
            "--step-duration",
            "600ms",
            "--warmup",
            "0s",
        ],
    );
    stopper.join().unwrap();
    assert!(outcome.is_ok());
    let record = record.unwrap();
    assert_eq!(record.steps.len(), 2);
    assert_eq!(
        record.steps[0].errors, 0,
        "{:?}",
        record.steps[0].error_classes
    );
    let second = &record.steps[1];
    let refused = second
        .error_classes
        .get("connect_refused")
        .copied()
        .unwrap_or(0);
    assert!(refused > 0, "{:?}", second.error_classes);
    assert_eq!(read_steps_jsonl(out.path()).len(), 2);
}

#[test]
fn an_absurd_rate_ends_quickly_and_is_marked() {
    let _serial = serial();
    let target = http_target(Http::Fast);
    let out = TempDir::new("absurd");
    let url = target.url("/");
    let started = std::time::Instant::now();
    let (outcome, record) = knee_run(
        out.path(),
        &[
            "--no-check",
            "--url",
            &url,
            "--rate",
            "1000000",
            "--duration",
            "300ms",
            "--timeout",
            "500ms",
        ],
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert_eq!(outcome.unwrap(), knee::Outcome::SloFailed);
    let step = &record.unwrap().steps[0];
    assert!(!step.holds);
    assert!(
        step.generator.limited || step.generator.not_sent > 0,
        "a rate no generator can offer is either marked generator-limited or counted unsent: {:?}",
        step.generator
    );
}

/// A wrong URL ends before any load, in one line naming it and what came back (exit 2):
/// nothing listening, a path that answers 404 (unless allowed), a hunt alike. It used to run
/// a probe of failures and print "no knee reached: every step held".
#[test]
fn a_wrong_url_is_refused_before_any_load() {
    let refused = format!("http://127.0.0.1:{}/", closed_port());
    let target = http_target(Http::Fast);
    let missing = target.url("/missing");
    let out = TempDir::new("wrong-url");
    let o = out.path().to_str().unwrap();
    for (args, said) in [
        (
            vec!["knee", "hunt", refused.as_str(), "-q", "--out", o],
            "connection refused",
        ),
        (
            vec!["knee", "hunt", missing.as_str(), "-q", "--out", o],
            "answered 404 Not Found",
        ),
        (
            vec![
                "knee",
                "run",
                "--url",
                missing.as_str(),
                "--rate",
                "10",
                "--duration",
                "200ms",
                "--out",
                o,
            ],
            "answered 404",
        ),
    ] {
        let err = knee::run(args.clone()).expect_err("refused before any load");
        let message = err.to_string();
        assert_eq!(err.exit_code(), 2, "{message}");
        assert!(message.contains(said), "{message}");
        assert!(
            message.starts_with("target check: GET http://127.0.0.1:"),
            "{message}"
        );
        assert!(!message.contains('\n'));
        assert!(
            !out.join("steps.jsonl").exists(),
            "no half run folder is left"
        );
    }
    let (outcome, record) = knee_run(
        out.path(),
        &[
            "--url",
            &missing,
            "--rate",
            "20",
            "--duration",
            "200ms",
            "--allow-status",
            "4xx",
        ],
    );
    assert!(outcome.is_ok(), "{outcome:?}");
    assert!(record.unwrap().steps[0]
        .error_classes
        .contains_key("http_4xx"));
}

//! HTTPS (rustls, with and without --insecure), HTTP/2 (over TLS by ALPN, and h2c), and
//! knee's own HTTP/1.1 client against chunked, piecemeal, closing answers.

use crate::util::*;

fn run_ok(url: &str, extra: &[&str]) -> knee::model::step::StepResult {
    let out = TempDir::new("wire");
    let mut args = vec![
        "--url",
        url,
        "--rate",
        "200",
        "--duration",
        "300ms",
        "--warmup",
        "100ms",
    ];
    args.extend_from_slice(extra);
    let (outcome, record) = knee_run(out.path(), &args);
    assert!(outcome.is_ok(), "{outcome:?}");
    record.expect("run.json").steps.remove(0)
}

#[test]
fn https_with_a_self_signed_certificate_needs_insecure() {
    let target = wire_target(Wire::Tls);
    let url = format!("https://{}/", target.addr);
    let step = run_ok(&url, &["--insecure"]);
    assert_eq!(step.errors, 0, "{:?}", step.error_classes);
    assert_eq!(step.status_codes.get("200").copied(), Some(step.requests));
    // Without --insecure the certificate is checked, and refused: by the check before the
    // load, in one line (exit 2), and by every request of a run told not to check.
    let out = TempDir::new("tls-check");
    let (outcome, _) = knee_run(
        out.path(),
        &["--url", &url, "--rate", "10", "--duration", "200ms"],
    );
    let err = outcome.expect_err("the check refuses the certificate");
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("TLS handshake failed"), "{err}");
    let step = run_ok(&url, &["--no-check"]);
    assert_eq!(step.error_classes.get("tls").copied(), Some(step.requests));
}

#[test]
fn http2_over_tls_and_prior_knowledge() {
    let tls = wire_target(Wire::Tls);
    let step = run_ok(
        &format!("https://{}/", tls.addr),
        &["--insecure", "--http2"],
    );
    assert_eq!(step.errors, 0, "{:?}", step.error_classes);
    assert!(step.requests >= 50);
    let h2c = wire_target(Wire::H2c);
    let step = run_ok(&format!("http://{}/", h2c.addr), &["--http2"]);
    assert_eq!(step.errors, 0, "{:?}", step.error_classes);
    assert!(step.requests >= 50);
}

#[test]
fn chunked_answers_in_pieces_and_connections_the_server_closes() {
    // Every answer's body is chunked and written in four pieces; every fifth answer closes
    // its connection. Nothing of that is an error, and every request gets its 200.
    let target = raw_target(Raw::Chunked);
    for method in ["GET", "HEAD"] {
        let before = target.accepted.load(std::sync::atomic::Ordering::Relaxed);
        let step = run_ok(&target.url("/"), &["--method", method]);
        let sent = step.requests + step.warmup_requests;
        let opened = target.accepted.load(std::sync::atomic::Ordering::Relaxed) - before;
        // Up to five answers per connection (fewer on the connections the step ends with, or
        // that more workers share out): a connection dropped early, say on a trailer taken
        // for stray bytes, would open one per request.
        assert!(
            opened as u64 * 3 <= sent,
            "{method}: {opened} connections for {sent} requests"
        );
        assert!(step.requests >= 50, "{method}: {} requests", step.requests);
        assert_eq!(step.errors, 0, "{method}: {:?}", step.error_classes);
        assert_eq!(
            step.status_codes.get("200").copied(),
            Some(step.requests),
            "{method}"
        );
    }
}

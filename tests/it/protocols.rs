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

/// An h2c target whose handler takes 20 ms and which allows `max_streams` streams per
/// connection (SETTINGS_MAX_CONCURRENT_STREAMS).
fn h2c_target(max_streams: u32) -> Target {
    use hyper::server::conn::http2;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    serve_each(move |stream| async move {
        let service = hyper::service::service_fn(|_req| async {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(
                bytes::Bytes::from_static(b"ok"),
            )))
        });
        let _ = http2::Builder::new(TokioExecutor::new())
            .max_concurrent_streams(max_streams)
            .serve_connection(TokioIo::new(stream), service)
            .await;
    })
}

/// An h2c target that answers every request by resetting its stream (RST_STREAM
/// REFUSED_STREAM), or, with `goaway`, by ending the connection (GOAWAY).
fn refusing_h2c_target(goaway: bool) -> Target {
    serve_each(move |stream| {
        async move {
            let Ok(mut conn) = h2::server::handshake(stream).await else {
                return;
            };
            if goaway {
                // GOAWAY naming no stream as processed: whatever the client sent is
                // refused by it.
                conn.abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM);
            }
            while let Some(Ok((_request, mut respond))) = conn.accept().await {
                respond.send_reset(h2::Reason::REFUSED_STREAM);
            }
        }
    })
}

#[test]
fn many_streams_share_few_http2_connections() {
    let target = h2c_target(4);
    let url = format!("http://{}/", target.addr);
    let out = TempDir::new("h2-streams");
    let args = [
        "--url",
        &url,
        "--http2",
        "--h2-streams",
        "8",
        "--concurrency",
        "16",
        "--duration",
        "600ms",
        "--warmup",
        "200ms",
    ];
    let (outcome, record) = knee_run(out.path(), &args);
    assert!(outcome.is_ok(), "{outcome:?}");
    let step = &record.unwrap().steps[0];
    assert_eq!(step.errors, 0, "{:?}", step.error_classes);
    // 16 workers, 8 streams a connection: two connections (one per lane), not sixteen.
    let g = &step.generator;
    assert!(g.connections <= 4, "{g:?}");
    let per = g.streams_per_connection.expect("streams per connection");
    assert!(per >= 2.0, "{g:?} in flight {}", step.in_flight_mean);
    // The server allows 4 streams at once per connection, each 20 ms: with 2 connections
    // at most 400 answers/s; the rest wait for a stream, counted in latency.
    assert!(step.achieved_rps <= 480.0, "{}", step.achieved_rps);
    // Without --http2 it is refused in one line.
    let (outcome, _) = knee_run(
        out.path(),
        &[
            "--url",
            &url,
            "--h2-streams",
            "8",
            "--rate",
            "10",
            "--duration",
            "1s",
        ],
    );
    let err = outcome.unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("give --http2 too"), "{err}");
}

#[test]
fn http2_resets_and_goaways_are_error_classes_of_their_own() {
    for (goaway, class) in [(false, "h2_reset"), (true, "h2_goaway")] {
        let target = refusing_h2c_target(goaway);
        let step = run_ok(
            &format!("http://{}/", target.addr),
            &["--http2", "--no-check", "--h2-streams", "4"],
        );
        let counted = step.error_classes.get(class).copied().unwrap_or(0);
        assert!(counted > 0, "{class}: {:?}", step.error_classes);
        if !goaway {
            assert_eq!(counted, step.requests, "{:?}", step.error_classes);
        }
    }
}

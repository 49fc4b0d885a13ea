//! HTTPS (rustls, with and without --insecure) and HTTP/2 (over TLS by ALPN, and h2c).

use crate::util::*;

fn run_ok(url: &str, extra: &[&str]) -> knee::step::StepResult {
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
    // Without --insecure the certificate is checked, and refused.
    let step = run_ok(&url, &[]);
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

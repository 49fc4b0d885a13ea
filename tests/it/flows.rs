//! User flows against a login service written here: a user logs in with its feeder row's
//! password, carries the token (a JSON field) and the session (a header) into the next
//! requests, and a login that gives no token ends the flow cleanly (`extract_failed`, the
//! later steps never sent).

use crate::util::{knee_run, serial, serve_each, Target, TempDir};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

/// What the service saw: requests by "METHOD path-without-query outcome".
type Seen = Arc<Mutex<BTreeMap<String, u64>>>;

/// POST /login `{"user":U,"password":P}`: 200 `{"token":"tok-U"}` and `X-Session: s-U` when
/// P is "pw-U" (200 without a token for the user "ghost"), else 401. GET /me wants
/// `Authorization: Bearer tok-U`; GET /orders wants `?session=s-U`; anything else is 401.
fn login_target(seen: Seen) -> Target {
    serve_each(move |stream| {
        let seen = seen.clone();
        async move {
            let service = service_fn(move |req| answer(seen.clone(), req));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }
    })
}

async fn answer(seen: Seen, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let mut session = None;
    let (status, text) = match (parts.method.as_str(), parts.uri.path()) {
        ("POST", "/login") => {
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let user = json["user"].as_str().unwrap_or_default().to_string();
            match json["password"].as_str() {
                Some(p) if p == format!("pw-{user}") && user == "ghost" => {
                    session = Some(format!("s-{user}"));
                    (200, "{\"error\":\"no token today\"}".to_string())
                }
                Some(p) if p == format!("pw-{user}") => {
                    session = Some(format!("s-{user}"));
                    (
                        200,
                        format!("{{\"token\":\"tok-{user}\",\"user\":\"{user}\"}}"),
                    )
                }
                _ => (401, String::new()),
            }
        }
        ("GET", "/me") => match header("authorization").strip_prefix("Bearer tok-") {
            Some(user) if !user.is_empty() => (200, format!("{{\"user\":\"{user}\"}}")),
            _ => (401, String::new()),
        },
        ("GET", "/orders") => match parts.uri.query().and_then(|q| q.strip_prefix("session=s-")) {
            Some(user) if !user.is_empty() => (200, "[]".to_string()),
            _ => (401, String::new()),
        },
        _ => (401, String::new()),
    };
    let key = format!("{} {} {status}", parts.method, parts.uri.path());
    *seen.lock().unwrap().entry(key).or_insert(0) += 1;
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    if let Some(session) = session {
        response
            .headers_mut()
            .insert("x-session", session.parse().unwrap());
    }
    Ok(response)
}

/// A profile of one flow, "shop": log in (token from the JSON, session from a header),
/// read /me with the token, then /orders with the session; `users` is the feeder's rows.
fn shop_profile(dir: &TempDir, url: &str, users: &[&str], load: &str) -> std::path::PathBuf {
    let mut csv = "user,password\n".to_string();
    for user in users {
        csv.push_str(&format!("{user},pw-{user}\n"));
    }
    std::fs::write(dir.join("users.csv"), csv).unwrap();
    let profile = dir.join("shop.toml");
    let text = format!(
        r#"[target]
url = "{url}"

[[flows]]
name = "shop"
think = "5ms"
feeder = "users.csv"

[[flows.steps]]
name = "login"
method = "POST"
path = "/login"
body = '{{"user":"${{user}}","password":"${{password}}"}}'
headers = {{ "Content-Type" = "application/json" }}
extract = {{ token = {{ json = "/token" }}, session = {{ header = "X-Session" }} }}

[[flows.steps]]
name = "me"
path = "/me"
headers = {{ Authorization = "Bearer ${{token}}" }}

[[flows.steps]]
name = "orders"
path = "/orders?session=${{session}}"
{load}"#
    );
    std::fs::write(&profile, text).unwrap();
    profile
}

const LOAD: &str = "[load]\nrate = 20\nduration = \"1s\"\nwarmup = \"200ms\"\n";

#[test]
fn a_flow_logs_in_and_carries_its_token_and_session() {
    let _serial = serial();
    let seen = Seen::default();
    let target = login_target(seen.clone());
    let dir = TempDir::new("flows");
    let profile = shop_profile(&dir, &target.url(""), &["ann", "bob", "cy"], LOAD);
    let (outcome, record) = knee_run(&dir.join("out"), &[profile.to_str().unwrap()]);
    assert!(matches!(outcome, Ok(knee::Outcome::Passed)), "{outcome:?}");
    let step = &record.unwrap().steps[0];
    let flows = step.flows.clone().expect("a flow step has its flows");
    // 20 flows/s for 1 s counted: each started flow completed (or was cut at the end).
    assert!((18..=22).contains(&flows.started), "{flows:?}");
    assert_eq!(flows.failed, 0, "{flows:?}");
    assert_eq!(flows.completed + flows.cut, flows.started, "{flows:?}");
    assert!(flows.completed >= flows.started - 2, "{flows:?}");
    assert_eq!(step.errors, 0, "{:?}", step.error_classes);
    // The step's rates are flows per second.
    assert!(
        (15.0..=25.0).contains(&step.achieved_rps),
        "{}",
        step.achieved_rps
    );
    let names: Vec<&str> = step.by_request.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["shop/login", "shop/me", "shop/orders"]);
    for request in &step.by_request {
        assert!((17..=22).contains(&request.requests), "{request:?}");
    }
    // Every token and session the service handed out came back to it: no 401 at all.
    let seen_now = seen.lock().unwrap().clone();
    assert!(seen_now.keys().all(|k| k.ends_with(" 200")), "{seen_now:?}");
    assert!(seen_now["GET /orders 200"] >= 20, "{seen_now:?}");
    // Closed model: 4 users run flows back to back; the step's end cuts at most one each.
    let (outcome, record) = knee_run(
        &dir.join("closed"),
        &[profile.to_str().unwrap(), "--concurrency", "4"],
    );
    assert!(matches!(outcome, Ok(knee::Outcome::Passed)), "{outcome:?}");
    let step = &record.unwrap().steps[0];
    let flows = step.flows.clone().unwrap();
    assert!(flows.cut <= 4, "{flows:?}");
    assert_eq!(flows.completed + flows.cut, flows.started, "{flows:?}");
    assert!(flows.completed >= 20, "{flows:?}");
    assert!(seen.lock().unwrap().keys().all(|k| k.ends_with(" 200")));
}

#[test]
fn a_login_without_a_token_ends_its_flow_as_extract_failed() {
    let _serial = serial();
    let seen = Seen::default();
    let target = login_target(seen.clone());
    let dir = TempDir::new("flows-ghost");
    // Every third user logs in and gets no token.
    let profile = shop_profile(&dir, &target.url(""), &["ann", "ghost", "bob"], LOAD);
    let (outcome, record) = knee_run(&dir.join("out"), &[profile.to_str().unwrap()]);
    assert!(
        matches!(outcome, Ok(knee::Outcome::SloFailed)),
        "{outcome:?}"
    );
    let step = &record.unwrap().steps[0];
    let flows = step.flows.clone().unwrap();
    let ghosts = step
        .error_classes
        .get("extract_failed")
        .copied()
        .unwrap_or(0);
    assert!((5..=9).contains(&ghosts), "{:?}", step.error_classes);
    assert_eq!(step.errors, ghosts, "{:?}", step.error_classes);
    assert!(flows.failed.abs_diff(ghosts) <= 1, "{flows:?} {ghosts}");
    // The error is the login's: the steps after it were never sent.
    let login = &step.by_request[0];
    assert_eq!(login.name, "shop/login");
    assert_eq!(login.errors, ghosts, "{login:?}");
    let me = &step.by_request[1];
    assert_eq!(me.errors, 0, "{me:?}");
    assert!(
        me.requests + ghosts <= login.requests + 1,
        "{me:?} {login:?}"
    );
    let seen = seen.lock().unwrap().clone();
    assert!(
        !seen.contains_key("GET /me 401"),
        "no request without its token: {seen:?}"
    );
}

#[test]
fn flows_are_checked_before_the_load_and_their_variables_when_read() {
    let _serial = serial();
    let target = login_target(Seen::default());
    let dir = TempDir::new("flows-bad");
    // Only the ghost: the check before the load runs the flow once and stops there.
    let profile = shop_profile(&dir, &target.url(""), &["ghost"], LOAD);
    let (outcome, _) = knee_run(&dir.join("out"), &[profile.to_str().unwrap()]);
    let error = outcome.unwrap_err();
    assert_eq!(error.exit_code(), 2);
    assert_eq!(
        error.to_string(),
        "target check: flow shop, step shop/login: no token (json /token) in the answer (is the step's extract right? skip the check: --no-check)"
    );
    // A variable nothing gives is an error at its place in the profile.
    let text = std::fs::read_to_string(&profile)
        .unwrap()
        .replace("/me\"", "/me/${tokn}\"");
    std::fs::write(&profile, text).unwrap();
    let (outcome, _) = knee_run(&dir.join("out2"), &[profile.to_str().unwrap()]);
    let error = outcome.unwrap_err();
    assert_eq!(error.exit_code(), 2);
    let message = error.to_string();
    assert!(message.contains("shop.toml:19:8: ${tokn} is not a feeder column nor a value an earlier step of flow 'shop' extracts"), "{message}");
}

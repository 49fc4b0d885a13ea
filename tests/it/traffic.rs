//! Realistic traffic: `knee import` turns an access log or a HAR file into a profile that
//! knee runs as it is.

use crate::util::*;

/// Three endpoints, ids in their paths, an error answer, a line that is not a log line and
/// a POST without a body, over 2 minutes with a busy second.
const ACCESS_LOG: &str = r#"10.0.0.1 - - [02/Dec/2026:16:00:00 +0000] "GET /users/42?full=1 HTTP/1.1" 200 512 "-" "curl/8"
10.0.0.1 - - [02/Dec/2026:16:00:01 +0000] "GET /users/42 HTTP/1.1" 200 512 "-" "curl/8"
10.0.0.2 - - [02/Dec/2026:16:00:01 +0000] "GET /users/7 HTTP/1.1" 200 512 "-" "curl/8"
10.0.0.2 - - [02/Dec/2026:16:00:01 +0000] "GET /users/7 HTTP/1.1" 200 512 "-" "curl/8"
10.0.0.3 - - [02/Dec/2026:16:00:01 +0000] "GET /search?q=knee HTTP/1.1" 200 99 "-" "curl/8"
this line was cut by a log rotation
10.0.0.3 - - [02/Dec/2026:16:01:00 +0000] "POST /orders HTTP/1.1" 201 10 "-" "curl/8"
10.0.0.4 - - [02/Dec/2026:16:01:30 +0000] "GET /missing HTTP/1.1" 404 0 "-" "curl/8"
10.0.0.4 - - [02/Dec/2026:16:02:00 +0000] "GET /users/123e4567-e89b-12d3-a456-426614174000 HTTP/1.1" 200 512 "-" "curl/8"
"#;

fn import(args: &[&str]) -> (std::process::Output, String) {
    let output = std::process::Command::new(knee_bin())
        .arg("import")
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stderr)
}

/// The endpoints of an imported profile: name → [(path, weight)].
fn requests(profile: &str) -> Vec<(String, String, u64)> {
    let doc: toml::Table = profile.parse().expect("the profile is TOML");
    doc["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["path"].as_str().unwrap().to_string(),
                r["weight"].as_integer().unwrap() as u64,
            )
        })
        .collect()
}

#[test]
fn an_access_log_becomes_a_profile_knee_runs() {
    let target = http_target(Http::Fast);
    let dir = TempDir::new("import");
    let log = dir.join("access.log");
    std::fs::write(&log, ACCESS_LOG).unwrap();
    let profile_path = dir.join("imported.toml");
    let base = target.url("");
    let (output, stderr) = import(&[
        log.to_str().unwrap(),
        "--url",
        base.trim_end_matches('/'),
        "--out",
        profile_path.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "8 requests read (nginx/Apache combined or common), 7 imported as 3 endpoints"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("skipped 1 answered 4xx/5xx"), "{stderr}");
    assert!(
        stderr.contains("skipped 1 lines not understood (the first: ")
            && stderr.contains("access.log:6: no [time])"),
        "{stderr}"
    );
    assert!(
        stderr.contains("over 2m: mean") && stderr.contains("peak 4 req/s in one second"),
        "{stderr}"
    );
    assert!(
        stderr.contains("POST /orders: the file carries no body"),
        "{stderr}"
    );
    let profile = std::fs::read_to_string(&profile_path).unwrap();
    let requests = requests(&profile);
    let users: Vec<&(String, String, u64)> = requests
        .iter()
        .filter(|r| r.0 == "GET /users/{id}")
        .collect();
    assert_eq!(users.len(), 4, "{requests:?}");
    let weight_of = |path: &str| users.iter().find(|r| r.1 == path).map(|r| r.2);
    assert_eq!(weight_of("/users/7"), Some(2));
    assert_eq!(weight_of("/users/42"), Some(1));
    assert_eq!(weight_of("/users/42?full=1"), Some(1));
    assert!(requests
        .iter()
        .any(|r| r.0 == "GET /search" && r.1 == "/search?q=knee"));
    assert!(!requests.iter().any(|r| r.1 == "/missing"), "{requests:?}");
    // Flags override the imported hunt: one short step of the imported mix.
    let run = dir.join("run");
    let (outcome, record) = knee_run(
        &run,
        &[
            profile_path.to_str().unwrap(),
            "--rate",
            "50",
            "--duration",
            "500ms",
        ],
    );
    let record = record.unwrap_or_else(|| panic!("{outcome:?}"));
    assert!(record.hunt.is_none(), "the flags' one step, not a hunt");
    assert_eq!(record.steps.len(), 1);
    let step = &record.steps[0];
    assert_eq!(step.offered_rps, Some(50.0));
    assert!(step.requests >= 15, "{step:?}");
    assert_eq!(step.errors, 0, "every imported path answers: {step:?}");
}

#[test]
fn a_har_file_keeps_headers_and_bodies_but_not_credentials() {
    let dir = TempDir::new("import-har");
    let har = dir.join("session.har");
    std::fs::write(
        &har,
        r#"{"log":{"entries":[
          {"startedDateTime":"2026-12-02T16:15:27.000Z","request":{"method":"POST","url":"http://127.0.0.1:9/api/cart",
            "headers":[{"name":"Cookie","value":"session=s3cr3t"},{"name":"Content-Type","value":"application/json"}],
            "postData":{"mimeType":"application/json","text":"{\"sku\":17}"}},"response":{"status":201}},
          {"startedDateTime":"2026-12-02T16:15:28.000Z","request":{"method":"GET","url":"http://127.0.0.1:9/api/cart/99",
            "headers":[{"name":"Authorization","value":"Bearer t0ken"}]},"response":{"status":200}}]}}"#,
    )
    .unwrap();
    let (output, stderr) = import(&[har.to_str().unwrap()]);
    assert!(output.status.success(), "{stderr}");
    let profile = String::from_utf8_lossy(&output.stdout);
    assert!(
        !profile.contains("s3cr3t") && !profile.contains("t0ken"),
        "{profile}"
    );
    let doc: toml::Table = profile.parse().unwrap();
    assert_eq!(doc["target"]["url"].as_str(), Some("http://127.0.0.1:9"));
    let cart = doc["requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"].as_str() == Some("POST /api/cart"))
        .unwrap_or_else(|| panic!("{profile}"));
    assert_eq!(cart["body"].as_str(), Some("{\"sku\":17}"));
    assert_eq!(cart["headers"]["Cookie"].as_str(), Some("${KNEE_COOKIE}"));
    assert_eq!(
        cart["headers"]["Content-Type"].as_str(),
        Some("application/json")
    );
    assert!(
        profile.contains("name = \"GET /api/cart/{id}\""),
        "{profile}"
    );
}

#[test]
fn bad_input_is_one_line_naming_the_file_and_line() {
    let dir = TempDir::new("import-bad");
    let log = dir.join("broken.log");
    std::fs::write(&log, "not a log line\nnor this\n").unwrap();
    let (output, stderr) = import(&[log.to_str().unwrap(), "--url", "http://127.0.0.1:9"]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("broken.log:1: no [time]"), "{stderr}");
    let good = dir.join("good.log");
    std::fs::write(&good, ACCESS_LOG.lines().next().unwrap()).unwrap();
    let (output, stderr) = import(&[good.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr
            .contains("good.log: an access log does not say which host it served: give --url BASE"),
        "{stderr}"
    );
}

/// A demo process, stopped when dropped (a failing test leaves none behind).
struct Demo(std::process::Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The demo with a pool of two slots held 10 ms each (200 req/s), as a process of its own.
fn pool_demo() -> (Demo, String) {
    let (child, line) = spawn_reading_first_line(std::process::Command::new(knee_bin()).args([
        "demo",
        "--port",
        "0",
        "--pool-slots",
        "2",
        "--no-metrics",
    ]));
    let base = line.rsplit(' ').next().unwrap().to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{line}");
    (Demo(child), base)
}

/// A mix of the pool (200 req/s) and an answer at once, half each, as a profile; `load` is
/// its [load] table, or none for a hunt.
fn mix_profile(dir: &TempDir, base: &str, pool_slo: &str, load: &str) -> std::path::PathBuf {
    let profile = dir.join("mix.toml");
    let kind = if load.is_empty() { "hunt" } else { "load" };
    let text = format!(
        "kind = \"{kind}\"\n[target]\nurl = \"{base}\"\n\
         [[requests]]\nname = \"pool\"\npath = \"/pool\"\n{pool_slo}\
         [[requests]]\nname = \"home\"\npath = \"/\"\n{load}"
    );
    std::fs::write(&profile, text).unwrap();
    profile
}

#[test]
fn the_endpoint_that_broke_first_is_named_with_its_share_of_the_load() {
    let _serial = serial();
    let (demo, base) = pool_demo();
    let dir = TempDir::new("mix-hunt");
    let profile = mix_profile(&dir, &base, "", "");
    let out = TempDir::new("mix-hunt-run");
    let mut args = vec![
        "hunt",
        "--profile",
        profile.to_str().unwrap(),
        "--slo",
        "p99=100ms",
        "--profiler",
        "none",
        "--offcpu",
        "off",
    ];
    args.extend(crate::waits::HUNT);
    let (record, stderr) = knee_child_in(&out, &args);
    drop(demo);
    // Each step has both requests, their counts adding up to the step's.
    for step in &record.steps {
        let names: Vec<&str> = step.by_request.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["pool", "home"], "{}", step.name);
        let sum: u64 = step.by_request.iter().map(|r| r.requests).sum();
        assert_eq!(sum, step.requests, "{}", step.name);
    }
    let verdict = record.verdict.clone().unwrap();
    let first = verdict.broke_first.clone().unwrap_or_default();
    eprintln!("{first}\n{stderr}");
    // "pool broke first: p99 … at T req/s total (P req/s of it), while home held to …"
    assert!(first.starts_with("pool broke first: "), "{first}");
    let at = first.split(" at ").nth(1).unwrap_or_default();
    let total: f64 = at.split(' ').next().unwrap().parse().unwrap();
    let own: f64 = at
        .split('(')
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // The pool's 200 req/s is half the mix: it gives way near 400 req/s in all.
    assert!((250.0..=700.0).contains(&total), "{first}");
    assert!((own / total - 0.5).abs() < 0.1, "{first}");
    assert!(first.contains(", while home held to "), "{first}");
    // The reports show each request.
    let markdown = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        markdown.contains("## Requests") && markdown.contains("| pool |"),
        "{markdown}"
    );
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("p99 per request"), "the per-request chart");
}

#[test]
fn a_requests_own_slo_holds_the_step_to_it() {
    let _serial = serial();
    let (demo, base) = pool_demo();
    let dir = TempDir::new("mix-slo");
    // The pool holds each request 10 ms: a 5 ms p99 of its own cannot be met.
    let load = "[load]\nrate = 40\nduration = \"1s\"\n";
    let profile = mix_profile(&dir, &base, "[requests.slo]\np99 = \"5ms\"\n", load);
    let out = dir.join("out");
    let profile_arg = profile.to_str().unwrap();
    let (outcome, record) = knee_run(&out, &[profile_arg]);
    drop(demo);
    assert!(
        matches!(outcome, Ok(knee::Outcome::SloFailed)),
        "{outcome:?}"
    );
    let step = &record.unwrap().steps[0];
    assert!(!step.holds);
    assert!(
        step.slo_failures
            .iter()
            .any(|f| f.starts_with("pool: p99 ")),
        "{:?}",
        step.slo_failures
    );
    let (pool, home) = (&step.by_request[0], &step.by_request[1]);
    assert!(pool.own_slo && !pool.holds, "{pool:?}");
    assert!(!home.own_slo && home.holds, "{home:?}");
    assert!(pool.latency_ms.p50 >= 9.0, "{pool:?}");
    // A bad objective there is an input error pointing at itself.
    let bad = mix_profile(&dir, &base, "[requests.slo]\np99 = \"soon\"\n", load);
    let (outcome, _) = knee_run(&dir.join("bad"), &[bad.to_str().unwrap()]);
    let error = outcome.unwrap_err();
    assert_eq!(error.exit_code(), 2);
    assert!(error.to_string().contains("mix.toml:8:"), "{error}");
}

#[test]
fn a_log_is_replayed_at_its_recorded_times_and_its_burst_stays_a_burst() {
    let _serial = serial();
    let target = http_target(Http::Fast);
    let dir = TempDir::new("replay");
    let log = dir.join("access.log");
    std::fs::write(&log, ACCESS_LOG).unwrap();
    let out = dir.join("out");
    // Two minutes (and the last second) at 60x: about 2 s.
    let (outcome, record) = knee_run(
        &out,
        &[
            "--replay",
            log.to_str().unwrap(),
            "--url",
            &target.url(""),
            "--speed",
            "60x",
        ],
    );
    assert!(outcome.is_ok(), "{outcome:?}");
    let step = &record.unwrap().steps[0];
    // Seven of nine lines: one is not a log line, one answered 404.
    assert_eq!(
        (step.name.as_str(), step.requests, step.errors),
        ("replay", 7, 0)
    );
    assert!(
        (1.9..=2.2).contains(&step.duration_s),
        "{}",
        step.duration_s
    );
    let names: Vec<&str> = step.by_request.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["GET /users/{id}", "GET /search", "POST /orders"]);
    // The busy second (16:00:01: four requests) lands within its 1/60 s, in one slice or two.
    let busy: Vec<u64> = step
        .slices
        .iter()
        .map(|s| s.requests)
        .filter(|n| *n > 0)
        .collect();
    assert!(busy.iter().any(|n| *n >= 2), "{busy:?}");
    // --rate scales the log to that mean rate instead.
    let (outcome, record) = knee_run(
        &dir.join("rated"),
        &[
            "--replay",
            log.to_str().unwrap(),
            "--url",
            &target.url(""),
            "--rate",
            "7",
        ],
    );
    assert!(outcome.is_ok(), "{outcome:?}");
    let step = &record.unwrap().steps[0];
    assert!(
        (0.9..=1.2).contains(&step.duration_s),
        "{}",
        step.duration_s
    );
    // A speed that is not one: one line, exit 2.
    let (outcome, _) = knee_run(
        &dir.join("bad"),
        &[
            "--replay",
            log.to_str().unwrap(),
            "--url",
            &target.url(""),
            "--speed",
            "fast",
        ],
    );
    let error = outcome.unwrap_err();
    assert_eq!(error.exit_code(), 2, "{error}");
}

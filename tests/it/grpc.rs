//! gRPC unary calls against a tonic service knee did not shape (examples/grpc_shop.rs, a
//! separate process): the request's JSON encoded from the server's reflection or from a
//! .proto, gRPC status codes as error classes, what cannot be called as one line, and a hunt
//! that finds the service's lock from its stacks.

use crate::tools::have;
use crate::util::{example_binary, knee_bin, serial, spawn_reading_first_line, TempDir};
use knee::output::RunRecord;
use std::process::{Child, Command, Output};

/// examples/grpc_shop.rs (stopped when dropped).
struct Shop {
    child: Child,
    url: String,
}

impl Shop {
    fn start() -> Shop {
        let binary = example_binary("grpc_shop");
        let (child, port) = spawn_reading_first_line(Command::new(&binary).arg("180"));
        Shop {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Shop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn proto() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/examples/shop.proto").to_string()
}

/// `knee run --url URL ARGS` for one second at 50 calls/s; its output and record.
fn run(url: &str, args: &[&str]) -> (Output, Option<RunRecord>, TempDir) {
    let out = TempDir::new("grpc");
    let output = Command::new(knee_bin())
        .args(["run", "-q", "--no-sample", "--url", url, "--rate", "50"])
        .args(["--duration", "1s", "--warmup", "0s", "--out"])
        .arg(out.path())
        .args(args)
        .output()
        .unwrap();
    let record = RunRecord::read(&out.join("run.json")).ok();
    (output, record, out)
}

/// `knee run -q --no-sample PROFILE`, its run folder in `out`.
fn run_profile(profile: &std::path::Path, out: &std::path::Path) -> Output {
    Command::new(knee_bin())
        .args(["run", "-q", "--no-sample", "--out"])
        .arg(out)
        .arg(profile)
        .output()
        .unwrap()
}

/// Asserts a bad-input exit (2) whose stderr says `expected`; the stderr.
fn input_error(output: &Output, expected: &str) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(expected), "{stderr}");
    stderr
}

#[test]
fn a_call_is_encoded_from_reflection_or_a_proto_and_answered() {
    let shop = Shop::start();
    let body = r#"{"item": "apple", "count": 2}"#;
    let proto = proto();
    for extra in [vec![], vec!["--proto", proto.as_str()]] {
        let mut args = vec!["--grpc", "shop.Shop/Reserve", "--body", body];
        args.extend(extra.iter().copied());
        let (output, record, _dir) = run(&shop.url, &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
        let record = record.unwrap();
        // The run (its folder, its reports' title) is named for the method.
        assert_eq!(record.name, "shop.Shop-Reserve");
        let step = &record.steps[0];
        assert!((45..=55).contains(&step.requests), "{}", step.requests);
        assert_eq!(step.errors, 0, "{:?}", step.error_classes);
        assert_eq!(step.status_codes.get("200"), Some(&step.requests));
        // Each call took the lock 4 ms.
        assert!(step.latency_ms.p50 >= 4.0, "{:?}", step.latency_ms);
    }
}

#[test]
fn a_profile_names_the_method_its_proto_its_json_and_metadata() {
    let shop = Shop::start();
    let dir = TempDir::new("grpc-profile");
    std::fs::copy(proto(), dir.join("shop.proto")).unwrap();
    let profile = dir.join("grpc.toml");
    let text = format!(
        "[target]\nurl = \"{}\"\ngrpc = \"shop.Shop/Reserve\"\nproto = \"shop.proto\"\n\
         body = '{{\"item\": \"pear\", \"count\": 3}}'\n\
         headers = {{ \"X-Tenant\" = \"a\" }}\n\
         [load]\nrate = 40\nduration = \"1s\"\nwarmup = \"0s\"\n",
        shop.url
    );
    std::fs::write(&profile, text).unwrap();
    let out = dir.join("out");
    let output = run_profile(&profile, &out);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let record = RunRecord::read(&out.join("run.json")).unwrap();
    let step = &record.steps[0];
    assert!((36..=44).contains(&step.requests), "{}", step.requests);
    assert_eq!(step.errors, 0, "{:?}", step.error_classes);
    // The profile's JSON was checked against the .proto beside it: a field it lacks is an
    // error before any load.
    std::fs::write(
        &profile,
        std::fs::read_to_string(&profile)
            .unwrap()
            .replace("\"count\"", "\"cuont\""),
    )
    .unwrap();
    let output = run_profile(&profile, &dir.join("out2"));
    input_error(&output, "unrecognized field name 'cuont'");
}

#[test]
fn grpc_status_codes_are_error_classes_of_their_own() {
    let shop = Shop::start();
    for (code, class) in [
        (8, "grpc_resource_exhausted"),
        (14, "grpc_unavailable"),
        (4, "grpc_deadline_exceeded"),
    ] {
        let body = format!(r#"{{"code": {code}}}"#);
        let (output, record, _dir) = run(
            &shop.url,
            &["--grpc", "shop.Shop/Fail", "--body", &body, "--no-check"],
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        // Every call failed: the default SLO (errors <= 1 %) fails, and the run says so.
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        let step = &record.unwrap().steps[0];
        assert!(step.requests >= 45, "{}", step.requests);
        assert_eq!(step.errors, step.requests);
        assert_eq!(
            step.error_classes.get(class),
            Some(&step.requests),
            "{:?}",
            step.error_classes
        );
        // A status is an answer: HTTP 200, and the connection kept (one, not one per call).
        assert_eq!(step.status_codes.get("200"), Some(&step.requests));
        assert!(step.achieved_rps > 40.0, "{}", step.achieved_rps);
        assert!(
            step.generator.connections_opened <= 2,
            "{:?}",
            step.generator
        );
    }
    // Without --no-check, the check before the load stops at the first call.
    let (output, _, _dir) = run(
        &shop.url,
        &["--grpc", "shop.Shop/Fail", "--body", r#"{"code": 14}"#],
    );
    input_error(&output, "answered gRPC status 14 (UNAVAILABLE)");
}

#[test]
fn what_cannot_be_called_is_one_line_and_exit_2() {
    let shop = Shop::start();
    let cases: [(&[&str], &str); 5] = [
        (
            &["--grpc", "shop.Shop/Reserv"],
            "service shop.Shop has no method Reserv (it has: Reserve, Burn, Fail, Watch)",
        ),
        (&["--grpc", "shop.Shop/Watch"], "unary methods only"),
        (
            &["--grpc", "shop.Shop/Reserve", "--body", r#"{"itm": 1}"#],
            "--body is not a shop.ReserveRequest in JSON: unrecognized field name 'itm'",
        ),
        (&["--grpc", "shop.Shop"], "is not package.Service/Method"),
        (
            &["--grpc", "nope.Nope/Call"],
            "the server's reflection answered NOT_FOUND for service nope.Nope (gRPC status 5)",
        ),
    ];
    for (args, expected) in cases {
        let (output, _, _dir) = run(&shop.url, args);
        let stderr = input_error(&output, expected);
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
    }
    // A .proto with a syntax error names file:line:col.
    let dir = TempDir::new("grpc-proto");
    let bad = dir.join("bad.proto");
    std::fs::write(
        &bad,
        "syntax = \"proto3\";\nmessage A {\n  string x = \n}\n",
    )
    .unwrap();
    let bad = bad.to_string_lossy().into_owned();
    let (output, _, _dir) = run(&shop.url, &["--grpc", "shop.Shop/Reserve", "--proto", &bad]);
    input_error(&output, &format!("{bad}:4:1: "));
    // Nothing listening: reflection cannot be asked, and the line says what to give instead.
    let closed = format!("http://127.0.0.1:{}", crate::util::free_port());
    let (output, _, _dir) = run(&closed, &["--grpc", "shop.Shop/Reserve"]);
    let stderr = input_error(&output, "connect_refused");
    assert!(stderr.contains("--proto FILE"), "{stderr}");
}

/// The issue's "done when": a hunt of the gRPC service names its lock, from its stacks.
#[test]
fn a_grpc_hunt_finds_the_services_lock() {
    let _serial = serial();
    if !have("perf", "a_grpc_hunt_finds_the_services_lock") {
        return;
    }
    let shop = Shop::start();
    let out = TempDir::new("grpc-hunt");
    let output = Command::new(knee_bin())
        .args(["hunt", &shop.url, "-q", "--out"])
        .arg(out.path())
        .args([
            "--grpc",
            "shop.Shop/Reserve",
            "--body",
            r#"{"item": "apple"}"#,
        ])
        .args(crate::waits::HUNT)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.code().is_some_and(|c| c <= 1), "{stderr}");
    let record = RunRecord::read(&out.join("run.json")).unwrap();
    let verdict = record.verdict.unwrap();
    assert_eq!(verdict.kind, "lock", "{verdict:#?}");
    assert_eq!(
        verdict.site.as_deref(),
        Some("grpc_shop::reserve_in_ledger")
    );
    // The lock is held 4 ms a call: at most 250 calls/s.
    let capacity = record.hunt.unwrap().capacity_rps.unwrap();
    assert!((150.0..=260.0).contains(&capacity), "{capacity}");
}

//! Profiles: the shipped examples parse, and broken ones give one line naming
//! file:line:col and the problem, with exit code 2.

use crate::util::*;
use std::process::Command;

const GOOD_HEAD: &str = "[target]\nurl = \"http://127.0.0.1:9/\"\n";

/// (what is wrong, profile text, expected "line:col", words the message must contain)
fn broken_profiles() -> Vec<(&'static str, String, &'static str, &'static str)> {
    vec![
        ("not TOML", "[target\nurl = 1\n".into(), "1:8", "unclosed table"),
        ("unknown key", format!("{GOOD_HEAD}[load]\nrate = 10\nduration = \"1s\"\nspeed = 3\n"), "6:1", "unknown field `speed`"),
        ("zero rate", format!("{GOOD_HEAD}[load]\nrate = 0\nduration = \"1s\"\n"), "4:8", "rate 0 must be above 0"),
        ("negative rate", format!("{GOOD_HEAD}[load]\nrates = [10, -5]\nduration = \"1s\"\n"), "4:14", "must be above 0"),
        ("absurd rate", format!("{GOOD_HEAD}[load]\nrate = 10000000\nduration = \"1s\"\n"), "4:8", "above the 1000000"),
        ("duration without unit", format!("{GOOD_HEAD}[load]\nrate = 10\nduration = \"10\"\n"), "5:12", "needs a unit"),
        ("no load", format!("{GOOD_HEAD}[load]\nduration = \"1s\"\n"), "3:1", "needs rate"),
        ("no duration", format!("{GOOD_HEAD}[load]\nrate = 5\n"), "3:1", "needs duration"),
        ("closed with rates", format!("{GOOD_HEAD}[load]\nmodel = \"closed\"\nrates = [5]\nduration = \"1s\"\n"), "3:1", "belong to model = \"open\""),
        ("bad SLO", format!("{GOOD_HEAD}[load]\nrate = 5\nduration = \"1s\"\n[slo]\np99 = \"fast\"\n"), "7:7", "SLO p99"),
        ("bad kind", format!("kind = \"marathon\"\n{GOOD_HEAD}[load]\nrate = 5\nduration = \"1s\"\n"), "1:8", "unknown variant `marathon`"),
        ("missing env var", format!("{GOOD_HEAD}[target.headers]\nAuthorization = \"Bearer ${{KNEE_TEST_UNSET_TOKEN}}\"\n[load]\nrate = 5\nduration = \"1s\"\n"), "4:17", "KNEE_TEST_UNSET_TOKEN is not set"),
        ("missing body file", "[target]\nurl = \"http://127.0.0.1:9/\"\nbody_file = \"nope.json\"\n[load]\nrate = 5\nduration = \"1s\"\n".to_string(), "3:13", "cannot read body_file"),
        ("two loads for a load test", format!("kind = \"load\"\n{GOOD_HEAD}[load]\nrates = [5, 10]\nduration = \"1s\"\n"), "4:1", "holds one load"),
        ("bad gRPC method", "[target]\nurl = \"http://127.0.0.1:9/\"\ngrpc = \"shop.Shop\"\n[load]\nrate = 5\nduration = \"1s\"\n".to_string(), "3:8", "grpc 'shop.Shop' is not package.Service/Method"),
        ("gRPC beside requests", "[target]\nurl = \"http://127.0.0.1:9/\"\ngrpc = \"shop.Shop/Reserve\"\n[[requests]]\npath = \"/\"\n[load]\nrate = 5\nduration = \"1s\"\n".to_string(), "3:8", "not both"),
        ("zero connections", "[target]\nurl = \"http://127.0.0.1:9/\"\nmax_connections = 0\n[load]\nrate = 5\nduration = \"1s\"\n".to_string(), "3:19", "out of range"),
    ]
}

#[test]
fn broken_profiles_name_file_line_and_column() {
    let dir = TempDir::new("broken");
    for (i, (what, text, position, words)) in broken_profiles().into_iter().enumerate() {
        let path = dir.join(&format!("broken-{i}.toml"));
        std::fs::write(&path, &text).unwrap();
        let out = dir.join(&format!("out-{i}"));
        let err = knee::run([
            "knee",
            "run",
            "-q",
            "--out",
            out.to_str().unwrap(),
            path.to_str().unwrap(),
        ])
        .expect_err(what);
        let message = err.to_string();
        assert_eq!(err.exit_code(), 2, "{what}: {message}");
        let expected = format!("{}:{position}: ", path.display());
        assert!(
            message.starts_with(&expected),
            "{what}: expected '{expected}...', got '{message}'"
        );
        assert!(
            message.contains(words),
            "{what}: '{message}' lacks '{words}'"
        );
        assert!(!message.contains('\n'), "{what}: not one line: '{message}'");
        assert!(!out.exists(), "{what}: no run folder for a bad profile");
    }
}

#[test]
fn the_binary_exits_2_on_bad_input_without_panicking() {
    let dir = TempDir::new("exit2");
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        format!("{GOOD_HEAD}[load]\nrate = -1\nduration = \"1s\"\n"),
    )
    .unwrap();
    // Observers named by a profile feed the samplers: --no-sample cannot go with them.
    let observed = dir.join("observed.toml");
    std::fs::write(
        &observed,
        format!(
            "{GOOD_HEAD}[load]\nrate = 5\nduration = \"1s\"\n[observe]\nobservers = [\"app=http://127.0.0.1:9\"]\n"
        ),
    )
    .unwrap();
    let cases: Vec<Vec<String>> = vec![
        vec!["run".into(), path.to_string_lossy().into()],
        vec![
            "run".into(),
            observed.to_string_lossy().into(),
            "--no-sample".into(),
        ],
        vec![
            "run".into(),
            "--url".into(),
            "http://127.0.0.1:9/".into(),
            "--rate".into(),
            "0".into(),
            "--duration".into(),
            "1s".into(),
        ],
        vec![
            "run".into(),
            "--url".into(),
            "http://127.0.0.1:9/".into(),
            "--rate".into(),
            "10000000".into(),
            "--duration".into(),
            "1s".into(),
        ],
        vec![
            "run".into(),
            "--url".into(),
            "ftp://127.0.0.1/".into(),
            "--rate".into(),
            "5".into(),
            "--duration".into(),
            "1s".into(),
        ],
        vec!["run".into(), "no-such-profile.toml".into()],
        vec!["frobnicate".into()],
    ];
    for args in cases {
        let output = Command::new(knee_bin()).args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "{args:?}: one line, got: {stderr}"
        );
        assert!(stderr.starts_with("knee: error: "), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn shipped_profiles_are_valid() {
    let mut seen = 0;
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/profiles")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let spec = knee::profile::load(&path);
            assert!(spec.is_ok(), "{}: {:?}", path.display(), spec.err());
            seen += 1;
        }
    }
    assert!(
        seen >= 4,
        "one example profile per kind (load, stress, soak, steps)"
    );
}

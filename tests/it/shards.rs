//! Sharded generators: two knee processes, shards 1/2 and 2/2 of one run, merged exactly.

use crate::util::*;
use std::process::Command;
use std::time::{Duration, SystemTime};

/// `knee run` as shard `shard` of a run at `rate` starting at `start`, into `out`.
fn shard_run(
    url: &str,
    rate: &str,
    steps: Option<&str>,
    shard: &str,
    start: &str,
    out: &TempDir,
) -> std::process::Child {
    let mut command = Command::new(knee_bin());
    command.args([
        "run",
        "--url",
        url,
        "-q",
        "--no-sample",
        "--shard",
        shard,
        "--start-at",
        start,
    ]);
    match steps {
        Some(steps) => command.args(["--steps", steps, "--step-duration", "1s"]),
        None => command.args(["--rate", rate, "--duration", "1s"]),
    };
    command.arg("--out").arg(out.path()).spawn().unwrap()
}

/// `knee merge X Y --out OUT`, in process.
fn merge(x: &TempDir, y: &TempDir, out: &TempDir) -> Result<knee::Outcome, knee::Error> {
    knee::run([
        "knee",
        "merge",
        x.path().to_str().unwrap(),
        y.path().to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
    ])
}

fn start_in(seconds: u64) -> String {
    humantime::format_rfc3339_seconds(SystemTime::now() + Duration::from_secs(seconds)).to_string()
}

#[test]
fn two_shards_merge_into_the_whole_rate_with_exact_percentiles() {
    let _serial = serial();
    let target = http_target(Http::Fast);
    let url = target.url("/");
    let (a, b, merged) = (
        TempDir::new("shard-1"),
        TempDir::new("shard-2"),
        TempDir::new("merged"),
    );
    let start = start_in(2);
    let mut first = shard_run(&url, "400", None, "1/2", &start, &a);
    let mut second = shard_run(&url, "400", None, "2/2", &start, &b);
    assert!(first.wait().unwrap().success() && second.wait().unwrap().success());

    merge(&a, &b, &merged).unwrap();
    let record = knee::output::RunRecord::read(&merged.join("run.json")).unwrap();
    let step = &record.steps[0];
    assert_eq!(step.name, "rate-400");
    assert_eq!(step.offered_rps, Some(400.0));
    assert!(
        (step.achieved_rps - 400.0).abs() <= 400.0 * 0.03,
        "merged {} req/s, not within 3 % of 400",
        step.achieved_rps
    );
    // The merged percentiles are those of the two shards' histograms added, exactly.
    let mut union: Option<hdrhistogram::Histogram<u64>> = None;
    for dir in [&a, &b] {
        let logged = knee::hlog::read(&dir.join("hist/rate-400.hlog")).unwrap();
        let latency = &logged.iter().find(|(t, _)| t == "latency").unwrap().1;
        match &mut union {
            Some(u) => u.add(latency).unwrap(),
            None => union = Some(latency.clone()),
        }
    }
    let union = union.unwrap();
    // --start-at aligned the shards: their counted windows began within 50 ms of each other.
    let start_of = |dir: &TempDir| -> f64 {
        let text = std::fs::read_to_string(dir.join("hist/rate-400.hlog")).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("#[StartTime: "))
            .unwrap();
        line["#[StartTime: ".len()..]
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let skew = (start_of(&a) - start_of(&b)).abs();
    assert!(skew < 0.05, "the shards started {skew:.3} s apart");
    assert_eq!(union.len(), step.requests);
    assert_eq!(step.latency_ms, knee::engine::record::percentiles(&union));
    let shards = step
        .observed
        .as_ref()
        .unwrap()
        .shards
        .as_ref()
        .unwrap()
        .len();
    assert_eq!(
        shards, 2,
        "generator health and samplers are kept per shard"
    );
    assert!(merged.join("report.md").exists() && merged.join("hist/rate-400.hlog").exists());
}

#[test]
fn each_request_of_a_mix_is_merged_from_its_own_histograms() {
    let _serial = serial();
    let target = http_target(Http::Fast);
    let dir = TempDir::new("shard-mix");
    let profile = dir.join("mix.toml");
    let text = format!(
        "[target]\nurl = \"{}\"\n[[requests]]\nname = \"a\"\npath = \"/a\"\n\
         [[requests]]\nname = \"b\"\npath = \"/b\"\nweight = 3\n[requests.slo]\np99 = \"5s\"\n\
         [load]\nrate = 300\nduration = \"1s\"\n",
        target.url("")
    );
    std::fs::write(&profile, text).unwrap();
    let (a, b, merged) = (
        TempDir::new("mix-shard-1"),
        TempDir::new("mix-shard-2"),
        TempDir::new("mix-merged"),
    );
    let start = start_in(2);
    let shard = |which: &str, out: &TempDir| {
        Command::new(knee_bin())
            .arg("run")
            .arg(&profile)
            .args(["-q", "--no-sample", "--shard", which, "--start-at", &start])
            .arg("--out")
            .arg(out.path())
            .spawn()
            .unwrap()
    };
    let (mut first, mut second) = (shard("1/2", &a), shard("2/2", &b));
    assert!(first.wait().unwrap().success() && second.wait().unwrap().success());
    merge(&a, &b, &merged).unwrap();
    let record = knee::output::RunRecord::read(&merged.join("run.json")).unwrap();
    let step = &record.steps[0];
    let names: Vec<&str> = step.by_request.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    let parts: Vec<knee::output::RunRecord> = [&a, &b]
        .iter()
        .map(|d| knee::output::RunRecord::read(&d.join("run.json")).unwrap())
        .collect();
    for (i, request) in step.by_request.iter().enumerate() {
        // Counts add up; percentiles are those of the shards' histograms of that name added.
        let sum: u64 = parts
            .iter()
            .map(|p| p.steps[0].by_request[i].requests)
            .sum();
        assert_eq!(request.requests, sum, "{request:?}");
        let mut union: Option<hdrhistogram::Histogram<u64>> = None;
        for dir in [&a, &b] {
            let logged = knee::hlog::read(&dir.join("hist/rate-300.hlog")).unwrap();
            let tag = format!("request-{i}");
            let own = &logged.iter().find(|(t, _)| *t == tag).unwrap().1;
            match &mut union {
                Some(u) => u.add(own).unwrap(),
                None => union = Some(own.clone()),
            }
        }
        let union = union.unwrap();
        assert_eq!(union.len(), request.requests);
        assert_eq!(
            request.latency_ms,
            knee::engine::record::percentiles(&union)
        );
    }
    let own = &step.by_request[1];
    assert!(own.own_slo && own.slo.is_some() && own.holds, "{own:?}");
    assert!((200..=250).contains(&own.requests), "b is 3 of 4: {own:?}");
    // The merged folder logs them too, so a merge of merges stays exact.
    let logged = knee::hlog::read(&merged.join("hist/rate-300.hlog")).unwrap();
    assert!(logged.iter().any(|(t, _)| t == "request-1"));
}

#[test]
fn merging_folders_that_are_not_one_runs_shards_fails_clearly() {
    let _serial = serial();
    let target = http_target(Http::Fast);
    let url = target.url("/");
    let (a, b, c) = (
        TempDir::new("shard-a"),
        TempDir::new("shard-b"),
        TempDir::new("shard-c"),
    );
    let start = start_in(1);
    let mut one = shard_run(&url, "100", Some("100,200"), "1/2", &start, &a);
    let mut two = shard_run(&url, "100", Some("100"), "2/2", &start, &b);
    let mut other = shard_run(&url, "100", None, "2/2", &start, &c);
    assert!(one.wait().unwrap().success() && two.wait().unwrap().success());
    assert!(other.wait().unwrap().success());
    let merge_fails = |x: &TempDir, y: &TempDir| match merge(x, y, &TempDir::new("merge-fails")) {
        Err(knee::Error::Input(message)) => message,
        other => panic!("expected a clear input error, got {other:?}"),
    };
    let missing = merge_fails(&a, &b);
    assert!(
        missing.contains("missing") && missing.contains("rate-200"),
        "{missing}"
    );
    let another = merge_fails(&a, &c);
    assert!(
        another.contains("other steps") || another.contains("another run"),
        "{another}"
    );
    let not_shard = TempDir::new("not-a-shard");
    let (_, record) = knee_run(
        not_shard.path(),
        &[
            "--url",
            &url,
            "--rate",
            "50",
            "--duration",
            "300ms",
            "--no-sample",
        ],
    );
    assert!(record.is_some());
    let message = merge_fails(&not_shard, &b);
    assert!(message.contains("not a shard"), "{message}");
    // Only fixed-step open-model runs shard.
    let hunt = concat!(env!("CARGO_MANIFEST_DIR"), "/profiles/hunt.toml");
    for args in [
        vec!["knee", "run", hunt, "--shard", "1/2"],
        vec![
            "knee",
            "run",
            "--url",
            &url,
            "--concurrency",
            "4",
            "--duration",
            "1s",
            "--shard",
            "1/2",
        ],
    ] {
        match knee::run(args) {
            Err(knee::Error::Input(message)) => assert!(message.contains("--shard"), "{message}"),
            other => panic!("a hunt or a closed model cannot be sharded: {other:?}"),
        }
    }
}

/// The Kubernetes manifests parse, describe an Indexed Job whose completions, parallelism
/// and KNEE_SHARDS agree, and carry a profile knee accepts. (There is no cluster here: this
/// is all that is checked of them.)
#[test]
fn the_kubernetes_manifests_parse_and_agree() {
    use serde::Deserialize;
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kubernetes"));
    let mut docs = Vec::new();
    for file in ["configmap.yaml", "job.yaml", "merge.yaml"] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value =
                serde_yaml::Value::deserialize(doc).unwrap_or_else(|e| panic!("{file}: {e}"));
            docs.push(value);
        }
    }
    let kind = |k: &str| {
        docs.iter()
            .find(|d| d["kind"] == k)
            .unwrap_or_else(|| panic!("no {k}"))
    };
    let job = &kind("Job")["spec"];
    assert_eq!(job["completionMode"], "Indexed");
    assert_eq!(job["completions"], job["parallelism"]);
    let container = &job["template"]["spec"]["containers"][0];
    let env = |name: &str| {
        container["env"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("no {name}"))
    };
    let shards: u64 = env("KNEE_SHARDS").parse().unwrap();
    assert_eq!(job["completions"].as_u64(), Some(shards));
    assert!(humantime::parse_rfc3339(&env("KNEE_START_AT")).is_ok());
    assert!(container["args"][0].as_str().unwrap().contains("--shards"));
    assert!(kind("Pod")["spec"]["containers"][0]["args"][0]
        .as_str()
        .unwrap()
        .contains("knee merge"));
    let profile = kind("ConfigMap")["data"]["profile.toml"].as_str().unwrap();
    let tmp = TempDir::new("k8s-profile");
    std::fs::write(tmp.join("profile.toml"), profile).unwrap();
    let spec = knee::profile::load(&tmp.join("profile.toml")).expect("the ConfigMap's profile");
    assert_eq!(spec.loads.len(), 4);
}

//! The Markdown report written with every run, `knee report` re-rendering it, and no secret
//! reaching any file of the run folder.

use crate::util::*;

#[test]
fn every_run_writes_a_markdown_report_that_knee_report_rerenders() {
    let target = http_target(Http::Fast);
    let out = TempDir::new("report");
    let url = target.url("/");
    let (outcome, record) = knee_run(
        out.path(),
        &[
            "--url",
            &url,
            "--steps",
            "50,100",
            "--step-duration",
            "300ms",
        ],
    );
    assert!(outcome.is_ok());
    let record = record.unwrap();
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.starts_with("# knee steps: steps"), "{report}");
    assert!(
        report.contains("| rate-50 | 50/s |") && report.contains("| rate-100 | 100/s |"),
        "{report}"
    );
    assert!(report.contains(&format!(
        "{} of 2 steps held",
        record.steps.iter().filter(|s| s.holds).count()
    )));
    assert!(report.contains("## Reproduce") && report.contains("--steps 50,100"));
    std::fs::remove_file(out.join("report.md")).unwrap();
    knee::run(["knee", "report", out.path().to_str().unwrap()]).unwrap();
    assert_eq!(
        std::fs::read_to_string(out.join("report.md")).unwrap(),
        report
    );
}

#[test]
fn secrets_reach_no_file_of_the_run_folder() {
    let target = http_target(Http::Fast);
    let dir = TempDir::new("secrets");
    let profile = dir.join("secret.toml");
    std::env::set_var("KNEE_TEST_SECRET_TOKEN", "s3cr3t");
    std::fs::write(
        &profile,
        format!(
            "[target]\nurl = \"{}?api_key=s3cr3t&page=1\"\n[target.headers]\nAuthorization = \"Bearer ${{KNEE_TEST_SECRET_TOKEN}}\"\n\
             [load]\nrate = 50\nduration = \"300ms\"\n",
            target.url("/")
        ),
    )
    .unwrap();
    let out = dir.join("out");
    let (outcome, _) = knee_run(
        &out,
        &[
            profile.to_str().unwrap(),
            "-H",
            "X-Api-Token: s3cr3t",
            "--name",
            "secret",
        ],
    );
    assert!(outcome.is_ok());
    let mut files = 0;
    for entry in walk(&out) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("s3cr3t"),
            "{} leaks the secret",
            entry.display()
        );
        files += 1;
    }
    assert!(
        files >= 5,
        "run.json, steps.jsonl, report.md, samples.jsonl, hist/*"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn the_html_report_is_self_contained_has_charts_and_escapes_what_it_shows() {
    let target = http_target(Http::Fast);
    let out = TempDir::new("html");
    let url = target.url("/");
    let (outcome, _) = knee_run(
        out.path(),
        &[
            "--url",
            &url,
            "--steps",
            "50,100",
            "--step-duration",
            "300ms",
            // Steps shorter than the default 500 ms sampling would get no samples to chart.
            "--sample-every",
            "200ms",
            "-H",
            "X-Note: <script>alert(1)</script>",
        ],
    );
    assert!(outcome.is_ok());
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.starts_with("<!doctype html>") && html.trim_end().ends_with("</html>"));
    assert_self_contained_html(&html, 4);
    assert!(
        html.matches("<svg").count() >= 4,
        "the charts are inline SVG"
    );
    assert!(html.contains("Throughput") && html.contains("Latency"));
    assert_charts(&html, &["timeline", "knee", "per-step"]);
    assert!(
        html.contains("Requests over time") && html.contains("time (s)"),
        "the timeline is on the run's time axis"
    );
    assert!(
        html.contains("rate-100"),
        "the second step's start is marked with its name"
    );
    assert!(!html.contains("<script"), "text from the run is escaped");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    for attr in ["src=", "href=", "@import", "url("] {
        assert!(!html.contains(attr), "nothing is fetched: found {attr}");
    }
}

/// The report's chart sections, by their anchors: `want` present, the others absent.
fn assert_charts(html: &str, want: &[&str]) {
    for section in ["timeline", "windows", "knee", "per-step"] {
        let id = format!("<h2 id=\"{section}\">");
        assert_eq!(
            html.contains(&id),
            want.contains(&section),
            "section {section}: expected {want:?}"
        );
    }
}

/// A one-step run gets the timeline (its slices and samples against time), not charts of
/// one dot per step; every step of the run is on the time line from the run's start.
#[test]
fn a_one_step_run_gets_a_timeline_instead_of_single_dots() {
    let target = http_target(Http::Fast);
    let out = TempDir::new("html-one");
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
            "--sample-every",
            "200ms",
        ],
    );
    assert!(outcome.is_ok());
    let step = &record.unwrap().steps[0];
    let started = step.started_s.expect("steps say when they started");
    assert!((0.0..5.0).contains(&started), "{started}");
    assert!(step.slices.len() >= 10, "{}", step.slices.len());
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert_self_contained_html(&html, 3);
    assert_charts(&html, &["timeline"]);
    for chart in ["Requests over time", "Latency over time", "CPU over time"] {
        assert!(html.contains(chart), "{chart}");
    }
}

/// report.md of fixed run.json files (a CPU-bound demo hunt, a leaking soak), snapshotted.
#[test]
fn markdown_reports_of_fixed_runs() {
    use knee::report::Exporter;
    for fixture in ["hunt-cpu-bound", "soak-leak"] {
        let path = format!(
            "{}/tests/fixtures/{fixture}.run.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let record = knee::output::RunRecord::read(std::path::Path::new(&path)).unwrap();
        let markdown = String::from_utf8(
            knee::report::markdown::Markdown
                .render(&record, std::path::Path::new(&path).parent().unwrap()),
        )
        .unwrap();
        insta::assert_snapshot!(fixture, markdown);
    }
}

/// The checked-in schema accepts the fixtures and refuses a run.json that breaks it (so the
/// check every test's run folder goes through can fail).
#[test]
fn run_json_follows_the_schema_and_the_schema_has_teeth() {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    for fixture in [
        "hunt-cpu-bound",
        "soak-leak",
        "demo-lock",
        "demo-lock-fixed",
    ] {
        let dir = TempDir::new("schema");
        std::fs::copy(
            format!("{fixtures}/{fixture}.run.json"),
            dir.join("run.json"),
        )
        .unwrap();
        check_run_folder(dir.path()).unwrap_or_else(|e| panic!("{fixture}: {e}"));
        let mut json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
        json["steps"][0]["phase"] = "sideways".into();
        json["steps"][0]["latency_ms"]["p99"] = (-1.0).into();
        std::fs::write(dir.join("run.json"), json.to_string()).unwrap();
        let problem = check_run_folder(dir.path()).unwrap_err();
        assert!(problem.contains("/steps/0/phase"), "{problem}");
        assert!(problem.contains("/steps/0/latency_ms/p99"), "{problem}");
        std::fs::remove_file(dir.join("run.json")).unwrap();
    }
}

/// compare.md of two fixed demo runs (before and after `--fix lock`), snapshotted.
#[test]
fn compare_summary_of_fixed_runs() {
    let fixtures = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"));
    let before = knee::compare::Side::read(&fixtures.join("demo-lock.run.json")).unwrap();
    let after = knee::compare::Side::read(&fixtures.join("demo-lock-fixed.run.json")).unwrap();
    let out = TempDir::new("compare-fixed");
    let comparison = knee::compare::compare(&before, &after, out.path());
    let markdown = String::from_utf8(knee::compare::markdown::render(&comparison)).unwrap();
    insta::assert_snapshot!("compare-demo-lock", markdown);
    insta::assert_snapshot!(
        "compare-summary-demo-lock",
        knee::compare::summary(&comparison)
    );
    let html = String::from_utf8(knee::compare::html::render(&comparison)).unwrap();
    assert_self_contained_html(&html, 2);
}

/// The HTML check fails on what it should: misnesting, a parse error, an external URL.
#[test]
fn the_html_check_has_teeth() {
    let fails = |html: &'static str| {
        std::panic::catch_unwind(|| assert_self_contained_html(html, 0)).is_err()
    };
    assert!(!fails(
        "<!doctype html><html><body><p>ok <b>fine</b></p><br></body></html>"
    ));
    assert!(fails(
        "<!doctype html><html><body><b><i>x</b></i></body></html>"
    ));
    assert!(fails(
        "<!doctype html><html><body><p a=\"1\"b>x</p></body></html>"
    ));
    assert!(fails(
        "<!doctype html><html><body><img src=\"https://cdn.example/x.png\"></body></html>"
    ));
    assert!(fails("<!doctype html><html><body><p>x</body></html>"));
}

/// A damaged run.json (a negative duration reached `Duration::from_secs_f64` in `knee merge`
/// and panicked) is refused in one line naming the file and the value, exit 2, by every
/// command that reads run folders.
#[test]
fn a_damaged_run_json_is_refused_by_merge_report_and_compare() {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let text = std::fs::read_to_string(format!("{fixtures}/hunt-cpu-bound.run.json")).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["steps"][1]["duration_s"] = (-2.5).into();
    json["shard"] = serde_json::json!({"index": 1, "count": 2});
    let damaged = TempDir::new("damaged");
    let good = TempDir::new("good");
    std::fs::write(damaged.join("run.json"), json.to_string()).unwrap();
    std::fs::copy(
        format!("{fixtures}/hunt-cpu-bound.run.json"),
        good.join("run.json"),
    )
    .unwrap();
    let out = TempDir::new("damaged-out");
    let (d, g, o) = (
        damaged.path().to_str().unwrap(),
        good.path().to_str().unwrap(),
        out.path().to_str().unwrap(),
    );
    for args in [
        vec!["knee", "merge", d, g, "--out", o],
        vec!["knee", "report", d],
        vec!["knee", "compare", g, d, "--out", o],
    ] {
        let err = knee::run(args.clone()).expect_err("refused");
        let message = err.to_string();
        assert_eq!(err.exit_code(), 2, "{args:?}: {message}");
        assert!(
            message.contains("run.json") && message.contains("duration_s is -2.5"),
            "{message}"
        );
        assert!(!message.contains('\n'), "one line: {message}");
    }
    // The damaged file breaks the schema too: gone before the folder's check on drop.
    std::fs::remove_file(damaged.join("run.json")).unwrap();
}

/// The check every test's temp folder goes through looks into subfolders, and a run folder
/// without its run.json fails it.
#[test]
fn the_run_folder_check_reaches_subfolders_and_wants_run_json() {
    let dir = TempDir::new("nested-check");
    let nested = dir.join("a/b/run");
    std::fs::create_dir_all(nested.join("hist")).unwrap();
    std::fs::write(nested.join("steps.jsonl"), "").unwrap();
    let problem = check_run_folder(dir.path()).unwrap_err();
    assert!(problem.contains("without run.json"), "{problem}");
    std::fs::write(nested.join("run.json"), "{\"schema_version\": 1}").unwrap();
    let problem = check_run_folder(dir.path()).unwrap_err();
    assert!(
        problem.contains("a/b/run/run.json breaks the schema"),
        "{problem}"
    );
    std::fs::remove_dir_all(dir.join("a")).unwrap();
    check_run_folder(dir.path()).unwrap();
}

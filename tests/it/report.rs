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
            "-H",
            "X-Note: <script>alert(1)</script>",
        ],
    );
    assert!(outcome.is_ok());
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.starts_with("<!doctype html>") && html.trim_end().ends_with("</html>"));
    assert!(
        html.matches("<svg").count() >= 4,
        "the charts are inline SVG"
    );
    assert!(html.contains("Throughput") && html.contains("Latency"));
    assert!(!html.contains("<script"), "text from the run is escaped");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    for attr in ["src=", "href=", "@import", "url("] {
        assert!(!html.contains(attr), "nothing is fetched: found {attr}");
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
        let markdown = String::from_utf8(knee::report::markdown::Markdown.render(&record)).unwrap();
        insta::assert_snapshot!(fixture, markdown);
    }
}

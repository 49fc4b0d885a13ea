//! The limits a staging box sets, each on a service of examples/limit_targets.rs (a separate
//! process that names nothing for knee): a cgroup's CPU quota, RLIMIT_NOFILE, a cgroup's
//! write limit under a service that syncs every request, a token-bucket limiter, and Nagle's
//! algorithm against the delayed ACK. Each must get its kind and the figure that explains
//! it. The cgroups are made here (v2 where the host has it, else v1) and removed after;
//! where the machine cannot make one, the test says so (under tests/run.sh, it fails).

use crate::tools::missing;
use crate::util::{knee_bin, serial, spawn_reading_first_line, TempDir};
use knee::model::RunRecord;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

/// One of examples/limit_targets.rs's services (stopped when dropped).
struct LimitTarget {
    child: Child,
    url: String,
}

impl LimitTarget {
    fn start(args: &[&str]) -> LimitTarget {
        let binary = crate::util::example_binary("limit_targets");
        let (child, port) = spawn_reading_first_line(Command::new(&binary).args(args));
        LimitTarget {
            child,
            url: format!("http://127.0.0.1:{port}/"),
        }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }
}

impl Drop for LimitTarget {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A cgroup made for one test (v2 or v1), removed when dropped.
struct Cgroup {
    dirs: Vec<PathBuf>,
}

impl Cgroup {
    /// A cgroup of `controller` ("cpu", "io"/"blkio") named for this test, with `settings`
    /// (file, value) written; None (said) where the machine cannot make one.
    fn make(test: &str, v2: &[(&str, String)], v1: (&str, &[(&str, String)])) -> Option<Cgroup> {
        let name = format!("knee-test-{}-{test}", std::process::id());
        let root = Path::new("/sys/fs/cgroup");
        let made = if root.join("cgroup.controllers").exists() {
            let dir = root.join(&name);
            let enable = v2
                .first()
                .map(|(file, _)| file.split('.').next().unwrap_or("").to_string());
            if let Some(controller) = enable {
                let _ = std::fs::write(
                    root.join("cgroup.subtree_control"),
                    format!("+{controller}"),
                );
            }
            Self::write(dir, v2)
        } else {
            Self::write(root.join(v1.0).join(&name), v1.1)
        };
        match made {
            Ok(dir) => Some(Cgroup { dirs: vec![dir] }),
            Err(why) => {
                missing(&format!("a cgroup ({why})"), test);
                None
            }
        }
    }

    fn write(dir: PathBuf, settings: &[(&str, String)]) -> Result<PathBuf, String> {
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for (file, value) in settings {
            std::fs::write(dir.join(file), value).map_err(|e| {
                let _ = std::fs::remove_dir(&dir);
                format!("{}/{file}: {e}", dir.display())
            })?;
        }
        Ok(dir)
    }

    /// Moves every thread of `pid` into it.
    fn enter(&self, pid: &str) {
        for dir in &self.dirs {
            std::fs::write(dir.join("cgroup.procs"), pid).unwrap();
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for dir in &self.dirs {
            // Its processes have been killed by then; a cgroup with none can go.
            for _ in 0..50 {
                if std::fs::remove_dir(dir).is_ok() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}

/// `knee ARGS -q --out DIR` as a child; its record.
fn knee(args: &[&str]) -> (TempDir, RunRecord) {
    let out = TempDir::new("limits");
    let output = Command::new(knee_bin())
        .args(args)
        .args(["-q", "--sample-every", "200ms", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.code().is_some_and(|c| c <= 1), "{stderr}");
    let record = RunRecord::read(&out.join("run.json")).unwrap();
    (out, record)
}

fn said(record: &RunRecord) -> String {
    let v = record.verdict.as_ref().unwrap();
    format!("{} ({}): {}", v.bottleneck, v.kind, v.evidence.join(" | "))
}

#[test]
fn a_service_under_a_cpu_quota_is_throttled_at_its_quota() {
    let _serial = serial();
    let target = LimitTarget::start(&["cpu", "120"]);
    let quota = [("cpu.max", "50000 100000".to_string())];
    let v1 = [("cpu.cfs_quota_us", "50000".to_string())];
    let Some(cgroup) = Cgroup::make("quota", &quota, ("cpu", &v1)) else {
        return;
    };
    cgroup.enter(&target.pid());
    let (_dir, record) = knee(&[
        "run",
        "--url",
        &target.url,
        "--pid",
        &target.pid(),
        "--steps",
        "120,350",
        "--step-duration",
        "2s",
        "--slo",
        "p99=50ms",
        "--profiler",
        "none",
        "--offcpu",
        "off",
    ]);
    let verdict = record.verdict.as_ref().unwrap();
    eprintln!("quota: {}", said(&record));
    assert_eq!(verdict.kind, "cpu_throttled", "{}", said(&record));
    assert!(
        verdict.bottleneck.contains("0.50 cores"),
        "{}",
        said(&record)
    );
    let knee_step = &record.steps[1];
    assert!(
        knee_step.ok_rps < 300.0,
        "0.5 cores / 2 ms is 250 req/s: {}",
        knee_step.ok_rps
    );
}

#[test]
fn a_service_out_of_file_descriptors_is_named_with_its_limit() {
    let _serial = serial();
    let target = LimitTarget::start(&["slow", "64", "120"]);
    let (_dir, record) = knee(&[
        "run",
        "--url",
        &target.url,
        "--pid",
        &target.pid(),
        "--steps",
        "60,400",
        "--step-duration",
        "2s",
        "--timeout",
        "2s",
        "--slo",
        "p99=500ms",
        "--profiler",
        "none",
        "--offcpu",
        "off",
    ]);
    let verdict = record.verdict.as_ref().unwrap();
    eprintln!("fds: {}", said(&record));
    assert_eq!(verdict.kind, "fd_limit", "{}", said(&record));
    assert!(
        verdict
            .evidence
            .iter()
            .any(|e| e.contains("of 64 file descriptors open")),
        "{}",
        said(&record)
    );
}

#[test]
fn a_service_that_syncs_under_a_write_limit_waits_on_its_disk() {
    let _serial = serial();
    let journal = TempDir::new("journal");
    let target = LimitTarget::start(&["fsync", journal.path().to_str().unwrap(), "120"]);
    // The whole disk the journal is on (a partition's parent): where a write limit applies.
    let device = disk_of(journal.path());
    let limit = |key: &str| format!("{device} {key}200");
    let v2 = [("io.max", limit("wiops="))];
    let v1 = [("blkio.throttle.write_iops_device", limit(""))];
    let Some(cgroup) = Cgroup::make("io", &v2, ("blkio", &v1)) else {
        return;
    };
    cgroup.enter(&target.pid());
    let (_dir, record) = knee(&[
        "hunt",
        &target.url,
        "--step-duration",
        "1s",
        "--hold-duration",
        "1s",
        "--holds",
        "95,120",
        "--max-rate",
        "1500",
    ]);
    let verdict = record.verdict.as_ref().unwrap();
    eprintln!("disk: {}", said(&record));
    assert_eq!(verdict.kind, "disk", "{}", said(&record));
    assert!(
        verdict.bottleneck.contains("200 writes/s"),
        "{}",
        said(&record)
    );
    assert_eq!(
        verdict.site.as_deref(),
        Some("limit_targets::append_journal"),
        "{}",
        said(&record)
    );
}

/// MAJ:MIN of the whole disk under `path`.
fn disk_of(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(path).unwrap().dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let sys = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    if sys.join("partition").exists() {
        let parent = std::fs::read_to_string(sys.join("../dev")).unwrap();
        return parent.trim().to_string();
    }
    format!("{major}:{minor}")
}

#[test]
fn a_rate_limiter_is_named_with_its_rate() {
    let _serial = serial();
    let target = LimitTarget::start(&["limiter", "300", "120"]);
    let (_dir, record) = knee(&[
        "hunt",
        &target.url,
        "--step-duration",
        "1s",
        "--hold-duration",
        "1s",
        "--holds",
        "95,120",
        "--max-rate",
        "3000",
        "--profiler",
        "none",
        "--offcpu",
        "off",
    ]);
    let verdict = record.verdict.as_ref().unwrap();
    eprintln!("limiter: {}", said(&record));
    assert_eq!(verdict.kind, "rate_limited", "{}", said(&record));
    let capacity = record.hunt.as_ref().unwrap().capacity_rps.unwrap();
    assert!((270.0..=340.0).contains(&capacity), "capacity {capacity}");
    assert!(verdict.bottleneck.contains("req/s"), "{}", said(&record));
    assert!(
        record
            .hunt
            .as_ref()
            .unwrap()
            .notes
            .iter()
            .any(|n| n.contains("a rate limiter's")),
        "{:?}",
        record.hunt.as_ref().unwrap().notes
    );
}

#[test]
fn answers_written_in_pieces_with_nagle_on_stall_at_the_ack_timer() {
    let _serial = serial();
    let target = LimitTarget::start(&["nagle", "120"]);
    let (_dir, record) = knee(&[
        "run",
        "--url",
        &target.url,
        "--concurrency",
        "1,8",
        "--step-duration",
        "1s",
        "--profiler",
        "none",
        "--offcpu",
        "off",
    ]);
    let verdict = record.verdict.as_ref().unwrap();
    eprintln!("nagle: {}", said(&record));
    assert_eq!(verdict.kind, "nagle", "{}", said(&record));
    assert!(verdict.confirm.contains("TCP_NODELAY"));
    let reused = &record.steps[1].by_connection.as_ref().unwrap().reused;
    assert!(
        (38.0..=52.0).contains(&reused.p50_ms),
        "reused connections at the ACK timer: {reused:?}"
    );
    assert!(
        record.steps[1]
            .notes
            .iter()
            .any(|n| n.contains("bimodal at the delayed-ACK timer")),
        "{:?}",
        record.steps[1].notes
    );
}

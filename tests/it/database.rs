//! The database behind the service: a real PostgreSQL (Debian's package; tests/run.sh installs
//! it) behind a small Python service (tests/fixtures/python/orders_service.py) that looks up
//! one customer's orders per request. Without an index, postgres burns the host's CPU on
//! sequential scans for the service: the verdict must name it as the downstream, not as
//! host contention; with the index, the bottleneck moves off it, and `knee compare` says so.

use crate::tools::missing;
use crate::util::{knee_bin, serial, spawn_reading_first_line, TempDir};
use knee::output::RunRecord;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// The cluster's port; the cluster is started once per test run and stopped when the test
/// binary exits (its shell reads our end of a pipe, then stops postgres).
struct Cluster {
    port: u16,
    bin: PathBuf,
    _keeper: Mutex<Child>,
}

fn postgres_bin() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    found.sort();
    found.pop()
}

fn cluster(test: &str) -> Option<&'static Cluster> {
    static CLUSTER: OnceLock<Option<Cluster>> = OnceLock::new();
    let Some(bin) = postgres_bin() else {
        missing("postgresql", test);
        return None;
    };
    let python_ok = Command::new("/usr/bin/python3")
        .args(["-c", "import psycopg2"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !python_ok {
        missing("python3-psycopg2", test);
        return None;
    }
    CLUSTER.get_or_init(|| Some(start_cluster(bin))).as_ref()
}

fn start_cluster(bin: PathBuf) -> Cluster {
    let dir = PathBuf::from(format!("/tmp/knee-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // initdb refuses root: run the cluster as `nobody` then.
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    let as_user = if root {
        let _ = Command::new("chown")
            .args(["nobody:nogroup"])
            .arg(&dir)
            .status();
        "runuser -u nobody -- "
    } else {
        ""
    };
    let bin_s = bin.display();
    let data = dir.join("data");
    let data_s = data.display();
    let dir_s = dir.display();
    let script = format!(
        "set -e\n\
         {as_user}{bin_s}/initdb -D {data_s} -U knee --auth=trust -E UTF8 >/dev/null\n\
         {as_user}{bin_s}/pg_ctl -D {data_s} -l {dir_s}/log -w start \
           -o '-p {port} -k {dir_s} -c listen_addresses=127.0.0.1 -c shared_buffers=64MB -c max_connections=300' >/dev/null\n\
         echo started\n\
         read _ || true\n\
         {as_user}{bin_s}/pg_ctl -D {data_s} -m immediate stop >/dev/null 2>&1\n\
         rm -rf {dir_s}\n"
    );
    let (keeper, line) = spawn_reading_first_line(Command::new("sh").args(["-c", &script]));
    assert_eq!(line, "started", "postgres did not start: see {dir_s}/log");
    Cluster {
        port,
        bin,
        _keeper: Mutex::new(keeper),
    }
}

impl Cluster {
    fn psql(&self, sql: &str) {
        let status = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "knee", "-d", "postgres", "-qc", sql])
            .status()
            .unwrap();
        assert!(status.success(), "{sql}");
    }

    fn dsn(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=knee dbname=postgres",
            self.port
        )
    }
}

/// The orders service (killed when dropped).
struct Service {
    child: Child,
    url: String,
}

impl Service {
    fn start(dsn: &str) -> Service {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/python/orders_service.py"
        );
        let (child, port) =
            spawn_reading_first_line(Command::new("/usr/bin/python3").args([script, dsn]));
        let url = format!("http://127.0.0.1:{port}/orders?customer=5");
        Service { child, url }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hunt(service: &Service, out: &TempDir) -> RunRecord {
    let output = Command::new(knee_bin())
        .args(["hunt", &service.url, "-q", "--out"])
        .arg(out.path())
        .args(["--pid", &service.child.id().to_string()])
        .args(["--slo", "p99=100ms", "--step-duration", "600ms"])
        // A 150 % hold as well: when a search step fails on a spike the capacity comes out
        // low and both 95 and 120 % can hold, which left the knee an unprofiled search step
        // (seen once in a dozen runs); 150 % of it fails and is the profiled knee.
        .args(["--hold-duration", "1s", "--holds", "95,120,150"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.code().is_some_and(|c| c <= 1), "{stderr}");
    RunRecord::read(&out.join("run.json")).unwrap()
}

#[test]
fn the_bottleneck_moves_off_the_database_after_an_index() {
    let _serial = serial();
    let test = "the_bottleneck_moves_off_the_database_after_an_index";
    let Some(cluster) = cluster(test) else { return };
    cluster.psql(
        "DROP TABLE IF EXISTS orders; CREATE TABLE orders (id serial, customer int, amount int); \
         INSERT INTO orders (customer, amount) \
           SELECT (random() * 10000)::int, 1 FROM generate_series(1, 200000); ANALYZE orders;",
    );
    let service = Service::start(&cluster.dsn());
    let before_dir = TempDir::new("db-before");
    let before = hunt(&service, &before_dir);
    let v = before.verdict.clone().unwrap();
    eprintln!(
        "before: {:?} {v:#?}",
        before.hunt.as_ref().map(|h| h.capacity_rps)
    );
    assert_eq!(v.kind, "downstream", "{v:#?}");
    assert!(v.bottleneck.contains("postgres"), "{v:#?}");
    assert!(v
        .site
        .as_deref()
        .unwrap_or("")
        .starts_with("postgres (127.0.0.1:"));
    // The report says who was busy at the knee, by name.
    let markdown = std::fs::read_to_string(before_dir.join("report.md")).unwrap();
    let busy = markdown
        .lines()
        .find(|l| l.starts_with("- busy at "))
        .unwrap_or_else(|| panic!("{markdown}"));
    assert!(
        busy.contains("postgres (pid ") && busy.contains("downstream"),
        "{busy}"
    );

    cluster.psql("CREATE INDEX ON orders (customer); ANALYZE orders;");
    let after_dir = TempDir::new("db-after");
    let after = hunt(&service, &after_dir);
    let v = after.verdict.clone().unwrap();
    eprintln!(
        "after: {:?} {v:#?}",
        after.hunt.as_ref().map(|h| h.capacity_rps)
    );
    assert!(
        v.kind != "downstream" && v.kind != "host_contention",
        "{v:#?}"
    );
    let (b, a) = (
        before.hunt.unwrap().capacity_rps.unwrap(),
        after.hunt.unwrap().capacity_rps.unwrap(),
    );
    assert!(a >= 2.0 * b, "the index moved the knee: {b} -> {a}");

    let out = TempDir::new("db-compare");
    let compare = Command::new(knee_bin())
        .arg("compare")
        .arg(before_dir.path())
        .arg(after_dir.path())
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&compare.stdout);
    eprintln!("{stdout}");
    let was = stdout.lines().find(|l| l.contains("was:")).unwrap();
    let now = stdout.lines().find(|l| l.contains("now:")).unwrap();
    assert!(was.contains("downstream: postgres"), "{stdout}");
    // "waiting: a pool, I/O or a downstream" is another kind; only the downstream kind
    // ("downstream: NAME …") would mean the bottleneck had not moved.
    assert!(!now.contains("now: downstream"), "{stdout}");
}

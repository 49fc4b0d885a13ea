//! Real programs the tests drive: a Go service (built here from tests/fixtures/go), and the
//! Debian packages tests/run.sh installs (Go, perf). Without a tool,
//! a test says so on stderr and checks nothing, unless `KNEE_REQUIRE_TOOLS=1` (set by
//! tests/run.sh, which CI runs), where a missing tool fails the test.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

/// Whether `tool` can be run; if not, says why (or panics under KNEE_REQUIRE_TOOLS=1).
pub fn have(tool: &str, test: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
        || Command::new(tool)
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
    if !found {
        missing(tool, test);
    }
    found
}

/// Reports a missing tool: a panic where tools are required, else a line on stderr.
pub fn missing(tool: &str, test: &str) {
    if std::env::var("KNEE_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("{test}: {tool} is required here (KNEE_REQUIRE_TOOLS=1) but cannot be run");
    }
    eprintln!(
        "{test}: {tool} is not installed here: this test checks nothing (tests/run.sh installs it)"
    );
}

/// The Go test service, built once per test run; None without Go.
pub fn go_service_binary(test: &str) -> Option<PathBuf> {
    static BUILT: OnceLock<Option<PathBuf>> = OnceLock::new();
    if !have("go", test) {
        return None;
    }
    BUILT
        .get_or_init(|| {
            let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("go-service");
            let source = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/go/service.go");
            let status = Command::new("go")
                .args(["build", "-o"])
                .arg(&out)
                .arg(source)
                .env("GOFLAGS", "-mod=mod")
                .env("GO111MODULE", "off")
                // Debian's golang-github-prometheus-client-golang-dev (for /metrics).
                .env("GOPATH", "/usr/share/gocode")
                .current_dir(env!("CARGO_TARGET_TMPDIR"))
                .status()
                .expect("go runs");
            assert!(status.success(), "go build {source} failed");
            Some(out)
        })
        .clone()
}

/// A running Go service (killed when dropped).
pub struct GoService {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
}

impl GoService {
    /// Starts the service with `args` on a free loopback port; None without Go.
    pub fn start(args: &[&str], test: &str) -> Option<GoService> {
        let binary = go_service_binary(test)?;
        let mut child = Command::new(binary)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the Go service starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line.trim().rsplit(' ').next().unwrap().to_string();
        assert!(base.starts_with("http://127.0.0.1:"), "{line}");
        Some(GoService { child, base })
    }
}

impl Drop for GoService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian's prometheus-node-exporter on a free loopback port, with the collectors knee maps
/// (cpu, meminfo, loadavg, stat, pressure); killed when dropped. None without it.
pub struct NodeExporter {
    child: Child,
    /// `http://127.0.0.1:PORT/metrics`
    pub metrics: String,
}

impl NodeExporter {
    pub fn start(test: &str) -> Option<NodeExporter> {
        if !have("prometheus-node-exporter", test) {
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("prometheus-node-exporter")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args([
                "--collector.disable-defaults",
                "--collector.cpu",
                "--collector.meminfo",
                "--collector.loadavg",
                "--collector.stat",
                "--collector.pressure",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("node_exporter starts");
        let exporter = NodeExporter {
            child,
            metrics: format!("http://127.0.0.1:{port}/metrics"),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "node_exporter did not listen on {port}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Some(exporter)
    }
}

impl Drop for NodeExporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! A target of several processes: a pre-fork server (examples/wait_targets.rs with
//! `WAIT_TARGETS_WORKERS`, workers sharing one port by SO_REUSEPORT, each a 200 req/s lock),
//! found by `--process-name`, and the same workers named by `--pid` twice.

use crate::tools::have;
use crate::util::{free_port, knee_bin, knee_child_in, serial, TempDir};
use crate::waits::HUNT;
use knee::output::RunRecord;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};

/// A pre-fork master and its workers (they end with it), run from a copy of the program
/// under a name of its own, so `--process-name` finds these processes and no other test's.
pub struct PreFork {
    master: Child,
    pub url: String,
    pub workers: Vec<u32>,
    pub name: String,
    _dir: TempDir,
}

impl PreFork {
    pub fn start(workers: usize) -> PreFork {
        let program = crate::util::example_binary("wait_targets");
        let dir = TempDir::new("replicas");
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("ledger{}x{n}", std::process::id() % 100_000);
        let copy = dir.join(&name);
        std::fs::copy(&program, &copy).unwrap();
        // A copy just written may be open for writing in a child another test forks at the
        // same moment ("text file busy"): try again, a few times.
        let mut tries = 0;
        let mut master = loop {
            let started = Command::new(&copy)
                .args(["lock", "180"])
                .env("WAIT_TARGETS_WORKERS", workers.to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn();
            match started {
                Err(e) if e.raw_os_error() == Some(26) && tries < 20 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => break other.unwrap(),
            }
        };
        let mut lines = std::io::BufReader::new(master.stdout.take().unwrap()).lines();
        let port = lines.next().unwrap().unwrap();
        let pids = lines.next().unwrap().unwrap();
        PreFork {
            master,
            url: format!("http://127.0.0.1:{}/", port.trim()),
            workers: pids
                .split_whitespace()
                .map(|p| p.parse().unwrap())
                .collect(),
            name,
            _dir: dir,
        }
    }
}

impl Drop for PreFork {
    fn drop(&mut self) {
        let _ = self.master.kill();
        let _ = self.master.wait();
    }
}

#[test]
fn a_pre_fork_servers_workers_are_found_by_name_and_judged_each() {
    let _serial = serial();
    if !have(
        "perf",
        "a_pre_fork_servers_workers_are_found_by_name_and_judged_each",
    ) {
        return;
    }
    let server = PreFork::start(2);
    let out = TempDir::new("replicas-hunt");
    let mut args = vec![
        "hunt",
        server.url.as_str(),
        "--process-name",
        server.name.as_str(),
    ];
    args.extend(HUNT);
    let (record, stderr) = knee_child_in(&out, &args);
    // The workers, not their master.
    let target = record.target_process.as_ref().unwrap();
    let mut found: Vec<u32> = target.replicas.iter().map(|r| r.pid).collect();
    found.sort_unstable();
    assert_eq!(found, server.workers, "{stderr}");
    assert_eq!(target.found_by, "process-name");
    // Two locks of 200 req/s each: the service holds about 400.
    let capacity = record.hunt.as_ref().and_then(|h| h.capacity_rps).unwrap();
    assert!((250.0..=480.0).contains(&capacity), "capacity {capacity}");
    let verdict = record.verdict.clone().unwrap();
    eprintln!(
        "capacity {capacity}: {} {:#?}",
        verdict.bottleneck, verdict.evidence
    );
    assert_eq!(verdict.kind.to_string(), "lock", "{verdict:#?}");
    assert_eq!(verdict.site.as_deref(), Some("wait_targets::ledger_append"));
    assert!(
        verdict.bottleneck.ends_with("(in 2 of 2 replicas)"),
        "{verdict:#?}"
    );
    for (i, pid) in server.workers.iter().enumerate() {
        let line = format!("replica {} (pid {pid}, ", i + 1);
        let said = verdict.evidence.iter().find(|e| e.starts_with(&line));
        assert!(
            said.is_some_and(|l| l.contains("serialized on a lock in wait_targets::ledger_append")),
            "{line}: {verdict:#?}"
        );
    }
    // Each replica's own off-CPU view and the service's, summed from them.
    let observed = crate::util::knee_step(&record).observed.as_ref().unwrap();
    let replicas = observed.replicas.as_ref().unwrap();
    assert_eq!(replicas.len(), 2);
    let waits = |o: &knee::model::Observed| o.offcpu.as_ref().map_or(0.0, |w| w.waiting_ms);
    let service = waits(observed);
    let summed: f64 = replicas.iter().map(|r| waits(&r.observed)).sum();
    assert!(
        service > 0.0 && (service - summed).abs() < 1.0,
        "{service} vs {summed}"
    );
    for replica in replicas {
        let svg = replica.observed.offcpu.as_ref().and_then(|o| o.svg.clone());
        assert!(
            svg.as_deref()
                .is_some_and(|s| s.contains(&format!(".r{}.", replica.index))),
            "{svg:?}"
        );
        assert!(out.join(svg.unwrap().as_str()).exists());
        assert!(
            replica.share.is_some_and(|s| s > 0.0 && s < 1.0),
            "{replica:?}"
        );
    }
    // report.md lists each replica's own views beside the service's.
    let markdown = std::fs::read_to_string(out.join("report.md")).unwrap();
    let section = markdown.split("## Replicas").nth(1).unwrap_or_default();
    for replica in replicas {
        let row = format!(
            "| {} (pid {}, {}) |",
            replica.index, replica.pid, server.name
        );
        assert!(section.contains(&row), "{row}: {section}");
    }
    assert!(section.contains(".r2.offcpu.svg"), "{section}");
    let series = &observed.samplers.as_ref().unwrap().series;
    let cpu = |key: &str| series.get(key).map_or(f64::NAN, |s| s.mean);
    assert!(cpu("replica1.cpu_cores") >= 0.0 && cpu("replica2.cpu_cores") >= 0.0);
    assert!(
        cpu("target.cpu_cores") + 1e-9 >= cpu("replica1.cpu_cores"),
        "{series:?}"
    );
}

#[test]
fn pids_given_twice_are_two_replicas_sampled_each() {
    // Its load would disturb the hunts of the other tests here.
    let _serial = serial();
    let server = PreFork::start(2);
    let out = TempDir::new("replicas-pids");
    let (a, b) = (server.workers[0].to_string(), server.workers[1].to_string());
    let (record, stderr) = knee_child_in(
        &out,
        &[
            "run",
            "--url",
            &server.url,
            "--rate",
            "40",
            "--duration",
            "1s",
            "--pid",
            &a,
            "--pid",
            &b,
            "--profiler",
            "none",
            "--offcpu",
            "off",
        ],
    );
    let target = record.target_process.as_ref().unwrap();
    assert_eq!(target.pid, server.workers[0], "{stderr}");
    assert_eq!(target.replicas.len(), 2);
    let step = &record.steps[0];
    let series = &step
        .observed
        .as_ref()
        .unwrap()
        .samplers
        .as_ref()
        .unwrap()
        .series;
    for key in [
        "replica1.rss_mb",
        "replica2.rss_mb",
        "replica2.threads",
        "target.rss_mb",
    ] {
        assert!(series.contains_key(key), "{key}: {series:?}");
    }
    let rss = |key: &str| series[key].mean;
    assert!((rss("target.rss_mb") - rss("replica1.rss_mb") - rss("replica2.rss_mb")).abs() < 0.5);
    // --process-name of no process: one line, exit 2.
    let output = Command::new(knee_bin())
        .args([
            "run",
            "--url",
            &server.url,
            "--rate",
            "10",
            "--duration",
            "200ms",
            "--process-name",
            "no-such-proc-x",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--process-name no-such-proc-x: no process of that name"),
        "{stderr}"
    );
}

/// nginx in front of upstreams: one server (port) per list of upstream ports.
struct Nginx {
    child: Child,
    ports: Vec<u16>,
    _dir: TempDir,
}

impl Nginx {
    fn start(upstreams: &[&[u16]]) -> Nginx {
        let dir = TempDir::new("nginx");
        let ports: Vec<u16> = upstreams.iter().map(|_| free_port()).collect();
        let mut http = String::new();
        for (i, (port, servers)) in ports.iter().zip(upstreams).enumerate() {
            let servers: String = servers
                .iter()
                .map(|p| format!("server 127.0.0.1:{p};"))
                .collect();
            http.push_str(&format!(
                "upstream u{i} {{ {servers} keepalive 64; }}\n\
                 server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://u{i}; \
                 proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }}\n"
            ));
        }
        let d = dir.path().display();
        let conf = format!(
            "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 4096; }}\n\
             http {{ access_log off; client_body_temp_path {d}; proxy_temp_path {d};\n{http}}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = Command::new("nginx")
            .args(["-p", &d.to_string(), "-c"])
            .arg(dir.join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        for port in &ports {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while std::net::TcpStream::connect(("127.0.0.1", *port)).is_err() {
                assert!(std::time::Instant::now() < deadline, "nginx did not listen");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        Nginx {
            child,
            ports,
            _dir: dir,
        }
    }
}

impl Drop for Nginx {
    /// SIGTERM: the master stops its workers (SIGKILL would leave them behind).
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_balancer_is_followed_to_its_replicas_and_compare_gives_the_ratio() {
    let _serial = serial();
    let test = "a_balancer_is_followed_to_its_replicas_and_compare_gives_the_ratio";
    if !have("perf", test) || !have("nginx", test) {
        return;
    }
    let binary = crate::util::example_binary("wait_targets");
    let replicas: Vec<(Child, u16)> = (0..2)
        .map(|_| {
            let (child, port) =
                crate::util::spawn_reading_first_line(Command::new(&binary).args(["lock", "180"]));
            (child, port.parse().unwrap())
        })
        .collect();
    let (p1, p2) = (replicas[0].1, replicas[1].1);
    let nginx = Nginx::start(&[&[p1], &[p1, p2]]);
    let hunt = |port: u16, out: &TempDir| {
        let url = format!("http://127.0.0.1:{port}/");
        let mut args = vec!["hunt", url.as_str()];
        args.extend(HUNT);
        knee_child_in(out, &args)
    };
    let (one, two) = (TempDir::new("balancer-one"), TempDir::new("balancer-two"));
    let (a, stderr_a) = hunt(nginx.ports[0], &one);
    let (b, stderr_b) = hunt(nginx.ports[1], &two);
    // Followed from nginx to the upstreams it forwarded to; nginx sampled beside them.
    let (ta, tb) = (
        a.target_process.clone().unwrap(),
        b.target_process.clone().unwrap(),
    );
    assert_eq!(
        (ta.found_by.as_str(), ta.pid),
        ("balancer", replicas[0].0.id()),
        "{stderr_a}"
    );
    assert_eq!(ta.balancer.as_ref().map(|b| b.name.as_str()), Some("nginx"));
    let mut pids: Vec<u32> = tb.replicas.iter().map(|r| r.pid).collect();
    pids.sort_unstable();
    let mut expected = vec![replicas[0].0.id(), replicas[1].0.id()];
    expected.sort_unstable();
    assert_eq!(pids, expected, "{stderr_b}");
    let knee_series = |record: &RunRecord, key: &str| {
        let name = record.verdict.as_ref()?.knee_step.clone()?;
        let step = record.steps.iter().find(|s| s.name == name)?;
        knee::analyze::mean(step, key)
    };
    assert!(
        knee_series(&b, "balancer.cpu_cores").is_some(),
        "balancer sampled"
    );
    // nginx keeps connections to its upstreams (keepalive): counted.
    let connections = knee_series(&b, "balancer.upstream_connections");
    assert!(connections.is_some_and(|c| c >= 1.0), "{connections:?}");
    let capacity = |r: &RunRecord| r.hunt.as_ref().and_then(|h| h.capacity_rps).unwrap();
    let (ca, cb) = (capacity(&a), capacity(&b));
    let (va, vb) = (a.verdict.clone().unwrap(), b.verdict.clone().unwrap());
    eprintln!(
        "one replica: {ca} {}\ntwo replicas: {cb} {}",
        va.bottleneck, vb.bottleneck
    );
    assert!((130.0..=240.0).contains(&ca), "one replica: {ca}");
    assert!((250.0..=480.0).contains(&cb), "two replicas: {cb}");
    assert_eq!(
        va.site.as_deref(),
        Some("wait_targets::ledger_append"),
        "{va:#?}"
    );
    assert_eq!(
        vb.site.as_deref(),
        Some("wait_targets::ledger_append"),
        "{vb:#?}"
    );
    assert!(vb.bottleneck.ends_with("(in 2 of 2 replicas)"), "{vb:#?}");
    // compare: the capacity's ratio against the replicas', and the bottleneck in each.
    let out = TempDir::new("balancer-compare");
    let output = Command::new(knee_bin())
        .args(["compare"])
        .arg(one.path())
        .arg(two.path())
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.contains("1 → 2 replicas: capacity ×"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        line.contains("(×2.00 the replicas); the bottleneck stayed in each replica"),
        "{line}"
    );
    let ratio: f64 = line
        .split('×')
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|r| r.parse().ok())
        .unwrap();
    assert!((ratio - cb / ca).abs() < 0.01, "{ratio} vs {}", cb / ca);
    let markdown = std::fs::read_to_string(out.join("compare.md")).unwrap();
    assert!(
        markdown.contains("**Replicas:** 1 → 2 replicas"),
        "{markdown}"
    );
    drop(nginx);
    for (mut child, _) in replicas {
        let _ = child.kill();
        let _ = child.wait();
    }
}

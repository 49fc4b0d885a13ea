//! The schedule kept while knee observes: a chain of steps (soak windows, back to back)
//! watched by an observer that takes seconds to answer after each step — a `knee observe`
//! on a slow link, played here by a small server that answers the observer protocol slowly —
//! keeps every window's send lag and offered rate as the schedule says: no step starts late,
//! no requests go out in a catch-up burst.

use crate::util::{http_target, knee_child, serial, Http, TempDir};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long the slow observer takes to end a window.
const SLOW: Duration = Duration::from_millis(1500);

/// A stand-in for `knee observe` that describes a target, serves no samples (so the
/// sampler waits out its catch-up bound after every step) and ends each window after
/// `SLOW`. Stops when dropped.
struct SlowObserver {
    url: String,
    running: Arc<AtomicBool>,
    ended: Arc<AtomicU64>,
}

impl SlowObserver {
    fn start() -> SlowObserver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let running = Arc::new(AtomicBool::new(true));
        let ended = Arc::new(AtomicU64::new(0));
        let (run, count) = (running.clone(), ended.clone());
        std::thread::spawn(move || {
            while run.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let count = count.clone();
                        std::thread::spawn(move || answer(stream, &count));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        SlowObserver {
            url,
            running,
            ended,
        }
    }
}

impl Drop for SlowObserver {
    fn drop(&mut self) {
        self.running.store(false, Ordering::Relaxed);
    }
}

fn answer(stream: std::net::TcpStream, ended: &AtomicU64) {
    let _ = stream.set_nonblocking(false);
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        line.clear();
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let body = match path.split('?').next().unwrap_or("") {
        "/time" => format!("{{\"now_unix_s\": {now}}}"),
        "/describe" => format!(
            "{{\"host\": \"slow\", \"cores\": 2, \"memory_mb\": 1024, \"kernel\": \"test\", \
             \"target\": {{\"pid\": 1, \"command\": \"service\", \"found_by\": \"pid\"}}, \
             \"now_unix_s\": {now}, \"last\": 0}}"
        ),
        "/samples" => format!("{{\"origin_unix_s\": {now}, \"first\": 1, \"samples\": []}}"),
        "/threads/begin" | "/processes/begin" => "{\"id\": 1}".to_string(),
        "/threads/end" | "/processes/end" => {
            std::thread::sleep(SLOW);
            ended.fetch_add(1, Ordering::Relaxed);
            "null".to_string()
        }
        _ => "{\"error\": \"not here\"}".to_string(),
    };
    let mut stream = reader.into_inner();
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

#[test]
fn a_slow_observer_does_not_move_a_chains_schedule() {
    let _serial = serial();
    let target = http_target(Http::Fast);
    let observer = SlowObserver::start();
    let dir = TempDir::new("slow-observer");
    let profile = dir.join("soak.toml");
    std::fs::write(
        &profile,
        format!(
            "name = \"slow-observer\"\nkind = \"soak\"\n[target]\nurl = \"{}\"\n\
             [load]\nrate = 200\nwarmup = \"0s\"\nduration = \"6s\"\nwindow = \"1s\"\n",
            target.url("/")
        ),
    )
    .unwrap();
    let (record, stderr) = knee_child(&[
        "run",
        profile.to_str().unwrap(),
        "--observer",
        &format!("slow={}", observer.url),
        "--remote-target",
        "--sample-every",
        "200ms",
        "--profiler",
        "none",
        "--offcpu",
        "off",
    ]);
    // The observer was slow after every window: each ended two windows (threads and
    // processes), each after 1.5 s; the sampler waited for samples that never came.
    let ended = observer.ended.load(Ordering::Relaxed);
    assert!(
        ended >= 10,
        "windows ended by the observer: {ended}; {stderr}"
    );
    assert_eq!(record.steps.len(), 6, "{stderr}");
    for window in &record.steps {
        let g = &window.generator;
        assert!(
            g.started_late_ms.is_none(),
            "{} started {:?} ms late",
            window.name,
            g.started_late_ms
        );
        // A window started seconds late would release what it missed at once: a send lag
        // of seconds, and far more than 200 requests in its second.
        assert!(
            g.dispatch_lag_p99_ms < 50.0 && g.send_lag_p99_ms < 50.0,
            "{}: dispatch lag p99 {} ms, send lag p99 {} ms",
            window.name,
            g.dispatch_lag_p99_ms,
            g.send_lag_p99_ms
        );
        assert!(
            (190..=210).contains(&window.requests),
            "{}: {} requests in its second",
            window.name,
            window.requests
        );
    }
    // The windows follow one another at the schedule's pace: 1 s apart.
    let starts: Vec<f64> = record.steps.iter().filter_map(|s| s.started_s).collect();
    for pair in starts.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            (0.99..1.01).contains(&gap),
            "windows {gap:.3} s apart: {starts:?}"
        );
    }
}

//! `knee demo`: the embedded target that makes knee useful on a fresh machine. Each endpoint's
//! capacity is known by construction, so knee's answers can be checked against the truth:
//! - `/api`     the chain of three bottlenecks in `stages` (lock → pool → CPU);
//! - `/pool`    the pool stage alone; `/cpu` the chain's CPU cost alone (no lock, no pool);
//! - `/leak`    keeps `leak` bytes per request forever (for soak tests);
//! - `/metrics` Prometheus text: pool and lock waiters, requests, leaked bytes;
//! - `/`        answers at once (measures the generator, not the target).
//!
//! `--demo` on other commands starts it as a child process (this same binary) on a free port.

pub mod stages;

use crate::error::Error;
use crate::observe::target::answers_http;
use crate::plan::DemoConfig;
use anyhow::{anyhow, Context};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use stages::{Chain, POOL_FIX_FACTOR};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

/// One stage of /api and the rate it can take, by construction.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub name: &'static str,
    pub capacity_rps: f64,
    pub what: String,
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The slots of the pool, with `--fix pool` applied.
pub fn pool_slots(config: &DemoConfig) -> usize {
    if config.fixes.pool {
        config.pool_slots * POOL_FIX_FACTOR
    } else {
        config.pool_slots
    }
}

/// The stages of /api with their capacities (a fixed stage reports its fixed capacity).
pub fn stages(config: &DemoConfig) -> Vec<Stage> {
    let secs = |d: Duration| d.as_secs_f64().max(1e-9);
    let cpu_per_request = config.lock_work
        + if config.fixes.cpu {
            Duration::ZERO
        } else {
            config.cpu_work
        };
    let lock = if config.fixes.lock {
        Stage {
            name: "lock",
            capacity_rps: stages::LOCK_SHARDS as f64 / secs(config.lock_work),
            what: format!(
                "lock sharded {} ways around {:?} of CPU (fixed)",
                stages::LOCK_SHARDS,
                config.lock_work
            ),
        }
    } else {
        Stage {
            name: "lock",
            capacity_rps: 1.0 / secs(config.lock_work),
            what: format!(
                "one global lock around {:?} of CPU: serialized",
                config.lock_work
            ),
        }
    };
    let slots = pool_slots(config);
    vec![
        lock,
        Stage {
            name: "pool",
            capacity_rps: slots as f64 / secs(config.pool_hold),
            what: format!(
                "{slots} \"database\" slots, each held {:?}{}",
                config.pool_hold,
                if config.fixes.pool {
                    " (fixed: 8x bigger)"
                } else {
                    ""
                }
            ),
        },
        Stage {
            name: "cpu",
            capacity_rps: cores() as f64 / secs(cpu_per_request),
            what: format!(
                "{cpu_per_request:?} of CPU per request on {} cores{}",
                cores(),
                if config.fixes.cpu {
                    " (fixed: CPU stage memoized)"
                } else {
                    ""
                }
            ),
        },
    ]
}

/// The stage that limits /api, and its capacity.
pub fn bottleneck(config: &DemoConfig) -> Stage {
    stages(config)
        .into_iter()
        .min_by(|a, b| a.capacity_rps.total_cmp(&b.capacity_rps))
        .expect("three stages")
}

/// What each endpoint can take, by construction.
pub fn explain(config: &DemoConfig) -> String {
    let mut out = format!(
        "knee demo: /api passes three stages (fixes: {})\n",
        match config.fixes.names() {
            names if names.is_empty() => "none".to_string(),
            names => names.join(", "),
        }
    );
    for stage in stages(config) {
        out.push_str(&format!(
            "  {:<5} capacity {:>6.0} req/s  {}\n",
            stage.name, stage.capacity_rps, stage.what
        ));
    }
    let limit = bottleneck(config);
    out.push_str(&format!(
        "  => /api capacity {:.0} req/s, bottleneck: {}\n\
         other endpoints: /pool (pool stage alone), /cpu (the CPU cost alone), /leak (keeps {} bytes \
         per request), /metrics, / (answers at once)\n",
        limit.capacity_rps, limit.name, config.leak_bytes
    ));
    out
}

/// Serves the demo until the process is stopped. Prints its URL on the first line of stdout.
pub async fn serve(config: DemoConfig) -> Result<(), Error> {
    let listener = TcpListener::bind(("127.0.0.1", config.port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{}", config.port))?;
    let addr = listener.local_addr()?;
    println!("knee demo listening on http://{addr}");
    eprint!("{}", explain(&config));
    let state = Arc::new(State {
        chain: Chain::new(&config),
        leaked: Mutex::new(Vec::new()),
        leaked_bytes: AtomicU64::new(0),
        requests: AtomicU64::new(0),
        config,
    });
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of fds and the like: keep serving the connections we have.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(state.clone(), req));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

struct State {
    config: DemoConfig,
    chain: Chain,
    leaked: Mutex<Vec<Vec<u8>>>,
    leaked_bytes: AtomicU64,
    requests: AtomicU64,
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path().starts_with("/debug/pprof/") {
        // The embedded profiling agent: `knee hunt --demo` gets flamegraphs with no flags.
        return Ok(crate::agent::handle(req).await);
    }
    state.requests.fetch_add(1, Ordering::Relaxed);
    let (status, body): (StatusCode, Bytes) = match req.uri().path() {
        "/" | "/health" => (StatusCode::OK, Bytes::from_static(b"ok\n")),
        "/api" => {
            let s = state.clone();
            let _ = tokio::task::spawn_blocking(move || s.chain.locked_stage()).await;
            let s = state.clone();
            let _ = tokio::task::spawn_blocking(move || s.chain.pool_stage()).await;
            let s = state.clone();
            let _ = tokio::task::spawn_blocking(move || s.chain.cpu_stage()).await;
            (StatusCode::OK, Bytes::from_static(b"api ok\n"))
        }
        "/pool" => {
            let s = state.clone();
            let _ = tokio::task::spawn_blocking(move || s.chain.pool_stage()).await;
            (StatusCode::OK, Bytes::from_static(b"pool ok\n"))
        }
        "/cpu" => {
            let work = state.config.lock_work + state.config.cpu_work;
            let _ = tokio::task::spawn_blocking(move || stages::compute(work)).await;
            (StatusCode::OK, Bytes::from_static(b"cpu ok\n"))
        }
        "/leak" => {
            let block = vec![1u8; state.config.leak_bytes];
            state
                .leaked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(block);
            state
                .leaked_bytes
                .fetch_add(state.config.leak_bytes as u64, Ordering::Relaxed);
            (StatusCode::OK, Bytes::from_static(b"leak ok\n"))
        }
        "/metrics" if state.config.metrics => (StatusCode::OK, Bytes::from(metrics(&state))),
        _ => (StatusCode::NOT_FOUND, Bytes::from_static(b"not found\n")),
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    Ok(response)
}

fn metrics(state: &State) -> String {
    let chain = &state.chain;
    format!(
        "# HELP knee_demo_pool_waiting Requests waiting for a pool slot.\n\
         # TYPE knee_demo_pool_waiting gauge\n\
         knee_demo_pool_waiting {}\n\
         # HELP knee_demo_pool_busy Pool slots in use.\n\
         # TYPE knee_demo_pool_busy gauge\n\
         knee_demo_pool_busy {}\n\
         # HELP knee_demo_lock_waiting Requests waiting for the lock.\n\
         # TYPE knee_demo_lock_waiting gauge\n\
         knee_demo_lock_waiting {}\n\
         # HELP knee_demo_requests_total Requests received.\n\
         # TYPE knee_demo_requests_total counter\n\
         knee_demo_requests_total {}\n\
         # HELP knee_demo_leaked_bytes Bytes kept by /leak.\n\
         # TYPE knee_demo_leaked_bytes gauge\n\
         knee_demo_leaked_bytes {}\n",
        chain.pool_waiting.load(Ordering::Relaxed),
        chain.pool_busy.load(Ordering::Relaxed),
        chain.lock_waiting.load(Ordering::Relaxed),
        state.requests.load(Ordering::Relaxed),
        state.leaked_bytes.load(Ordering::Relaxed),
    )
}

/// A demo target running as a child process; killed when dropped.
pub struct DemoChild {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
}

impl DemoChild {
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub async fn start(config: &DemoConfig) -> Result<DemoChild, Error> {
        let exe = std::env::var_os("KNEE_EXE")
            .map(Into::into)
            .map_or_else(std::env::current_exe, Ok)
            .context("cannot find the knee executable to start the demo")?;
        let us = |d: Duration| format!("{}us", d.as_micros());
        let fixes = config.fixes.names().join(",");
        let mut child = Command::new(&exe)
            .args(["demo", "--port", "0"])
            .args([
                "--lock-work",
                &us(config.lock_work),
                "--cpu-work",
                &us(config.cpu_work),
            ])
            .args([
                "--pool-slots",
                &config.pool_slots.to_string(),
                "--pool-hold",
                &us(config.pool_hold),
            ])
            .args(["--leak", &config.leak_bytes.to_string()])
            .args(["--fix", if fixes.is_empty() { "none" } else { &fixes }])
            .args((!config.metrics).then_some("--no-metrics"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start the demo ({})", exe.display()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("demo has no stdout"))?;
        let mut first_line = String::new();
        tokio::time::timeout(
            Duration::from_secs(10),
            BufReader::new(stdout).read_line(&mut first_line),
        )
        .await
        .map_err(|_| anyhow!("the demo did not start within 10s"))?
        .context("cannot read the demo's address")?;
        let base = first_line
            .trim()
            .rsplit(' ')
            .next()
            .filter(|url| url.starts_with("http://"))
            .ok_or_else(|| {
                anyhow!(
                    "the demo printed '{}' instead of its address",
                    first_line.trim()
                )
            })?
            .to_string();
        wait_until_answers(&base, Duration::from_secs(10)).await?;
        Ok(DemoChild { child, base })
    }
}

/// Polls `GET /` until the demo answers with an HTTP status line.
async fn wait_until_answers(base: &str, within: Duration) -> Result<(), Error> {
    let authority = base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let deadline = Instant::now() + within;
    loop {
        let probe = authority.clone();
        if tokio::task::spawn_blocking(move || answers_http(&probe))
            .await
            .unwrap_or(false)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(anyhow!("the demo at {base} did not answer within {within:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

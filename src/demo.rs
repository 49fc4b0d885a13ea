//! `knee demo`: the embedded target that makes knee useful on a fresh machine. Each endpoint's
//! capacity is known by construction, so knee's answers can be checked against the truth:
//! - `/`      answers at once (the generator's ceiling, not the target's);
//! - `/pool`  holds one of `slots` slots for `hold`: capacity = slots / hold;
//! - `/cpu`   burns `cpu_work` of CPU on a runtime thread: capacity ≈ cores / cpu_work.
//!
//! `--demo` on other commands starts it as a child process (this same binary) on a free port.

use crate::error::Error;
use crate::plan::DemoConfig;
use anyhow::{anyhow, Context};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::Semaphore;

/// What each endpoint can take, by construction.
pub fn explain(config: &DemoConfig) -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pool_capacity = config.slots as f64 / config.hold.as_secs_f64();
    let cpu_capacity = cores as f64 / config.cpu_work.as_secs_f64();
    format!(
        "knee demo endpoints and their capacity by construction:\n\
         \x20 /      answers at once (no target limit; measures the generator)\n\
         \x20 /pool  {} slots, each held {:?}: capacity {:.0} req/s\n\
         \x20 /cpu   {:?} of CPU per request on {} cores: capacity about {:.0} req/s\n",
        config.slots, config.hold, pool_capacity, config.cpu_work, cores, cpu_capacity
    )
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
        slots: Semaphore::new(config.slots),
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
    slots: Semaphore,
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, body) = match req.uri().path() {
        "/" | "/health" => (StatusCode::OK, "ok\n"),
        "/pool" => {
            let _slot = state.slots.acquire().await;
            tokio::time::sleep(state.config.hold).await;
            (StatusCode::OK, "pool ok\n")
        }
        "/cpu" => {
            burn_cpu(state.config.cpu_work);
            (StatusCode::OK, "cpu ok\n")
        }
        _ => (StatusCode::NOT_FOUND, "not found\n"),
    };
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    Ok(response)
}

/// Spins on this thread for `work` of wall time (the thread is busy the whole time).
pub fn burn_cpu(work: Duration) {
    let start = Instant::now();
    let mut x = 0u64;
    while start.elapsed() < work {
        for i in 0..1000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
        }
        std::hint::black_box(x);
    }
}

/// A demo target running as a child process; killed when dropped.
pub struct DemoChild {
    _child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
}

impl DemoChild {
    pub async fn start(config: &DemoConfig) -> Result<DemoChild, Error> {
        let exe = std::env::var_os("KNEE_EXE")
            .map(Into::into)
            .map_or_else(std::env::current_exe, Ok)
            .context("cannot find the knee executable to start the demo")?;
        let mut child = Command::new(&exe)
            .args(["demo", "--port", "0", "--slots", &config.slots.to_string()])
            .args(["--hold", &format!("{}us", config.hold.as_micros())])
            .args(["--cpu-work", &format!("{}us", config.cpu_work.as_micros())])
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
        Ok(DemoChild {
            _child: child,
            base,
        })
    }
}

/// Polls `GET /` until the target answers with an HTTP status line.
async fn wait_until_answers(base: &str, within: Duration) -> Result<(), Error> {
    let authority = base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let deadline = Instant::now() + within;
    loop {
        if let Ok(mut stream) = TcpStream::connect(&authority).await {
            let request =
                format!("GET / HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
            let mut head = [0u8; 12];
            if stream.write_all(request.as_bytes()).await.is_ok()
                && stream.read_exact(&mut head).await.is_ok()
                && head.starts_with(b"HTTP/1.1 ")
            {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(anyhow!("the demo at {base} did not answer within {within:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

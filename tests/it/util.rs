//! Shared helpers: in-process targets on 127.0.0.1 port 0, a temp folder, and ways to run
//! knee in-process or as a child process. Every target runs on its own thread and runtime,
//! so the generator's CPU accounting does not see it.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use knee::output::RunRecord;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Timing-sensitive tests take this lock so they do not share the 2 cores with each other.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: OnceLock<Mutex<()>> = OnceLock::new();
    LOCK.get_or_init(|| Mutex::new(()))
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// How an HTTP test target answers.
#[derive(Clone, Copy, Debug)]
pub enum Http {
    /// 200 at once (every behaviour answers 404 on /missing).
    Fast,
    /// 200 after a fixed sleep.
    Sleep(Duration),
    /// This status at once.
    Status(u16),
    /// 200 at once, except that every request arriving during [from, from+length) after the
    /// first request waits until the stall ends.
    Stall { from: Duration, length: Duration },
    /// A pool of `slots`, each held `hold` (a precise thread sleep): capacity slots/hold.
    /// With `shed`, a request finding every slot busy gets a 503 at once instead of waiting.
    Pool {
        slots: usize,
        hold: Duration,
        shed: bool,
    },
    /// One global lock around `work` of CPU time: capacity 1/work.
    Lock { work: Duration },
    /// 200 at once, until `after` past the first request: then it stops, connections and all.
    DiesAfter(Duration),
}

/// How a raw-TCP test target behaves (mostly: misbehaves).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Raw {
    /// Reads the request, never answers.
    Hang,
    /// Reads the request, closes the connection without a word.
    Close,
    /// Answers with bytes that are not HTTP.
    Garbage,
    /// Promises 100 body bytes, sends 10, closes.
    ShortBody,
    /// Keep-alive HTTP/1.1 with chunked bodies written in pieces (extension, trailer), the
    /// fifth answer on each connection with `Connection: close`; HEAD gets the head only.
    Chunked,
}

/// A test target; stops when dropped (or with `stop`).
pub struct Target {
    pub addr: SocketAddr,
    /// Connections accepted so far (counted by `raw_target`).
    pub accepted: Arc<std::sync::atomic::AtomicUsize>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Target {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops accepting and closes every connection.
    pub fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn start<F, Fut>(serve: F) -> Target
where
    F: FnOnce(TcpListener) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    start_counted(Arc::default(), serve)
}

/// `start`, serving each accepted connection with `per_connection` on a task of its own.
pub fn serve_each<F, Fut>(per_connection: F) -> Target
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    start(move |listener| async move {
        loop {
            if let Ok((stream, _)) = listener.accept().await {
                tokio::task::spawn_local(per_connection(stream));
            }
        }
    })
}

/// `start`, with a counter `serve` updates as it accepts.
fn start_counted<F, Fut>(accepted: Arc<std::sync::atomic::AtomicUsize>, serve: F) -> Target
where
    F: FnOnce(TcpListener) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (shutdown, stop_rx) = oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("test runtime");
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            tokio::select! {
                _ = serve(listener) => {}
                _ = stop_rx => {}
            }
        });
        // Dropping the runtime here drops every connection task.
    });
    let addr = addr_rx.recv().expect("target started");
    Target {
        addr,
        accepted,
        shutdown: Some(shutdown),
        thread: Some(thread),
    }
}

/// What an HTTP test target shares between its connections.
struct Shared {
    first: OnceLock<Instant>,
    slots: tokio::sync::Semaphore,
    lock: Mutex<u64>,
}

impl Shared {
    fn new(slots: usize) -> Arc<Shared> {
        Arc::new(Shared {
            first: OnceLock::new(),
            slots: tokio::sync::Semaphore::new(slots),
            lock: Mutex::new(0),
        })
    }
}

/// An HTTP/1.1 target with a known behaviour.
pub fn http_target(behaviour: Http) -> Target {
    start(move |listener| async move {
        let shared = Shared::new(match behaviour {
            Http::Pool { slots, .. } => slots,
            _ => 1,
        });
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = tick.tick() => {
                    if let (Http::DiesAfter(after), Some(first)) = (behaviour, shared.first.get()) {
                        if first.elapsed() >= after {
                            return; // the runtime drops every connection
                        }
                    }
                    continue;
                }
            };
            let Ok((stream, _)) = accepted else { continue };
            let shared = shared.clone();
            tokio::task::spawn_local(async move {
                let service = service_fn(move |req| answer(behaviour, shared.clone(), req));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

async fn answer(
    behaviour: Http,
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let first = &shared.first;
    let arrived = Instant::now();
    let missing = req.uri().path() == "/missing";
    let t0 = *first.get_or_init(|| arrived);
    let status = match behaviour {
        Http::Fast => 200,
        Http::Sleep(d) => {
            tokio::time::sleep(d).await;
            200
        }
        Http::Status(code) => code,
        Http::Stall { from, length } => {
            let (start, end) = (t0 + from, t0 + from + length);
            if arrived >= start && arrived < end {
                tokio::time::sleep_until(end.into()).await;
            }
            200
        }
        Http::Pool { hold, shed, .. } => {
            let slot = if shed {
                shared.slots.try_acquire().ok()
            } else {
                shared.slots.acquire().await.ok()
            };
            match slot {
                Some(_slot) => {
                    let _ = tokio::task::spawn_blocking(move || std::thread::sleep(hold)).await;
                    200
                }
                None => 503,
            }
        }
        Http::Lock { work } => {
            let s = shared.clone();
            let _ = tokio::task::spawn_blocking(move || {
                let mut guard = s.lock.lock().unwrap_or_else(|e| e.into_inner());
                *guard = guard.wrapping_add(knee::demo::stages::critical_section(0, work));
            })
            .await;
            200
        }
        Http::DiesAfter(_) => 200,
    };
    let status = if missing { 404 } else { status };
    let mut response = Response::new(Full::new(Bytes::from_static(b"hello\n")));
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    Ok(response)
}

/// A raw TCP target that misbehaves in a known way.
pub fn raw_target(behaviour: Raw) -> Target {
    let accepted: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
    let counter = accepted.clone();
    start_counted(accepted, move |listener| async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::task::spawn_local(async move {
                if behaviour == Raw::Chunked {
                    return chunked_answers(stream).await;
                }
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                match behaviour {
                    Raw::Hang => tokio::time::sleep(Duration::from_secs(30)).await,
                    Raw::Close => {}
                    Raw::Garbage => {
                        let _ = stream
                            .write_all(b"SSH-2.0-OpenSSH_9.0 this is not http\r\n\r\n")
                            .await;
                    }
                    Raw::ShortBody => {
                        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789";
                        let _ = stream.write_all(head).await;
                    }
                    Raw::Chunked => unreachable!("answered above"),
                }
            });
        }
    })
}

/// `Raw::Chunked`: up to five requests on one connection, each answered in pieces.
async fn chunked_answers(mut stream: tokio::net::TcpStream) {
    let mut seen = Vec::new();
    for answered in 1..=5 {
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut buf = [0u8; 1024];
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        let head_only = seen.starts_with(b"HEAD ");
        seen.clear();
        let close = if answered == 5 {
            "connection: close\r\n"
        } else {
            ""
        };
        let head = format!("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n{close}\r\n");
        let mut pieces: Vec<&[u8]> = vec![head.as_bytes()];
        if !head_only {
            pieces.extend([
                &b"5;ext=1\r\nhel"[..],
                b"lo\r\n1",
                b"\r\n!\r\n0\r\nx-t: 1\r\n",
                b"\r\n",
            ]);
        }
        for piece in pieces {
            if stream.write_all(piece).await.is_err() {
                return;
            }
            let _ = stream.flush().await;
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
}

/// A port with nothing listening on it.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A listener whose accept queue is full: new connects get no answer (SYNs are dropped).
pub fn full_backlog() -> (std::net::TcpListener, Vec<std::net::TcpStream>) {
    use std::os::fd::AsRawFd;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    // SAFETY: re-listening on our own listening socket only shrinks its backlog.
    unsafe { libc::listen(listener.as_raw_fd(), 0) };
    let addr = listener.local_addr().unwrap();
    let fillers = (0..4)
        .filter_map(|_| {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()
        })
        .collect();
    (listener, fillers)
}

/// A folder under the system temp dir, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "knee-test-{}-{}-{label}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    /// Every run folder a test leaves is checked against schema/run.schema.json on its way
    /// out: run.json as a whole, and each steps.jsonl line as a step.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            if let Err(problem) = check_run_folder(&self.0) {
                let _ = std::fs::remove_dir_all(&self.0);
                panic!("{problem}");
            }
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The schema, compiled once; the index of the whole run and of one step.
fn schema() -> &'static (boon::Schemas, boon::SchemaIndex, boon::SchemaIndex) {
    static SCHEMA: OnceLock<(boon::Schemas, boon::SchemaIndex, boon::SchemaIndex)> =
        OnceLock::new();
    SCHEMA.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/run.schema.json");
        let text = std::fs::read_to_string(path).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let id = json["$id"].as_str().unwrap().to_string();
        let mut schemas = boon::Schemas::new();
        let mut compiler = boon::Compiler::new();
        compiler.add_resource(&id, json).unwrap();
        let run = compiler.compile(&id, &mut schemas).unwrap();
        let step = compiler
            .compile(&format!("{id}#/$defs/step"), &mut schemas)
            .unwrap();
        (schemas, run, step)
    })
}

/// Validates every run folder under `dir` (itself and its subfolders, at any depth): each
/// run.json against the schema, and each steps.jsonl line as a step. A folder that holds a
/// run's files (steps.jsonl, samples.jsonl or hist/) without a run.json fails.
pub fn check_run_folder(dir: &Path) -> Result<(), String> {
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        check_one_folder(&folder)?;
        if let Ok(entries) = std::fs::read_dir(&folder) {
            pending.extend(
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_dir() && !p.is_symlink()),
            );
        }
    }
    Ok(())
}

fn check_one_folder(dir: &Path) -> Result<(), String> {
    let (schemas, run, step) = schema();
    let run_json = dir.join("run.json");
    let is_run = ["steps.jsonl", "samples.jsonl", "hist"]
        .iter()
        .any(|f| dir.join(f).exists());
    if is_run && !run_json.exists() {
        return Err(format!("{}: a run folder without run.json", dir.display()));
    }
    if let Ok(text) = std::fs::read_to_string(&run_json) {
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("run.json is not JSON: {e}"))?;
        schemas
            .validate(&json, *run)
            .map_err(|e| format!("{}/run.json breaks the schema: {e:#}", dir.display()))?;
    }
    if let Ok(text) = std::fs::read_to_string(dir.join("steps.jsonl")) {
        for (i, line) in text.lines().enumerate() {
            let json: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| format!("steps.jsonl:{} is not JSON: {e}", i + 1))?;
            schemas.validate(&json, *step).map_err(|e| {
                format!(
                    "{}/steps.jsonl:{} breaks the schema: {e:#}",
                    dir.display(),
                    i + 1
                )
            })?;
        }
    }
    Ok(())
}

/// Runs knee in-process with `args` (program name added) writing to `out`; returns the
/// outcome and the run.json it wrote.
pub fn knee_run(
    out: &Path,
    args: &[&str],
) -> (Result<knee::Outcome, knee::Error>, Option<RunRecord>) {
    let out_text = out.to_string_lossy().to_string();
    let mut full = vec!["knee", "run", "-q", "--out", out_text.as_str()];
    full.extend_from_slice(args);
    let outcome = knee::run(full);
    let record = RunRecord::read(&out.join("run.json")).ok();
    (outcome, record)
}

/// Runs the knee binary as a child with `args` plus `-q --out DIR`; it must exit 0 or 1 (a
/// run that held or failed). Returns run.json and what it printed on stderr.
pub fn knee_child(args: &[impl AsRef<std::ffi::OsStr>]) -> (RunRecord, String) {
    knee_child_in(&TempDir::new("child"), args)
}

/// `knee_child` writing its run folder to `out`, which the caller keeps to read.
pub fn knee_child_in(out: &TempDir, args: &[impl AsRef<std::ffi::OsStr>]) -> (RunRecord, String) {
    let output = std::process::Command::new(knee_bin())
        .args(args)
        .args(["-q", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        matches!(output.status.code(), Some(0) | Some(1)),
        "{:?}: {stderr}",
        output.status.code()
    );
    (
        RunRecord::read(&out.join("run.json")).expect("run.json"),
        stderr,
    )
}

/// How the verdict tests measure: `knee run` of `url` at `rates` in short steps (800 ms,
/// 200 ms warm-up, samples every 200 ms) against p99 <= 60 ms.
pub fn verdict_run_args(url: &str, rates: &str) -> Vec<String> {
    let args = [
        "run",
        "--url",
        url,
        "--steps",
        rates,
        "--step-duration",
        "800ms",
        "--warmup",
        "200ms",
        "--sample-every",
        "200ms",
        "--slo",
        "p99=60ms",
    ];
    args.iter().map(|a| a.to_string()).collect()
}

/// The steps of a run folder's steps.jsonl, each line parsed.
pub fn read_steps_jsonl(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("steps.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("every steps.jsonl line is JSON"))
        .collect()
}

/// The knee binary built for these tests.
pub fn knee_bin() -> &'static str {
    env!("CARGO_BIN_EXE_knee")
}

/// How a test target speaks: HTTP/2 prior knowledge over TCP, or TLS with a self-signed
/// certificate (HTTP/2 or HTTP/1.1 by ALPN).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Wire {
    H2c,
    Tls,
}

/// A fast (200) target on `wire`.
pub fn wire_target(wire: Wire) -> Target {
    use hyper::server::conn::http2;
    use hyper_util::rt::TokioExecutor;
    let acceptor = (wire == Wire::Tls).then(self_signed_acceptor);
    let first = Arc::new(Shared {
        first: OnceLock::new(),
        slots: tokio::sync::Semaphore::new(1),
        lock: Mutex::new(0),
    });
    serve_each(move |stream| {
        let first = first.clone();
        let acceptor = acceptor.clone();
        async move {
            let service = service_fn(move |req| answer(Http::Fast, first.clone(), req));

            let Some(acceptor) = acceptor else {
                let io = TokioIo::new(stream);
                let _ = http2::Builder::new(TokioExecutor::new())
                    .serve_connection(io, service)
                    .await;
                return;
            };
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            let io = TokioIo::new(tls);
            if h2 {
                let _ = http2::Builder::new(TokioExecutor::new())
                    .serve_connection(io, service)
                    .await;
            } else {
                let _ = http1::Builder::new().serve_connection(io, service).await;
            }
        }
    })
}

fn self_signed_acceptor() -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("self-signed certificate");
    let cert = CertificateDer::from(certified.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("server certificate");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// An HTML report tokenizes without a parse error (html5gum, a WHATWG tokenizer), its
/// elements nest properly, it has at least `charts` inline SVG charts, runs no script and
/// fetches nothing: every src/href is a data: URI or a path relative to the report.
pub fn assert_self_contained_html(html: &str, charts: usize) {
    const VOID: [&str; 13] = [
        "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr",
    ];
    let mut open: Vec<String> = Vec::new();
    let mut svgs = 0;
    for token in html5gum::Tokenizer::new(html).flatten() {
        match token {
            html5gum::Token::Error(error) => panic!("HTML parse error: {error:?}"),
            html5gum::Token::StartTag(tag) => {
                let name = String::from_utf8_lossy(&tag.name).into_owned();
                assert!(name != "script" && name != "link", "<{name}> in a report");
                svgs += usize::from(name == "svg");
                for attribute in ["src", "href"] {
                    if let Some(value) = tag.attributes.get(attribute.as_bytes()) {
                        let value = String::from_utf8_lossy(value);
                        let local = value.starts_with("data:")
                            || !(value.contains("://") || value.starts_with("//"));
                        assert!(local, "{attribute}=\"{value}\" would be fetched");
                    }
                }
                if !tag.self_closing && !VOID.contains(&name.as_str()) {
                    open.push(name);
                }
            }
            html5gum::Token::EndTag(tag) => {
                let name = String::from_utf8_lossy(&tag.name).into_owned();
                assert_eq!(
                    open.pop().as_deref(),
                    Some(name.as_str()),
                    "misnested </{name}>"
                );
            }
            _ => {}
        }
    }
    assert!(open.is_empty(), "never closed: {open:?}");
    assert!(
        svgs >= charts,
        "{svgs} inline SVG charts, expected {charts}"
    );
}

/// A Prometheus-style endpoint: every GET answers `body` as text, over TLS with a
/// self-signed certificate when `tls`, and in chunks (`Transfer-Encoding: chunked`, a frame
/// per line) when `chunked`; with `authorization`, a request without exactly that
/// Authorization header gets 401.
pub fn text_target(
    body: String,
    chunked: bool,
    tls: bool,
    authorization: Option<&'static str>,
) -> Target {
    let body: Arc<str> = body.into();
    let acceptor = tls.then(self_signed_acceptor);
    serve_each(move |stream| {
        let body = body.clone();
        let acceptor = acceptor.clone();
        async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let body = body.clone();
                let given = req.headers().get(http::header::AUTHORIZATION).cloned();
                async move {
                    if let Some(wanted) = authorization {
                        if given.as_ref().and_then(|v| v.to_str().ok()) != Some(wanted) {
                            let mut denied = Response::new(Frames([].into()));
                            *denied.status_mut() = hyper::StatusCode::UNAUTHORIZED;
                            return Ok::<_, Infallible>(denied);
                        }
                    }
                    let frames: std::collections::VecDeque<Bytes> = if chunked {
                        body.split_inclusive('\n')
                            .map(|line| Bytes::from(line.to_string()))
                            .collect()
                    } else {
                        [Bytes::from(body.to_string())].into()
                    };
                    let mut response = Response::new(Frames(frames));
                    if !chunked {
                        response.headers_mut().insert(
                            http::header::CONTENT_LENGTH,
                            body.len().to_string().parse().unwrap(),
                        );
                    }
                    response.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4".parse().unwrap(),
                    );
                    Ok::<_, Infallible>(response)
                }
            });
            match acceptor {
                Some(acceptor) => {
                    if let Ok(tls) = acceptor.accept(stream).await {
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(tls), service)
                            .await;
                    }
                }
                None => {
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }
            }
        }
    })
}

/// A body of frames of unknown total size: hyper sends it chunked unless told its length.
struct Frames(std::collections::VecDeque<Bytes>);

impl hyper::body::Body for Frames {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        std::task::Poll::Ready(self.0.pop_front().map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

/// A server that accepts slowly from a tiny listen backlog: one thread accepts a connection,
/// reads the request, works `work`, answers with `Connection: close` and closes, so every
/// request is a new connection and the kernel's accept queue (`backlog` long) overflows past
/// 1/work requests per second. Stops when dropped.
pub struct SlowAcceptor {
    pub addr: SocketAddr,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SlowAcceptor {
    pub fn start(backlog: i32, work: Duration) -> SlowAcceptor {
        use std::io::{Read, Write};
        use std::os::fd::AsRawFd;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        // SAFETY: re-listening on our own listening socket only sets its backlog.
        unsafe { libc::listen(listener.as_raw_fd(), backlog) };
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                let Ok((mut stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_micros(200));
                    continue;
                };
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut seen = Vec::new();
                let mut buf = [0u8; 2048];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                std::thread::sleep(work);
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
                );
            }
        });
        SlowAcceptor {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

impl Drop for SlowAcceptor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts `command` with stdin and stdout piped (a service of ours exits when its stdin, our
/// end of the pipe, closes) and returns it with the first line it prints (its port or URL).
pub fn spawn_reading_first_line(
    command: &mut std::process::Command,
) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line.trim().to_string())
}

/// One of knee's examples (examples/NAME.rs), which cargo test builds beside the test
/// binary: target/<profile>/examples/NAME.
pub fn example_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let binary = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("examples").join(name))
        .unwrap();
    assert!(
        binary.exists(),
        "{} (cargo test builds it)",
        binary.display()
    );
    binary
}

/// A free port on 127.0.0.1 (bound and released: a tiny race, fine on a test box).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The step the verdict names as the knee.
pub fn knee_step(record: &RunRecord) -> &knee::model::step::StepResult {
    let name = record.verdict.as_ref().and_then(|v| v.knee_step.clone());
    record
        .steps
        .iter()
        .find(|s| Some(&s.name) == name.as_ref())
        .unwrap_or_else(|| panic!("no knee step {name:?}"))
}

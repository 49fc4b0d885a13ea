//! The load hot path: hyper 1.x connection-level clients (HTTP/1.1 keep-alive, HTTP/2), over
//! TCP or rustls. Each worker owns one connection at a time and drives it itself: the hyper
//! connection future is polled inside the worker's task instead of a task of its own, which
//! saves two cross-task wake-ups per request. A failed connection is dropped and the next
//! request opens a new one. No pooling logic lives here (see `engine::Pool`).

use super::errors::{Answer, Classify, ErrorClass};
use super::h1::{self, H1Conn, Kept};
use super::h2_shared;
use crate::error::Error;
use crate::plan::{HttpVersion, RequestPlan, TargetPlan};
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The half of a hyper HTTP/2 connection that does the I/O; polled by whoever waits on it.
type Driver = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One open connection: HTTP/1.1 by hand (`h1`), HTTP/2 by hyper; counted open until dropped
/// (a stream on a shared connection: the connection is counted while it is shared).
pub struct Conn {
    wire: Wire,
    _open: Option<OpenGuard>,
}

enum Wire {
    H1(H1Conn),
    H2 {
        sender: http2::SendRequest<Full<Bytes>>,
        /// None once the connection has ended.
        driver: Option<Driver>,
    },
    /// A stream of an HTTP/2 connection several workers share (`--h2-streams`).
    H2Stream(h2_shared::Lease),
}

/// How long opening a connection took: the TCP handshake (SYN to established, SYN
/// retransmits included) and, over TLS, the TLS handshake after it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Connected {
    pub tcp: Duration,
    pub tls: Option<Duration>,
}

/// The connections the generator opened and closed, and how many are open now: what
/// `generator.connections` reports (knee's own connections must not read as the target's).
#[derive(Debug, Default)]
pub struct ConnStats {
    pub open: AtomicU64,
    pub opened: AtomicU64,
    pub closed: AtomicU64,
}

impl ConnStats {
    /// (open, opened, closed) now.
    pub fn read(&self) -> (u64, u64, u64) {
        (
            self.open.load(Ordering::Relaxed),
            self.opened.load(Ordering::Relaxed),
            self.closed.load(Ordering::Relaxed),
        )
    }
}

/// Counts a connection open from its opening until it is dropped.
struct OpenGuard(Arc<ConnStats>);

impl OpenGuard {
    fn new(stats: &Arc<ConnStats>) -> OpenGuard {
        stats.open.fetch_add(1, Ordering::Relaxed);
        stats.opened.fetch_add(1, Ordering::Relaxed);
        OpenGuard(stats.clone())
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
        self.0.closed.fetch_add(1, Ordering::Relaxed);
    }
}

/// Polls `fut`, and the connection's I/O while `fut` waits on it. When the connection ends,
/// it is dropped, which fails whatever `fut` was waiting for.
async fn drive<F: Future>(driver: &mut Option<Driver>, fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    poll_fn(|cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(out);
        }
        if let Some(io) = driver.as_mut() {
            if io.as_mut().poll(cx).is_ready() {
                *driver = None;
                return fut.as_mut().poll(cx);
            }
        }
        Poll::Pending
    })
    .await
}

/// A request prepared once: its bytes for HTTP/1.1, its parts for HTTP/2.
pub struct Prepared {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    /// A gRPC call (content type application/grpc): its answer's `grpc-status` is read.
    grpc: bool,
    /// The whole HTTP/1.1 request as written.
    wire: Bytes,
}

pub struct Client {
    pub stats: Arc<ConnStats>,
    addrs: Vec<SocketAddr>,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    http: HttpVersion,
    connect_timeout: Duration,
    request_timeout: Duration,
    requests: Vec<Prepared>,
    /// The target's base URL and Host header, for requests a flow renders as it goes.
    base: Uri,
    host: HeaderValue,
    /// HTTP/2 streams in flight per connection (1: a connection per worker).
    h2_streams: usize,
    /// Held while a shared HTTP/2 connection opens, so workers starting together wait for
    /// it instead of each opening one.
    h2_opening: tokio::sync::Mutex<()>,
}

impl Client {
    /// Resolves the target once and prepares every request of the mix.
    pub async fn new(target: &TargetPlan, requests: &[RequestPlan]) -> Result<Client, Error> {
        let host = target.base.host().unwrap_or("localhost").to_string();
        let https = target.base.scheme_str() == Some("https");
        let port = target
            .base
            .port_u16()
            .unwrap_or(if https { 443 } else { 80 });
        let bare_host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((bare_host.as_str(), port))
            .await
            .map_err(|e| Error::input(format!("cannot resolve target host '{host}': {e}")))?
            .collect();
        if addrs.is_empty() {
            return Err(Error::input(format!("target host '{host}' has no address")));
        }
        let tls = if https {
            let name = ServerName::try_from(bare_host.clone())
                .map_err(|_| Error::input(format!("'{host}' is not a valid TLS server name")))?;
            Some((TlsConnector::from(tls_config(target)?), name))
        } else {
            None
        };
        let authority = match target.base.port_u16() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let host_value = HeaderValue::from_str(&authority)
            .map_err(|_| Error::input(format!("'{authority}' is not a valid Host header")))?;
        let prepared = requests
            .iter()
            .map(|r| prepare(&target.base, target.http, r, &host_value))
            .collect::<Result<_, _>>()?;
        Ok(Client {
            stats: Arc::default(),
            addrs,
            tls,
            http: target.http,
            connect_timeout: target.connect_timeout,
            request_timeout: target.request_timeout,
            requests: prepared,
            base: target.base.clone(),
            host: host_value,
            h2_streams: match target.http {
                HttpVersion::Http2 => target.h2_streams.max(1),
                HttpVersion::Http1 => 1,
            },
            h2_opening: tokio::sync::Mutex::new(()),
        })
    }

    /// A request rendered by a flow, prepared like the mix's (its error: why it cannot be).
    pub fn prepare(&self, request: &RequestPlan) -> Result<Prepared, String> {
        prepare(&self.base, self.http, request, &self.host).map_err(|e| e.to_string())
    }

    /// Request `index` of the run, as prepared at the start.
    pub fn prepared(&self, index: usize) -> &Prepared {
        &self.requests[index]
    }

    /// The whole-request timeout; the caller enforces it (see `engine::worker`).
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// Sends request `index` of the mix on `slot` (opening a connection if needed, and then
    /// saying how long that took in `connected`) and reads the whole response. The caller
    /// drops the connection on any failure.
    pub async fn send(
        &self,
        slot: &mut Option<Conn>,
        index: usize,
        connected: &mut Option<Connected>,
    ) -> Result<Answer, ErrorClass> {
        self.send_prepared(slot, &self.requests[index], connected, None)
            .await
    }

    /// Sends `prepared` as `send` does; with `keep`, its response's headers and body are
    /// kept there (a flow takes values from them).
    pub async fn send_prepared(
        &self,
        slot: &mut Option<Conn>,
        prepared: &Prepared,
        connected: &mut Option<Connected>,
        mut keep: Option<&mut Kept>,
    ) -> Result<Answer, ErrorClass> {
        let first = self
            .send_once(slot, prepared, connected, keep.as_deref_mut())
            .await;
        match first {
            // Never reached the server (refused by a GOAWAY, or cancelled before it was
            // written on a connection that closed): once more, on another connection.
            Err(failed) if failed.unsent => {
                if let Some(Conn {
                    wire: Wire::H2Stream(lease),
                    ..
                }) = slot.as_ref()
                {
                    lease.going_away();
                }
                *slot = None;
                self.send_once(slot, prepared, connected, keep)
                    .await
                    .map_err(|f| f.class)
            }
            other => other.map_err(|f| f.class),
        }
    }

    async fn send_once(
        &self,
        slot: &mut Option<Conn>,
        prepared: &Prepared,
        connected: &mut Option<Connected>,
        keep: Option<&mut Kept>,
    ) -> Result<Answer, Failed> {
        // A keep-alive connection the server closed while idle is not a failed request:
        // open a new one and send there.
        let open = match slot.as_mut() {
            Some(conn) => is_open(conn).await,
            None => false,
        };
        if !open {
            let (mut fresh, timing) = match self.h2_streams > 1 {
                true => self.shared_stream().await?,
                false => self.connect().await.map(|(c, t)| (c, Some(t)))?,
            };
            *connected = timing;
            ready(&mut fresh).await?;
            *slot = Some(fresh);
        }
        let conn = slot.as_mut().expect("connection was just opened");
        match &mut conn.wire {
            Wire::H1(h1) => h1
                .send(&prepared.wire, prepared.method == Method::HEAD, keep)
                .await
                .map(Answer::http)
                .map_err(Failed::from),
            Wire::H2 { sender, driver } => send_h2(sender, driver, prepared, keep).await,
            Wire::H2Stream(lease) => send_h2(&mut lease.sender, &mut None, prepared, keep).await,
        }
    }

    /// A stream on a shared HTTP/2 connection of this lane with room for one more, opening a
    /// connection when none has (then also how long that took).
    async fn shared_stream(&self) -> Result<(Conn, Option<Connected>), ErrorClass> {
        let id = self as *const Client as usize;
        let stream = |lease| Conn {
            wire: Wire::H2Stream(lease),
            _open: None,
        };
        if let Some(lease) = h2_shared::lease(id, self.h2_streams) {
            return Ok((stream(lease), None));
        }
        let _opening = self.h2_opening.lock().await;
        if let Some(lease) = h2_shared::lease(id, self.h2_streams) {
            return Ok((stream(lease), None)); // opened while this worker waited
        }
        let started = std::time::Instant::now();
        let tcp = self.connect_tcp().await?;
        let mut timing = Connected {
            tcp: started.elapsed(),
            tls: None,
        };
        let open: Box<dyn Send> = Box::new(OpenGuard::new(&self.stats));
        let lease = match &self.tls {
            None => h2_shared::open(id, tcp, open).await?,
            Some((connector, name)) => {
                let tls = self
                    .tls_handshake(connector, name, tcp, &mut timing)
                    .await?;
                h2_shared::open(id, tls, open).await?
            }
        };
        Ok((stream(lease), Some(timing)))
    }

    async fn tls_handshake(
        &self,
        connector: &TlsConnector,
        name: &ServerName<'static>,
        tcp: TcpStream,
        timing: &mut Connected,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ErrorClass> {
        let handshake = std::time::Instant::now();
        let tls = tokio::time::timeout(self.connect_timeout, connector.connect(name.clone(), tcp))
            .await
            .map_err(|_| ErrorClass::ConnectTimeout)?
            .map_err(|_| ErrorClass::Tls)?;
        timing.tls = Some(handshake.elapsed());
        Ok(tls)
    }
}

/// Why a send failed, and whether the request surely never reached the server: refused by
/// a GOAWAY (RFC 9113: streams above its last stream id were not processed), or cancelled by
/// hyper before it was written, its connection having closed.
struct Failed {
    class: ErrorClass,
    unsent: bool,
}

impl From<ErrorClass> for Failed {
    fn from(class: ErrorClass) -> Failed {
        Failed {
            class,
            unsent: false,
        }
    }
}

/// Sends `prepared` on an HTTP/2 connection (polling its I/O in `driver` when this worker
/// owns it) and reads the whole answer, keeping it in `keep` when asked.
async fn send_h2(
    sender: &mut http2::SendRequest<Full<Bytes>>,
    driver: &mut Option<Driver>,
    prepared: &Prepared,
    keep: Option<&mut Kept>,
) -> Result<Answer, Failed> {
    let mut request = Request::new(Full::new(prepared.body.clone()));
    *request.method_mut() = prepared.method.clone();
    *request.uri_mut() = prepared.uri.clone();
    *request.headers_mut() = prepared.headers.clone();
    let response = drive(driver, sender.send_request(request))
        .await
        .map_err(|e| {
            let class = ErrorClass::of_request(&e);
            Failed {
                class,
                unsent: e.is_canceled() || class == ErrorClass::H2GoAway,
            }
        })?;
    let status = response.status().as_u16();
    // A gRPC answer's status is in its trailers, or in its headers when it has no body
    // (Trailers-Only); none at all is INTERNAL, as gRPC's own clients read it.
    let mut grpc = prepared.grpc.then(|| grpc_status(response.headers()));
    let mut keep = keep;
    if let Some(kept) = keep.as_deref_mut() {
        kept.headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        kept.body.clear();
    }
    let mut body = response.into_body();
    while let Some(frame) = drive(driver, body.frame()).await {
        let frame = frame.map_err(|e| ErrorClass::of_body(&e))?;
        if let (Some(kept), Some(data)) = (keep.as_deref_mut(), frame.data_ref()) {
            let room = h1::MAX_KEPT_BODY.saturating_sub(kept.body.len());
            kept.body.extend_from_slice(&data[..data.len().min(room)]);
        }
        if let (Some(code), Some(trailers)) = (grpc.as_mut(), frame.trailers_ref()) {
            *code = grpc_status(trailers);
        }
    }
    Ok(Answer { status, grpc })
}

/// The `grpc-status` of a header block; INTERNAL (13) when it has none or it is not a number.
fn grpc_status(headers: &HeaderMap) -> u32 {
    const INTERNAL: u32 = 13;
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(INTERNAL)
}

impl Client {
    async fn connect(&self) -> Result<(Conn, Connected), ErrorClass> {
        let started = std::time::Instant::now();
        let tcp = self.connect_tcp().await?;
        let mut timing = Connected {
            tcp: started.elapsed(),
            tls: None,
        };
        let open = OpenGuard::new(&self.stats);
        let wire = match &self.tls {
            None => match self.http {
                HttpVersion::Http1 => Wire::H1(H1Conn::new(Box::new(tcp))),
                HttpVersion::Http2 => handshake_h2(tcp).await?,
            },
            Some((connector, name)) => {
                let tls = self
                    .tls_handshake(connector, name, tcp, &mut timing)
                    .await?;
                match self.http {
                    HttpVersion::Http1 => Wire::H1(H1Conn::new(Box::new(tls))),
                    HttpVersion::Http2 => handshake_h2(tls).await?,
                }
            }
        };
        Ok((
            Conn {
                wire,
                _open: Some(open),
            },
            timing,
        ))
    }

    async fn connect_tcp(&self) -> Result<TcpStream, ErrorClass> {
        let mut last = ErrorClass::ConnectOther;
        for addr in &self.addrs {
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Ok(Err(e)) => last = ErrorClass::of_connect(&e),
                Err(_) => last = ErrorClass::ConnectTimeout,
            }
        }
        Err(last)
    }
}

/// Whether `conn` can take a request now: see `H1Conn::is_open`; an HTTP/2 connection is
/// polled until it is ready for another stream (or found ended, e.g. by a GOAWAY).
async fn is_open(conn: &mut Conn) -> bool {
    ready(conn).await.is_ok()
}

/// `is_open`, with why not: a closed HTTP/1.1 connection is `connection_reset`, an HTTP/2
/// one says why (a GOAWAY, say).
async fn ready(conn: &mut Conn) -> Result<(), ErrorClass> {
    let h2 = |r: Result<(), hyper::Error>| r.map_err(|e| ErrorClass::of_request(&e));
    match &mut conn.wire {
        Wire::H1(h1) => match h1.is_open().await {
            true => Ok(()),
            false => Err(ErrorClass::ConnectionReset),
        },
        Wire::H2 { sender, driver } => h2(drive(driver, sender.ready()).await),
        Wire::H2Stream(lease) => h2(lease.sender.ready().await),
    }
}

async fn handshake_h2<IO>(io: IO) -> Result<Wire, ErrorClass>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(io))
        .await
        .map_err(|e| ErrorClass::of_request(&e))?;
    Ok(Wire::H2 {
        sender,
        driver: Some(Box::pin(async move {
            let _ = connection.await;
        })),
    })
}

/// Joins the request path to the target's base URL. HTTP/1.1 sends the origin form
/// (`/path?q`) with a Host header; HTTP/2 needs the absolute form.
fn prepare(
    base: &Uri,
    http: HttpVersion,
    request: &RequestPlan,
    host: &HeaderValue,
) -> Result<Prepared, Error> {
    let base_path = base.path().trim_end_matches('/');
    let path = if request.path.is_empty() {
        match base.query() {
            Some(q) => format!("{}?{q}", base.path()),
            None => base.path().to_string(),
        }
    } else if request.path.starts_with('?') {
        format!("{}{}", base.path(), request.path)
    } else {
        format!("{base_path}{}", request.path)
    };
    let path = if path.is_empty() {
        "/".to_string()
    } else {
        path
    };
    let text = match http {
        HttpVersion::Http1 => path,
        HttpVersion::Http2 => format!(
            "{}://{}{path}",
            base.scheme_str().unwrap_or("http"),
            base.authority().map(|a| a.as_str()).unwrap_or("localhost")
        ),
    };
    let uri: Uri = text.parse().map_err(|_| {
        Error::input(format!(
            "request '{}': '{text}' is not a valid path",
            request.name
        ))
    })?;
    let mut headers = HeaderMap::new();
    if http == HttpVersion::Http1 {
        headers.insert(header::HOST, host.clone());
    }
    headers.insert(
        header::USER_AGENT,
        HeaderValue::from_static(concat!("knee/", env!("CARGO_PKG_VERSION"))),
    );
    for (name, value) in &request.headers {
        headers.insert(name.clone(), value.clone());
    }
    // A gRPC call is told by its content type, as a gRPC server tells it.
    let grpc = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    Ok(Prepared {
        grpc,
        wire: h1::wire(&request.method, &text, &headers, &request.body),
        method: request.method.clone(),
        uri,
        headers,
        body: request.body.clone(),
    })
}

fn tls_config(target: &TargetPlan) -> Result<Arc<rustls::ClientConfig>, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Internal(e.into()))?;
    let mut config = if target.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
            .with_no_client_auth()
    } else {
        let roots =
            rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = match target.http {
        HttpVersion::Http1 => vec![b"http/1.1".to_vec()],
        HttpVersion::Http2 => vec![b"h2".to_vec()],
    };
    Ok(Arc::new(config))
}

/// `--insecure`: accepts any certificate, still checks the handshake signatures.
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

//! HTTP/1.1 on the load hot path, written for it. Each request of the mix is serialized once
//! (`wire`) and written as it is; the response head is parsed by httparse in the connection's
//! own buffer and the body is skipped as it arrives, never collected.
//!
//! Why not hyper here (it still carries HTTP/2, see `client`): measured on this 2-core box in
//! one run against nginx, 50 keep-alive connections on two single-threaded runtimes, a bare
//! hyper connection loop made 0.80× wrk's requests/s and spent 2.7 s of user CPU where this
//! loop spent 1.0 s (wrk: 0.9 s). A load generator shares the machine with what it measures
//! (or with its own other half), so its CPU per request is throughput.

use super::errors::{Classify, ErrorClass};
use bytes::{BufMut, Bytes, BytesMut};
use http::{header, HeaderMap, Method};
use std::future::poll_fn;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// The read buffer a connection starts with (as wrk's); it grows only for a long head.
const INITIAL_BUFFER: usize = 8 * 1024;
/// The longest response head, chunk-size line or trailer accepted (hyper's default too).
const MAX_HEAD: usize = 64 * 1024;
/// The most header fields in a response head (hyper's default too).
const MAX_HEADERS: usize = 100;

/// A byte stream a connection runs on: TCP, TLS over TCP, or an in-memory pipe in tests.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {
    /// False only when nothing can be waiting to be read, which spares the idle check a
    /// read system call. Registers the task for readiness like any poll.
    fn maybe_readable(&self, _cx: &mut Context<'_>) -> bool {
        true
    }
}

impl Stream for TcpStream {
    fn maybe_readable(&self, cx: &mut Context<'_>) -> bool {
        self.poll_read_ready(cx).is_ready()
    }
}

impl Stream for tokio_rustls::client::TlsStream<TcpStream> {
    fn maybe_readable(&self, cx: &mut Context<'_>) -> bool {
        self.get_ref().0.poll_read_ready(cx).is_ready()
    }
}

/// A request as it goes on the wire: request line, headers (with a Content-Length the
/// engine computes; the profile's own Content-Length and Transfer-Encoding are left out so
/// the framing is always right), blank line, body.
pub fn wire(method: &Method, path: &str, headers: &HeaderMap, body: &Bytes) -> Bytes {
    let mut out = BytesMut::with_capacity(256 + body.len());
    out.put_slice(method.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(path.as_bytes());
    out.put_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    let body_expected = matches!(*method, Method::POST | Method::PUT | Method::PATCH);
    if !body.is_empty() || body_expected {
        out.put_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    out.put_slice(b"\r\n");
    out.put_slice(body);
    out.freeze()
}

/// The most of a body kept for a flow's extractions; the rest is read and dropped.
pub const MAX_KEPT_BODY: usize = 1 << 20;

/// What a flow keeps of a response to take values from: its header fields and its body (up
/// to `MAX_KEPT_BODY`). The load's plain requests keep nothing.
#[derive(Debug, Default)]
pub struct Kept {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Kept {
    fn body_bytes(&mut self, bytes: &[u8]) {
        let room = MAX_KEPT_BODY.saturating_sub(self.body.len());
        self.body.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

/// How the body of a response is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Body {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

struct Head {
    status: u16,
    keep_alive: bool,
    body: Body,
}

/// Why the buffer could not take more bytes.
enum Fill {
    Io(io::Error),
    /// A head, chunk-size line or trailer longer than `MAX_HEAD`.
    TooLong,
}

/// One HTTP/1.1 connection: the stream and the bytes read from it but not yet used.
pub struct H1Conn {
    io: Box<dyn Stream>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// False once the server asked to close, sent a body delimited by the close, or sent
    /// more than the response.
    reusable: bool,
}

impl H1Conn {
    pub fn new(io: Box<dyn Stream>) -> H1Conn {
        H1Conn {
            io,
            buf: vec![0; INITIAL_BUFFER],
            start: 0,
            end: 0,
            reusable: true,
        }
    }

    /// Whether another request can go on this connection: the server did not ask to close
    /// it, and did not close it (or send anything unasked) while it sat idle.
    pub async fn is_open(&mut self) -> bool {
        if !self.reusable {
            return false;
        }
        let io = &mut self.io;
        poll_fn(|cx| {
            if !io.maybe_readable(cx) {
                return Poll::Ready(true);
            }
            let mut probe = [0u8; 64];
            let mut probe = ReadBuf::new(&mut probe);
            // Pending: nothing to read (a TLS stream may have eaten a session ticket). Ready:
            // closed, failed, or bytes nobody asked for.
            Poll::Ready(Pin::new(&mut **io).poll_read(cx, &mut probe).is_pending())
        })
        .await
    }

    /// Writes one request and reads its whole response; returns the status. After an error
    /// the connection is in an unknown state and must be dropped.
    pub async fn send(
        &mut self,
        wire: &[u8],
        head_request: bool,
        mut keep: Option<&mut Kept>,
    ) -> Result<u16, ErrorClass> {
        self.io
            .write_all(wire)
            .await
            .map_err(|e| ErrorClass::of_io(&e))?;
        self.io.flush().await.map_err(|e| ErrorClass::of_io(&e))?;
        loop {
            let head = self.read_head(keep.as_deref_mut()).await?;
            let informational = (100..200).contains(&head.status);
            if informational && head.status != 101 {
                continue; // 100 Continue, 103 Early Hints: the answer follows
            }
            let body = if head_request || informational || matches!(head.status, 204 | 304) {
                Body::Empty
            } else {
                head.body
            };
            self.skip_body(body, keep.as_deref_mut())
                .await
                .map_err(|_| ErrorClass::BodyRead)?;
            // 101 switches the connection away from HTTP/1.1.
            self.reusable &= head.keep_alive && head.status != 101 && self.start == self.end;
            return Ok(head.status);
        }
    }

    async fn read_head(&mut self, mut keep: Option<&mut Kept>) -> Result<Head, ErrorClass> {
        loop {
            if self.end > self.start {
                if let Some(head) = self.parse_head(keep.as_deref_mut())? {
                    return Ok(head);
                }
            }
            match self.fill().await {
                // Closed before a whole head arrived.
                Ok(0) => return Err(ErrorClass::ConnectionReset),
                Ok(_) => {}
                Err(Fill::TooLong) => return Err(ErrorClass::Protocol),
                Err(Fill::Io(e)) => return Err(ErrorClass::of_io(&e)),
            }
        }
    }

    /// Parses a whole head out of the buffer and consumes it; None if it is not all there.
    fn parse_head(&mut self, keep: Option<&mut Kept>) -> Result<Option<Head>, ErrorClass> {
        let mut slots = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut response,
            &self.buf[self.start..self.end],
            &mut slots,
        );
        let len = match parsed {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(ErrorClass::Protocol),
        };
        if let Some(kept) = keep {
            kept.headers = response
                .headers
                .iter()
                .map(|f| {
                    let value = String::from_utf8_lossy(f.value).into_owned();
                    (f.name.to_string(), value)
                })
                .collect();
            kept.body.clear();
        }
        let mut keep_alive = response.version == Some(1);
        let mut length: Option<u64> = None;
        let mut transfer_coded = None;
        for field in response.headers.iter() {
            let name = field.name;
            if name.eq_ignore_ascii_case("content-length") {
                let n = parse_length(field.value).ok_or(ErrorClass::Protocol)?;
                if length.is_some_and(|l| l != n) {
                    return Err(ErrorClass::Protocol);
                }
                length = Some(n);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                let last = tokens(field.value).last().unwrap_or_default();
                transfer_coded = Some(last.eq_ignore_ascii_case(b"chunked"));
            } else if name.eq_ignore_ascii_case("connection") {
                for token in tokens(field.value) {
                    if token.eq_ignore_ascii_case(b"close") {
                        keep_alive = false;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        keep_alive = true;
                    }
                }
            }
        }
        // Transfer-Encoding wins over Content-Length; a coding other than chunked last
        // means the body ends when the connection does.
        let body = match (transfer_coded, length) {
            (Some(true), _) => Body::Chunked,
            (Some(false), _) => Body::UntilClose,
            (None, Some(n)) => Body::Length(n),
            (None, None) => Body::UntilClose,
        };
        let status = response.code.unwrap_or(0);
        self.start += len;
        Ok(Some(Head {
            status,
            keep_alive,
            body,
        }))
    }

    async fn skip_body(&mut self, body: Body, mut keep: Option<&mut Kept>) -> Result<(), Fill> {
        match body {
            Body::Empty => Ok(()),
            Body::Length(left) => self.skip_bytes(left, keep).await,
            Body::UntilClose => {
                self.reusable = false;
                loop {
                    if let Some(kept) = keep.as_deref_mut() {
                        kept.body_bytes(&self.buf[self.start..self.end]);
                    }
                    self.start = self.end;
                    if self.fill().await? == 0 {
                        return Ok(());
                    }
                }
            }
            Body::Chunked => self.skip_chunks(keep).await,
        }
    }

    /// Skips `left` bytes of body (handing them to `keep` first, when a flow keeps them).
    async fn skip_bytes(&mut self, mut left: u64, mut keep: Option<&mut Kept>) -> Result<(), Fill> {
        loop {
            let take = ((self.end - self.start) as u64).min(left);
            if let Some(kept) = keep.as_deref_mut() {
                kept.body_bytes(&self.buf[self.start..self.start + take as usize]);
            }
            self.start += take as usize;
            left -= take;
            if left == 0 {
                return Ok(());
            }
            self.more().await?;
        }
    }

    async fn skip_chunks(&mut self, mut keep: Option<&mut Kept>) -> Result<(), Fill> {
        loop {
            let size = loop {
                match httparse::parse_chunk_size(&self.buf[self.start..self.end]) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        self.start += used;
                        break size;
                    }
                    Ok(httparse::Status::Partial) => self.more().await?,
                    Err(_) => return Err(protocol("bad chunk size")),
                }
            };
            if size == 0 {
                return self.skip_trailers().await;
            }
            self.skip_bytes(size, keep.as_deref_mut()).await?;
            while self.end - self.start < 2 {
                self.more().await?;
            }
            if &self.buf[self.start..self.start + 2] != b"\r\n" {
                return Err(protocol("chunk not followed by CRLF"));
            }
            self.start += 2;
        }
    }

    /// Trailer fields after the last chunk, up to the blank line.
    async fn skip_trailers(&mut self) -> Result<(), Fill> {
        loop {
            let pending = &self.buf[self.start..self.end];
            match pending.windows(2).position(|w| w == b"\r\n") {
                Some(at) => {
                    self.start += at + 2;
                    if at == 0 {
                        return Ok(());
                    }
                }
                None => self.more().await?,
            }
        }
    }

    /// Reads more bytes; the end of the stream here is a cut-short message.
    async fn more(&mut self) -> Result<(), Fill> {
        match self.fill().await? {
            0 => Err(Fill::Io(io::ErrorKind::UnexpectedEof.into())),
            _ => Ok(()),
        }
    }

    /// Reads into the free end of the buffer (moving pending bytes to the front, or growing
    /// it up to `MAX_HEAD`, when it is full); returns the bytes read, 0 at the end.
    async fn fill(&mut self) -> Result<usize, Fill> {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                (self.start, self.end) = (0, self.end - self.start);
            } else if self.buf.len() < MAX_HEAD {
                let grown = (self.buf.len() * 2).min(MAX_HEAD);
                self.buf.resize(grown, 0);
            } else {
                return Err(Fill::TooLong);
            }
        }
        let n = self
            .io
            .read(&mut self.buf[self.end..])
            .await
            .map_err(Fill::Io)?;
        self.end += n;
        Ok(n)
    }
}

fn protocol(what: &'static str) -> Fill {
    Fill::Io(io::Error::new(io::ErrorKind::InvalidData, what))
}

/// The comma-separated tokens of a header value, trimmed.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|b| *b == b',').map(<[u8]>::trim_ascii)
}

fn parse_length(value: &[u8]) -> Option<u64> {
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
#[path = "h1_tests.rs"]
mod tests;

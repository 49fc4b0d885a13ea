//! Error classes. A failing target is data: every failed request lands in exactly one class,
//! named the same way in every output.

use std::error::Error as StdError;
use std::io;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorClass {
    /// Nothing listens on the port (RST to our SYN).
    ConnectRefused,
    /// No answer to the connect within the connect timeout.
    ConnectTimeout,
    /// Any other connect failure (unreachable, out of local ports, ...).
    ConnectOther,
    /// TLS handshake failed (bad certificate, not TLS at all, ...).
    Tls,
    /// The whole request took longer than the request timeout.
    RequestTimeout,
    /// The connection was reset or closed before a whole response arrived.
    ConnectionReset,
    /// The peer did not speak HTTP (garbage, bad status line, oversized head).
    Protocol,
    /// The head arrived but reading the body failed.
    BodyRead,
    /// A 4xx response.
    Http4xx,
    /// A 5xx response.
    Http5xx,
    /// Due to be sent but never sent: every connection busy and the backlog full, or the
    /// step's drain deadline passed.
    NotSent,
    /// Anything else.
    Other,
}

impl ErrorClass {
    pub const ALL: [ErrorClass; 12] = [
        ErrorClass::ConnectRefused,
        ErrorClass::ConnectTimeout,
        ErrorClass::ConnectOther,
        ErrorClass::Tls,
        ErrorClass::RequestTimeout,
        ErrorClass::ConnectionReset,
        ErrorClass::Protocol,
        ErrorClass::BodyRead,
        ErrorClass::Http4xx,
        ErrorClass::Http5xx,
        ErrorClass::NotSent,
        ErrorClass::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::ConnectRefused => "connect_refused",
            ErrorClass::ConnectTimeout => "connect_timeout",
            ErrorClass::ConnectOther => "connect_other",
            ErrorClass::Tls => "tls",
            ErrorClass::RequestTimeout => "request_timeout",
            ErrorClass::ConnectionReset => "connection_reset",
            ErrorClass::Protocol => "protocol",
            ErrorClass::BodyRead => "body_read",
            ErrorClass::Http4xx => "http_4xx",
            ErrorClass::Http5xx => "http_5xx",
            ErrorClass::NotSent => "not_sent",
            ErrorClass::Other => "other",
        }
    }

    pub fn index(self) -> usize {
        ErrorClass::ALL.iter().position(|c| *c == self).unwrap_or(0)
    }

    /// The class of an HTTP status, if it is an error.
    pub fn of_status(status: u16) -> Option<ErrorClass> {
        match status {
            400..=499 => Some(ErrorClass::Http4xx),
            500..=599 => Some(ErrorClass::Http5xx),
            _ => None,
        }
    }

    /// Classifies a failed TCP connect.
    pub fn of_connect(err: &io::Error) -> ErrorClass {
        match err.kind() {
            io::ErrorKind::ConnectionRefused => ErrorClass::ConnectRefused,
            io::ErrorKind::TimedOut => ErrorClass::ConnectTimeout,
            _ => ErrorClass::ConnectOther,
        }
    }

    /// Classifies an I/O error on an open connection.
    pub fn of_io(err: &io::Error) -> ErrorClass {
        ErrorClass::of_io_kind(err.kind())
    }

    fn of_io_kind(kind: io::ErrorKind) -> ErrorClass {
        if is_reset(kind) {
            ErrorClass::ConnectionReset
        } else {
            ErrorClass::Other
        }
    }

    /// Classifies a hyper error raised while sending a request or reading its head.
    pub fn of_request(err: &hyper::Error) -> ErrorClass {
        if err.is_parse() || err.is_parse_status() || err.is_parse_too_large() {
            return ErrorClass::Protocol;
        }
        if err.is_incomplete_message() || err.is_canceled() || err.is_closed() {
            return ErrorClass::ConnectionReset;
        }
        match io_kind(err) {
            Some(kind) => ErrorClass::of_io_kind(kind),
            // HTTP/2 stream and connection errors (GOAWAY, RST_STREAM) end up here.
            None if has_source_named(err, "h2") => ErrorClass::ConnectionReset,
            None => ErrorClass::Other,
        }
    }
}

fn is_reset(kind: io::ErrorKind) -> bool {
    matches!(
        kind,
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::NotConnected
    )
}

/// The kind of the first io::Error in the source chain.
fn io_kind(err: &(dyn StdError + 'static)) -> Option<io::ErrorKind> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io.kind());
        }
        current = e.source();
    }
    None
}

fn has_source_named(err: &(dyn StdError + 'static), needle: &str) -> bool {
    let mut current = err.source();
    while let Some(e) = current {
        if format!("{e:?}").contains(needle) {
            return true;
        }
        current = e.source();
    }
    false
}

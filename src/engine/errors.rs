//! Error classes. A failing target is data: every failed request lands in exactly one class,
//! named the same way in every output.

use std::error::Error as StdError;
use std::io;

pub use crate::model::ErrorClass;

/// A whole answer: its HTTP status and, for a gRPC call, the `grpc-status` it ended with
/// (a call fails with status 200 and a non-zero code in its trailers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub grpc: Option<u32>,
}

impl Answer {
    pub fn http(status: u16) -> Answer {
        Answer { status, grpc: None }
    }

    /// Its error class, if it is an error: an HTTP error status first (a proxy's 503 in front
    /// of a gRPC service), else a gRPC code other than OK.
    pub fn error(self) -> Option<ErrorClass> {
        ErrorClass::of_status(self.status).or_else(|| self.grpc.and_then(ErrorClass::of_grpc))
    }
}

/// Mapping io, HTTP/1.1 and hyper errors onto the classes (the classes themselves are part
/// of the model: every output names them).
pub trait Classify {
    fn of_connect(err: &io::Error) -> ErrorClass;
    fn of_io(err: &io::Error) -> ErrorClass;
    fn of_request(err: &hyper::Error) -> ErrorClass;
    fn of_body(err: &hyper::Error) -> ErrorClass;
}

impl Classify for ErrorClass {
    /// Classifies a failed TCP connect.
    fn of_connect(err: &io::Error) -> ErrorClass {
        match err.kind() {
            io::ErrorKind::ConnectionRefused => ErrorClass::ConnectRefused,
            io::ErrorKind::TimedOut => ErrorClass::ConnectTimeout,
            _ => ErrorClass::ConnectOther,
        }
    }

    /// Classifies an I/O error on an open connection.
    fn of_io(err: &io::Error) -> ErrorClass {
        of_io_kind(err.kind())
    }

    /// Classifies a hyper error raised while sending a request or reading its head.
    fn of_request(err: &hyper::Error) -> ErrorClass {
        if err.is_parse() || err.is_parse_status() || err.is_parse_too_large() {
            return ErrorClass::Protocol;
        }
        if let Some(class) = of_h2(err) {
            return class;
        }
        if err.is_incomplete_message() || err.is_canceled() || err.is_closed() {
            return ErrorClass::ConnectionReset;
        }
        match io_kind(err) {
            Some(kind) => of_io_kind(kind),
            // Other HTTP/2 errors (a protocol error of the connection) end up here.
            None if has_source_named(err, "h2") => ErrorClass::ConnectionReset,
            None => ErrorClass::Other,
        }
    }

    /// Classifies a failure while reading a body: an HTTP/2 reset or GOAWAY as such, any
    /// other as `body_read`.
    fn of_body(err: &hyper::Error) -> ErrorClass {
        of_h2(err).unwrap_or(ErrorClass::BodyRead)
    }
}

/// An HTTP/2 stream the server reset (RST_STREAM) or a connection it ended (GOAWAY) under
/// the request, from h2's own error in the source chain.
fn of_h2(err: &(dyn StdError + 'static)) -> Option<ErrorClass> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            if h2.is_go_away() && h2.is_remote() {
                return Some(ErrorClass::H2GoAway);
            }
            if h2.is_reset() && h2.is_remote() {
                return Some(ErrorClass::H2Reset);
            }
            return None;
        }
        current = e.source();
    }
    None
}

fn of_io_kind(kind: io::ErrorKind) -> ErrorClass {
    if is_reset(kind) {
        ErrorClass::ConnectionReset
    } else {
        ErrorClass::Other
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

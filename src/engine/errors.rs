//! Error classes. A failing target is data: every failed request lands in exactly one class,
//! named the same way in every output.

use std::error::Error as StdError;
use std::io;

pub use crate::model::ErrorClass;

/// Mapping io, HTTP/1.1 and hyper errors onto the classes (the classes themselves are part
/// of the model: every output names them).
pub trait Classify {
    fn of_connect(err: &io::Error) -> ErrorClass;
    fn of_io(err: &io::Error) -> ErrorClass;
    fn of_request(err: &hyper::Error) -> ErrorClass;
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
        if err.is_incomplete_message() || err.is_canceled() || err.is_closed() {
            return ErrorClass::ConnectionReset;
        }
        match io_kind(err) {
            Some(kind) => of_io_kind(kind),
            // HTTP/2 stream and connection errors (GOAWAY, RST_STREAM) end up here.
            None if has_source_named(err, "h2") => ErrorClass::ConnectionReset,
            None => ErrorClass::Other,
        }
    }
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

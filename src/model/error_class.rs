//! Where a failed request lands: every failure in exactly one class, named the same way in
//! every output (steps.jsonl, run.json, the reports, `--fail-on`). The classes are listed
//! once, in `error_classes!`: the enum, its serde names, `ALL` and `as_str` all come from that
//! one list, so a class cannot be added to one and forgotten in another.

use serde::{Deserialize, Serialize};

/// Declares the enum with each variant's wire name, `ALL` (in declaration order, which
/// `index` and `of_grpc` rely on) and `as_str`.
macro_rules! error_classes {
    ($($(#[doc = $doc:literal])* $variant:ident = $name:literal,)+) => {
        /// Where a failed request lands. Ordered (and hashed) by name, as the classes' maps
        /// are written, so a map of them can be looked up by the name too
        /// (`error_classes.get("http_5xx")`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
        pub enum ErrorClass {
            $($(#[doc = $doc])* #[serde(rename = $name)] $variant,)+
        }

        impl ErrorClass {
            pub const ALL: [ErrorClass; [$($name),+].len()] = [$(ErrorClass::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorClass::$variant => $name,)+
                }
            }
        }
    };
}

error_classes! {
    /// Nothing listens on the port (RST to our SYN).
    ConnectRefused = "connect_refused",
    /// No answer to the connect within the connect timeout.
    ConnectTimeout = "connect_timeout",
    /// Any other connect failure (unreachable, out of local ports, ...).
    ConnectOther = "connect_other",
    /// TLS handshake failed (bad certificate, not TLS at all, ...).
    Tls = "tls",
    /// The whole request took longer than the request timeout.
    RequestTimeout = "request_timeout",
    /// The connection was reset or closed before a whole response arrived.
    ConnectionReset = "connection_reset",
    /// The peer did not speak HTTP (garbage, bad status line, oversized head).
    Protocol = "protocol",
    /// The head arrived but reading the body failed.
    BodyRead = "body_read",
    /// A 4xx response.
    Http4xx = "http_4xx",
    /// A 5xx response.
    Http5xx = "http_5xx",
    /// Due to be sent but never sent: every connection busy and the backlog full, or the
    /// step's drain deadline passed.
    NotSent = "not_sent",
    /// The server reset the request's HTTP/2 stream (RST_STREAM: refused, cancelled, ...).
    H2Reset = "h2_reset",
    /// The server ended the HTTP/2 connection (GOAWAY) before the request was answered.
    H2GoAway = "h2_goaway",
    /// A flow could not take a value from the answer (json, header or regex found nothing):
    /// the flow stops there, and the request is counted as this error.
    ExtractFailed = "extract_failed",
    /// A gRPC call answered with a status other than OK (the `grpc-status` of its trailers):
    /// one class per code, in the order of the codes, named `grpc_` and the code.
    /// gRPC CANCELLED (1).
    GrpcCancelled = "grpc_cancelled",
    /// gRPC UNKNOWN (2).
    GrpcUnknown = "grpc_unknown",
    /// gRPC INVALID_ARGUMENT (3).
    GrpcInvalidArgument = "grpc_invalid_argument",
    /// gRPC DEADLINE_EXCEEDED (4).
    GrpcDeadlineExceeded = "grpc_deadline_exceeded",
    /// gRPC NOT_FOUND (5).
    GrpcNotFound = "grpc_not_found",
    /// gRPC ALREADY_EXISTS (6).
    GrpcAlreadyExists = "grpc_already_exists",
    /// gRPC PERMISSION_DENIED (7).
    GrpcPermissionDenied = "grpc_permission_denied",
    /// gRPC RESOURCE_EXHAUSTED (8).
    GrpcResourceExhausted = "grpc_resource_exhausted",
    /// gRPC FAILED_PRECONDITION (9).
    GrpcFailedPrecondition = "grpc_failed_precondition",
    /// gRPC ABORTED (10).
    GrpcAborted = "grpc_aborted",
    /// gRPC OUT_OF_RANGE (11).
    GrpcOutOfRange = "grpc_out_of_range",
    /// gRPC UNIMPLEMENTED (12).
    GrpcUnimplemented = "grpc_unimplemented",
    /// gRPC INTERNAL (13).
    GrpcInternal = "grpc_internal",
    /// gRPC UNAVAILABLE (14).
    GrpcUnavailable = "grpc_unavailable",
    /// gRPC DATA_LOSS (15).
    GrpcDataLoss = "grpc_data_loss",
    /// gRPC UNAUTHENTICATED (16).
    GrpcUnauthenticated = "grpc_unauthenticated",
    /// Anything else.
    Other = "other",
}

impl ErrorClass {
    /// Its place in `ALL` (the declaration order).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The class of a gRPC status code, if it is an error (a code past 16 is UNKNOWN, as
    /// gRPC's own clients read it).
    pub fn of_grpc(code: u32) -> Option<ErrorClass> {
        match code {
            0 => None,
            // The gRPC classes are declared in the order of their codes.
            1..=16 => Some(ErrorClass::ALL[ErrorClass::GrpcCancelled.index() + code as usize - 1]),
            _ => Some(ErrorClass::GrpcUnknown),
        }
    }

    /// A gRPC status code's name as gRPC spells it: OK, RESOURCE_EXHAUSTED, ...
    pub fn grpc_status_name(code: u32) -> String {
        ErrorClass::of_grpc(code)
            .and_then(ErrorClass::grpc_code_name)
            .unwrap_or_else(|| "OK".into())
    }

    /// A gRPC status code's name as gRPC spells it (RESOURCE_EXHAUSTED), for a gRPC class.
    pub fn grpc_code_name(self) -> Option<String> {
        self.as_str()
            .strip_prefix("grpc_")
            .map(str::to_ascii_uppercase)
    }

    /// The class of an HTTP status, if it is an error.
    pub fn of_status(status: u16) -> Option<ErrorClass> {
        match status {
            400..=499 => Some(ErrorClass::Http4xx),
            500..=599 => Some(ErrorClass::Http5xx),
            _ => None,
        }
    }
}

impl Ord for ErrorClass {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl std::hash::Hash for ErrorClass {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl std::borrow::Borrow<str> for ErrorClass {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialOrd for ErrorClass {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl std::str::FromStr for ErrorClass {
    type Err = String;

    fn from_str(name: &str) -> Result<ErrorClass, String> {
        ErrorClass::ALL
            .into_iter()
            .find(|c| c.as_str() == name)
            .ok_or_else(|| format!("'{name}' is not an error class"))
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_has_one_name_everywhere() {
        for (i, class) in ErrorClass::ALL.into_iter().enumerate() {
            assert_eq!(class.index(), i);
            let wire = serde_json::to_string(&class).unwrap();
            assert_eq!(wire, format!("\"{}\"", class.as_str()));
            assert_eq!(class.as_str().parse::<ErrorClass>(), Ok(class));
            assert_eq!(class.to_string(), class.as_str());
        }
        assert_eq!(ErrorClass::ALL.len(), 31);
        assert!("http_6xx".parse::<ErrorClass>().is_err());
    }
}

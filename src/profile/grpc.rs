//! `[target] grpc` (and `proto`): a profile whose target is one gRPC unary method, its
//! JSON the target's `body` and its metadata the target's `headers` (see `plan::grpc`). The
//! method's name is checked where it is written (file:line:col); the `.proto` is compiled
//! later, with the command line's `--proto` weighed against it.

use super::{RawTarget, Source};
use crate::error::Error;
use std::path::{Path, PathBuf};

/// `[target] grpc = "package.Service/Method"`, `proto = "FILE"` (relative to the profile).
#[derive(Debug, Clone)]
pub struct GrpcSpec {
    pub method: crate::plan::grpc::GrpcMethod,
    pub proto: Option<PathBuf>,
}

/// `[target] grpc` checked where it is written; a gRPC target calls that one method, so it
/// has no `[[requests]]` nor `[[flows]]`.
pub(super) fn grpc_of(
    src: &Source,
    base_dir: &Path,
    target: &RawTarget,
    has_requests: bool,
) -> Result<Option<GrpcSpec>, Error> {
    let Some(text) = &target.grpc else {
        return match target.proto {
            Some(_) => Err(src.error_at(
                None,
                "[target] proto needs [target] grpc (the method to call)",
            )),
            None => Ok(None),
        };
    };
    let at = |message: &str| src.error_at(Some(text.span()), message);
    let method = crate::plan::grpc::GrpcMethod::parse(text.get_ref())
        .map_err(|e| at(&e.replace("--grpc", "grpc")))?;
    if has_requests {
        return Err(at(
            "grpc calls one method: give [target] grpc, or [[requests]] / [[flows]], not both",
        ));
    }
    Ok(Some(GrpcSpec {
        method,
        proto: target.proto.as_ref().map(|p| base_dir.join(p)),
    }))
}

//! `--grpc package.Service/Method`: the one request of the mix becomes that call, its JSON
//! body encoded from `--proto` or the server's reflection (asked here, before any load, so a
//! wrong method is a one-line error, not a run of failures).

use super::TargetArgs;
use crate::engine::grpc_reflection;
use crate::error::Error;
use crate::plan::grpc::{self, GrpcMethod};
use crate::plan::{RequestPlan, TargetPlan};
use crate::profile::ProfileSpec;

/// The call `--grpc` (else the profile's `[target] grpc`) names, as the mix's one request,
/// made from `plain`, the request the target and flags describe: its body is the call's
/// JSON, its headers the call's metadata. None when neither names a method.
pub(super) fn request(
    args: &TargetArgs,
    profile: Option<&ProfileSpec>,
    target: &TargetPlan,
    plain: &RequestPlan,
) -> Result<Option<RequestPlan>, Error> {
    let from_profile = profile.and_then(|p| p.grpc.as_ref());
    let method =
        match (&args.grpc, from_profile) {
            (Some(text), _) => GrpcMethod::parse(text).map_err(Error::input)?,
            (None, Some(spec)) => spec.method.clone(),
            (None, None) if args.proto.is_some() => return Err(Error::input(
                "--proto is the .proto of a gRPC method: give --grpc package.Service/Method too",
            )),
            (None, None) => return Ok(None),
        };
    if args.method.is_some() {
        return Err(Error::input("--grpc calls are POSTs: drop -X/--method"));
    }
    let proto = args
        .proto
        .clone()
        .or_else(|| from_profile.and_then(|s| s.proto.clone()));
    let pool = match proto {
        Some(path) => grpc::pool_from_proto(&path).map_err(Error::input)?,
        None => {
            let files = grpc_reflection::descriptors_blocking(target, &method.service)
                .map_err(|e| Error::input(format!("--grpc {}: {e}", method.path())))?;
            grpc::pool_from_files(&files).map_err(Error::input)?
        }
    };
    let descriptor = grpc::find_method(&pool, &method).map_err(Error::input)?;
    // The JSON and the metadata are the body and headers the plain request would send
    // (`--body`, else the target's; the target's headers with `-H` over them).
    let json = match plain.body.is_empty() {
        true => "{}".into(),
        false => String::from_utf8_lossy(&plain.body).into_owned(),
    };
    let body = grpc::encode_request(&descriptor, &json).map_err(Error::input)?;
    Ok(Some(grpc::request_plan(
        &method,
        body,
        plain.headers.clone(),
    )))
}

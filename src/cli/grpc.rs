//! `--grpc package.Service/Method`: the one request of the mix becomes that call, its JSON
//! body encoded from `--proto` or the server's reflection (asked here, before any load, so a
//! wrong method is a one-line error, not a run of failures).

use super::TargetArgs;
use crate::engine::grpc_reflection;
use crate::error::Error;
use crate::plan::grpc::{self, GrpcMethod};
use crate::plan::{RequestPlan, TargetPlan};
use crate::profile::ProfileSpec;
use http::{HeaderName, HeaderValue};

/// The call `--grpc` (else the profile's `[target] grpc`) names, as the mix's one request:
/// `--body` (else the target's `body`) its JSON, the target's headers and `-H` its metadata.
/// None when neither names a method.
pub(super) fn request(
    args: &TargetArgs,
    profile: Option<&ProfileSpec>,
    target: &TargetPlan,
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
    // The profile's target (no [[requests]] beside a gRPC method) is its one default request.
    let defaults = profile.and_then(|p| p.requests.first());
    let json = match (&args.body, defaults) {
        (Some(body), _) => body.clone(),
        (None, Some(d)) if !d.body.is_empty() => String::from_utf8_lossy(&d.body).into_owned(),
        _ => "{}".to_string(),
    };
    let body = grpc::encode_request(&descriptor, &json).map_err(Error::input)?;
    let mut headers = Vec::new();
    for (name, value) in defaults.map(|d| d.headers.as_slice()).unwrap_or_default() {
        headers.push(metadata(name, value)?);
    }
    for header in &args.headers {
        let (name, value) = super::merge::header_flag(header)?;
        headers
            .retain(|(n, _): &(HeaderName, HeaderValue)| !n.as_str().eq_ignore_ascii_case(&name));
        headers.push(metadata(&name, &value)?);
    }
    Ok(Some(grpc::request_plan(&method, body, headers)))
}

/// A header as gRPC metadata (lower case, as HTTP/2 needs).
fn metadata(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), Error> {
    let name = HeaderName::from_bytes(name.trim().to_ascii_lowercase().as_bytes())
        .map_err(|_| Error::input(format!("'{}' is not a valid header name", name.trim())))?;
    let value = HeaderValue::from_str(value).map_err(|_| {
        Error::input(format!(
            "header {name} has a value that is not valid in HTTP"
        ))
    })?;
    Ok((name, value))
}

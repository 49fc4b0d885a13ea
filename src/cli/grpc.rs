//! `--grpc package.Service/Method`: the one request of the mix becomes that call, its JSON
//! body encoded from `--proto` or the server's reflection (asked here, before any load, so a
//! wrong method is a one-line error, not a run of failures).

use super::TargetArgs;
use crate::engine::grpc_reflection;
use crate::error::Error;
use crate::plan::grpc::{self, GrpcMethod};
use crate::plan::{RequestPlan, TargetPlan};
use http::{HeaderName, HeaderValue};

/// The call `method` names, as the mix's one request.
pub(super) fn request(
    args: &TargetArgs,
    target: &TargetPlan,
    method: &str,
) -> Result<RequestPlan, Error> {
    let method = GrpcMethod::parse(method).map_err(Error::input)?;
    if args.method.is_some() {
        return Err(Error::input("--grpc calls are POSTs: drop -X/--method"));
    }
    let pool = match &args.proto {
        Some(path) => grpc::pool_from_proto(path).map_err(Error::input)?,
        None => {
            let files = grpc_reflection::descriptors_blocking(target, &method.service)
                .map_err(|e| Error::input(format!("--grpc {}: {e}", method.path())))?;
            grpc::pool_from_files(&files).map_err(Error::input)?
        }
    };
    let descriptor = grpc::find_method(&pool, &method).map_err(Error::input)?;
    let body = grpc::encode_request(&descriptor, args.body.as_deref().unwrap_or("{}"))
        .map_err(Error::input)?;
    let headers = args
        .headers
        .iter()
        .map(|header| metadata(header))
        .collect::<Result<_, _>>()?;
    Ok(grpc::request_plan(&method, body, headers))
}

/// `-H "Name: value"` as gRPC metadata (`${ENV}` expanded, as for HTTP).
fn metadata(header: &str) -> Result<(HeaderName, HeaderValue), Error> {
    let (name, value) = header
        .split_once(':')
        .ok_or_else(|| Error::input(format!("header '{header}' is not 'Name: value'")))?;
    let value = crate::profile::expand_env(value.trim()).map_err(Error::input)?;
    let name = HeaderName::from_bytes(name.trim().to_ascii_lowercase().as_bytes())
        .map_err(|_| Error::input(format!("'{}' is not a valid header name", name.trim())))?;
    let value = HeaderValue::from_str(&value).map_err(|_| {
        Error::input(format!(
            "header {name} has a value that is not valid in HTTP"
        ))
    })?;
    Ok((name, value))
}

//! A gRPC unary call as a request of the mix. gRPC is HTTP/2: a POST to
//! `/package.Service/Method` with content type `application/grpc`, its body the request
//! message behind a 5-byte frame header, its status in the answer's trailers. So once the
//! message is encoded, the engine sends it like any request; only the status differs (the
//! engine reads `grpc-status`, the error classes name its codes).
//!
//! The user gives the request as JSON (proto3's JSON mapping); it is encoded here, once, from
//! the method's input type, found in a `.proto` file (`--proto`, compiled by protox: no
//! protoc needed) or in descriptors the server's reflection service sent
//! (`engine::grpc_reflection`). Every mistake — a method that is not there, a streaming
//! method, a field the message has not — is a one-line input error before any load.

use super::RequestPlan;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor};
use std::path::Path;

/// `package.Service/Method`, as `--grpc` names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrpcMethod {
    /// The service's full name (`shop.Shop`).
    pub service: String,
    pub method: String,
}

impl GrpcMethod {
    /// Parses `package.Service/Method` (a leading `/` is allowed, as in the HTTP path).
    pub fn parse(text: &str) -> Result<GrpcMethod, String> {
        let bad =
            || format!("--grpc '{text}' is not package.Service/Method (e.g. shop.Shop/Reserve)");
        let (service, method) = text
            .trim_start_matches('/')
            .split_once('/')
            .ok_or_else(bad)?;
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.split('.').all(|part| {
                    !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                })
        };
        if !name_ok(service) || !name_ok(method) || method.contains('.') {
            return Err(bad());
        }
        Ok(GrpcMethod {
            service: service.to_string(),
            method: method.to_string(),
        })
    }

    /// The HTTP/2 path of the call.
    pub fn path(&self) -> String {
        format!("/{}/{}", self.service, self.method)
    }
}

/// Compiles `path` (its imports looked up beside it, and Google's well-known types) into a
/// pool of descriptors; a syntax error names `file:line:col`.
pub fn pool_from_proto(path: &Path) -> Result<DescriptorPool, String> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let dir = dir.unwrap_or(Path::new("."));
    let file = path.file_name().map(Path::new).unwrap_or(path);
    let compiled = protox::Compiler::new([dir])
        .and_then(|mut c| {
            c.include_imports(true).open_file(file)?;
            Ok(c)
        })
        .map_err(|e| proto_error(path, &e))?;
    Ok(compiled.descriptor_pool())
}

/// protox's error as one line: `file:line:col: what` when it points into the file.
fn proto_error(path: &Path, error: &protox::Error) -> String {
    use miette::Diagnostic;
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let offset = error
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|label| label.offset());
    match offset {
        Some(offset) if offset <= text.len() && error.file().is_some() => {
            let before = &text[..offset];
            let line = before.matches('\n').count() + 1;
            let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("{}:{line}:{col}: {error}", path.display())
        }
        _ => format!("--proto {}: {error}", path.display()),
    }
}

/// A pool from serialized `FileDescriptorProto`s (what reflection sends), in any order.
pub fn pool_from_files(files: &[Vec<u8>]) -> Result<DescriptorPool, String> {
    let decoded = files
        .iter()
        .map(|bytes| prost_types::FileDescriptorProto::decode(bytes.as_slice()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the server's reflection sent a descriptor that is not one: {e}"))?;
    let mut pool = DescriptorPool::new();
    pool.add_file_descriptor_protos(decoded)
        .map_err(|e| format!("the server's reflection sent descriptors that do not fit: {e}"))?;
    Ok(pool)
}

/// The unary method `method` in `pool`, or why it cannot be called.
pub fn find_method(pool: &DescriptorPool, method: &GrpcMethod) -> Result<MethodDescriptor, String> {
    let service = pool.get_service_by_name(&method.service).ok_or_else(|| {
        let known: Vec<String> = pool.services().map(|s| s.full_name().to_string()).collect();
        format!(
            "--grpc: no service {} (there: {})",
            method.service,
            if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            }
        )
    })?;
    let found = service.methods().find(|m| m.name() == method.method);
    let found = found.ok_or_else(|| {
        let known: Vec<String> = service.methods().map(|m| m.name().to_string()).collect();
        format!(
            "--grpc: service {} has no method {} (it has: {})",
            method.service,
            method.method,
            known.join(", ")
        )
    })?;
    if found.is_client_streaming() || found.is_server_streaming() {
        return Err(format!(
            "--grpc: {}/{} streams; knee calls unary methods only",
            method.service, method.method
        ));
    }
    Ok(found)
}

/// `json` encoded as `method`'s input message, behind gRPC's 5-byte frame header (not
/// compressed, then the length, big-endian).
pub fn encode_request(method: &MethodDescriptor, json: &str) -> Result<Bytes, String> {
    let input = method.input();
    let mut de = serde_json::Deserializer::from_str(json);
    let message = DynamicMessage::deserialize(input.clone(), &mut de)
        .and_then(|m| de.end().map(|()| m))
        .map_err(|e| format!("--body is not a {} in JSON: {e}", input.full_name()))?;
    Ok(frame(&message.encode_to_vec()))
}

/// A message behind gRPC's frame header.
pub fn frame(message: &[u8]) -> Bytes {
    let mut framed = Vec::with_capacity(5 + message.len());
    framed.push(0);
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    Bytes::from(framed)
}

/// The messages of a gRPC body (each behind its frame header); the error names what is off.
pub fn unframe(mut body: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut messages = Vec::new();
    while !body.is_empty() {
        if body.len() < 5 {
            return Err("a gRPC frame cut short".into());
        }
        if body[0] != 0 {
            return Err("a compressed gRPC message (knee asks for none)".into());
        }
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        let end = 5usize.checked_add(len).filter(|&e| e <= body.len());
        let end = end.ok_or("a gRPC message longer than its body")?;
        messages.push(&body[5..end]);
        body = &body[end..];
    }
    Ok(messages)
}

/// The call as a request of the mix: named `package.Service/Method`, with `headers` (the
/// user's metadata, `-H`) after the ones gRPC needs.
pub fn request_plan(
    method: &GrpcMethod,
    body: Bytes,
    headers: Vec<(HeaderName, HeaderValue)>,
) -> RequestPlan {
    let mut all = vec![
        (
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        ),
        (http::header::TE, HeaderValue::from_static("trailers")),
    ];
    all.extend(headers);
    RequestPlan {
        name: format!("{}/{}", method.service, method.method),
        method: Method::POST,
        path: method.path(),
        headers: all,
        body,
        weight: 1,
        slo: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shop_proto() -> (Dir, std::path::PathBuf) {
        let dir = Dir::new();
        let path = dir.0.join("shop.proto");
        std::fs::write(
            &path,
            "syntax = \"proto3\";\npackage shop;\n\
             message ReserveRequest { string item = 1; int32 count = 2; }\n\
             message ReserveReply { int64 order = 1; }\n\
             service Shop {\n  rpc Reserve(ReserveRequest) returns (ReserveReply);\n  \
             rpc Watch(ReserveRequest) returns (stream ReserveReply);\n}\n",
        )
        .unwrap();
        (dir, path)
    }

    struct Dir(std::path::PathBuf);
    impl Dir {
        fn new() -> Dir {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let path = std::env::temp_dir().join(format!(
                "knee-grpc-{}-{:?}-{}",
                std::process::id(),
                std::thread::current().id(),
                N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&path).unwrap();
            Dir(path)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_method_parses_and_bad_names_are_refused() {
        let m = GrpcMethod::parse("shop.Shop/Reserve").unwrap();
        assert_eq!(
            (m.service.as_str(), m.method.as_str()),
            ("shop.Shop", "Reserve")
        );
        assert_eq!(m.path(), "/shop.Shop/Reserve");
        assert_eq!(GrpcMethod::parse("/shop.Shop/Reserve").unwrap(), m);
        for bad in [
            "shop.Shop",
            "shop.Shop/",
            "/Reserve",
            "shop..Shop/R",
            "a/b/c",
            "s/a.b",
        ] {
            let err = GrpcMethod::parse(bad).unwrap_err();
            assert!(err.contains("package.Service/Method"), "{bad}: {err}");
        }
    }

    #[test]
    fn json_is_encoded_as_the_input_message_behind_a_frame() {
        let (_dir, path) = shop_proto();
        let pool = pool_from_proto(&path).unwrap();
        let method = find_method(&pool, &GrpcMethod::parse("shop.Shop/Reserve").unwrap()).unwrap();
        let framed = encode_request(&method, r#"{"item": "apple", "count": 3}"#).unwrap();
        // field 1 (string "apple"): 0x0a 5 "apple"; field 2 (varint 3): 0x10 3.
        let message = [&[0x0a, 5][..], b"apple", &[0x10, 3]].concat();
        assert_eq!(&framed[..5], &[0, 0, 0, 0, message.len() as u8]);
        assert_eq!(&framed[5..], &message[..]);
        assert_eq!(unframe(&framed).unwrap(), vec![&message[..]]);
        let err = encode_request(&method, r#"{"itme": "apple"}"#).unwrap_err();
        assert!(
            err.contains("shop.ReserveRequest") && err.contains("itme"),
            "{err}"
        );
        let err = encode_request(&method, r#"{"item": "a"} x"#).unwrap_err();
        assert!(
            err.starts_with("--body is not a shop.ReserveRequest"),
            "{err}"
        );
    }

    #[test]
    fn what_cannot_be_called_says_why() {
        let (_dir, path) = shop_proto();
        let pool = pool_from_proto(&path).unwrap();
        let err = |m: &str| find_method(&pool, &GrpcMethod::parse(m).unwrap()).unwrap_err();
        assert_eq!(
            err("shop.Shap/Reserve"),
            "--grpc: no service shop.Shap (there: shop.Shop)"
        );
        assert_eq!(
            err("shop.Shop/Reserv"),
            "--grpc: service shop.Shop has no method Reserv (it has: Reserve, Watch)"
        );
        assert!(err("shop.Shop/Watch").contains("unary methods only"));
    }

    #[test]
    fn a_proto_syntax_error_names_file_line_and_column() {
        let dir = Dir::new();
        let path = dir.0.join("bad.proto");
        std::fs::write(
            &path,
            "syntax = \"proto3\";\nmessage A {\n  strin x = 1\n}\n",
        )
        .unwrap();
        let err = pool_from_proto(&path).unwrap_err();
        let prefix = format!("{}:4:1: expected ';'", path.display());
        assert!(err.starts_with(&prefix), "{err}");
        assert!(!err.contains('\n'), "{err}");
        let missing = dir.0.join("missing.proto");
        let err = pool_from_proto(&missing).unwrap_err();
        assert!(err.contains("missing.proto"), "{err}");
    }

    #[test]
    fn each_grpc_code_is_a_class_named_as_grpc_names_it() {
        use crate::model::ErrorClass;
        assert_eq!(ErrorClass::of_grpc(0), None);
        let named = |code| {
            let class = ErrorClass::of_grpc(code).unwrap();
            (class.as_str().to_string(), class.grpc_code_name().unwrap())
        };
        assert_eq!(named(1), ("grpc_cancelled".into(), "CANCELLED".into()));
        assert_eq!(named(4).1, "DEADLINE_EXCEEDED");
        assert_eq!(named(8).1, "RESOURCE_EXHAUSTED");
        assert_eq!(named(14), ("grpc_unavailable".into(), "UNAVAILABLE".into()));
        assert_eq!(named(16).1, "UNAUTHENTICATED");
        assert_eq!(named(99).1, "UNKNOWN");
        assert_eq!(ErrorClass::Http5xx.grpc_code_name(), None);
        let json = serde_json::to_string(&ErrorClass::of_grpc(8)).unwrap();
        assert_eq!(json, "\"grpc_resource_exhausted\"");
    }

    #[test]
    fn a_frame_cut_short_is_an_error() {
        assert!(unframe(&[0, 0, 0, 0, 9, 1]).is_err());
        assert!(unframe(&[0, 0]).is_err());
        assert!(unframe(&[1, 0, 0, 0, 0]).is_err());
        assert_eq!(unframe(&[]).unwrap(), Vec::<&[u8]>::new());
    }
}

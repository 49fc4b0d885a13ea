//! The descriptors of a gRPC service, asked of the service itself: without `--proto`, knee
//! asks the server's reflection service (grpc.reflection v1, else v1alpha) for the file that
//! defines the service, then for each file it imports that did not come with it. Each ask is
//! one call through the load's own client (so TLS and HTTP/2 are as the load will use them):
//! the reflection method streams both ways, but one request and the end of the stream get
//! one answer from every server that implements it.

use super::client::Client;
use super::errors::{Answer, ErrorClass};
use super::h1::Kept;
use crate::error::Error;
use crate::plan::grpc::{frame, unframe, GrpcMethod};
use crate::plan::{RequestPlan, TargetPlan};
use prost::Message;
use std::collections::BTreeMap;

/// Every file of a service's definition, serialized `FileDescriptorProto`s.
pub fn descriptors_blocking(target: &TargetPlan, service: &str) -> Result<Vec<Vec<u8>>, Error> {
    let mut target = target.clone();
    target.h2_streams = 1;
    let service = service.to_string();
    // A thread of its own: the caller may or may not be inside a runtime.
    let asked = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(e.into()))?;
        runtime.block_on(async {
            let client = Client::new(&target, &[]).await?;
            descriptors(&client, &service).await.map_err(Error::input)
        })
    });
    asked
        .join()
        .unwrap_or_else(|_| Err(Error::input("the reflection client stopped")))
}

/// The file defining `service` and every file it imports, asked one by one.
async fn descriptors(client: &Client, service: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut asks = vec![Ask::FileContainingSymbol(service.to_string())];
    let mut version = Version::V1;
    let mut asked = 0;
    while let Some(ask) = asks.pop() {
        asked += 1;
        if asked > 256 {
            return Err("the server's reflection sent more than 256 files".into());
        }
        let (sent, answered_by) = call(client, &ask, version).await?;
        version = answered_by;
        for bytes in sent {
            let file = prost_types::FileDescriptorProto::decode(bytes.as_slice())
                .map_err(|e| format!("the server's reflection sent a broken descriptor: {e}"))?;
            let name = file.name.clone().unwrap_or_default();
            for dependency in file.dependency {
                let pending = asks
                    .iter()
                    .any(|a| matches!(a, Ask::FileByFilename(f) if *f == dependency));
                if !files.contains_key(&dependency) && dependency != name && !pending {
                    asks.push(Ask::FileByFilename(dependency));
                }
            }
            files.insert(name, bytes);
        }
        asks.retain(|a| !matches!(a, Ask::FileByFilename(f) if files.contains_key(f)));
    }
    Ok(files.into_values().collect())
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Version {
    V1,
    V1Alpha,
}

impl Version {
    fn path(self) -> &'static str {
        match self {
            Version::V1 => "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            Version::V1Alpha => "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        }
    }
}

/// One ask; the files the answer carries, and the version that answered. A server without
/// v1 (UNIMPLEMENTED) is asked with v1alpha.
async fn call(
    client: &Client,
    ask: &Ask,
    mut version: Version,
) -> Result<(Vec<Vec<u8>>, Version), String> {
    const UNIMPLEMENTED: u32 = 12;
    let no_reflection = "give the service's .proto file: --proto FILE";
    let (answer, kept) = loop {
        let (answer, kept) = send(client, ask, version).await.map_err(|class| {
            format!("cannot ask the server for its descriptors ({class}): {no_reflection}")
        })?;
        match (answer.grpc, version) {
            (Some(UNIMPLEMENTED), Version::V1) => version = Version::V1Alpha,
            _ => break (answer, kept),
        }
    };
    match (answer.grpc, version) {
        (Some(0), _) => {}
        (Some(UNIMPLEMENTED), Version::V1Alpha) => {
            return Err(format!(
                "the server has no reflection service (UNIMPLEMENTED): {no_reflection}"
            ))
        }
        (Some(code), _) => {
            return Err(format!(
                "the server's reflection answered {} for {} (gRPC status {code}): {no_reflection}",
                ErrorClass::grpc_status_name(code),
                ask.what()
            ));
        }
        (None, _) => {
            return Err(format!(
                "the server's reflection answered HTTP {} with no gRPC status: {no_reflection}",
                answer.status
            ))
        }
    }
    let mut files = Vec::new();
    for message in unframe(&kept.body)? {
        let response = ReflectionResponse::decode(message)
            .map_err(|e| format!("the server's reflection answer is not one: {e}"))?;
        match response.reply {
            Some(Reply::Files(sent)) => files.extend(sent.file_descriptor_proto),
            Some(Reply::Error(e)) => {
                return Err(format!(
                    "the server's reflection does not know {}: {} (code {})",
                    ask.what(),
                    e.error_message,
                    e.error_code
                ))
            }
            None => {}
        }
    }
    Ok((files, version))
}

/// `ask` sent once to `version`'s reflection method: its answer and the body it kept.
async fn send(client: &Client, ask: &Ask, version: Version) -> Result<(Answer, Kept), ErrorClass> {
    let request = ReflectionRequest {
        host: String::new(),
        ask: Some(ask.clone()),
    };
    let body = frame(&request.encode_to_vec());
    let method = GrpcMethod::parse(version.path()).expect("a valid method path");
    let plan: RequestPlan = crate::plan::grpc::request_plan(&method, body, Vec::new());
    let prepared = client.prepare(&plan).map_err(|_| ErrorClass::Other)?;
    let mut kept = Kept::default();
    let answer = tokio::time::timeout(
        client.request_timeout(),
        client.send_prepared(&mut None, &prepared, &mut None, Some(&mut kept)),
    )
    .await
    .unwrap_or(Err(ErrorClass::RequestTimeout))?;
    Ok((answer, kept))
}

// grpc/reflection/v1/reflection.proto, the parts knee sends and reads.

#[derive(Clone, PartialEq, prost::Message)]
struct ReflectionRequest {
    #[prost(string, tag = "1")]
    host: String,
    #[prost(oneof = "Ask", tags = "3, 4")]
    ask: Option<Ask>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Ask {
    #[prost(string, tag = "3")]
    FileByFilename(String),
    #[prost(string, tag = "4")]
    FileContainingSymbol(String),
}

impl Ask {
    fn what(&self) -> String {
        match self {
            Ask::FileByFilename(f) => format!("file {f}"),
            Ask::FileContainingSymbol(s) => format!("service {s}"),
        }
    }
}

#[derive(Clone, PartialEq, prost::Message)]
struct ReflectionResponse {
    #[prost(oneof = "Reply", tags = "4, 7")]
    reply: Option<Reply>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Reply {
    #[prost(message, tag = "4")]
    Files(FileDescriptorResponse),
    #[prost(message, tag = "7")]
    Error(ErrorResponse),
}

#[derive(Clone, PartialEq, prost::Message)]
struct FileDescriptorResponse {
    #[prost(bytes = "vec", repeated, tag = "1")]
    file_descriptor_proto: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ErrorResponse {
    #[prost(int32, tag = "1")]
    error_code: i32,
    #[prost(string, tag = "2")]
    error_message: String,
}

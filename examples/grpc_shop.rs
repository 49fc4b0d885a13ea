//! A gRPC service for knee's gRPC tests (tonic, a separate process): `shop.Shop` of
//! examples/shop.proto, with the server's reflection service (v1), over h2c.
//!
//! `grpc_shop [SECONDS]` listens on 127.0.0.1 (a free port, printed as the first line on
//! stdout; `GRPC_SHOP_PORT` picks one) and exits after SECONDS (default 120) or when its
//! stdin, a pipe, closes (the test that started it has gone).
//!
//! - `Reserve`: takes the shop's one ledger lock and holds it 4 ms, sleeping (the lock held
//!   across I/O), on a blocking thread: 250 calls/s at most, whatever the cores.
//! - `Burn`: spends `micros` of CPU on a runtime thread.
//! - `Fail`: answers with the gRPC status code asked for.
//! - `Watch`: a server stream (knee refuses it: unary calls only); never called.

#[path = "shared/exit_after.rs"]
mod exit_after;
use exit_after::exit_after;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tonic::codegen::{http, Body, BoxFuture, StdError};
use tonic::{Code, Status};

const LOCK_HOLD: Duration = Duration::from_millis(4);

#[derive(Clone, PartialEq, prost::Message)]
struct ReserveRequest {
    #[prost(string, tag = "1")]
    item: String,
    #[prost(int32, tag = "2")]
    count: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ReserveReply {
    #[prost(int64, tag = "1")]
    order: i64,
    #[prost(message, optional, tag = "2")]
    at: Option<prost_types::Timestamp>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct BurnRequest {
    #[prost(uint32, tag = "1")]
    micros: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct BurnReply {
    #[prost(uint64, tag = "1")]
    rounds: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct FailRequest {
    #[prost(uint32, tag = "1")]
    code: u32,
}

/// The shop's one ledger: every reservation is written under its lock.
static LEDGER: Mutex<i64> = Mutex::new(0);

/// Writes a reservation, holding the ledger's lock across a slow write. Named for the
/// off-CPU flamegraph.
#[inline(never)]
fn reserve_in_ledger(request: ReserveRequest) -> ReserveReply {
    let mut ledger = LEDGER.lock().unwrap_or_else(|e| e.into_inner());
    std::thread::sleep(LOCK_HOLD);
    *ledger += i64::from(request.count.max(1));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    ReserveReply {
        order: *ledger,
        at: Some(prost_types::Timestamp {
            seconds: now.as_secs() as i64,
            nanos: now.subsec_nanos() as i32,
        }),
    }
}

/// Spins for `micros` of wall time on this thread (all of it CPU). Named for perf.
#[inline(never)]
fn burn_cpu(micros: u32) -> BurnReply {
    let until = Instant::now() + Duration::from_micros(u64::from(micros));
    let mut rounds = 0u64;
    while Instant::now() < until {
        for _ in 0..200 {
            rounds = std::hint::black_box(rounds.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
    BurnReply { rounds }
}

/// One unary method: a function of the request message to the reply or a status.
struct Unary<Req, Resp>(fn(Req) -> BoxFuture<Resp, Status>);

impl<Req, Resp> tonic::server::UnaryService<Req> for Unary<Req, Resp>
where
    Req: Send + 'static,
    Resp: Send + 'static,
{
    type Response = Resp;
    type Future = BoxFuture<tonic::Response<Resp>, Status>;

    fn call(&mut self, request: tonic::Request<Req>) -> Self::Future {
        let answer = (self.0)(request.into_inner());
        Box::pin(async move { answer.await.map(tonic::Response::new) })
    }
}

async fn unary<Req, Resp, B>(
    handler: fn(Req) -> BoxFuture<Resp, Status>,
    request: http::Request<B>,
) -> http::Response<tonic::body::Body>
where
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Send + 'static,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    let codec = tonic_prost::ProstCodec::<Resp, Req>::default();
    tonic::server::Grpc::new(codec)
        .unary(Unary(handler), request)
        .await
}

fn reserve(request: ReserveRequest) -> BoxFuture<ReserveReply, Status> {
    Box::pin(async move {
        tokio::task::spawn_blocking(move || reserve_in_ledger(request))
            .await
            .map_err(|e| Status::internal(e.to_string()))
    })
}

fn burn(request: BurnRequest) -> BoxFuture<BurnReply, Status> {
    Box::pin(async move { Ok(burn_cpu(request.micros.min(1_000_000))) })
}

fn fail(request: FailRequest) -> BoxFuture<ReserveReply, Status> {
    Box::pin(async move {
        Err(Status::new(
            Code::from_i32(request.code as i32),
            "asked to fail",
        ))
    })
}

/// shop.Shop, routed by path as tonic's generated servers do.
#[derive(Clone)]
struct ShopServer;

impl tonic::server::NamedService for ShopServer {
    const NAME: &'static str = "shop.Shop";
}

impl<B> tonic::codegen::Service<http::Request<B>> for ShopServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let answer: Pin<Box<dyn std::future::Future<Output = _> + Send>> =
            match request.uri().path() {
                "/shop.Shop/Reserve" => Box::pin(unary(reserve, request)),
                "/shop.Shop/Burn" => Box::pin(unary(burn, request)),
                "/shop.Shop/Fail" => Box::pin(unary(fail, request)),
                _ => Box::pin(async { Status::unimplemented("no such method").into_http() }),
            };
        Box::pin(async move { Ok(answer.await) })
    }
}

fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let port: u16 = std::env::var("GRPC_SHOP_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let proto = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/shop.proto");
    let descriptors = protox::compile([proto], [concat!(env!("CARGO_MANIFEST_DIR"), "/examples")])
        .expect("examples/shop.proto compiles");
    let encoded = Arc::new(prost::Message::encode_to_vec(&descriptors));
    exit_after(Duration::from_secs(seconds));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("grpc-worker")
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind 127.0.0.1");
        println!("{}", listener.local_addr().expect("an address").port());
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(encoded.as_slice())
            .build_v1()
            .expect("reflection over shop.proto");
        tonic::transport::Server::builder()
            .add_service(ShopServer)
            .add_service(reflection)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .expect("serve");
    });
}

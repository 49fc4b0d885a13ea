//! knee's integration tests: one binary, shared helpers in `util`.

mod tools;
mod util;

mod ci;
mod database;
mod engine;
mod errors;
mod flame;
mod flows;
mod grpc;
mod hunt;
mod kernel;
mod limits;
mod observe;
mod observer;
mod profiles;
mod protocols;
mod remote;
mod replicas;
mod replicas_remote;
mod report;
mod runtimes;
mod schedule;
mod shards;
mod signals;
mod traffic;
mod waits;

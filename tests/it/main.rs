//! knee's integration tests: one binary, shared helpers in `util`.

mod util;

mod engine;
mod errors;
mod hunt;
mod profiles;
mod protocols;
mod signals;

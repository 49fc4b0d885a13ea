//! HTTP/2 as gRPC clients and browsers use it (`--h2-streams N`): few connections, many
//! streams in flight on each. Each worker still sends one request at a time, but up to N
//! workers of a lane share one connection, each request a stream of its own; the connection's
//! I/O runs as a task of the lane's runtime (not polled by one worker, as a connection of
//! its own is). The server's SETTINGS_MAX_CONCURRENT_STREAMS is honoured by h2: a stream
//! past it waits for one to end, and that wait is counted in the request's latency.
//!
//! A server's GOAWAY (nginx sends one after `keepalive_requests`, 1000 by default) refuses
//! the streams above the last one it processed: they were not processed, so each is sent
//! again once, on another connection (as gRPC clients do; see `client::Failed`), its latency
//! counted from its first intended send time; only a second refusal is an error.
//!
//! The connections live per lane thread (each lane is one single-threaded runtime), so a
//! stream's wake-ups never cross threads and finding a connection takes no lock.

use super::errors::{Classify, ErrorClass};
use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

/// A worker's share of a connection: its stream's sender, and its place among the
/// connection's users (given back when dropped).
pub struct Lease {
    pub sender: http2::SendRequest<Full<Bytes>>,
    users: Arc<AtomicUsize>,
    /// Set when the server sent GOAWAY on it: no new stream goes there.
    gone: Arc<AtomicBool>,
}

impl Lease {
    /// The server said GOAWAY on this connection: lease it no more.
    pub fn going_away(&self) {
        self.gone.store(true, Ordering::Relaxed);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.users.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One shared connection of this lane: what opens a stream on it, how many workers use it,
/// and what counts it open (dropped with the entry).
struct Entry {
    sender: http2::SendRequest<Full<Bytes>>,
    users: Arc<AtomicUsize>,
    gone: Arc<AtomicBool>,
    _open: Box<dyn Send>,
}

thread_local! {
    /// This lane's shared connections, per client (a run has one client; tests several).
    static SHARED: RefCell<Vec<(usize, Entry)>> = const { RefCell::new(Vec::new()) };
}

/// A lease on a connection of this lane with fewer than `streams` workers, for the client
/// `client` (its address); None when a new one must be opened (`open`).
pub fn lease(client: usize, streams: usize) -> Option<Lease> {
    SHARED.with(|shared| {
        let mut shared = shared.borrow_mut();
        // Ended connections go; of the idle ones (no worker left), one is kept.
        let mut idle_kept = false;
        shared.retain(|(owner, e)| {
            if *owner != client {
                return true;
            }
            let idle = e.users.load(Ordering::Relaxed) == 0;
            let gone = e.sender.is_closed() || e.gone.load(Ordering::Relaxed);
            let keep = !gone && (!idle || !idle_kept);
            idle_kept |= keep && idle;
            keep
        });
        let (_, entry) = shared
            .iter()
            .find(|(owner, e)| *owner == client && e.users.load(Ordering::Relaxed) < streams)?;
        entry.users.fetch_add(1, Ordering::Relaxed);
        Some(Lease {
            sender: entry.sender.clone(),
            users: entry.users.clone(),
            gone: entry.gone.clone(),
        })
    })
}

/// Opens a shared connection over `io` (its I/O a task of this lane's runtime), registers it
/// for client `client`, and leases it; `open` counts it open while it is registered.
pub async fn open<IO>(client: usize, io: IO, open: Box<dyn Send>) -> Result<Lease, ErrorClass>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(io))
        .await
        .map_err(|e| ErrorClass::of_request(&e))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let users = Arc::new(AtomicUsize::new(1));
    let gone = Arc::new(AtomicBool::new(false));
    let lease = Lease {
        sender: sender.clone(),
        users: users.clone(),
        gone: gone.clone(),
    };
    SHARED.with(|shared| {
        shared.borrow_mut().push((
            client,
            Entry {
                sender,
                users,
                gone,
                _open: open,
            },
        ))
    });
    Ok(lease)
}

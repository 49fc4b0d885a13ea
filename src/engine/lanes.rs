//! Lanes: the engine's threads, one per core, each a single-threaded tokio runtime with its
//! own connections (as wrk runs one event loop per thread). Nothing is stolen between lanes,
//! so a request never wakes a sibling thread: on a 2-core box this halved the context
//! switches per request against a work-stealing runtime.

use super::client::Conn;
use super::cpu::ThreadCpu;
use crate::error::Error;
use anyhow::Context;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// A connection unused this long is closed: in the lane's pool between steps, or as a worker
/// the load no longer needs (see `dispatch`).
pub const IDLE_CLOSE: Duration = Duration::from_secs(5);

/// Keep-alive connections kept between steps, so each step starts warm; the most recently
/// used is taken first, and one idle longer than `IDLE_CLOSE` is closed. A connection
/// belongs to the lane whose runtime opened it.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<Vec<(Instant, Conn)>>,
}

impl Pool {
    fn locked(&self) -> std::sync::MutexGuard<'_, Vec<(Instant, Conn)>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|(since, _)| since.elapsed() < IDLE_CLOSE);
        idle
    }

    pub fn take(&self) -> Option<Conn> {
        self.locked().pop().map(|(_, conn)| conn)
    }

    pub fn put(&self, conn: Option<Conn>) {
        if let Some(conn) = conn {
            self.locked().push((Instant::now(), conn));
        }
    }

    pub fn len(&self) -> usize {
        self.locked().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub struct Lane {
    pub handle: Handle,
    pub pool: Arc<Pool>,
    /// Dropping this ends the lane's thread.
    _shutdown: oneshot::Sender<()>,
}

impl Lane {
    /// Starts a lane thread; its CPU clock is registered with `cpu`.
    pub fn start(index: usize, cpu: &ThreadCpu) -> Result<Lane, Error> {
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        let cpu = cpu.clone();
        std::thread::Builder::new()
            .name(format!("knee-lane-{index}"))
            .spawn(move || {
                let _counted = cpu.register_current_thread();
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(err) => {
                        let _ = handle_tx.send(Err(err));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(runtime.handle().clone()));
                // Drive the lane's tasks until the engine is dropped.
                let _ = runtime.block_on(shutdown_rx);
            })
            .context("cannot start an engine thread")?;
        let handle = handle_rx
            .recv()
            .context("an engine thread died at start")?
            .context("cannot start an engine runtime")?;
        Ok(Lane {
            handle,
            pool: Arc::new(Pool::default()),
            _shutdown: shutdown,
        })
    }
}

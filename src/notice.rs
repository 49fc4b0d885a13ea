//! One place prints what knee says while it works (an observer that stopped answering, a
//! profile that could not be taken, a step that started late): `say`. While progress bars
//! are drawn, the terminal routes these lines above them (`route`), so a line from a
//! sampler's thread never tears a bar; otherwise they go to stderr as they are.

use std::sync::{Arc, RwLock};

type Sink = Arc<dyn Fn(&str) + Send + Sync>;

static SINK: RwLock<Option<Sink>> = RwLock::new(None);

/// Says `line` (on stderr, or above the progress bars while they are drawn).
pub fn say(line: impl AsRef<str>) {
    let sink = SINK.read().unwrap_or_else(|e| e.into_inner()).clone();
    match sink {
        Some(sink) => sink(line.as_ref()),
        None => eprintln!("{}", line.as_ref()),
    }
}

/// Routes every `say` to `sink` until the returned guard is dropped.
pub fn route(sink: Sink) -> Routed {
    *SINK.write().unwrap_or_else(|e| e.into_inner()) = Some(sink);
    Routed
}

/// While it lives, `say` goes to the sink given to `route`.
pub struct Routed;

impl Drop for Routed {
    fn drop(&mut self) {
        *SINK.write().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

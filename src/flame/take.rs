//! Taking a recording of a process's waits, the same way where the driver runs and where an
//! observer runs (`offcpu` for a local target, `remote` for the observer's): the runtime's
//! own recorder when it has one (py-spy's idle samples, JFR's events), else perf on the
//! scheduler's switches. Below both, so neither has to import the other.

use super::choose::WaitSource;
use super::sched::Recording;
use crate::model::observed::OffCpuSource;

/// A recording, what made it, and what its source notes (JFR: the GC pauses it saw).
pub struct Taken {
    pub source: OffCpuSource,
    pub recording: Recording,
    pub note: Option<String>,
}

impl Taken {
    /// perf's recording of the scheduler's switches.
    pub fn perf(recording: Recording) -> Taken {
        Taken {
            source: OffCpuSource::PerfSchedSwitch,
            recording,
            note: None,
        }
    }
}

/// The runtime's own recording of `pid`'s waits.
pub fn runtime_waits(
    source: WaitSource,
    pid: u32,
    window: f64,
    scratch: &std::path::Path,
) -> Result<Taken, String> {
    match source {
        WaitSource::PySpy => super::pyspy::waits(pid, window, scratch).map(|recording| Taken {
            source: OffCpuSource::PySpyIdle,
            recording,
            note: None,
        }),
        WaitSource::Jfr => super::jfr::waits(pid, window, scratch).map(|(recording, note)| Taken {
            source: OffCpuSource::JfrEvents,
            recording,
            note,
        }),
    }
}

//! Folded stacks ("root;caller;leaf count" per line), the common ground of every profile knee
//! takes (pprof, perf, off-CPU recordings), and their flamegraph SVGs (inferno). Collectors
//! (`flame`) make them; the reports and `knee compare` read and draw them.

pub mod folded;
pub mod render;

use crate::model::observed::StepProfile;
use folded::Folded;

/// Folded stacks of a step's profile, read back from the run folder.
pub fn load_folded(run: &std::path::Path, profile: &StepProfile) -> Option<Folded> {
    read_folded(run, profile.folded.as_ref()?)
}

/// Folded stacks from a file of the run folder (`relative` to it).
pub fn read_folded(run: &std::path::Path, relative: &str) -> Option<Folded> {
    let text = std::fs::read_to_string(run.join(relative)).ok()?;
    Some(Folded::parse(&text))
}

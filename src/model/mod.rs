//! The model: the typed records every layer shares. Collectors (engine, observe, flame)
//! write them, analysis (hunt, analyze) reads them and adds its conclusions, presentation
//! (report, compare, terminal) shows them. It sits at the bottom: it imports nothing of
//! knee's but the SLO's terms and the error type, so every layer can stand on it.
//!
//! These are also the machine-readable contract (steps.jsonl, run.json; see BRIEF): field
//! names are stable, enums are written in snake_case, and `schema/run.schema.json` says
//! the same as these types (the schema test checks it).

pub mod error_class;
pub mod figures;
pub mod hunt;
pub mod observed;
pub mod run;
pub mod series;
pub mod soak;
pub mod step;
pub mod verdict;

pub use hunt::{Ending, FailureMode, HoldLine, KneeAnalysis, RateUnit, UslFit};
pub use observed::{Observed, Stat};
pub use run::{Kind, ObserverRecord, RunRecord, Shard, TargetProcess};
pub use step::{ErrorClass, Phase, StepResult, SCHEMA_VERSION};
pub use verdict::Verdict;

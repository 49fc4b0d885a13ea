//! The observer hook: anything that watches the target or the machine while a step runs
//! (samplers, profilers) implements `Observer`. It is told when each step starts and ends and
//! returns what it saw, which is stored in the step's `observed` object under its name.

use crate::plan::StepSpec;
use crate::step::StepResult;

pub trait Observer: Send {
    /// The key of this observer's findings in `observed`.
    fn name(&self) -> &str;
    fn step_started(&mut self, spec: &StepSpec);
    /// What was observed during the step, if anything.
    fn step_finished(&mut self, spec: &StepSpec, result: &StepResult) -> Option<serde_json::Value>;
}

//! What a soak concluded (`soak` in run.json): trend lines of the target's figures over the
//! windows, and the leak / degradation verdicts.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Trend {
    pub slope_per_hour: f64,
    pub r_squared: f64,
    pub first: f64,
    pub last: f64,
    pub points: usize,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SoakAnalysis {
    pub windows: usize,
    pub trends: BTreeMap<String, Trend>,
    pub leak: bool,
    pub degradation: bool,
    pub verdicts: Vec<String>,
    /// What was seen and not called a leak, and why (a rise that tracks knee's connections).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

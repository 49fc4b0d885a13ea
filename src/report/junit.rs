//! The run's SLO checks as JUnit XML (`--junit FILE`), the format CI systems (GitLab, Jenkins,
//! GitHub's test reporters) read as test cases: one per step and objective, a failure carrying
//! the measured figure. The file agrees with knee's exit code: a run (load, stress, soak,
//! steps) fails when a step missed an objective; a hunt fails only when it found no capacity,
//! so its search steps' missed objectives, which are how it locates the knee, are written as
//! skipped with the figure, not as failures.

use super::Exporter;
use crate::model::step::{SloCheck, StepResult};
use crate::model::RunRecord;
use std::fmt::Write;
use std::path::Path;

pub struct Junit;

impl Exporter for Junit {
    fn file_name(&self) -> &'static str {
        "junit.xml"
    }

    fn render(&self, run: &RunRecord, _dir: &Path) -> Vec<u8> {
        render(run).into_bytes()
    }
}

/// How one test case ended.
enum Outcome {
    Passed,
    Failed(String),
    Skipped(String),
}

struct Case {
    class: String,
    name: String,
    seconds: f64,
    outcome: Outcome,
    /// What was measured, shown beside the case (`system-out`).
    measured: String,
}

/// The JUnit document of a run.
pub fn render(run: &RunRecord) -> String {
    let mut cases = Vec::new();
    if let Some(hunt) = &run.hunt {
        cases.push(capacity_case(run, hunt));
    }
    for step in &run.steps {
        cases.extend(step_cases(run, step));
    }
    document(run, &cases)
}

/// A hunt's one real test: did it find a capacity.
fn capacity_case(run: &RunRecord, hunt: &crate::model::KneeAnalysis) -> Case {
    let (outcome, measured) = match hunt.capacity_rps {
        Some(rps) => {
            let bottleneck = run
                .verdict
                .as_ref()
                .map_or(String::new(), |v| format!("; bottleneck: {}", v.bottleneck));
            (
                Outcome::Passed,
                format!(
                    "capacity {rps:.0} {} ({}){bottleneck}",
                    hunt.rate_unit.per_second(),
                    hunt.slo
                ),
            )
        }
        None => {
            let why = format!(
                "no step held ({}): the hunt ended {}",
                hunt.slo,
                hunt.ending.as_str()
            );
            (Outcome::Failed(why.clone()), why)
        }
    };
    Case {
        class: run.name.clone(),
        name: "the hunt found a capacity".into(),
        seconds: run.steps.iter().map(|s| s.duration_s + s.warmup_s).sum(),
        outcome,
        measured,
    }
}

fn step_cases(run: &RunRecord, step: &StepResult) -> Vec<Case> {
    let class = format!("{}.{}", run.name, step.name);
    let seconds = step.duration_s;
    let case = |name: String, outcome: Outcome, measured: String| Case {
        class: class.clone(),
        name,
        seconds,
        outcome,
        measured,
    };
    if step.partial {
        let why = "cut short: the run was interrupted during this step".to_string();
        return vec![case(
            "the step finished".into(),
            Outcome::Failed(why.clone()),
            why,
        )];
    }
    let in_hunt = run.hunt.is_some();
    let judged = |c: &SloCheck| match &c.failure {
        None => Outcome::Passed,
        Some(failure) if in_hunt => Outcome::Skipped(format!(
            "{failure} (a hunt's step past the knee: it locates the knee, it does not fail the run)"
        )),
        Some(failure) => Outcome::Failed(failure.clone()),
    };
    if !step.slo_checks.is_empty() {
        return step
            .slo_checks
            .iter()
            .map(|c| case(c.objective.clone(), judged(c), c.measured.clone()))
            .collect();
    }
    // A run recorded before the checks were kept: its failures, or one case that held.
    if step.slo_failures.is_empty() {
        let name = format!("holds its SLO ({})", run.slo.describe());
        return vec![case(name, Outcome::Passed, step.holds_word().into())];
    }
    step.slo_failures
        .iter()
        .map(|failure| {
            let check = SloCheck {
                objective: failure.clone(),
                measured: failure.clone(),
                failure: Some(failure.clone()),
            };
            case(failure.clone(), judged(&check), failure.clone())
        })
        .collect()
}

fn document(run: &RunRecord, cases: &[Case]) -> String {
    let count = |f: fn(&Outcome) -> bool| cases.iter().filter(|c| f(&c.outcome)).count();
    let failures = count(|o| matches!(o, Outcome::Failed(_)));
    let skipped = count(|o| matches!(o, Outcome::Skipped(_)));
    let seconds: f64 = cases.iter().map(|c| c.seconds).sum();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let suite = format!("knee {} {}", run.kind.as_str(), run.name);
    let _ = writeln!(
        xml,
        "<testsuites name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{seconds:.3}\">",
        escape(&suite),
        cases.len()
    );
    let _ = writeln!(
        xml,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{seconds:.3}\" timestamp=\"{}\">",
        escape(&suite),
        cases.len(),
        escape(&run.started_at)
    );
    let _ = writeln!(xml, "    <properties>");
    for (name, value) in [
        ("target", run.target.as_str()),
        ("knee_version", run.knee_version.as_str()),
        ("slo", &run.slo.describe()),
    ] {
        let _ = writeln!(
            xml,
            "      <property name=\"{name}\" value=\"{}\"/>",
            escape(value)
        );
    }
    let _ = writeln!(xml, "    </properties>");
    for case in cases {
        write_case(&mut xml, case);
    }
    xml.push_str("  </testsuite>\n</testsuites>\n");
    xml
}

fn write_case(xml: &mut String, case: &Case) {
    let _ = writeln!(
        xml,
        "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\">",
        escape(&case.class),
        escape(&case.name),
        case.seconds
    );
    match &case.outcome {
        Outcome::Passed => {}
        Outcome::Failed(message) => {
            let _ = writeln!(
                xml,
                "      <failure message=\"{}\" type=\"slo\">{}</failure>",
                escape(message),
                escape(&format!(
                    "objective: {}; measured: {}",
                    case.name, case.measured
                ))
            );
        }
        Outcome::Skipped(message) => {
            let _ = writeln!(xml, "      <skipped message=\"{}\"/>", escape(message));
        }
    }
    let _ = writeln!(
        xml,
        "      <system-out>{}</system-out>",
        escape(&case.measured)
    );
    xml.push_str("    </testcase>\n");
}

/// XML text and attribute escaping (the HTML report's, which XML reads alike); control
/// characters XML 1.0 cannot carry become '?'.
fn escape(text: &str) -> String {
    let carried: String = text
        .chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            c if (c as u32) < 0x20 => '?',
            c => c,
        })
        .collect();
    super::markup::escape(&carried)
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_markup_and_control_characters() {
        assert_eq!(
            escape("p99 <= 50ms & \"a\" 'b' >\u{1}"),
            "p99 &lt;= 50ms &amp; &quot;a&quot; &#39;b&#39; &gt;?"
        );
    }
}

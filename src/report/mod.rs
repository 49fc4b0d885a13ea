//! Reports rendered from a run's `RunRecord`, one exporter per format, each returning bytes,
//! so `knee report RUN` can re-render any run folder after an upgrade.

pub mod markdown;

use crate::output::RunRecord;

/// One output format.
pub trait Exporter {
    /// The file name in the run folder ("report.md").
    fn file_name(&self) -> &'static str;
    fn render(&self, run: &RunRecord) -> Vec<u8>;
}

/// Escapes text for a Markdown table cell: pipes and line breaks would break the table.
pub fn md_cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

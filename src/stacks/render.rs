//! Flamegraph SVGs from folded stacks, by inferno: one per hold step, and the differential
//! one `knee compare` draws (before → after, normalized, red where time grew).

use crate::stacks::folded::Folded;
use inferno::flamegraph::color::{BasicPalette, Palette};
use inferno::flamegraph::{self, Options};

/// An interactive flamegraph SVG (inferno's search and zoom script included).
pub fn flamegraph_svg(folded: &Folded, title: &str, subtitle: &str) -> Result<Vec<u8>, String> {
    let mut options = Options::default();
    options.title = title.to_string();
    options.subtitle = Some(subtitle.to_string());
    options.count_name = "samples".into();
    options.deterministic = true;
    render(folded.to_text(), &mut options)
}

/// An off-CPU flamegraph: microseconds per stack, in the cool palette off-CPU graphs are
/// usually drawn in (so nobody reads it as CPU).
pub fn offcpu_svg(folded: &Folded, title: &str, subtitle: &str) -> Result<Vec<u8>, String> {
    let mut options = Options::default();
    options.title = format!("off-CPU: {title}");
    options.subtitle = Some(subtitle.to_string());
    options.count_name = "µs".into();
    options.colors = Palette::Basic(BasicPalette::Io);
    options.deterministic = true;
    render(folded.to_text(), &mut options)
}

/// A differential flamegraph: the shape of `after`, coloured by how each frame's share
/// changed since `before` (both normalized to the same total first).
pub fn differential_svg(
    before: &Folded,
    after: &Folded,
    title: &str,
    subtitle: &str,
) -> Result<Vec<u8>, String> {
    let mut lines = Vec::new();
    let options = inferno::differential::Options {
        normalize: true,
        strip_hex: true,
    };
    inferno::differential::from_readers(
        options,
        before.to_text().as_bytes(),
        after.to_text().as_bytes(),
        &mut lines,
    )
    .map_err(|e| format!("cannot diff the profiles: {e}"))?;
    let mut options = Options::default();
    options.title = title.to_string();
    options.subtitle = Some(subtitle.to_string());
    options.count_name = "samples".into();
    options.deterministic = true;
    render(String::from_utf8_lossy(&lines).into_owned(), &mut options)
}

fn render(text: String, options: &mut Options) -> Result<Vec<u8>, String> {
    if text.trim().is_empty() {
        return Err("the profile has no samples".into());
    }
    let mut svg = Vec::new();
    flamegraph::from_lines(options, text.lines(), &mut svg)
        .map_err(|e| format!("cannot draw the flamegraph: {e}"))?;
    Ok(svg)
}

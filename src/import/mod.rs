//! `knee import FILE`: a profile from the traffic a service really had. Access logs (nginx
//! and Apache combined or common, JSON lines) and HAR files become the weighted request mix
//! of a hunt profile that `knee run` and `knee hunt --profile` take as it is.
//!
//! Requests are grouped into endpoints by method and path template (numeric, UUID and long
//! hex segments become `{id}`); each endpoint is one request name, and its most frequent real
//! paths are its requests, weighted by how often the log shows them, so the load stays as
//! varied as the log and its results can be read per endpoint. Error answers are reported,
//! not imported, unless asked; a line that cannot be read is skipped and said with its
//! file:line. The log's mean and peak rates are written at the top.

mod har;
mod logs;
mod render;
pub mod replay;
mod template;

use crate::error::Error;
use crate::plan::{ImportFormat, ImportPlan};
use anyhow::Context;

/// One request read from the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Seconds since the epoch.
    pub time: Option<f64>,
    pub method: String,
    /// Path and query.
    pub path: String,
    pub status: Option<u16>,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
}

/// What was read, and what was left out and why.
#[derive(Debug)]
pub struct Read {
    pub entries: Vec<Entry>,
    /// The format, in words ("nginx/Apache combined or common").
    pub format: &'static str,
    /// Where the requests went, when the file says (HAR).
    pub origin: Option<String>,
    /// Lines not understood: how many, and the first with its reason.
    pub unreadable: usize,
    pub first_unreadable: Option<String>,
}

/// Reads `plan.file`, writes the profile to `plan.out` (or prints it), and says on stderr
/// what was imported and what was not.
pub fn run(plan: &ImportPlan) -> Result<(), Error> {
    let text = std::fs::read_to_string(&plan.file)
        .map_err(|e| Error::input(format!("{}: cannot read: {e}", plan.file.display())))?;
    let read = read(&plan.file.display().to_string(), &text, plan.format)?;
    let base = match (&plan.url, &read.origin) {
        (Some(url), _) => url.trim_end_matches('/').to_string(),
        (None, Some(origin)) => origin.clone(),
        (None, None) => {
            return Err(Error::input(format!(
                "{}: an access log does not say which host it served: give --url BASE (e.g. --url http://staging:8080)",
                plan.file.display()
            )))
        }
    };
    let profile = render::profile(plan, &read, &base)?;
    match &plan.out {
        Some(out) => {
            std::fs::write(out, &profile.text)
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!("{}", out.display());
        }
        None => print!("{}", profile.text),
    }
    for line in &profile.summary {
        crate::notice::say(format!("knee import: {line}"));
    }
    Ok(())
}

/// The entries of `text` in `format` (or the one it looks like); `name` names the file in
/// errors. No readable entry at all is an error naming the first line and why.
pub fn read(name: &str, text: &str, format: ImportFormat) -> Result<Read, Error> {
    let format = match format {
        ImportFormat::Auto => detect(text),
        other => other,
    };
    if format == ImportFormat::Har {
        let (entries, origin) =
            har::parse(text).map_err(|e| Error::input(format!("{name}: {e}")))?;
        if entries.is_empty() {
            return Err(Error::input(format!("{name}: the HAR file has no entries")));
        }
        return Ok(Read {
            entries,
            format: "HAR",
            origin,
            unreadable: 0,
            first_unreadable: None,
        });
    }
    type Parse = fn(&str) -> Result<Entry, String>;
    let (parse, words): (Parse, _) = match format {
        ImportFormat::Json => (logs::parse_json, "JSON lines"),
        _ => (logs::parse_clf, "nginx/Apache combined or common"),
    };
    let mut read = Read {
        entries: Vec::new(),
        format: words,
        origin: None,
        unreadable: 0,
        first_unreadable: None,
    };
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match parse(line) {
            Ok(entry) => read.entries.push(entry),
            Err(why) => {
                read.unreadable += 1;
                read.first_unreadable
                    .get_or_insert_with(|| format!("{name}:{}: {why}", number + 1));
            }
        }
    }
    if read.entries.is_empty() {
        let why = read
            .first_unreadable
            .clone()
            .unwrap_or_else(|| format!("{name}: the file is empty"));
        return Err(Error::input(format!(
            "no request could be read ({words}): {why}"
        )));
    }
    Ok(read)
}

/// HAR when the file is a JSON document with `log`; JSON lines when its first line is an
/// object; an access log otherwise.
fn detect(text: &str) -> ImportFormat {
    let start = text.trim_start();
    let first = start.lines().next().unwrap_or("").trim();
    if start.starts_with('{') && (first == "{" || first.starts_with("{\"log\"")) {
        ImportFormat::Har
    } else if first.starts_with('{') {
        ImportFormat::Json
    } else {
        ImportFormat::Clf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_the_format() {
        assert_eq!(detect("{\n \"log\": {}}"), ImportFormat::Har);
        assert_eq!(detect("{\"log\":{\"entries\":[]}}"), ImportFormat::Har);
        assert_eq!(detect("{\"method\":\"GET\"}\n{}"), ImportFormat::Json);
        assert_eq!(detect("1.2.3.4 - - [..."), ImportFormat::Clf);
    }

    #[test]
    fn unreadable_lines_are_counted_and_the_first_named() {
        let text = "garbage\n::1 - - [02/Dec/2026:16:15:28 +0000] \"GET /a HTTP/1.1\" 200 1\nmore garbage\n";
        let got = read("a.log", text, ImportFormat::Auto).unwrap();
        assert_eq!((got.entries.len(), got.unreadable), (1, 2));
        assert_eq!(got.first_unreadable.as_deref(), Some("a.log:1: no [time]"));
        let err = read("b.log", "garbage\n", ImportFormat::Clf)
            .unwrap_err()
            .to_string();
        assert!(err.contains("b.log:1: no [time]"), "{err}");
    }
}

//! The imported profile as TOML, with what the log says about its traffic (how many
//! requests, over how long, the mean and peak rates) and what was left out, as comments at
//! its top; the same lines go to the terminal.

use super::{template, Entry, Read};
use crate::error::Error;
use crate::plan::ImportPlan;
use std::collections::BTreeMap;
use std::fmt::Write;

/// The profile's text, and the lines said about the import.
pub struct Profile {
    pub text: String,
    pub summary: Vec<String>,
}

/// The most a request's weight may be (the profile's bound); larger counts are scaled down.
const MAX_WEIGHT: u64 = 1_000_000;

/// One endpoint: its real paths by count, and the first entry's headers and body.
struct Endpoint<'a> {
    count: u64,
    paths: BTreeMap<&'a str, u64>,
    sample: &'a Entry,
}

pub fn profile(plan: &ImportPlan, read: &Read, base: &str) -> Result<Profile, Error> {
    let kept: Vec<&Entry> = read
        .entries
        .iter()
        .filter(|e| plan.include_errors || e.status.is_none_or(|s| s < 400))
        .collect();
    let errors = read.entries.len() - kept.len();
    if kept.is_empty() {
        return Err(Error::input(format!(
            "{}: every one of its {} requests was answered 4xx/5xx: --include-errors imports them",
            plan.file.display(),
            read.entries.len()
        )));
    }
    let mut endpoints: BTreeMap<(String, String), Endpoint> = BTreeMap::new();
    for entry in &kept {
        let key = (entry.method.clone(), template::of(&entry.path));
        let endpoint = endpoints.entry(key).or_insert_with(|| Endpoint {
            count: 0,
            paths: BTreeMap::new(),
            sample: entry,
        });
        endpoint.count += 1;
        *endpoint.paths.entry(&entry.path).or_insert(0) += 1;
    }
    let mut summary = vec![format!(
        "{} requests read ({}), {} imported as {} endpoints",
        read.entries.len(),
        read.format,
        kept.len(),
        endpoints.len()
    )];
    summary.extend(rates(&kept));
    if errors > 0 && !plan.include_errors {
        summary.push(format!(
            "skipped {errors} answered 4xx/5xx (--include-errors imports them)"
        ));
    }
    if let Some(first) = &read.first_unreadable {
        summary.push(format!(
            "skipped {} lines not understood (the first: {first})",
            read.unreadable
        ));
    }
    for ((method, path), endpoint) in &endpoints {
        if method != "GET" && method != "HEAD" && endpoint.sample.body.is_none() {
            summary.push(format!(
                "{method} {path}: the file carries no body for it: add body = \"...\" (or body_file) to its requests"
            ));
        }
    }
    Ok(Profile {
        text: text(plan, base, &summary, &endpoints),
        summary,
    })
}

fn text(
    plan: &ImportPlan,
    base: &str,
    summary: &[String],
    endpoints: &BTreeMap<(String, String), Endpoint>,
) -> String {
    let mut out = format!("# knee import {}\n", plan.file.display());
    for line in summary {
        let _ = writeln!(out, "# {line}");
    }
    out.push_str(
        "# Each endpoint (method and path template) is one request name; its most frequent real\n\
         # paths are its requests, weighted by how often the file shows them.\n",
    );
    let name = plan
        .file
        .file_stem()
        .map_or("imported".into(), |s| s.to_string_lossy().into_owned());
    let _ = writeln!(out, "name = {}\nkind = \"hunt\"\n", quoted(&name));
    let _ = writeln!(out, "[target]\nurl = {}\n", quoted(base));
    let scale = endpoints
        .values()
        .flat_map(|e| e.paths.values())
        .max()
        .map_or(1, |&most| most.div_ceil(MAX_WEIGHT).max(1));
    let mut by_count: Vec<(&(String, String), &Endpoint)> = endpoints.iter().collect();
    by_count.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(b.0)));
    for ((method, path), endpoint) in by_count {
        let mut paths: Vec<(&str, u64)> = endpoint.paths.iter().map(|(p, n)| (*p, *n)).collect();
        paths.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let shown = &paths[..paths.len().min(plan.paths_per_endpoint)];
        // The paths left out still count toward their endpoint's share: the first takes them.
        let rest: u64 = paths[shown.len()..].iter().map(|(_, n)| n).sum();
        for (i, (real, count)) in shown.iter().enumerate() {
            let count = count + if i == 0 { rest } else { 0 };
            let _ = writeln!(out, "[[requests]]");
            let _ = writeln!(out, "name = {}", quoted(&format!("{method} {path}")));
            let _ = writeln!(out, "method = {}", quoted(method));
            let _ = writeln!(out, "path = {}", quoted(real));
            let _ = writeln!(out, "weight = {}", (count / scale).max(1));
            write_request_extras(&mut out, endpoint.sample);
            out.push('\n');
        }
    }
    out.push_str("[slo]\np99 = \"500ms\"   # put your own objective here\nerrors = \"1%\"\n");
    out
}

fn write_request_extras(out: &mut String, sample: &Entry) {
    if !sample.headers.is_empty() {
        let pairs: Vec<String> = sample
            .headers
            .iter()
            .map(|(name, value)| format!("{} = {}", quoted(name), quoted(value)))
            .collect();
        let _ = writeln!(out, "headers = {{ {} }}", pairs.join(", "));
    }
    if let Some(body) = &sample.body {
        let _ = writeln!(out, "body = {}", quoted(body));
    }
}

/// A TOML basic string.
fn quoted(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// "over 1h 2m: mean 2.75 req/s; peak 14 req/s in one second, 310 in one minute".
fn rates(entries: &[&Entry]) -> Option<String> {
    let mut times: Vec<f64> = entries.iter().filter_map(|e| e.time).collect();
    if times.len() < 2 {
        return None;
    }
    times.sort_by(f64::total_cmp);
    let span = times[times.len() - 1] - times[0];
    let peak = |width: f64| {
        let mut counts: BTreeMap<i64, u64> = BTreeMap::new();
        for t in &times {
            *counts.entry((t / width).floor() as i64).or_insert(0) += 1;
        }
        counts.values().copied().max().unwrap_or(0)
    };
    let over = humantime::format_duration(std::time::Duration::from_secs(span.round() as u64));
    Some(format!(
        "over {over}: mean {} req/s; peak {} req/s in one second, {} req/min in one minute (a hunt finds how far above that the service holds)",
        crate::units::fmt_rate(times.len() as f64 / span.max(1.0)),
        peak(1.0),
        peak(60.0)
    ))
}

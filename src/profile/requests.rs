//! A profile's requests (`[[requests]]`, and the target's method, headers and body they
//! extend): read, their `${VAR}` filled from the environment, their bodies from files beside
//! the profile. Flows' steps (`flows`) are read with the same pieces.

use super::{slo_of, Bounded, SloValue, Source};
use crate::error::Error;
use crate::slo::Slo;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// One entry of the request mix, before it is joined to the target.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    pub name: String,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub weight: u32,
    /// Its own objectives (`[requests.slo]`), judged on its own figures.
    pub slo: Option<Slo>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRequest {
    name: Option<String>,
    method: Option<String>,
    path: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, Spanned<String>>,
    body: Option<String>,
    body_file: Option<Spanned<String>>,
    weight: Option<Bounded<1, 1_000_000>>,
    /// Its own objectives (`[requests.slo]`), on top of the run's.
    #[serde(default)]
    slo: BTreeMap<String, Spanned<SloValue>>,
}

pub(super) struct RawRequestDefaults {
    pub(super) method: String,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
}

impl RawRequestDefaults {
    /// The target's headers, extended (and overridden, by name in any case) by a request's.
    pub(super) fn headers_with(&self, own: Vec<(String, String)>) -> Vec<(String, String)> {
        let mut headers = self.headers.clone();
        for (name, value) in own {
            headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
            headers.push((name, value));
        }
        headers
    }
}

pub(super) fn request_spec(
    src: &Source,
    base_dir: &Path,
    index: usize,
    raw: &RawRequest,
    defaults: &RawRequestDefaults,
) -> Result<RequestSpec, Error> {
    let headers = defaults.headers_with(expand_headers(src, &raw.headers, &[])?);
    let body = if raw.body.is_some() || raw.body_file.is_some() {
        read_body(src, base_dir, raw.body.as_deref(), raw.body_file.as_ref())?
    } else {
        defaults.body.clone()
    };
    Ok(RequestSpec {
        name: raw
            .name
            .clone()
            .unwrap_or_else(|| format!("request-{}", index + 1)),
        method: raw
            .method
            .clone()
            .unwrap_or_else(|| defaults.method.clone()),
        path: raw.path.clone().unwrap_or_default(),
        headers,
        body,
        weight: raw.weight.as_ref().map_or(1, |w| w.0 as u32),
        slo: match raw.slo.is_empty() {
            true => None,
            false => Some(slo_of(src, &raw.slo)?),
        },
    })
}

/// Expands `${VAR}` in header values from the environment (tokens stay out of profiles),
/// but for each of `kept` (a flow's own variables, filled in per request).
pub(super) fn expand_headers(
    src: &Source,
    headers: &BTreeMap<String, Spanned<String>>,
    kept: &[String],
) -> Result<Vec<(String, String)>, Error> {
    headers
        .iter()
        .map(|(name, value)| {
            let expanded = expand_env_except(value.get_ref(), kept)
                .map_err(|e| src.error_at(Some(value.span()), &e))?;
            Ok((name.clone(), expanded))
        })
        .collect()
}

/// `${NAME}` → the variable's value; a missing variable is an error, not an empty string.
pub fn expand_env(text: &str) -> Result<String, String> {
    expand_env_except(text, &[])
}

/// `expand_env`, leaving `${NAME}` as it is for each of `kept` (a flow's own variables).
fn expand_env_except(text: &str, kept: &[String]) -> Result<String, String> {
    use crate::plan::flow::{pieces, Piece};
    let mut out = String::with_capacity(text.len());
    for piece in pieces(text) {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Unclosed(_) => return Err(format!("unclosed '${{' in '{text}'")),
            Piece::Var(name) if kept.iter().any(|k| k == name) => {
                out.push_str("${");
                out.push_str(name);
                out.push('}');
            }
            Piece::Var(name) => {
                let value = std::env::var(name)
                    .map_err(|_| format!("environment variable {name} is not set"))?;
                out.push_str(&value);
            }
        }
    }
    Ok(out)
}

pub(super) fn read_body(
    src: &Source,
    base_dir: &Path,
    body: Option<&str>,
    body_file: Option<&Spanned<String>>,
) -> Result<Vec<u8>, Error> {
    match (body, body_file) {
        (Some(_), Some(file)) => {
            Err(src.error_at(Some(file.span()), "give either body or body_file, not both"))
        }
        (Some(text), None) => Ok(text.as_bytes().to_vec()),
        (None, Some(file)) => {
            let path: PathBuf = base_dir.join(file.get_ref());
            std::fs::read(&path).map_err(|e| {
                src.error_at(
                    Some(file.span()),
                    &format!("cannot read body_file {}: {e}", path.display()),
                )
            })
        }
        (None, None) => Ok(Vec::new()),
    }
}

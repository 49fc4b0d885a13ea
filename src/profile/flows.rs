//! `[[flows]]` as written: each flow's steps become requests of the run (named
//! "FLOW/STEP", measured on their own like any request), and the flow itself a
//! `plan::flow::FlowPlan`. Every `${name}` a step uses is checked here: a feeder column or a
//! value an earlier step takes is the flow's; in headers anything else comes from the
//! environment (as in `[[requests]]`); in a path or body anything else is an error pointing
//! at it.

use super::requests::{expand_headers, read_body, RawRequestDefaults, RequestSpec};
use super::{slo_of, Bounded, DurationValue, SloValue, Source};
use crate::error::Error;
use crate::plan::flow::{variables, Extract, ExtractFrom, Feeder, FlowPlan, FlowStep};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFlow {
    name: Option<String>,
    weight: Option<Bounded<1, 1_000_000>>,
    /// The pause after each response before the next step (a step's own `think` wins).
    think: Option<DurationValue>,
    /// A CSV file (relative to the profile): one row per flow started.
    feeder: Option<Spanned<String>>,
    steps: Spanned<Vec<Spanned<RawFlowStep>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlowStep {
    name: Option<String>,
    method: Option<String>,
    path: Option<Spanned<String>>,
    #[serde(default)]
    headers: BTreeMap<String, Spanned<String>>,
    body: Option<Spanned<String>>,
    body_file: Option<Spanned<String>>,
    think: Option<DurationValue>,
    #[serde(default)]
    extract: BTreeMap<String, Spanned<RawExtract>>,
    #[serde(default)]
    slo: BTreeMap<String, Spanned<SloValue>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExtract {
    json: Option<String>,
    header: Option<String>,
    regex: Option<String>,
}

/// The flows' requests (appended to `requests`, whose indexes the steps keep) and the flows.
pub(super) fn flows_of(
    src: &Source,
    base_dir: &Path,
    raw: &[Spanned<RawFlow>],
    defaults: &RawRequestDefaults,
    requests: &mut Vec<RequestSpec>,
) -> Result<Vec<FlowPlan>, Error> {
    let mut flows: Vec<FlowPlan> = Vec::new();
    for (index, flow) in raw.iter().enumerate() {
        let name = flow
            .get_ref()
            .name
            .clone()
            .unwrap_or_else(|| format!("flow-{}", index + 1));
        if flows.iter().any(|f| f.name == name) {
            return Err(src.error_at(Some(flow.span()), &format!("two flows are named '{name}'")));
        }
        flows.push(flow_of(
            src,
            base_dir,
            name,
            flow.get_ref(),
            defaults,
            requests,
        )?);
    }
    Ok(flows)
}

fn flow_of(
    src: &Source,
    base_dir: &Path,
    name: String,
    raw: &RawFlow,
    defaults: &RawRequestDefaults,
    requests: &mut Vec<RequestSpec>,
) -> Result<FlowPlan, Error> {
    if raw.steps.get_ref().is_empty() {
        return Err(src.error_at(Some(raw.steps.span()), "a flow needs at least one step"));
    }
    let feeder = match &raw.feeder {
        Some(file) => {
            let path = base_dir.join(file.get_ref());
            let text = std::fs::read_to_string(&path).map_err(|e| {
                src.error_at(
                    Some(file.span()),
                    &format!("cannot read feeder {}: {e}", path.display()),
                )
            })?;
            Some(Feeder::parse(&text).map_err(|e| {
                src.error_at(
                    Some(file.span()),
                    &format!("feeder {}: {e}", path.display()),
                )
            })?)
        }
        None => None,
    };
    let mut known: Vec<String> = feeder
        .as_ref()
        .map(|f| f.columns.clone())
        .unwrap_or_default();
    let flow_think = raw.think.as_ref().map_or(Duration::ZERO, |t| t.0);
    let mut steps = Vec::new();
    for (index, step) in raw.steps.get_ref().iter().enumerate() {
        let step_name = step
            .get_ref()
            .name
            .clone()
            .unwrap_or_else(|| format!("step-{}", index + 1));
        let spec = request_of(
            src,
            base_dir,
            &name,
            &step_name,
            step.get_ref(),
            defaults,
            &known,
        )?;
        let extract = extractions(src, &step.get_ref().extract)?;
        known.extend(extract.iter().map(|e| e.var.clone()));
        steps.push(FlowStep {
            request: requests.len(),
            think: step.get_ref().think.as_ref().map_or(flow_think, |t| t.0),
            extract,
            template: None,
        });
        requests.push(spec);
    }
    Ok(FlowPlan {
        name,
        weight: raw.weight.as_ref().map_or(1, |w| w.0 as u32),
        steps,
        feeder,
    })
}

/// A step's request; `known` are the variables the flow has by then.
fn request_of(
    src: &Source,
    base_dir: &Path,
    flow: &str,
    step_name: &str,
    raw: &RawFlowStep,
    defaults: &RawRequestDefaults,
    known: &[String],
) -> Result<RequestSpec, Error> {
    let check = |text: &str, span: std::ops::Range<usize>| {
        match variables(text)
        .into_iter()
        .find(|v| !known.iter().any(|k| k == v))
    {
        Some(unknown) => Err(src.error_at(
            Some(span),
            &format!(
                "${{{unknown}}} is not a feeder column nor a value an earlier step of flow '{flow}' extracts"
            ),
        )),
        None => Ok(()),
    }
    };
    let path = raw
        .path
        .as_ref()
        .map_or(String::new(), |p| p.get_ref().clone());
    if let Some(p) = &raw.path {
        check(p.get_ref(), p.span())?;
    }
    let headers = defaults.headers_with(expand_headers(src, &raw.headers, known)?);
    let body = if raw.body.is_some() || raw.body_file.is_some() {
        let body = read_body(
            src,
            base_dir,
            raw.body.as_ref().map(|b| b.get_ref().as_str()),
            raw.body_file.as_ref(),
        )?;
        let span = raw
            .body
            .as_ref()
            .map(|b| b.span())
            .or(raw.body_file.as_ref().map(|f| f.span()))
            .unwrap_or_default();
        check(&String::from_utf8_lossy(&body), span)?;
        body
    } else {
        defaults.body.clone()
    };
    Ok(RequestSpec {
        name: format!("{flow}/{step_name}"),
        method: raw
            .method
            .clone()
            .unwrap_or_else(|| defaults.method.clone()),
        path,
        headers,
        body,
        weight: 1,
        slo: match raw.slo.is_empty() {
            true => None,
            false => Some(slo_of(src, &raw.slo)?),
        },
    })
}

fn extractions(
    src: &Source,
    raw: &BTreeMap<String, Spanned<RawExtract>>,
) -> Result<Vec<Extract>, Error> {
    raw.iter()
        .map(|(var, how)| {
            let at = |message: &str| src.error_at(Some(how.span()), message);
            if var.is_empty() || !var.chars().all(|c| c.is_alphanumeric() || c == '_') {
                return Err(at(&format!(
                    "'{var}' is not a variable name (letters, digits and _)"
                )));
            }
            let how_ = how.get_ref();
            let from = match (&how_.json, &how_.header, &how_.regex) {
                (Some(pointer), None, None) => {
                    if !pointer.is_empty() && !pointer.starts_with('/') {
                        return Err(at(&format!(
                            "json '{pointer}' is not a JSON pointer (they start with /: \"/data/token\")"
                        )));
                    }
                    ExtractFrom::Json(pointer.clone())
                }
                (None, Some(header), None) => ExtractFrom::Header(
                    http::HeaderName::from_bytes(header.as_bytes())
                        .map_err(|_| at(&format!("'{header}' is not a header name")))?,
                ),
                (None, None, Some(pattern)) => ExtractFrom::Regex(
                    regex::Regex::new(pattern)
                        .map_err(|e| at(&format!("regex '{pattern}': {e}")))?,
                ),
                _ => return Err(at("give one of json, header or regex")),
            };
            Ok(Extract {
                var: var.clone(),
                from,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use std::path::Path;

    const HEAD: &str =
        "[target]\nurl = \"http://127.0.0.1:1\"\n[load]\nrate = 1\nduration = \"1s\"\n";

    fn error_of(text: &str) -> String {
        parse(Path::new("f.toml"), &format!("{HEAD}{text}"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn steps_become_named_requests_and_values_flow_forward() {
        let text = format!(
            "{HEAD}[[flows]]\nname = \"buy\"\nthink = \"1s\"\nweight = 3\n\
             [[flows.steps]]\nmethod = \"POST\"\npath = \"/login\"\n\
             extract = {{ token = {{ json = \"/token\" }} }}\n\
             [[flows.steps]]\nname = \"cart\"\npath = \"/cart/${{token}}\"\nthink = \"2s\"\n\
             headers = {{ Authorization = \"Bearer ${{token}}\" }}\n"
        );
        let spec = parse(Path::new("f.toml"), &text).unwrap();
        let names: Vec<&str> = spec.requests.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["buy/step-1", "buy/cart"]);
        assert_eq!(spec.requests[1].headers[0].1, "Bearer ${token}");
        let flow = &spec.flows[0];
        assert_eq!((flow.weight, flow.steps.len()), (3, 2));
        assert_eq!(flow.steps[0].think, std::time::Duration::from_secs(1));
        assert_eq!(flow.steps[1].think, std::time::Duration::from_secs(2));
        assert_eq!(flow.steps[0].extract[0].var, "token");
        assert_eq!(flow.steps[1].request, 1);
    }

    #[test]
    fn bad_flows_are_errors_at_their_place() {
        let both =
            error_of("[[requests]]\npath = \"/\"\n[[flows]]\n[[flows.steps]]\npath = \"/\"\n");
        assert!(
            both.starts_with("f.toml:8:1: give [[requests]] or [[flows]], not both"),
            "{both}"
        );
        let two_ways = error_of(
            "[[flows]]\n[[flows.steps]]\nextract = { t = { json = \"/a\", header = \"b\" } }\n",
        );
        assert!(
            two_ways.contains("f.toml:8:17: give one of json, header or regex"),
            "{two_ways}"
        );
        let pointer = error_of("[[flows]]\n[[flows.steps]]\nextract = { t = { json = \"a\" } }\n");
        assert!(pointer.contains("is not a JSON pointer"), "{pointer}");
        let regex = error_of("[[flows]]\n[[flows.steps]]\nextract = { t = { regex = \"(\" } }\n");
        assert!(regex.contains("regex '('"), "{regex}");
        let later = error_of(
            "[[flows]]\n[[flows.steps]]\npath = \"/${t}\"\n\
             [[flows.steps]]\nextract = { t = { json = \"/a\" } }\n",
        );
        assert!(
            later.contains("f.toml:8:8: ${t} is not a feeder column"),
            "{later}"
        );
        let feeder = error_of("[[flows]]\nfeeder = \"missing.csv\"\n[[flows.steps]]\n");
        assert!(
            feeder.contains("f.toml:7:10: cannot read feeder"),
            "{feeder}"
        );
    }
}

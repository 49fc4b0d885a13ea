//! TOML profiles (`knee run PROFILE.toml`). Every value is checked while it is read, so a bad
//! one is reported as `file:line:col: problem` with the position of the value itself; checks
//! that involve several values point at their table. The result is a `ProfileSpec` with no
//! strings left to interpret.

use crate::error::Error;
use crate::plan::{Arrivals, HttpVersion, Kind, Load, MAX_CONNECTIONS, MAX_RATE};
use crate::slo::Slo;
use crate::units::parse_duration;
use serde::de::{self, Deserializer};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;
use toml::Spanned;

mod flows;
pub mod grpc;
mod observe;
mod requests;

use observe::{observe_plan, RawObserve};
pub use requests::{expand_env, RequestSpec};
use requests::{expand_headers, read_body, request_spec, RawRequest, RawRequestDefaults};

/// A profile once read and checked: what `plan` merges with the command line.
#[derive(Debug)]
pub struct ProfileSpec {
    pub name: Option<String>,
    pub kind: Kind,
    pub url: String,
    pub http: Option<HttpVersion>,
    pub insecure: bool,
    pub timeout: Option<Duration>,
    pub connect_timeout: Option<Duration>,
    pub max_connections: Option<usize>,
    /// `[target] h2_streams`: HTTP/2 streams in flight per connection.
    pub h2_streams: Option<usize>,
    /// `[target] grpc` (and `proto`, beside the profile): the one gRPC method to call; its
    /// JSON is the target's `body`, its metadata the target's `headers`.
    pub grpc: Option<grpc::GrpcSpec>,
    /// `[target] check` (default true): send each request once before the load.
    pub check: bool,
    /// `[target] allow_status = "404,5xx"`.
    pub allow_status: Vec<crate::plan::StatusPattern>,
    pub requests: Vec<RequestSpec>,
    /// `[[flows]]`: their steps are `requests`, and a rate is flows started per second.
    pub flows: Vec<crate::plan::flow::FlowPlan>,
    pub loads: Vec<Load>,
    pub warmup: Option<Duration>,
    pub duration: Duration,
    pub window: Option<Duration>,
    pub slo: Slo,
    pub hunt: HuntSpec,
    pub observe: crate::plan::ObservePlan,
}

/// The `[hunt]` table: every field optional, flags and defaults fill the rest.
#[derive(Debug, Default, Clone)]
pub struct HuntSpec {
    pub max_rate: Option<f64>,
    pub resolution: Option<f64>,
    pub step_duration: Option<Duration>,
    pub hold_duration: Option<Duration>,
    pub holds: Option<Vec<f64>>,
    pub probe: Option<Vec<u32>>,
    pub arrivals: Option<Arrivals>,
}

// ---- the file as written -------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: Option<String>,
    kind: Option<Kind>,
    target: RawTarget,
    #[serde(default)]
    requests: Vec<Spanned<RawRequest>>,
    #[serde(default)]
    flows: Vec<Spanned<flows::RawFlow>>,
    load: Option<Spanned<RawLoad>>,
    #[serde(default)]
    slo: BTreeMap<String, Spanned<SloValue>>,
    hunt: Option<RawHunt>,
    observe: Option<RawObserve>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHunt {
    max_rate: Option<Spanned<f64>>,
    resolution: Option<Spanned<String>>,
    step_duration: Option<DurationValue>,
    hold_duration: Option<DurationValue>,
    /// Percentages of capacity, e.g. [50, 80, 95, 105, 120].
    holds: Option<Vec<Spanned<f64>>>,
    probe: Option<Vec<Bounded<1, MAX_CONNECTIONS>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    url: Spanned<String>,
    method: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, Spanned<String>>,
    body: Option<String>,
    body_file: Option<Spanned<String>>,
    timeout: Option<DurationValue>,
    connect_timeout: Option<DurationValue>,
    http: Option<HttpValue>,
    #[serde(default)]
    insecure: bool,
    max_connections: Option<Bounded<1, MAX_CONNECTIONS>>,
    h2_streams: Option<Bounded<1, 1000>>,
    grpc: Option<Spanned<String>>,
    proto: Option<String>,
    check: Option<bool>,
    allow_status: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLoad {
    model: Option<Model>,
    arrivals: Option<Arrivals>,
    rate: Option<Spanned<f64>>,
    rates: Option<Vec<Spanned<f64>>>,
    concurrency: Option<OneOrMany<Bounded<1, MAX_CONNECTIONS>>>,
    warmup: Option<DurationValue>,
    duration: Option<DurationValue>,
    window: Option<DurationValue>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Model {
    Open,
    Closed,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SloValue {
    Text(String),
    Number(f64),
}

/// "5s", "250ms": checked while read, so a bad one points at itself.
struct DurationValue(Duration);

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_duration(&text)
            .map(DurationValue)
            .map_err(de::Error::custom)
    }
}

/// An integer within [MIN, MAX].
struct Bounded<const MIN: usize, const MAX: usize>(usize);

impl<'de, const MIN: usize, const MAX: usize> Deserialize<'de> for Bounded<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = i64::deserialize(d)?;
        if value < MIN as i64 || value > MAX as i64 {
            return Err(de::Error::custom(format!(
                "{value} is out of range ({MIN} to {MAX})"
            )));
        }
        Ok(Bounded(value as usize))
    }
}

struct HttpValue(HttpVersion);

impl<'de> Deserialize<'de> for HttpValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_http_version(&text)
            .map(HttpValue)
            .map_err(de::Error::custom)
    }
}

pub fn parse_http_version(text: &str) -> Result<HttpVersion, String> {
    match text {
        "1" | "1.1" | "http1" | "http/1.1" => Ok(HttpVersion::Http1),
        "2" | "h2" | "http2" => Ok(HttpVersion::Http2),
        other => Err(format!(
            "unknown HTTP version '{other}' (use \"1.1\" or \"2\")"
        )),
    }
}

/// Rates must be positive and at most `MAX_RATE`.
pub fn check_rate(rate: f64) -> Result<f64, String> {
    if !rate.is_finite() || rate <= 0.0 {
        return Err(format!("rate {rate} must be above 0 requests/s"));
    }
    if rate > MAX_RATE {
        return Err(format!(
            "rate {rate} is above the {MAX_RATE} requests/s one generator can offer"
        ));
    }
    Ok(rate)
}

// ---- reading and checking -------------------------------------------------------------

/// Where a problem is: the file, and the text to turn byte offsets into line:col.
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    fn error_at(&self, span: Option<Range<usize>>, message: &str) -> Error {
        let message = message.trim().replace('\n', " ");
        match span {
            Some(span) => {
                let (line, col) = line_col(self.text, span.start);
                Error::input(format!("{}:{line}:{col}: {message}", self.path.display()))
            }
            None => Error::input(format!("{}: {message}", self.path.display())),
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

pub fn load(path: &Path) -> Result<ProfileSpec, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::input(format!("{}: cannot read profile: {e}", path.display())))?;
    parse(path, &text)
}

pub fn parse(path: &Path, text: &str) -> Result<ProfileSpec, Error> {
    let src = Source { path, text };
    let raw: RawProfile = toml::from_str(text).map_err(|e| src.error_at(e.span(), e.message()))?;
    let base_dir = path.parent().unwrap_or(Path::new("."));
    let kind = raw.kind.unwrap_or(Kind::Steps);

    let target = &raw.target;
    let default_request = RawRequestDefaults {
        method: target.method.clone().unwrap_or_else(|| "GET".to_string()),
        headers: expand_headers(&src, &target.headers, &[])?,
        body: read_body(
            &src,
            base_dir,
            target.body.as_deref(),
            target.body_file.as_ref(),
        )?,
    };
    let mut flow_requests = Vec::new();
    let flows = flows::flows_of(
        &src,
        base_dir,
        &raw.flows,
        &default_request,
        &mut flow_requests,
    )?;
    let grpc = grpc::grpc_of(
        &src,
        base_dir,
        target,
        !raw.requests.is_empty() || !flows.is_empty(),
    )?;
    if let (Some(flow), false) = (raw.flows.first(), raw.requests.is_empty()) {
        return Err(src.error_at(
            Some(flow.span()),
            "give [[requests]] or [[flows]], not both (a request alone is a flow of one step)",
        ));
    }
    let requests = if !flows.is_empty() {
        flow_requests
    } else if raw.requests.is_empty() {
        vec![RequestSpec {
            name: "default".to_string(),
            method: default_request.method.clone(),
            path: String::new(),
            headers: default_request.headers.clone(),
            body: default_request.body.clone(),
            weight: 1,
            slo: None,
        }]
    } else {
        raw.requests
            .iter()
            .enumerate()
            .map(|(i, r)| request_spec(&src, base_dir, i, r.get_ref(), &default_request))
            .collect::<Result<_, _>>()?
    };

    let hunt = check_hunt(&src, raw.hunt.unwrap_or_default(), raw.load.as_ref())?;
    let (loads, duration, warmup, window) = match (&raw.load, kind) {
        (None, Kind::Hunt) => (Vec::new(), Duration::from_secs(2), None, None),
        (None, _) => return Err(src.error_at(None, "needs a [load] table (or kind = \"hunt\")")),
        (Some(load), Kind::Hunt) => (
            Vec::new(),
            load.get_ref()
                .duration
                .as_ref()
                .map_or(Duration::from_secs(2), |d| d.0),
            load.get_ref().warmup.as_ref().map(|d| d.0),
            None,
        ),
        (Some(load), _) => {
            let (loads, duration) = check_load(&src, kind, load)?;
            let raw_load = load.get_ref();
            (
                loads,
                duration,
                raw_load.warmup.as_ref().map(|d| d.0),
                raw_load.window.as_ref().map(|d| d.0),
            )
        }
    };
    let slo = slo_of(&src, &raw.slo)?;
    Ok(ProfileSpec {
        name: raw.name,
        kind,
        url: target.url.get_ref().clone(),
        http: target.http.as_ref().map(|h| h.0),
        insecure: target.insecure,
        timeout: target.timeout.as_ref().map(|d| d.0),
        connect_timeout: target.connect_timeout.as_ref().map(|d| d.0),
        max_connections: target.max_connections.as_ref().map(|m| m.0),
        h2_streams: target.h2_streams.as_ref().map(|m| m.0),
        grpc,
        check: target.check.unwrap_or(true),
        allow_status: match &target.allow_status {
            Some(text) => crate::plan::StatusPattern::parse_list(text.get_ref())
                .map_err(|e| src.error_at(Some(text.span()), &e))?,
            None => Vec::new(),
        },
        requests,
        flows,
        loads,
        warmup,
        duration,
        window,
        slo,
        hunt,
        observe: observe_plan(&src, raw.observe.unwrap_or_default())?,
    })
}

/// An `[slo]` table's objectives; a bad one points at itself.
fn slo_of(src: &Source, terms: &BTreeMap<String, Spanned<SloValue>>) -> Result<Slo, Error> {
    let mut slo = Slo::default();
    for (key, value) in terms {
        let text = match value.get_ref() {
            SloValue::Text(t) => t.clone(),
            SloValue::Number(n) => n.to_string(),
        };
        slo.add_term(key, &text)
            .map_err(|e| src.error_at(Some(value.span()), &e))?;
    }
    Ok(slo)
}

fn check_load(
    src: &Source,
    kind: Kind,
    load: &Spanned<RawLoad>,
) -> Result<(Vec<Load>, Duration), Error> {
    let at = |msg: &str| src.error_at(Some(load.span()), &format!("[load] {msg}"));
    let raw = load.get_ref();
    let arrivals = raw.arrivals.unwrap_or(Arrivals::Uniform);
    // Rates are checked one by one so an error points at the bad element of a list.
    let rates: Vec<f64> = raw
        .rate
        .iter()
        .chain(raw.rates.iter().flatten())
        .map(|r| check_rate(*r.get_ref()).map_err(|e| src.error_at(Some(r.span()), &e)))
        .collect::<Result<_, _>>()?;
    let concurrency: Vec<u32> = match &raw.concurrency {
        None => Vec::new(),
        Some(OneOrMany::One(c)) => vec![c.0 as u32],
        Some(OneOrMany::Many(cs)) => cs.iter().map(|c| c.0 as u32).collect(),
    };
    let model = raw.model.unwrap_or(if concurrency.is_empty() {
        Model::Open
    } else {
        Model::Closed
    });
    let loads: Vec<Load> = match model {
        Model::Open if !concurrency.is_empty() => {
            return Err(at(
                "concurrency belongs to model = \"closed\"; the open model takes rate or rates",
            ))
        }
        Model::Closed if !rates.is_empty() => {
            return Err(at(
                "rate/rates belong to model = \"open\"; the closed model takes concurrency",
            ))
        }
        Model::Open => rates
            .into_iter()
            .map(|rps| Load::Rate { rps, arrivals })
            .collect(),
        Model::Closed => concurrency.into_iter().map(Load::Concurrency).collect(),
    };
    if loads.is_empty() {
        return Err(at(
            "needs rate = N, rates = [..] (open model) or concurrency = N (closed model)",
        ));
    }
    if kind == Kind::Sweep && !matches!(loads[0], Load::Concurrency(_)) {
        return Err(at(
            "kind = \"sweep\" runs the closed model: give concurrency = N (or a list)",
        ));
    }
    if matches!(kind, Kind::Load | Kind::Soak) && loads.len() > 1 {
        return Err(at(&format!(
            "kind = \"{}\" holds one load; give a single rate or concurrency",
            kind.as_str()
        )));
    }
    let duration = raw
        .duration
        .as_ref()
        .map(|d| d.0)
        .ok_or_else(|| at("needs duration = \"10s\" (the length of each step)"))?;
    if duration.is_zero() {
        return Err(at("duration must be above 0"));
    }
    Ok((loads, duration))
}

fn check_hunt(
    src: &Source,
    raw: RawHunt,
    load: Option<&Spanned<RawLoad>>,
) -> Result<HuntSpec, Error> {
    let max_rate = raw
        .max_rate
        .map(|r| check_rate(*r.get_ref()).map_err(|e| src.error_at(Some(r.span()), &e)))
        .transpose()?;
    let resolution = raw
        .resolution
        .map(|r| parse_resolution(r.get_ref()).map_err(|e| src.error_at(Some(r.span()), &e)))
        .transpose()?;
    let holds = raw
        .holds
        .map(|holds| {
            holds
                .iter()
                .map(|h| {
                    parse_hold_percent(*h.get_ref()).map_err(|e| src.error_at(Some(h.span()), &e))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    Ok(HuntSpec {
        max_rate,
        resolution,
        step_duration: raw.step_duration.map(|d| d.0),
        hold_duration: raw.hold_duration.map(|d| d.0),
        holds,
        probe: raw.probe.map(|p| p.iter().map(|c| c.0 as u32).collect()),
        arrivals: load.and_then(|l| l.get_ref().arrivals),
    })
}

/// "5%" or 0.05: the search resolution, between 0.1 % and 50 %.
pub fn parse_resolution(text: &str) -> Result<f64, String> {
    let value = crate::units::parse_fraction(text)?;
    let floor = crate::plan::MIN_RESOLUTION;
    if !(floor..=0.5).contains(&value) {
        return Err(format!(
            "resolution '{text}' must be between {}% and 50% (rates are kept to 3 significant digits, so a finer step cannot be offered)",
            floor * 100.0
        ));
    }
    Ok(value)
}

/// A hold step as a percentage of capacity (50 = half), between 1 and 500.
pub fn parse_hold_percent(percent: f64) -> Result<f64, String> {
    if !(1.0..=500.0).contains(&percent) {
        return Err(format!(
            "hold {percent}% of capacity must be between 1 and 500"
        ));
    }
    Ok(percent / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        assert_eq!(line_col(text, text.find('"').unwrap()), (2, 6));
    }

    #[test]
    fn env_expansion() {
        std::env::set_var("KNEE_TEST_TOKEN_X", "abc");
        assert_eq!(
            expand_env("Bearer ${KNEE_TEST_TOKEN_X}!").unwrap(),
            "Bearer abc!"
        );
        assert!(expand_env("${KNEE_SURELY_UNSET_VAR}")
            .unwrap_err()
            .contains("not set"));
        assert!(expand_env("${OPEN").unwrap_err().contains("unclosed"));
    }

    #[test]
    fn metrics_headers_are_expanded_and_an_unset_variable_is_placed() {
        std::env::set_var("KNEE_TEST_SCRAPE_X", "s3");
        let head = "[target]\nurl = \"http://127.0.0.1:9/\"\n[load]\nrate = 5\nduration = \"1s\"\n";
        let good = format!(
            "{head}[observe]\nmetrics = [\"https://h:9100/metrics\"]\nmetrics_headers = {{ Authorization = \"Bearer ${{KNEE_TEST_SCRAPE_X}}\" }}\n"
        );
        let spec = parse(Path::new("p.toml"), &good).unwrap();
        let headers = &spec.observe.metrics_headers;
        assert_eq!(headers.len(), 1);
        assert_eq!(
            (headers[0].0.as_str(), headers[0].1 .0.as_str()),
            ("Authorization", "Bearer s3")
        );
        let bad =
            format!("{head}[observe]\nmetrics_headers = {{ X = \"${{KNEE_SURELY_UNSET_Y}}\" }}\n");
        let error = parse(Path::new("p.toml"), &bad).unwrap_err().to_string();
        assert!(error.contains("p.toml:7:"), "{error}");
        assert!(error.contains("not set"), "{error}");
    }
}

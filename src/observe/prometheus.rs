//! Prometheus scraping: each sample, GET a /metrics endpoint (plain HTTP/1.0, so no chunked
//! bodies) and keep gauges as they are and counters as rates per second, as
//! `metrics.<name>{labels}` and `metrics.<name>{labels}:rate`. Parsing is prometheus-parse's.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// Series kept per endpoint when no names are given.
const MAX_SERIES: usize = 100;
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(1);

pub struct MetricsSource {
    /// host:port
    authority: String,
    path: String,
    /// Metric names to keep; empty keeps everything (up to `MAX_SERIES`).
    names: Vec<String>,
    counters: HashMap<String, (Instant, f64)>,
    /// The last scrape failed (reported once per failure streak in the values).
    pub failures: u64,
}

impl MetricsSource {
    /// `url` must be http://host:port/path.
    pub fn new(url: &str, names: Vec<String>) -> Result<MetricsSource, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("metrics URL '{url}' must start with http://"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/metrics"),
        };
        let authority = if authority.contains(':') {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Ok(MetricsSource {
            authority,
            path: path.to_string(),
            names,
            counters: HashMap::new(),
            failures: 0,
        })
    }

    /// Scrapes once and adds what it finds to `values`.
    pub fn scrape_into(&mut self, values: &mut BTreeMap<String, f64>, now: Instant) {
        let Some(text) = self.fetch() else {
            self.failures += 1;
            values.insert("metrics.scrape_failures".into(), self.failures as f64);
            return;
        };
        let lines = text.lines().map(|l| Ok(l.to_string()));
        let Ok(scrape) = prometheus_parse::Scrape::parse(lines) else {
            self.failures += 1;
            return;
        };
        let mut kept = 0;
        for sample in scrape.samples {
            if !self.names.is_empty() && !self.names.contains(&sample.metric) {
                continue;
            }
            if self.names.is_empty() && kept >= MAX_SERIES {
                break;
            }
            let key = series_key(&sample.metric, &sample.labels);
            match sample.value {
                prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => {
                    values.insert(format!("metrics.{key}"), v);
                    kept += 1;
                }
                prometheus_parse::Value::Counter(v) => {
                    if let Some((at, before)) = self.counters.insert(key.clone(), (now, v)) {
                        let dt = now.duration_since(at).as_secs_f64();
                        if dt > 0.0 && v >= before {
                            values.insert(format!("metrics.{key}:rate"), (v - before) / dt);
                        }
                    }
                    kept += 1;
                }
                _ => {}
            }
        }
    }

    fn fetch(&self) -> Option<String> {
        // Bounded: an exposition larger than 16 MiB is not one we want.
        super::http::get(
            &self.authority,
            &self.path,
            Some("text/plain"),
            (SCRAPE_TIMEOUT, SCRAPE_TIMEOUT),
            16 << 20,
        )
        .ok()
        .map(|body| String::from_utf8_lossy(&body).into_owned())
    }
}

fn series_key(name: &str, labels: &prometheus_parse::Labels) -> String {
    let mut pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if pairs.is_empty() {
        return name.to_string();
    }
    pairs.sort();
    format!("{name}{{{}}}", pairs.join(","))
}

//! Prometheus scraping: each sample, GET a /metrics endpoint (plain HTTP/1.0, so no chunked
//! bodies) and keep gauges as they are and counters as rates per second, as
//! `metrics.<name>{labels}` and `metrics.<name>{labels}:rate`. Parsing is prometheus-parse's.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// Series kept per endpoint beyond the ones named (`--metric`) and the ones the verdict
/// reads (queue gauges), which are kept whatever their number.
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
    /// Whether the series cut was already reported.
    told_dropped: bool,
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
            told_dropped: false,
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
        let mut others = 0;
        let mut dropped = 0;
        for sample in scrape.samples {
            let named = self.names.contains(&sample.metric);
            let read_by_verdict = names_a_queue(&sample.metric);
            if !named && !read_by_verdict {
                if !self.names.is_empty() {
                    continue;
                }
                if others >= MAX_SERIES {
                    dropped += 1;
                    continue;
                }
                others += 1;
            }
            let key = series_key(&sample.metric, &sample.labels);
            match sample.value {
                prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => {
                    values.insert(format!("metrics.{key}"), v);
                }
                prometheus_parse::Value::Counter(v) => {
                    if let Some((at, before)) = self.counters.insert(key.clone(), (now, v)) {
                        let dt = now.duration_since(at).as_secs_f64();
                        if dt > 0.0 && v >= before {
                            values.insert(format!("metrics.{key}:rate"), (v - before) / dt);
                        }
                    }
                }
                _ => {}
            }
        }
        if dropped > 0 {
            values.insert("metrics.dropped_series".into(), dropped as f64);
            if !self.told_dropped {
                self.told_dropped = true;
                eprintln!(
                    "knee: {}{}: {dropped} series not kept (the first {MAX_SERIES}, and every queue gauge the verdict reads, are); name the ones you want with --metric",
                    self.authority, self.path
                );
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

/// Words that make a scraped gauge's *name* a saturation signal (matched as whole words of
/// the name, never in its labels).
const SATURATION_WORDS: [&str; 9] = [
    "wait", "waiting", "waiters", "queue", "queued", "pending", "backlog", "blocked", "inflight",
];
/// Known false friends: gauges whose names carry a saturation word but count something idle
/// or something else (nginx's waiting connections are idle keep-alives), and exporters whose
/// series describe the machine or a runtime, not the service's own queues.
const FALSE_FRIENDS: [&str; 2] = [
    "nginx_connections_waiting",
    "nginx_http_connections_waiting",
];
const FOREIGN_PREFIXES: [&str; 6] = ["node_", "go_", "process_", "jvm_", "python_", "nodejs_"];

/// Whether a scraped series' name (labels aside) names a queue, and is not a false friend:
/// the series the verdict reads as saturation.
pub fn names_a_queue(key: &str) -> bool {
    let name = key
        .trim_start_matches("metrics.")
        .split('{')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    if FALSE_FRIENDS.contains(&name.as_str())
        || FOREIGN_PREFIXES.iter().any(|p| name.starts_with(p))
    {
        return false;
    }
    name.split(['_', ':', '.'])
        .any(|word| SATURATION_WORDS.contains(&word))
}

fn series_key(name: &str, labels: &prometheus_parse::Labels) -> String {
    let mut pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if pairs.is_empty() {
        return name.to_string();
    }
    pairs.sort();
    format!("{name}{{{}}}", pairs.join(","))
}

//! Prometheus scraping: GET a /metrics endpoint (http or https, through `observe::http`) and
//! keep gauges as they are and counters as rates per second, as `metrics.<name>{labels}` and
//! `metrics.<name>{labels}:rate`. Parsing is prometheus-parse's. Each endpoint is scraped on
//! its own thread (`Scraper`), and the sampler takes the latest scrape at each reading: a
//! saturated service answers its /metrics late (seconds, when its CPU is what ran out), and
//! must not stall the host's readings nor lose its own.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Series kept per endpoint beyond the ones named (`--metric`) and the ones the verdict
/// reads (queue gauges), which are kept whatever their number.
const MAX_SERIES: usize = 100;
/// A scrape may take this long (a saturated service answers late; Prometheus allows 10 s).
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct MetricsSource {
    /// http(s)://host:port/path
    url: String,
    /// Headers sent with each scrape (`--metrics-header`: an Authorization), and whether a
    /// self-signed certificate is accepted (`-k`).
    headers: Vec<(String, String)>,
    insecure: bool,
    /// Metric names to keep; empty keeps everything (up to `MAX_SERIES`).
    names: Vec<String>,
    counters: HashMap<String, (Instant, f64)>,
    /// The last scrape failed (reported once per failure streak in the values).
    pub failures: u64,
    /// Whether the series cut was already reported.
    told_dropped: bool,
    /// The last scrape failed (its streak was reported).
    failing: bool,
    /// node_exporter's and the client libraries' standard series, read as knee's own.
    standard: super::exporters::Rates,
    /// Which of knee's series groups this endpoint supplied at its last scrape.
    pub provided: super::exporters::Provided,
}

impl MetricsSource {
    /// `url` must be http(s)://host[:port][/path] (the path defaults to /metrics).
    pub fn new(url: &str, names: Vec<String>) -> Result<MetricsSource, String> {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .ok_or_else(|| format!("metrics URL '{url}' must start with http:// or https://"))?;
        if rest.is_empty() || rest.starts_with('/') {
            return Err(format!("metrics URL '{url}' has no host"));
        }
        let url = if rest.contains('/') {
            url.to_string()
        } else {
            format!("{url}/metrics")
        };
        Ok(MetricsSource {
            url,
            headers: Vec::new(),
            insecure: false,
            names,
            counters: HashMap::new(),
            failures: 0,
            told_dropped: false,
            failing: false,
            standard: super::exporters::Rates::default(),
            provided: super::exporters::Provided::default(),
        })
    }

    /// Sends `headers` with each scrape, and accepts self-signed certificates if `insecure`.
    pub fn with_access(mut self, headers: Vec<(String, String)>, insecure: bool) -> Self {
        self.headers = headers;
        self.insecure = insecure;
        self
    }

    /// The endpoint, as given (the path completed).
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// What supplied a group of series: node_exporter for the host, process_* for a target.
    pub fn exporter(&self, group: &str) -> &'static str {
        if group == "host" {
            "node_exporter"
        } else {
            "process_* metrics"
        }
    }

    /// Scrapes once and adds what it finds to `values`.
    /// Counters' rates are timed at the middle of each scrape's round trip: an overloaded
    /// service reads its counters somewhere between the request and its answer, and answers
    /// later and later as its queue grows. Timed by the answers' arrival, a Go service
    /// burning 1.76 cores read 0.84-1.57 at the knee (4 runs); timed at the middle,
    /// 1.54-1.80, and 1.66 and 1.81 where /proc read 1.83 and 1.85 at the same time.
    pub fn scrape_into(&mut self, values: &mut BTreeMap<String, f64>) {
        let sent = Instant::now();
        let text = match self.fetch() {
            Ok(text) => {
                self.failing = false;
                text
            }
            Err(why) => {
                self.failures += 1;
                values.insert("metrics.scrape_failures".into(), self.failures as f64);
                if !self.failing {
                    // Once per streak: a metrics endpoint that cannot be read is said, not
                    // silently absent from the verdict.
                    crate::notice::say(format!(
                        "knee: metrics: {why} (failures are counted in metrics.scrape_failures)"
                    ));
                }
                self.failing = true;
                return;
            }
        };
        let arrived = Instant::now();
        let now = sent + arrived.duration_since(sent) / 2;
        let lines = text.lines().map(|l| Ok(l.to_string()));
        let Ok(scrape) = prometheus_parse::Scrape::parse(lines) else {
            self.failures += 1;
            return;
        };
        // Standard series fill only what /proc did not give (a local target wins).
        let (standard, provided) = self.standard.read(&scrape.samples, now);
        self.provided = provided;
        for (key, value) in standard {
            let target = provided.target || provided.gc.is_some() || provided.cadvisor;
            if provided.host && key.starts_with("host.") || target && key.starts_with("target.") {
                values.entry(key).or_insert(value);
            }
        }
        let mut others = 0;
        let mut dropped = 0;
        for sample in scrape.samples {
            let named = self.names.contains(&sample.metric);
            let read_by_verdict = crate::model::series::names_a_queue(&sample.metric);
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
                crate::notice::say(format!(
                    "knee: {}: {dropped} series not kept (the first {MAX_SERIES}, and every queue gauge the verdict reads, are); name the ones you want with --metric",
                    crate::redact::redact_url(&self.url)
                ));
            }
        }
    }

    fn fetch(&self) -> Result<String, String> {
        // Bounded: an exposition larger than 16 MiB is not one we want.
        let mut headers = vec![("Accept".to_string(), "text/plain".to_string())];
        headers.extend(self.headers.iter().cloned());
        super::http::Get {
            headers: &headers,
            insecure: self.insecure,
            ..super::http::Get::new(&self.url, SCRAPE_TIMEOUT, 16 << 20)
        }
        .send()
        .map(|body| String::from_utf8_lossy(&body).into_owned())
    }
}

/// One scrape's result, as the sampler takes it.
#[derive(Clone, Default)]
pub struct Scraped {
    /// Counts the scrapes, so that each is taken once.
    pub number: u64,
    pub values: BTreeMap<String, f64>,
    pub provided: super::exporters::Provided,
}

/// An endpoint scraped every `interval` on its own thread; the latest scrape is kept.
pub struct Scraper {
    latest: Arc<Mutex<Scraped>>,
    running: Arc<AtomicBool>,
    pub url: String,
    exporter: [&'static str; 2],
}

impl Scraper {
    pub fn start(mut source: MetricsSource, interval: Duration) -> Scraper {
        let latest = Arc::new(Mutex::new(Scraped::default()));
        let running = Arc::new(AtomicBool::new(true));
        let url = source.url();
        let exporter = [source.exporter("host"), source.exporter("target")];
        let (latest_t, running_t) = (latest.clone(), running.clone());
        let spawned = std::thread::Builder::new()
            .name("knee-scraper".into())
            .spawn(move || {
                let mut next = Instant::now();
                while running_t.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    if now < next {
                        std::thread::sleep((next - now).min(Duration::from_millis(50)));
                        continue;
                    }
                    next = now + interval;
                    let mut values = BTreeMap::new();
                    source.scrape_into(&mut values);
                    let mut latest = latest_t.lock().unwrap_or_else(|e| e.into_inner());
                    *latest = Scraped {
                        number: latest.number + 1,
                        values,
                        provided: source.provided,
                    };
                }
            });
        if spawned.is_err() {
            running.store(false, Ordering::Relaxed);
        }
        Scraper {
            latest,
            running,
            url,
            exporter,
        }
    }

    /// The latest scrape if it is newer than scrape number `after`: each scrape lands in
    /// one sample only (a late answer repeated in every sample until the next would weigh a
    /// stale reading as many times as the endpoint was slow).
    pub fn take_after(&self, after: u64) -> Option<Scraped> {
        let latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        (latest.number > after).then(|| latest.clone())
    }

    /// What supplied a group of series ("host" → node_exporter, "target" → process_*).
    pub fn exporter(&self, group: &str) -> &'static str {
        self.exporter[usize::from(group != "host")]
    }
}

impl Drop for Scraper {
    /// The thread ends after its current scrape (at most `SCRAPE_TIMEOUT`); not waited for.
    fn drop(&mut self) {
        self.running.store(false, Ordering::Relaxed);
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

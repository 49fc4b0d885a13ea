//! What the plan says about observing: the samplers and profilers of a run (`ObservePlan`),
//! the `knee observe` servers it reads a remote target's host through (`ObserverSpec`), and
//! what `knee observe` itself serves (`ServePlan`).

use std::time::Duration;

/// A shared secret between `knee observe` and the driver; never printed (Debug hides it).
#[derive(Clone, PartialEq, Eq)]
pub struct Token(pub String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
}

/// What `knee observe` serves, and to whom.
#[derive(Debug, Clone)]
pub struct ServePlan {
    pub listen: std::net::SocketAddr,
    pub target: ServeTarget,
    /// Required of every request when set; required to listen beyond loopback.
    pub token: Option<Token>,
    /// Sampling interval (at least 200 ms).
    pub interval: Duration,
    /// The target's own pprof endpoint, which CPU profiles are proxied to (else perf).
    pub pprof: Option<String>,
    /// Serve over TLS with this certificate chain and private key (PEM files).
    pub tls: Option<TlsFiles>,
}

/// A certificate chain and its private key, PEM.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// Which process on the observer's host is the target.
#[derive(Debug, Clone, PartialEq)]
pub enum ServeTarget {
    /// These processes (several: replicas of one service, sampled and profiled each).
    Pids(Vec<u32>),
    /// Every process of this name (the workers of a pre-fork master, not the master).
    ProcessName(String),
    /// The owner of this listening port.
    Port(u16),
    /// Started with `sh -c`, ready once this port answers HTTP; stopped at the end.
    Spawn { command: String, port: u16 },
}

/// A `knee observe` the driver reads the target's host from (`--observer [NAME=]URL`).
#[derive(Debug, Clone, PartialEq)]
pub struct ObserverSpec {
    /// How figures read through it are labelled ("staging", or the URL's host:port).
    pub name: String,
    /// host:port of its endpoint.
    pub authority: String,
    pub token: Option<Token>,
    /// Spoken over TLS (`https://`: the observer was given --tls-cert).
    pub tls: bool,
    /// Accept a certificate nobody vouches for (`-k`: a self-signed one on a staging box).
    pub insecure: bool,
    /// One of the observer's target's replicas, when it watches several (its Nth, from 1):
    /// every request for the target's threads and profiles names it. Set by the driver from
    /// what the observer describes, never given.
    pub replica: Option<usize>,
}

impl ObserverSpec {
    /// `[NAME=]http://host:port[/]` or `https://…`.
    pub fn parse(text: &str, token: Option<Token>) -> Result<ObserverSpec, String> {
        let (name, url) = match text.split_once('=') {
            Some((name, url)) if !name.contains('/') && !name.is_empty() => {
                (Some(name.to_string()), url)
            }
            _ => (None, text),
        };
        let wrong = || format!("observer '{url}' must be http://host:port or https://host:port");
        let (tls, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
            (Some(rest), _) => (true, rest),
            (None, Some(rest)) => (false, rest),
            (None, None) => return Err(wrong()),
        };
        let authority = rest.trim_end_matches('/');
        if authority.contains('/')
            || authority
                .rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
        {
            return Err(wrong());
        }
        Ok(ObserverSpec {
            name: name.unwrap_or_else(|| authority.to_string()),
            authority: authority.to_string(),
            token,
            tls,
            insecure: false,
            replica: None,
        })
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.authority)
    }

    /// The same observer, asked about its target's `index`th replica.
    pub fn for_replica(&self, index: usize) -> ObserverSpec {
        ObserverSpec {
            replica: Some(index),
            ..self.clone()
        }
    }
}

#[derive(Debug, Clone)]
pub struct ObservePlan {
    /// Sampling interval (at least 200 ms).
    pub interval: Duration,
    /// The target's pids, given (more than one: replicas of one service).
    pub pids: Vec<u32>,
    /// Every process of this name is a replica of the target (`--process-name`).
    pub process_name: Option<String>,
    /// A command that starts the target (`sh -c`), stopped at the end.
    pub spawn: Option<String>,
    /// Prometheus endpoints to scrape each sample.
    pub metrics: Vec<String>,
    /// Metric names to keep (all when empty).
    pub metric_names: Vec<String>,
    /// Headers sent with every scrape (an Authorization), `${ENV}` already expanded; the
    /// values are secrets (never printed, never written).
    pub metrics_headers: Vec<(String, Token)>,
    /// Accept certificates nobody vouches for (self-signed, on a staging box) from the control
    /// plane's https endpoints: metrics, pprof (`-k`; observers carry their own flag).
    pub insecure: bool,
    /// Sample at all (`--no-sample` turns the samplers off, e.g. for benchmarks).
    pub sample: bool,
    /// Flamegraphs of the hold steps: from where.
    pub profiler: ProfilerPlan,
    /// Sampling frequency asked of the profiler (Hz).
    pub profile_frequency: u32,
    /// Off-CPU profiles of the profiled steps (perf sched_switch on a local target; Go's
    /// block and mutex profiles beside a Go --pprof URL).
    pub offcpu: bool,
    /// The target runs on another host even if its URL resolves here (a proxy, a tunnel):
    /// nothing is discovered locally, and this host's readings are the generator's only.
    pub remote_target: bool,
    /// `knee observe` servers on the target's host (and its database's): the host and target
    /// series come from them.
    pub observers: Vec<ObserverSpec>,
}

impl Default for ObservePlan {
    fn default() -> Self {
        ObservePlan {
            interval: Duration::from_millis(500),
            pids: Vec::new(),
            process_name: None,
            spawn: None,
            metrics: Vec::new(),
            metric_names: Vec::new(),
            metrics_headers: Vec::new(),
            insecure: false,
            sample: true,
            profiler: ProfilerPlan::Auto,
            profile_frequency: 100,
            offcpu: true,
            remote_target: false,
            observers: Vec::new(),
        }
    }
}

/// Where the flamegraphs of the profiled steps come from.
#[derive(Clone, Debug, PartialEq)]
pub enum ProfilerPlan {
    Off,
    /// The target's runtime decides (py-spy, JFR, the Node inspector, perf), once its process
    /// is known; nothing when it is not.
    Auto,
    /// A pprof endpoint: http://host:port/debug/pprof/profile.
    Pprof(String),
    /// The agent the demo target embeds (its URL is known once it runs).
    DemoAgent,
    /// `perf record` on the target's pid.
    Perf,
    /// py-spy on a Python process.
    PySpy,
    /// Java Flight Recorder (jcmd, jfr) on a JVM.
    Jfr,
    /// The V8 CPU profiler through Node's inspector.
    Node,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observer_spec_takes_an_optional_name_and_an_http_or_https_authority() {
        let named = ObserverSpec::parse("staging=http://10.0.0.5:9477/", None).unwrap();
        assert_eq!(named.name, "staging");
        assert_eq!(named.authority, "10.0.0.5:9477");
        assert_eq!(named.url(), "http://10.0.0.5:9477");
        let unnamed = ObserverSpec::parse("http://db:9477", None).unwrap();
        assert_eq!(unnamed.name, "db:9477");
        for bad in [
            "staging=db:9477",
            "http://db",
            "http://db:x",
            "http://db:1/x",
            "http://:1",
        ] {
            let error = ObserverSpec::parse(bad, None).unwrap_err();
            assert!(error.contains("must be http://host:port"), "{bad}: {error}");
        }
        let https = ObserverSpec::parse("db=https://db:9477", None).unwrap();
        assert!(https.tls && !https.insecure);
        assert_eq!(
            (https.name.as_str(), https.url().as_str()),
            ("db", "https://db:9477")
        );
        assert!(ObserverSpec::parse("ftp://db:9477", None).is_err());
    }

    #[test]
    fn a_token_never_shows_in_debug_output() {
        let token = Token("s3cret-value".into());
        assert!(!format!("{token:?}").contains("s3cret"));
    }
}

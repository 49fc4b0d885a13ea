//! The driver's side of `knee observe`: a `Feed` per observer (`--observer [NAME=]URL`)
//! estimates the observer's clock offset (Cristian's method: the round trip with the least
//! delay bounds the error by half of it), then fetches its samples incrementally on a thread
//! of its own, each numbered so none is lost or taken twice, and places them on the run's
//! time line. The sampler files them with this machine's readings. An observer that stops
//! answering leaves a gap, said once, and the run goes on.

pub use crate::model::ObserverRecord;

use super::target::TargetProcess;
use crate::model::observed::Sample;
use crate::plan::ObserverSpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Round trips tried for the clock offset.
const CLOCK_TRIES: usize = 7;
const TIMEOUT: Duration = Duration::from_secs(3);
/// The most bytes one answer may have (a batch of a few hundred samples is ~1 MB at most).
const MAX_ANSWER: u64 = 16 << 20;

/// What an observer says about its host and target (`GET /describe`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Description {
    pub host: String,
    pub cores: usize,
    pub memory_mb: f64,
    pub kernel: String,
    pub target: Option<DescribedTarget>,
    /// The observer's wall clock when it answered, in seconds since the Unix epoch.
    pub now_unix_s: f64,
    /// The number of its last sample.
    pub last: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct DescribedTarget {
    pub pid: u32,
    pub command: String,
    pub found_by: String,
    /// Its runtime (which profilers the observer reads it with); older observers omit it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<crate::model::run::Runtime>,
    /// A target of several processes: each one (`replica=N` asks for the Nth, from 1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<crate::model::run::Replica>,
}

/// The number a begun window is ended with (`GET /KIND/begin`).
#[derive(Debug, Serialize, Deserialize)]
pub struct Ticket {
    pub id: u64,
}

/// One answer of `GET /samples?after=N`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Batch {
    /// The observer's wall clock at its samples' `t_s` = 0.
    pub origin_unix_s: f64,
    /// The number of the oldest sample it still holds.
    pub first: u64,
    /// Samples numbered after N, oldest first: `seq`, `t_s` and the series.
    pub samples: Vec<BTreeMap<String, f64>>,
}

#[derive(Default)]
struct Progress {
    /// Arrived, not yet taken by the sampler.
    pending: Vec<(Instant, Sample)>,
    /// When the newest sample received was read (this machine's clock).
    newest: Option<Instant>,
    answering: bool,
    samples: u64,
    gaps: u64,
}

pub struct Feed {
    pub spec: ObserverSpec,
    pub description: Description,
    offset_s: f64,
    rtt_s: f64,
    progress: Mutex<Progress>,
    running: AtomicBool,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// How its samples are renamed when the service spans several observers' hosts.
    relabel: Mutex<Option<super::relabel::Relabel>>,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// GETs `path` from the observer, with its token.
fn get(spec: &ObserverSpec, path: &str) -> Result<Vec<u8>, String> {
    request(spec, path, TIMEOUT, |get| get.send())
}

fn request<T>(
    spec: &ObserverSpec,
    path: &str,
    timeout: Duration,
    send: impl Fn(&super::http::Get) -> Result<T, String>,
) -> Result<T, String> {
    let headers: Vec<(String, String)> = spec
        .token
        .iter()
        .map(|t| ("Authorization".to_string(), format!("Bearer {}", t.0)))
        .collect();
    let url = match spec.replica {
        Some(n) if path.contains('?') => format!("{}{path}&replica={n}", spec.url()),
        Some(n) => format!("{}{path}?replica={n}", spec.url()),
        None => format!("{}{path}", spec.url()),
    };
    send(&super::http::Get {
        headers: &headers,
        insecure: spec.insecure,
        ..super::http::Get::new(&url, timeout, MAX_ANSWER)
    })
}

fn describe(spec: &ObserverSpec) -> Result<Description, String> {
    let body = get(spec, "/describe")?;
    serde_json::from_slice(&body).map_err(|e| {
        format!(
            "{} did not answer as knee observe does: {e}",
            spec.authority
        )
    })
}

#[derive(Deserialize)]
struct Time {
    now_unix_s: f64,
}

/// The observer's clock offset and the round trip it was read with: of several round trips
/// to `/time` (answered at once), the shortest, taking the observer's clock as read halfway
/// through it; the error is at most half that round trip.
pub fn clock_offset(spec: &ObserverSpec) -> Result<(f64, f64), String> {
    let mut best: Option<(f64, f64)> = None;
    for _ in 0..CLOCK_TRIES {
        let sent = unix_now();
        let body = get(spec, "/time")?;
        let received = unix_now();
        let time: Time = serde_json::from_slice(&body).map_err(|e| {
            format!(
                "{} did not answer as knee observe does: {e}",
                spec.authority
            )
        })?;
        let rtt = (received - sent).max(0.0);
        let offset = time.now_unix_s - (sent + rtt / 2.0);
        if best.is_none_or(|(_, r)| rtt < r) {
            best = Some((offset, rtt));
        }
    }
    best.ok_or_else(|| "no round trip".to_string())
}

/// Has the observer begin a window of `kind` ("processes", "threads") now: its number.
pub fn begin_window(spec: &ObserverSpec, kind: &str) -> Result<u64, String> {
    read_json::<Ticket>(spec, &format!("/{kind}/begin"), TIMEOUT).map(|ticket| ticket.id)
}

/// Has the observer end window `id` of `kind`: what it read over it.
pub fn end_window<T: serde::de::DeserializeOwned>(
    spec: &ObserverSpec,
    kind: &str,
    id: u64,
) -> Result<T, String> {
    read_json(spec, &format!("/{kind}/end?id={id}"), TIMEOUT)
}

/// GETs `path` from the observer (waiting up to `timeout`: a profile takes its seconds) and
/// reads its JSON; a refusal is said as the observer said it; every error names the observer.
pub fn read_json<T: serde::de::DeserializeOwned>(
    spec: &ObserverSpec,
    path: &str,
    timeout: Duration,
) -> Result<T, String> {
    let named = |why: String| format!("observer {}: {why}", spec.name);
    let (status, body) = request(spec, path, timeout, |get| get.send_any()).map_err(named)?;
    if status != 200 {
        #[derive(Deserialize)]
        struct Said {
            error: String,
        }
        let why = serde_json::from_slice::<Said>(&body)
            .map(|said| said.error)
            .unwrap_or_else(|_| format!("answered {status}"));
        return Err(named(why));
    }
    serde_json::from_slice(&body).map_err(|e| named(format!("an unreadable answer: {e}")))
}

impl Feed {
    /// Connects (the clock estimate; an observer that cannot be read is an error before any
    /// load), then fetches its samples every `interval` until stopped. `origin` is the run's
    /// start, on this machine's clocks.
    pub fn connect(
        spec: ObserverSpec,
        interval: Duration,
        origin: Instant,
    ) -> Result<Arc<Feed>, String> {
        let named = |e: String| format!("observer {} ({}): {e}", spec.name, spec.url());
        let (offset_s, rtt_s) = clock_offset(&spec).map_err(named)?;
        let description = describe(&spec).map_err(named)?;
        let origin_unix = unix_now() - origin.elapsed().as_secs_f64();
        let feed = Arc::new(Feed {
            spec,
            offset_s,
            rtt_s,
            progress: Mutex::new(Progress {
                answering: true,
                ..Progress::default()
            }),
            running: AtomicBool::new(true),
            thread: Mutex::new(None),
            description,
            relabel: Mutex::new(None),
        });
        let polling = feed.clone();
        let thread = std::thread::Builder::new()
            .name("knee-observer".into())
            .spawn(move || polling.poll(interval, origin, origin_unix))
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        *feed.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(thread);
        Ok(feed)
    }

    /// Renames its samples from now on (before any load: `remote_replicas`).
    pub fn relabel(&self, relabel: super::relabel::Relabel) {
        let mut set = self.relabel.lock().unwrap_or_else(|e| e.into_inner());
        for (_, sample) in &mut self.progress().pending {
            sample.values = relabel.apply(std::mem::take(&mut sample.values));
        }
        *set = Some(relabel);
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn poll(&self, interval: Duration, origin: Instant, origin_unix: f64) {
        let mut after = self.description.last;
        while self.running.load(Ordering::Relaxed) {
            let asked = Instant::now();
            match self.fetch(after) {
                Ok(batch) => after = self.accept(batch, after, origin, origin_unix),
                Err(why) => self.failed(&why),
            }
            // Bounded: each wait is one interval at most, checked against `running`.
            let next = asked + interval;
            while self.running.load(Ordering::Relaxed) && Instant::now() < next {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    fn fetch(&self, after: u64) -> Result<Batch, String> {
        let body = get(&self.spec, &format!("/samples?after={after}"))?;
        serde_json::from_slice(&body).map_err(|e| format!("an unreadable answer: {e}"))
    }

    /// Files a batch on this machine's time line; the number of its last sample.
    fn accept(&self, batch: Batch, after: u64, origin: Instant, origin_unix: f64) -> u64 {
        let relabel = self
            .relabel
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut progress = self.progress();
        if !progress.answering {
            progress.answering = true;
            crate::notice::say(format!("knee: observer {} answers again", self.spec.name));
        }
        if batch.first > after + 1 {
            progress.gaps += 1;
            crate::notice::say(format!(
                "knee: observer {} dropped {} samples before they were fetched: a gap",
                self.spec.name,
                batch.first - after - 1
            ));
        }
        let mut last = after;
        for mut values in batch.samples {
            let (Some(seq), Some(t_s)) = (values.remove("seq"), values.remove("t_s")) else {
                continue;
            };
            last = last.max(seq as u64);
            // Its clock → this machine's → seconds since the run's start.
            let t = batch.origin_unix_s + t_s - self.offset_s - origin_unix;
            // Before the run, or not a time at all (an observer may send anything).
            let Ok(since) = Duration::try_from_secs_f64(t) else {
                continue;
            };
            let at = origin + since;
            let values = match &relabel {
                Some(relabel) => relabel.apply(values),
                None => values,
            };
            progress.pending.push((at, Sample { t_s: t, values }));
            progress.samples += 1;
            progress.newest = progress.newest.max(Some(at));
        }
        last
    }

    fn failed(&self, why: &str) {
        let mut progress = self.progress();
        if progress.answering {
            progress.answering = false;
            progress.gaps += 1;
            crate::notice::say(format!(
                "knee: observer {} stopped answering ({why}): its series have a gap; the run goes on",
                self.spec.name
            ));
        }
    }

    /// The samples arrived since the last call.
    pub fn drain(&self) -> Vec<(Instant, Sample)> {
        std::mem::take(&mut self.progress().pending)
    }

    /// Whether every sample read before `at` has arrived (or the observer is not answering,
    /// and nothing more will come).
    pub fn caught_up(&self, at: Instant) -> bool {
        let progress = self.progress();
        !progress.answering || progress.newest.is_some_and(|n| n >= at)
    }

    /// "host" and "target" are read through this observer, unless something else gave them;
    /// the target's replicas on several observers' hosts are named by each of them.
    pub fn add_sources(&self, sources: &mut BTreeMap<String, String>) {
        let apart = self
            .relabel
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|r| r.apart);
        if apart {
            return;
        }
        let name = &self.spec.name;
        sources
            .entry("host".into())
            .or_insert_with(|| format!("observer {name} ({})", self.spec.url()));
        let Some(target) = self.description.target.as_ref() else {
            return;
        };
        let pids = match target.replicas.len() {
            0 => format!("pid {}", target.pid),
            _ => {
                let pids: Vec<String> = target.replicas.iter().map(|r| r.pid.to_string()).collect();
                format!("pids {}", pids.join(", "))
            }
        };
        let this = format!("observer {name}: {pids}");
        sources
            .entry("target".into())
            .and_modify(|said| {
                if said.starts_with("observer ") {
                    said.push_str(&format!("; {this}"));
                }
            })
            .or_insert(this);
    }

    /// The target process the observer samples, as run.json names it.
    pub fn target(&self) -> Option<TargetProcess> {
        let target = self.description.target.as_ref()?;
        Some(TargetProcess {
            pid: target.pid,
            found_by: format!("observer:{}", self.spec.name),
            exited_at_s: None,
            exit_status: None,
            replicas: Vec::new(),
            balancer: None,
        })
    }

    pub fn record(&self) -> ObserverRecord {
        let progress = self.progress();
        ObserverRecord {
            name: self.spec.name.clone(),
            url: self.spec.url(),
            clock_offset_ms: self.offset_s * 1e3,
            rtt_ms: self.rtt_s * 1e3,
            samples: progress.samples,
            gaps: progress.gaps,
            host: self.description.host.clone(),
            target_pid: self.description.target.as_ref().map(|t| t.pid),
        }
    }

    pub fn stop(&self) {
        self.running.store(false, Ordering::Relaxed);
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

//! Taking one profile of the target: from a pprof endpoint (knee's agent, Go's net/http/pprof,
//! anything that speaks that protocol) or from `perf record` on a local pid. Both end as
//! folded stacks; the pprof bytes are kept as they came.

use crate::pprof_proto::Profile;
use crate::stacks::folded::Folded;
use prost::Message;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// What a capture produced.
pub struct Captured {
    pub folded: Folded,
    /// The gzipped pprof profile, when the source gave one.
    pub pprof: Option<Vec<u8>>,
    /// The rate the samples were taken at, as the profile itself says (its `period`): Go's
    /// endpoint ignores the frequency asked and samples at 100 Hz.
    pub sampled_hz: Option<f64>,
    /// Samples per function of the service's own code (the first own frame from each
    /// stack's leaf), when the profiler can tell the service's code from its runtime's
    /// (py-spy, JFR, Node's inspector): where a site is named from.
    pub own: BTreeMap<String, u64>,
}

impl Captured {
    /// Folded stacks with nothing known of whose code is whose.
    pub fn stacks(folded: Folded, pprof: Option<Vec<u8>>, sampled_hz: Option<f64>) -> Captured {
        Captured {
            folded,
            pprof,
            sampled_hz,
            own: BTreeMap::new(),
        }
    }
}

/// What serves a pprof URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// knee's own agent: fractions of a second, the frequency asked.
    KneeAgent,
    /// Anything else (Go's net/http/pprof, ...): whole seconds only (Go reads anything else
    /// as its 30 s default), and a frequency it may ignore.
    Other,
}

/// Asks the endpoint what it is, at its sibling path `knee` (knee's agent answers there;
/// Go's pprof answers 404 "Unknown profile" at once). Never asks for a profile.
pub fn identify(url: &str, insecure: bool) -> Endpoint {
    let Some(base) = url.split('?').next().and_then(|u| u.rsplit_once('/')) else {
        return Endpoint::Other;
    };
    let probe = format!("{}/knee", base.0);
    match http_get(&probe, Duration::from_secs(2), insecure) {
        Ok(body) if body.starts_with(crate::agent::IDENTITY.as_bytes()) => Endpoint::KneeAgent,
        _ => Endpoint::Other,
    }
}

/// The seconds to ask `endpoint` for, to cover a counted window of `window` seconds:
/// as is for knee's agent, rounded down to whole seconds for the others (asking a
/// fraction of Go's endpoint gets a 30 s profile that runs into the next steps).
pub fn seconds_for(endpoint: Endpoint, window: f64) -> Result<f64, String> {
    match endpoint {
        Endpoint::KneeAgent => Ok(window),
        Endpoint::Other if window >= 1.0 => Ok(window.floor()),
        Endpoint::Other => Err(format!(
            "the counted part of the step is {window:.2} s and this pprof endpoint profiles whole \
             seconds only (as Go's net/http/pprof does): make the steps longer"
        )),
    }
}

/// GETs `url?seconds=…&frequency=…` and decodes the gzipped (or plain) protobuf; `insecure`
/// accepts a self-signed certificate (`-k`).
pub fn pprof(url: &str, seconds: f64, frequency: u32, insecure: bool) -> Result<Captured, String> {
    let separator = if url.contains('?') { '&' } else { '?' };
    let timeout = Duration::from_secs_f64(seconds + 30.0);
    let seconds = if seconds.fract() == 0.0 {
        format!("{seconds:.0}")
    } else {
        format!("{seconds:.3}")
    };
    let full = format!("{url}{separator}seconds={seconds}&frequency={frequency}");
    let body = http_get(&full, timeout, insecure)?;
    let profile = decode(&body)?;
    Ok(Captured::stacks(
        Folded::from_pprof(&profile),
        Some(body),
        sampled_hz(&profile),
    ))
}

/// The sampling rate a CPU profile declares: one sample per `period` nanoseconds.
pub fn sampled_hz(profile: &Profile) -> Option<f64> {
    let unit = profile
        .period_type
        .as_ref()
        .map(|t| profile.string(t.unit))
        .unwrap_or("");
    (profile.period > 0 && unit == "nanoseconds").then(|| 1e9 / profile.period as f64)
}

/// Decodes a pprof profile, gzipped (as served) or not.
pub fn decode(body: &[u8]) -> Result<Profile, String> {
    let raw = if body.starts_with(&[0x1f, 0x8b]) {
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(body)
            .take(256 << 20)
            .read_to_end(&mut raw)
            .map_err(|e| format!("the profile is not valid gzip: {e}"))?;
        raw
    } else {
        body.to_vec()
    };
    Profile::decode(raw.as_slice()).map_err(|e| format!("the profile is not a pprof protobuf: {e}"))
}

/// GETs a profile through the control plane's client (http or https; `insecure`: `-k`).
pub(crate) fn http_get(url: &str, timeout: Duration, insecure: bool) -> Result<Vec<u8>, String> {
    if !url.starts_with("http://") && !url.starts_with("https://") {
        return Err(format!(
            "pprof URL '{url}' must start with http:// or https://"
        ));
    }
    crate::observe::http::Get {
        insecure,
        ..crate::observe::http::Get::new(url, timeout, 256 << 20)
    }
    .send()
    .map_err(|e| format!("pprof endpoint: {e}"))
}

/// The perf binary: `KNEE_PERF`, else `perf` on the PATH.
pub(crate) fn perf_binary() -> String {
    std::env::var("KNEE_PERF").unwrap_or_else(|_| "perf".into())
}

/// Where a recording goes: `scratch` with `extension`, its directory created.
pub(crate) fn perf_data(scratch: &Path, extension: &str) -> Result<std::path::PathBuf, String> {
    // Appended, not `with_extension`: a step name may hold a dot of its own (a replica's
    // `hold-105.r2`), which must not be replaced.
    let name = scratch
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let data = scratch.with_file_name(format!("{name}.{extension}"));
    if let Some(dir) = data.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    Ok(data)
}

/// Why perf could not be started: not installed (then what installing it gives: `purpose`),
/// or another error.
pub(crate) fn perf_spawn_error(perf: &str, e: &std::io::Error, purpose: &str) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => {
            format!("perf not found ('{perf}'): install linux-perf {purpose}")
        }
        _ => format!("cannot run {perf}: {e}"),
    }
}

/// `perf record --call-graph dwarf` on `pid` for `seconds` (cpu-clock, a software event that
/// works where hardware counters do not), folded by inferno's perf collapser. `KNEE_PERF` names the perf
/// binary if it is not `perf` on the PATH.
pub fn perf(pid: u32, seconds: f64, frequency: u32, scratch: &Path) -> Result<Captured, String> {
    let perf = perf_binary();
    let data = perf_data(scratch, "perf.data")?;
    let record = || {
        let recorded = Command::new(&perf)
            // DWARF unwinding: most binaries have no frame pointers, and with `-g` (frame
            // pointers) their stacks stop at the leaf (a sample in `Instant::elapsed` lost the
            // `critical_section` that called it). 8 KiB of stack per sample at 100 Hz is cheap.
            .args(["record", "-e", "cpu-clock", "--call-graph", "dwarf"])
            .args(["-F", &frequency.to_string(), "-p", &pid.to_string(), "-o"])
            .arg(&data)
            .args(["--", "sleep", &format!("{seconds:.3}")])
            .output()
            .map_err(|e| perf_spawn_error(&perf, &e, "to get flamegraphs with --profiler perf"))?;
        match recorded.status.success() {
            true => Ok(()),
            false => Err(format!(
                "perf record failed: {}",
                last_line(&recorded.stderr)
            )),
        }
    };
    if let Err(e) = retried(record) {
        let _ = std::fs::remove_file(&data);
        return Err(e);
    }
    // No `period` field: inferno's collapser would weight each sample by it (nanoseconds of
    // cpu-clock), and a profile's count must be its samples.
    // Reading the recording back takes seconds of CPU: it yields to the load and the target.
    crate::observe::in_background();
    let script = crate::observe::as_background(&mut Command::new(&perf))
        .args(["script", "-F", "comm,pid,tid,time,event,ip,sym,dso", "-i"])
        .arg(&data)
        .output()
        .map_err(|e| format!("cannot run {perf} script: {e}"));
    let _ = std::fs::remove_file(&data);
    let script = script?;
    if !script.status.success() {
        return Err(format!(
            "perf script failed: {}",
            first_line(&script.stderr)
        ));
    }
    let mut folded = Vec::new();
    let mut folder = inferno::collapse::perf::Folder::default();
    inferno::collapse::Collapse::collapse(&mut folder, script.stdout.as_slice(), &mut folded)
        .map_err(|e| format!("cannot fold the perf samples: {e}"))?;
    Ok(Captured::stacks(
        Folded::parse(&String::from_utf8_lossy(&folded)),
        None,
        Some(f64::from(frequency)),
    ))
}

/// Whether a perf failure will repeat at every step (no permission, no tracepoint).
pub fn lasting(error: &str) -> bool {
    [
        "not found",
        "ermission",
        "paranoid",
        "not supported",
        "No such file",
    ]
    .iter()
    .any(|m| error.contains(m))
}

/// Runs a perf recording, and twice more if it failed for a passing reason: threads that
/// exit while perf attaches to them fail it ("Couldn't create thread/CPU maps: No such
/// process", "Ignored open failure for pid"), as a server with a thread per connection does
/// under load. A lasting failure (no permission, no perf) is not retried.
pub(crate) fn retried(mut once: impl FnMut() -> Result<(), String>) -> Result<(), String> {
    let mut attempt = once();
    for _ in 0..2 {
        match &attempt {
            Err(e) if !lasting(e) => attempt = once(),
            _ => break,
        }
    }
    attempt
}

/// perf's last line of complaint (its banners in brackets skipped).
pub(crate) fn last_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with('['))
        .unwrap_or("no message")
        .to_string()
}

pub(crate) fn first_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no message")
        .to_string()
}

/// Whether `perf` runs here.
pub fn perf_available() -> Result<(), String> {
    let perf = perf_binary();
    match std::process::Command::new(&perf)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
    {
        Ok(status) if status.success() => Ok(()),
        _ => Err(format!(
            "perf not found ('{perf}'): install linux-perf (profiles need perf, and root or perf_event_paranoid <= -1)"
        )),
    }
}

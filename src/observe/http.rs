//! The control plane's one HTTP client: Prometheus scrapes, `knee observe` calls and pprof
//! fetches go through it (reqwest, blocking, rustls), so https endpoints, chunked bodies,
//! redirects, headers and timeouts work the way people's endpoints expect. Not the engine's
//! client: observing must not share the load's connections, and the load path keeps its own
//! hand-written HTTP/1.1 for speed.

use std::io::Read;
use std::sync::OnceLock;
use std::time::Duration;

/// How long a connection may take to open, for every control-plane call.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One GET: where, with which headers, how long it may take, how much of it to read, and
/// whether a certificate nobody vouches for (self-signed, on a staging box) is accepted.
pub struct Get<'a> {
    pub url: &'a str,
    pub headers: &'a [(String, String)],
    pub timeout: Duration,
    pub limit: u64,
    pub insecure: bool,
}

impl<'a> Get<'a> {
    pub fn new(url: &'a str, timeout: Duration, limit: u64) -> Get<'a> {
        Get {
            url,
            headers: &[],
            timeout,
            limit,
            insecure: false,
        }
    }

    /// The body of a 2xx answer (redirects followed), else an error naming the endpoint, the
    /// status and the first line it said. At most `limit` bytes are read.
    pub fn send(&self) -> Result<Vec<u8>, String> {
        let (status, body) = self.send_any()?;
        if !(200..300).contains(&status) {
            let said = String::from_utf8_lossy(&body);
            let said = said.lines().next().unwrap_or("").trim();
            let said = if said.is_empty() {
                String::new()
            } else {
                format!(": {said}")
            };
            let shown = crate::redact::redact_url(self.url);
            return Err(format!("{shown} answered {status}{said}"));
        }
        Ok(body)
    }

    /// The status and body of whatever answered (redirects followed); an error only when no
    /// answer came. At most `limit` bytes are read.
    pub fn send_any(&self) -> Result<(u16, Vec<u8>), String> {
        // reqwest's blocking client runs its own runtime and may not be built or waited on
        // from a runtime's thread (the run's setup is async): such a call is made on a
        // short-lived thread of its own.
        if tokio::runtime::Handle::try_current().is_ok() {
            return std::thread::scope(|scope| {
                scope
                    .spawn(|| self.send_here())
                    .join()
                    .unwrap_or_else(|_| Err("the HTTP call panicked".into()))
            });
        }
        self.send_here()
    }

    fn send_here(&self) -> Result<(u16, Vec<u8>), String> {
        let shown = crate::redact::redact_url(self.url);
        let mut request = client(self.insecure)?.get(self.url).timeout(self.timeout);
        for (name, value) in self.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = request.send().map_err(|e| describe(&shown, &e))?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        response
            .take(self.limit)
            .read_to_end(&mut body)
            .map_err(|e| format!("the answer from {shown} did not arrive: {e}"))?;
        Ok((status, body))
    }
}

/// The shared clients: one that verifies certificates, one that does not (`-k`). Built on
/// first use; each keeps its connections alive between calls.
fn client(insecure: bool) -> Result<&'static reqwest::blocking::Client, String> {
    static VERIFYING: OnceLock<Result<reqwest::blocking::Client, String>> = OnceLock::new();
    static INSECURE: OnceLock<Result<reqwest::blocking::Client, String>> = OnceLock::new();
    let cell = if insecure { &INSECURE } else { &VERIFYING };
    cell.get_or_init(|| {
        reqwest::blocking::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .danger_accept_invalid_certs(insecure)
            .user_agent(concat!("knee/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// One line for a failed call: what went wrong, with its innermost cause (reqwest's own
/// message is "error sending request for url (…)", which says nothing).
fn describe(shown: &str, error: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = error;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    let what = if error.is_timeout() {
        "did not answer in time"
    } else if error.is_connect() {
        "cannot be reached"
    } else if error.is_redirect() {
        "redirects too often"
    } else {
        "failed"
    };
    let hint = if cause.to_string().contains("certificate") {
        " (-k accepts a self-signed certificate)"
    } else {
        ""
    };
    format!("{shown} {what}: {cause}{hint}")
}

//! The one plain HTTP/1.0 GET the observers need (Prometheus scrapes, pprof profiles,
//! `knee observe`):
//! HTTP/1.0 so no chunked body has to be undone, a bounded read, and errors that name the
//! endpoint. Not the engine's client: observing must not share the load's connections.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// GETs `path` from `authority` (host:port): the body of a 200, else an error naming the
/// status and the first line the server said. At most `limit` bytes are read. `headers` are
/// sent as given (an Accept, an Authorization).
pub fn get(
    authority: &str,
    path: &str,
    headers: &[(&str, &str)],
    (connect_timeout, io_timeout): (Duration, Duration),
    limit: u64,
) -> Result<Vec<u8>, String> {
    let addr = authority
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| format!("cannot resolve '{authority}'"))?;
    let mut stream = TcpStream::connect_timeout(&addr, connect_timeout)
        .map_err(|e| format!("cannot connect to {authority}: {e}"))?;
    let _ = stream.set_read_timeout(Some(io_timeout));
    let _ = stream.set_write_timeout(Some(io_timeout));
    let headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let request = format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\n{headers}\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("cannot send the request to {authority}: {e}"))?;
    let mut response = Vec::new();
    stream
        .take(limit)
        .read_to_end(&mut response)
        .map_err(|e| format!("the answer from {authority} did not arrive: {e}"))?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("{authority} did not answer HTTP"))?;
    let head = String::from_utf8_lossy(&response[..split]);
    let body = response[split + 4..].to_vec();
    if !head.starts_with("HTTP/1.") {
        return Err(format!("{authority} did not answer HTTP"));
    }
    let status = head.split_whitespace().nth(1).unwrap_or("?");
    if status != "200" {
        let said = String::from_utf8_lossy(&body);
        let said = said.lines().next().unwrap_or("").trim();
        return Err(format!("{authority} answered {status}: {said}"));
    }
    Ok(body)
}

//! Which process is the target: `--pid N`, `--spawn "CMD"` (knee starts it, waits until the
//! URL answers, stops it at the end and notes if it died), the demo child, or the owner of the
//! URL's listening port when the URL is local. Child processes count with it (sampler).

pub use crate::model::TargetProcess;

use super::procfs;
use crate::error::Error;
use anyhow::{anyhow, Context};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A target knee started; stopped (its whole process group) when dropped.
pub struct Spawned {
    child: Child,
}

impl Spawned {
    /// Runs `command` with `sh -c` in its own process group and waits until `authority`
    /// (host:port) answers HTTP, at most `within`.
    pub fn start(command: &str, authority: &str, within: Duration) -> Result<Spawned, Error> {
        let child = Command::new("sh")
            .args(["-c", command])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start --spawn command '{command}'"))?;
        let mut spawned = Spawned { child };
        let deadline = Instant::now() + within;
        loop {
            if answers_http(authority) {
                return Ok(spawned);
            }
            if let Ok(Some(status)) = spawned.child.try_wait() {
                return Err(Error::input(format!(
                    "--spawn command '{command}' exited ({status}) before {authority} answered"
                )));
            }
            if Instant::now() > deadline {
                return Err(anyhow!(
                    "--spawn command '{command}': {authority} did not answer within {within:?}"
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How it ended, if it already has (a crash during the run).
    pub fn exit_status(&mut self) -> Option<String> {
        self.child.try_wait().ok().flatten().map(|s| s.to_string())
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let group = -(self.child.id() as i32);
        // SAFETY: signalling the process group knee created for the target.
        unsafe { libc::kill(group, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: as above.
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// True when a plain `GET /` to `authority` gets an HTTP status line back.
pub fn answers_http(authority: &str) -> bool {
    use std::io::{Read, Write};
    use std::net::{TcpStream, ToSocketAddrs};
    let Some(addr) = authority.to_socket_addrs().ok().and_then(|mut a| a.next()) else {
        return false;
    };
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET / HTTP/1.0\r\nHost: {authority}\r\n\r\n");
    let mut head = [0u8; 8];
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_exact(&mut head).is_ok()
        && head.starts_with(b"HTTP/1.")
}

/// Whether the URL's host is this machine (loopback).
pub fn is_local(host: &str) -> bool {
    matches!(host, "localhost" | "[::1]" | "::1") || host.starts_with("127.")
}

/// The owner of the URL's port when the host is this machine.
pub fn find_by_port(host: &str, port: u16) -> Option<u32> {
    is_local(host)
        .then(|| procfs::listener_of_port(port))
        .flatten()
}

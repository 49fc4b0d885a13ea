//! HotSpot's attach protocol: what `jcmd PID JFR.start …` does, without starting a JVM for
//! jcmd. jcmd is a Java program; on a target host whose cores are all busy (a CPU-bound JVM
//! at its knee) it took 2.4 s to start a recording and 2.2 s to stop one, so a recording
//! meant for a step's 1–2 s tail started as the tail ended and recorded the pause after it.
//! Spoken directly, a command takes milliseconds.
//!
//! The protocol (Linux, JDK 9+): the JVM listens on the UNIX socket `/tmp/.java_pid<PID>` in
//! its own mount namespace once its attach listener runs; it starts that listener when it
//! gets SIGQUIT while a file `.attach_pid<PID>` exists in its working directory. A request
//! is `1\0jcmd\0<command>\0\0\0`; the answer is a return code line, then the command's
//! output, then EOF. The JVM accepts a client of its own user or root. `<PID>` is the
//! process's pid in its own pid namespace (a container's JVM is usually pid 1 there).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long the JVM may take to open its attach socket after SIGQUIT.
const LISTENER_WITHIN: Duration = Duration::from_secs(5);
/// How long one command may take to answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

/// A path inside the target's mount namespace (its /tmp may be a container's).
pub fn in_target(pid: u32, path: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/root{path}"))
}

/// `pid`'s pid inside its own pid namespace (the last NSpid field), else `pid`.
fn namespace_pid(pid: u32) -> u32 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .and_then(|ids| ids.split_whitespace().last()?.parse().ok())
        })
        .unwrap_or(pid)
}

/// Runs the diagnostic command `command` (as jcmd would: "JFR.start name=… settings=…") in
/// JVM `pid`; its output.
pub fn jcmd(pid: u32, command: &str) -> Result<String, String> {
    let socket = connect(pid)?;
    ask(socket, command).map_err(|e| format!("JVM {pid}: {command}: {e}"))
}

fn connect(pid: u32) -> Result<UnixStream, String> {
    let inner = namespace_pid(pid);
    let socket = in_target(pid, &format!("/tmp/.java_pid{inner}"));
    if let Ok(stream) = UnixStream::connect(&socket) {
        return Ok(stream);
    }
    // Ask the JVM to start its attach listener: the trigger file, then SIGQUIT.
    let trigger = PathBuf::from(format!("/proc/{pid}/cwd/.attach_pid{inner}"));
    let trigger = match std::fs::File::create(&trigger) {
        Ok(_) => trigger,
        Err(_) => {
            let in_tmp = in_target(pid, &format!("/tmp/.attach_pid{inner}"));
            std::fs::File::create(&in_tmp).map_err(|e| {
                format!("cannot ask JVM {pid} to attach ({}): {e}", in_tmp.display())
            })?;
            in_tmp
        }
    };
    // SAFETY: kill(2) on the target's pid; a JVM with the trigger file present answers
    // SIGQUIT by starting its attach listener (not by printing a thread dump).
    let signalled = unsafe { libc::kill(pid as libc::pid_t, libc::SIGQUIT) } == 0;
    let deadline = Instant::now() + LISTENER_WITHIN;
    let connected = loop {
        if !signalled {
            break Err(format!(
                "cannot signal JVM {pid}: {}",
                std::io::Error::last_os_error()
            ));
        }
        if let Ok(stream) = UnixStream::connect(&socket) {
            break Ok(stream);
        }
        if Instant::now() >= deadline {
            break Err(format!(
                "JVM {pid} opened no attach socket ({}) within {}s: started with -XX:+DisableAttachMechanism, or not a HotSpot JVM?",
                socket.display(),
                LISTENER_WITHIN.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = std::fs::remove_file(&trigger);
    connected
}

fn ask(mut stream: UnixStream, command: &str) -> Result<String, String> {
    stream
        .set_read_timeout(Some(ANSWER_WITHIN))
        .map_err(|e| e.to_string())?;
    let mut request = Vec::new();
    for part in ["1", "jcmd", command, "", ""] {
        request.extend_from_slice(part.as_bytes());
        request.push(0);
    }
    stream.write_all(&request).map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| format!("no answer: {e}"))?;
    parse_answer(&answer)
}

/// The answer's output when its return code is 0 and the command did not say it failed.
fn parse_answer(answer: &str) -> Result<String, String> {
    let (code, output) = answer.split_once('\n').unwrap_or((answer, ""));
    let last_line = || {
        output
            .lines()
            .rfind(|l| !l.trim().is_empty())
            .unwrap_or("failed")
            .trim()
            .to_string()
    };
    if code.trim() != "0" {
        return Err(format!("return code {}: {}", code.trim(), last_line()));
    }
    // Diagnostic commands report their own failures in their output, with code 0.
    let failed = ["Could not", "rror", "Unknown", "not found"];
    if failed.iter().any(|f| output.contains(f)) {
        return Err(last_line());
    }
    Ok(output.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_by_their_code_and_their_words() {
        assert_eq!(
            parse_answer("0\nStarted recording 2.\n").unwrap(),
            "Started recording 2.\n"
        );
        assert!(
            parse_answer("0\nCould not start recording, not enough memory\n")
                .unwrap_err()
                .contains("Could not start")
        );
        assert!(parse_answer("101\nsome error\n")
            .unwrap_err()
            .contains("return code 101"));
        assert_eq!(namespace_pid(std::process::id()), std::process::id());
    }
}

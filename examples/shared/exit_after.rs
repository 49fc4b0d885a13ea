//! Shared by the test services in examples/: each must end by itself, so a test that
//! panics (or a run killed mid-way) never leaves one listening. It ends after `limit`, or
//! as soon as its stdin closes when stdin is a pipe (the test holds the other end, so the
//! test's end is the service's end). Included with `#[path]`: examples are separate
//! binaries, not a crate of their own.

use std::io::Read;
use std::time::Duration;

pub fn exit_after(limit: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        std::process::exit(0);
    });
    // Only a pipe is watched; /dev/null would end the service at once.
    use std::os::unix::fs::FileTypeExt;
    let piped = std::fs::metadata("/proc/self/fd/0").is_ok_and(|m| m.file_type().is_fifo());
    if piped {
        std::thread::spawn(|| {
            let mut sink = [0u8; 64];
            while matches!(std::io::stdin().read(&mut sink), Ok(n) if n > 0) {}
            std::process::exit(0);
        });
    }
}

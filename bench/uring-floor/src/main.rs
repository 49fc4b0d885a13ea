//! The floor under knee's closed model: `THREADS` threads, each with its own io_uring and
//! `CONNS / THREADS` keep-alive connections, send a GET, wait for the answer, send the next,
//! for `SECONDS`. Nothing is parsed, timed or recorded (an answer is one `recv`, which holds
//! the whole of a small answer on loopback), and one `io_uring_enter` submits and reaps a
//! whole batch, so what this costs per request is what the kernel's TCP path costs.
//! Usage: uring-floor HOST:PORT THREADS CONNS SECONDS   → prints "REQUESTS REQ_PER_S".

use io_uring::{opcode, types, IoUring};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: uring-floor\r\n\r\n";
const BUF: usize = 4096;

/// `user_data` of an operation: its connection, and whether it is the receive.
fn tag(conn: usize, recv: bool) -> u64 {
    (conn as u64) << 1 | recv as u64
}

/// The ring, set up as a single-threaded client is best served (measured here: without
/// these, the bare loop cost 9.6 µs per request against 6.7–7.3 with them):
/// - `URING_SETUP=coop` (the default): completions run at the thread's next transition to
///   the kernel (`COOP_TASKRUN`, Linux 5.19), never interrupting it;
/// - `defer`: only when it enters the ring to wait (`DEFER_TASKRUN`, 6.1; measured about the
///   same, 7.3–8.3 µs per request against coop's 6.7–9.0);
/// - `plain`: no flags (5.6).
/// A kernel that refuses the flags gets the plain ring.
fn ring() -> IoUring {
    let setup = std::env::var("URING_SETUP").unwrap_or_else(|_| "coop".into());
    let mut builder = IoUring::builder();
    match setup.as_str() {
        "defer" => builder.setup_single_issuer().setup_defer_taskrun(),
        "coop" => builder.setup_single_issuer().setup_coop_taskrun(),
        _ => &mut builder,
    };
    builder
        .build(256)
        .or_else(|_| IoUring::new(256))
        .expect("io_uring (Linux 5.6 or later)")
}

fn lane(addr: &str, conns: usize, run_for: Duration) -> u64 {
    let streams: Vec<TcpStream> = (0..conns)
        .map(|_| {
            let s = TcpStream::connect(addr).expect("connect");
            s.set_nodelay(true).expect("nodelay");
            s
        })
        .collect();
    let mut bufs = vec![[0u8; BUF]; conns];
    let mut ring = ring();
    let end = Instant::now() + run_for;
    let (mut answered, mut in_flight) = (0u64, 0usize);
    let push = |ring: &mut IoUring, bufs: &mut [[u8; BUF]], conn: usize, recv: bool| {
        let fd = types::Fd(streams[conn].as_raw_fd());
        let entry = if recv {
            opcode::Recv::new(fd, bufs[conn].as_mut_ptr(), BUF as u32).build()
        } else {
            opcode::Send::new(fd, REQUEST.as_ptr(), REQUEST.len() as u32).build()
        };
        // SAFETY: the buffers and the request outlive the ring's use of them: every
        // operation is reaped before `lane` returns.
        unsafe { ring.submission().push(&entry.user_data(tag(conn, recv))) }
            .expect("submission queue holds two entries per connection");
    };
    for conn in 0..conns {
        push(&mut ring, &mut bufs, conn, false);
        in_flight += 1;
    }
    while in_flight > 0 {
        ring.submit_and_wait(1).expect("io_uring_enter");
        let done: Vec<(u64, i32)> = ring
            .completion()
            .map(|c| (c.user_data(), c.result()))
            .collect();
        let more = Instant::now() < end;
        for (data, result) in done {
            in_flight -= 1;
            assert!(result > 0, "operation {data} failed: {result}");
            let (conn, recv) = ((data >> 1) as usize, data & 1 == 1);
            if recv {
                answered += 1;
            }
            if !recv || more {
                push(&mut ring, &mut bufs, conn, !recv);
                in_flight += 1;
            }
        }
    }
    answered
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: uring-floor HOST:PORT THREADS CONNS SECONDS";
    let [_, addr, threads, conns, seconds] = &args[..] else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let (Ok(threads), Ok(conns), Ok(seconds)) = (
        threads.parse::<usize>(),
        conns.parse::<usize>(),
        seconds.parse::<u64>(),
    ) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let started = Instant::now();
    let lanes: Vec<_> = (0..threads)
        .map(|_| {
            let addr = addr.clone();
            let per_lane = conns / threads;
            std::thread::spawn(move || lane(&addr, per_lane, Duration::from_secs(seconds)))
        })
        .collect();
    let answered: u64 = lanes.into_iter().map(|l| l.join().expect("lane")).sum();
    let elapsed = started.elapsed().as_secs_f64();
    println!("{answered} {:.0}", answered as f64 / elapsed);
}

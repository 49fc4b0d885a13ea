//! The accept queue of listening sockets, from the kernel's sock_diag netlink interface (what
//! `ss -lt` reads): for a listening TCP socket, `idiag_rqueue` is the connections waiting to be
//! accepted and `idiag_wqueue` the backlog they are held to. Asking for listening sockets only
//! makes the kernel filter: /proc/net/tcp instead lists every socket of the host (thousands of
//! TIME_WAITs under load, 75 ms to read), too slow to read at every sample.

use std::mem::size_of;

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const TCP_LISTEN: u32 = 10;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct NlMsgHdr {
    len: u32,
    kind: u16,
    flags: u16,
    seq: u32,
    pid: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct SockId {
    sport: [u8; 2],
    dport: [u8; 2],
    src: [u32; 4],
    dst: [u32; 4],
    interface: u32,
    cookie: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct InetDiagReqV2 {
    family: u8,
    protocol: u8,
    ext: u8,
    pad: u8,
    states: u32,
    id: SockId,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct InetDiagMsg {
    family: u8,
    state: u8,
    timer: u8,
    retrans: u8,
    id: SockId,
    expires: u32,
    rqueue: u32,
    wqueue: u32,
    uid: u32,
    inode: u32,
}

#[repr(C)]
struct Request {
    header: NlMsgHdr,
    body: InetDiagReqV2,
}

/// The listening sockets on TCP `port` (IPv4 and IPv6): (connections waiting to be accepted,
/// their backlog), summed; None when nothing listens there or netlink is not available.
pub fn accept_queue(port: u16) -> Option<(u64, u64)> {
    let mut total: Option<(u64, u64)> = None;
    for family in [libc::AF_INET, libc::AF_INET6] {
        for (waiting, backlog) in listening(family as u8, port)? {
            let t = total.get_or_insert((0, 0));
            t.0 += waiting;
            t.1 += backlog;
        }
    }
    total
}

/// One dump of the listening TCP sockets of `family`, those on `port` kept.
fn listening(family: u8, port: u16) -> Option<Vec<(u64, u64)>> {
    // SAFETY: a netlink socket of our own, closed below; every buffer passed is ours and
    // sized as told; replies are read with unaligned reads within the bytes received.
    unsafe {
        let fd = libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        );
        if fd < 0 {
            return None;
        }
        let timeout = libc::timeval {
            tv_sec: 1,
            tv_usec: 0,
        };
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            size_of::<libc::timeval>() as u32,
        );
        let request = Request {
            header: NlMsgHdr {
                len: size_of::<Request>() as u32,
                kind: SOCK_DIAG_BY_FAMILY,
                flags: (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16,
                seq: 1,
                pid: 0,
            },
            body: InetDiagReqV2 {
                family,
                protocol: libc::IPPROTO_TCP as u8,
                states: 1 << TCP_LISTEN,
                ..InetDiagReqV2::default()
            },
        };
        let sent = libc::send(
            fd,
            (&request as *const Request).cast(),
            size_of::<Request>(),
            0,
        );
        let result = (sent >= 0).then(|| read_replies(fd, port)).flatten();
        libc::close(fd);
        result
    }
}

/// Reads the dump's replies until NLMSG_DONE.
unsafe fn read_replies(fd: i32, port: u16) -> Option<Vec<(u64, u64)>> {
    let mut found = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
        if n <= 0 {
            return None;
        }
        let mut at = 0usize;
        let n = n as usize;
        while at + size_of::<NlMsgHdr>() <= n {
            let header: NlMsgHdr = std::ptr::read_unaligned(buf[at..].as_ptr().cast());
            if header.kind == libc::NLMSG_DONE as u16 {
                return Some(found);
            }
            if header.kind == libc::NLMSG_ERROR as u16
                || (header.len as usize) < size_of::<NlMsgHdr>()
            {
                return None;
            }
            let body = at + size_of::<NlMsgHdr>();
            if body + size_of::<InetDiagMsg>() <= n {
                let msg: InetDiagMsg = std::ptr::read_unaligned(buf[body..].as_ptr().cast());
                if u16::from_be_bytes(msg.id.sport) == port && u32::from(msg.state) == TCP_LISTEN {
                    found.push((u64::from(msg.rqueue), u64::from(msg.wqueue)));
                }
            }
            at += (header.len as usize + 3) & !3;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_listening_sockets_queue_and_backlog() {
        use std::os::fd::AsRawFd;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        // SAFETY: re-listening on our own socket only sets its backlog.
        unsafe { libc::listen(listener.as_raw_fd(), 7) };
        let port = listener.local_addr().unwrap().port();
        let _waiting = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(accept_queue(port), Some((1, 7)));
        drop(listener);
        assert_eq!(accept_queue(port), None);
    }
}

//! Linux: the owner of one TCP socket by an exact lookup through `NETLINK_SOCK_DIAG` (inet_diag, the
//! interface `ss` uses). Reading `/proc/net/tcp` instead walks the kernel's whole connection hash
//! table, whose size grows with memory: 5 ms per table on a 24 GiB machine, twice per new
//! intercepted connection, where this lookup takes microseconds.
//!
//! Contract: [`owner_uid`] answers `Ok(Some(uid))` for a live socket `client → server` (`client` is
//! the socket's own address, `server` its peer's), `Ok(None)` when the kernel has no such socket,
//! and `Err` when the lookup itself is unavailable (no netlink, no inet_diag module): the caller
//! then falls back to the `/proc` tables. Message layouts (`linux/netlink.h`, `linux/sock_diag.h`,
//! `linux/inet_diag.h`) are encoded and decoded here in platform-neutral code, tested anywhere.

use std::net::{IpAddr, SocketAddr};

use super::canonical;

/// `nlmsghdr` (16 bytes) + `inet_diag_req_v2` (56 bytes).
const REQUEST_LEN: usize = 16 + 56;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const IPPROTO_TCP: u8 = 6;
/// `INET_DIAG_NOCOOKIE`: look the socket up by its addresses alone.
const NO_COOKIE: u32 = !0;
/// Where `idiag_uid` sits in a reply: after `nlmsghdr` (16) and, in `inet_diag_msg`, the family,
/// state, timer, retrans bytes (4), the socket id (48), expires, rqueue, wqueue (12).
const UID_OFFSET: usize = 16 + 4 + 48 + 12;
const ENOENT: i32 = 2;

/// The uid owning the socket whose own address is `client` and whose peer is `server`.
#[cfg(target_os = "linux")]
pub(super) fn owner_uid(client: SocketAddr, server: SocketAddr) -> std::io::Result<Option<u32>> {
    let mut reply = [0u8; 512];
    let len = sys::exchange(&request(client, server, 1), &mut reply)?;
    parse_reply(&reply[..len]).map_err(std::io::Error::other)
}

/// The lookup request: one `SOCK_DIAG_BY_FAMILY` message for exactly this TCP socket.
pub(super) fn request(client: SocketAddr, server: SocketAddr, seq: u32) -> Vec<u8> {
    let (family, src, dst) = match (canonical(client.ip()), canonical(server.ip())) {
        (IpAddr::V4(c), IpAddr::V4(s)) => (AF_INET, padded(&c.octets()), padded(&s.octets())),
        (c, s) => (AF_INET6, v6_octets(c), v6_octets(s)),
    };
    let mut m = Vec::with_capacity(REQUEST_LEN);
    // nlmsghdr: length, type, flags, sequence, port id (0: the kernel answers us).
    m.extend_from_slice(&(REQUEST_LEN as u32).to_ne_bytes());
    m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    m.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // inet_diag_req_v2: family, protocol, extensions, padding, states (all).
    m.extend_from_slice(&[family, IPPROTO_TCP, 0, 0]);
    m.extend_from_slice(&u32::MAX.to_ne_bytes());
    // inet_diag_sockid: ports and addresses in network order, interface, cookie.
    m.extend_from_slice(&client.port().to_be_bytes());
    m.extend_from_slice(&server.port().to_be_bytes());
    m.extend_from_slice(&src);
    m.extend_from_slice(&dst);
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&NO_COOKIE.to_ne_bytes());
    m.extend_from_slice(&NO_COOKIE.to_ne_bytes());
    m
}

/// Reads the kernel's answer: the socket's uid, `None` for "no such socket", or what went wrong.
pub(super) fn parse_reply(reply: &[u8]) -> Result<Option<u32>, String> {
    let u32_at = |at: usize| {
        reply
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_ne_bytes)
    };
    let kind = reply
        .get(4..6)
        .and_then(|b| b.try_into().ok())
        .map(u16::from_ne_bytes);
    match kind {
        Some(SOCK_DIAG_BY_FAMILY) => u32_at(UID_OFFSET)
            .map(Some)
            .ok_or_else(|| format!("sock_diag reply of {} bytes is too short", reply.len())),
        Some(NLMSG_ERROR) => match u32_at(16).map(|e| e as i32) {
            Some(e) if e == -ENOENT => Ok(None),
            Some(e) => Err(format!("sock_diag lookup failed with errno {}", -e)),
            None => Err("sock_diag error reply is too short".into()),
        },
        Some(other) => Err(format!("unexpected netlink message type {other}")),
        None => Err(format!("netlink reply of {} bytes", reply.len())),
    }
}

fn padded(v4: &[u8; 4]) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(v4);
    a
}

fn v6_octets(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V6(v6) => v6.octets(),
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
    }
}

/// The two system calls, on a netlink socket this module opens and closes.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod sys {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    /// Sends `request` to the kernel and reads its answer into `reply`; returns the answer's length.
    /// The kernel answers while handling the send, so the read never needs to wait.
    pub(super) fn exchange(request: &[u8], reply: &mut [u8]) -> io::Result<usize> {
        // SAFETY: socket(2) with constant arguments; a non-negative result is a descriptor we own.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is open and owned by nobody else; OwnedFd closes it on every path.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: the pointer and length describe `request`, which outlives the call.
        let sent = unsafe { libc::send(fd.as_raw_fd(), request.as_ptr().cast(), request.len(), 0) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the pointer and length describe `reply`, writable and outliving the call.
        let got = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                reply.as_mut_ptr().cast(),
                reply.len(),
                libc::MSG_DONTWAIT,
            )
        };
        usize::try_from(got).map_err(|_| io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn the_request_names_the_socket_in_network_order() {
        let m = request(addr("127.0.0.1:54321"), addr("127.0.0.1:8765"), 7);
        assert_eq!(m.len(), REQUEST_LEN);
        assert_eq!(u32::from_ne_bytes([m[0], m[1], m[2], m[3]]), 72);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), SOCK_DIAG_BY_FAMILY);
        assert_eq!(u32::from_ne_bytes([m[8], m[9], m[10], m[11]]), 7);
        assert_eq!(&m[16..20], &[AF_INET, IPPROTO_TCP, 0, 0]);
        assert_eq!(&m[24..26], &54321u16.to_be_bytes());
        assert_eq!(&m[26..28], &8765u16.to_be_bytes());
        assert_eq!(&m[28..32], &[127, 0, 0, 1]);
        assert_eq!(&m[44..48], &[127, 0, 0, 1]);
        assert_eq!(&m[64..72], &[0xff; 8], "no cookie: look up by addresses");
    }

    #[test]
    fn v4_mapped_clients_are_looked_up_as_ipv4_and_ipv6_as_ipv6() {
        let mapped = request(
            addr("[::ffff:127.0.0.1]:5000"),
            addr("[::ffff:127.0.0.1]:80"),
            1,
        );
        assert_eq!(mapped[16], AF_INET);
        assert_eq!(&mapped[28..32], &[127, 0, 0, 1]);
        let v6 = request(addr("[::1]:5000"), addr("[::1]:80"), 1);
        assert_eq!(v6[16], AF_INET6);
        assert_eq!(v6[28 + 15], 1);
        assert_eq!(v6[44 + 15], 1);
    }

    fn reply(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(payload);
        m
    }

    #[test]
    fn replies_give_the_uid_no_socket_or_an_error() {
        let mut msg = vec![0u8; 72];
        msg[64..68].copy_from_slice(&1000u32.to_ne_bytes());
        assert_eq!(
            parse_reply(&reply(SOCK_DIAG_BY_FAMILY, &msg)),
            Ok(Some(1000))
        );
        let enoent = (-ENOENT).to_ne_bytes();
        assert_eq!(parse_reply(&reply(NLMSG_ERROR, &enoent)), Ok(None));
        let eperm = (-1i32).to_ne_bytes();
        let err = parse_reply(&reply(NLMSG_ERROR, &eperm)).unwrap_err();
        assert!(err.contains("errno 1"), "{err}");
        assert!(parse_reply(&reply(SOCK_DIAG_BY_FAMILY, &[0; 8])).is_err());
        assert!(parse_reply(&[1, 2]).is_err());
    }

    /// The real kernel: our own connected socket is found with our uid, a made-up one is not.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_kernel_finds_our_own_loopback_connection() {
        use std::os::unix::fs::MetadataExt;
        let me = std::fs::metadata("/proc/self")
            .map(|m| m.uid())
            .unwrap_or(u32::MAX);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(server).unwrap();
        let (_accepted, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        match owner_uid(peer, server) {
            Ok(uid) => assert_eq!(uid, Some(me)),
            // Only a kernel without sock_diag may skip (the caller then falls back to /proc); any
            // other failure is a bug in the request or the reading of the reply.
            Err(e) if e.raw_os_error() == Some(libc::EPROTONOSUPPORT) => {
                eprintln!("sock_diag unavailable here: {e}")
            }
            Err(e) => panic!("sock_diag lookup failed: {e}"),
        }
        let unused = SocketAddr::new(peer.ip(), 1);
        assert!(!matches!(owner_uid(unused, server), Ok(Some(_))));
    }
}

//! Same-OS-user check: before a token is injected, the connecting socket must belong to the OS user
//! that runs the proxy (docs/ARCHITECTURE.md#security-model, docs/TESTING.md#sec-3). Other local users
//! get a 403, never a token.
//!
//! How the owner is found:
//! - Linux: an exact lookup of the client's socket through netlink sock_diag (`peer/diag.rs`,
//!   microseconds); when that is unavailable, the kernel's TCP tables `/proc/net/tcp` and
//!   `/proc/net/tcp6`, which list every socket with its owner uid (milliseconds: reading them walks
//!   the whole connection hash table). The client's socket is the one whose own address is the
//!   client's address and whose peer is our listening address. Parsing is platform-neutral and
//!   tested anywhere.
//! - Windows: the owning process of the TCP row (`GetExtendedTcpTable`), then that process's user SID,
//!   compared with ours (in `peer/windows.rs`, compiled for Windows only).
//! - Elsewhere: unknown, which fails closed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

#[cfg(any(target_os = "linux", test))]
mod diag;
#[cfg(windows)]
pub(crate) mod windows;

/// The outcome of a peer check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerUser {
    /// The client runs as the same user as the proxy.
    Same,
    /// The client runs as another user (described for the log, e.g. `uid 1001`).
    Other(String),
    /// The owner could not be determined (fail closed: treated as another user).
    Unknown(String),
}

/// Checks who owns the client end of a connection. `client` is the peer address of the accepted
/// socket, `local` the address it was accepted on.
pub fn check(client: SocketAddr, local: SocketAddr) -> PeerUser {
    imp::check(client, local)
}

#[cfg(target_os = "linux")]
mod imp {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    pub(super) fn check(client: SocketAddr, local: SocketAddr) -> PeerUser {
        let me = match std::fs::metadata("/proc/self") {
            Ok(m) => m.uid(),
            Err(e) => return PeerUser::Unknown(format!("cannot read /proc/self: {e}")),
        };
        // A definite answer from sock_diag is final; anything else asks the tables.
        if let Ok(Some(uid)) = super::diag::owner_uid(client, local) {
            return verdict(uid, me);
        }
        let tables = ["/proc/net/tcp", "/proc/net/tcp6"];
        for path in tables {
            let Ok(text) = std::fs::read_to_string(path) else {
                continue;
            };
            if let Some(uid) = find_owner_uid(&text, client, local) {
                return verdict(uid, me);
            }
        }
        PeerUser::Unknown(format!("no TCP row for {client} → {local}"))
    }

    fn verdict(uid: u32, me: u32) -> PeerUser {
        match uid == me {
            true => PeerUser::Same,
            false => PeerUser::Other(format!("uid {uid}")),
        }
    }
}

#[cfg(windows)]
mod imp {
    use super::*;

    pub(super) fn check(client: SocketAddr, local: SocketAddr) -> PeerUser {
        super::windows::check(client, local)
    }
}

#[cfg(not(any(target_os = "linux", windows)))]
mod imp {
    use super::*;

    pub(super) fn check(_client: SocketAddr, _local: SocketAddr) -> PeerUser {
        PeerUser::Unknown("the same-user check is not implemented on this OS".into())
    }
}

/// Finds the uid owning the socket `client → local` in the text of `/proc/net/tcp` or `tcp6`.
/// IPv4 clients of an IPv6 socket appear as v4-mapped addresses; both spellings are matched.
pub fn find_owner_uid(table: &str, client: SocketAddr, local: SocketAddr) -> Option<u32> {
    table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let row_local = parse_proc_addr(cols.get(1)?)?;
        let row_remote = parse_proc_addr(cols.get(2)?)?;
        let matches = same_endpoint(row_local, client) && same_endpoint(row_remote, local);
        matches.then(|| cols.get(7)?.parse().ok()).flatten()
    })
}

fn same_endpoint(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && canonical(a.ip()) == canonical(b.ip())
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Parses `0100007F:1F90` (IPv4) or 32 hex digits + port (IPv6). The kernel prints each 32-bit word
/// of the address in host byte order; these tables exist only on Linux, where we read them on the
/// same host, so native-endian conversion is right.
fn parse_proc_addr(s: &str) -> Option<SocketAddr> {
    let (ip_hex, port_hex) = s.split_once(':')?;
    let port = u16::from_str_radix(port_hex, 16).ok()?;
    let words: Option<Vec<u32>> = (0..ip_hex.len() / 8)
        .map(|i| u32::from_str_radix(ip_hex.get(i * 8..i * 8 + 8)?, 16).ok())
        .collect();
    let bytes: Vec<u8> = words?.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let ip = match bytes.len() {
        4 => IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&bytes);
            IpAddr::V6(Ipv6Addr::from(a))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests;

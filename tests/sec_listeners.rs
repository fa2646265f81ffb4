//! SEC-1 (docs/TESTING.md#sec-1): the running `exoproxy run` listens on loopback only. The
//! kernel's own view is read: every TCP socket of the process in the LISTEN state
//! (`/proc/<pid>/fd` → socket inodes → `/proc/net/tcp{,6}`) must be bound to a loopback address,
//! never to `0.0.0.0`, `::` or a LAN address. Linux only: it reads `/proc`.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod binary;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use binary::*;

/// TCP state LISTEN in `/proc/net/tcp`.
const LISTEN: &str = "0A";

/// The socket inodes the process holds open.
fn socket_inodes(pid: u32) -> BTreeSet<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            let t = target.to_string_lossy().into_owned();
            t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// `0100007F:1F90` (tcp) or 32 hex digits `:port` (tcp6): each 32-bit word in host (little-endian)
/// order, as the kernel prints it.
fn parse_addr(hex: &str) -> SocketAddr {
    let (ip, port) = hex.split_once(':').unwrap();
    let port = u16::from_str_radix(port, 16).unwrap();
    let mut bytes = Vec::new();
    for word in ip.as_bytes().chunks(8) {
        let word = u32::from_str_radix(std::str::from_utf8(word).unwrap(), 16).unwrap();
        bytes.extend(word.to_le_bytes());
    }
    let ip = match bytes.len() {
        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).unwrap())),
        _ => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).unwrap())),
    };
    SocketAddr::new(ip, port)
}

/// The listening addresses among `inodes`.
fn listening(inodes: &BTreeSet<u64>) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let inode: u64 = cols[9].parse().unwrap();
            if cols[3] == LISTEN && inodes.contains(&inode) {
                out.push(parse_addr(cols[1]));
            }
        }
    }
    out
}

fn is_loopback(addr: &SocketAddr) -> bool {
    match addr.ip() {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

#[test]
fn sec_1_the_running_proxy_listens_on_loopback_only() {
    let proxy = start(&[]);
    let listeners = listening(&socket_inodes(proxy.child.id()));
    assert!(
        listeners.contains(&proxy.addr),
        "the kernel does not show the proxy's listener {}: {listeners:?}",
        proxy.addr
    );
    let exposed: Vec<_> = listeners.iter().filter(|a| !is_loopback(a)).collect();
    assert!(exposed.is_empty(), "listening beyond loopback: {exposed:?}");
}

/// The reading of `/proc/net/tcp` must be able to see a non-loopback listener.
#[test]
fn sec_1_a_wildcard_listener_is_seen_as_exposed() {
    assert_eq!(
        parse_addr("0100007F:1F90"),
        "127.0.0.1:8080".parse().unwrap()
    );
    assert_eq!(
        parse_addr("00000000000000000000000001000000:0050"),
        "[::1]:80".parse().unwrap()
    );
    let wildcard = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = wildcard.local_addr().unwrap().port();
    let ours = listening(&socket_inodes(std::process::id()));
    let seen = ours
        .iter()
        .find(|a| a.port() == port)
        .expect("our own listener");
    assert!(!is_loopback(seen), "{seen} counted as loopback");
}

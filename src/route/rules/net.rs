//! IP ranges and the text helpers shared by the host matchers: CIDR parsing and `*` wildcard matching.
//! (The "local destination" test is shared with `upstream`, so it lives in `crate::target`.)

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An IP range such as `10.0.0.0/8` or `fe80::/10`; a single address is a full-length prefix. Matches IP
/// literals only: a host name is never compared with a range (its address is not known at routing time).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    /// The network address, host bits cleared.
    addr: IpAddr,
    /// Prefix length in bits (≤ 32 for IPv4, ≤ 128 for IPv6).
    prefix: u8,
}

/// Formats an IP address into a stack buffer, so wildcard matching of IP literals does not allocate.
pub(crate) struct IpText {
    buf: [u8; 48],
    len: usize,
}

// === impl IpNet ===

impl IpNet {
    /// The range holding exactly one address. IPv4-mapped IPv6 addresses are stored as IPv4.
    pub fn single(ip: IpAddr) -> IpNet {
        let addr = ip.to_canonical();
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        IpNet { addr, prefix }
    }

    /// Parses `addr/len` (`10.0.0.0/8`, `fe80::/10`, `[fe80::]/10`) or a bare address. Host bits set
    /// below the prefix are cleared, as routers do, rather than rejected.
    pub fn parse(s: &str) -> Result<IpNet, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr = addr
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .unwrap_or(addr);
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IP address"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => {
                    return Err(format!(
                        "prefix length {p:?} is not a number from 0 to {max}"
                    ));
                }
            },
        };
        Ok(IpNet::new(ip, prefix))
    }

    fn new(ip: IpAddr, prefix: u8) -> IpNet {
        // `::ffff:10.0.0.0/104` and `10.0.0.0/8` are the same range; keep one spelling.
        let (ip, prefix) = match ip {
            IpAddr::V6(v6) if prefix >= 96 && v6.to_ipv4_mapped().is_some() => {
                (ip.to_canonical(), prefix - 96)
            }
            _ => (ip, prefix),
        };
        let addr = match ip {
            IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask32(prefix))),
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask128(prefix))),
        };
        IpNet { addr, prefix }
    }

    /// True when `ip` lies in the range. IPv4-mapped IPv6 literals (`::ffff:10.1.2.3`) count as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                u32::from(ip) & mask32(self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                u128::from(ip) & mask128(self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl fmt::Debug for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

// === wildcards ===

/// Matches `text` against a pattern where `*` stands for any run of bytes (possibly empty), as
/// WinINet bypass entries do. Both sides are lower case already. Linear in practice: on a mismatch it
/// retries only from the most recent `*`.
pub(crate) fn wildcard_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut retry: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                retry = Some((p, t));
                p += 1;
            }
            Some(&c) if c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match retry {
                Some((star, start)) => {
                    p = star + 1;
                    t = start + 1;
                    retry = Some((star, start + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

// === impl IpText ===

impl IpText {
    /// The address as text: dotted quad for IPv4, RFC 5952 form without brackets for IPv6.
    pub(crate) fn new(ip: IpAddr) -> IpText {
        let mut text = IpText {
            buf: [0; 48],
            len: 0,
        };
        // An address never exceeds 45 bytes, so the write cannot fail; on the impossible error the
        // text is just shorter and matches less.
        let _ = fmt::Write::write_fmt(&mut text, format_args!("{ip}"));
        text
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl fmt::Write for IpText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

//! The one "is this a local destination" test (BAD-22, BAD-23), shared by policy and mechanism.
//!
//! Contract: `route` refuses a target that *names* a local address unless an `allow_local` rule
//! matches; `upstream` refuses one before contacting any hop, proxies included (through a proxy it
//! would reach the proxy's own machine), and refuses a name that only *resolves* to a local address
//! after resolution. All three ask the functions here, so they cannot disagree.

use std::net::IpAddr;

use super::Host;

/// True for addresses that reach this machine or its link rather than the network: loopback,
/// unspecified (`0.0.0.0` and `::` connect to the local host on Linux), `0.0.0.0/8`, link-local
/// (`169.254.0.0/16` holds the cloud metadata endpoints, `fe80::/10`), also when IPv4-mapped.
pub fn is_local_ip(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.is_loopback() || v4.octets()[0] == 0 || v4.is_link_local(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// True for `localhost` and names below it: RFC 6761 §6.3 reserves them for loopback, and resolvers
/// answer them without asking DNS.
pub fn is_local_name(name: &str) -> bool {
    name == "localhost" || name.ends_with(".localhost")
}

// === impl Host ===

impl Host {
    /// True when the host as written is local: a `localhost` name or a local IP literal. A name that
    /// merely resolves to a local address is not caught here (`upstream` checks after resolving).
    pub fn is_local(&self) -> bool {
        match self {
            Host::Name(name) => is_local_name(name),
            Host::Ip(ip) => is_local_ip(*ip),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_ips_are_loopback_unspecified_and_link_local() {
        for ip in [
            "127.0.0.1",
            "127.5.5.5",
            "127.255.0.9",
            "0.0.0.0",
            "0.1.2.3",
            "169.254.169.254",
            "::1",
            "::",
            "fe80::1",
            "febf::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(is_local_ip(ip.parse::<IpAddr>().unwrap()), "{ip} is local");
        }
        for ip in [
            "10.0.0.1",
            "192.168.1.1",
            "8.8.8.8",
            "52.96.0.1",
            "2001:db8::1",
            "fec0::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(
                !is_local_ip(ip.parse::<IpAddr>().unwrap()),
                "{ip} is not local"
            );
        }
    }

    #[test]
    fn local_names_are_localhost_and_below() {
        assert!(is_local_name("localhost"));
        assert!(is_local_name("foo.localhost"));
        assert!(!is_local_name("localhost.example"));
        assert!(!is_local_name("notlocalhost"));
    }

    #[test]
    fn hosts_as_written() {
        for (authority, local) in [
            ("localhost:443", true),
            ("a.localhost:443", true),
            ("127.0.0.1:443", true),
            ("[::1]:443", true),
            ("[fe80::1]:443", true),
            ("example.com:443", false),
            ("10.0.0.1:443", false),
        ] {
            let target = super::super::Target::parse_connect(authority).unwrap();
            assert_eq!(target.host.is_local(), local, "{authority}");
        }
    }
}

//! Direct dialing: `connect_to` overrides (curl semantics), DNS resolution, the local-address deny
//! check on the *resolved* addresses (BAD-22…BAD-26, SEC-8), and TCP connect with a timeout.
//!
//! Contract: no socket is opened to an address that policy refuses; the peer address of the connected
//! socket is checked again, so a resolver that changes its mind between lookups gains nothing.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpStream;

use super::{ConnectTo, HopError};
use crate::error::ProxyError;
use crate::target::{Target, is_local_ip};

/// What a dial may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AddrPolicy {
    /// A target: local addresses are refused unless allowed; our own listeners always are.
    Target { allow_local: bool },
    /// A configured upstream proxy: may be local (cntlm, px), but never ourselves (a loop).
    Proxy,
}

/// Where a dial goes after `connect_to` was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DialPlan {
    pub(crate) host: String,
    pub(crate) port: u16,
    /// A `connect_to` mapping applied: the operator chose the address, so local is allowed.
    pub(crate) mapped: bool,
}

// === impl ConnectTo ===

impl ConnectTo {
    /// Parses `HOST:PORT:ADDR:PORT` as curl's `--connect-to` does: an empty HOST or PORT matches
    /// any; IPv6 literals are written in brackets (`[::1]:443:[::1]:8443`). ADDR and its PORT are
    /// required here (curl would fall back to the original; a config entry should say what it means).
    pub fn parse(s: &str) -> Result<ConnectTo, String> {
        let parts = split_colons_outside_brackets(s);
        let [host, port, to_host, to_port] = parts.as_slice() else {
            return Err(format!("connect_to {s:?}: expected HOST:PORT:ADDR:PORT"));
        };
        let port_of = |p: &str| {
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("connect_to {s:?}: invalid port {p:?}"))
        };
        let port = match port.is_empty() {
            true => None,
            false => Some(port_of(port)?),
        };
        if to_host.is_empty() || to_port.is_empty() {
            return Err(format!("connect_to {s:?}: ADDR and its PORT are required"));
        }
        Ok(ConnectTo {
            host: normalise_host(host),
            port,
            to_host: unbracket(to_host).to_string(),
            to_port: port_of(to_port)?,
        })
    }
}

fn split_colons_outside_brackets(s: &str) -> Vec<&str> {
    let (mut parts, mut start, mut depth) = (Vec::new(), 0, 0u32);
    for (i, c) in s.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ':' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn unbracket(h: &str) -> &str {
    h.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(h)
}

/// The form targets are compared in: lower case, no trailing dot, IPv6 without brackets.
fn normalise_host(h: &str) -> String {
    let h = unbracket(h);
    h.strip_suffix('.').unwrap_or(h).to_ascii_lowercase()
}

// === impl DialPlan ===

impl DialPlan {
    /// Applies the first matching `connect_to` entry (empty host or port matches any).
    pub(crate) fn for_target(target: &Target, connect_to: &[ConnectTo]) -> DialPlan {
        let host = target.host.as_str_for_lookup();
        let mapping = connect_to.iter().find(|m| {
            let host_ok = m.host.is_empty() || m.host.eq_ignore_ascii_case(&host);
            host_ok && m.port.is_none_or(|p| p == target.port)
        });
        match mapping {
            Some(m) => DialPlan {
                host: m
                    .to_host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
                port: m.to_port,
                mapped: true,
            },
            None => DialPlan {
                host,
                port: target.port,
                mapped: false,
            },
        }
    }
}

/// Resolves `host:port`, checks every address against the policy, then connects to the first address
/// that accepts, each attempt bounded by `connect_timeout`.
pub(crate) async fn dial(
    host: &str,
    port: u16,
    policy: AddrPolicy,
    own_addrs: &[SocketAddr],
    connect_timeout: Duration,
) -> Result<TcpStream, HopError> {
    let addrs = resolve(host, port, connect_timeout).await?;
    for addr in &addrs {
        check_addr(host, *addr, policy, own_addrs)?;
    }
    let mut last = None;
    for addr in addrs {
        match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let peer = stream
                    .peer_addr()
                    .map_err(|e| HopError::ConnectLevel(unreachable(host, port, &e)))?;
                check_addr(host, peer, policy, own_addrs)?;
                return Ok(stream);
            }
            Ok(Err(e)) => last = Some(HopError::ConnectLevel(unreachable(host, port, &e))),
            Err(_) => {
                last = Some(HopError::ConnectLevel(ProxyError::UpstreamTimeout {
                    target: format!("{host}:{port}"),
                    after: connect_timeout,
                    detail: "TCP connect timed out".into(),
                }))
            }
        }
    }
    Err(last.unwrap_or_else(|| {
        HopError::ConnectLevel(ProxyError::UpstreamUnreachable {
            target: format!("{host}:{port}"),
            detail: "the name has no addresses".into(),
        })
    }))
}

async fn resolve(host: &str, port: u16, limit: Duration) -> Result<Vec<SocketAddr>, HopError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    match tokio::time::timeout(limit, tokio::net::lookup_host((host, port))).await {
        Ok(Ok(addrs)) => Ok(addrs.collect()),
        Ok(Err(e)) => Err(HopError::ConnectLevel(ProxyError::UpstreamUnreachable {
            target: format!("{host}:{port}"),
            detail: format!("could not resolve {host}: {e}"),
        })),
        Err(_) => Err(HopError::ConnectLevel(ProxyError::UpstreamTimeout {
            target: format!("{host}:{port}"),
            after: limit,
            detail: format!("resolving {host} timed out"),
        })),
    }
}

fn unreachable(host: &str, port: u16, e: &io::Error) -> ProxyError {
    ProxyError::UpstreamUnreachable {
        target: format!("{host}:{port}"),
        detail: e.to_string(),
    }
}

/// Refuses our own listeners (a loop for proxies, a denial for targets) and, for targets, local
/// addresses unless allowed.
fn check_addr(
    host: &str,
    addr: SocketAddr,
    policy: AddrPolicy,
    own_addrs: &[SocketAddr],
) -> Result<(), HopError> {
    let name = format!("{host}:{}", addr.port());
    if is_own_addr(addr, own_addrs) {
        return Err(HopError::Fatal(match policy {
            AddrPolicy::Proxy => ProxyError::ProxyLoop(name),
            AddrPolicy::Target { .. } => ProxyError::ConnectDenied {
                target: name,
                reason: format!("{addr} is this proxy's own listener"),
            },
        }));
    }
    match policy {
        AddrPolicy::Target { allow_local: false } if is_local_ip(addr.ip()) => {
            Err(HopError::Fatal(ProxyError::ConnectDenied {
                target: name,
                reason: format!(
                    "it resolves to the local address {}; add an allow_local rule if this is intended",
                    addr.ip()
                ),
            }))
        }
        _ => Ok(()),
    }
}

/// True when `addr` reaches one of our listeners: same port and same IP, or our listener is bound to
/// an unspecified address and `addr` is local.
pub(crate) fn is_own_addr(addr: SocketAddr, own_addrs: &[SocketAddr]) -> bool {
    let ip = addr.ip().to_canonical();
    own_addrs.iter().any(|own| {
        let own_ip = own.ip().to_canonical();
        own.port() == addr.port()
            && (own_ip == ip
                || (own_ip.is_unspecified() && is_local_ip(ip))
                || (own_ip.is_loopback() && ip.is_unspecified()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(s: &str) -> Target {
        Target::parse_connect(s).unwrap()
    }

    fn map(host: &str, port: Option<u16>, to: &str, to_port: u16) -> ConnectTo {
        ConnectTo {
            host: host.into(),
            port,
            to_host: to.into(),
            to_port,
        }
    }

    #[test]
    fn connect_to_curl_semantics() {
        let rules = [
            map("a.test", Some(443), "127.0.0.1", 1000),
            map("", Some(8443), "127.0.0.1", 2000),
            map("b.test", None, "[::1]", 3000),
        ];
        let plan = DialPlan::for_target(&target("a.test:443"), &rules);
        assert_eq!(
            (plan.host.as_str(), plan.port, plan.mapped),
            ("127.0.0.1", 1000, true)
        );
        let plan = DialPlan::for_target(&target("zzz.test:8443"), &rules);
        assert_eq!(plan.port, 2000);
        let plan = DialPlan::for_target(&target("b.test:1"), &rules);
        assert_eq!((plan.host.as_str(), plan.port), ("::1", 3000));
        let plan = DialPlan::for_target(&target("a.test:444"), &rules);
        assert_eq!(
            (plan.host.as_str(), plan.port, plan.mapped),
            ("a.test", 444, false)
        );
    }

    #[test]
    fn connect_to_parses_curl_syntax() {
        assert_eq!(
            ConnectTo::parse("Outlook.Office365.com.:443:127.0.0.1:8443").unwrap(),
            map("outlook.office365.com", Some(443), "127.0.0.1", 8443)
        );
        assert_eq!(
            ConnectTo::parse("::[::1]:9").unwrap(),
            map("", None, "::1", 9)
        );
        assert_eq!(
            ConnectTo::parse("[::1]:443:localhost:1").unwrap(),
            map("::1", Some(443), "localhost", 1)
        );
        for bad in [
            "a:443:b",
            "a:443:b:0",
            "a:x:b:1",
            "a:443::1",
            "a:443:b:",
            "a:1:b:2:3",
        ] {
            assert!(ConnectTo::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn own_addresses_by_alias() {
        let own = ["127.0.0.1:3128".parse().unwrap()];
        for a in ["127.0.0.1:3128", "[::ffff:127.0.0.1]:3128", "0.0.0.0:3128"] {
            assert!(is_own_addr(a.parse().unwrap(), &own), "{a}");
        }
        assert!(!is_own_addr("127.0.0.1:3129".parse().unwrap(), &own));
        let any = ["0.0.0.0:3128".parse().unwrap()];
        assert!(is_own_addr("[::1]:3128".parse().unwrap(), &any));
    }

    /// BAD-26 / SEC-8: a *name* that resolves to loopback is refused on the resolved address, and no
    /// connection is made (`localhost` stands in for a rebinding name: it needs no DNS server).
    #[tokio::test]
    async fn bad_26_sec_8_name_resolving_to_loopback_is_refused_before_connecting() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let deny = AddrPolicy::Target { allow_local: false };
        let t = Duration::from_secs(1);
        let result = dial("localhost", port, deny, &[], t).await;
        assert!(matches!(
            result,
            Err(HopError::Fatal(ProxyError::ConnectDenied { .. }))
        ));
        let accepted = tokio::time::timeout(Duration::from_millis(50), listener.accept()).await;
        assert!(
            accepted.is_err(),
            "no connection may reach a refused address"
        );
        let allow = AddrPolicy::Target { allow_local: true };
        assert!(dial("127.0.0.1", port, allow, &[], t).await.is_ok());
    }

    #[test]
    fn target_policy_refuses_local_unless_allowed() {
        let addr: SocketAddr = "127.0.0.1:443".parse().unwrap();
        let deny = AddrPolicy::Target { allow_local: false };
        assert!(matches!(
            check_addr("x", addr, deny, &[]),
            Err(HopError::Fatal(ProxyError::ConnectDenied { .. }))
        ));
        assert!(check_addr("x", addr, AddrPolicy::Target { allow_local: true }, &[]).is_ok());
        assert!(check_addr("x", addr, AddrPolicy::Proxy, &[]).is_ok());
        assert!(matches!(
            check_addr("x", addr, AddrPolicy::Proxy, &[addr]),
            Err(HopError::Fatal(ProxyError::ProxyLoop(_)))
        ));
    }
}

//! Never loop, never surprise (issue 12; BAD-30 in docs/TESTING.md): finds the upstream settings that
//! name exoproxy's own listener, says what to run to fix each, and drops those hops.
//!
//! Contract:
//! - [`names_this_proxy`] is the one test of "this endpoint is us": our port, and one of our
//!   addresses or a loopback/unspecified spelling of it (`127.0.0.1`, `[::1]`, `localhost`) when we
//!   listen on loopback or everywhere.
//! - [`split_own`] keeps the other proxies in order; [`SelfReference`] is one finding with its fix,
//!   printed at start ([`super::Router::start`] for static and env lists) and on every change of the
//!   live WinHTTP/IE settings (`source.rs`); `doctor` reports the same values.
//! - Policy: the self-pointing hop is dropped and the rest of the settings apply as they are: the
//!   remaining proxies, or DIRECT when none remain (the settings without us say "no proxy"). Failing
//!   every request with `proxy_loop` instead would punish the user for a wiring that exoproxy itself
//!   (or `netsh winhttp set proxy`) made. A PAC URL served by us, found in the IE settings, counts as
//!   no PAC (README, "Never a loop").

use std::fmt;
use std::net::SocketAddr;

use crate::target::{Host, ProxyEndpoint};

/// True when `proxy` is this proxy (same port, and our address or a loopback spelling of it).
pub fn names_this_proxy(proxy: &ProxyEndpoint, own: &[SocketAddr]) -> bool {
    own.iter().filter(|a| a.port() == proxy.port).any(|a| {
        let ours_local = a.ip().is_loopback() || a.ip().is_unspecified();
        match &proxy.host {
            Host::Ip(ip) => {
                *ip == a.ip() || (ours_local && (ip.is_loopback() || ip.is_unspecified()))
            }
            Host::Name(name) => {
                ours_local && (&**name == "localhost" || name.ends_with(".localhost"))
            }
        }
    })
}

/// True when `url` is a PAC served by us (`http://127.0.0.1:8765/proxy.pac` and its spellings).
pub fn pac_url_is_ours(url: &str, own: &[SocketAddr]) -> bool {
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("HTTP://"))
    else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    ProxyEndpoint::parse(authority).is_ok_and(|p| names_this_proxy(&p, own))
}

/// `(the others, in order; ours)`.
pub fn split_own(
    list: &[ProxyEndpoint],
    own: &[SocketAddr],
) -> (Vec<ProxyEndpoint>, Vec<ProxyEndpoint>) {
    list.iter()
        .cloned()
        .partition(|p| !names_this_proxy(p, own))
}

/// One upstream setting that names exoproxy itself, with the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfReference {
    /// `"winhttp"`, `"ie"`, `"env"`, `"netsh"`, `"reg"`, `"static"` (config or `--upstream`).
    pub source: String,
    /// The proxy or PAC URL as found.
    pub value: String,
    /// What happens instead: DIRECT, or the remaining proxies.
    pub instead: String,
}

impl fmt::Display for SelfReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, fix) = match self.source.as_str() {
            "winhttp" | "netsh" => (
                "the WinHTTP proxy",
                "run `netsh winhttp reset proxy` (elevated), or set upstream.source to what the network needs",
            ),
            "ie" | "reg" => (
                "the Internet Settings proxy",
                "if `exoproxy install` set it, that is expected: set upstream.source = \"static\"/\"pac\"/\"direct\" (install writes one); otherwise change Internet Settings or upstream.source",
            ),
            "env" => (
                "HTTPS_PROXY/HTTP_PROXY",
                "unset it for exoproxy's own process (keep it for the clients), or set upstream.source",
            ),
            _ => (
                "the upstream proxy list",
                "remove it from upstream.proxies / --upstream / EXOPROXY_UPSTREAM (or, with upstream.source = \"env\", unset HTTPS_PROXY/HTTP_PROXY for exoproxy's own process)",
            ),
        };
        write!(
            f,
            "{what} is {}, exoproxy itself: using {} instead; to fix: {fix}",
            self.value, self.instead
        )
    }
}

/// The findings for a proxy list from `source`, given what remains after [`split_own`].
pub fn findings(
    source: &str,
    ours: &[ProxyEndpoint],
    kept: &[ProxyEndpoint],
) -> Vec<SelfReference> {
    let instead = if kept.is_empty() {
        "DIRECT".to_string()
    } else {
        kept.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    ours.iter()
        .map(|p| SelfReference {
            source: source.to_string(),
            value: p.to_string(),
            instead: instead.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn own() -> Vec<SocketAddr> {
        vec![
            "127.0.0.1:8765".parse().unwrap(),
            "[::1]:8765".parse().unwrap(),
        ]
    }

    #[test]
    fn every_spelling_of_our_listener_is_us_and_other_ports_are_not() {
        for s in [
            "127.0.0.1:8765",
            "localhost:8765",
            "[::1]:8765",
            "127.0.0.2:8765",
        ] {
            assert!(
                names_this_proxy(&ProxyEndpoint::parse(s).unwrap(), &own()),
                "{s}"
            );
        }
        for s in ["127.0.0.1:8766", "proxy.corp:8765", "10.0.0.1:8765"] {
            assert!(
                !names_this_proxy(&ProxyEndpoint::parse(s).unwrap(), &own()),
                "{s}"
            );
        }
        assert!(pac_url_is_ours("http://127.0.0.1:8765/proxy.pac", &own()));
        assert!(pac_url_is_ours("http://localhost:8765/proxy.pac", &own()));
        assert!(!pac_url_is_ours("http://wpad.corp/proxy.pac", &own()));
        assert!(!pac_url_is_ours("https://127.0.0.1:8765/proxy.pac", &own()));
    }

    #[test]
    fn our_hop_is_dropped_the_rest_kept_in_order_and_the_fix_named() {
        let list: Vec<ProxyEndpoint> = ["a.corp:1", "127.0.0.1:8765", "b.corp:2"]
            .iter()
            .map(|s| ProxyEndpoint::parse(s).unwrap())
            .collect();
        let (kept, ours) = split_own(&list, &own());
        assert_eq!(kept, vec![list[0].clone(), list[2].clone()]);
        let found = findings("winhttp", &ours, &kept);
        let text = found[0].to_string();
        assert!(
            text.contains("WinHTTP proxy is 127.0.0.1:8765, exoproxy itself"),
            "{text}"
        );
        assert!(text.contains("netsh winhttp reset proxy"), "{text}");
        assert!(text.contains("instead"), "{text}");
        let (kept, ours) = split_own(&list[1..2], &own());
        let text = findings("env", &ours, &kept)[0].to_string();
        assert!(
            text.contains("using DIRECT instead") && text.contains("HTTPS_PROXY"),
            "{text}"
        );
    }
}

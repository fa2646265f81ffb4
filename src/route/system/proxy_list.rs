//! The proxy-list and bypass-list syntax shared by WinINet (IE) and WinHTTP (PROTOCOL.md §3.1).
//!
//! Proxy list: entries `[<scheme>=][<scheme>://]<server>[:<port>]` separated by `;` or whitespace.
//! `http=` and `https=` entries go to the matching list; a bare entry applies to both (Chromium's
//! reading of a WinINet map); `ftp=`, `socks=` and other schemes are ignored because we chain HTTP
//! proxies only. A missing port means 80, as in WinINet. A proxy written with a scheme other than
//! `http://` (TLS or SOCKS to the proxy) is an error rather than a silent plaintext downgrade.
//!
//! Bypass list: entries separated by `;` or whitespace, returned raw for the route rules.

use crate::route::system::SettingsError;
use crate::target::ProxyEndpoint;

/// The proxies a proxy-list string names, per URL scheme, in the order written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PerScheme {
    pub http: Vec<ProxyEndpoint>,
    pub https: Vec<ProxyEndpoint>,
}

/// Which URL schemes one entry applies to.
enum Applies {
    Both,
    Http,
    Https,
    Ignored,
}

/// Parses a WinINet/WinHTTP proxy string (`proxy:8080` or `http=a:80;https=b:443;ftp=c:21`).
pub fn parse_proxy_list(s: &str, what: &'static str) -> Result<PerScheme, SettingsError> {
    let mut out = PerScheme::default();
    for entry in split_entries(s) {
        let (applies, server) = split_scheme(entry);
        if matches!(applies, Applies::Ignored) {
            continue;
        }
        let endpoint = parse_server(server)
            .map_err(|e| SettingsError::new(what, format!("proxy entry {entry:?}: {e}")))?;
        if matches!(applies, Applies::Both | Applies::Http) {
            push_unique(&mut out.http, endpoint.clone());
        }
        if matches!(applies, Applies::Both | Applies::Https) {
            push_unique(&mut out.https, endpoint);
        }
    }
    Ok(out)
}

/// Splits a bypass list into raw entries; empty entries (`a;;b`, trailing `;`) are dropped.
pub fn parse_bypass_list(s: &str) -> Vec<String> {
    split_entries(s).map(str::to_string).collect()
}

fn split_entries(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| c == ';' || c.is_whitespace())
        .map(str::trim)
        .filter(|e| !e.is_empty())
}

fn split_scheme(entry: &str) -> (Applies, &str) {
    let Some((scheme, server)) = entry.split_once('=') else {
        return (Applies::Both, entry);
    };
    let applies = match scheme.to_ascii_lowercase().as_str() {
        "http" => Applies::Http,
        "https" => Applies::Https,
        _ => Applies::Ignored,
    };
    (applies, server)
}

/// `[http://]host[:port][/]` → endpoint; port 80 when absent.
fn parse_server(server: &str) -> Result<ProxyEndpoint, String> {
    let rest = match server.split_once("://") {
        None => server,
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some((scheme, _)) => {
            return Err(format!(
                "proxy scheme {scheme}:// is not supported (HTTP proxies only)"
            ));
        }
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() {
        return Err("empty proxy server".into());
    }
    let with_port = if has_port(authority) {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    ProxyEndpoint::parse(&with_port).map_err(|e| e.0)
}

/// True when `authority` ends in `:port` (IPv6 literals are bracketed, so their colons do not count).
fn has_port(authority: &str) -> bool {
    match authority.rfind(']') {
        Some(end) => authority[end..].contains(':'),
        None => authority.contains(':'),
    }
}

fn push_unique(list: &mut Vec<ProxyEndpoint>, endpoint: ProxyEndpoint) {
    if !list.contains(&endpoint) {
        list.push(endpoint);
    }
}

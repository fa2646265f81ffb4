//! The proxy-list and bypass-list syntax shared by WinINet (IE) and WinHTTP (PROTOCOL.md §3.1).
//!
//! Proxy list: entries `[<scheme>=][<scheme>://]<server>[:<port>]` separated by `;` or whitespace.
//! `http=` and `https=` entries go to the matching list; a bare entry applies to both (Chromium's
//! reading of a WinINet map); `ftp=`, `socks=` and other schemes are ignored because we chain HTTP
//! proxies only. Each server is a [`ProxyUrl`] whose port defaults to 80, as in WinINet: a scheme
//! other than `http://` (TLS or SOCKS to the proxy) is an error rather than a silent plaintext
//! downgrade, and so is a `user:password@` (refused with a pointer to `[[upstream.credentials]]`,
//! never silently dropped).
//!
//! Bypass list: entries separated by `;` or whitespace, returned raw for the route rules.

use crate::route::system::SettingsError;
use crate::target::{ProxyEndpoint, ProxyUrl};

/// WinINet's port for a proxy written without one.
const WININET_DEFAULT_PORT: u16 = 80;

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
        let endpoint = parse_server(server).map_err(|e| {
            // An entry with an '@' may hold a password: it is never echoed.
            let which = if entry.contains('@') {
                String::new()
            } else {
                format!(" {entry:?}")
            };
            SettingsError::new(what, format!("proxy entry{which}: {e}"))
        })?;
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

/// `[http://]host[:port][/]` → endpoint; port 80 when absent. A user name or password in the entry
/// is refused: these strings cannot carry credentials to where exoproxy uses them.
fn parse_server(server: &str) -> Result<ProxyEndpoint, String> {
    let url = ProxyUrl::parse(server, Some(WININET_DEFAULT_PORT)).map_err(|e| e.0)?;
    match url.userinfo {
        None => Ok(url.endpoint),
        Some(_) => Err(format!(
            "a user name or password in a proxy setting is not used: put them in \
             [[upstream.credentials]] with proxy = \"{}\"",
            url.endpoint
        )),
    }
}

fn push_unique(list: &mut Vec<ProxyEndpoint>, endpoint: ProxyEndpoint) {
    if !list.contains(&endpoint) {
        list.push(endpoint);
    }
}

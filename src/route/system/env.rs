//! Proxy environment variables with curl's semantics, read through a lookup closure so that tests
//! (and every source other than `env`, TLS-8) never depend on the process environment.
//!
//! - `https_proxy`/`HTTPS_PROXY` → proxies for https (CONNECT); `http_proxy`/`HTTP_PROXY` → for
//!   plain http; `all_proxy`/`ALL_PROXY` fills whichever of the two is unset. Lower case wins, an empty
//!   value counts as unset. (curl ignores upper-case `HTTP_PROXY` because of CGI "httpoxy"; that
//!   risk does not exist for a proxy's own environment, so we accept it.)
//! - A value is `[http://][user[:password]@]host[:port][/]`; the port defaults to 1080 as in curl.
//!   `https://` (TLS to the proxy) and `socks*://` proxies are rejected: we only chain HTTP proxies.
//!   Percent-encoded credentials are decoded and returned as [`ProxyCredentials`].
//! - `no_proxy`/`NO_PROXY`: comma-separated; `*` alone bypasses everything; `example.com` and
//!   `.example.com` both mean the domain and its subdomains (written out as `example.com` plus
//!   `*.example.com` in WinHTTP syntax); IP addresses and CIDR blocks are kept as they are.

use zeroize::Zeroizing;

use crate::route::system::{SettingsError, SystemProxy};
use crate::target::{Host, ProxyCredentials, ProxyEndpoint};

const WHAT: &str = "proxy environment";
/// curl's default port for a proxy URL without one.
const DEFAULT_PROXY_PORT: u16 = 1080;

/// Reads the proxy variables through `get` (source `"env"`).
pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<SystemProxy, SettingsError> {
    let var = |lower: &str, upper: &str| {
        [lower, upper]
            .into_iter()
            .filter_map(&get)
            .map(|v| v.trim().to_string())
            .find(|v| !v.is_empty())
    };
    let all = var("all_proxy", "ALL_PROXY");
    let https = var("https_proxy", "HTTPS_PROXY").or_else(|| all.clone());
    let http = var("http_proxy", "HTTP_PROXY").or(all);
    let mut out = SystemProxy::empty("env");
    for (value, list) in [(https, &mut out.https), (http, &mut out.http)] {
        if let Some(value) = value {
            let (endpoint, creds) = parse_proxy_url(&value)?;
            list.push(endpoint.clone());
            if let Some(creds) = creds
                && !out.credentials.iter().any(|(e, _)| e == &endpoint)
            {
                out.credentials.push((endpoint, creds));
            }
        }
    }
    if let Some(no_proxy) = var("no_proxy", "NO_PROXY") {
        out.bypass = no_proxy_to_bypass(&no_proxy);
    }
    Ok(out)
}

/// The real process environment; only for `source = "env"`.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// `[http://][user[:pass]@]host[:port][/]` → endpoint and optional credentials.
pub fn parse_proxy_url(
    value: &str,
) -> Result<(ProxyEndpoint, Option<ProxyCredentials>), SettingsError> {
    // The value may hold a password: errors describe the problem, never echo the value.
    let rest = match value.split_once("://") {
        None => value,
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some((scheme, _)) => {
            return Err(SettingsError::new(
                WHAT,
                format!("proxy scheme {scheme}:// is not supported (HTTP proxies only)"),
            ));
        }
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let endpoint = parse_host_port(hostport)?;
    let creds = userinfo.map(parse_userinfo).transpose()?;
    Ok((endpoint, creds))
}

fn parse_host_port(hostport: &str) -> Result<ProxyEndpoint, SettingsError> {
    let has_port = match hostport.rfind(']') {
        Some(end) => hostport[end..].contains(':'),
        None => hostport.contains(':'),
    };
    let full = if has_port {
        hostport.to_string()
    } else {
        format!("{hostport}:{DEFAULT_PROXY_PORT}")
    };
    ProxyEndpoint::parse(&full).map_err(|e| SettingsError::new(WHAT, e.0))
}

fn parse_userinfo(userinfo: &str) -> Result<ProxyCredentials, SettingsError> {
    let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let bad = || SettingsError::new(WHAT, "invalid percent-encoding in proxy credentials");
    Ok(ProxyCredentials {
        username: percent_decode(user).ok_or_else(bad)?,
        password: Zeroizing::new(percent_decode(pass).ok_or_else(bad)?),
        ..ProxyCredentials::default()
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// curl `NO_PROXY` entries → WinHTTP-syntax bypass entries.
pub fn no_proxy_to_bypass(no_proxy: &str) -> Vec<String> {
    let mut out = Vec::new();
    for entry in no_proxy.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        if entry == "*" {
            return vec!["*".to_string()];
        }
        let domain = entry.strip_prefix('.').unwrap_or(entry);
        let is_address = domain.contains('/') || matches!(Host::parse(domain), Ok(Host::Ip(_)));
        if is_address || domain.starts_with('[') {
            out.push(domain.to_string());
        } else {
            let domain = domain.to_ascii_lowercase();
            out.push(format!("*.{domain}"));
            out.push(domain);
        }
    }
    out
}

//! Proxy environment variables with curl's semantics, read through a lookup closure so that tests
//! (and every source other than `env`, TLS-8) never depend on the process environment.
//!
//! - `https_proxy`/`HTTPS_PROXY` → proxies for https (CONNECT); `http_proxy`/`HTTP_PROXY` → for
//!   plain http; `all_proxy`/`ALL_PROXY` fills whichever of the two is unset. Lower case wins, an empty
//!   value counts as unset. (curl ignores upper-case `HTTP_PROXY` because of CGI "httpoxy"; that
//!   risk does not exist for a proxy's own environment, so we accept it.)
//! - A value is a [`ProxyUrl`] whose port defaults to 1080 as in curl. `https://` (TLS to the
//!   proxy) and `socks*://` proxies are rejected: we only chain HTTP proxies. Credentials in the URL
//!   are returned in [`SystemProxy::credentials`] for the endpoint, for `config` to put them with the
//!   upstream credentials.
//! - `no_proxy`/`NO_PROXY`: comma-separated; `*` alone bypasses everything; `example.com` and
//!   `.example.com` both mean the domain and its subdomains (written out as `example.com` plus
//!   `*.example.com` in WinHTTP syntax); IP addresses and CIDR blocks are kept as they are.

use crate::route::system::{SettingsError, SystemProxy};
use crate::target::{Host, ProxyUrl};

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
            // The value may hold a password: the error describes the problem, never echoes it.
            let url = ProxyUrl::parse(&value, Some(DEFAULT_PROXY_PORT))
                .map_err(|e| SettingsError::new(WHAT, e.0))?;
            list.push(url.endpoint.clone());
            if let Some(userinfo) = url.userinfo
                && !out.credentials.iter().any(|(e, _)| e == &url.endpoint)
            {
                out.credentials.push((url.endpoint, userinfo));
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

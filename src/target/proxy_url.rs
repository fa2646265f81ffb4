//! The one proxy-URL syntax: `[http://][user[:password]@]host[:port][/]`, as written in
//! `upstream.proxies`, `--upstream`/`EXOPROXY_UPSTREAM`, `HTTPS_PROXY` and the WinHTTP/IE proxy lists.
//!
//! Contract:
//! - Only `http://` (any case) or no scheme: we chain HTTP proxies. `https://` (TLS to the proxy) and
//!   `socks*://` are errors, never a silent plaintext downgrade.
//! - The port is required unless the caller names the default of its source (curl's 1080 for the
//!   environment, WinINet's 80 for the Windows settings); `upstream.proxies` requires one.
//! - The authority ends at the first `/` (RFC 3986 §3.2), and nothing may follow it but that `/`.
//! - `user[:password]` is percent-decoded (RFC 3986 §2.1) by `percent-encoding`: `%` must start two hex
//!   digits and the result must be UTF-8; `+` stays `+`. It is returned as [`UserInfo`], whose `Debug`
//!   redacts the password, and no error ever echoes it.

use std::fmt;

use percent_encoding::percent_decode_str;
use zeroize::Zeroizing;

use super::{ProxyEndpoint, TargetError};

/// A parsed proxy URL: where the proxy is, and the credentials written in the URL, if any.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ProxyUrl {
    pub endpoint: ProxyEndpoint,
    /// `user[:password]` from the URL, decoded; `None` when the URL names no user.
    pub userinfo: Option<UserInfo>,
}

/// The user name and password written in a proxy URL.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct UserInfo {
    pub username: String,
    pub password: Zeroizing<String>,
}

// === impl ProxyUrl ===

impl ProxyUrl {
    /// Parses a proxy URL; `default_port` is used when none is written (`None`: a port is required).
    pub fn parse(s: &str, default_port: Option<u16>) -> Result<ProxyUrl, TargetError> {
        let rest = match s.split_once("://") {
            None => s,
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) => {
                return Err(TargetError(format!(
                    "proxy scheme {scheme}:// is not supported (HTTP proxies only): write http://host:port"
                )));
            }
        };
        // The authority ends at the first '/' (RFC 3986 §3.2); only an empty path may follow.
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if !path.is_empty() {
            return Err(TargetError(
                "a proxy URL has no path: write http://host:port".into(),
            ));
        }
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let endpoint = match (has_port(hostport), default_port) {
            (false, Some(port)) => ProxyEndpoint::parse(&format!("{hostport}:{port}")),
            _ => ProxyEndpoint::parse(hostport),
        }?;
        let userinfo = userinfo.map(UserInfo::parse).transpose()?;
        Ok(ProxyUrl { endpoint, userinfo })
    }
}

/// True when `hostport` ends in `:port` (IPv6 literals are bracketed, so their colons do not count).
fn has_port(hostport: &str) -> bool {
    match hostport.rfind(']') {
        Some(end) => hostport[end..].contains(':'),
        None => hostport.contains(':'),
    }
}

// === impl UserInfo ===

impl UserInfo {
    fn parse(userinfo: &str) -> Result<UserInfo, TargetError> {
        let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
        let username = decode(user)?;
        if username.is_empty() {
            return Err(TargetError(
                "the proxy URL has an '@' but no user name before it".into(),
            ));
        }
        Ok(UserInfo {
            username,
            password: Zeroizing::new(decode(pass)?),
        })
    }
}

/// Strict percent-decoding: a `%` that does not start two hex digits is an error, not kept as is.
fn decode(s: &str) -> Result<String, TargetError> {
    let bad = || {
        TargetError(
            "invalid percent-encoding in the proxy URL's user name or password (write % as %25)"
                .into(),
        )
    };
    let bytes = s.as_bytes();
    let well_formed = bytes.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return Err(bad());
    }
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| bad())
}

impl fmt::Debug for UserInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserInfo({}, [redacted])", self.username)
    }
}

#[cfg(test)]
mod tests;

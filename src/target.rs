//! Shared vocabulary of the request path: what the client asked for ([`Target`]), what policy decided
//! ([`Decision`]: an [`Action`] plus ordered [`Hop`]s), and where an upstream proxy lives ([`ProxyEndpoint`], written as a [`ProxyUrl`]).
//!
//! Contract: `route` produces these values and `upstream`/`handler` consume them; neither side depends on
//! the other, only on this module. Everything here is plain data: no sockets, no clocks, no config.
//!
//! Host names are kept normalised (lower case, no trailing dot, IDNA A-label) so that every matcher can
//! compare bytes. Parsing is strict: a CONNECT authority that is ambiguous is an error, never a guess
//! (RELIABILITY.md BAD-20, BAD-21).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

// Shared vocabulary beyond the request itself, one concept per file.
mod credentials;
mod local;
mod proxy_url;

pub use credentials::{ProxyAuthScheme, ProxyCredentials};
pub use local::{is_local_ip, is_local_name};
pub use proxy_url::{ProxyUrl, UserInfo};

/// A host as the client named it, normalised.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A DNS name: lower case, without a trailing dot, ASCII only (punycode for IDNs).
    Name(Arc<str>),
    /// An IP literal (IPv6 written in brackets on the wire, stored bare here).
    Ip(IpAddr),
}

/// Which kind of request brought the target: the scheme of an absolute-form request, or a CONNECT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Absolute-form `http://` request: the proxy forwards it itself.
    Http,
    /// `CONNECT host:port`: a tunnel, usually carrying TLS (`https://` as far as PAC is concerned).
    Connect,
}

/// The destination of one client request.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub host: Host,
    pub port: u16,
    pub scheme: Scheme,
}

/// Why a host or authority could not be parsed. The message is shown to the client in a 400 body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TargetError(pub String);

/// An upstream HTTP proxy, as named by config, PAC or Windows settings. Credentials are not part of the
/// endpoint: `upstream` looks them up by endpoint, which doubles as the allow-list of proxies that may
/// receive credentials (PAC-14).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ProxyEndpoint {
    pub host: Host,
    pub port: u16,
}

/// One way to reach a target: straight there, or through an HTTP proxy (CONNECT for tunnels,
/// absolute-form for plain `http://`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Hop {
    Direct,
    Proxy(ProxyEndpoint),
}

/// What the proxy does with a target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Relay bytes blind (CONNECT) or forward the request as is (absolute-form `http://`).
    Tunnel,
    /// Terminate TLS with a locally minted certificate and inject a token; `profile` names the
    /// interception profile (audience and injection scheme) that matched.
    Intercept { profile: Arc<str> },
    /// Refuse with 403; `reason` is shown to the user.
    Block { reason: Arc<str> },
}

/// The routing decision for one target: a value, produced by `route`, consumed by the handler and
/// `upstream`. `hops` are tried left to right on connect-level errors only (PROTOCOL.md §4.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    pub hops: Vec<Hop>,
    /// True when an explicit rule (or a `connect_to` mapping) allows this target to resolve to a
    /// loopback, link-local or otherwise local address; deny-by-default otherwise (BAD-22, BAD-26).
    pub allow_local: bool,
    /// Human explanation of which rule or source made the decision, for logs and `exoproxy route`.
    pub why: Arc<str>,
}

// === impl Host ===

impl Host {
    /// Parses and normalises a host as it appears in a URI authority or a config entry: an IPv6 literal
    /// in brackets, an IPv4 dotted quad, or a DNS name. Names are lower-cased and lose one trailing dot.
    /// Odd IPv4 spellings (`127.1`, `2130706433`, `0x7f000001`, `0177.0.0.1`) are rejected, since
    /// resolvers disagree on them and they are a classic way around deny lists (BAD-22).
    pub fn parse(s: &str) -> Result<Host, TargetError> {
        if s.is_empty() {
            return Err(TargetError("empty host".into()));
        }
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner
                .strip_suffix(']')
                .ok_or_else(|| TargetError(format!("unterminated IPv6 literal {s:?}")))?;
            if inner.contains('%') {
                return Err(TargetError(format!(
                    "IPv6 zone identifiers are not allowed: {s:?}"
                )));
            }
            return inner
                .parse::<Ipv6Addr>()
                .map(|ip| Host::Ip(IpAddr::V6(ip)))
                .map_err(|_| TargetError(format!("invalid IPv6 literal {s:?}")));
        }
        if let Ok(ip) = s.parse::<Ipv4Addr>() {
            return Ok(Host::Ip(IpAddr::V4(ip)));
        }
        Self::parse_name(s)
    }

    fn parse_name(s: &str) -> Result<Host, TargetError> {
        let name = s.strip_suffix('.').unwrap_or(s);
        if name.is_empty() || name.len() > 253 {
            return Err(TargetError(format!("invalid host name length: {s:?}")));
        }
        for label in name.split('.') {
            let valid = !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid {
                return Err(TargetError(format!(
                    "invalid host name {s:?}: labels are 1-63 ASCII letters, digits, '-' or '_' (use punycode for IDNs)"
                )));
            }
        }
        if looks_like_numeric_ipv4(name) {
            return Err(TargetError(format!(
                "ambiguous numeric host {s:?}: write IPv4 addresses as four decimal octets"
            )));
        }
        Ok(Host::Name(name.to_ascii_lowercase().into()))
    }

    /// The IP address, when the host is a literal.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::Ip(ip) => Some(*ip),
            Host::Name(_) => None,
        }
    }

    /// The host as written in a URI authority (IPv6 in brackets).
    pub fn to_authority_host(&self) -> String {
        match self {
            Host::Name(n) => n.to_string(),
            Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
            Host::Ip(IpAddr::V4(ip)) => ip.to_string(),
        }
    }

    /// The host as a resolver or TLS SNI wants it (IPv6 without brackets).
    pub fn as_str_for_lookup(&self) -> String {
        match self {
            Host::Name(n) => n.to_string(),
            Host::Ip(ip) => ip.to_string(),
        }
    }
}

/// True for names made only of digits, dots and hex markers that some resolvers read as IPv4
/// (`127.1`, `2130706433`, `0x7f.1`): the last label is numeric or hex.
fn looks_like_numeric_ipv4(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name);
    let numeric = |l: &str| {
        let l = l.to_ascii_lowercase();
        match l.strip_prefix("0x") {
            Some(hex) => hex.bytes().all(|b| b.is_ascii_hexdigit()),
            None => !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()),
        }
    };
    numeric(last)
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_authority_host())
    }
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

// === impl Target ===

impl Target {
    /// Parses a CONNECT request-target (`host:port`, `[v6]:port`), strictly: no userinfo, path, query,
    /// fragment, percent-encoding or whitespace; port 1-65535 in plain decimal (BAD-20, BAD-21).
    pub fn parse_connect(authority: &str) -> Result<Target, TargetError> {
        let (host, port) = split_host_port(authority)?;
        let port = port.ok_or_else(|| {
            TargetError(format!(
                "CONNECT target {authority:?} has no port: write host:port"
            ))
        })?;
        Ok(Target {
            host: Host::parse(host)?,
            port,
            scheme: Scheme::Connect,
        })
    }

    /// Builds the target of an absolute-form `http://` request from its URI authority; the port
    /// defaults to 80.
    pub fn from_http_authority(authority: &str) -> Result<Target, TargetError> {
        let (host, port) = split_host_port(authority)?;
        Ok(Target {
            host: Host::parse(host)?,
            port: port.unwrap_or(80),
            scheme: Scheme::Http,
        })
    }

    /// The URL a PAC script is shown for this target: `https://host/` for tunnels (no path or query
    /// ever leaves the proxy, PAC-13), `http://host:port/path` for plain HTTP is built by the caller.
    pub fn pac_url(&self) -> String {
        match (self.scheme, self.port) {
            (Scheme::Connect, 443) => format!("https://{}/", self.host),
            (Scheme::Connect, p) => format!("https://{}:{p}/", self.host),
            (Scheme::Http, 80) => format!("http://{}/", self.host),
            (Scheme::Http, p) => format!("http://{}:{p}/", self.host),
        }
    }
}

/// Splits `host[:port]` with the strict rules of a proxy request-target.
fn split_host_port(authority: &str) -> Result<(&str, Option<u16>), TargetError> {
    let bad = |why: &str| TargetError(format!("invalid authority {authority:?}: {why}"));
    if authority.is_empty() {
        return Err(bad("empty"));
    }
    if let Some(c) = authority
        .chars()
        .find(|c| matches!(c, '@' | '/' | '?' | '#' | '%' | '\\') || c.is_whitespace())
    {
        return Err(bad(&format!("character {c:?} is not allowed")));
    }
    let (host, port) = if authority.starts_with('[') {
        match authority.find(']') {
            Some(end) => match &authority[end + 1..] {
                "" => (&authority[..=end], None),
                rest => match rest.strip_prefix(':') {
                    Some(p) => (&authority[..=end], Some(p)),
                    None => return Err(bad("junk after IPv6 literal")),
                },
            },
            None => return Err(bad("unterminated IPv6 literal")),
        }
    } else {
        match authority.matches(':').count() {
            0 => (authority, None),
            1 => {
                let (h, p) = authority.split_at(authority.rfind(':').unwrap_or(0));
                (h, Some(&p[1..]))
            }
            _ => return Err(bad("IPv6 addresses must be written in brackets")),
        }
    };
    let port = port.map(parse_port).transpose().map_err(|e| bad(&e))?;
    Ok((host, port))
}

fn parse_port(p: &str) -> Result<u16, String> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port {p:?} is not a number"));
    }
    match p.parse::<u32>() {
        Ok(n @ 1..=65535) => Ok(n as u16),
        _ => Err(format!("port {p} is out of range 1-65535")),
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {self}", self.scheme)
    }
}

// === impl ProxyEndpoint ===

impl ProxyEndpoint {
    /// Parses `host:port` (port required) as written in a PAC directive or a settings string.
    pub fn parse(s: &str) -> Result<ProxyEndpoint, TargetError> {
        let (host, port) = split_host_port(s)?;
        let port = port.ok_or_else(|| TargetError(format!("proxy {s:?} has no port")))?;
        Ok(ProxyEndpoint {
            host: Host::parse(host)?,
            port,
        })
    }
}

impl fmt::Display for ProxyEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl fmt::Debug for ProxyEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

// === impl Hop ===

impl fmt::Display for Hop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hop::Direct => f.write_str("DIRECT"),
            Hop::Proxy(p) => write!(f, "PROXY {p}"),
        }
    }
}

impl fmt::Debug for Hop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

// === impl Decision ===

impl Decision {
    /// A tunnel straight to the target.
    pub fn direct(why: impl Into<Arc<str>>) -> Decision {
        Decision {
            action: Action::Tunnel,
            hops: vec![Hop::Direct],
            allow_local: false,
            why: why.into(),
        }
    }

    /// A refusal.
    pub fn block(reason: impl Into<Arc<str>>) -> Decision {
        let reason: Arc<str> = reason.into();
        Decision {
            action: Action::Block {
                reason: reason.clone(),
            },
            hops: Vec::new(),
            allow_local: false,
            why: reason,
        }
    }
}

impl fmt::Display for Decision {
    /// One line, e.g. `TUNNEL via PROXY proxy.corp:8080, DIRECT (rule: bypass *.corp)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.action {
            Action::Block { reason } => return write!(f, "BLOCK ({reason})"),
            Action::Tunnel => f.write_str("TUNNEL")?,
            Action::Intercept { profile } => write!(f, "INTERCEPT [{profile}]")?,
        }
        let hops: Vec<String> = self.hops.iter().map(Hop::to_string).collect();
        write!(f, " via {} ({})", hops.join(", "), self.why)
    }
}

#[cfg(test)]
mod tests;

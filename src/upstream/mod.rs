//! MECHANISM: reach a target through the hops of a [`Decision`]: direct dial (with `connect_to`
//! overrides), CONNECT through a proxy, proxy authentication, failover with bad-proxy memory.
//!
//! Contract (interface fixed; implementation in progress):
//! - Dial first, report errors as [`ProxyError`] naming the hop that failed; the handler answers the
//!   client only after [`Upstream::connect`] returned.
//! - Hops are tried left to right on connect-level errors only; a proxy that failed is skipped for
//!   `bad_proxy_ttl` (5 min, Chromium semantics), measured on tokio's clock.
//! - Resolved addresses that are loopback, link-local, unspecified or one of `own_addrs` are refused
//!   unless `decision.allow_local` or a `connect_to` mapping applies (BAD-22…BAD-26).
//! - Credentials go only to proxies listed in `credentials` (PAC-14); they are never logged.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::error::ProxyError;
use crate::target::{Decision, Hop, ProxyEndpoint, Target};

/// `--connect-to HOST:PORT:ADDR:PORT`: requests for `host:port` dial `to` instead (curl semantics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectTo {
    /// Requested host (normalised); empty matches any host.
    pub host: String,
    /// Requested port; `None` matches any port.
    pub port: Option<u16>,
    /// Address to dial instead: a host (name or IP) and port.
    pub to_host: String,
    pub to_port: u16,
}

/// Proxy credentials for Basic (and later NTLM) authentication; `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyCredentials {
    pub username: String,
    pub password: zeroize::Zeroizing<String>,
}

impl std::fmt::Debug for ProxyCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProxyCredentials({}, [redacted])", self.username)
    }
}

/// Typed upstream configuration, built by `config::validate`.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub connect_to: Vec<ConnectTo>,
    /// Credentials per proxy endpoint; also the allow-list of proxies that may receive credentials.
    pub credentials: Vec<(ProxyEndpoint, ProxyCredentials)>,
    /// TCP connect timeout per hop (5 s).
    pub connect_timeout: Duration,
    /// Time for an upstream proxy to answer CONNECT (10 s).
    pub connect_reply_timeout: Duration,
    /// Budget across all hops of one request (30 s).
    pub total_timeout: Duration,
    /// How long a failed proxy is skipped (5 min).
    pub bad_proxy_ttl: Duration,
    /// The proxy's own listen addresses (filled in by `app` after binding), refused as targets.
    pub own_addrs: Vec<SocketAddr>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            connect_to: Vec::new(),
            credentials: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            connect_reply_timeout: Duration::from_secs(10),
            total_timeout: Duration::from_secs(30),
            bad_proxy_ttl: Duration::from_secs(300),
            own_addrs: Vec::new(),
        }
    }
}

/// An established byte stream to the target (through zero or more proxies).
#[derive(Debug)]
pub struct Connected {
    pub stream: TcpStream,
    /// The hop that worked.
    pub hop: Hop,
}

/// A stream for forwarding a plain `http://` request: to the origin (send origin-form) or to a proxy
/// (send absolute-form, plus `proxy_authorization` when the proxy needs Basic).
#[derive(Debug)]
pub struct HttpConnected {
    pub stream: TcpStream,
    pub hop: Hop,
    /// Header value for `Proxy-Authorization`; redacted in `Debug`.
    pub proxy_authorization: Option<ProxyAuthorization>,
}

/// A `Proxy-Authorization` header value; never printed.
#[derive(Clone)]
pub struct ProxyAuthorization(pub zeroize::Zeroizing<String>);

impl std::fmt::Debug for ProxyAuthorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProxyAuthorization([redacted])")
    }
}

/// The dialer, shared by all connections (`Arc<Upstream>`).
#[derive(Debug)]
pub struct Upstream {
    #[allow(dead_code)]
    config: UpstreamConfig,
}

impl Upstream {
    pub fn new(config: UpstreamConfig) -> Upstream {
        Upstream { config }
    }

    /// A tunnel to `target` following `decision.hops` (CONNECT through proxies).
    pub async fn connect(
        &self,
        target: &Target,
        decision: &Decision,
    ) -> Result<Connected, ProxyError> {
        let _ = (target, decision);
        Err(ProxyError::Internal("upstream not implemented".into()))
    }

    /// A connection for forwarding a plain `http://` request.
    pub async fn connect_http(
        &self,
        target: &Target,
        decision: &Decision,
    ) -> Result<HttpConnected, ProxyError> {
        let _ = (target, decision);
        Err(ProxyError::Internal("upstream not implemented".into()))
    }
}

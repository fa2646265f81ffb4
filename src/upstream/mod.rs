//! MECHANISM: reach a target through the hops of a [`Decision`]: direct dial (with `connect_to`
//! overrides), CONNECT through a proxy, proxy authentication, failover with bad-proxy memory.
//!
//! Contract:
//! - Dial first, report errors as [`ProxyError`] naming the hop that failed; the handler answers the
//!   client only after [`Upstream::connect`] returned.
//! - Hops are tried left to right on connect-level errors only; a proxy that failed is skipped for
//!   `bad_proxy_ttl` (5 min, Chromium semantics), measured on tokio's clock.
//! - Resolved addresses that are loopback, link-local or unspecified are refused unless
//!   `decision.allow_local` or a `connect_to` mapping applies (BAD-22…BAD-26); targets that *name* a
//!   local address are refused before any hop is contacted, proxies included. Our own listen
//!   addresses (`own_addrs`) are always refused: as a target (403) and as a hop (`proxy_loop`, BAD-30).
//! - Only connect-level failures (refused, reset, timeout, unresolvable) move to the next hop and mark
//!   a proxy bad; a 407, a 403 or a malformed CONNECT reply stops at that proxy (FLT-3, BAD-18).
//! - Credentials go only to proxies listed in `credentials` (PAC-14), and only after that proxy asked
//!   for a scheme with a 407 (Negotiate → NTLM → Basic, see [`auth`]); they are never logged.
//! - NTLM/Negotiate authenticate a connection: every leg runs on the same keep-alive connection, a
//!   proxy that closes mid-handshake gets one fresh start (FLT-12), and a connection is returned only
//!   once the proxy accepted it. Plain `http://` forwarding authenticates its connection with a `HEAD`
//!   of the target's root before the request is sent. A rejected handshake is 502
//!   `upstream_auth_failed` and does not mark the proxy bad (FLT-3).

pub mod auth;
mod chain;
mod direct;
mod failover;
pub mod ntlm;
#[cfg(windows)]
mod sspi;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

use self::auth::Scheme;
use self::chain::{ConnectReply, Handshake, ReplyKind};
use self::direct::{AddrPolicy, DialPlan};
use self::failover::BadProxies;
use crate::error::ProxyError;
use crate::target::{Decision, Hop, ProxyEndpoint, Target};

/// Part of this module's configuration; the type lives in the shared vocabulary (`target`).
pub use crate::target::ProxyCredentials;

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
    config: UpstreamConfig,
    /// Proxies that failed at connect level recently (skipped, then tried last).
    bad: BadProxies,
    /// Proxies that asked for Basic before: later requests send credentials at once instead of
    /// paying a 407 round trip each time. Never filled without a 407 that offered Basic.
    wants_basic: Mutex<HashSet<ProxyEndpoint>>,
    /// What proxies with credentials asked for before: a handshake scheme (start it at once), or no
    /// authentication at all (plain `http://` then skips its authenticating HEAD for a while).
    learned: Mutex<HashMap<ProxyEndpoint, Learned>>,
}

/// What a proxy with credentials wanted the last time we asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Learned {
    Handshake(Scheme),
    /// It let an unauthenticated request through at this instant.
    NoAuth(Instant),
}

/// How one hop failed: only connect-level failures move on to the next hop (docs/PROTOCOL.md#pac-failover).
#[derive(Debug)]
pub(crate) enum HopError {
    /// Refused, reset, timed out, unresolvable: try the next hop and remember the proxy as bad.
    ConnectLevel(ProxyError),
    /// The hop answered and said no (407, 403, a malformed reply), or policy refused: stop here.
    Fatal(ProxyError),
}

// === impl Upstream ===

impl Upstream {
    pub fn new(config: UpstreamConfig) -> Upstream {
        let bad = BadProxies::new(config.bad_proxy_ttl);
        Upstream {
            config,
            bad,
            wants_basic: Mutex::new(HashSet::new()),
            learned: Mutex::new(HashMap::new()),
        }
    }

    /// The proxies remembered as bad (failed at connect level within the TTL) and the time left on
    /// each mark: a read-only view for the status page.
    pub fn bad_proxies(&self) -> Vec<(ProxyEndpoint, Duration)> {
        self.bad.snapshot()
    }

    /// Starts with `previous`'s bad-proxy memory (a configuration reload: the new dialer must not
    /// try a proxy that just failed first again).
    pub fn inherit_bad_proxies(&self, previous: &Upstream) {
        self.bad.inherit(&previous.bad);
    }

    /// A tunnel to `target` following `decision.hops` (CONNECT through proxies).
    pub async fn connect(
        &self,
        target: &Target,
        decision: &Decision,
    ) -> Result<Connected, ProxyError> {
        refuse_local_literal(target, decision)?;
        let (stream, hop) = self
            .failover(decision, |hop| self.tunnel_via(hop, target, decision))
            .await?;
        Ok(Connected { stream, hop })
    }

    /// A connection for forwarding a plain `http://` request.
    pub async fn connect_http(
        &self,
        target: &Target,
        decision: &Decision,
    ) -> Result<HttpConnected, ProxyError> {
        refuse_local_literal(target, decision)?;
        let (stream, hop) = self
            .failover(decision, |hop| self.http_via(hop, target, decision))
            .await?;
        let proxy_authorization = match &hop {
            Hop::Proxy(p) => self.preemptive_basic(p),
            Hop::Direct => None,
        };
        Ok(HttpConnected {
            stream,
            hop,
            proxy_authorization,
        })
    }

    /// Remembers that `proxy` demanded Basic for a plain request (seen by `forward`), so that later
    /// connections to it carry credentials. Returns the header to retry with, if we have credentials.
    pub fn basic_requested(&self, proxy: &ProxyEndpoint) -> Option<ProxyAuthorization> {
        let creds = self.credentials_for(proxy)?;
        if let Ok(mut set) = self.wants_basic.lock() {
            set.insert(proxy.clone());
        }
        Some(auth::basic_authorization(creds))
    }

    /// How long a plain `http://` request through a proxy waits for the response head: the CONNECT
    /// reply timeout, so that a silent proxy costs the same on both paths (docs/TESTING.md#flt-2).
    pub fn first_byte_timeout(&self) -> Duration {
        self.config.connect_reply_timeout
    }

    /// Remembers `proxy` as bad (skipped for `bad_proxy_ttl`): `forward` saw it accept a request and
    /// stay silent, a failure the dial itself cannot see.
    pub fn mark_failed(&self, proxy: &ProxyEndpoint) {
        self.bad.mark_bad(proxy);
    }

    /// Tries hops left to right (bad proxies last) within the total budget; connect-level errors
    /// move on, anything else stops. Refuses a hop that is this proxy before any attempt (BAD-30).
    async fn failover<'a, F, Fut>(
        &'a self,
        decision: &'a Decision,
        attempt: F,
    ) -> Result<(TcpStream, Hop), ProxyError>
    where
        F: Fn(Hop) -> Fut,
        Fut: std::future::Future<Output = Result<TcpStream, HopError>> + 'a,
    {
        self.check_loops(&decision.hops)?;
        let deadline = Instant::now() + self.config.total_timeout;
        let mut failures: Vec<ProxyError> = Vec::new();
        for hop in self.bad.order(&decision.hops) {
            let outcome = tokio::time::timeout_at(deadline, attempt(hop.clone())).await;
            let err = match outcome {
                Ok(Ok(stream)) => {
                    if let Hop::Proxy(p) = &hop {
                        self.bad.mark_good(p);
                    }
                    return Ok((stream, hop));
                }
                Ok(Err(HopError::Fatal(e))) => return Err(e),
                Ok(Err(HopError::ConnectLevel(e))) => e,
                Err(_) => ProxyError::UpstreamTimeout {
                    target: hop.to_string(),
                    after: self.config.total_timeout,
                    detail: "the total connect budget ran out".into(),
                },
            };
            tracing::debug!(%hop, error = %err, "hop failed at connect level");
            if let Hop::Proxy(p) = &hop {
                self.bad.mark_bad(p);
            }
            failures.push(err);
            if Instant::now() >= deadline {
                break;
            }
        }
        Err(summarise(failures))
    }

    /// A hop naming one of our own listen addresses literally is a loop; no socket is opened.
    /// (Names that resolve to us are caught after resolution by the same check.)
    fn check_loops(&self, hops: &[Hop]) -> Result<(), ProxyError> {
        for hop in hops {
            if let Hop::Proxy(p) = hop {
                let own = p.host.ip().is_some_and(|ip| {
                    direct::is_own_addr(SocketAddr::new(ip, p.port), &self.config.own_addrs)
                });
                let localhost = matches!(&p.host, crate::target::Host::Name(n) if &**n == "localhost")
                    && self.config.own_addrs.iter().any(|a| {
                        a.port() == p.port && (a.ip().is_loopback() || a.ip().is_unspecified())
                    });
                if own || localhost {
                    return Err(ProxyError::ProxyLoop(p.to_string()));
                }
            }
        }
        Ok(())
    }

    async fn tunnel_via(
        &self,
        hop: Hop,
        target: &Target,
        decision: &Decision,
    ) -> Result<TcpStream, HopError> {
        match hop {
            Hop::Direct => self.dial_target(target, decision).await,
            Hop::Proxy(proxy) => self.connect_through(&proxy, target).await,
        }
    }

    async fn http_via(
        &self,
        hop: Hop,
        target: &Target,
        decision: &Decision,
    ) -> Result<TcpStream, HopError> {
        match hop {
            Hop::Direct => self.dial_target(target, decision).await,
            Hop::Proxy(proxy) if self.needs_http_auth(&proxy) => {
                let request = |auth: Option<&ProxyAuthorization>| chain::head_request(target, auth);
                self.authenticated(&proxy, &request, ReplyKind::Head).await
            }
            Hop::Proxy(proxy) => self.dial_proxy(&proxy).await,
        }
    }

    async fn dial_target(
        &self,
        target: &Target,
        decision: &Decision,
    ) -> Result<TcpStream, HopError> {
        let plan = DialPlan::for_target(target, &self.config.connect_to);
        let policy = AddrPolicy::Target {
            allow_local: decision.allow_local || plan.mapped,
        };
        direct::dial(
            &plan.host,
            plan.port,
            policy,
            &self.config.own_addrs,
            self.config.connect_timeout,
        )
        .await
    }

    async fn dial_proxy(&self, proxy: &ProxyEndpoint) -> Result<TcpStream, HopError> {
        direct::dial(
            &proxy.host.as_str_for_lookup(),
            proxy.port,
            AddrPolicy::Proxy,
            &self.config.own_addrs,
            self.config.connect_timeout,
        )
        .await
        .map_err(|e| match e {
            HopError::ConnectLevel(e) => HopError::ConnectLevel(name_proxy(proxy, e)),
            fatal => fatal,
        })
    }

    /// CONNECT through `proxy`, authenticating as the proxy asks (see [`Upstream::authenticated`]).
    async fn connect_through(
        &self,
        proxy: &ProxyEndpoint,
        target: &Target,
    ) -> Result<TcpStream, HopError> {
        let request = |auth: Option<&ProxyAuthorization>| chain::connect_request(target, auth);
        self.authenticated(proxy, &request, ReplyKind::Connect)
            .await
    }

    /// Sends `request` to `proxy` and returns the connection once the proxy accepted it. A proxy known
    /// to want a handshake gets it at once; otherwise the first 407 picks the scheme: Basic is retried
    /// on a fresh connection (a proxy may close after a 407), NTLM/Negotiate continue on this one.
    async fn authenticated(
        &self,
        proxy: &ProxyEndpoint,
        request: &(dyn Fn(Option<&ProxyAuthorization>) -> Vec<u8> + Sync),
        kind: ReplyKind,
    ) -> Result<TcpStream, HopError> {
        if let Some(scheme) = self.learned_handshake(proxy) {
            return self.run_handshake(proxy, scheme, request, kind, None).await;
        }
        let auth = self.preemptive_basic(proxy);
        let mut stream = self.dial_proxy(proxy).await?;
        let timeout = self.config.connect_reply_timeout;
        let reply =
            chain::exchange(&mut stream, proxy, &request(auth.as_ref()), kind, timeout).await?;
        let challenge = match reply {
            ConnectReply::Established => {
                self.learn(proxy, Learned::NoAuth(Instant::now()));
                return Ok(stream);
            }
            ConnectReply::HeadAnswered { reusable } => {
                // The proxy wants no authentication (the probe reached the origin).
                self.learn(proxy, Learned::NoAuth(Instant::now()));
                return match reusable {
                    true => Ok(stream),
                    false => self.dial_proxy(proxy).await,
                };
            }
            ConnectReply::AuthRequired(challenge) => challenge,
            other => return Err(not_established(proxy, other)),
        };
        let scheme = self.answer_407(proxy, &challenge.challenges, auth.is_some())?;
        if scheme.is_handshake() {
            self.learn(proxy, Learned::Handshake(scheme));
            let reuse = challenge.reusable.then_some(stream);
            return self
                .run_handshake(proxy, scheme, request, kind, reuse)
                .await;
        }
        self.basic_retry(proxy, request, kind).await
    }

    /// After a 407 offering Basic: once more on a fresh connection, with the credentials.
    async fn basic_retry(
        &self,
        proxy: &ProxyEndpoint,
        request: &(dyn Fn(Option<&ProxyAuthorization>) -> Vec<u8> + Sync),
        kind: ReplyKind,
    ) -> Result<TcpStream, HopError> {
        let timeout = self.config.connect_reply_timeout;
        let auth = self.basic_requested(proxy);
        let mut stream = self.dial_proxy(proxy).await?;
        if kind == ReplyKind::Head {
            // Basic travels with each plain request (`HttpConnected::proxy_authorization`): no need
            // to authenticate the connection itself.
            return Ok(stream);
        }
        match chain::exchange(&mut stream, proxy, &request(auth.as_ref()), kind, timeout).await? {
            ConnectReply::Established => Ok(stream),
            ConnectReply::AuthRequired(again) => Err(auth_failed(
                proxy,
                &again.challenges,
                "it rejected the configured credentials",
            )),
            other => Err(not_established(proxy, other)),
        }
    }

    /// An NTLM/Negotiate handshake, on `reuse` (the connection that carried the first 407) or a
    /// fresh connection; restarted once on a fresh connection when the proxy closes mid-way (FLT-12).
    async fn run_handshake(
        &self,
        proxy: &ProxyEndpoint,
        scheme: Scheme,
        request: &(dyn Fn(Option<&ProxyAuthorization>) -> Vec<u8> + Sync),
        kind: ReplyKind,
        mut reuse: Option<TcpStream>,
    ) -> Result<TcpStream, HopError> {
        let creds = self
            .credentials_for(proxy)
            .ok_or_else(|| auth_failed(proxy, &[], "no credentials are configured for it"))?;
        let host = proxy.host.as_str_for_lookup();
        for attempt in 0..2 {
            let mut stream = match reuse.take() {
                Some(stream) => stream,
                None => self.dial_proxy(proxy).await?,
            };
            let mut session = auth::Session::start(scheme, creds, &host)
                .map_err(|e| auth_failed(proxy, &[], &e))?;
            let timeout = self.config.connect_reply_timeout;
            match chain::handshake(&mut stream, proxy, request, kind, &mut session, timeout).await?
            {
                Handshake::Done => return Ok(stream),
                Handshake::Rejected(challenges) => {
                    // Forget the scheme: the next request asks afresh (the proxy may have changed).
                    self.forget(proxy);
                    let why = format!("it rejected the configured credentials ({})", scheme.name());
                    return Err(auth_failed(proxy, &challenges, &why));
                }
                Handshake::Closed => {
                    tracing::debug!(%proxy, attempt, scheme = scheme.name(), "proxy closed the connection mid-handshake");
                }
            }
        }
        Err(auth_failed(
            proxy,
            &[],
            &format!(
                "it closed the connection during the {} handshake twice",
                scheme.name()
            ),
        ))
    }

    /// What to do after a 407: the best scheme the proxy offered that the configured credentials
    /// allow, unless we already sent credentials. Anything else is a clear failure naming the
    /// offered schemes.
    fn answer_407(
        &self,
        proxy: &ProxyEndpoint,
        challenges: &[auth::Challenge],
        already_sent: bool,
    ) -> Result<Scheme, HopError> {
        if challenges.is_empty() {
            return Err(HopError::Fatal(refused(
                proxy,
                "407 without Proxy-Authenticate",
            )));
        }
        if already_sent {
            return Err(auth_failed(
                proxy,
                challenges,
                "it rejected the configured credentials",
            ));
        }
        let creds = self.credentials_for(proxy).ok_or_else(|| {
            auth_failed(proxy, challenges, "no credentials are configured for it")
        })?;
        auth::choose(challenges, creds)
            .ok_or_else(|| auth_failed(proxy, challenges, "no supported scheme"))
    }

    /// Plain `http://` through `proxy` authenticates its connection first when the proxy has
    /// credentials, is not known to want Basic (sent with the request instead) and did not let an
    /// unauthenticated request through recently.
    fn needs_http_auth(&self, proxy: &ProxyEndpoint) -> bool {
        if self.credentials_for(proxy).is_none() || self.preemptive_basic(proxy).is_some() {
            return false;
        }
        let learned = self.learned.lock().ok().and_then(|m| m.get(proxy).copied());
        match learned {
            Some(Learned::NoAuth(at)) => at.elapsed() >= self.config.bad_proxy_ttl,
            _ => true,
        }
    }

    fn learned_handshake(&self, proxy: &ProxyEndpoint) -> Option<Scheme> {
        match self.learned.lock().ok()?.get(proxy) {
            Some(Learned::Handshake(scheme)) => Some(*scheme),
            _ => None,
        }
    }

    fn learn(&self, proxy: &ProxyEndpoint, what: Learned) {
        if self.credentials_for(proxy).is_none() {
            return;
        }
        if let Ok(mut map) = self.learned.lock() {
            map.insert(proxy.clone(), what);
        }
    }

    fn forget(&self, proxy: &ProxyEndpoint) {
        if let Ok(mut map) = self.learned.lock() {
            map.remove(proxy);
        }
    }

    fn credentials_for(&self, proxy: &ProxyEndpoint) -> Option<&ProxyCredentials> {
        self.config
            .credentials
            .iter()
            .find(|(endpoint, _)| endpoint == proxy)
            .map(|(_, creds)| creds)
    }

    /// Basic credentials for a proxy that asked for them before (never unasked).
    fn preemptive_basic(&self, proxy: &ProxyEndpoint) -> Option<ProxyAuthorization> {
        let asked = self
            .wants_basic
            .lock()
            .map(|s| s.contains(proxy))
            .unwrap_or(false);
        match asked {
            true => self.credentials_for(proxy).map(auth::basic_authorization),
            false => None,
        }
    }
}

/// A target that names a local address (`127.0.0.1`, `[::1]`, `localhost`, `*.localhost`) is refused
/// before any hop is contacted, proxies included: through a proxy it would reach the proxy's own
/// machine (BAD-22). Names that only *resolve* to local addresses are checked after resolution.
fn refuse_local_literal(target: &Target, decision: &Decision) -> Result<(), ProxyError> {
    if decision.allow_local {
        return Ok(());
    }
    match target.host.is_local() {
        true => Err(ProxyError::ConnectDenied {
            target: target.to_string(),
            reason: "it is a local address; add an allow_local rule if this is intended".into(),
        }),
        false => Ok(()),
    }
}

fn name_proxy(proxy: &ProxyEndpoint, err: ProxyError) -> ProxyError {
    match err {
        ProxyError::UpstreamUnreachable { detail, .. } => ProxyError::UpstreamUnreachable {
            target: format!("proxy {proxy}"),
            detail,
        },
        ProxyError::UpstreamTimeout { after, detail, .. } => ProxyError::UpstreamTimeout {
            target: format!("proxy {proxy}"),
            after,
            detail,
        },
        other => other,
    }
}

/// A reply that is neither success nor 407 ends at this proxy (BAD-18, TLS-4).
fn not_established(proxy: &ProxyEndpoint, reply: ConnectReply) -> HopError {
    let detail = match reply {
        ConnectReply::Refused(status) => format!("it answered {status}"),
        ConnectReply::Malformed(detail) => detail,
        ConnectReply::Established
        | ConnectReply::HeadAnswered { .. }
        | ConnectReply::AuthRequired(_) => "unexpected reply".into(),
    };
    HopError::Fatal(refused(proxy, &detail))
}

fn refused(proxy: &ProxyEndpoint, detail: &str) -> ProxyError {
    ProxyError::UpstreamRefused {
        proxy: proxy.to_string(),
        detail: detail.to_string(),
    }
}

/// A 407 is not a connect-level error: the proxy is alive, so it is not marked bad (FLT-3).
fn auth_failed(proxy: &ProxyEndpoint, challenges: &[auth::Challenge], why: &str) -> HopError {
    HopError::Fatal(ProxyError::UpstreamAuthFailed {
        proxy: proxy.to_string(),
        offered: format!("{}; {why}", auth::offered_schemes(challenges)),
    })
}

/// One failure is reported as is; several become one message listing every hop, a timeout only
/// when every hop timed out.
fn summarise(mut failures: Vec<ProxyError>) -> ProxyError {
    if failures.len() <= 1 {
        return failures
            .pop()
            .unwrap_or_else(|| ProxyError::UpstreamUnreachable {
                target: "target".into(),
                detail: "the route has no hops".into(),
            });
    }
    let detail = failures
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    let all_timeouts = failures
        .iter()
        .all(|e| matches!(e, ProxyError::UpstreamTimeout { .. }));
    match all_timeouts {
        true => ProxyError::UpstreamTimeout {
            target: "every hop".into(),
            after: failures.iter().map(timeout_of).sum(),
            detail,
        },
        false => ProxyError::UpstreamUnreachable {
            target: "every hop".into(),
            detail,
        },
    }
}

fn timeout_of(e: &ProxyError) -> Duration {
    match e {
        ProxyError::UpstreamTimeout { after, .. } => *after,
        _ => Duration::ZERO,
    }
}

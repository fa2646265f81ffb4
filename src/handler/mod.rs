//! Per-connection and per-request orchestration: guard the head, ask `route` for a decision, dial
//! through `upstream`, then tunnel, forward or intercept (TLS termination and token injection, when
//! [`Proxy::with_intercept`] enabled it; otherwise intercepted targets are tunnelled blind). Errors
//! go to [`rescue`], the single error → response table.
//!
//! Contract:
//! - The head guard ([`head`]) runs before hyper: rejected input gets our 4xx and the connection is
//!   closed; nothing reaches `route` or `upstream`.
//! - A Block decision is a 403 before anything is dialled; everything after `decide` handles only
//!   Tunnel and Intercept.
//! - CONNECT: dial first, answer 200 only once the upstream stream exists (no body, no
//!   Content-Length, no Transfer-Encoding, no `Connection: close`: BAD-35), then splice, or serve
//!   the intercepted session (`intercept.rs`: the per-connection flow; what it stands on lives in
//!   [`crate::intercept`] and [`crate::inject`]).
//! - Absolute-form `http://`: one request per client connection (each request passes the guard), the
//!   response is relayed with hop-by-hop headers removed.
//! - One log line per request or tunnel: target, decision, hop, status, bytes, duration; never
//!   credentials.
//! - Each request reads the configuration-derived [`Routing`] once and keeps it to its end; a
//!   reload ([`Proxy::reload_config`]) swaps in a new snapshot for the requests after it and closes
//!   nothing (docs/ARCHITECTURE.md#live-configuration).

pub mod head;
mod intercept;
pub mod rescue;

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, RwLock};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use self::head::{HeadError, RequestHead};
use self::intercept::ClientAddrs;
use crate::admin::status::{ReloadOutcome, ReloadTrigger};
use crate::error::ProxyError;
use crate::intercept::InterceptState;
use crate::io::Rewind;
use crate::limits::Limits;
use crate::route::Router;
use crate::summary::Routed;
use crate::target::{Action, Decision, Hop, Target};
use crate::tunnel::{self, SpliceStats};
use crate::upstream::Upstream;

/// The body of every response the proxy sends.
pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// A boxed, sendable future, for [`Resolve`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where decisions come from: [`Router::decide`] in the product, a fixed decision in tests.
pub trait Resolve: Send + Sync + fmt::Debug {
    fn resolve<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<Decision, ProxyError>>;

    /// The served PAC for a client that named us as `host` (`GET /proxy.pac`), or `None` (400).
    fn served_pac<'a>(&'a self, _host: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(async { None })
    }

    /// True when `host` (`Host` header or absolute-form authority) is one of our listen addresses.
    fn is_own_host(&self, _host: &str) -> bool {
        false
    }
}

/// Shared state of the request path (`Arc<Proxy>`): the limits, fixed for the process, and the
/// current [`Routing`], which a configuration reload replaces.
#[derive(Debug)]
pub struct Proxy {
    /// Read once per request ([`Proxy::routing`]): a request or tunnel keeps the snapshot it
    /// started with (docs/ARCHITECTURE.md, "Live configuration").
    routing: RwLock<Arc<Routing>>,
    limits: Limits,
    /// Reads the configuration again and builds the next [`Routing`]; `None`: no reload.
    reloader: Option<Arc<dyn Reload>>,
}

/// The configuration-derived part of the request path, one immutable snapshot per configuration.
#[derive(Debug, Clone)]
pub struct Routing {
    pub resolver: Arc<dyn Resolve>,
    pub upstream: Arc<Upstream>,
    /// TLS interception and token injection; `None`: intercepted targets are tunnelled blind.
    pub intercept: Option<Arc<InterceptState>>,
    /// The status surface (`GET /`, `/status.json`, ...); `None`: those paths stay 400.
    pub admin: Option<Arc<crate::admin::status::Sources>>,
}

/// Builds the [`Routing`] of the configuration file as it is now (`app` implements it: only it
/// knows how the services are wired).
pub trait Reload: Send + Sync + fmt::Debug {
    /// Reads and validates the file again; on success calls `apply` with the new routing, then
    /// reports. An invalid file leaves everything as it was. Reloads never run concurrently.
    fn reload<'a>(
        &'a self,
        trigger: ReloadTrigger,
        apply: &'a (dyn Fn(Routing) + Send + Sync),
    ) -> BoxFuture<'a, ReloadOutcome>;
}

// === impl Resolve for Router ===

impl Resolve for Router {
    fn resolve<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<Decision, ProxyError>> {
        Box::pin(Router::decide(self, target))
    }

    fn served_pac<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            if !crate::admin::is_our_host(host, self.own_addrs()) {
                return None;
            }
            Some(crate::admin::served_pac(self, host).await)
        })
    }

    fn is_own_host(&self, host: &str) -> bool {
        crate::admin::is_our_host(host, self.own_addrs())
    }
}

// === impl Proxy ===

impl Proxy {
    /// The product wiring: decisions from the router.
    pub fn new(router: Arc<Router>, upstream: Arc<Upstream>, limits: Limits) -> Proxy {
        Proxy::with_resolver(router, upstream, limits)
    }

    /// Any decision source (tests use a fixed [`Decision`]).
    pub fn with_resolver(
        resolver: Arc<dyn Resolve>,
        upstream: Arc<Upstream>,
        limits: Limits,
    ) -> Proxy {
        let routing = Routing {
            resolver,
            upstream,
            intercept: None,
            admin: None,
        };
        Proxy {
            routing: RwLock::new(Arc::new(routing)),
            limits,
            reloader: None,
        }
    }

    /// Enables interception: `Action::Intercept` targets are TLS-terminated and get tokens.
    pub fn with_intercept(self, state: Arc<InterceptState>) -> Proxy {
        self.edit(|routing| routing.intercept = Some(state))
    }

    /// Enables the status surface on our own port (docs/STATUS.md).
    pub fn with_admin(self, sources: Arc<crate::admin::status::Sources>) -> Proxy {
        self.edit(|routing| routing.admin = Some(sources))
    }

    /// Enables [`Proxy::reload_config`].
    pub fn with_reloader(mut self, reloader: Arc<dyn Reload>) -> Proxy {
        self.reloader = Some(reloader);
        self
    }

    fn edit(self, change: impl FnOnce(&mut Routing)) -> Proxy {
        let mut routing = Routing::clone(&self.routing());
        change(&mut routing);
        self.set_routing(routing);
        self
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The routing in force now; the caller keeps this snapshot for the whole request.
    pub fn routing(&self) -> Arc<Routing> {
        self.routing
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set_routing(&self, routing: Routing) {
        *self
            .routing
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(routing);
    }

    /// Reads the configuration file again and, when it is valid, applies it to new requests;
    /// tunnels and requests in flight keep the routing they started with, tokens are kept. The
    /// outcome is also logged and shown on the status page (docs/STATUS.md, `config`). Without a
    /// reloader (tests, no file) the outcome is `refused` with the reason.
    pub async fn reload_config(&self, trigger: ReloadTrigger) -> ReloadOutcome {
        let Some(reloader) = &self.reloader else {
            return ReloadOutcome::refused(
                trigger,
                "this proxy was started without a reloadable configuration",
            );
        };
        reloader
            .reload(trigger, &|routing| self.set_routing(routing))
            .await
    }

    /// Serves one client connection: the guarded head, then hyper for exactly that request (CONNECT
    /// upgrades to a tunnel). `stop` (shutdown) or `evict` (the listener needs the slot of an idle
    /// connection) cancels a connection still waiting for its head; `evict` is dropped as soon as
    /// the head arrived, which tells the listener this connection is no longer idle.
    pub(crate) async fn serve_connection(
        self: Arc<Self>,
        mut stream: TcpStream,
        peer: SocketAddr,
        mut stop: watch::Receiver<bool>,
        mut evict: oneshot::Receiver<()>,
    ) {
        let read = tokio::select! {
            read = head::read_head(&mut stream, &self.limits) => read,
            _ = stop.wait_for(|stopped| *stopped) => return,
            Ok(()) = &mut evict => return,
        };
        drop(evict);
        let (head, buffered) = match read {
            Ok(ok) => ok,
            Err(HeadError::Gone) => return,
            Err(HeadError::Reject(err)) => return reject_raw(stream, peer, &err).await,
        };
        let addrs = ClientAddrs {
            peer,
            local: stream.local_addr().unwrap_or(peer),
        };
        let _open = crate::summary::Open::Connection.guard();
        let io = TokioIo::new(Rewind::new(buffered, stream));
        let proxy = self.clone();
        // Every tunnel spawned from this connection holds a clone of `alive`; the connection (and its
        // slot under the connection limit) lasts until the last one is dropped.
        let (alive, mut all_done) = mpsc::channel::<()>(1);
        let service = service_fn(move |req| proxy.clone().handle(req, alive.clone(), addrs));
        let served = self
            .http1_builder(&head)
            .serve_connection(io, service)
            .with_upgrades();
        if let Err(e) = served.await {
            tracing::debug!(%peer, error = %e, "client connection ended with an error");
        }
        let _ = all_done.recv().await;
    }

    /// Keep-alive only for CONNECT: hyper would add `Connection: close` to the 200 otherwise
    /// (BAD-35), while plain requests end the connection so that every request passes the guard.
    fn http1_builder(&self, head: &RequestHead) -> http1::Builder {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_read_timeout)
            .max_headers(self.limits.max_headers)
            .max_buf_size((self.limits.max_head_bytes + 1024).max(8192))
            .keep_alive(head.is_connect());
        builder
    }

    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        alive: mpsc::Sender<()>,
        addrs: ClientAddrs,
    ) -> Result<Response<ProxyBody>, Infallible> {
        #[cfg(feature = "demo")]
        inject_panic(&req);
        let started = Instant::now();
        let method = req.method().clone();
        let uri = redact_uri(req.uri());
        let host = req.uri().host().unwrap_or_default().to_string();
        let routing = self.routing();
        // The routing decision, when one was made: labels the request in the metrics.
        let decided = OnceLock::new();
        let result = match method {
            Method::CONNECT => {
                self.connect(&routing, req, started, alive, addrs, &decided)
                    .await
            }
            _ if self.is_status_request(&routing, &req) => {
                self.serve_status(&routing, &req, addrs).await
            }
            _ if self.is_action_request(&routing, &req) => {
                self.serve_action(&routing, req, addrs).await
            }
            _ => self.forward(&routing, req, started, &decided).await,
        };
        let response = result.unwrap_or_else(|err| {
            let rescue = rescue::Rescue::of(&err);
            tracing::debug!(%method, target = %uri, status = rescue.status.as_u16(), code = %rescue.code,
                error = %err, ms = started.elapsed().as_millis() as u64, "refused");
            record_error(&host, &rescue);
            rescue.response().map(|b| b.map_err(|never| match never {}).boxed())
        });
        crate::summary::request(response.status().as_u16());
        if let Some(routed) = decided.get() {
            crate::summary::routed(
                method == Method::CONNECT,
                *routed,
                response.status().as_u16(),
            );
        }
        Ok(response)
    }

    /// CONNECT: parse the authority strictly, decide, then tunnel or intercept.
    async fn connect(
        self: &Arc<Self>,
        routing: &Routing,
        req: Request<Incoming>,
        started: Instant,
        alive: mpsc::Sender<()>,
        addrs: ClientAddrs,
        decided: &OnceLock<Routed>,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let authority = req
            .uri()
            .authority()
            .map(|a| a.as_str())
            .unwrap_or_default();
        if head::has_userinfo(authority) {
            return Err(head::userinfo_refused());
        }
        let target = Target::parse_connect(authority).map_err(|e| ProxyError::BadRequest(e.0))?;
        let decision = self.decide(routing, &target, decided).await?;
        match self.interception(routing, &decision) {
            Some((state, profile)) => {
                let start = intercept::Start {
                    state,
                    upstream: routing.upstream.clone(),
                    profile,
                    target,
                    decision,
                    addrs,
                    limits: self.limits.clone(),
                };
                self.intercept(req, start, alive).await
            }
            None => {
                let upstream = &routing.upstream;
                self.tunnel(upstream, req, target, decision, started, alive)
                    .await
            }
        }
    }

    /// The interception state and profile when `decision` intercepts and interception is on;
    /// `None` relays the tunnel blind, as when interception is not configured (BAD-33).
    fn interception(
        &self,
        routing: &Routing,
        decision: &Decision,
    ) -> Option<(Arc<InterceptState>, Arc<str>)> {
        let Action::Intercept { profile } = &decision.action else {
            return None;
        };
        Some((routing.intercept.clone()?, profile.clone()))
    }

    /// Dial first; only then answer 200 and splice in the background, logging one line at the end.
    async fn tunnel(
        &self,
        upstream: &Upstream,
        req: Request<Incoming>,
        target: Target,
        decision: Decision,
        started: Instant,
        alive: mpsc::Sender<()>,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let connected = upstream.connect(&target, &decision).await?;
        let idle = self.limits.tunnel_idle;
        let open = crate::summary::Open::Tunnel.guard();
        tokio::spawn(async move {
            let stats = match hyper::upgrade::on(req).await {
                Ok(upgraded) => {
                    tunnel::splice(TokioIo::new(upgraded), connected.stream, idle).await
                }
                Err(e) => {
                    tracing::debug!(error = %e, "CONNECT upgrade failed");
                    SpliceStats::default()
                }
            };
            drop(open);
            crate::summary::relayed(stats.up, stats.down);
            tracing::debug!(method = "CONNECT", %target, %decision, hop = %connected.hop, status = 200,
                up = stats.up, down = stats.down, end = ?stats.end,
                ms = started.elapsed().as_millis() as u64, "tunnel closed");
            drop(alive);
        });
        Ok(Response::builder()
            .status(StatusCode::OK)
            .body(Empty::new().map_err(|never| match never {}).boxed())
            .unwrap_or_default())
    }

    /// Dial first; only then answer 200 and serve the intercepted session in the background.
    async fn intercept(
        &self,
        req: Request<Incoming>,
        start: intercept::Start,
        alive: mpsc::Sender<()>,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let connected = start
            .upstream
            .connect(&start.target, &start.decision)
            .await?;
        tracing::debug!(method = "CONNECT", target = %start.target, decision = %start.decision,
            hop = %connected.hop, status = 200, "intercepting");
        let open = crate::summary::Open::Tunnel.guard();
        tokio::spawn(async move {
            let _open = open;
            match hyper::upgrade::on(req).await {
                Ok(upgraded) => intercept::serve(start, upgraded, connected.stream).await,
                Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
            }
            drop(alive);
        });
        Ok(Response::builder()
            .status(StatusCode::OK)
            .body(Empty::new().map_err(|never| match never {}).boxed())
            .unwrap_or_default())
    }

    /// Absolute-form `http://`: decide, dial, forward, relay the response.
    async fn forward(
        self: &Arc<Self>,
        routing: &Routing,
        req: Request<Incoming>,
        started: Instant,
        decided: &OnceLock<Routed>,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let uri = req.uri();
        if uri.scheme().is_none() && uri.path() == crate::admin::PAC_PATH {
            return self.served_pac(routing, &req).await;
        }
        if uri.path() == crate::intercept::ca::CRL_PATH
            && let Some(response) = self.served_crl(routing, &req)
        {
            return response;
        }
        let authority = match (uri.scheme_str(), uri.authority()) {
            (Some(s), Some(a)) if s.eq_ignore_ascii_case("http") => a.as_str(),
            _ => return Err(ProxyError::NotAProxyRequest),
        };
        if head::has_userinfo(authority) {
            return Err(head::userinfo_refused());
        }
        let target =
            Target::from_http_authority(authority).map_err(|e| ProxyError::BadRequest(e.0))?;
        let decision = self.decide(routing, &target, decided).await?;
        if let Action::Intercept { .. } = decision.action {
            // Never send a token over plaintext (BAD-34).
            return Err(ProxyError::PlainHttpToIntercepted {
                host: target.host.to_string(),
            });
        }
        let method = req.method().clone();
        let (response, hop) = crate::forward::forward(
            &routing.upstream,
            &target,
            &decision,
            req,
            self.limits.stream_idle,
        )
        .await?;
        tracing::debug!(%method, %target, %decision, %hop, status = response.status().as_u16(),
            ms = started.elapsed().as_millis() as u64, "forwarded");
        Ok(response.map(BodyExt::boxed))
    }

    /// `GET /exoproxy-ca.crl` addressed to us (origin-form, or absolute-form from a client whose
    /// proxy is us): the local CA's current CRL, so WinRM's revocation check of our leaves passes.
    /// `None` when the request is for someone else or interception is off.
    fn served_crl(
        &self,
        routing: &Routing,
        req: &Request<Incoming>,
    ) -> Option<Result<Response<ProxyBody>, ProxyError>> {
        let state = routing.intercept.as_ref()?;
        let host = match req.uri().authority() {
            Some(authority) => authority.as_str(),
            None => req.headers().get(http::header::HOST)?.to_str().ok()?,
        };
        if req.method() != Method::GET || !routing.resolver.is_own_host(host) {
            return None;
        }
        let crl = match state.leaves().ca().crl_der() {
            Ok(der) => der,
            Err(e) => return Some(Err(ProxyError::Internal(format!("CRL: {e}")))),
        };
        let response = Response::builder()
            .header(
                http::header::CONTENT_TYPE,
                crate::intercept::ca::CRL_CONTENT_TYPE,
            )
            .header(http::header::CACHE_CONTROL, "max-age=3600")
            .body(
                http_body_util::Full::new(Bytes::from(crl))
                    .map_err(|never| match never {})
                    .boxed(),
            )
            .map_err(|e| ProxyError::Internal(e.to_string()));
        Some(response)
    }

    /// Origin-form request for a status-surface path while the surface is on.
    fn is_status_request(&self, routing: &Routing, req: &Request<Incoming>) -> bool {
        routing.admin.is_some()
            && req.uri().scheme().is_none()
            && crate::admin::STATUS_PATHS.contains(&req.uri().path())
    }

    /// Origin-form request under `/action/` while the surface is on (any method: the action gate
    /// answers 405 to all but POST).
    fn is_action_request(&self, routing: &Routing, req: &Request<Incoming>) -> bool {
        routing.admin.is_some()
            && req.uri().scheme().is_none()
            && crate::admin::action::name_of(req.uri().path()).is_some()
    }

    /// The status surface: `GET`, `Host` naming us (else 400, no data: DNS rebinding), and the
    /// connecting socket owned by our own OS user (else 403), as for token injection.
    async fn serve_status(
        &self,
        routing: &Routing,
        req: &Request<Incoming>,
        addrs: ClientAddrs,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        if req.method() != Method::GET {
            return Err(ProxyError::NotAProxyRequest);
        }
        let (sources, _) = self.admin_gate(routing, req, addrs).await?;
        let reply = crate::admin::status_reply(req.uri().path(), &sources)
            .ok_or(ProxyError::NotAProxyRequest)?;
        admin_response(200, reply.content_type, &[], reply.body)
    }

    /// `/action/<name>` (docs/STATUS.md, "Actions"): the status surface's gates, then
    /// [`crate::admin::action::handle`] (method, Origin, admin token, dispatch).
    async fn serve_action(
        &self,
        routing: &Routing,
        req: Request<Incoming>,
        addrs: ClientAddrs,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        use crate::admin::action::{self, ActionRequest, Refusal};
        let (sources, host) = self.admin_gate(routing, &req, addrs).await?;
        let (parts, body) = req.into_parts();
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let wants_json = header("accept").is_some_and(|a| a.contains("application/json"));
        let path = parts.uri.path();
        // Only a POST's body is read (bounded); anything else is refused by the gate unread.
        let body = match parts.method {
            Method::POST => match http_body_util::Limited::new(body, action::MAX_BODY)
                .collect()
                .await
            {
                Ok(collected) => collected.to_bytes(),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    let name = action::name_of(path).unwrap_or_default();
                    let answer = action::refused(&Refusal::TooLarge, name, wants_json);
                    return admin_response(
                        answer.status,
                        answer.content_type,
                        &answer.headers,
                        answer.body,
                    );
                }
                Err(e) => return Err(ProxyError::BadRequest(format!("action body: {e}"))),
            },
            _ => Bytes::new(),
        };
        let request = ActionRequest {
            method: parts.method.as_str(),
            host: &host,
            origin: header("origin"),
            token_header: header(action::TOKEN_HEADER),
            content_type: header("content-type"),
            body: &body,
        };
        let answer = action::handle(&sources, path, &request, wants_json).await;
        admin_response(
            answer.status,
            answer.content_type,
            &answer.headers,
            answer.body,
        )
    }

    /// The gates of every admin path but the PAC: `Host` names us (else 400, no data: DNS
    /// rebinding) and the connecting socket belongs to our own OS user (else 403). Returns the
    /// surface's sources and the `Host` value.
    async fn admin_gate(
        &self,
        routing: &Routing,
        req: &Request<Incoming>,
        addrs: ClientAddrs,
    ) -> Result<(Arc<crate::admin::status::Sources>, String), ProxyError> {
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| routing.resolver.is_own_host(h))
            .ok_or(ProxyError::NotAProxyRequest)?
            .to_string();
        let sources = routing.admin.clone().ok_or(ProxyError::NotAProxyRequest)?;
        let ClientAddrs { peer, local } = addrs;
        let user = tokio::task::spawn_blocking(move || crate::peer::check(peer, local))
            .await
            .unwrap_or_else(|e| crate::peer::PeerUser::Unknown(e.to_string()));
        if user != crate::peer::PeerUser::Same {
            return Err(ProxyError::ClientNotAuthorized(
                "the status page is only for the OS user running the proxy".into(),
            ));
        }
        Ok((sources, host))
    }

    /// Origin-form `GET /proxy.pac` addressed to us; anything else stays `NotAProxyRequest`.
    async fn served_pac(
        &self,
        routing: &Routing,
        req: &Request<Incoming>,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok());
        let pac = match (req.method(), host) {
            (&Method::GET, Some(host)) => routing.resolver.served_pac(host).await,
            _ => None,
        };
        let pac = pac.ok_or(ProxyError::NotAProxyRequest)?;
        Response::builder()
            .header(http::header::CONTENT_TYPE, crate::admin::PAC_CONTENT_TYPE)
            .header(http::header::CACHE_CONTROL, "no-store")
            .body(
                http_body_util::Full::new(Bytes::from(pac))
                    .map_err(|never| match never {})
                    .boxed(),
            )
            .map_err(|e| ProxyError::Internal(e.to_string()))
    }

    /// The routing decision (`Router::decide` in the product); a Block becomes a 403 here, so the
    /// request path after this point only sees Tunnel and Intercept. The decision is also noted
    /// in `decided`, the metrics' label.
    async fn decide(
        &self,
        routing: &Routing,
        target: &Target,
        decided: &OnceLock<Routed>,
    ) -> Result<Decision, ProxyError> {
        let decision = routing.resolver.resolve(target).await?;
        let _ = decided.set(routed_as(&decision));
        match &decision.action {
            Action::Block { reason } => Err(ProxyError::ConnectDenied {
                target: target.to_string(),
                reason: reason.to_string(),
            }),
            Action::Tunnel | Action::Intercept { .. } => Ok(decision),
        }
    }
}

/// The metrics' `decision` label of a routing decision: block, intercept, else the first hop.
fn routed_as(decision: &Decision) -> Routed {
    match (&decision.action, decision.hops.first()) {
        (Action::Block { .. }, _) => Routed::Block,
        (Action::Intercept { .. }, _) => Routed::Intercept,
        (Action::Tunnel, Some(Hop::Proxy(_))) => Routed::Proxy,
        (Action::Tunnel, _) => Routed::Direct,
    }
}

/// An admin reply: the status surface's security headers on every one (docs/STATUS.md), never an
/// `Access-Control-Allow-*` header.
fn admin_response(
    status: u16,
    content_type: &str,
    headers: &[(&'static str, String)],
    body: String,
) -> Result<Response<ProxyBody>, ProxyError> {
    let mut response = Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type);
    for (name, value) in crate::admin::SECURITY_HEADERS {
        response = response.header(name, value);
    }
    for (name, value) in headers {
        response = response.header(*name, value);
    }
    response
        .body(
            http_body_util::Full::new(Bytes::from(body))
                .map_err(|never| match never {})
                .boxed(),
        )
        .map_err(|e| ProxyError::Internal(e.to_string()))
}

/// SEC-20's fault injection (docs/TESTING.md#sec-20), only in builds with the `demo` feature (the
/// test suite's; never the product binary): a request carrying this header panics in the handler.
#[cfg(feature = "demo")]
pub const TEST_PANIC_HEADER: &str = "x-exoproxy-test-panic";

/// Panics on [`TEST_PANIC_HEADER`] with the request's headers in the message, as a careless
/// `unwrap` on request data would: the panic report must withhold them (`app::panic`).
#[cfg(feature = "demo")]
fn inject_panic(req: &Request<Incoming>) {
    if req.headers().contains_key(TEST_PANIC_HEADER) {
        panic!("injected panic; request headers: {:?}", req.headers());
    }
}

/// Answers a head the guard rejected, then closes; pipelined bytes are never read (BAD-10).
async fn reject_raw(mut stream: TcpStream, peer: SocketAddr, err: &ProxyError) {
    let rescue = rescue::Rescue::of(err);
    tracing::debug!(%peer, status = rescue.status.as_u16(), code = %rescue.code, error = %err,
        "rejected request head");
    crate::summary::request(rescue.status.as_u16());
    record_error("", &rescue);
    let _ = stream.write_all(&rescue.to_http1()).await;
    let _ = stream.shutdown().await;
    // Lingering a little lets the client read the answer before a reset caused by unread input.
    let mut sink = [0u8; 4096];
    let linger = async {
        while let Ok(n) = tokio::io::AsyncReadExt::read(&mut stream, &mut sink).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_millis(500), linger).await;
}

/// Remembers an answered error for the status page: host, status, code and hint only.
fn record_error(host: &str, rescue: &rescue::Rescue) {
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    crate::summary::error_answered(crate::summary::ErrorAnswered {
        at,
        host: host.to_string(),
        status: rescue.status.as_u16(),
        code: rescue.code.to_string(),
        hint: rescue.message.clone(),
    });
}

/// The URI for logs: scheme, host, port and path only (userinfo and queries may carry secrets).
fn redact_uri(uri: &http::Uri) -> String {
    let authority = uri.authority().map(|a| match a.port_u16() {
        Some(port) => format!("{}:{port}", a.host()),
        None => a.host().to_string(),
    });
    match (uri.scheme_str(), authority) {
        (Some(s), Some(a)) => format!("{s}://{a}{}", uri.path()),
        (None, Some(a)) => a,
        _ => uri.path().to_string(),
    }
}

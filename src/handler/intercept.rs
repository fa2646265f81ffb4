//! An intercepted CONNECT, per connection: terminate the client's TLS with a leaf from the local CA,
//! serve the decrypted HTTP/1.1 connection, and forward each request over one verified TLS
//! connection to the real host ([`Origin`]), with a fresh token on every request that needs one.
//!
//! Contract (docs/ARCHITECTURE.md#request-flow, docs/ARCHITECTURE.md#security-model,
//! docs/PROTOCOL.md#basic-to-oauth):
//! - The upstream was dialled before the 200 (the handler's job). Inside the tunnel the first bytes
//!   must be a TLS ClientHello, else the tunnel is closed with a log line. The client-side certificate
//!   is always the CONNECT host's (BAD-15); ALPN is `http/1.1` only.
//! - Upstream TLS is always verified; a failed handshake answers every client request with 502
//!   `upstream_tls_<kind>` and sends nothing upstream (FLT-8).
//! - One upstream connection per client connection (WS-Man affinity), redialled once when it died
//!   between requests ([`Origin::send`]); a request is never sent twice, except the single replay
//!   after a token rejection below (FLT-7).
//! - Per request: inner `Host` ≠ CONNECT host → 421, nothing sent (BAD-14). TRACE/TRACK → 405.
//!   [`inject::classify`] decides once: pass-through requests (non-injection paths, browser-marked
//!   requests: SEC-15) are forwarded untouched. Injected requests need the same OS user (SEC-3),
//!   an account (else 401 `Basic realm="exoproxy"`), the token of the host's own audience (TOK-11),
//!   which replaces the client's `Authorization` (SEC-17).
//! - A 401 or `insufficient_claims` answer to an injected request ([`inject::rejection`])
//!   re-acquires the token once (with the CAE claims) and replays the buffered request once; bodies
//!   over [`body::REPLAY_LIMIT`] stream and are never replayed. Everything else passes through unchanged:
//!   query strings, 302 and `Location`, `Set-Cookie`, 500 bodies, chunking.
//! - Errors on WS-Man paths are SOAP faults, on REST paths JSON errors ([`rescue`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::ProxyBody;
use super::rescue::{self, Rescue};
use crate::error::ProxyError;
use crate::forward::strip_hop_by_hop;
use crate::inject::{self, AccountChoice, Injection, Rejection, Treatment};
use crate::intercept::body::{self, OutBody, Prepared};
use crate::intercept::origin::Driver;
use crate::intercept::{InterceptState, Origin, peek_client_hello, server_config_for_host};
use crate::io::{IdleIo, Rewind};
use crate::limits::Limits;
use crate::peer::{self, PeerUser};
use crate::target::{Decision, Target};
use crate::token::secret::AccessToken;
use crate::token::{Audience, TokenError};
use crate::upstream::Upstream;

/// Longest wait for the client's ClientHello after the 200.
const CLIENT_HELLO_TIMEOUT: Duration = Duration::from_secs(30);

/// The client's TLS stream inside the tunnel.
type ClientTls = TlsStream<Rewind<TokioIo<Upgraded>>>;

/// The client socket of a connection, for the same-user check (SEC-3).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddrs {
    pub(crate) peer: SocketAddr,
    pub(crate) local: SocketAddr,
}

/// Everything [`serve`] needs from the handler.
pub(crate) struct Start {
    pub(crate) state: Arc<InterceptState>,
    pub(crate) upstream: Arc<Upstream>,
    pub(crate) target: Target,
    pub(crate) decision: Decision,
    pub(crate) profile: Arc<str>,
    pub(crate) addrs: ClientAddrs,
    pub(crate) limits: Limits,
}

/// One intercepted CONNECT: its target, client and connection to the real host.
struct Session {
    state: Arc<InterceptState>,
    target: Target,
    profile: Arc<str>,
    addrs: ClientAddrs,
    origin: Origin,
    /// How long the replay buffer of an injected request may take to fill (LOAD-8).
    stream_idle: Duration,
    /// The same-user verdict, computed on the first injected request (the owner cannot change).
    peer_user: OnceLock<PeerUser>,
}

/// How errors look to the client: by the path's injection scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    Plain,
    WsMan,
    Rest,
}

/// The token a request was sent with, for the rejection path.
struct Injected {
    injection: Injection,
    account: AccountChoice,
    audience: Audience,
    token: AccessToken,
}

// === the tunnel ===

/// Serves one intercepted tunnel after the 200: ClientHello, both handshakes, then HTTP/1.1.
pub(crate) async fn serve(start: Start, client: Upgraded, dialled: TcpStream) {
    let host = start.target.host.as_str_for_lookup();
    let Some(hello) = client_hello(&host, client).await else {
        return;
    };
    let config = match server_config_for_host(start.state.leaves(), &host) {
        Ok(c) => c,
        Err(e) => return tracing::warn!(%host, error = %e, "no certificate for intercepted host"),
    };
    let session = Arc::new(Session::new(&start));
    let (accepted, opened) = tokio::join!(
        TlsAcceptor::from(config).accept(hello),
        session.origin.open(dialled)
    );
    let tls = match accepted {
        Ok(tls) => tls,
        Err(e) => return tracing::debug!(%host, error = %e, "client TLS handshake failed"),
    };
    if let Err(e) = serve_http(tls, session, opened, &start.limits).await {
        tracing::debug!(%host, error = %e, "intercepted connection ended with an error");
    }
}

/// The client's first bytes, rewound, when they start a TLS ClientHello in time; else one log line.
async fn client_hello(host: &str, client: Upgraded) -> Option<Rewind<TokioIo<Upgraded>>> {
    let peeked = tokio::time::timeout(
        CLIENT_HELLO_TIMEOUT,
        peek_client_hello(TokioIo::new(client)),
    );
    match peeked.await {
        Ok(Ok(p)) if p.is_client_hello => Some(p.stream),
        Ok(Ok(_)) => {
            tracing::debug!(%host, "intercepted tunnel closed: the client did not start TLS");
            None
        }
        Ok(Err(e)) => {
            tracing::debug!(%host, error = %e, "intercepted tunnel: read failed");
            None
        }
        Err(_) => {
            tracing::debug!(%host, "intercepted tunnel closed: no TLS ClientHello in time");
            None
        }
    }
}

/// The decrypted HTTP/1.1 connection: every request through the session, or, when the upstream
/// failed (`opened` is an error), that error for every request on a connection without keep-alive.
async fn serve_http(
    tls: ClientTls,
    session: Arc<Session>,
    opened: Result<Driver, ProxyError>,
    limits: &Limits,
) -> Result<(), hyper::Error> {
    let io = TokioIo::new(IdleIo::new(tls, limits.tunnel_idle));
    let mut builder = http1::Builder::new();
    // The head guard does not see requests inside the tunnel: hyper enforces the field limit.
    builder
        .keep_alive(opened.is_ok())
        .max_headers(limits.max_headers);
    match opened {
        Ok(driver) => {
            let service = service_fn(move |req| session.clone().handle(req));
            // Both HTTP connections in this one task: handing a request from the client side to the
            // upstream side (and the response back) wakes this task, not another thread.
            tokio::join!(builder.serve_connection(io, service), driver).0
        }
        Err(err) => {
            let host = session.host();
            tracing::debug!(%host, error = %err, "upstream TLS failed: answering 502");
            let service = service_fn(move |req: Request<Incoming>| {
                let flavor = Flavor::of(req.uri().path());
                std::future::ready(Ok::<_, Infallible>(render(&err, flavor)))
            });
            builder.serve_connection(io, service).await
        }
    }
}

// === impl Session ===

impl Session {
    fn new(start: &Start) -> Session {
        let origin = Origin::new(
            start.upstream.clone(),
            start.state.upstream_tls().clone(),
            start.target.clone(),
            start.decision.clone(),
            start.limits.clone(),
        );
        Session {
            state: start.state.clone(),
            target: start.target.clone(),
            profile: start.profile.clone(),
            addrs: start.addrs,
            origin,
            stream_idle: start.limits.stream_idle,
            peer_user: OnceLock::new(),
        }
    }

    fn host(&self) -> String {
        self.target.host.as_str_for_lookup()
    }

    /// The service: one decrypted request, one log line.
    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, Infallible> {
        let started = Instant::now();
        let (method, path) = (req.method().clone(), req.uri().path().to_string());
        // Classified once: the treatment picks the token scheme and the dialect of our errors.
        let treatment = inject::classify(&path, req.headers());
        let host = self.host();
        let response = match self.exchange(req, treatment).await {
            Ok(response) => response,
            Err(err) => {
                let code = Rescue::of(&err).code;
                tracing::debug!(%method, %host, %path, %code, error = %err, "intercepted request refused");
                render(&err, Flavor::of_treatment(treatment))
            }
        };
        tracing::debug!(%method, %host, %path, status = response.status().as_u16(),
            ms = started.elapsed().as_millis() as u64, "intercepted");
        crate::summary::request(response.status().as_u16());
        crate::summary::routed(
            false,
            crate::summary::Routed::Intercept,
            response.status().as_u16(),
        );
        Ok(response)
    }

    async fn exchange(
        &self,
        req: Request<Incoming>,
        treatment: Treatment,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        self.check_authority(&req)?;
        if matches!(req.method().as_str(), "TRACE" | "TRACK") {
            return Err(ProxyError::MethodNotAllowed(req.method().to_string()));
        }
        let response = match treatment {
            Treatment::PassThrough => {
                let (parts, body) = req.into_parts();
                let request = upstream_request(&parts, body.boxed())?;
                self.origin.send(request).await?
            }
            Treatment::Inject(injection) => self.inject_and_send(req, injection).await?,
        };
        Ok(clean_response(response))
    }

    /// BAD-14: the inner request must be for the CONNECT host and port.
    fn check_authority(&self, req: &Request<Incoming>) -> Result<(), ProxyError> {
        let named = match req.uri().authority() {
            Some(a) => Some(a.as_str().to_string()),
            None => req
                .headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        };
        let Some(named) = named else {
            return Err(ProxyError::BadRequest("request without Host".into()));
        };
        let same = match Target::from_http_authority(&named) {
            Ok(t) => {
                let port = req.uri().port_u16().unwrap_or(match named.contains(':') {
                    true => t.port,
                    false => 443,
                });
                t.host == self.target.host && port == self.target.port
            }
            Err(_) => false,
        };
        match same {
            true => Ok(()),
            false => Err(ProxyError::Misdirected {
                connect: self.target.to_string(),
                requested: named,
            }),
        }
    }

    /// Sends with a token; a buffered request whose token was rejected is replayed once.
    async fn inject_and_send(
        &self,
        req: Request<Incoming>,
        injection: Injection,
    ) -> Result<Response<Incoming>, ProxyError> {
        self.check_peer().await?;
        let (parts, body) = req.into_parts();
        let injected = self.token_for(&parts.headers, injection).await?;
        let bytes = match body::prepare(body, self.stream_idle).await? {
            Prepared::Buffered(bytes) => bytes,
            // Too large to keep for a replay: sent once, whatever the answer.
            Prepared::Streaming(stream) => return self.send_with(&parts, stream, &injected).await,
        };
        let response = self
            .send_with(&parts, body::full(bytes.clone()), &injected)
            .await?;
        let Some(rejection) = inject::rejection(response.status(), response.headers()) else {
            return Ok(response);
        };
        body::discard(response).await;
        let injected = self.fresh_token(injected, rejection).await?;
        self.send_with(&parts, body::full(bytes), &injected).await
    }

    /// One upstream request with the token written in.
    async fn send_with(
        &self,
        parts: &http::request::Parts,
        body: OutBody,
        injected: &Injected,
    ) -> Result<Response<Incoming>, ProxyError> {
        let mut request = upstream_request(parts, body)?;
        apply(request.headers_mut(), injected)?;
        self.origin.send(request).await
    }

    /// The token after the host rejected `injected`: invalidated and re-acquired (with the
    /// challenge's claims).
    async fn fresh_token(
        &self,
        injected: Injected,
        rejection: Rejection,
    ) -> Result<Injected, ProxyError> {
        let fresh = self
            .state
            .tokens()
            .invalidate_and_reacquire(
                &injected.account.upn,
                &injected.audience,
                &injected.token,
                rejection.claims,
            )
            .await
            .map_err(|e| self.token_error(e))?;
        tracing::info!(account = %injected.account.upn, "token rejected upstream: replaying once with a new token");
        Ok(Injected {
            token: fresh,
            ..injected
        })
    }

    /// SEC-3: only the proxy's own OS user gets tokens.
    async fn check_peer(&self) -> Result<(), ProxyError> {
        if self.peer_user.get().is_none() {
            let ClientAddrs { peer, local } = self.addrs;
            let user = tokio::task::spawn_blocking(move || peer::check(peer, local))
                .await
                .unwrap_or_else(|e| PeerUser::Unknown(e.to_string()));
            let _ = self.peer_user.set(user);
        }
        match self.peer_user.get() {
            Some(PeerUser::Same) => Ok(()),
            Some(PeerUser::Other(who)) => Err(ProxyError::ClientNotAuthorized(format!(
                "the connection belongs to another OS user ({who})"
            ))),
            Some(PeerUser::Unknown(why)) => Err(ProxyError::ClientNotAuthorized(format!(
                "the connection's OS user could not be determined ({why})"
            ))),
            None => Err(ProxyError::Internal("peer check did not run".into())),
        }
    }

    /// Account, audience and token for one injected request.
    async fn token_for(
        &self,
        headers: &HeaderMap,
        injection: Injection,
    ) -> Result<Injected, ProxyError> {
        let account = inject::select_account(headers, self.state.default_account())
            .ok_or(ProxyError::AccountRequired)?;
        let host = self.host();
        let audience = self
            .state
            .audience_for(&self.profile, &host)
            .ok_or_else(|| ProxyError::ConnectDenied {
                target: self.target.to_string(),
                reason: "no token audience is configured for this host".into(),
            })?;
        let token = self
            .state
            .tokens()
            .token(&account.upn, &audience)
            .await
            .map_err(|e| self.token_error(e))?;
        Ok(Injected {
            injection,
            account,
            audience,
            token,
        })
    }

    /// The token error as the catalogue's error; a pending sign-in also says why the last one failed
    /// (e.g. signed in as the wrong user), so the user is not left guessing.
    fn token_error(&self, err: TokenError) -> ProxyError {
        let pending_upn = match &err {
            TokenError::SignInPending { upn, .. } => Some(upn.clone()),
            _ => None,
        };
        let mut proxy_err = ProxyError::from(err);
        let last = pending_upn.and_then(|upn| {
            let summary = self.state.tokens().accounts();
            summary
                .into_iter()
                .find(|s| s.upn.eq_ignore_ascii_case(&upn))?
                .last_error
        });
        if let (ProxyError::SignInRequired { detail, .. }, Some(last)) = (&mut proxy_err, last) {
            detail.push_str(&format!(" (the previous sign-in failed: {last})"));
        }
        proxy_err
    }
}

// === impl Flavor ===

impl Flavor {
    /// By the path alone: for answers given before a request is classified (upstream TLS failed).
    fn of(path: &str) -> Flavor {
        Flavor::of_injection(inject::injection_for_path(path))
    }

    /// By a classified request: pass-through requests get plain errors.
    fn of_treatment(treatment: Treatment) -> Flavor {
        match treatment {
            Treatment::Inject(injection) => Flavor::of_injection(Some(injection)),
            Treatment::PassThrough => Flavor::Plain,
        }
    }

    fn of_injection(injection: Option<Injection>) -> Flavor {
        match injection {
            Some(Injection::WsMan) => Flavor::WsMan,
            Some(Injection::Rest) => Flavor::Rest,
            None => Flavor::Plain,
        }
    }
}

// === helpers ===

/// The upstream request: origin-form path and query untouched, the client's headers minus the
/// hop-by-hop fields, HTTP/1.1.
fn upstream_request(
    parts: &http::request::Parts,
    body: OutBody,
) -> Result<Request<OutBody>, ProxyError> {
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut request = Request::new(body);
    *request.method_mut() = parts.method.clone();
    *request.version_mut() = Version::HTTP_11;
    *request.uri_mut() = path
        .parse::<Uri>()
        .map_err(|e| ProxyError::BadRequest(format!("unusable request URI: {e}")))?;
    let headers = request.headers_mut();
    *headers = parts.headers.clone();
    strip_hop_by_hop(headers);
    if !headers.contains_key(header::HOST)
        && let Some(authority) = parts.uri.authority()
        && let Ok(host) = HeaderValue::from_str(authority.as_str())
    {
        headers.insert(header::HOST, host);
    }
    if parts.method == Method::CONNECT {
        return Err(ProxyError::BadRequest(
            "CONNECT inside an intercepted tunnel".into(),
        ));
    }
    Ok(request)
}

fn apply(headers: &mut HeaderMap, injected: &Injected) -> Result<(), ProxyError> {
    let user = injected
        .account
        .basic_username
        .as_deref()
        .unwrap_or(&injected.account.upn);
    inject::apply(headers, injected.injection, user, injected.token.expose())
        .map_err(|_| ProxyError::Internal("the token is not a valid header value".into()))
}

fn clean_response(mut response: Response<Incoming>) -> Response<ProxyBody> {
    strip_hop_by_hop(response.headers_mut());
    response.map(BodyExt::boxed)
}

/// The error response in the client's dialect: SOAP fault (WS-Man), JSON (REST), text otherwise.
fn render(err: &ProxyError, flavor: Flavor) -> Response<ProxyBody> {
    let rescue = Rescue::of(err);
    let response = match flavor {
        Flavor::WsMan => rescue.wsman_fault_response(),
        Flavor::Rest => rescue.json_response(),
        Flavor::Plain => rescue::rescue(err),
    };
    response.map(|b| b.map_err(|never| match never {}).boxed())
}

#[cfg(test)]
mod tests;

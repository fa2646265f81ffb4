//! An intercepted CONNECT: terminate the client's TLS with a leaf from the local CA, serve the
//! decrypted HTTP/1.1 connection, and forward each request over one verified TLS connection to the
//! real host, with a fresh token on every request that needs one.
//!
//! Contract (DESIGN.md request flow, security model; PROTOCOL.md §1):
//! - The upstream was dialled before the 200 (the handler's job). Inside the tunnel the first bytes
//!   must be a TLS ClientHello, else the tunnel is closed with a log line. The client-side certificate
//!   is always the CONNECT host's (BAD-15); ALPN is `http/1.1` only.
//! - Upstream TLS is always verified; a failed handshake answers every client request with 502
//!   `upstream_tls_<kind>` and sends nothing upstream (FLT-8).
//! - One upstream connection per client connection (WS-Man affinity). When it died between
//!   requests, the next request redials once; a request is never sent twice, except the single
//!   replay after a token rejection below (FLT-7).
//! - Per request: inner `Host` ≠ CONNECT host → 421, nothing sent (BAD-14). TRACE/TRACK → 405.
//!   [`inject::classify`] decides: pass-through requests (non-injection paths, browser-marked
//!   requests: SEC-15) are forwarded untouched. Injected requests need the same OS user (SEC-3),
//!   an account (else 401 `Basic realm="exoproxy"`), the token of the host's own audience (TOK-11),
//!   which replaces the client's `Authorization` (SEC-17).
//! - A 401 or `insufficient_claims` answer to an injected request re-acquires the token once (with
//!   the CAE claims) and replays the buffered request once; bodies over [`REPLAY_LIMIT`] stream and
//!   are never replayed. Everything else passes through unchanged: query strings, 302 and
//!   `Location`, `Set-Cookie`, 500 bodies, chunking.
//! - Errors on WS-Man paths are SOAP faults, on REST paths JSON errors ([`rescue`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::ProxyBody;
use super::io::IdleIo;
use super::rescue::{self, Rescue};
use crate::error::ProxyError;
use crate::forward::strip_hop_by_hop;
use crate::inject::{self, AccountChoice, Injection, Profile, Treatment};
use crate::intercept::tls::upstream_tls_error;
use crate::intercept::{LeafCache, peek_client_hello, server_config_for_host};
use crate::listener::Limits;
use crate::peer::{self, PeerUser};
use crate::target::{Decision, Target};
use crate::token::secret::AccessToken;
use crate::token::{Audience, Cloud, TokenManager};
use crate::upstream::Upstream;

/// Request bodies up to this size are buffered so that a token rejection can be replayed once.
pub const REPLAY_LIMIT: usize = 1024 * 1024;

/// Longest wait for the client's ClientHello after the 200.
const CLIENT_HELLO_TIMEOUT: Duration = Duration::from_secs(30);

/// Most bytes of a rejected response read (and discarded) before a replay, to keep the connection.
const REJECTION_BODY_LIMIT: usize = 64 * 1024;

type OutBody = BoxBody<Bytes, hyper::Error>;

/// An upstream HTTP/1.1 connection's driver: runs until the connection closes.
type UpstreamConnection = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What the interception path needs, built once in `app.rs` and shared by every connection.
pub struct InterceptState {
    /// Minted leaves for the client side.
    leaves: Arc<LeafCache>,
    /// Verifying TLS config for the real hosts (system roots plus extra roots).
    upstream_tls: Arc<ClientConfig>,
    /// Where tokens come from.
    tokens: TokenManager,
    /// Account for requests that name none (no Basic user, anchor or bearer UPN).
    default_account: Option<String>,
    /// Cloud profiles: host → audience (TOK-11).
    profiles: Vec<Profile>,
}

/// The client socket of a connection, for the same-user check (SEC-3).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddrs {
    pub(crate) peer: SocketAddr,
    pub(crate) local: SocketAddr,
}

/// One intercepted CONNECT: its target, route, upstream connection and client.
struct Session {
    state: Arc<InterceptState>,
    upstream: Arc<Upstream>,
    target: Target,
    decision: Decision,
    profile: Arc<str>,
    addrs: ClientAddrs,
    stream_idle: Duration,
    /// The upstream HTTP connection; `None` after it died (the next request redials once).
    sender: Mutex<Option<SendRequest<OutBody>>>,
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

/// A request body: buffered (replayable) or streaming (sent once).
enum Prepared {
    Buffered(Bytes),
    Streaming(OutBody),
}

/// The token a request was sent with, for the rejection path.
struct Injected {
    injection: Injection,
    account: AccountChoice,
    audience: Audience,
    token: AccessToken,
}

/// A body that yields `prefix` first, then the rest of the client's body.
struct PrefixedBody {
    prefix: Option<Bytes>,
    rest: Incoming,
}

// === impl InterceptState ===

impl InterceptState {
    /// `leaves`: the local CA's leaf cache; `upstream_tls`: from
    /// [`crate::intercept::upstream_client_config`]; `tokens`: the token manager.
    pub fn new(
        leaves: Arc<LeafCache>,
        upstream_tls: Arc<ClientConfig>,
        tokens: TokenManager,
    ) -> InterceptState {
        InterceptState {
            leaves,
            upstream_tls,
            tokens,
            default_account: None,
            profiles: inject::profiles(),
        }
    }

    /// The account used when a request names none.
    pub fn with_default_account(mut self, upn: Option<String>) -> InterceptState {
        self.default_account = upn;
        self
    }

    /// Replaces the built-in cloud profiles (configured names and hosts).
    pub fn with_profiles(mut self, profiles: Vec<Profile>) -> InterceptState {
        self.profiles = profiles;
        self
    }

    /// The leaf cache (for the admin page and tests: minted-certificate counts).
    pub fn leaves(&self) -> &Arc<LeafCache> {
        &self.leaves
    }

    /// The token audience for `host` under `profile`; the named profile first, then any cloud.
    fn audience_for(&self, profile: &str, host: &str) -> Option<Audience> {
        let named = self.profiles.iter().find(|p| p.name == profile);
        let from_profiles = named
            .and_then(|p| p.audience_for(host))
            .or_else(|| self.profiles.iter().find_map(|p| p.audience_for(host)));
        from_profiles
            .map(Audience::new)
            .or_else(|| Cloud::Global.audience_for_host(host))
    }
}

impl std::fmt::Debug for InterceptState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InterceptState")
            .field("leaves", &self.leaves)
            .field("default_account", &self.default_account)
            .finish_non_exhaustive()
    }
}

// === the tunnel ===

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

/// Serves one intercepted tunnel after the 200: ClientHello, both handshakes, then HTTP/1.1.
pub(crate) async fn serve(start: Start, client: Upgraded, dialled: TcpStream) {
    let host = start.target.host.as_str_for_lookup();
    let peeked = tokio::time::timeout(
        CLIENT_HELLO_TIMEOUT,
        peek_client_hello(TokioIo::new(client)),
    );
    let peeked = match peeked.await {
        Ok(Ok(p)) if p.is_client_hello => p,
        Ok(Ok(_)) => {
            return tracing::debug!(%host, "intercepted tunnel closed: the client did not start TLS");
        }
        Ok(Err(e)) => return tracing::debug!(%host, error = %e, "intercepted tunnel: read failed"),
        Err(_) => {
            return tracing::debug!(%host, "intercepted tunnel closed: no TLS ClientHello in time");
        }
    };
    let config = match server_config_for_host(&start.state.leaves, &host) {
        Ok(c) => c,
        Err(e) => return tracing::warn!(%host, error = %e, "no certificate for intercepted host"),
    };
    let session = Arc::new(Session::new(&start));
    let (accepted, upstream) = tokio::join!(
        TlsAcceptor::from(config).accept(peeked.stream),
        session.handshake(dialled)
    );
    let tls = match accepted {
        Ok(tls) => tls,
        Err(e) => return tracing::debug!(%host, error = %e, "client TLS handshake failed"),
    };
    let (failed, connection) = match upstream {
        Ok((sender, connection)) => {
            *session.sender.lock().await = Some(sender);
            (None, Some(connection))
        }
        Err(e) => (Some(e), None),
    };
    let io = TokioIo::new(IdleIo::new(tls, start.limits.tunnel_idle));
    let mut builder = http1::Builder::new();
    // The head guard does not see requests inside the tunnel: hyper enforces the field limit.
    builder
        .keep_alive(failed.is_none())
        .max_headers(start.limits.max_headers);
    let served = match failed {
        None => {
            let service = service_fn(move |req| session.clone().handle(req));
            // Both HTTP connections in this one task: handing a request from the client side to the
            // upstream side (and the response back) wakes this task, not another thread.
            let upstream = async move {
                if let Some(connection) = connection {
                    connection.await;
                }
            };
            tokio::join!(builder.serve_connection(io, service), upstream).0
        }
        Some(err) => {
            tracing::debug!(%host, error = %err, "upstream TLS failed: answering 502");
            let service = service_fn(move |req: Request<Incoming>| {
                let flavor = Flavor::of(req.uri().path());
                std::future::ready(Ok::<_, Infallible>(render(&err, flavor)))
            });
            builder.serve_connection(io, service).await
        }
    };
    if let Err(e) = served {
        tracing::debug!(%host, error = %e, "intercepted connection ended with an error");
    }
}

// === impl Session ===

impl Session {
    fn new(start: &Start) -> Session {
        Session {
            state: start.state.clone(),
            upstream: start.upstream.clone(),
            target: start.target.clone(),
            decision: start.decision.clone(),
            profile: start.profile.clone(),
            addrs: start.addrs,
            stream_idle: start.limits.stream_idle,
            sender: Mutex::new(None),
            peer_user: OnceLock::new(),
        }
    }

    fn host(&self) -> String {
        self.target.host.as_str_for_lookup()
    }

    /// TLS to the real host over `stream` (verified), then an HTTP/1.1 client connection: its
    /// sender, and the connection itself, which the caller must drive (await or spawn).
    async fn handshake(
        &self,
        stream: TcpStream,
    ) -> Result<(SendRequest<OutBody>, UpstreamConnection), ProxyError> {
        let host = self.host();
        let name = ServerName::try_from(host.clone())
            .map_err(|_| ProxyError::BadRequest(format!("{host} is not a valid TLS name")))?;
        let connector = TlsConnector::from(self.state.upstream_tls.clone());
        let tls = connector
            .connect(name, stream)
            .await
            .map_err(|e| upstream_tls_error(&host, &e))?;
        let io = TokioIo::new(IdleIo::new(tls, self.stream_idle));
        let (sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| self.upstream_error(&e))?;
        let connection = Box::pin(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "intercepted upstream connection ended with an error");
            }
        });
        Ok((sender, connection))
    }

    /// A fresh upstream connection through the decision's hops, driven by a task of its own.
    async fn redial(&self) -> Result<SendRequest<OutBody>, ProxyError> {
        let connected = self.upstream.connect(&self.target, &self.decision).await?;
        let (sender, connection) = self.handshake(connected.stream).await?;
        tokio::spawn(connection);
        Ok(sender)
    }

    /// Sends on the connection of this session; a connection that died before the request was
    /// written is replaced once (nothing was sent, so any method is safe: FLT-7).
    async fn send(&self, req: Request<OutBody>) -> Result<Response<Incoming>, ProxyError> {
        let mut slot = self.sender.lock().await;
        let mut req = req;
        if let Some(sender) = slot.as_mut()
            && sender.ready().await.is_ok()
        {
            match sender.try_send_request(req).await {
                Ok(response) => return Ok(response),
                Err(mut e) => match e.take_message() {
                    Some(unsent) => req = unsent,
                    None => {
                        *slot = None;
                        return Err(self.upstream_error(e.error()));
                    }
                },
            }
        }
        *slot = None;
        let mut sender = self.redial().await?;
        let response = sender
            .send_request(req)
            .await
            .map_err(|e| self.upstream_error(&e))?;
        *slot = Some(sender);
        Ok(response)
    }

    fn upstream_error(&self, e: &hyper::Error) -> ProxyError {
        let timed_out = std::error::Error::source(e)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut);
        if timed_out {
            return ProxyError::UpstreamTimeout {
                target: self.target.to_string(),
                after: self.stream_idle,
                detail: "no response".into(),
            };
        }
        ProxyError::UpstreamBadResponse {
            peer: self.target.to_string(),
            detail: e.to_string(),
        }
    }

    /// The service: one decrypted request, one log line.
    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, Infallible> {
        let started = Instant::now();
        let (method, path) = (req.method().clone(), req.uri().path().to_string());
        let flavor = match inject::classify(&path, req.headers()) {
            Treatment::Inject(_) => Flavor::of(&path),
            Treatment::PassThrough => Flavor::Plain,
        };
        let host = self.host();
        let response = match self.exchange(req).await {
            Ok(response) => response,
            Err(err) => {
                let code = Rescue::of(&err).code;
                tracing::debug!(%method, %host, %path, %code, error = %err, "intercepted request refused");
                render(&err, flavor)
            }
        };
        tracing::debug!(%method, %host, %path, status = response.status().as_u16(),
            ms = started.elapsed().as_millis() as u64, "intercepted");
        crate::summary::request(response.status().as_u16());
        Ok(response)
    }

    async fn exchange(&self, req: Request<Incoming>) -> Result<Response<ProxyBody>, ProxyError> {
        self.check_authority(&req)?;
        if matches!(req.method().as_str(), "TRACE" | "TRACK") {
            return Err(ProxyError::MethodNotAllowed(req.method().to_string()));
        }
        let treatment = inject::classify(req.uri().path(), req.headers());
        let response = match treatment {
            Treatment::PassThrough => {
                let (parts, body) = req.into_parts();
                self.send(upstream_request(&parts, body.boxed())?).await?
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

    async fn inject_and_send(
        &self,
        req: Request<Incoming>,
        injection: Injection,
    ) -> Result<Response<Incoming>, ProxyError> {
        self.check_peer().await?;
        let (parts, body) = req.into_parts();
        let injected = self.token_for(&parts.headers, injection).await?;
        let bytes = match prepare_body(body).await? {
            Prepared::Buffered(bytes) => bytes,
            Prepared::Streaming(stream) => {
                // Too large to keep for a replay: sent once, whatever the answer.
                let mut request = upstream_request(&parts, stream)?;
                apply(request.headers_mut(), &injected)?;
                return self.send(request).await;
            }
        };
        let mut request = upstream_request(&parts, full(bytes.clone()))?;
        apply(request.headers_mut(), &injected)?;
        let response = self.send(request).await?;
        let Some(claims) = rejection(&response) else {
            return Ok(response);
        };
        drain(response).await;
        let fresh = self
            .state
            .tokens
            .invalidate_and_reacquire(
                &injected.account.upn,
                &injected.audience,
                &injected.token,
                claims,
            )
            .await
            .map_err(|e| self.token_error(e))?;
        tracing::info!(account = %injected.account.upn, "token rejected upstream: replaying once with a new token");
        let injected = Injected {
            token: fresh,
            ..injected
        };
        let mut request = upstream_request(&parts, full(bytes))?;
        apply(request.headers_mut(), &injected)?;
        self.send(request).await
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
        let account = inject::select_account(headers, self.state.default_account.as_deref())
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
            .tokens
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
    fn token_error(&self, err: crate::token::TokenError) -> ProxyError {
        let pending_upn = match &err {
            crate::token::TokenError::SignInPending { upn, .. } => Some(upn.clone()),
            _ => None,
        };
        let mut proxy_err = ProxyError::from(err);
        let last = pending_upn.and_then(|upn| {
            let summary = self.state.tokens.accounts();
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
    fn of(path: &str) -> Flavor {
        match inject::injection_for_path(path) {
            Some(Injection::WsMan) => Flavor::WsMan,
            Some(Injection::Rest) => Flavor::Rest,
            None => Flavor::Plain,
        }
    }
}

// === impl PrefixedBody ===

impl Body for PrefixedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(prefix) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        // The rest's hint counts what is left of the client's body; the prefix comes on top.
        let rest = self.rest.size_hint();
        let extra = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        let mut hint = SizeHint::new();
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + extra);
        }
        hint.set_lower(rest.lower() + extra);
        hint
    }
}

// === helpers ===

/// Reads up to [`REPLAY_LIMIT`] of the body: all of it → buffered; more → streaming.
async fn prepare_body(mut body: Incoming) -> Result<Prepared, ProxyError> {
    let mut buffered = BytesMut::new();
    while buffered.len() <= REPLAY_LIMIT {
        match body.frame().await {
            None => return Ok(Prepared::Buffered(buffered.freeze())),
            Some(Err(e)) => {
                return Err(ProxyError::BadRequest(format!(
                    "malformed request body ({e})"
                )));
            }
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    buffered.extend_from_slice(&data);
                }
            }
        }
    }
    let prefix = Some(buffered.freeze());
    Ok(Prepared::Streaming(
        PrefixedBody { prefix, rest: body }.boxed(),
    ))
}

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

/// `Some(claims)` when the response rejects the token: 401, or a `insufficient_claims` challenge;
/// the inner option is the decoded claims JSON of a CAE challenge.
fn rejection(response: &Response<Incoming>) -> Option<Option<String>> {
    let challenges = response.headers().get_all(header::WWW_AUTHENTICATE);
    let claims = challenges
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.contains("insufficient_claims"))
        .map(challenge_claims);
    match (response.status() == StatusCode::UNAUTHORIZED, claims) {
        (_, Some(claims)) => Some(claims),
        (true, None) => Some(None),
        (false, None) => None,
    }
}

/// The decoded `claims="<base64>"` parameter of a challenge (ENTRA claims challenge, §2.5).
fn challenge_claims(challenge: &str) -> Option<String> {
    let start = challenge.find("claims=\"")? + "claims=\"".len();
    let encoded = challenge[start..].split('"').next()?;
    let engines = [
        base64::engine::general_purpose::STANDARD.decode(encoded),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded.trim_end_matches('=')),
    ];
    engines
        .into_iter()
        .find_map(|r| r.ok())
        .and_then(|raw| String::from_utf8(raw).ok())
}

/// Reads a small rejected response to its end so the connection stays usable.
async fn drain(response: Response<Incoming>) {
    let body = Limited::new(response.into_body(), REJECTION_BODY_LIMIT);
    let _ = tokio::time::timeout(Duration::from_secs(5), body.collect()).await;
}

fn clean_response(mut response: Response<Incoming>) -> Response<ProxyBody> {
    strip_hop_by_hop(response.headers_mut());
    response.map(BodyExt::boxed)
}

fn full(bytes: Bytes) -> OutBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
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

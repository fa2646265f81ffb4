//! The proxy's own outbound HTTP(S) client, for the calls it makes itself: the token endpoint, OpenID
//! discovery, user-realm (STS) discovery.
//!
//! Contract: every call is routed exactly like client traffic (`Router::decide` → `Upstream`), so a
//! corporate proxy, its authentication and the bad-proxy memory apply to the proxy's own calls too.
//! `token` and `route::sts` never dial: they are handed this client (as a [`Transport`], or as the
//! fetch [`OutboundClient::get_realm`]) by `app` (docs/ARCHITECTURE.md, "Layering"). TLS is always
//! verified, with the config built by [`crate::tls_client`]. Bodies are collected up to
//! [`MAX_BODY`]; nothing here logs request or response bodies, which carry refresh tokens and client
//! secrets.
//!
//! Connections are kept alive between calls (short-lived tokens through a corporate
//! proxy must not open a CONNECT per token call): a small pool keyed by scheme, target and route (the
//! decision's hops), at most [`POOL_MAX_IDLE`] idle connections, each dropped after [`POOL_IDLE`]. A
//! pooled connection found dead before the request left (hyper hands the unsent request back) is
//! replaced by one fresh connection; a request that may have been sent is never repeated.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, HOST, PROXY_AUTHORIZATION, USER_AGENT};
use http::{HeaderValue, Request, Response, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;

use crate::route::Router;
use crate::route::sts::FetchResponse;
use crate::target::{Action, Hop, Target};
use crate::token::{BoxFuture, Transport, TransportError};
use crate::upstream::Upstream;

/// Largest response body the client collects (token and discovery answers are a few KiB).
pub const MAX_BODY: usize = 4 * 1024 * 1024;
/// How long an idle pooled connection may be reused (below the usual 120 s proxy and IdP idle limits).
pub const POOL_IDLE: Duration = Duration::from_secs(90);
/// Idle connections kept at most (the proxy talks to a handful of IdP and STS hosts).
pub const POOL_MAX_IDLE: usize = 8;

/// Outbound client over the proxy's own route and upstream chain.
#[derive(Clone)]
pub struct OutboundClient {
    /// Shared by every clone: a configuration reload ([`OutboundClient::set_route`]) moves the
    /// token manager's and STS discovery's calls too.
    route: Arc<RwLock<Route>>,
    tls: TlsConnector,
    pool: Arc<Mutex<Vec<Pooled>>>,
}

/// The route a call takes: the router's decision, dialled by the upstream.
#[derive(Clone)]
struct Route {
    router: Arc<Router>,
    upstream: Arc<Upstream>,
}

/// What a connection is reusable for: the same scheme and target over the same route.
#[derive(Clone, PartialEq, Eq)]
struct PoolKey {
    https: bool,
    target: Target,
    hops: Vec<Hop>,
}

/// An HTTP/1.1 connection and what its requests need (the hop decides the request form).
struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    https: bool,
    hop: Hop,
    proxy_authorization: Option<crate::upstream::ProxyAuthorization>,
}

/// An idle connection in the pool.
struct Pooled {
    key: PoolKey,
    conn: Conn,
    since: tokio::time::Instant,
}

/// How one exchange on a connection ended.
enum Exchange {
    Done(Response<Bytes>, Conn),
    /// The connection was dead before the request left: send a copy on a fresh connection.
    Unsent,
    Failed(TransportError),
}

impl std::fmt::Debug for OutboundClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OutboundClient")
    }
}

// === impl OutboundClient ===

impl OutboundClient {
    /// `tls` is the outbound config from [`crate::tls_client`] (system roots plus any extra roots).
    pub fn new(
        router: Arc<Router>,
        upstream: Arc<Upstream>,
        tls: Arc<rustls::ClientConfig>,
    ) -> OutboundClient {
        OutboundClient {
            route: Arc::new(RwLock::new(Route { router, upstream })),
            tls: TlsConnector::from(tls),
            pool: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Routes every later call of every clone with `router` and `upstream` (a configuration
    /// reload); idle pooled connections of the old route are dropped (their proxy credentials may
    /// have changed).
    pub fn set_route(&self, router: Arc<Router>, upstream: Arc<Upstream>) {
        *self
            .route
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Route { router, upstream };
        self.pool
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }

    fn route(&self) -> Route {
        self.route
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// GETs `url` within `timeout`: the fetch user-realm (STS) discovery is given
    /// (`StsDirectory::discover`, `run_refresher`). The error string carries no secrets.
    pub async fn get_realm(&self, url: &str, timeout: Duration) -> Result<FetchResponse, String> {
        let request = Request::get(url)
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, concat!("exoproxy/", env!("CARGO_PKG_VERSION")))
            .body(Bytes::new())
            .map_err(|e| format!("bad URL: {e}"))?;
        let response = tokio::time::timeout(timeout, self.send(request))
            .await
            .map_err(|_| format!("no answer within {timeout:?}"))?
            .map_err(|e| e.to_string())?;
        Ok(FetchResponse {
            status: response.status().as_u16(),
            body: response.into_body().to_vec(),
        })
    }

    /// Sends one request (absolute URI, `http` or `https`) and collects the response.
    pub async fn send(&self, req: Request<Bytes>) -> Result<Response<Bytes>, TransportError> {
        let uri = req.uri().clone();
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(TransportError::Other(format!("not an http(s) URL: {uri}"))),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| TransportError::Other(format!("URL without a host: {uri}")))?;
        let target = if https {
            let port = authority.port_u16().unwrap_or(443);
            Target::parse_connect(&format!("{}:{port}", authority.host()))
        } else {
            Target::from_http_authority(authority.as_str())
        }
        .map_err(|e| TransportError::Other(e.0))?;
        let route = self.route();
        let decision = route
            .router
            .decide(&target)
            .await
            .map_err(|e| TransportError::Connect(e.to_string()))?;
        if let Action::Block { reason } = &decision.action {
            return Err(TransportError::Connect(format!(
                "{target} is blocked: {reason}"
            )));
        }
        let key = PoolKey {
            https,
            target,
            hops: decision.hops.clone(),
        };
        let req = match self.take(&key).await {
            Some(conn) => match send_on(conn, copy(&req)).await {
                Exchange::Done(response, conn) => return Ok(self.keep(key, conn, response)),
                Exchange::Unsent => {
                    tracing::debug!(
                        "pooled connection to the identity provider was closed; reconnecting"
                    );
                    req
                }
                Exchange::Failed(e) => return Err(e),
            },
            None => req,
        };
        let conn = self
            .open(&route.upstream, &key.target, &decision, https)
            .await?;
        match send_on(conn, req).await {
            Exchange::Done(response, conn) => Ok(self.keep(key, conn, response)),
            Exchange::Unsent => Err(TransportError::Other(
                "the new connection closed before the request was sent".into(),
            )),
            Exchange::Failed(e) => Err(e),
        }
    }

    /// Opens a connection to `target` along `decision` (TLS for `https`) and starts HTTP/1.1 on it.
    async fn open(
        &self,
        upstream: &Upstream,
        target: &Target,
        decision: &crate::target::Decision,
        https: bool,
    ) -> Result<Conn, TransportError> {
        if https {
            let connected = upstream
                .connect(target, decision)
                .await
                .map_err(|e| TransportError::Connect(e.to_string()))?;
            let server_name = ServerName::try_from(target.host.as_str_for_lookup())
                .map_err(|e| TransportError::Other(format!("bad server name: {e}")))?;
            let tls = self
                .tls
                .connect(server_name, connected.stream)
                .await
                .map_err(|e| TransportError::Connect(format!("TLS to {target}: {e}")))?;
            handshake(tls, true, Hop::Direct, None).await
        } else {
            let connected = upstream
                .connect_http(target, decision)
                .await
                .map_err(|e| TransportError::Connect(e.to_string()))?;
            handshake(
                connected.stream,
                false,
                connected.hop,
                connected.proxy_authorization,
            )
            .await
        }
    }

    /// An idle, still open connection for `key`, if the pool has one; expired ones are dropped.
    async fn take(&self, key: &PoolKey) -> Option<Conn> {
        loop {
            let candidate = {
                let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
                pool.retain(|p| p.since.elapsed() < POOL_IDLE && !p.conn.sender.is_closed());
                let at = pool.iter().rposition(|p| &p.key == key)?;
                pool.remove(at).conn
            };
            let mut conn = candidate;
            if conn.sender.ready().await.is_ok() {
                return Some(conn);
            }
        }
    }

    /// Returns `conn` to the pool (unless it is closing) and passes `response` through.
    fn keep(&self, key: PoolKey, conn: Conn, response: Response<Bytes>) -> Response<Bytes> {
        if !conn.sender.is_closed() {
            let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
            if pool.len() >= POOL_MAX_IDLE {
                pool.remove(0);
            }
            pool.push(Pooled {
                key,
                conn,
                since: tokio::time::Instant::now(),
            });
        }
        response
    }
}

impl Transport for OutboundClient {
    fn send(
        &self,
        req: http::Request<Bytes>,
    ) -> BoxFuture<'_, Result<http::Response<Bytes>, TransportError>> {
        Box::pin(OutboundClient::send(self, req))
    }
}

/// Sets `Host` from the URI authority (absolute-form stays as is, for a proxy).
fn with_host(mut req: Request<Bytes>) -> Result<Request<Bytes>, TransportError> {
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or_default();
    let value =
        HeaderValue::from_str(&host).map_err(|_| TransportError::Other("bad host".into()))?;
    req.headers_mut().insert(HOST, value);
    Ok(req)
}

/// Rewrites the URI to origin-form (`/path?query`) after setting `Host`.
fn origin_form(req: Request<Bytes>) -> Result<Request<Bytes>, TransportError> {
    let mut req = with_host(req)?;
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    *req.uri_mut() = path
        .parse::<Uri>()
        .map_err(|e| TransportError::Other(format!("bad path: {e}")))?;
    Ok(req)
}

/// Starts HTTP/1.1 on an established stream; the connection task ends when the sender is dropped.
async fn handshake<S>(
    stream: S,
    https: bool,
    hop: Hop,
    proxy_authorization: Option<crate::upstream::ProxyAuthorization>,
) -> Result<Conn, TransportError>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| TransportError::Other(format!("HTTP handshake: {e}")))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "outbound connection ended with an error");
        }
    });
    Ok(Conn {
        sender,
        https,
        hop,
        proxy_authorization,
    })
}

/// A copy of `req` (bodies are shared `Bytes`), kept in case a pooled connection hands it back unsent.
fn copy(req: &Request<Bytes>) -> Request<Bytes> {
    let mut copy = Request::new(req.body().clone());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.headers_mut() = req.headers().clone();
    copy
}

/// One exchange on `conn`: the request in the form its hop needs, the body collected up to
/// [`MAX_BODY`].
async fn send_on(mut conn: Conn, req: Request<Bytes>) -> Exchange {
    let req = match shape(&conn, req) {
        Ok(req) => req,
        Err(e) => return Exchange::Failed(e),
    };
    let (parts, body) = req.into_parts();
    let response = match conn
        .sender
        .try_send_request(Request::from_parts(parts, Full::new(body)))
        .await
    {
        Ok(response) => response,
        Err(mut e) => {
            return match e.take_message() {
                Some(_) => Exchange::Unsent,
                None => Exchange::Failed(TransportError::Other(format!(
                    "request failed: {}",
                    e.error()
                ))),
            };
        }
    };
    let (parts, body) = response.into_parts();
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(body) => Exchange::Done(Response::from_parts(parts, body.to_bytes()), conn),
        Err(e) => Exchange::Failed(TransportError::Other(format!("reading the response: {e}"))),
    }
}

/// The request as `conn` sends it: origin-form to a server (or through a tunnel), absolute-form with
/// `Host` and any `Proxy-Authorization` to a proxy for plain `http://`.
fn shape(conn: &Conn, req: Request<Bytes>) -> Result<Request<Bytes>, TransportError> {
    if conn.https {
        return origin_form(req);
    }
    let mut req = match conn.hop {
        Hop::Direct => origin_form(req)?,
        Hop::Proxy(_) => with_host(req)?,
    };
    if let Some(auth) = &conn.proxy_authorization {
        let mut value = HeaderValue::from_str(&auth.0)
            .map_err(|_| TransportError::Other("bad proxy credentials".into()))?;
        value.set_sensitive(true);
        req.headers_mut().insert(PROXY_AUTHORIZATION, value);
    }
    Ok(req)
}

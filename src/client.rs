//! The proxy's own outbound HTTP(S) client, for the calls it makes itself: the token endpoint, OpenID
//! discovery, user-realm (STS) discovery.
//!
//! Contract: every call is routed exactly like client traffic (`Router::resolve` → `Upstream`), so a
//! corporate proxy, its authentication and the bad-proxy memory apply to the proxy's own calls too
//! (DESIGN.md: "token and PAC fetching get their HTTP transport injected"). TLS is always verified
//! against the configured roots. Bodies are collected up to [`MAX_BODY`]; nothing here logs request
//! or response bodies, which carry refresh tokens and client secrets.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{HOST, PROXY_AUTHORIZATION};
use http::{HeaderValue, Request, Response, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;

use crate::route::Router;
use crate::target::{Action, Hop, Target};
use crate::token::{BoxFuture, Transport, TransportError};
use crate::upstream::Upstream;

/// Largest response body the client collects (token and discovery answers are a few KiB).
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// Outbound client over the proxy's own route and upstream chain.
#[derive(Clone)]
pub struct OutboundClient {
    router: Arc<Router>,
    upstream: Arc<Upstream>,
    tls: TlsConnector,
}

impl std::fmt::Debug for OutboundClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OutboundClient")
    }
}

// === impl OutboundClient ===

impl OutboundClient {
    /// `tls` is the upstream client config (system roots plus any extra roots).
    pub fn new(
        router: Arc<Router>,
        upstream: Arc<Upstream>,
        tls: Arc<rustls::ClientConfig>,
    ) -> OutboundClient {
        OutboundClient {
            router,
            upstream,
            tls: TlsConnector::from(tls),
        }
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
        let decision = self
            .router
            .resolve(&target)
            .await
            .map_err(|e| TransportError::Connect(e.to_string()))?;
        if let Action::Block { reason } = &decision.action {
            return Err(TransportError::Connect(format!(
                "{target} is blocked: {reason}"
            )));
        }
        if https {
            let connected = self
                .upstream
                .connect(&target, &decision)
                .await
                .map_err(|e| TransportError::Connect(e.to_string()))?;
            let server_name = ServerName::try_from(target.host.as_str_for_lookup())
                .map_err(|e| TransportError::Other(format!("bad server name: {e}")))?;
            let tls = self
                .tls
                .connect(server_name, connected.stream)
                .await
                .map_err(|e| TransportError::Connect(format!("TLS to {target}: {e}")))?;
            exchange(tls, origin_form(req)?).await
        } else {
            let connected = self
                .upstream
                .connect_http(&target, &decision)
                .await
                .map_err(|e| TransportError::Connect(e.to_string()))?;
            let mut req = match connected.hop {
                Hop::Direct => origin_form(req)?,
                Hop::Proxy(_) => with_host(req)?,
            };
            if let Some(auth) = connected.proxy_authorization {
                let mut value = HeaderValue::from_str(&auth.0)
                    .map_err(|_| TransportError::Other("bad proxy credentials".into()))?;
                value.set_sensitive(true);
                req.headers_mut().insert(PROXY_AUTHORIZATION, value);
            }
            exchange(connected.stream, req).await
        }
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

/// One HTTP/1.1 exchange on an established stream; the body is collected up to [`MAX_BODY`].
async fn exchange<S>(stream: S, req: Request<Bytes>) -> Result<Response<Bytes>, TransportError>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| TransportError::Other(format!("HTTP handshake: {e}")))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "outbound connection ended with an error");
        }
    });
    let (parts, body) = req.into_parts();
    let response = sender
        .send_request(Request::from_parts(parts, Full::new(body)))
        .await
        .map_err(|e| TransportError::Other(format!("request failed: {e}")))?;
    let (parts, body) = response.into_parts();
    let body = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|e| TransportError::Other(format!("reading the response: {e}")))?
        .to_bytes();
    Ok(Response::from_parts(parts, body))
}

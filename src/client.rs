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

use std::sync::Arc;
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
    /// `tls` is the outbound config from [`crate::tls_client`] (system roots plus any extra roots).
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
        let decision = self
            .router
            .decide(&target)
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

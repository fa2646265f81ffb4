//! One plain `http://` request upstream: hop-by-hop hygiene, absolute-form to proxies, origin-form to
//! origins.
//!
//! Contract:
//! - Hop-by-hop headers (RFC 9110 §7.6.1: `Connection` and the fields it names, `Proxy-Connection`,
//!   `Keep-Alive`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`, `Proxy-Authorization`,
//!   `Proxy-Authenticate`) never cross the proxy in either direction.
//! - `Host` is rewritten from the URI authority (BAD-11): the authority is what was routed and checked.
//! - A 407 from an upstream proxy that offers Basic is retried once, with the configured credentials,
//!   on a fresh connection, when the request has no body; otherwise it becomes 502
//!   `upstream_auth_failed` (the client's own proxy credentials are for us, not for the next hop).
//! - No traffic for `idle` ends the exchange (504 before the response head, a cut body after).
//! - The request body is read and its framing checked *before* any upstream is dialled when it fits
//!   in [`BODY_BUFFER`] (64 KiB): a malformed chunked body is a 400 and nothing is opened upstream
//!   (docs/TESTING.md#bad-5). A larger body streams; if its framing breaks later, the upstream
//!   connection is closed without the terminating chunk (never a complete request) and never reused
//!   (there is no upstream pool on this path).
//! - Through an upstream proxy, a request whose body is in memory waits at most the upstream's
//!   first-byte timeout (`connect_reply_timeout`, 10 s, as a CONNECT reply does) for the response
//!   head. A proxy that stays silent is marked bad like one that failed to connect, and the request
//!   moves to the next hop only when it is idempotent (RFC 9110 §9.2.2): the silent proxy may have
//!   passed a POST on, so a POST gets 504 `upstream_timeout` instead of being sent twice
//!   (docs/TESTING.md#flt-2). Streamed bodies keep the idle limit alone (their upload may take long).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Incoming};
use hyper_util::rt::TokioIo;

use crate::error::ProxyError;
use crate::io::{IdleIo, PrefixedBody};
use crate::target::{Decision, Hop, ProxyEndpoint, Target};
use crate::upstream::auth;
use crate::upstream::{HttpConnected, Upstream};

/// Fields that describe one connection, not the message (RFC 9110 §7.6.1), plus the proxy
/// authentication pair, which belongs to exactly one hop (RFC 9110 §11.7).
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
];

type OutBody = BoxBody<Bytes, hyper::Error>;

/// Request bodies up to this size are read completely, framing checked, before anything is dialled.
pub const BODY_BUFFER: usize = 64 * 1024;

/// The client's request body after the pre-read.
enum RequestBody {
    /// All of it, framing verified: can be sent again (407 retry, failover).
    Complete(Bytes),
    /// More than [`BODY_BUFFER`]: what was read, then the rest as it arrives; sent once.
    Streaming(PrefixedBody),
}

/// Forwards `req` to `target` along `decision`; returns the response and the hop that served it.
pub async fn forward(
    upstream: &Upstream,
    target: &Target,
    decision: &Decision,
    req: Request<Incoming>,
    idle: Duration,
) -> Result<(Response<Incoming>, Hop), ProxyError> {
    let (parts, body) = req.into_parts();
    let mut body = read_body(body, idle).await?;
    let mut remaining = decision.clone();
    loop {
        let conn = upstream.connect_http(target, &remaining).await?;
        let hop = conn.hop.clone();
        let Hop::Proxy(proxy) = &hop else {
            let response = send(conn, &parts, target, body.take(), idle).await?;
            return Ok((clean_response(response), hop));
        };
        let sent_auth = conn.proxy_authorization.is_some();
        let response = match first_byte(upstream, conn, &parts, target, &mut body, idle).await? {
            Ok(response) => response,
            Err(silent) => {
                upstream.mark_failed(proxy);
                remaining.hops.retain(|h| *h != hop);
                let retry = parts.method.is_idempotent() && body.is_complete();
                if !retry || remaining.hops.is_empty() {
                    return Err(silent);
                }
                tracing::debug!(%proxy, "proxy sent no response head; trying the next hop");
                continue;
            }
        };
        if response.status() != StatusCode::PROXY_AUTHENTICATION_REQUIRED {
            return Ok((clean_response(response), hop));
        }
        return retry_with_basic(
            upstream,
            proxy,
            response,
            sent_auth,
            (&parts, target, decision),
            body,
            idle,
        )
        .await;
    }
}

/// Sends the request through a proxy hop. A complete body bounds the wait for the response head by
/// the first-byte timeout; `Ok(Err(_))` is a proxy that stayed silent (the caller may fail over).
async fn first_byte(
    upstream: &Upstream,
    conn: HttpConnected,
    parts: &Parts,
    target: &Target,
    body: &mut RequestBody,
    idle: Duration,
) -> Result<Result<Response<Incoming>, ProxyError>, ProxyError> {
    if !body.is_complete() {
        return send(conn, parts, target, body.take(), idle).await.map(Ok);
    }
    let wait = upstream.first_byte_timeout();
    let peer = conn.hop.to_string();
    match tokio::time::timeout(wait, send(conn, parts, target, body.take(), idle)).await {
        Ok(response) => response.map(Ok),
        Err(_) => Ok(Err(ProxyError::UpstreamTimeout {
            target: peer,
            after: wait,
            detail: "no response head".into(),
        })),
    }
}

/// A 407 from a proxy that offers Basic: once more, with credentials, when the body can be sent
/// again; otherwise 502 `upstream_auth_failed`.
async fn retry_with_basic(
    upstream: &Upstream,
    proxy: &ProxyEndpoint,
    response: Response<Incoming>,
    sent_auth: bool,
    (parts, target, decision): (&Parts, &Target, &Decision),
    mut body: RequestBody,
    idle: Duration,
) -> Result<(Response<Incoming>, Hop), ProxyError> {
    let challenges = challenges_of(response.headers());
    let offers_basic = challenges.iter().any(|c| c.is("Basic"));
    if sent_auth
        || !offers_basic
        || !body.is_complete()
        || upstream.basic_requested(proxy).is_none()
    {
        return Err(auth_failed(proxy, &challenges, sent_auth));
    }
    let conn = upstream.connect_http(target, decision).await?;
    let hop = conn.hop.clone();
    let response = send(conn, parts, target, body.take(), idle).await?;
    if response.status() == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
        return Err(auth_failed(proxy, &challenges_of(response.headers()), true));
    }
    Ok((clean_response(response), hop))
}

/// Reads the body until it ends or passes [`BODY_BUFFER`], each frame within `idle`. A framing
/// error here is the client's (400) and happens before anything was dialled (BAD-5). Trailers of a
/// complete chunked body are dropped: `Trailer` is hop-by-hop here and nothing upstream asked for them.
async fn read_body(mut body: Incoming, idle: Duration) -> Result<RequestBody, ProxyError> {
    let mut buf = BytesMut::new();
    while !body.is_end_stream() {
        let frame = tokio::time::timeout(idle, body.frame())
            .await
            .map_err(|_| ProxyError::BadRequest("the request body stopped arriving".into()))?;
        let Some(frame) = frame else { break };
        let frame =
            frame.map_err(|e| ProxyError::BadRequest(format!("malformed request body ({e})")))?;
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
        }
        if buf.len() > BODY_BUFFER {
            return Ok(RequestBody::Streaming(PrefixedBody::new(
                buf.freeze(),
                body,
            )));
        }
    }
    Ok(RequestBody::Complete(buf.freeze()))
}

/// Sends one request on a fresh connection and waits for the response head.
async fn send(
    conn: HttpConnected,
    parts: &Parts,
    target: &Target,
    body: OutBody,
    idle: Duration,
) -> Result<Response<Incoming>, ProxyError> {
    let peer = match &conn.hop {
        Hop::Direct => target.to_string(),
        Hop::Proxy(p) => format!("proxy {p}"),
    };
    let request = build_request(parts, target, &conn, body)?;
    let io = TokioIo::new(IdleIo::new(conn.stream, idle));
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| upstream_error(&peer, &e, idle))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    sender
        .send_request(request)
        .await
        .map_err(|e| upstream_error(&peer, &e, idle))
}

/// The upstream request: origin-form to origins, absolute-form to proxies; clean headers; Host from
/// the authority; `Proxy-Authorization` only for a proxy that asked for it.
fn build_request(
    parts: &Parts,
    target: &Target,
    conn: &HttpConnected,
    body: OutBody,
) -> Result<Request<OutBody>, ProxyError> {
    let authority = host_header(target);
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let uri = match conn.hop {
        Hop::Direct => path.to_string(),
        Hop::Proxy(_) => format!("http://{authority}{path}"),
    };
    let mut request = Request::new(body);
    *request.method_mut() = parts.method.clone();
    *request.version_mut() = Version::HTTP_11;
    *request.uri_mut() = uri
        .parse::<Uri>()
        .map_err(|e| ProxyError::BadRequest(format!("unusable request URI: {e}")))?;
    let headers = request.headers_mut();
    *headers = parts.headers.clone();
    strip_hop_by_hop(headers);
    let host = HeaderValue::from_str(&authority)
        .map_err(|_| ProxyError::BadRequest("unusable host".into()))?;
    headers.insert(header::HOST, host);
    if let (Hop::Proxy(_), Some(auth)) = (&conn.hop, &conn.proxy_authorization) {
        let mut value = HeaderValue::from_str(auth.0.as_str())
            .map_err(|_| ProxyError::Internal("proxy credentials are not a header value".into()))?;
        value.set_sensitive(true);
        headers.insert(header::PROXY_AUTHORIZATION, value);
    }
    Ok(request)
}

/// `host[:port]`, the port omitted when it is 80.
fn host_header(target: &Target) -> String {
    match target.port {
        80 => target.host.to_authority_host(),
        port => format!("{}:{port}", target.host.to_authority_host()),
    }
}

/// Removes hop-by-hop fields, including those named in `Connection` (but never the framing or
/// routing fields a client could name there to confuse the next hop).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .filter(|name| *name != header::HOST && *name != header::CONTENT_LENGTH)
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

fn clean_response(mut response: Response<Incoming>) -> Response<Incoming> {
    strip_hop_by_hop(response.headers_mut());
    response
}

fn challenges_of(headers: &HeaderMap) -> Vec<auth::Challenge> {
    auth::parse_proxy_authenticate(
        headers
            .get_all(header::PROXY_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    )
}

fn auth_failed(proxy: &ProxyEndpoint, challenges: &[auth::Challenge], sent: bool) -> ProxyError {
    let why = match sent {
        true => "it rejected the configured credentials",
        false => "no usable credentials for it",
    };
    ProxyError::UpstreamAuthFailed {
        proxy: proxy.to_string(),
        offered: format!("{}; {why}", auth::offered_schemes(challenges)),
    }
}

fn upstream_error(peer: &str, e: &hyper::Error, idle: Duration) -> ProxyError {
    // The body we were relaying is the client's: its framing error is the client's fault (BAD-5).
    let client_body = std::error::Error::source(e).and_then(|s| s.downcast_ref::<hyper::Error>());
    if let Some(body_error) = client_body {
        return ProxyError::BadRequest(format!("malformed request body ({body_error})"));
    }
    let timed_out = std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut);
    if timed_out {
        return ProxyError::UpstreamTimeout {
            target: peer.to_string(),
            after: idle,
            detail: "no response".into(),
        };
    }
    ProxyError::UpstreamBadResponse {
        peer: peer.to_string(),
        detail: e.to_string(),
    }
}

fn empty() -> OutBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

// === impl RequestBody ===

impl RequestBody {
    fn is_complete(&self) -> bool {
        matches!(self, RequestBody::Complete(_))
    }

    /// The body to send: a copy of a complete one (it may be sent again), the stream itself once.
    fn take(&mut self) -> OutBody {
        match self {
            RequestBody::Complete(bytes) if bytes.is_empty() => empty(),
            RequestBody::Complete(bytes) => Full::new(bytes.clone())
                .map_err(|never| match never {})
                .boxed(),
            RequestBody::Streaming(_) => {
                match std::mem::replace(self, RequestBody::Complete(Bytes::new())) {
                    RequestBody::Streaming(prefixed) => prefixed.boxed(),
                    RequestBody::Complete(_) => empty(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_and_named_fields() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, X-Secret, Content-Length, host"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authorization", "Basic abc"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("trailer", "x"),
            ("content-length", "3"),
            ("host", "a"),
            ("accept", "*/*"),
        ] {
            h.append(k, HeaderValue::from_static(v));
        }
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, ["accept", "content-length", "host"]);
    }

    #[test]
    fn host_header_omits_default_port() {
        let t = Target::from_http_authority("Example.test").unwrap();
        assert_eq!(host_header(&t), "example.test");
        let t = Target::from_http_authority("[::1]:8080").unwrap();
        assert_eq!(host_header(&t), "[::1]:8080");
    }
}

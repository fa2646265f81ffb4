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

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::body::{Body, Incoming};
use hyper_util::rt::TokioIo;

use crate::error::ProxyError;
use crate::io::IdleIo;
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

/// Forwards `req` to `target` along `decision`; returns the response and the hop that served it.
pub async fn forward(
    upstream: &Upstream,
    target: &Target,
    decision: &Decision,
    req: Request<Incoming>,
    idle: Duration,
) -> Result<(Response<Incoming>, Hop), ProxyError> {
    let (parts, body) = req.into_parts();
    // Without a body the request can be sent twice (the 407 retry); with one it cannot.
    let replayable = body.is_end_stream();
    let first_body = match replayable {
        true => empty(),
        false => body.boxed(),
    };
    let conn = upstream.connect_http(target, decision).await?;
    let sent_auth = conn.proxy_authorization.is_some();
    let hop = conn.hop.clone();
    let response = send(conn, &parts, target, first_body, idle).await?;
    let Hop::Proxy(proxy) = &hop else {
        return Ok((clean_response(response), hop));
    };
    if response.status() != StatusCode::PROXY_AUTHENTICATION_REQUIRED {
        return Ok((clean_response(response), hop));
    }
    let challenges = challenges_of(response.headers());
    let offers_basic = challenges.iter().any(|c| c.is("Basic"));
    if sent_auth || !offers_basic || !replayable || upstream.basic_requested(proxy).is_none() {
        return Err(auth_failed(proxy, &challenges, sent_auth));
    }
    let conn = upstream.connect_http(target, decision).await?;
    let hop = conn.hop.clone();
    let response = send(conn, &parts, target, empty(), idle).await?;
    if response.status() == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
        return Err(auth_failed(proxy, &challenges_of(response.headers()), true));
    }
    Ok((clean_response(response), hop))
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

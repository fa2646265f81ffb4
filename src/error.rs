//! The catalogue of conditions the proxy reports to a client, each saying which side failed.
//!
//! Contract: inner modules return their own small errors and convert them into a [`ProxyError`]; only
//! `handler::rescue` turns a `ProxyError` into a response (status, `X-LocalProxy-Error` code, a text body
//! that says what failed and what to do). Messages never contain secrets: credentials, tokens and
//! cookies are not part of any variant.

use std::time::Duration;

/// Everything the proxy itself can answer with instead of relaying an upstream response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// The client's request is malformed (framing, request-target, headers).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The request head is over the size or field-count limit (BAD-8).
    #[error("request header block too large: {0}")]
    HeadersTooLarge(String),
    /// The request line is longer than the proxy accepts (BAD-7).
    #[error("request URI too long: {0}")]
    UriTooLong(String),
    /// Origin-form request sent to the proxy port (BAD-12).
    #[error("this is a proxy: send absolute-form requests or CONNECT")]
    NotAProxyRequest,
    /// Method that a proxy must never relay (TRACE/TRACK, BAD-19).
    #[error("method {0} is not allowed through the proxy")]
    MethodNotAllowed(String),
    /// Policy refused the target (route Block, port not allowed, local address, BAD-20…BAD-28).
    #[error("connection to {target} denied: {reason}")]
    ConnectDenied { target: String, reason: String },
    /// Plain `http://` to a host whose requests would carry a token (BAD-34).
    #[error("plain http to {host} refused: use https")]
    PlainHttpToIntercepted { host: String },
    /// Every hop failed at connect level (FLT-1).
    #[error("could not reach {target}: {detail}")]
    UpstreamUnreachable { target: String, detail: String },
    /// A hop accepted TCP but did not answer in time, or could not be reached in time (FLT-2).
    #[error("timed out reaching {target} after {after:?}: {detail}")]
    UpstreamTimeout {
        target: String,
        after: Duration,
        detail: String,
    },
    /// The upstream proxy wants credentials we do not have or refused ours (FLT-3).
    #[error("proxy {proxy} requires authentication ({offered})")]
    UpstreamAuthFailed { proxy: String, offered: String },
    /// The upstream proxy answered CONNECT with something other than a clean 2xx (BAD-18).
    #[error("proxy {proxy} refused the tunnel: {detail}")]
    UpstreamRefused { proxy: String, detail: String },
    /// The origin or proxy sent something that is not a usable HTTP response (BAD-17), or closed the
    /// connection before answering.
    #[error("{peer} sent no usable response: {detail}")]
    UpstreamBadResponse { peer: String, detail: String },
    /// A route points back at this proxy (BAD-30).
    #[error("routing loop: {0} is this proxy")]
    ProxyLoop(String),
    /// The upstream TLS handshake failed (FLT-8); `kind` is a stable short name.
    #[error("TLS to {host} failed ({kind}): {detail}")]
    UpstreamTls {
        host: String,
        kind: &'static str,
        detail: String,
    },
    /// The PAC script could not be fetched or evaluated, and policy is fail-closed (PAC-1…PAC-11).
    #[error("PAC failed: {0}")]
    Pac(String),
    /// The PAC script is still loading after the wait a request allows (PAC-11): retry shortly.
    #[error("PAC still loading: {0}")]
    PacLoading(String),
    /// The PAC script returned a directive we cannot use (PAC-6).
    #[error("PAC returned an unusable result: {0}")]
    PacInvalidResult(String),
    /// The connecting socket belongs to another OS user (SEC-3).
    #[error("client is not authorized: {0}")]
    ClientNotAuthorized(String),
    /// No token could be obtained right now; `retry_after` hints when to try again (FLT-5).
    #[error("token unavailable for {account}: {detail}")]
    TokenUnavailable {
        account: String,
        detail: String,
        retry_after: Option<Duration>,
    },
    /// The account needs an interactive sign-in (revoked refresh token, no token yet) (FLT-11).
    #[error("sign-in required for {account}: {detail}")]
    SignInRequired { account: String, detail: String },
    /// Inside an intercepted tunnel, a request named another host than the CONNECT (BAD-14).
    #[error("request for {requested} inside the tunnel to {connect}")]
    Misdirected { connect: String, requested: String },
    /// A request that needs a token names no account and no default is configured.
    #[error("no account: the request names no user and no default account is configured")]
    AccountRequired,
    /// Too many connections or an overload guard tripped.
    #[error("proxy overloaded: {0}")]
    Overloaded(String),
    /// A bug or an unexpected local failure; the detail is logged, not shown.
    #[error("internal error: {0}")]
    Internal(String),
}

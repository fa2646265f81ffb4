//! The request-head guard: reads and checks the request head *before* hyper sees it, so that every
//! rejection is one of our responses (status, `X-LocalProxy-Error`, a body) and nothing is forwarded.
//!
//! Contract: [`check_head`] is sans-IO and strict (docs/TESTING.md#bad: BAD-1…BAD-8, BAD-12, BAD-13, BAD-19,
//! BAD-20, BAD-21, BAD-29). It accepts only what a proxy client legitimately sends: CONNECT with a
//! valid `host:port`, or an absolute-form `http://` request. Framing is stricter than RFC 9112 allows
//! on purpose, because a proxy must never disagree with the next hop about where a request ends:
//! - `Content-Length` is `1*DIGIT` (at most 18), at most one line (identical duplicates are rejected too);
//! - `Transfer-Encoding` is exactly `chunked`, one line, HTTP/1.1 only, never together with CL;
//! - a CONNECT carries neither; lines end in CRLF (no bare LF).

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

use crate::error::ProxyError;
use crate::limits::Limits;
use crate::target::Target;

/// What the guard learned about an accepted head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    /// The request-target as sent (`host:port` for CONNECT, `http://…` otherwise).
    pub target: String,
    /// Minor HTTP version: 0 or 1.
    pub version: u8,
    /// Bytes of the head including the final CRLF.
    pub head_len: usize,
}

/// Why no head was read.
#[derive(Debug)]
pub enum HeadError {
    /// The head is unacceptable: answer with this error and close.
    Reject(ProxyError),
    /// The client closed, or stayed silent or slow past the timeouts: just close.
    Gone,
}

// === impl RequestHead ===

impl RequestHead {
    pub fn is_connect(&self) -> bool {
        self.method == "CONNECT"
    }
}

/// Reads until a complete, acceptable head is buffered. The first byte may take `client_idle`; once
/// it arrived the whole head must arrive within `header_read_timeout` (slowloris).
pub async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    limits: &Limits,
) -> Result<(RequestHead, Bytes), HeadError> {
    let mut buf = BytesMut::with_capacity(4096);
    let mut deadline = Instant::now() + limits.client_idle;
    loop {
        let before = buf.len();
        let read = tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await;
        match read {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return Err(HeadError::Gone),
            Ok(Ok(_)) if before == 0 => deadline = Instant::now() + limits.header_read_timeout,
            Ok(Ok(_)) => {}
        }
        if !worth_parsing(&buf, before, limits) {
            continue;
        }
        if let Some(head) = check_head(&buf, limits).map_err(HeadError::Reject)? {
            return Ok((head, buf.freeze()));
        }
    }
}

/// Parse again only when a line ended or a limit may have been crossed: a client trickling one byte
/// at a time must not make us re-parse a 64 KiB buffer per byte.
fn worth_parsing(buf: &[u8], before: usize, limits: &Limits) -> bool {
    let line_ended = buf[before..].contains(&b'\n');
    let first_line_too_long =
        buf.len() > limits.max_request_line && !buf[..before].contains(&b'\n');
    line_ended || first_line_too_long || buf.len() > limits.max_head_bytes
}

/// Checks a buffer that starts with a request head. `Ok(None)`: incomplete, read more.
pub fn check_head(buf: &[u8], limits: &Limits) -> Result<Option<RequestHead>, ProxyError> {
    check_request_line_length(buf, limits)?;
    let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut request = httparse::Request::new(&mut headers);
    let head_len = match request.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() <= limits.max_head_bytes => return Ok(None),
        Ok(httparse::Status::Partial) => return Err(too_large(limits)),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ProxyError::HeadersTooLarge(format!(
                "more than {} header fields",
                limits.max_headers
            )));
        }
        Err(e) => return Err(bad(format!("malformed request head ({e})"))),
    };
    if head_len > limits.max_head_bytes {
        return Err(too_large(limits));
    }
    let head = RequestHead {
        method: request.method.unwrap_or_default().to_string(),
        target: request.path.unwrap_or_default().to_string(),
        version: request.version.unwrap_or(1),
        head_len,
    };
    check_line_endings(&buf[..head_len])?;
    check_method(&head)?;
    check_target(&head, request.headers)?;
    let framing = Framing::of(buf, request.headers)?;
    framing.check(&head, buf.len() > head_len)?;
    Ok(Some(head))
}

/// A request line that does not end within the limit is a 414, unless the method itself is the
/// problem (BAD-7: a 16 KiB method is garbage, not a long URI).
fn check_request_line_length(buf: &[u8], limits: &Limits) -> Result<(), ProxyError> {
    let line_len = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    if line_len <= limits.max_request_line {
        return Ok(());
    }
    match buf.iter().take(32).position(|&b| b == b' ') {
        Some(_) => Err(ProxyError::UriTooLong(format!(
            "the request line is longer than {} bytes",
            limits.max_request_line
        ))),
        None => Err(bad("request method too long".into())),
    }
}

fn check_line_endings(head: &[u8]) -> Result<(), ProxyError> {
    let bare_lf = head
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r'));
    match bare_lf {
        true => Err(bad("lines must end with CRLF".into())),
        false => Ok(()),
    }
}

fn check_method(head: &RequestHead) -> Result<(), ProxyError> {
    if !head
        .method
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b == b'-')
    {
        return Err(bad(format!("unknown method {:?}", head.method)));
    }
    match head.method.as_str() {
        "TRACE" | "TRACK" => Err(ProxyError::MethodNotAllowed(head.method.clone())),
        _ => Ok(()),
    }
}

/// CONNECT takes `host:port`; everything else must be absolute-form `http://` (BAD-12).
fn check_target(head: &RequestHead, headers: &[httparse::Header<'_>]) -> Result<(), ProxyError> {
    if has_userinfo(&head.target) {
        return Err(userinfo_refused());
    }
    if head.is_connect() {
        return Target::parse_connect(&head.target)
            .map(|_| ())
            .map_err(|e| bad(e.0));
    }
    let t = head.target.as_bytes();
    // The served PAC, CRL and status surface (admin): the handler answers them only when `Host`
    // names this proxy; the status surface does not even get that far under a host name.
    let names_us = || {
        headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("host")
                && std::str::from_utf8(h.value).is_ok_and(crate::admin::may_name_us)
        })
    };
    let status = crate::admin::STATUS_PATHS.iter().any(|p| p.as_bytes() == t) && names_us();
    if head.method == "GET" && (t == b"/proxy.pac" || t == b"/exoproxy-ca.crl" || status) {
        return Ok(());
    }
    // Admin actions take any method here, so that the action gate answers 405 to all but POST.
    if t.starts_with(crate::admin::action::PREFIX.as_bytes()) && names_us() {
        return Ok(());
    }
    if t.starts_with(b"/") || t == b"*" {
        return Err(ProxyError::NotAProxyRequest);
    }
    if t.len() < 7 || !t[..7].eq_ignore_ascii_case(b"http://") {
        let scheme = head.target.split(':').next().unwrap_or_default();
        return Err(bad(format!(
            "unsupported request-target scheme {:?}: send http:// URLs in absolute form, use CONNECT for https",
            truncate(scheme)
        )));
    }
    Ok(())
}

/// True when the authority of a request-target carries `user[:password]@`. Such targets are refused
/// without echoing them, so that the credentials reach neither the log nor the response.
pub fn has_userinfo(target: &str) -> bool {
    let rest = target.split_once("://").map_or(target, |(_, rest)| rest);
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    rest[..authority_end].contains('@')
}

/// The refusal for [`has_userinfo`] targets.
pub fn userinfo_refused() -> ProxyError {
    bad(
        "credentials in the URL are not accepted; configure the client's proxy settings instead"
            .into(),
    )
}

/// The framing headers of a request, checked strictly.
#[derive(Debug, Default)]
struct Framing {
    content_length: Option<u64>,
    chunked: bool,
}

// === impl Framing ===

impl Framing {
    fn of(buf: &[u8], headers: &[httparse::Header<'_>]) -> Result<Framing, ProxyError> {
        let mut framing = Framing::default();
        let mut hosts = 0;
        for h in headers {
            let raw = raw_line(buf, h);
            if h.name.eq_ignore_ascii_case("content-length") {
                if framing.content_length.is_some() {
                    return Err(bad("more than one Content-Length".into()));
                }
                framing.content_length = Some(parse_content_length(raw)?);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                if framing.chunked {
                    return Err(bad("more than one Transfer-Encoding".into()));
                }
                if !value_is(raw, b"chunked") {
                    return Err(bad("Transfer-Encoding must be exactly \"chunked\"".into()));
                }
                framing.chunked = true;
            } else if h.name.eq_ignore_ascii_case("host") {
                hosts += 1;
            }
        }
        match hosts {
            0 | 1 => Ok(framing),
            _ => Err(bad("more than one Host header".into())),
        }
    }

    fn check(&self, head: &RequestHead, bytes_follow: bool) -> Result<(), ProxyError> {
        if self.chunked && self.content_length.is_some() {
            return Err(bad(
                "both Content-Length and Transfer-Encoding (request smuggling guard)".into(),
            ));
        }
        if self.chunked && head.version == 0 {
            return Err(bad("Transfer-Encoding in an HTTP/1.0 request".into()));
        }
        if head.is_connect() && (self.chunked || self.content_length.is_some()) {
            return Err(bad("CONNECT must not have a body".into()));
        }
        let unframed = !self.chunked && self.content_length.is_none();
        if unframed && head.version == 0 && bytes_follow && !head.is_connect() {
            return Err(bad(
                "HTTP/1.0 request with a body but no Content-Length".into()
            ));
        }
        Ok(())
    }
}

/// The raw header line from the name to the CR, so that whitespace tricks are visible.
fn raw_line<'b>(buf: &'b [u8], h: &httparse::Header<'_>) -> &'b [u8] {
    let start = (h.name.as_ptr() as usize).saturating_sub(buf.as_ptr() as usize);
    let rest = buf.get(start..).unwrap_or_default();
    let end = rest.iter().position(|&b| b == b'\r').unwrap_or(rest.len());
    &rest[..end]
}

/// The value part of a raw line: after the colon, at most one space, nothing trailing.
fn raw_value(raw: &[u8]) -> &[u8] {
    let after = raw
        .iter()
        .position(|&b| b == b':')
        .map_or(raw, |i| &raw[i + 1..]);
    after.strip_prefix(b" ").unwrap_or(after)
}

fn value_is(raw: &[u8], expected: &[u8]) -> bool {
    raw_value(raw).eq_ignore_ascii_case(expected)
}

fn parse_content_length(raw: &[u8]) -> Result<u64, ProxyError> {
    let value = raw_value(raw);
    let digits_only =
        !value.is_empty() && value.len() <= 18 && value.iter().all(u8::is_ascii_digit);
    if !digits_only {
        return Err(bad(format!(
            "invalid Content-Length {:?}: use plain decimal digits",
            String::from_utf8_lossy(value)
        )));
    }
    String::from_utf8_lossy(value)
        .parse()
        .map_err(|_| bad("invalid Content-Length".into()))
}

fn bad(detail: String) -> ProxyError {
    ProxyError::BadRequest(detail)
}

fn too_large(limits: &Limits) -> ProxyError {
    ProxyError::HeadersTooLarge(format!(
        "the request head is larger than {} KiB",
        limits.max_head_bytes / 1024
    ))
}

fn truncate(s: &str) -> &str {
    s.get(..64).unwrap_or(s)
}

#[cfg(test)]
mod tests;

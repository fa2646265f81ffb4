//! Small HTTP helpers shared by the handlers: form and query decoding, JSON and HTML responses.

use std::collections::HashMap;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

/// A buffered request, as every handler sees it.
pub(crate) type Request = http::Request<Bytes>;

/// Decoded `application/x-www-form-urlencoded` pairs (also used for query strings). Later keys win.
pub(crate) fn form(body: &[u8]) -> HashMap<String, String> {
    body.split(|b| *b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let mut kv = pair.splitn(2, |b| *b == b'=');
            let key = percent_decode(kv.next().unwrap_or_default());
            let value = percent_decode(kv.next().unwrap_or_default());
            (key, value)
        })
        .collect()
}

/// The query string of `req`, decoded.
pub(crate) fn query(req: &Request) -> HashMap<String, String> {
    form(req.uri().query().unwrap_or_default().as_bytes())
}

/// `+` is a space, `%XX` a byte; invalid escapes stay as they are.
pub(crate) fn percent_decode(input: &[u8]) -> String {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < input.len() => {
                match std::str::from_utf8(&input[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encode everything but unreserved characters (RFC 3986 §2.3).
pub(crate) fn percent_encode(input: &str) -> String {
    input
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Response<Bytes> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    with_type(status, Bytes::from(body), "application/json; charset=utf-8")
}

pub(crate) fn html(status: StatusCode, body: String) -> Response<Bytes> {
    with_type(status, Bytes::from(body), "text/html; charset=utf-8")
}

pub(crate) fn text(status: StatusCode, body: &str) -> Response<Bytes> {
    with_type(
        status,
        Bytes::copy_from_slice(body.as_bytes()),
        "text/plain; charset=utf-8",
    )
}

pub(crate) fn xml(status: StatusCode, body: String) -> Response<Bytes> {
    with_type(status, Bytes::from(body), "application/xml; charset=utf-8")
}

pub(crate) fn empty(status: StatusCode) -> Response<Bytes> {
    let mut resp = Response::new(Bytes::new());
    *resp.status_mut() = status;
    resp
}

pub(crate) fn not_found() -> Response<Bytes> {
    text(StatusCode::NOT_FOUND, "not found")
}

/// A 302 to `location`.
pub(crate) fn redirect(location: &str) -> Response<Bytes> {
    let mut resp = empty(StatusCode::FOUND);
    if let Ok(value) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, value);
    }
    resp
}

fn with_type(status: StatusCode, body: Bytes, content_type: &'static str) -> Response<Bytes> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    resp
}

/// Escape text for HTML element content and attribute values.
pub(crate) fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Header value as text, if present and printable.
pub(crate) fn header_str<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

//! CONNECT through an upstream HTTP proxy (RFC 9110 §9.3.6), with strict parsing of the reply (BAD-18)
//! and Basic authentication after a 407 that offers it.
//!
//! Contract: the reply is accepted only when it is a complete 2xx head with no `Content-Length`, no
//! `Transfer-Encoding` and no bytes after it; anything else is an error naming the proxy. The reply
//! parser is sans-IO ([`parse_connect_reply`]) so every malformed case is a unit test.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::auth::{self, Challenge};
use super::{HopError, ProxyAuthorization};
use crate::error::ProxyError;
use crate::target::{ProxyEndpoint, Target};

/// Upper bound of a CONNECT reply head; a proxy that sends more is not talking sense.
const MAX_REPLY_HEAD: usize = 16 * 1024;

/// What an upstream proxy said to our CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConnectReply {
    /// A clean 2xx: the tunnel is open.
    Established,
    /// 407 with the challenges it offered (possibly none: a protocol error the caller reports).
    AuthRequired(Vec<Challenge>),
    /// Any other status, with a short description (`403 Forbidden`).
    Refused(String),
    /// Not an acceptable HTTP reply head.
    Malformed(String),
}

/// Parses a complete reply buffer. `None` means the head is not complete yet.
pub(crate) fn parse_connect_reply(buf: &[u8]) -> Option<ConnectReply> {
    if buf.first() == Some(&0x16) {
        return Some(ConnectReply::Malformed(
            "it answered with TLS: is this an HTTPS port rather than an HTTP proxy?".into(),
        ));
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() < MAX_REPLY_HEAD => return None,
        Ok(httparse::Status::Partial) => {
            return Some(ConnectReply::Malformed("reply head too large".into()));
        }
        Err(e) => return Some(ConnectReply::Malformed(format!("not an HTTP reply ({e})"))),
    };
    let status = response.code.unwrap_or(0);
    let reason = response.reason.unwrap_or("");
    let header = |name: &'static str| {
        response
            .headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).into_owned())
    };
    Some(match status {
        200..=299 => {
            if header("content-length").next().is_some() {
                ConnectReply::Malformed(format!("{status} reply with Content-Length"))
            } else if header("transfer-encoding").next().is_some() {
                ConnectReply::Malformed(format!("{status} reply with Transfer-Encoding"))
            } else if buf.len() > head_len {
                ConnectReply::Malformed(format!(
                    "{status} reply followed by {} unexpected bytes",
                    buf.len() - head_len
                ))
            } else {
                ConnectReply::Established
            }
        }
        407 => {
            let values: Vec<String> = header("proxy-authenticate").collect();
            ConnectReply::AuthRequired(auth::parse_proxy_authenticate(
                values.iter().map(String::as_str),
            ))
        }
        _ => ConnectReply::Refused(format!("{status} {reason}").trim().to_string()),
    })
}

/// The CONNECT request head: absolute authority, Host, optional Proxy-Authorization.
pub(crate) fn connect_request(target: &Target, auth: Option<&ProxyAuthorization>) -> Vec<u8> {
    let authority = format!("{}:{}", target.host.to_authority_host(), target.port);
    let mut head = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(auth) = auth {
        head.push_str("Proxy-Authorization: ");
        head.push_str(auth.0.as_str());
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// Sends CONNECT on `stream` and reads the reply within `reply_timeout`.
pub(crate) async fn send_connect(
    stream: &mut TcpStream,
    proxy: &ProxyEndpoint,
    target: &Target,
    auth: Option<&ProxyAuthorization>,
    reply_timeout: Duration,
) -> Result<ConnectReply, HopError> {
    let exchange = async {
        stream.write_all(&connect_request(target, auth)).await?;
        read_reply(stream).await
    };
    match tokio::time::timeout(reply_timeout, exchange).await {
        Ok(Ok(Some(reply))) => Ok(reply),
        Ok(Ok(None)) => Err(HopError::ConnectLevel(ProxyError::UpstreamUnreachable {
            target: format!("proxy {proxy}"),
            detail: "it closed the connection without answering CONNECT".into(),
        })),
        Ok(Err(e)) => Err(HopError::ConnectLevel(ProxyError::UpstreamUnreachable {
            target: format!("proxy {proxy}"),
            detail: format!("CONNECT failed: {e}"),
        })),
        Err(_) => Err(HopError::ConnectLevel(ProxyError::UpstreamTimeout {
            target: format!("proxy {proxy}"),
            after: reply_timeout,
            detail: "no answer to CONNECT".into(),
        })),
    }
}

/// Reads until the reply head is complete; `None` when the proxy closed before sending anything.
async fn read_reply(stream: &mut TcpStream) -> std::io::Result<Option<ConnectReply>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(match buf.is_empty() {
                true => None,
                false => Some(ConnectReply::Malformed("reply cut short".into())),
            });
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(reply) = parse_connect_reply(&buf) {
            return Ok(Some(reply));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Option<ConnectReply> {
        parse_connect_reply(s.as_bytes())
    }

    #[test]
    fn clean_200_is_established() {
        assert_eq!(
            parse("HTTP/1.1 200 Connection established\r\n\r\n"),
            Some(ConnectReply::Established)
        );
        assert_eq!(parse("HTTP/1.1 200 OK\r\n"), None);
    }

    #[test]
    fn bad_18_malformed_replies() {
        let cases = [
            "HTTP/1.1 200 OK\r\n\r\nextra",
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            "garbage garbage\r\n\r\n",
            "\x16\x03\x01\x00",
        ];
        for case in cases {
            assert!(
                matches!(parse(case), Some(ConnectReply::Malformed(_))),
                "{case:?}"
            );
        }
    }

    #[test]
    fn auth_and_refusals() {
        let reply = parse(
            "HTTP/1.1 407 Auth\r\nProxy-Authenticate: Basic realm=\"x\"\r\nProxy-Authenticate: NTLM\r\n\r\n",
        );
        let Some(ConnectReply::AuthRequired(ch)) = reply else {
            panic!("{reply:?}")
        };
        assert_eq!(ch.len(), 2);
        assert_eq!(
            parse("HTTP/1.1 407 Auth\r\n\r\n"),
            Some(ConnectReply::AuthRequired(vec![]))
        );
        assert_eq!(
            parse("HTTP/1.1 403 Forbidden\r\n\r\n"),
            Some(ConnectReply::Refused("403 Forbidden".into()))
        );
    }

    #[test]
    fn request_uses_absolute_authority_and_host() {
        let t = Target::parse_connect("[::1]:443").unwrap();
        assert_eq!(
            connect_request(&t, None),
            b"CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n"
        );
    }
}

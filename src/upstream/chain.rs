//! CONNECT through an upstream HTTP proxy (RFC 9110 §9.3.6), with strict parsing of the reply (BAD-18),
//! and the connection-oriented proxy-auth handshakes (NTLM, Negotiate) that ride on it.
//!
//! Contract: the reply is accepted only when it is a complete 2xx head with no `Content-Length`, no
//! `Transfer-Encoding` and no bytes after it; anything else is an error naming the proxy. The reply
//! parser is sans-IO ([`parse_reply`]) so every malformed case is a unit test. A 407's body is read
//! and dropped so the connection can carry the next handshake leg; a 407 that closes the connection,
//! or whose body has no length, marks the connection as not reusable. A handshake never hands back a
//! half-authenticated connection: it ends established, rejected, or asks for a restart (FLT-12).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::auth::{self, Challenge};
use super::{HopError, ProxyAuthorization};
use crate::error::ProxyError;
use crate::target::{ProxyEndpoint, Target};

/// Upper bound of a reply head; a proxy that sends more is not talking sense.
const MAX_REPLY_HEAD: usize = 16 * 1024;
/// Upper bound of a 407 body we read to keep the connection; larger ones end the connection instead.
const MAX_407_BODY: usize = 64 * 1024;
/// Round trips one handshake may take (NTLM needs 2; Kerberos via SPNEGO at most 3).
const MAX_LEGS: usize = 4;

/// Which request the reply answers: a CONNECT, or the `HEAD` that authenticates a connection for
/// plain `http://` forwarding (its non-407 answer comes from the origin and has no body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplyKind {
    Connect,
    Head,
}

/// What an upstream proxy said to our CONNECT (or authenticating HEAD).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConnectReply {
    /// A clean 2xx to CONNECT: the tunnel is open.
    Established,
    /// Any non-407 answer to the authenticating HEAD; `reusable` when the connection stays open.
    HeadAnswered { reusable: bool },
    /// 407 with the challenges it offered (possibly none: a protocol error the caller reports).
    AuthRequired(AuthReply),
    /// Any other status, with a short description (`403 Forbidden`).
    Refused(String),
    /// Not an acceptable HTTP reply head.
    Malformed(String),
}

/// A 407: the challenges, and whether the connection may carry the next handshake leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuthReply {
    pub(crate) challenges: Vec<Challenge>,
    pub(crate) reusable: bool,
}

/// How a connection-oriented handshake ended.
#[derive(Debug)]
pub(crate) enum Handshake {
    /// The proxy accepted: the connection is authenticated.
    Done,
    /// The proxy answered our final token with another 407 (or stopped offering our scheme).
    Rejected(Vec<Challenge>),
    /// The proxy closed the connection mid-handshake: start again on a fresh one (FLT-12).
    Closed,
}

/// Body framing of a 407, from its head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    /// No length: the body ends when the connection does, so it cannot be reused.
    UntilClose,
}

/// A parsed reply head: the reply, the head length and, for a 407, its body framing.
#[derive(Debug)]
struct Head {
    reply: ConnectReply,
    len: usize,
    framing: Framing,
}

/// Parses a complete CONNECT reply buffer. `None` means the head is not complete yet.
#[cfg(test)]
pub(crate) fn parse_connect_reply(buf: &[u8]) -> Option<ConnectReply> {
    parse_reply(buf, ReplyKind::Connect).map(|h| h.reply)
}

/// Parses a reply head; `None` means the head is not complete yet. Bytes after a 407 head are its
/// body (the caller drains them); bytes after any other head are an error.
fn parse_reply(buf: &[u8], kind: ReplyKind) -> Option<Head> {
    let malformed = |detail: String| Head {
        reply: ConnectReply::Malformed(detail),
        len: buf.len(),
        framing: Framing::UntilClose,
    };
    if buf.first() == Some(&0x16) {
        return Some(malformed(
            "it answered with TLS: is this an HTTPS port rather than an HTTP proxy?".into(),
        ));
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() < MAX_REPLY_HEAD => return None,
        Ok(httparse::Status::Partial) => return Some(malformed("reply head too large".into())),
        Err(e) => return Some(malformed(format!("not an HTTP reply ({e})"))),
    };
    let status = response.code.unwrap_or(0);
    let reason = response.reason.unwrap_or("");
    let values = |name: &'static str| -> Vec<String> {
        response
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).into_owned())
            .collect()
    };
    let extra = buf.len() - head_len;
    let close = closes(
        &values("connection"),
        &values("proxy-connection"),
        response.version,
    );
    let (reply, framing) = match (status, kind) {
        (407, ReplyKind::Head) => (auth_required(&values, close), Framing::Length(0)),
        (407, ReplyKind::Connect) => {
            let framing = framing_of(&values("content-length"), &values("transfer-encoding"));
            (auth_required(&values, close), framing)
        }
        (_, ReplyKind::Head) => (
            // A HEAD answer has no body: bytes after it mean the connection is out of step.
            ConnectReply::HeadAnswered {
                reusable: !close && extra == 0,
            },
            Framing::Length(0),
        ),
        (200..=299, ReplyKind::Connect) => {
            (established(&values, status, extra), Framing::Length(0))
        }
        _ => (
            ConnectReply::Refused(format!("{status} {reason}").trim().to_string()),
            Framing::UntilClose,
        ),
    };
    Some(Head {
        reply,
        len: head_len,
        framing,
    })
}

fn established(
    values: &dyn Fn(&'static str) -> Vec<String>,
    status: u16,
    extra: usize,
) -> ConnectReply {
    if !values("content-length").is_empty() {
        ConnectReply::Malformed(format!("{status} reply with Content-Length"))
    } else if !values("transfer-encoding").is_empty() {
        ConnectReply::Malformed(format!("{status} reply with Transfer-Encoding"))
    } else if extra > 0 {
        ConnectReply::Malformed(format!(
            "{status} reply followed by {extra} unexpected bytes"
        ))
    } else {
        ConnectReply::Established
    }
}

fn auth_required(values: &dyn Fn(&'static str) -> Vec<String>, close: bool) -> ConnectReply {
    let challenges = values("proxy-authenticate");
    ConnectReply::AuthRequired(AuthReply {
        challenges: auth::parse_proxy_authenticate(challenges.iter().map(String::as_str)),
        reusable: !close,
    })
}

/// HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 closes unless told `keep-alive`.
fn closes(connection: &[String], proxy_connection: &[String], version: Option<u8>) -> bool {
    let has = |token: &str| {
        connection
            .iter()
            .chain(proxy_connection)
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    match version {
        Some(1) => has("close"),
        _ => !has("keep-alive"),
    }
}

fn framing_of(content_length: &[String], transfer_encoding: &[String]) -> Framing {
    if let Some(te) = transfer_encoding.last() {
        return match te.trim().to_ascii_lowercase().ends_with("chunked") {
            true => Framing::Chunked,
            false => Framing::UntilClose,
        };
    }
    match content_length {
        [one] => one
            .trim()
            .parse::<usize>()
            .map_or(Framing::UntilClose, Framing::Length),
        _ => Framing::UntilClose,
    }
}

/// How much of `body` a chunked body takes: `Some(n)` when complete, `None` when more is needed or
/// it is not valid chunking (the caller gives up on reuse at the size cap).
fn chunked_len(body: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let line_end = at + body.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
        let line = std::str::from_utf8(&body[at..line_end]).ok()?;
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        at = line_end + 2;
        if size == 0 {
            // Trailer fields, then an empty line.
            loop {
                let end = at + body.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
                let empty = end == at;
                at = end + 2;
                if empty {
                    return Some(at);
                }
            }
        }
        at = at.checked_add(size)?.checked_add(2)?;
        if at > body.len() {
            return None;
        }
    }
}

/// The CONNECT request head: absolute authority, Host, optional Proxy-Authorization.
pub(crate) fn connect_request(target: &Target, auth: Option<&ProxyAuthorization>) -> Vec<u8> {
    let authority = format!("{}:{}", target.host.to_authority_host(), target.port);
    request_head("CONNECT", &authority, &authority, auth)
}

/// `HEAD http://host[:port]/`: authenticates a connection for plain `http://` forwarding. Its 407
/// never reaches the origin; only the final, authenticated HEAD does (a safe method).
pub(crate) fn head_request(target: &Target, auth: Option<&ProxyAuthorization>) -> Vec<u8> {
    let host = match target.port {
        80 => target.host.to_authority_host(),
        port => format!("{}:{port}", target.host.to_authority_host()),
    };
    request_head("HEAD", &format!("http://{host}/"), &host, auth)
}

fn request_head(method: &str, uri: &str, host: &str, auth: Option<&ProxyAuthorization>) -> Vec<u8> {
    let mut head = format!("{method} {uri} HTTP/1.1\r\nHost: {host}\r\n");
    if let Some(auth) = auth {
        head.push_str("Proxy-Authorization: ");
        head.push_str(auth.0.as_str());
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// Sends one request head on `stream` and reads the reply (and a 407's body) within `reply_timeout`.
pub(crate) async fn exchange(
    stream: &mut TcpStream,
    proxy: &ProxyEndpoint,
    request: &[u8],
    kind: ReplyKind,
    reply_timeout: Duration,
) -> Result<ConnectReply, HopError> {
    let exchange = async {
        stream.write_all(request).await?;
        read_reply(stream, kind).await
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

/// Reads until the reply head is complete, then a 407's body; `None` when the proxy closed before
/// sending anything.
async fn read_reply(
    stream: &mut TcpStream,
    kind: ReplyKind,
) -> std::io::Result<Option<ConnectReply>> {
    let mut buf = Vec::with_capacity(1024);
    let head = loop {
        if !read_more(stream, &mut buf).await? {
            return Ok(match buf.is_empty() {
                true => None,
                false => Some(ConnectReply::Malformed("reply cut short".into())),
            });
        }
        if let Some(head) = parse_reply(&buf, kind) {
            break head;
        }
    };
    let ConnectReply::AuthRequired(mut auth) = head.reply else {
        return Ok(Some(head.reply));
    };
    if auth.reusable {
        auth.reusable = drain_body(stream, &mut buf, head.len, head.framing).await?;
    }
    Ok(Some(ConnectReply::AuthRequired(auth)))
}

/// Reads the rest of a 407 body; `false` when the connection cannot carry another request (no
/// length, too large, cut short, or extra bytes after the body).
async fn drain_body(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    head_len: usize,
    framing: Framing,
) -> std::io::Result<bool> {
    loop {
        let body = &buf[head_len..];
        let complete = match framing {
            Framing::UntilClose => return Ok(false),
            Framing::Length(n) if n > MAX_407_BODY => return Ok(false),
            Framing::Length(n) => (body.len() >= n).then_some(n),
            Framing::Chunked => chunked_len(body),
        };
        if let Some(n) = complete {
            return Ok(body.len() == n);
        }
        if body.len() > MAX_407_BODY || !read_more(stream, buf).await? {
            return Ok(false);
        }
    }
}

/// Appends what the socket has; `false` at end of stream.
async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut chunk = [0u8; 4096];
    let n = stream.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n > 0)
}

/// Runs a connection-oriented handshake (NTLM, Negotiate) on `stream`: every leg re-sends `request`
/// with the next token, on the same connection. Closing mid-way asks for a restart; a reset or a
/// missing answer after a token counts as a close, since proxies drop a connection they will not
/// continue (FLT-12).
pub(crate) async fn handshake(
    stream: &mut TcpStream,
    proxy: &ProxyEndpoint,
    request: &(dyn Fn(Option<&ProxyAuthorization>) -> Vec<u8> + Sync),
    kind: ReplyKind,
    session: &mut auth::Session,
    reply_timeout: Duration,
) -> Result<Handshake, HopError> {
    let mut token = session.first_token().map_err(|e| auth_error(proxy, &e))?;
    for _ in 0..MAX_LEGS {
        let reply = match exchange(stream, proxy, &request(Some(&token)), kind, reply_timeout).await
        {
            Ok(reply) => reply,
            Err(HopError::ConnectLevel(ProxyError::UpstreamUnreachable { .. })) => {
                return Ok(Handshake::Closed);
            }
            Err(e) => return Err(e),
        };
        let auth = match reply {
            ConnectReply::Established | ConnectReply::HeadAnswered { reusable: true } => {
                return Ok(Handshake::Done);
            }
            ConnectReply::HeadAnswered { reusable: false } => {
                return Err(HopError::Fatal(refused(
                    proxy,
                    "it closes the connection after authenticating it, so plain http:// cannot \
                     use NTLM/Negotiate through it",
                )));
            }
            ConnectReply::AuthRequired(auth) => auth,
            ConnectReply::Refused(status) => {
                return Err(HopError::Fatal(refused(
                    proxy,
                    &format!("it answered {status}"),
                )));
            }
            ConnectReply::Malformed(detail) => {
                return Err(HopError::Fatal(refused(proxy, &detail)));
            }
        };
        token = match session.next_token(&auth.challenges) {
            None => return Ok(Handshake::Rejected(auth.challenges)),
            Some(Err(e)) => return Err(auth_error(proxy, &e)),
            Some(Ok(_)) if !auth.reusable => return Ok(Handshake::Closed),
            Some(Ok(next)) => next,
        };
    }
    Err(auth_error(proxy, "the handshake did not finish"))
}

fn refused(proxy: &ProxyEndpoint, detail: &str) -> ProxyError {
    ProxyError::UpstreamRefused {
        proxy: proxy.to_string(),
        detail: detail.to_string(),
    }
}

/// A handshake that cannot go on: the proxy is alive, so this is fatal but not connect-level.
fn auth_error(proxy: &ProxyEndpoint, why: &str) -> HopError {
    HopError::Fatal(ProxyError::UpstreamAuthFailed {
        proxy: proxy.to_string(),
        offered: why.to_string(),
    })
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
        let Some(ConnectReply::AuthRequired(a)) = reply else {
            panic!("{reply:?}")
        };
        assert_eq!(a.challenges.len(), 2);
        assert_eq!(
            parse("HTTP/1.1 407 Auth\r\n\r\n"),
            Some(ConnectReply::AuthRequired(AuthReply {
                challenges: vec![],
                reusable: true
            }))
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

    fn auth_reply(s: &str) -> AuthReply {
        match parse(s) {
            Some(ConnectReply::AuthRequired(a)) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn flt_12_407_reuse_follows_connection_semantics() {
        let ntlm = "HTTP/1.1 407 A\r\nProxy-Authenticate: NTLM\r\n";
        assert!(auth_reply(&format!("{ntlm}Content-Length: 0\r\n\r\n")).reusable);
        assert!(!auth_reply(&format!("{ntlm}Connection: close\r\n\r\n")).reusable);
        assert!(!auth_reply(&format!("{ntlm}Proxy-Connection: close\r\n\r\n")).reusable);
        let old = "HTTP/1.0 407 A\r\nProxy-Authenticate: NTLM\r\n";
        assert!(!auth_reply(&format!("{old}\r\n")).reusable);
        assert!(auth_reply(&format!("{old}Connection: keep-alive\r\n\r\n")).reusable);
    }

    #[test]
    fn body_framing_of_a_407() {
        assert_eq!(framing_of(&["12".into()], &[]), Framing::Length(12));
        assert_eq!(
            framing_of(&["1".into(), "2".into()], &[]),
            Framing::UntilClose
        );
        assert_eq!(framing_of(&[], &["chunked".into()]), Framing::Chunked);
        assert_eq!(framing_of(&[], &["gzip".into()]), Framing::UntilClose);
        assert_eq!(framing_of(&[], &[]), Framing::UntilClose);
    }

    #[test]
    fn chunked_body_length() {
        assert_eq!(chunked_len(b"5\r\nhello\r\n0\r\n\r\n"), Some(15));
        assert_eq!(
            chunked_len(b"5;x=y\r\nhello\r\n0\r\nT: v\r\n\r\n"),
            Some(25)
        );
        assert_eq!(chunked_len(b"5\r\nhel"), None);
        assert_eq!(chunked_len(b"zz\r\n"), None);
    }

    #[test]
    fn head_answers_are_reusable_only_when_kept_open_and_bodiless() {
        let head = |s: &str| parse_reply(s.as_bytes(), ReplyKind::Head).map(|h| h.reply);
        assert_eq!(
            head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"),
            Some(ConnectReply::HeadAnswered { reusable: true })
        );
        assert_eq!(
            head("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"),
            Some(ConnectReply::HeadAnswered { reusable: false })
        );
        assert_eq!(
            head("HTTP/1.1 200 OK\r\n\r\nstray"),
            Some(ConnectReply::HeadAnswered { reusable: false })
        );
    }
}

//! The single table that turns a [`crate::error::ProxyError`] into a response the user can act on.
//!
//! Contract (docs/TESTING.md#error-contract): every proxy-generated response carries `X-LocalProxy-Error:
//! <stable-code>`, `Connection: close`, and a short text/plain body saying what failed and what to do.
//! Codes are stable: scripts and docs match on them. Nothing secret is ever part of a message.

use std::borrow::Cow;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

use crate::error::ProxyError;

/// The header that carries the stable error code.
pub const ERROR_HEADER: &str = "x-localproxy-error";

/// One row of the table: what the client sees for an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rescue {
    pub status: StatusCode,
    /// Stable machine-readable code for `X-LocalProxy-Error`.
    pub code: Cow<'static, str>,
    /// What failed and what to do, one or two sentences.
    pub message: String,
    /// Seconds for `Retry-After`, when waiting helps.
    pub retry_after: Option<u64>,
}

// === impl Rescue ===

impl Rescue {
    /// The table. One row per variant; the hint says what the user can do about it.
    pub fn of(err: &ProxyError) -> Rescue {
        use ProxyError as E;
        use StatusCode as S;
        let (status, code, hint): (StatusCode, Cow<'static, str>, Cow<'static, str>) = match err {
            E::BadRequest(_) => (
                S::BAD_REQUEST,
                "bad_request".into(),
                "fix the client request".into(),
            ),
            E::HeadersTooLarge(_) => (
                S::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large".into(),
                "send at most 100 header fields and 64 KiB of headers".into(),
            ),
            E::UriTooLong(_) => (S::URI_TOO_LONG, "uri_too_long".into(), "shorten the URL".into()),
            E::NotAProxyRequest => (
                S::BAD_REQUEST,
                "not_a_proxy_request".into(),
                "configure this address as the client's HTTP proxy; the only pages served here are /proxy.pac and /exoproxy-ca.crl".into(),
            ),
            E::MethodNotAllowed(_) => (
                S::METHOD_NOT_ALLOWED,
                "method_not_allowed".into(),
                "use another method".into(),
            ),
            E::ConnectDenied { .. } => (
                S::FORBIDDEN,
                "connect_denied".into(),
                "`exoproxy route <url>` shows which rule decided".into(),
            ),
            E::PlainHttpToIntercepted { .. } => (
                S::FORBIDDEN,
                "plain_http_refused".into(),
                "use an https:// URL".into(),
            ),
            E::UpstreamUnreachable { .. } => (
                S::BAD_GATEWAY,
                "upstream_unreachable".into(),
                "check the network and the upstream proxy settings".into(),
            ),
            E::UpstreamTimeout { .. } => (
                S::GATEWAY_TIMEOUT,
                "upstream_timeout".into(),
                "the network or upstream proxy is slow or blocking; retry or check the proxy settings".into(),
            ),
            E::UpstreamAuthFailed { .. } => (
                S::BAD_GATEWAY,
                "upstream_auth_failed".into(),
                "configure credentials for this proxy (upstream.credentials) or fix them".into(),
            ),
            E::UpstreamRefused { .. } => (
                S::BAD_GATEWAY,
                "upstream_refused".into(),
                "the upstream proxy refused this destination; ask its administrator or change the route".into(),
            ),
            E::UpstreamBadResponse { .. } => (
                S::BAD_GATEWAY,
                "upstream_bad_response".into(),
                "the server or upstream proxy misbehaved; retry, or report it to its operator".into(),
            ),
            E::ProxyLoop(_) => (
                S::BAD_GATEWAY,
                "proxy_loop".into(),
                "the upstream proxy setting points at exoproxy itself; fix the PAC or upstream list".into(),
            ),
            E::UpstreamTls { kind, .. } => (
                S::BAD_GATEWAY,
                format!("upstream_tls_{kind}").into(),
                "the server's certificate or TLS setup is not acceptable".into(),
            ),
            E::Pac(_) => (
                S::BAD_GATEWAY,
                "pac_error".into(),
                "check the PAC URL and script; `exoproxy pac eval <url>` shows what it returns".into(),
            ),
            E::PacLoading(_) => (
                S::SERVICE_UNAVAILABLE,
                "pac_loading".into(),
                "the PAC script is still being downloaded; retry in a few seconds".into(),
            ),
            E::PacInvalidResult(_) => (
                S::BAD_GATEWAY,
                "pac_invalid_result".into(),
                "fix the PAC script's return value".into(),
            ),
            E::ClientNotAuthorized(_) => (
                S::FORBIDDEN,
                "client_not_authorized".into(),
                "run the client as the user who started exoproxy".into(),
            ),
            E::TokenUnavailable { .. } => (
                S::SERVICE_UNAVAILABLE,
                "token_unavailable".into(),
                "retry shortly; the exoproxy console log says why".into(),
            ),
            E::SignInRequired { account, .. } => (
                S::SERVICE_UNAVAILABLE,
                "reauth_required".into(),
                format!("sign in again with `exoproxy login {account}`").into(),
            ),
            E::Misdirected { .. } => (
                S::MISDIRECTED_REQUEST,
                "misdirected_request".into(),
                "open a new connection for that host".into(),
            ),
            E::AccountRequired => (
                S::UNAUTHORIZED,
                "account_required".into(),
                "send the account's UPN as the user name (the password is ignored) or set a default account".into(),
            ),
            E::Overloaded(_) => (
                S::SERVICE_UNAVAILABLE,
                "overloaded".into(),
                "retry shortly".into(),
            ),
            E::Internal(_) => (
                S::INTERNAL_SERVER_ERROR,
                "internal".into(),
                "this is a bug in exoproxy; see its log".into(),
            ),
        };
        Rescue {
            status,
            code,
            message: format!("{}: {hint}.", describe(err)),
            retry_after: retry_after(err),
        }
    }

    /// The response for hyper.
    pub fn response(&self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::from(self.body())));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        if let Ok(code) = HeaderValue::from_str(&self.code) {
            headers.insert(ERROR_HEADER, code);
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(BASIC_CHALLENGE),
            );
        }
        response
    }

    /// The error as a WS-Man SOAP fault (HTTP 500), whose text WinRM/PowerShell shows to the user.
    /// A 401 stays a 401 with the Basic challenge, so that WinRM sends its user name.
    pub fn wsman_fault_response(&self) -> Response<Full<Bytes>> {
        if self.status == StatusCode::UNAUTHORIZED {
            return self.response();
        }
        let mut response = self.response();
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        *response.body_mut() = Full::new(Bytes::from(self.soap_fault()));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/soap+xml;charset=UTF-8"),
        );
        response
    }

    /// The error as the Exchange REST error shape `{"error":{"code","message"}}`, same status.
    pub fn json_response(&self) -> Response<Full<Bytes>> {
        let body = serde_json::json!({
            "error": { "code": self.code, "message": format!("exoproxy: {}", self.message) }
        });
        let mut response = self.response();
        *response.body_mut() = Full::new(Bytes::from(body.to_string()));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        response
    }

    /// A SOAP 1.2 envelope with a WS-Management fault carrying the message.
    fn soap_fault(&self) -> String {
        let text = xml_escape(&format!("exoproxy: {}", self.message));
        let code = xml_escape(&self.code);
        format!(
            concat!(
                r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" "#,
                r#"xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing">"#,
                r#"<s:Header><a:Action>http://schemas.dmtf.org/wbem/wsman/1/wsman/fault</a:Action></s:Header>"#,
                r#"<s:Body><s:Fault><s:Code><s:Value>s:Receiver</s:Value></s:Code>"#,
                r#"<s:Reason><s:Text xml:lang="en-US">{text}</s:Text></s:Reason>"#,
                r#"<s:Detail><f:WSManFault xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/wsmanfault" Code="0" Machine="exoproxy">"#,
                r#"<f:Message>{text} [{code}]</f:Message></f:WSManFault></s:Detail></s:Fault></s:Body></s:Envelope>"#
            ),
            text = text,
            code = code,
        )
    }

    /// The same response as raw HTTP/1.1 bytes, for errors found before hyper owns the connection.
    pub fn to_http1(&self) -> Vec<u8> {
        let body = self.body();
        let mut retry = self
            .retry_after
            .map(|s| format!("Retry-After: {s}\r\n"))
            .unwrap_or_default();
        if self.status == StatusCode::UNAUTHORIZED {
            retry.push_str(&format!("WWW-Authenticate: {BASIC_CHALLENGE}\r\n"));
        }
        format!(
            "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n{ERROR_HEADER}: {}\r\n{retry}Content-Length: {}\r\n\r\n{body}",
            self.status.as_u16(),
            self.status.canonical_reason().unwrap_or(""),
            self.code,
            body.len(),
        )
        .into_bytes()
    }

    fn body(&self) -> String {
        format!("exoproxy: {}\n", self.message)
    }
}

/// The challenge of a 401 `account_required`: WinRM answers it with the UPN as the Basic user name.
pub const BASIC_CHALLENGE: &str = "Basic realm=\"exoproxy\"";

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The user-facing description; internal details stay in the log.
fn describe(err: &ProxyError) -> String {
    match err {
        ProxyError::Internal(_) => "internal error".to_string(),
        other => other.to_string(),
    }
}

fn retry_after(err: &ProxyError) -> Option<u64> {
    match err {
        ProxyError::TokenUnavailable { retry_after, .. } => retry_after.map(|d| d.as_secs().max(1)),
        ProxyError::Overloaded(_) => Some(1),
        ProxyError::PacLoading(_) => Some(2),
        _ => None,
    }
}

/// Shorthand for handlers: the response for an error.
pub fn rescue(err: &ProxyError) -> Response<Full<Bytes>> {
    Rescue::of(err).response()
}

/// One example of every [`ProxyError`] variant, for the docs table and the completeness test.
pub fn examples() -> Vec<ProxyError> {
    use std::time::Duration;
    let s = |v: &str| v.to_string();
    vec![
        ProxyError::BadRequest(s("both Content-Length and Transfer-Encoding")),
        ProxyError::HeadersTooLarge(s("more than 100 header fields")),
        ProxyError::UriTooLong(s("the request line is longer than 16384 bytes")),
        ProxyError::NotAProxyRequest,
        ProxyError::MethodNotAllowed(s("TRACE")),
        ProxyError::ConnectDenied {
            target: s("localhost:443"),
            reason: s("it is a local address"),
        },
        ProxyError::PlainHttpToIntercepted {
            host: s("outlook.office365.com"),
        },
        ProxyError::UpstreamUnreachable {
            target: s("proxy proxy.corp:8080"),
            detail: s("connection refused"),
        },
        ProxyError::UpstreamTimeout {
            target: s("proxy proxy.corp:8080"),
            after: Duration::from_secs(10),
            detail: s("no answer to CONNECT"),
        },
        ProxyError::UpstreamAuthFailed {
            proxy: s("proxy.corp:8080"),
            offered: s("offered: NTLM; no supported scheme"),
        },
        ProxyError::UpstreamRefused {
            proxy: s("proxy.corp:8080"),
            detail: s("it answered 403 Forbidden"),
        },
        ProxyError::UpstreamBadResponse {
            peer: s("origin.example:80"),
            detail: s("invalid HTTP version"),
        },
        ProxyError::ProxyLoop(s("127.0.0.1:3128")),
        ProxyError::UpstreamTls {
            host: s("outlook.office365.com"),
            kind: "expired",
            detail: s("certificate expired"),
        },
        ProxyError::Pac(s("evaluation timed out")),
        ProxyError::PacLoading(s("the PAC script is still loading after 5s")),
        ProxyError::PacInvalidResult(s("SOCKS5 a:1")),
        ProxyError::ClientNotAuthorized(s("the socket belongs to another user")),
        ProxyError::TokenUnavailable {
            account: s("admin@contoso.com"),
            detail: s("token endpoint unreachable"),
            retry_after: Some(Duration::from_secs(20)),
        },
        ProxyError::SignInRequired {
            account: s("admin@contoso.com"),
            detail: s("refresh token revoked"),
        },
        ProxyError::Misdirected {
            connect: s("outlook.office365.com:443"),
            requested: s("evil.example"),
        },
        ProxyError::AccountRequired,
        ProxyError::Overloaded(s("too many open connections")),
        ProxyError::Internal(s("bug")),
    ]
}

/// The catalogue as a Markdown table (status, code, example message), generated from the table
/// itself so that the docs cannot drift (REL-5).
pub fn docs_table() -> String {
    let mut out =
        String::from("| Status | X-LocalProxy-Error | Example message |\n|---|---|---|\n");
    for err in examples() {
        let r = Rescue::of(&err);
        out.push_str(&format!(
            "| {} | `{}` | {} |\n",
            r.status.as_u16(),
            r.code,
            r.message
        ));
    }
    out
}

#[cfg(test)]
mod tests;

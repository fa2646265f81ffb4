//! REL-5: every row of the rescue table, with status, code and message text.

use std::time::Duration;

use super::*;

fn row(err: ProxyError, status: u16, code: &str, says: &[&str]) {
    let rescue = Rescue::of(&err);
    assert_eq!(rescue.status.as_u16(), status, "{err:?}");
    assert_eq!(rescue.code, code, "{err:?}");
    for part in says {
        assert!(
            rescue.message.contains(part),
            "{:?} lacks {part:?}",
            rescue.message
        );
    }
    let response = rescue.response();
    assert_eq!(response.headers()[ERROR_HEADER], code);
    assert_eq!(response.headers()["connection"], "close");
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let raw = String::from_utf8(rescue.to_http1()).unwrap();
    assert!(raw.starts_with(&format!("HTTP/1.1 {status} ")), "{raw}");
    assert!(raw.contains(&format!("{ERROR_HEADER}: {code}\r\n")));
    assert!(raw.ends_with(&format!("exoproxy: {}\n", rescue.message)));
}

fn s(v: &str) -> String {
    v.to_string()
}

#[test]
fn rel_5_client_side_rows() {
    row(
        ProxyError::BadRequest(s("CL+TE")),
        400,
        "bad_request",
        &["CL+TE", "fix the client request"],
    );
    row(
        ProxyError::HeadersTooLarge(s("101 fields")),
        431,
        "headers_too_large",
        &["101 fields", "100 header fields"],
    );
    row(
        ProxyError::UriTooLong(s("100 KiB")),
        414,
        "uri_too_long",
        &["shorten"],
    );
    row(
        ProxyError::NotAProxyRequest,
        400,
        "not_a_proxy_request",
        &["this is a proxy", "configure this address"],
    );
    row(
        ProxyError::MethodNotAllowed(s("TRACE")),
        405,
        "method_not_allowed",
        &["TRACE"],
    );
    row(
        ProxyError::ClientNotAuthorized(s("uid 1001")),
        403,
        "client_not_authorized",
        &["uid 1001"],
    );
}

#[test]
fn rel_5_policy_rows() {
    row(
        ProxyError::ConnectDenied {
            target: s("localhost:443"),
            reason: s("local address"),
        },
        403,
        "connect_denied",
        &["localhost:443", "local address", "exoproxy route"],
    );
    row(
        ProxyError::PlainHttpToIntercepted {
            host: s("outlook.office365.com"),
        },
        403,
        "plain_http_refused",
        &["use https", "https://"],
    );
    row(
        ProxyError::ProxyLoop(s("127.0.0.1:3128")),
        502,
        "proxy_loop",
        &["127.0.0.1:3128", "exoproxy itself"],
    );
    row(
        ProxyError::Pac(s("timeout")),
        502,
        "pac_error",
        &["PAC failed: timeout"],
    );
    row(
        ProxyError::PacInvalidResult(s("SOCKS x")),
        502,
        "pac_invalid_result",
        &["SOCKS x"],
    );
}

#[test]
fn rel_5_upstream_rows() {
    row(
        ProxyError::UpstreamUnreachable {
            target: s("proxy p:1"),
            detail: s("refused"),
        },
        502,
        "upstream_unreachable",
        &["proxy p:1", "refused"],
    );
    row(
        ProxyError::UpstreamTimeout {
            target: s("proxy p:1"),
            after: Duration::from_secs(10),
            detail: s("no answer"),
        },
        504,
        "upstream_timeout",
        &["proxy p:1", "10s", "no answer"],
    );
    row(
        ProxyError::UpstreamAuthFailed {
            proxy: s("p:1"),
            offered: s("offered: NTLM"),
        },
        502,
        "upstream_auth_failed",
        &["p:1", "NTLM", "credentials"],
    );
    row(
        ProxyError::UpstreamBadResponse {
            peer: s("o.test:80"),
            detail: s("invalid header"),
        },
        502,
        "upstream_bad_response",
        &["o.test:80", "invalid header"],
    );
    row(
        ProxyError::UpstreamRefused {
            proxy: s("p:1"),
            detail: s("403 Forbidden"),
        },
        502,
        "upstream_refused",
        &["403 Forbidden"],
    );
    row(
        ProxyError::UpstreamTls {
            host: s("h"),
            kind: "expired",
            detail: s("cert expired"),
        },
        502,
        "upstream_tls_expired",
        &["cert expired"],
    );
    // Every TLS failure kind has its stable `X-LocalProxy-Error` code, `upstream_tls_<kind>`.
    use crate::intercept::TlsFailureKind as K;
    for (kind, name) in [
        (K::Expired, "expired"),
        (K::WrongHost, "wrong_host"),
        (K::Untrusted, "untrusted"),
        (K::Handshake, "handshake"),
    ] {
        let err = ProxyError::UpstreamTls {
            host: s("h"),
            kind: kind.as_str(),
            detail: s("d"),
        };
        row(err, 502, &format!("upstream_tls_{name}"), &[]);
    }
}

#[test]
fn rel_5_service_rows() {
    let err = ProxyError::TokenUnavailable {
        account: s("a@b"),
        detail: s("IdP down"),
        retry_after: Some(Duration::from_secs(20)),
    };
    row(err.clone(), 503, "token_unavailable", &["a@b", "IdP down"]);
    assert_eq!(Rescue::of(&err).response().headers()["retry-after"], "20");
    let raw = String::from_utf8(Rescue::of(&err).to_http1()).unwrap();
    assert!(raw.contains("Retry-After: 20\r\n"), "{raw}");
    row(
        ProxyError::SignInRequired {
            account: s("a@b"),
            detail: s("revoked"),
        },
        503,
        "reauth_required",
        &["exoproxy login"],
    );
    row(
        ProxyError::Overloaded(s("1024 connections")),
        503,
        "overloaded",
        &["1024 connections", "retry"],
    );
}

#[test]
fn internal_detail_is_not_shown() {
    row(
        ProxyError::Internal(s("secret-ish detail")),
        500,
        "internal",
        &["internal error", "bug"],
    );
    assert!(
        !Rescue::of(&ProxyError::Internal(s("secret-ish detail")))
            .message
            .contains("secret-ish")
    );
}

#[test]
fn rel_5_every_variant_has_a_distinct_code_and_an_allowed_status() {
    let allowed = [
        400, 401, 403, 405, 407, 413, 414, 421, 431, 500, 502, 503, 504,
    ];
    let mut codes = std::collections::HashSet::new();
    for err in examples() {
        let r = Rescue::of(&err);
        assert!(allowed.contains(&r.status.as_u16()), "{err:?}");
        assert!(
            codes.insert(r.code.to_string()),
            "duplicate code {}",
            r.code
        );
        assert!(r.message.ends_with('.'), "{}", r.message);
    }
    assert_eq!(codes.len(), examples().len());
    let table = docs_table();
    assert!(table.contains("| 502 | `proxy_loop` |"), "{table}");
}

#[test]
fn rel_5_intercept_rows() {
    row(
        ProxyError::Misdirected {
            connect: s("outlook.office365.com:443"),
            requested: s("evil.example"),
        },
        421,
        "misdirected_request",
        &["evil.example", "outlook.office365.com:443"],
    );
    row(
        ProxyError::AccountRequired,
        401,
        "account_required",
        &["UPN"],
    );
    let response = Rescue::of(&ProxyError::AccountRequired).response();
    assert_eq!(response.headers()["www-authenticate"], BASIC_CHALLENGE);
}

fn body_text(response: Response<Full<Bytes>>) -> String {
    use http_body_util::BodyExt as _;
    let bytes = futures_lite_block(response.into_body().collect());
    String::from_utf8(bytes.unwrap().to_bytes().to_vec()).unwrap()
}

fn futures_lite_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn wsman_fault_carries_the_message_as_soap() {
    let err = ProxyError::SignInRequired {
        account: s("a@b"),
        detail: s("open <https://microsoft.com/devicelogin> & enter ABC"),
    };
    let response = Rescue::of(&err).wsman_fault_response();
    assert_eq!(response.status(), 500);
    assert_eq!(response.headers()[ERROR_HEADER], "reauth_required");
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/soap+xml")
    );
    let body = body_text(response);
    assert!(body.contains("<s:Fault>"), "{body}");
    assert!(
        body.contains("&lt;https://microsoft.com/devicelogin&gt; &amp; enter ABC"),
        "{body}"
    );
    let unauthorized = Rescue::of(&ProxyError::AccountRequired).wsman_fault_response();
    assert_eq!(unauthorized.status(), 401);
}

#[test]
fn rest_error_is_exchange_json() {
    let err = ProxyError::ClientNotAuthorized(s("uid 1001"));
    let response = Rescue::of(&err).json_response();
    assert_eq!(response.status(), 403);
    let body: serde_json::Value = serde_json::from_str(&body_text(response)).unwrap();
    assert_eq!(body["error"]["code"], "client_not_authorized");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("uid 1001")
    );
}

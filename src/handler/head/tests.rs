//! The guard on raw heads: BAD-1…BAD-8, BAD-12, BAD-13, BAD-19, BAD-20, BAD-21, BAD-29.

use super::*;

fn check(raw: &str) -> Result<Option<RequestHead>, ProxyError> {
    check_head(raw.as_bytes(), &Limits::default())
}

fn code(raw: &str) -> &'static str {
    match check(raw) {
        Ok(Some(_)) => "ok",
        Ok(None) => "partial",
        Err(ProxyError::BadRequest(_)) => "400",
        Err(ProxyError::NotAProxyRequest) => "400-not-proxy",
        Err(ProxyError::MethodNotAllowed(_)) => "405",
        Err(ProxyError::HeadersTooLarge(_)) => "431",
        Err(ProxyError::UriTooLong(_)) => "414",
        Err(e) => panic!("unexpected {e:?}"),
    }
}

const GET: &str = "GET http://origin.test/ HTTP/1.1\r\nHost: origin.test\r\n";

#[test]
fn accepts_plain_proxy_requests() {
    assert_eq!(code(&format!("{GET}\r\n")), "ok");
    assert_eq!(
        code(
            "CONNECT outlook.office365.com:443 HTTP/1.1\r\nHost: outlook.office365.com:443\r\n\r\n"
        ),
        "ok"
    );
    assert_eq!(code(&format!("{GET}Content-Length: 3\r\n\r\nabc")), "ok");
    assert_eq!(
        code(&format!("{GET}Transfer-Encoding: chunked\r\n\r\n")),
        "ok"
    );
    assert_eq!(code(&format!("{GET}Content-Length:3\r\n\r\n")), "ok");
    assert_eq!(code(GET), "partial");
    let head = check(&format!("{GET}\r\nGET")).unwrap().unwrap();
    assert_eq!(head.head_len, GET.len() + 2);
}

#[test]
fn bad_1_content_length_forms() {
    for cl in [
        "+3",
        "-1",
        " 3",
        "3 ",
        "0x10",
        "1e3",
        "",
        "3,4",
        "99999999999999999999999",
        "3,3",
    ] {
        assert_eq!(
            code(&format!("{GET}Content-Length: {cl}\r\n\r\n")),
            "400",
            "{cl:?}"
        );
    }
}

#[test]
fn bad_2_duplicate_content_length() {
    assert_eq!(
        code(&format!(
            "{GET}Content-Length: 3\r\nContent-Length: 4\r\n\r\n"
        )),
        "400"
    );
    // Identical duplicates are rejected too: one rule, documented in the module contract.
    assert_eq!(
        code(&format!(
            "{GET}Content-Length: 3\r\nContent-Length: 3\r\n\r\n"
        )),
        "400"
    );
}

#[test]
fn bad_3_cl_and_te() {
    assert_eq!(
        code(&format!(
            "{GET}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        )),
        "400"
    );
    assert_eq!(
        code(&format!(
            "{GET}Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
        )),
        "400"
    );
}

#[test]
fn bad_4_te_obfuscations() {
    for te in [
        "Transfer-Encoding: chunked, identity",
        "Transfer-Encoding: xchunked",
        "Transfer-Encoding: chunked\t",
        "Transfer-Encoding : chunked",
        "Transfer-Encoding:\tchunked",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
        "Transfer-Encoding: identity",
    ] {
        assert_eq!(code(&format!("{GET}{te}\r\n\r\n")), "400", "{te:?}");
    }
    assert_eq!(
        code("POST http://o.test/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
        "400"
    );
}

#[test]
fn bad_6_header_syntax() {
    for h in [
        "X-A: 1\r\n folded",
        "Bad Name: 1",
        ": empty",
        "X-A: a\0b",
        "X-A: a\rTransfer-Encoding: chunked",
    ] {
        assert_eq!(code(&format!("{GET}{h}\r\n\r\n")), "400", "{h:?}");
    }
}

#[test]
fn bad_7_request_line_garbage() {
    for line in [
        "GET http://o.test/\r\n",
        "GET http://o.test/ HTTP/1.2\r\n",
        "GET http://o.test/ HTTP/0.9\r\n",
        "get http://o.test/ HTTP/1.1\r\n",
        "GET\thttp://o.test/\tHTTP/1.1\r\n",
        "GET   http://o.test/ HTTP/1.1\r\n",
        "GET http://o.test/ HTTP/1.1\n",
    ] {
        assert_eq!(
            code(&format!("{line}Host: o.test\r\n\r\n")),
            "400",
            "{line:?}"
        );
    }
    let long_method = "A".repeat(16 * 1024);
    assert_eq!(
        code(&format!("{long_method} http://o.test/ HTTP/1.1\r\n\r\n")),
        "400"
    );
    let long_uri = format!(
        "GET http://o.test/{} HTTP/1.1\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    assert_eq!(code(&long_uri), "414");
}

#[test]
fn bad_8_header_block_limits() {
    let big = format!("{GET}X-Big: {}\r\n\r\n", "a".repeat(65 * 1024));
    assert_eq!(code(&big), "431");
    let cookie = format!("{GET}Cookie: {}\r\n\r\n", "a".repeat(64 * 1024));
    assert_eq!(code(&cookie), "431");
    let many: String = (0..100).map(|i| format!("X-{i}: v\r\n")).collect();
    assert_eq!(code(&format!("{GET}{many}\r\n")), "431"); // 101 fields with Host
    let ok: String = (0..99).map(|i| format!("X-{i}: v\r\n")).collect();
    assert_eq!(code(&format!("{GET}{ok}\r\n")), "ok");
}

#[test]
fn bad_12_origin_form_and_other_schemes() {
    assert_eq!(code("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), "400-not-proxy");
    assert_eq!(
        code("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"),
        "400-not-proxy"
    );
    assert_eq!(
        code("GET https://o.test/ HTTP/1.1\r\nHost: x\r\n\r\n"),
        "400"
    );
    assert_eq!(code("GET ftp://o.test/ HTTP/1.1\r\nHost: x\r\n\r\n"), "400");
}

#[test]
fn bad_13_http10_body_without_length() {
    assert_eq!(
        code("POST http://o.test/ HTTP/1.0\r\nHost: o.test\r\n\r\nbody"),
        "400"
    );
    assert_eq!(
        code("POST http://o.test/ HTTP/1.0\r\nContent-Length: 4\r\n\r\nbody"),
        "ok"
    );
}

#[test]
fn bad_19_trace_track() {
    assert_eq!(
        code("TRACE http://o.test/ HTTP/1.1\r\nHost: o.test\r\n\r\n"),
        "405"
    );
    assert_eq!(
        code("TRACK http://o.test/ HTTP/1.1\r\nHost: o.test\r\n\r\n"),
        "405"
    );
}

#[test]
fn bad_20_21_connect_targets() {
    for t in [
        "host",
        "host:0",
        "host:65536",
        "host:443abc",
        "::1:443",
        "[::1]",
        "user:pass@host:443",
        "host:443/x",
        "host:443?q",
        "host:443#f",
        "ho%73t:443",
        "bücher.de:443",
    ] {
        assert_eq!(
            code(&format!("CONNECT {t} HTTP/1.1\r\nHost: {t}\r\n\r\n")),
            "400",
            "{t:?}"
        );
    }
}

#[test]
fn bad_29_connect_with_body() {
    assert_eq!(
        code("CONNECT h.test:443 HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"),
        "400"
    );
    assert_eq!(
        code("CONNECT h.test:443 HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
        "400"
    );
    assert_eq!(
        code("CONNECT h.test:443 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
        "400"
    );
}

#[test]
fn duplicate_host_is_rejected() {
    assert_eq!(code(&format!("{GET}Host: other.test\r\n\r\n")), "400");
}

#[test]
fn userinfo_is_refused_without_echo() {
    for raw in [
        "GET http://user:pw@o.test/ HTTP/1.1\r\nHost: o\r\n\r\n",
        "CONNECT user:pw@o.test:443 HTTP/1.1\r\nHost: o\r\n\r\n",
        "GET https://user:pw@o.test/ HTTP/1.1\r\nHost: o\r\n\r\n",
    ] {
        let err = check(raw).unwrap_err();
        assert!(!err.to_string().contains("pw"), "{err}");
    }
    assert!(!has_userinfo("http://o.test/a@b"));
    assert!(has_userinfo("o.test@evil:443"));
}

#[tokio::test]
async fn read_head_trickled_and_oversized() {
    let limits = Limits::default();
    let (mut client, mut server) = tokio::io::duplex(1 << 20);
    let reader = tokio::spawn(async move { read_head(&mut server, &Limits::default()).await });
    for b in GET.bytes().chain(*b"\r\nnext") {
        tokio::io::AsyncWriteExt::write_all(&mut client, &[b])
            .await
            .unwrap();
    }
    let (head, buffered) = reader.await.unwrap().unwrap();
    assert_eq!(head.head_len, GET.len() + 2);
    assert!(buffered.len() >= head.head_len);

    let (mut client, mut server) = tokio::io::duplex(1 << 20);
    let long = format!(
        "GET http://o.test/{} HTTP/1.1",
        "a".repeat(limits.max_request_line)
    );
    tokio::io::AsyncWriteExt::write_all(&mut client, long.as_bytes())
        .await
        .unwrap();
    let result = read_head(&mut server, &limits).await;
    assert!(
        matches!(result, Err(HeadError::Reject(ProxyError::UriTooLong(_)))),
        "{result:?}"
    );
}

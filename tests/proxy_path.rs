//! The main data path on real loopback sockets, each scenario run DIRECT and through the upstream
//! proxy stub: CONNECT to HTTP and HTTPS origins, absolute-form forwarding (BAD-11), the 200 shape
//! (BAD-35), Basic auth only after a 407 (FLT-3), graceful drain and the connection limit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::*;
use tokio::io::AsyncWriteExt;

/// A proxy wired either DIRECT (with `connect_to` for origin.test) or through a working stub.
async fn proxy_for(origin_port: u16, chained: bool) -> (TestProxy, Option<Stub>) {
    if chained {
        let stub = start_stub(StubMode::Forward { basic: None }).await;
        let proxy = start_proxy(via(&[stub.addr]), test_upstream(), test_limits()).await;
        (proxy, Some(stub))
    } else {
        (
            start_proxy(direct(), direct_config(origin_port), test_limits()).await,
            None,
        )
    }
}

#[tokio::test]
async fn connect_to_https_origin_direct_and_chained() {
    for chained in [false, true] {
        let origin = start_tls_origin().await;
        let (proxy, stub) = proxy_for(origin.addr.port(), chained).await;
        let authority = format!("{ORIGIN_HOST}:{}", origin.addr.port());
        let (head, rest, stream) = connect(proxy.addr, &authority).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(rest.is_empty(), "no body after the CONNECT reply");
        let mut tls = tls_connect(stream, &origin.cert).await;
        let response = get_over(&mut tls, "/mailbox", ORIGIN_HOST).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.contains("GET /mailbox HTTP/1.1"), "{response}");
        if let Some(stub) = stub {
            assert_eq!(stub.lines(), [format!("CONNECT {authority} HTTP/1.1")]);
            assert_eq!(stub.auths(), [None], "never send credentials unasked");
        }
    }
}

#[tokio::test]
async fn bad_35_connect_200_has_no_body_framing_or_close() {
    for chained in [false, true] {
        let origin = start_origin().await;
        let (proxy, _stub) = proxy_for(origin.addr.port(), chained).await;
        let (head, rest, mut stream) =
            connect(proxy.addr, &format!("{ORIGIN_HOST}:{}", origin.addr.port())).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        for banned in ["content-length", "transfer-encoding", "connection"] {
            assert_eq!(header(&head, banned), None, "{banned} in {head}");
        }
        assert!(rest.is_empty());
        let response = get_over(&mut stream, "/plain", ORIGIN_HOST).await;
        assert!(
            response.contains("origin saw:\nGET /plain HTTP/1.1"),
            "{response}"
        );
    }
}

#[tokio::test]
async fn bad_11_absolute_form_forwarded_with_host_from_authority() {
    for chained in [false, true] {
        let origin = start_origin().await;
        let (proxy, stub) = proxy_for(origin.addr.port(), chained).await;
        let authority = format!("{ORIGIN_HOST}:{}", origin.addr.port());
        let request = format!(
            "POST http://{authority}/ews?x=1 HTTP/1.1\r\nHost: evil.test\r\nConnection: keep-alive, X-Drop\r\nX-Drop: 1\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nX-Keep: 2\r\nContent-Length: 5\r\n\r\nhello"
        );
        let response = raw(proxy.addr, request.as_bytes()).await;
        assert_eq!(response.status(), 200, "{}", response.text);
        let seen = origin.heads.lock().unwrap()[0].clone();
        assert!(seen.starts_with("POST /ews?x=1 HTTP/1.1\r\n"), "{seen}");
        assert_eq!(header(&seen, "host").as_deref(), Some(authority.as_str()));
        for gone in ["x-drop", "proxy-authorization", "proxy-connection", "te"] {
            assert_eq!(header(&seen, gone), None, "{gone} leaked: {seen}");
        }
        assert_eq!(header(&seen, "x-keep").as_deref(), Some("2"));
        assert!(response.body().ends_with("body=hello"), "{}", response.text);
        assert_eq!(
            response.header("keep-alive"),
            None,
            "hop-by-hop response field relayed"
        );
        assert_eq!(response.header("x-origin").as_deref(), Some("yes"));
        if let Some(stub) = stub {
            assert_eq!(
                stub.lines(),
                [format!("POST http://{authority}/ews?x=1 HTTP/1.1")]
            );
        }
    }
}

#[tokio::test]
async fn chained_basic_auth_only_after_407_then_preemptive() {
    let origin = start_origin().await;
    let stub = start_stub(StubMode::Forward {
        basic: Some("Basic dXNlcjpwYXNz".into()),
    })
    .await;
    let config = exoproxy::upstream::UpstreamConfig {
        credentials: vec![credentials(stub.addr, "user", "pass")],
        ..test_upstream()
    };
    let proxy = start_proxy(via(&[stub.addr]), config, test_limits()).await;
    let authority = format!("{ORIGIN_HOST}:{}", origin.addr.port());
    for _ in 0..2 {
        let (head, _, mut stream) = connect(proxy.addr, &authority).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let response = get_over(&mut stream, "/", ORIGIN_HOST).await;
        assert!(response.contains("origin saw:"), "{response}");
    }
    let basic = Some("Basic dXNlcjpwYXNz".to_string());
    assert_eq!(
        stub.auths(),
        [None, basic.clone(), basic],
        "first unasked, then after the 407"
    );
    assert_eq!(stub.connections(), 3, "the retry uses a fresh connection");
    // Plain http through the same proxy: credentials already known to be wanted.
    let response = raw(
        proxy.addr,
        format!("GET http://{authority}/p HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(response.status(), 200, "{}", response.text);
}

#[tokio::test]
async fn chained_plain_http_retries_after_407() {
    let origin = start_origin().await;
    let stub = start_stub(StubMode::Forward {
        basic: Some("Basic dXNlcjpwYXNz".into()),
    })
    .await;
    let config = exoproxy::upstream::UpstreamConfig {
        credentials: vec![credentials(stub.addr, "user", "pass")],
        ..test_upstream()
    };
    let proxy = start_proxy(via(&[stub.addr]), config, test_limits()).await;
    let authority = format!("{ORIGIN_HOST}:{}", origin.addr.port());
    let response = raw(
        proxy.addr,
        format!("GET http://{authority}/p HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(response.status(), 200, "{}", response.text);
    assert_eq!(stub.auths(), [None, Some("Basic dXNlcjpwYXNz".to_string())]);
}

#[tokio::test]
async fn tunnel_idle_timeout_closes() {
    let origin = start_origin().await;
    let limits = exoproxy::limits::Limits {
        tunnel_idle: Duration::from_millis(200),
        ..test_limits()
    };
    let proxy = start_proxy(direct(), direct_config(origin.addr.port()), limits).await;
    let (head, _, mut stream) =
        connect(proxy.addr, &format!("{ORIGIN_HOST}:{}", origin.addr.port())).await;
    assert!(head.starts_with("HTTP/1.1 200"));
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::io::AsyncReadExt::read(&mut stream, &mut buf),
    )
    .await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "idle tunnel closed: {read:?}"
    );
}

#[tokio::test]
async fn load_5_rel_2_overload_gets_503_and_drain_waits_for_in_flight() {
    let origin = start_origin().await;
    let limits = exoproxy::limits::Limits {
        max_connections: 1,
        ..test_limits()
    };
    let proxy = start_proxy(direct(), direct_config(origin.addr.port()), limits).await;
    let (head, _, mut tunnel) =
        connect(proxy.addr, &format!("{ORIGIN_HOST}:{}", origin.addr.port())).await;
    assert!(head.starts_with("HTTP/1.1 200"));
    let refused = raw(
        proxy.addr,
        b"GET http://origin.test/ HTTP/1.1\r\nHost: origin.test\r\n\r\n",
    )
    .await;
    assert_eq!(refused.status(), 503, "{}", refused.text);
    assert_eq!(refused.code(), "overloaded");
    // Shut down while the tunnel is open: the drain waits, the tunnel still works, then ends.
    let addr = proxy.addr;
    let stopping = tokio::spawn(proxy.shutdown());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
    let response = get_over(&mut tunnel, "/late", ORIGIN_HOST).await;
    assert!(response.contains("GET /late"), "{response}");
    tunnel.shutdown().await.unwrap();
    tokio::time::timeout(Duration::from_secs(3), stopping)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn http10_connect_works() {
    let origin = start_origin().await;
    let proxy = start_proxy(direct(), direct_config(origin.addr.port()), test_limits()).await;
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let req = format!(
        "CONNECT {ORIGIN_HOST}:{} HTTP/1.0\r\n\r\n",
        origin.addr.port()
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let (head, rest) = read_head(&mut stream).await.unwrap();
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    assert!(rest.is_empty());
    let response = get_over(&mut stream, "/old", ORIGIN_HOST).await;
    assert!(response.contains("GET /old"), "{response}");
}

//! Bad inputs sent raw over TCP (docs/TESTING.md#bad). Every case asserts the status, the stable
//! `X-LocalProxy-Error` code, `Connection: close` and a closed connection, and that the upstream stub
//! and the origin saw **nothing**. Each case runs with a DIRECT route and through the stub.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use exoproxy::error::ProxyError;
use exoproxy::handler::{BoxFuture, Resolve};
use exoproxy::target::{Decision, Hop, ProxyEndpoint, Target};
use support::*;

/// A proxy, the stub and the origin it would forward to.
struct Rig {
    proxy: TestProxy,
    stub: Stub,
    origin: Origin,
    chained: bool,
}

impl Rig {
    async fn new(chained: bool) -> Rig {
        Rig::with(chained, |d| d).await
    }

    async fn with(chained: bool, adjust: impl Fn(Decision) -> Decision) -> Rig {
        let origin = start_origin().await;
        let stub = start_stub(StubMode::Forward { basic: None }).await;
        let (decision, config) = match chained {
            true => (via(&[stub.addr]), test_upstream()),
            false => (direct(), direct_config(origin.addr.port())),
        };
        let proxy = start_proxy(adjust(decision), config, test_limits()).await;
        Rig {
            proxy,
            stub,
            origin,
            chained,
        }
    }

    fn origin_url(&self) -> String {
        format!("http://{ORIGIN_HOST}:{}", self.origin.addr.port())
    }

    /// Sends `bytes` and asserts a refusal that reached nobody.
    async fn refused(&self, bytes: &[u8], status: u16, code: &str) -> RawResponse {
        let response = raw(self.proxy.addr, bytes).await;
        let what = format!(
            "chained={} {:?}",
            self.chained,
            String::from_utf8_lossy(&bytes[..bytes.len().min(120)])
        );
        assert_eq!(response.status(), status, "{what}: {}", response.text);
        assert_eq!(response.code(), code, "{what}");
        assert_eq!(
            response.header("connection").as_deref(),
            Some("close"),
            "{what}"
        );
        assert!(
            response.body().starts_with("exoproxy: "),
            "{what}: {}",
            response.text
        );
        assert_eq!(response.responses(), 1, "{what}: exactly one response");
        self.assert_untouched(&what);
        response
    }

    fn assert_untouched(&self, what: &str) {
        assert_eq!(
            self.stub.connections(),
            0,
            "{what}: the upstream stub was contacted"
        );
        assert_eq!(
            self.origin.requests(),
            0,
            "{what}: the origin was contacted"
        );
    }
}

fn get_with(url: &str, extra: &str) -> Vec<u8> {
    format!("POST {url}/ HTTP/1.1\r\nHost: origin.test\r\n{extra}\r\n").into_bytes()
}

#[tokio::test]
async fn bad_1_to_4_framing() {
    for chained in [false, true] {
        let rig = Rig::new(chained).await;
        let url = rig.origin_url();
        let cases = [
            "Content-Length: +3\r\n",
            "Content-Length: -1\r\n",
            "Content-Length:  3\r\n",
            "Content-Length: 3 \r\n",
            "Content-Length: 0x10\r\n",
            "Content-Length: 1e3\r\n",
            "Content-Length: \r\n",
            "Content-Length: 3,4\r\n",
            "Content-Length: 99999999999999999999999\r\n",
            "Content-Length: 3\r\nContent-Length: 4\r\n",
            "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
            "Transfer-Encoding: chunked, identity\r\n",
            "Transfer-Encoding: xchunked\r\n",
            "Transfer-Encoding: chunked\t\r\n",
            "Transfer-Encoding : chunked\r\n",
            "Transfer-Encoding:\tchunked\r\n",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        ];
        for extra in cases {
            rig.refused(&get_with(&url, extra), 400, "bad_request")
                .await;
        }
        let te_10 = format!("POST {url}/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
        rig.refused(te_10.as_bytes(), 400, "bad_request").await;
    }
}

#[tokio::test]
async fn bad_6_7_head_syntax() {
    for chained in [false, true] {
        let rig = Rig::new(chained).await;
        let url = rig.origin_url();
        for extra in [
            "X-A: 1\r\n folded\r\n",
            "Bad Name: 1\r\n",
            ": empty\r\n",
            "X-A: a\0b\r\n",
        ] {
            rig.refused(&get_with(&url, extra), 400, "bad_request")
                .await;
        }
        for line in [
            format!("GET {url}/\r\n"),
            format!("GET {url}/ HTTP/1.2\r\n"),
            format!("GET {url}/ HTTP/0.9\r\n"),
            format!("get {url}/ HTTP/1.1\r\n"),
            format!("GET\t{url}/\tHTTP/1.1\r\n"),
            format!("GET   {url}/ HTTP/1.1\r\n"),
            format!("{} {url}/ HTTP/1.1\r\n", "A".repeat(16 * 1024)),
        ] {
            rig.refused(
                format!("{line}Host: origin.test\r\n\r\n").as_bytes(),
                400,
                "bad_request",
            )
            .await;
        }
        let long_uri = format!(
            "GET {url}/{} HTTP/1.1\r\nHost: o\r\n\r\n",
            "a".repeat(100 * 1024)
        );
        rig.refused(long_uri.as_bytes(), 414, "uri_too_long").await;
    }
}

#[tokio::test]
async fn bad_8_header_limits() {
    for chained in [false, true] {
        let rig = Rig::new(chained).await;
        let url = rig.origin_url();
        let big = format!("X-Big: {}\r\n", "a".repeat(65 * 1024));
        rig.refused(&get_with(&url, &big), 431, "headers_too_large")
            .await;
        let cookie = format!("Cookie: {}\r\n", "a".repeat(64 * 1024));
        rig.refused(&get_with(&url, &cookie), 431, "headers_too_large")
            .await;
        let many: String = (0..100).map(|i| format!("X-{i}: v\r\n")).collect();
        rig.refused(&get_with(&url, &many), 431, "headers_too_large")
            .await;
    }
}

#[tokio::test]
async fn bad_10_pipelined_attack_after_a_refusal_is_never_processed() {
    for chained in [false, true] {
        let rig = Rig::new(chained).await;
        let port = rig.origin.addr.port();
        let pipelined = format!(
            "GET / HTTP/1.1\r\nHost: x\r\n\r\nCONNECT {ORIGIN_HOST}:{port} HTTP/1.1\r\n\r\nGET http://{ORIGIN_HOST}:{port}/ HTTP/1.1\r\n\r\n"
        );
        rig.refused(pipelined.as_bytes(), 400, "not_a_proxy_request")
            .await;
        // The browser cross-protocol case: a POST whose text/plain body is a CONNECT.
        let body = "CONNECT 127.0.0.1:22 HTTP/1.1\r\n\r\n";
        let post = format!(
            "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        rig.refused(post.as_bytes(), 400, "not_a_proxy_request")
            .await;
    }
}

#[tokio::test]
async fn bad_10_valid_request_then_pipelined_payload_gets_one_response() {
    for chained in [false, true] {
        let rig = Rig::new(chained).await;
        let url = rig.origin_url();
        let pipelined = format!(
            "GET {url}/first HTTP/1.1\r\nHost: o\r\n\r\nGET {url}/second HTTP/1.1\r\nHost: o\r\n\r\n"
        );
        let response = raw(rig.proxy.addr, pipelined.as_bytes()).await;
        assert_eq!(response.status(), 200, "{}", response.text);
        assert_eq!(response.responses(), 1, "{}", response.text);
        assert_eq!(rig.origin.requests(), 1);
    }
}

#[tokio::test]
async fn bad_12_13_19_29_request_forms() {
    for chained in [false, true] {
        let rig = Rig::new(chained).await;
        let url = rig.origin_url();
        let port = rig.origin.addr.port();
        rig.refused(
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            400,
            "not_a_proxy_request",
        )
        .await;
        let http10 = format!("POST {url}/ HTTP/1.0\r\nHost: o\r\n\r\nclose-delimited body");
        rig.refused(http10.as_bytes(), 400, "bad_request").await;
        for method in ["TRACE", "TRACK"] {
            let trace = format!("{method} {url}/ HTTP/1.1\r\nHost: o\r\n\r\n");
            rig.refused(trace.as_bytes(), 405, "method_not_allowed")
                .await;
        }
        let with_cl =
            format!("CONNECT {ORIGIN_HOST}:{port} HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
        rig.refused(with_cl.as_bytes(), 400, "bad_request").await;
    }
}

fn connect_req(authority: &str) -> Vec<u8> {
    format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").into_bytes()
}

#[tokio::test]
async fn bad_20_21_malformed_connect_targets() {
    for chained in [false, true] {
        let rig = Rig::new(chained).await;
        for t in [
            "origin.test",
            "origin.test:0",
            "origin.test:65536",
            "origin.test:443abc",
            "::1:443",
            "[::1]",
            "user:pass@origin.test:443",
            "origin.test:443/x",
            "origin.test:443?q",
            "origin.test:443#f",
            "orig%69n.test:443",
            "b\u{fc}cher.example:443",
        ] {
            rig.refused(&connect_req(t), 400, "bad_request").await;
        }
    }
}

#[tokio::test]
async fn bad_22_23_local_targets() {
    for chained in [false, true] {
        let rig = Rig::new(chained).await;
        for t in [
            "localhost:443",
            "LOCALHOST.:443",
            "foo.localhost:443",
            "127.0.0.1:443",
            "[::1]:443",
            "[::ffff:127.0.0.1]:443",
            "0.0.0.0:443",
            "[::]:443",
            "169.254.169.254:80",
        ] {
            rig.refused(&connect_req(t), 403, "connect_denied").await;
        }
        for t in [
            "127.1:443",
            "2130706433:443",
            "0x7f000001:443",
            "0177.0.0.1:443",
            "[fe80::1%25eth0]:443",
        ] {
            rig.refused(&connect_req(t), 400, "bad_request").await;
        }
    }
}

#[tokio::test]
async fn bad_24_sec_6_7_own_port_by_alias_even_when_local_is_allowed() {
    let rig = Rig::with(false, |d| Decision {
        allow_local: true,
        ..d
    })
    .await;
    let port = rig.proxy.addr.port();
    for host in ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "0.0.0.0"] {
        let response = rig
            .refused(
                &connect_req(&format!("{host}:{port}")),
                403,
                "connect_denied",
            )
            .await;
        assert!(
            response.body().contains("own listener"),
            "{}",
            response.text
        );
    }
}

#[tokio::test]
async fn bad_28_sec_6_7_absolute_form_to_local_admin_port() {
    for chained in [false, true] {
        let rig = Rig::new(chained).await;
        let port = rig.proxy.addr.port();
        for host in ["127.0.0.1", "localhost", "[::1]"] {
            let req = format!("GET http://{host}:{port}/status HTTP/1.1\r\nHost: {host}\r\n\r\n");
            rig.refused(req.as_bytes(), 403, "connect_denied").await;
        }
    }
}

#[tokio::test]
async fn bad_30_route_to_ourselves_is_a_loop() {
    let origin = start_origin().await;
    for by_name in [false, true] {
        let resolver = Arc::new(SelfRoute {
            own: OnceLock::new(),
            by_name,
        });
        let proxy = start_proxy_with(resolver.clone(), test_upstream(), test_limits()).await;
        resolver.own.set(proxy.addr).unwrap();
        let target = format!("{ORIGIN_HOST}:{}", origin.addr.port());
        let response = raw(proxy.addr, &connect_req(&target)).await;
        assert_eq!(response.status(), 502, "{}", response.text);
        assert_eq!(response.code(), "proxy_loop");
        let url = format!("GET http://{target}/ HTTP/1.1\r\nHost: o\r\n\r\n");
        assert_eq!(raw(proxy.addr, url.as_bytes()).await.code(), "proxy_loop");
    }
    assert_eq!(origin.requests(), 0);
}

/// Routes every target through the proxy's own address (by IP, or by `localhost`).
#[derive(Debug)]
struct SelfRoute {
    own: OnceLock<SocketAddr>,
    by_name: bool,
}

impl Resolve for SelfRoute {
    fn resolve<'a>(&'a self, _target: &'a Target) -> BoxFuture<'a, Result<Decision, ProxyError>> {
        let own = *self.own.get().unwrap();
        let hop = match self.by_name {
            true => ProxyEndpoint::parse(&format!("localhost:{}", own.port())).unwrap(),
            false => endpoint(own),
        };
        let decision = Decision {
            hops: vec![Hop::Proxy(hop)],
            ..direct()
        };
        Box::pin(async move { Ok(decision) })
    }
}

#[tokio::test]
async fn bad_9_expect_continue_and_upgrade_with_pipelined_request() {
    for chained in [false, true] {
        let rig = Rig::new(chained).await;
        let url = rig.origin_url();
        let with_body = format!(
            "POST {url}/ HTTP/1.1\r\nHost: o\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello"
        );
        let response = raw(rig.proxy.addr, with_body.as_bytes()).await;
        assert!(response.text.contains("200 OK"), "{}", response.text);
        assert!(response.text.ends_with("body=hello"), "{}", response.text);
        let no_body = format!("GET {url}/ HTTP/1.1\r\nHost: o\r\nExpect: 100-continue\r\n\r\n");
        assert_eq!(raw(rig.proxy.addr, no_body.as_bytes()).await.status(), 200);
        // Upgrade is hop-by-hop: not relayed, and the pipelined request behind it is never read.
        let upgrade = format!(
            "GET {url}/ws HTTP/1.1\r\nHost: o\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nGET {url}/smuggled HTTP/1.1\r\nHost: o\r\n\r\n"
        );
        let response = raw(rig.proxy.addr, upgrade.as_bytes()).await;
        assert_eq!(response.status(), 200, "{}", response.text);
        assert_eq!(response.responses(), 1);
        let heads = rig.origin.heads.lock().unwrap().clone();
        assert_eq!(heads.len(), 3, "{heads:?}");
        assert!(!heads.iter().any(|h| h.contains("smuggled")), "{heads:?}");
        assert_eq!(header(&heads[2], "upgrade"), None, "{}", heads[2]);
    }
}

#[tokio::test]
async fn bad_32_many_connects_to_a_closed_port_fail_fast_without_fd_growth() {
    let closed = dead_port().await;
    let proxy = start_proxy(direct(), direct_config(closed.port()), test_limits()).await;
    let fds = || {
        std::fs::read_dir("/proc/self/fd")
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let target = format!("{ORIGIN_HOST}:{}", closed.port());
    let baseline = fds();
    let started = std::time::Instant::now();
    for _ in 0..300 {
        let response = raw(proxy.addr, &connect_req(&target)).await;
        assert_eq!(response.code(), "upstream_unreachable", "{}", response.text);
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(
        fds() <= baseline + 8,
        "fds grew from {baseline} to {}",
        fds()
    );
}

#[tokio::test]
async fn bad_24_own_ipv6_listener_by_alias() {
    let origin = start_origin().await;
    let decision = Decision {
        allow_local: true,
        ..direct()
    };
    let resolver = Arc::new(FixedRoute(decision));
    let proxy = start_proxy_at(
        "[::1]:0",
        resolver,
        direct_config(origin.addr.port()),
        test_limits(),
    )
    .await;
    let port = proxy.addr.port();
    for host in ["[::1]", "[::]", "[0:0:0:0:0:0:0:1]"] {
        let response = raw(proxy.addr, &connect_req(&format!("{host}:{port}"))).await;
        assert_eq!(response.status(), 403, "{host}: {}", response.text);
        assert_eq!(response.code(), "connect_denied");
    }
    // The same proxy still serves a real target over IPv6 loopback.
    let (head, _, mut tunnel) =
        connect(proxy.addr, &format!("{ORIGIN_HOST}:{}", origin.addr.port())).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        get_over(&mut tunnel, "/v6", ORIGIN_HOST)
            .await
            .contains("GET /v6")
    );
}

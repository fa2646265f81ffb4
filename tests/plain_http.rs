//! Plain `http://` forwarding against misbehaving upstreams and clients (issue 10 rows 3, 7 and 8):
//! a silent upstream proxy fails over like a CONNECT does (FLT-2), a malformed chunked body never
//! opens an upstream connection (BAD-5), plain-http ports are allow-listed (BAD-25).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use exoproxy::handler::Proxy;
use exoproxy::listener;
use exoproxy::route::{RouteConfig, Router};
use exoproxy::upstream::Upstream;
use support::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::time::Instant;

/// A loopback upstream that accepts, records every byte of every connection until EOF and never
/// answers.
struct Recorder {
    addr: std::net::SocketAddr,
    accepted: Arc<AtomicUsize>,
    /// Bytes of each connection, filled in once the peer closed it.
    closed: Arc<Mutex<Vec<Vec<u8>>>>,
}

async fn start_recorder() -> Recorder {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(Mutex::new(Vec::new()));
    let (count, record) = (accepted.clone(), closed.clone());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let record = record.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let _ = stream.read_to_end(&mut seen).await;
                record.lock().unwrap().push(seen);
            });
        }
    });
    Recorder {
        addr,
        accepted,
        closed,
    }
}

fn get(origin: &Origin) -> Vec<u8> {
    let port = origin.addr.port();
    format!("GET http://{ORIGIN_HOST}:{port}/ HTTP/1.1\r\nHost: {ORIGIN_HOST}:{port}\r\n\r\n")
        .into_bytes()
}

fn post(origin: &Origin) -> Vec<u8> {
    let port = origin.addr.port();
    format!(
        "POST http://{ORIGIN_HOST}:{port}/ HTTP/1.1\r\nHost: {ORIGIN_HOST}:{port}\r\nContent-Length: 5\r\n\r\nhello"
    )
    .into_bytes()
}

// === FLT-2: a silent upstream proxy on the plain-http path ===

#[tokio::test]
async fn flt_2_plain_http_silent_proxy_fails_over_and_is_remembered() {
    let origin = start_origin().await;
    let silent = start_stub(StubMode::Blackhole).await;
    let good = start_stub(StubMode::Forward { basic: None }).await;
    let proxy = start_proxy(
        via(&[silent.addr, good.addr]),
        test_upstream(),
        test_limits(),
    )
    .await;
    let started = Instant::now();
    let first = raw(proxy.addr, &get(&origin)).await;
    assert_eq!(first.status(), 200, "{}", first.text);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "bounded by the 300 ms first-byte timeout, not the stream idle limit"
    );
    assert_eq!(silent.connections(), 1);

    // Remembered as bad: the next request goes to the healthy proxy at once.
    let started = Instant::now();
    let second = raw(proxy.addr, &get(&origin)).await;
    assert_eq!(second.status(), 200, "{}", second.text);
    assert!(started.elapsed() < Duration::from_millis(250));
    assert_eq!(silent.connections(), 1, "marked bad: not tried again");
    assert_eq!(good.connections(), 2);
    assert_eq!(origin.requests(), 2);
}

/// A POST is not idempotent (RFC 9110 §9.2.2): the silent proxy may have passed it on, so it is not
/// sent again elsewhere; the proxy is still remembered as bad for the next request.
#[tokio::test]
async fn flt_2_plain_http_post_to_a_silent_proxy_is_504_not_sent_twice() {
    let origin = start_origin().await;
    let silent = start_stub(StubMode::Blackhole).await;
    let good = start_stub(StubMode::Forward { basic: None }).await;
    let proxy = start_proxy(
        via(&[silent.addr, good.addr]),
        test_upstream(),
        test_limits(),
    )
    .await;
    let started = Instant::now();
    let response = raw(proxy.addr, &post(&origin)).await;
    assert_eq!(response.status(), 504, "{}", response.text);
    assert_eq!(response.code(), "upstream_timeout");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(good.connections(), 0, "never sent twice");

    let next = raw(proxy.addr, &post(&origin)).await;
    assert_eq!(next.status(), 200, "{}", next.text);
    assert_eq!(silent.connections(), 1, "marked bad: not tried again");
    assert!(origin.heads.lock().unwrap()[0].starts_with("POST / "));
}

// === BAD-5: malformed chunked bodies never open the upstream ===

#[tokio::test]
async fn bad_5_malformed_chunked_body_opens_no_upstream_connection() {
    let upstream = start_recorder().await;
    let proxy = start_proxy(direct(), direct_config(upstream.addr.port()), test_limits()).await;
    for body in [
        // size overflow
        "ffffffffffffffffff\r\nx\r\n0\r\n\r\n",
        // bad CRLF after the chunk data
        "3\r\nabcXX0\r\n\r\n",
        // bare LF ending a chunk-size line
        "3\nabc\r\n0\r\n\r\n",
    ] {
        let req = format!(
            "POST http://{ORIGIN_HOST}/ HTTP/1.1\r\nHost: o\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
        );
        let response = raw(proxy.addr, req.as_bytes()).await;
        assert_eq!(response.status(), 400, "{body:?}: {}", response.text);
        assert_eq!(response.code(), "bad_request");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        upstream.accepted.load(Ordering::SeqCst),
        0,
        "no upstream connection before the framing is known good"
    );
}

/// Beyond the 64 KiB buffer the body streams; when its framing breaks, the upstream connection is
/// closed before the request is complete (no last chunk ever reaches it).
#[tokio::test]
async fn bad_5_large_broken_chunked_body_never_completes_upstream() {
    let upstream = start_recorder().await;
    let proxy = start_proxy(direct(), direct_config(upstream.addr.port()), test_limits()).await;
    let chunk = format!("2000\r\n{}\r\n", "a".repeat(0x2000));
    let mut req = format!(
        "POST http://{ORIGIN_HOST}/ HTTP/1.1\r\nHost: o\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    for _ in 0..10 {
        req.push_str(&chunk);
    }
    req.push_str("3\r\nabcXX0\r\n\r\n");
    let response = raw(proxy.addr, req.as_bytes()).await;
    assert_eq!(response.status(), 400, "{}", response.text);

    let deadline = Instant::now() + Duration::from_secs(5);
    while upstream.closed.lock().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "upstream connection never closed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 1);
    let seen = upstream.closed.lock().unwrap()[0].clone();
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("POST / HTTP/1.1\r\n"), "{text:.200}");
    assert!(seen.len() > 64 * 1024, "the buffered part was streamed");
    assert!(
        !text.contains("\r\n0\r\n\r\n"),
        "never the last chunk: the request is incomplete"
    );
}

// === BAD-25: plain-http ports ===

async fn routed_proxy(route: RouteConfig, origin_port: u16) -> (std::net::SocketAddr, impl Drop) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Router::start(route, &[addr]).await.unwrap();
    let mut upstream = direct_config(origin_port);
    upstream.own_addrs.push(addr);
    let proxy = Arc::new(Proxy::new(
        Arc::new(router),
        Arc::new(Upstream::new(upstream)),
        test_limits(),
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(listener::serve(vec![listener], proxy, async move {
        let _ = stopped.await;
    }));
    (addr, StopOnDrop(Some(stop)))
}

struct StopOnDrop(Option<tokio::sync::oneshot::Sender<()>>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(stop) = self.0.take() {
            let _ = stop.send(());
        }
    }
}

#[tokio::test]
async fn bad_25_plain_http_to_a_port_outside_the_list_is_refused() {
    let origin = start_origin().await;
    let req = format!("GET http://{ORIGIN_HOST}:22/ HTTP/1.1\r\nHost: {ORIGIN_HOST}:22\r\n\r\n");

    let (proxy, _stop) = routed_proxy(RouteConfig::default(), origin.addr.port()).await;
    let refused = raw(proxy, req.as_bytes()).await;
    assert_eq!(refused.status(), 403, "{}", refused.text);
    assert!(
        refused.body().contains("port 22") && refused.body().contains("http_ports"),
        "names the port and the key: {}",
        refused.body()
    );
    assert_eq!(origin.requests(), 0, "nothing forwarded");

    // `routing.http_ports` replaces the list.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("exoproxy.toml");
    std::fs::write(&file, "[routing]\nhttp_ports = [80, 22]\n").unwrap();
    let config = exoproxy::config::load(Some(&file), &Default::default()).unwrap();
    assert_eq!(config.route.http_ports, [80, 22]);
    let (proxy, _stop) = routed_proxy(config.route, origin.addr.port()).await;
    let allowed = raw(proxy, req.as_bytes()).await;
    assert_eq!(allowed.status(), 200, "{}", allowed.text);
    assert_eq!(origin.requests(), 1);
}

#[test]
fn bad_25_default_plain_http_ports_are_the_web_ports() {
    assert_eq!(
        RouteConfig::default().http_ports,
        [80, 443, 8000, 8008, 8080, 8443, 8888]
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("exoproxy.toml");
    std::fs::write(&file, "[routing]\nhttp_ports = [0, 70000]\n").unwrap();
    let errors = exoproxy::config::load(Some(&file), &Default::default()).unwrap_err();
    assert!(
        errors.iter().any(|e| e.contains("routing.http_ports")),
        "{errors:?}"
    );
}

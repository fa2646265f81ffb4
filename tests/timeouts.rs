//! Client-side and origin-side time limits (docs/TESTING.md#limits) and misbehaving origins (BAD-5,
//! BAD-17), with short configured limits so that nothing waits real seconds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use exoproxy::limits::Limits;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn short_limits() -> Limits {
    Limits {
        header_read_timeout: Duration::from_millis(300),
        client_idle: Duration::from_millis(300),
        stream_idle: Duration::from_millis(300),
        ..test_limits()
    }
}

/// Reads until EOF; returns what arrived and how long it took.
async fn read_until_closed(stream: &mut TcpStream) -> (String, Duration) {
    let started = Instant::now();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    (
        String::from_utf8_lossy(&out).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn load_7_slow_head_and_silent_client_are_closed() {
    let proxy = start_proxy(direct(), test_upstream(), short_limits()).await;
    let mut silent = TcpStream::connect(proxy.addr).await.unwrap();
    let (text, took) = read_until_closed(&mut silent).await;
    assert!(
        text.is_empty() && took < Duration::from_secs(2),
        "{text:?} after {took:?}"
    );

    let mut slow = TcpStream::connect(proxy.addr).await.unwrap();
    slow.write_all(b"GET http://origin.test/ HTTP/1.1\r\nHost: o")
        .await
        .unwrap();
    let (text, took) = read_until_closed(&mut slow).await;
    assert!(
        text.is_empty() && took < Duration::from_secs(2),
        "{text:?} after {took:?}"
    );
}

#[tokio::test]
async fn origin_that_never_answers_is_a_504() {
    let silent = start_stub(StubMode::Blackhole).await;
    let proxy = start_proxy(direct(), direct_config(silent.addr.port()), short_limits()).await;
    let url = format!("GET http://{ORIGIN_HOST}/ HTTP/1.1\r\nHost: o\r\n\r\n");
    let response = raw(proxy.addr, url.as_bytes()).await;
    assert_eq!(response.status(), 504, "{}", response.text);
    assert_eq!(response.code(), "upstream_timeout");
}

#[tokio::test]
async fn bad_17_garbage_from_the_origin_is_a_502() {
    for reply in [
        &b"garbage\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc",
        b"",
    ] {
        let origin = start_stub(StubMode::Reply(reply.to_vec())).await;
        let proxy = start_proxy(direct(), direct_config(origin.addr.port()), short_limits()).await;
        let url = format!("GET http://{ORIGIN_HOST}/ HTTP/1.1\r\nHost: o\r\n\r\n");
        let response = raw(proxy.addr, url.as_bytes()).await;
        assert_eq!(response.status(), 502, "{reply:?}: {}", response.text);
        assert_eq!(response.code(), "upstream_bad_response");
    }
}

#[tokio::test]
async fn bad_5_broken_chunked_body_never_reaches_the_origin_complete() {
    let origin = start_origin().await;
    let proxy = start_proxy(direct(), direct_config(origin.addr.port()), short_limits()).await;
    for body in [
        "ffffffffffffffffff\r\nx\r\n0\r\n\r\n",
        "3\r\nabcXX0\r\n\r\n",
        "zz\r\nabc\r\n0\r\n\r\n",
    ] {
        let req = format!(
            "POST http://{ORIGIN_HOST}/ HTTP/1.1\r\nHost: o\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
        );
        let response = raw(proxy.addr, req.as_bytes()).await;
        assert_eq!(response.status(), 400, "{body:?}: {}", response.text);
        assert_eq!(response.code(), "bad_request");
    }
    // The origin reads Content-Length bodies only, so a record means it saw a request head; the
    // chunked body never completed, so it never saw a complete request with that body.
    for head in origin.heads.lock().unwrap().iter() {
        assert!(head.contains("transfer-encoding: chunked"), "{head}");
    }
}

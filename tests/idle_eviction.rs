//! The connection limit against idle connections (docs/TESTING.md#load-5): at the limit, the oldest
//! connection still waiting for its request head is closed to admit a new one; connections with a
//! request in flight or a tunnel are never closed for that, and when all are busy a new one gets 503.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use exoproxy::limits::Limits;
use support::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const LIMIT: usize = 4;

fn small_limits() -> Limits {
    Limits {
        max_connections: LIMIT,
        client_idle: Duration::from_secs(30),
        // Any connection without a request head counts as idle here, however young.
        evict_idle_after: Duration::ZERO,
        ..test_limits()
    }
}

/// True when the proxy closed `stream` (EOF or reset) within a short wait.
async fn closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_millis(300), stream.read(&mut byte)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

fn get() -> Vec<u8> {
    format!("GET http://{ORIGIN_HOST}/ HTTP/1.1\r\nHost: {ORIGIN_HOST}\r\n\r\n").into_bytes()
}

#[tokio::test]
async fn load5_idle_connections_make_room_oldest_first() {
    let origin = start_origin().await;
    let proxy = start_proxy(direct(), direct_config(origin.addr.port()), small_limits()).await;
    let mut idle = Vec::new();
    for _ in 0..LIMIT {
        idle.push(TcpStream::connect(proxy.addr).await.unwrap());
        // Accept order is the age order the proxy sees.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }

    for round in 0..2 {
        let response = raw(proxy.addr, &get()).await;
        assert_eq!(response.status(), 200, "round {round}: {}", response.text);
        assert!(
            closed(&mut idle[round]).await,
            "the oldest idle one is closed"
        );
        for (i, stream) in idle.iter_mut().enumerate().skip(round + 1) {
            assert!(!closed(stream).await, "round {round}: idle #{i} kept");
        }
        // The request's connection is gone too: fill its slot again with a newer idle one.
        idle.push(TcpStream::connect(proxy.addr).await.unwrap());
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn load5_busy_connections_are_never_evicted_and_overload_is_503() {
    let origin = start_origin().await;
    let stub = start_stub(StubMode::Forward { basic: None }).await;
    let proxy = start_proxy(via(&[stub.addr]), test_upstream(), small_limits()).await;
    let authority = format!("{ORIGIN_HOST}:{}", origin.addr.port());
    let mut tunnels = Vec::new();
    for _ in 0..LIMIT {
        let (head, _, stream) = connect(proxy.addr, &authority).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        tunnels.push(stream);
    }
    let response = raw(proxy.addr, &get()).await;
    assert_eq!(response.status(), 503, "{}", response.text);
    assert_eq!(response.code(), "overloaded");
    for stream in &mut tunnels {
        assert!(!closed(stream).await, "a tunnel is never evicted");
    }
}

//! Upstream faults (docs/TESTING.md#flt: FLT-1…FLT-4) and malformed CONNECT replies (BAD-18), with the
//! stub counting every connection so that "not tried" and "tried once" are facts, not hopes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use exoproxy::upstream::UpstreamConfig;
use support::*;

fn target(origin: &Origin) -> String {
    format!("{ORIGIN_HOST}:{}", origin.addr.port())
}

async fn connect_status(proxy: &TestProxy, origin: &Origin) -> RawResponse {
    let req = format!("CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n\r\n", target(origin));
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stream, req.as_bytes())
        .await
        .unwrap();
    let (head, mut rest) = tokio::time::timeout(Duration::from_secs(5), read_head(&mut stream))
        .await
        .unwrap()
        .unwrap();
    let mut text = head;
    if !text.starts_with("HTTP/1.1 200") {
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut rest),
        )
        .await;
        text.push_str(&String::from_utf8_lossy(&rest));
    }
    RawResponse { text }
}

#[tokio::test]
async fn flt_1_refused_proxy_fails_over_or_names_the_proxy() {
    let origin = start_origin().await;
    let dead = dead_port().await;
    let good = start_stub(StubMode::Forward { basic: None }).await;
    let proxy = start_proxy(via(&[dead, good.addr]), test_upstream(), test_limits()).await;
    assert_eq!(connect_status(&proxy, &origin).await.status(), 200);
    assert_eq!(good.connections(), 1);

    let proxy = start_proxy(via(&[dead]), test_upstream(), test_limits()).await;
    let started = Instant::now();
    let response = connect_status(&proxy, &origin).await;
    assert_eq!(response.status(), 502, "{}", response.text);
    assert_eq!(response.code(), "upstream_unreachable");
    assert!(
        response.body().contains(&format!("proxy {dead}")),
        "{}",
        response.text
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    let dead2 = dead_port().await;
    let proxy = start_proxy(via(&[dead, dead2]), test_upstream(), test_limits()).await;
    let response = connect_status(&proxy, &origin).await;
    assert_eq!(response.code(), "upstream_unreachable");
    for d in [dead, dead2] {
        assert!(
            response.body().contains(&d.to_string()),
            "{}",
            response.text
        );
    }
}

#[tokio::test]
async fn flt_2_silent_proxy_times_out_and_is_skipped_afterwards() {
    let origin = start_origin().await;
    let silent = start_stub(StubMode::Blackhole).await;
    let good = start_stub(StubMode::Forward { basic: None }).await;
    let only_silent = start_proxy(via(&[silent.addr]), test_upstream(), test_limits()).await;
    let started = Instant::now();
    let response = connect_status(&only_silent, &origin).await;
    assert_eq!(response.status(), 504, "{}", response.text);
    assert_eq!(response.code(), "upstream_timeout");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "bounded by the 300 ms reply timeout"
    );

    // A second proxy instance shares nothing; within one instance the silent proxy is remembered.
    let proxy = start_proxy(
        via(&[silent.addr, good.addr]),
        test_upstream(),
        test_limits(),
    )
    .await;
    assert_eq!(connect_status(&proxy, &origin).await.status(), 200);
    let silent_before = silent.connections();
    assert_eq!(connect_status(&proxy, &origin).await.status(), 200);
    assert_eq!(
        silent.connections(),
        silent_before,
        "marked bad: not tried again"
    );
    assert_eq!(good.connections(), 2);
}

#[tokio::test]
async fn flt_3_auth_failure_is_reported_not_failed_over_and_not_marked_dead() {
    let origin = start_origin().await;
    let wants_basic = start_stub(StubMode::Forward {
        basic: Some("Basic dXNlcjpwYXNz".into()),
    })
    .await;
    let good = start_stub(StubMode::Forward { basic: None }).await;
    let proxy = start_proxy(
        via(&[wants_basic.addr, good.addr]),
        test_upstream(),
        test_limits(),
    )
    .await;
    for round in 1..=2 {
        let response = connect_status(&proxy, &origin).await;
        assert_eq!(response.status(), 502, "{}", response.text);
        assert_eq!(response.code(), "upstream_auth_failed");
        assert!(response.body().contains(&wants_basic.addr.to_string()));
        assert!(response.body().contains("Basic"), "{}", response.text);
        assert_eq!(
            wants_basic.connections(),
            round,
            "still tried: not marked dead"
        );
    }
    assert_eq!(good.connections(), 0, "a 407 is not a connect-level error");
    assert_eq!(
        wants_basic.auths(),
        [None, None],
        "no credentials configured: none sent"
    );

    // Wrong credentials: one retry with them, then a clear failure.
    let config = UpstreamConfig {
        credentials: vec![credentials(wants_basic.addr, "user", "wrong")],
        ..test_upstream()
    };
    let proxy = start_proxy(via(&[wants_basic.addr]), config, test_limits()).await;
    let response = connect_status(&proxy, &origin).await;
    assert_eq!(response.code(), "upstream_auth_failed");
    assert!(response.body().contains("rejected"), "{}", response.text);
    assert_eq!(wants_basic.auths().len(), 4);
}

#[tokio::test]
async fn flt_3_basic_is_never_sent_to_a_proxy_that_did_not_offer_it() {
    let origin = start_origin().await;
    let ntlm_only = start_stub(StubMode::Reply(
        b"HTTP/1.1 407 Auth\r\nProxy-Authenticate: NTLM\r\nProxy-Authenticate: Negotiate\r\n\r\n"
            .to_vec(),
    ))
    .await;
    let config = UpstreamConfig {
        credentials: vec![credentials(ntlm_only.addr, "user", "pass")],
        ..test_upstream()
    };
    let proxy = start_proxy(via(&[ntlm_only.addr]), config, test_limits()).await;
    let response = connect_status(&proxy, &origin).await;
    assert_eq!(response.code(), "upstream_auth_failed");
    assert!(
        response.body().contains("NTLM, Negotiate"),
        "{}",
        response.text
    );
    // NTLM is attempted (its Type 1 carries no secret); Basic never is.
    let auths = ntlm_only.auths();
    assert_eq!(auths[0], None);
    assert!(
        auths.iter().flatten().all(|a| a.starts_with("NTLM ")),
        "{auths:?}"
    );
}

#[tokio::test]
async fn bad_18_malformed_connect_replies_are_502_without_failover() {
    let origin = start_origin().await;
    let replies: [(&[u8], &str); 6] = [
        (b"HTTP/1.1 200 OK\r\n\r\nextra bytes", "unexpected bytes"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
            "Content-Length",
        ),
        (
            b"HTTP/1.1 407 Auth\r\n\r\n",
            "407 without Proxy-Authenticate",
        ),
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "not an HTTP reply"),
        (b"\x16\x03\x03\x00\x2a\x02\x00\x00\x26\x03\x03", "TLS"),
        (b"HTTP/1.1 403 Forbidden\r\n\r\n", "403 Forbidden"),
    ];
    for (reply, says) in replies {
        let bad = start_stub(StubMode::Reply(reply.to_vec())).await;
        let good = start_stub(StubMode::Forward { basic: None }).await;
        let proxy = start_proxy(via(&[bad.addr, good.addr]), test_upstream(), test_limits()).await;
        let response = connect_status(&proxy, &origin).await;
        assert_eq!(response.status(), 502, "{says}: {}", response.text);
        assert_eq!(response.code(), "upstream_refused", "{says}");
        assert!(response.body().contains(says), "{says}: {}", response.text);
        assert_eq!(good.connections(), 0, "{says}: no failover on a reply");
    }
    assert_eq!(origin.requests(), 0);
}

#[tokio::test]
async fn flt_4_failover_within_one_request_and_recovery_after_the_ttl() {
    let origin = start_origin().await;
    let first = dead_port().await;
    let second = start_stub(StubMode::Forward { basic: None }).await;
    let proxy = start_proxy(via(&[first, second.addr]), test_upstream(), test_limits()).await;
    assert_eq!(
        connect_status(&proxy, &origin).await.status(),
        200,
        "failover within one request"
    );

    // The first proxy recovers; it stays skipped for the 5-minute memory.
    let listener = tokio::net::TcpListener::bind(first).await.unwrap();
    let first = start_stub_on(listener, StubMode::Forward { basic: None });
    assert_eq!(connect_status(&proxy, &origin).await.status(), 200);
    assert_eq!(first.connections(), 0, "still remembered as bad");
    assert_eq!(second.connections(), 2);

    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(301)).await;
    tokio::time::resume();
    assert_eq!(connect_status(&proxy, &origin).await.status(), 200);
    assert_eq!(first.connections(), 1, "back in use after the TTL");
    assert_eq!(second.connections(), 2);
}

#[tokio::test]
async fn flt_4_bad_proxies_are_still_tried_when_nothing_else_is_left() {
    let origin = start_origin().await;
    let (a, b) = (dead_port().await, dead_port().await);
    let proxy = start_proxy(via(&[a, b]), test_upstream(), test_limits()).await;
    for _ in 0..2 {
        let response = connect_status(&proxy, &origin).await;
        assert_eq!(response.code(), "upstream_unreachable", "{}", response.text);
        for dead in [a, b] {
            assert!(
                response.body().contains(&dead.to_string()),
                "{}",
                response.text
            );
        }
    }
    // Both are remembered as bad, yet a recovered one is used at once: bad means "last", not "never".
    let listener = tokio::net::TcpListener::bind(a).await.unwrap();
    let recovered = start_stub_on(listener, StubMode::Forward { basic: None });
    assert_eq!(connect_status(&proxy, &origin).await.status(), 200);
    assert_eq!(recovered.connections(), 1);
}

#[tokio::test]
async fn flt_2_total_budget_bounds_the_whole_failover() {
    let origin = start_origin().await;
    let (a, b) = (
        start_stub(StubMode::Blackhole).await,
        start_stub(StubMode::Blackhole).await,
    );
    let config = UpstreamConfig {
        connect_reply_timeout: Duration::from_secs(5),
        total_timeout: Duration::from_millis(400),
        ..test_upstream()
    };
    let proxy = start_proxy(via(&[a.addr, b.addr]), config, test_limits()).await;
    let started = Instant::now();
    let response = connect_status(&proxy, &origin).await;
    assert_eq!(response.status(), 504, "{}", response.text);
    assert_eq!(response.code(), "upstream_timeout");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(b.connections(), 0, "the budget ran out on the first hop");
}

//! One log line per request or tunnel, with target, decision, hop, status and bytes, and never a
//! credential (docs/TESTING.md#error-contract, docs/TESTING.md#sec-19).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use exoproxy::upstream::UpstreamConfig;
use support::*;

/// Collects formatted log output in memory.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn one_line_per_tunnel_and_request_without_credentials() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let origin = start_origin().await;
    let stub = start_stub(StubMode::Forward {
        basic: Some("Basic dXNlcjpzM2NyZXQ=".into()),
    })
    .await;
    let config = UpstreamConfig {
        credentials: vec![credentials(stub.addr, "user", "s3cret")],
        ..test_upstream()
    };
    let proxy = start_proxy(via(&[stub.addr]), config, test_limits()).await;
    let authority = format!("{ORIGIN_HOST}:{}", origin.addr.port());
    let (head, _, mut tunnel) = connect(proxy.addr, &authority).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let _ = get_over(&mut tunnel, "/x", ORIGIN_HOST).await;
    drop(tunnel);
    let url = format!(
        "GET http://user:pw@{authority}/?token=abc HTTP/1.1\r\nHost: o\r\nProxy-Authorization: Basic Y2xpZW50OnNlY3JldA==\r\n\r\n"
    );
    assert_eq!(raw(proxy.addr, url.as_bytes()).await.status(), 400);
    let plain = format!(
        "GET http://{authority}/p HTTP/1.1\r\nHost: o\r\nProxy-Authorization: Basic Y2xpZW50OnNlY3JldA==\r\n\r\n"
    );
    assert_eq!(raw(proxy.addr, plain.as_bytes()).await.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    for secret in [
        "dXNlcjpzM2NyZXQ",
        "s3cret",
        "Y2xpZW50OnNlY3JldA",
        "user:pw",
        "token=abc",
    ] {
        assert!(!logs.contains(secret), "{secret} leaked into logs:\n{logs}");
    }
    let tunnel_line = logs
        .lines()
        .find(|l| l.contains("tunnel closed"))
        .expect(&logs);
    for part in [
        authority.as_str(),
        "TUNNEL via PROXY",
        "status=200",
        "up=",
        "down=",
    ] {
        assert!(tunnel_line.contains(part), "{part} missing: {tunnel_line}");
    }
    assert!(
        logs.lines()
            .any(|l| l.contains("forwarded") && l.contains("status=200")),
        "{logs}"
    );
    assert!(logs.lines().any(|l| l.contains("status=400")), "{logs}");
}

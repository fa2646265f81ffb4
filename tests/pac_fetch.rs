//! PAC downloads against in-process loopback servers (docs/TESTING.md#pac-8): size caps, endless and slow
//! bodies, refused redirects, encodings; a good download with a BOM loads.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use exoproxy::error::ProxyError;
use exoproxy::route::pac::host_env::{FixedLocalAddrs, StaticDns};
use exoproxy::route::pac::{PacConfig, PacEnvironment, PacResolver, PacSource, PacState};
use exoproxy::target::{Hop, Target};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const SCRIPT: &str = "function FindProxyForURL(u, h) { return 'DIRECT'; }";

/// How the test server answers every request.
#[derive(Clone)]
enum Reply {
    Bytes(Vec<u8>),
    /// Headers, then the chunk repeated forever (optionally slowly).
    Endless {
        head: String,
        chunk: Vec<u8>,
        pause: Duration,
    },
}

async fn serve(reply: Reply) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let reply = reply.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                match reply {
                    Reply::Bytes(b) => {
                        let _ = socket.write_all(&b).await;
                    }
                    Reply::Endless { head, chunk, pause } => {
                        if socket.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        while socket.write_all(&chunk).await.is_ok() {
                            if !pause.is_zero() {
                                tokio::time::sleep(pause).await;
                            }
                        }
                    }
                }
            });
        }
    });
    format!("http://{addr}/proxy.pac")
}

fn ok_response(body: &[u8], extra: &str) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

async fn load(url: String, timeout: Duration) -> PacResolver {
    let cfg = PacConfig {
        source: PacSource::Url(url),
        fetch_timeout: timeout,
        workers: 1,
        env: PacEnvironment {
            dns: Arc::new(StaticDns::default()),
            local: Arc::new(FixedLocalAddrs::default()),
            ..PacEnvironment::default()
        },
        ..PacConfig::default()
    };
    PacResolver::start(cfg).await
}

/// Waits for the loader to settle and returns the error text, or `None` when the script loaded.
async fn outcome(pac: &PacResolver) -> Option<String> {
    let target = Target::parse_connect("a.example:443").unwrap();
    match pac.hops_for(&target).await {
        Ok(hops) => {
            assert_eq!(hops, vec![Hop::Direct]);
            None
        }
        Err(ProxyError::Pac(msg)) => {
            assert_eq!(pac.status().state, PacState::Failed);
            Some(msg)
        }
        Err(other) => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn pac_8_good_download_with_bom_loads() {
    let mut body = b"\xEF\xBB\xBF".to_vec();
    body.extend_from_slice(SCRIPT.as_bytes());
    let pac = load(
        serve(Reply::Bytes(ok_response(&body, ""))).await,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(outcome(&pac).await, None);
    assert!(pac.status().hash.is_some());
}

#[tokio::test]
async fn pac_8_oversized_announced_body_is_refused() {
    let head = "HTTP/1.1 200 OK\r\nContent-Length: 52428800\r\n\r\n".to_string();
    let url = serve(Reply::Endless {
        head,
        chunk: vec![b' '; 65536],
        pause: Duration::ZERO,
    })
    .await;
    let msg = outcome(&load(url, Duration::from_secs(5)).await)
        .await
        .unwrap();
    assert!(msg.contains("larger than"), "{msg}");
}

#[tokio::test]
async fn pac_8_endless_stream_without_length_is_cut_at_the_cap() {
    let head = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_string();
    let url = serve(Reply::Endless {
        head,
        chunk: vec![b'/'; 65536],
        pause: Duration::ZERO,
    })
    .await;
    let msg = outcome(&load(url, Duration::from_secs(5)).await)
        .await
        .unwrap();
    assert!(msg.contains("larger than"), "{msg}");
}

#[tokio::test]
async fn pac_8_slow_server_hits_the_fetch_timeout() {
    let head = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_string();
    let url = serve(Reply::Endless {
        head,
        chunk: vec![b' '],
        pause: Duration::from_millis(200),
    })
    .await;
    let started = Instant::now();
    let msg = outcome(&load(url, Duration::from_millis(600)).await)
        .await
        .unwrap();
    assert!(msg.contains("did not finish"), "{msg}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn pac_8_redirect_to_file_is_refused() {
    let reply =
        b"HTTP/1.1 302 Found\r\nLocation: file:///etc/passwd\r\nContent-Length: 0\r\n\r\n".to_vec();
    let msg = outcome(&load(serve(Reply::Bytes(reply)).await, Duration::from_secs(5)).await)
        .await
        .unwrap();
    assert!(msg.contains("refused redirect"), "{msg}");
}

#[tokio::test]
async fn pac_8_non_utf8_and_compressed_bodies_are_refused() {
    let latin1 = ok_response(
        b"function FindProxyForURL(u,h){return 'DIRECT';} // caf\xE9",
        "",
    );
    let msg = outcome(&load(serve(Reply::Bytes(latin1)).await, Duration::from_secs(5)).await)
        .await
        .unwrap();
    assert!(msg.contains("not UTF-8"), "{msg}");
    let gzip = ok_response(b"\x1f\x8b\x08\x00", "Content-Encoding: gzip\r\n");
    let msg = outcome(&load(serve(Reply::Bytes(gzip)).await, Duration::from_secs(5)).await)
        .await
        .unwrap();
    assert!(msg.contains("Content-Encoding"), "{msg}");
}

#[tokio::test]
async fn non_200_is_a_failure() {
    let reply = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec();
    let msg = outcome(&load(serve(Reply::Bytes(reply)).await, Duration::from_secs(5)).await)
        .await
        .unwrap();
    assert!(msg.contains("404"), "{msg}");
}

/// An https PAC server on loopback with a self-signed certificate; answers every request with `reply`.
async fn serve_tls(reply: Vec<u8>) -> (String, rustls_pki_types::CertificateDer<'static>) {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = key.cert.der().clone();
    let private = rustls_pki_types::PrivateKeyDer::Pkcs8(key.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.clone()], private)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let reply = reply.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = [0u8; 4096];
                let _ = tls.read(&mut buf).await;
                let _ = tls.write_all(&reply).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (format!("https://localhost:{port}/proxy.pac"), cert)
}

async fn load_tls(
    url: String,
    root: Option<rustls_pki_types::CertificateDer<'static>>,
) -> PacResolver {
    let cfg = PacConfig {
        source: PacSource::Url(url),
        workers: 1,
        tls: root.map(|root| exoproxy::tls_client::client_config(&[root]).unwrap()),
        env: PacEnvironment {
            dns: Arc::new(StaticDns::default()),
            local: Arc::new(FixedLocalAddrs::default()),
            ..PacEnvironment::default()
        },
        ..PacConfig::default()
    };
    PacResolver::start(cfg).await
}

#[tokio::test]
async fn https_download_trusts_extra_roots_only() {
    let (url, cert) = serve_tls(ok_response(SCRIPT.as_bytes(), "")).await;
    assert_eq!(
        outcome(&load_tls(url.clone(), Some(cert)).await).await,
        None
    );
    let msg = outcome(&load_tls(url, None).await).await.unwrap();
    assert!(msg.contains("TLS"), "{msg}");
}

#[tokio::test]
async fn pac_8_https_to_http_redirect_is_refused() {
    let plain = serve(Reply::Bytes(ok_response(SCRIPT.as_bytes(), ""))).await;
    let redirect = format!("HTTP/1.1 302 Found\r\nLocation: {plain}\r\nContent-Length: 0\r\n\r\n");
    let (url, cert) = serve_tls(redirect.into_bytes()).await;
    let msg = outcome(&load_tls(url, Some(cert)).await).await.unwrap();
    assert!(msg.contains("https to plain http"), "{msg}");
}

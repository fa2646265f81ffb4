//! The upstream connection of an intercepted session: reused across requests, and redialled once
//! when the server closed it between requests, without ever sending a request twice (FLT-7).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod intercept_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use exoproxy::upstream::ConnectTo;
use intercept_support::*;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// An HTTPS origin for ps.outlook.com that answers one request per connection, then closes.
struct ClosingOrigin {
    port: u16,
    ca_pem: String,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
}

async fn closing_origin() -> ClosingOrigin {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["ps.outlook.com".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone()], key)
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = ClosingOrigin {
        port: listener.local_addr().unwrap().port(),
        ca_pem: ca.pem(),
        connections: Arc::new(AtomicUsize::new(0)),
        requests: Arc::new(Mutex::new(Vec::new())),
    };
    let (connections, requests) = (origin.connections.clone(), origin.requests.clone());
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            connections.fetch_add(1, Ordering::SeqCst);
            let (acceptor, requests) = (acceptor.clone(), requests.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&head).into_owned();
                requests.lock().unwrap().push(text);
                let reply = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
                let _ = tls.write_all(reply.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    origin
}

/// The proxy with `ps.outlook.com` mapped to `origin` and its CA trusted upstream.
async fn harness_for(origin: &ClosingOrigin) -> Harness {
    Harness::start(Options {
        connect_to: vec![ConnectTo {
            host: "ps.outlook.com".into(),
            port: None,
            to_host: "127.0.0.1".into(),
            to_port: origin.port,
        }],
        extra_roots: vec![origin.ca_pem.clone()],
        ..Options::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flt_7_closed_upstream_is_redialled_once_and_nothing_is_sent_twice() {
    let origin = closing_origin().await;
    let h = harness_for(&origin).await;
    let mut client = h.client("ps.outlook.com").await;
    for _ in 0..3 {
        let req = post_json("ps.outlook.com", "/owa/x", "{}");
        let (status, _, body) = send(&mut client, req).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, "ok");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let requests = origin.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 3, "each POST exactly once: {requests:#?}");
    assert_eq!(origin.connections.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_requests_carry_the_token_pass_through_keeps_the_clients() {
    let origin = closing_origin().await;
    let h = harness_for(&origin).await;
    let mut client = h.client("ps.outlook.com").await;
    let mut wsman = post_json(
        "ps.outlook.com",
        "/PowerShell-LiveID?BasicAuthToOAuthConversion=true;PSVersion=5.1",
        "<s:Envelope/>",
    );
    wsman.headers_mut().insert(
        "authorization",
        "Basic YWRtaW5AY29udG9zby5jb206eA==".parse().unwrap(),
    );
    send(&mut client, wsman).await;
    let mut owa = post_json("ps.outlook.com", "/owa/", "{}");
    owa.headers_mut()
        .insert("authorization", "Bearer client-own".parse().unwrap());
    send(&mut client, owa).await;
    let requests = origin.requests.lock().unwrap().clone();
    let auth = |head: &str| -> Vec<String> {
        head.lines()
            .filter(|l| l.to_ascii_lowercase().starts_with("authorization:"))
            .map(str::to_string)
            .collect()
    };
    // SEC-17: exactly one Authorization, the injected Basic-with-Bearer; the query is untouched.
    assert!(requests[0].starts_with(
        "POST /PowerShell-LiveID?BasicAuthToOAuthConversion=true;PSVersion=5.1 HTTP/1.1"
    ));
    let injected = auth(&requests[0]);
    assert_eq!(injected.len(), 1, "{injected:?}");
    let encoded = injected[0].split_whitespace().last().unwrap();
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    let decoded = String::from_utf8(decoded).unwrap();
    assert!(
        decoded.starts_with("admin@contoso.com:Bearer ey"),
        "user kept, token injected"
    );
    // Not an injection path: the client's own header, untouched.
    assert_eq!(auth(&requests[1]), ["authorization: Bearer client-own"]);
}

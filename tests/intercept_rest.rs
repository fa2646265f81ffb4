//! The REST path through an intercepted CONNECT against exosim: the token is injected (the client
//! sends none or a placeholder), 302s pass through untouched (BAD-31), browser-marked requests get
//! no token (SEC-15), the client's Authorization is replaced (SEC-17), a misdirected inner Host gets
//! 421 (BAD-14), a non-intercepted host gets its real certificate and no minted leaf (CA-7, SEC-18),
//! plain http to an intercepted host is refused with a body (BAD-34), and a bad upstream
//! certificate gives 502 `upstream_tls_untrusted` with nothing sent (FLT-8).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod intercept_support;

use std::sync::Arc;

use exoproxy::upstream::ConnectTo;
use intercept_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_call_gets_the_token_injected() {
    let h = Harness::start(Options::default()).await;
    let tenant = tenant_host(&h).await;
    assert!(tenant.ends_with(".outlook.office365.com"), "{tenant}");
    let mut client = h.client(&tenant).await;
    // No Authorization at all.
    let (status, _, body) = send(&mut client, post_json(&tenant, REST_PATH, GET_MAILBOX)).await;
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(!json["value"].as_array().unwrap().is_empty(), "{body}");
    // SEC-17: a placeholder Authorization is replaced, on the same keep-alive connection.
    let mut req = post_json(&tenant, REST_PATH, GET_MAILBOX);
    req.headers_mut()
        .insert("authorization", "Bearer placeholder".parse().unwrap());
    let (status, _, body) = send(&mut client, req).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_31_redirect_passes_through_untouched() {
    let h = Harness::start(Options::default()).await;
    let mut front = h.client(EXO).await;
    let path = format!("{REST_PATH}?x=1;PSVersion=5.1");
    let (status, headers, _) = send(&mut front, post_json(EXO, &path, GET_MAILBOX)).await;
    assert_eq!(status, 302);
    let location = headers["location"].to_str().unwrap();
    assert!(
        location.starts_with("https://") && location.ends_with(&path),
        "Location rewritten or query altered: {location}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sec_15_browser_marked_requests_get_no_token() {
    let h = Harness::start(Options::default()).await;
    let tenant = tenant_host(&h).await;
    let mut client = h.client(&tenant).await;
    for (name, value) in [
        ("origin", "https://evil.example"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let mut req = post_json(&tenant, REST_PATH, GET_MAILBOX);
        req.headers_mut().insert(name, value.parse().unwrap());
        let (status, headers, body) = send(&mut client, req).await;
        // Exchange saw no credentials: its own 401 (no error code in the challenge), not ours.
        assert_eq!(status, 401, "{name}: {body}");
        assert!(!headers.contains_key("x-localproxy-error"), "{name}");
        let challenge = headers["www-authenticate"].to_str().unwrap();
        assert!(!challenge.contains("error="), "{challenge}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_14_misdirected_inner_host_gets_421_and_nothing_is_sent() {
    let h = Harness::start(Options::default()).await;
    let mut client = h.client(EXO).await;
    let before = h.control().exchange().request_count();
    for host in [
        "ps.compliance.protection.outlook.com",
        "outlook.office365.com:8443",
    ] {
        let (status, headers, _) = send(&mut client, post_json(host, REST_PATH, GET_MAILBOX)).await;
        assert_eq!(status, 421, "{host}");
        assert_eq!(headers["x-localproxy-error"], "misdirected_request");
        client = h.client(EXO).await;
    }
    assert_eq!(h.control().exchange().request_count(), before);
    // The CONNECT host with an explicit :443 is the same authority.
    let (status, _, _) = send(
        &mut client,
        post_json("outlook.office365.com:443", REST_PATH, GET_MAILBOX),
    )
    .await;
    assert_eq!(status, 302);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_errors_are_rest_json_with_the_sign_in_code() {
    let h = Harness::start(Options {
        sign_in: false,
        ..Options::default()
    })
    .await;
    let mut client = h.client(EXO).await;
    let mut req = post_json(EXO, REST_PATH, GET_MAILBOX);
    req.headers_mut()
        .insert("x-anchormailbox", "UPN:admin@contoso.com".parse().unwrap());
    let (status, headers, body) = send(&mut client, req).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(headers["x-localproxy-error"], "reauth_required");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let message = json["error"]["message"].as_str().unwrap();
    let code = h.control().pending_devices().pop().unwrap();
    assert!(
        message.contains(&code) && message.contains("devicelogin"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_account_gets_a_basic_challenge() {
    let h = Harness::start(Options {
        sign_in: false,
        default_account: None,
        ..Options::default()
    })
    .await;
    let mut client = h.client(EXO).await;
    let (status, headers, _) = send(&mut client, post_json(EXO, REST_PATH, GET_MAILBOX)).await;
    assert_eq!(status, 401);
    assert_eq!(headers["www-authenticate"], "Basic realm=\"exoproxy\"");
    assert_eq!(headers["x-localproxy-error"], "account_required");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_7_sec_18_non_intercepted_host_sees_the_real_certificate_and_no_leaf_is_minted() {
    let h = Harness::start(Options::default()).await;
    let leaves_before = h.leaves.len();
    // login.microsoftonline.com is not intercepted: the tunnel reaches exosim, whose own CA
    // verifies the certificate (exoproxy's CA would not).
    for _ in 0..3 {
        let stream = connect_tunnel(h.proxy, "login.microsoftonline.com").await;
        let tls = tls_client(stream, "login.microsoftonline.com", &[h.sim.ca_pem()]).await;
        let mut client = http_client(tls).await;
        let req = http::Request::get("/common/v2.0/.well-known/openid-configuration")
            .header("host", "login.microsoftonline.com")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        let (status, _, _) = send(&mut client, req).await;
        assert_eq!(status, 200);
    }
    let stream = connect_tunnel(h.proxy, "login.microsoftonline.com").await;
    let refused = tokio_rustls::TlsConnector::from(client_config(&[h.ca_pem.as_str()]))
        .connect(
            rustls_pki_types::ServerName::try_from("login.microsoftonline.com").unwrap(),
            stream,
        )
        .await;
    assert!(
        refused.is_err(),
        "a non-intercepted host must not get a local leaf"
    );
    assert_eq!(h.leaves.len(), leaves_before, "SEC-18: no leaf minted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_an_intercepted_host_is_refused_with_a_body() {
    let h = Harness::start(Options::default()).await;
    let mut stream = tokio::net::TcpStream::connect(h.proxy).await.unwrap();
    let req = format!("GET http://{EXO}{REST_PATH} HTTP/1.1\r\nHost: {EXO}\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 403"), "{reply}");
    assert!(reply.to_lowercase().contains("https"), "{reply}");
    assert_eq!(h.control().exchange().request_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_1_untrusted_upstream_certificate_gives_502_and_sends_nothing() {
    // ps.outlook.com is mapped to a TLS origin whose self-signed certificate nobody trusts.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = listener.local_addr().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["ps.outlook.com".into()]).unwrap();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![certified.cert.der().clone()], key)
    .unwrap();
    let received = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = received.clone();
    tokio::spawn(async move {
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        while let Ok((stream, _)) = listener.accept().await {
            if let Ok(mut tls) = acceptor.accept(stream).await {
                let mut buf = [0u8; 1024];
                if let Ok(n) = tls.read(&mut buf).await {
                    seen.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
                }
            }
        }
    });
    let h = Harness::start(Options {
        connect_to: vec![ConnectTo {
            host: "ps.outlook.com".into(),
            port: None,
            to_host: "127.0.0.1".into(),
            to_port: origin.port(),
        }],
        ..Options::default()
    })
    .await;
    let mut client = h.client("ps.outlook.com").await;
    let (status, headers, body) = send(
        &mut client,
        post_json("ps.outlook.com", REST_PATH, GET_MAILBOX),
    )
    .await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(headers["x-localproxy-error"], "upstream_tls_untrusted");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(received.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sec_3_another_os_user_gets_403_and_no_token() {
    // SEC-3: curl runs as `nobody`; the proxy (this process) runs as another user.
    if !nix_is_root() {
        panic!("this test needs root to start a client as another user");
    }
    let h = Harness::start(Options::default()).await;
    let dir = tempfile::Builder::new().tempdir_in("/tmp").unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &h.ca_pem).unwrap();
    std::fs::set_permissions(&ca, std::fs::Permissions::from_mode(0o644)).unwrap();
    let before = h.control().exchange().request_count();
    let url = format!("https://{EXO}{REST_PATH}");
    let args = [
        "-u".to_string(),
        "nobody".into(),
        "--".into(),
        "curl".into(),
        "-sS".into(),
        "-i".into(),
        "--proxy".into(),
        format!("http://{}", h.proxy),
        "--cacert".into(),
        ca.display().to_string(),
        "-X".into(),
        "POST".into(),
        "-H".into(),
        "content-type: application/json".into(),
        "--data".into(),
        GET_MAILBOX.into(),
        url,
    ];
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("runuser")
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 200"), "CONNECT: {text}");
    assert!(text.contains("HTTP/1.1 403"), "{text}");
    assert!(text.contains("client_not_authorized"), "{text}");
    assert_eq!(
        h.control().exchange().request_count(),
        before,
        "nothing sent"
    );
}

#[cfg(unix)]
fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_body_streams_with_the_token() {
    let h = Harness::start(Options::default()).await;
    let tenant = tenant_host(&h).await;
    let mut client = h.client(&tenant).await;
    // Over the 1 MiB replay limit: streamed, still injected. Trailing whitespace keeps it JSON.
    let body = format!("{GET_MAILBOX}{}", " ".repeat(2 * 1024 * 1024));
    let (status, _, text) = send(&mut client, post_json(&tenant, REST_PATH, &body)).await;
    assert_eq!(status, 200, "{text}");
}

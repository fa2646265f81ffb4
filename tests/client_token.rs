//! The proxy's own outbound client against exosim: OpenID discovery and a whole device-code sign-in
//! through `OutboundClient` (the real `token::Transport`), routed by the Router/Upstream with a
//! `connect_to` mapping, TLS verified against the emulator's CA; and the client's connection pool
//! through an upstream proxy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use bytes::Bytes;
use exoproxy::client::OutboundClient;
use exoproxy::route::{RouteConfig, Router};
use exoproxy::token::{Audience, ManagerSettings, TokenManager};
use exoproxy::upstream::{ConnectTo, Upstream, UpstreamConfig};
use exosim::{Sim, SimConfig};

fn client_for(sim: &Sim) -> OutboundClient {
    client_with_ca(sim, sim.ca_pem())
}

fn client_with_ca(sim: &Sim, ca_pem: &str) -> OutboundClient {
    let router = Router::new(RouteConfig::default()).unwrap();
    let upstream = Upstream::new(UpstreamConfig {
        connect_to: vec![ConnectTo {
            host: String::new(),
            port: Some(443),
            to_host: "127.0.0.1".into(),
            to_port: sim.addr().port(),
        }],
        ..UpstreamConfig::default()
    });
    let mut roots = rustls::RootCertStore::empty();
    let pem = ca_pem.as_bytes().to_vec();
    for cert in rustls_pemfile_certs(&pem) {
        roots.add(cert).unwrap();
    }
    let tls = exoproxy::tls_client::client_config_with_roots(roots).unwrap();
    OutboundClient::new(Arc::new(router), Arc::new(upstream), tls)
}

fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .map(|c| c.unwrap())
        .collect()
}

#[tokio::test]
async fn discovery_through_the_outbound_client() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let client = client_for(&sim);
    let req = http::Request::get(
        "https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0/.well-known/openid-configuration",
    )
    .body(Bytes::new())
    .unwrap();
    let resp = client.send(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let json: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
    assert!(
        json["token_endpoint"]
            .as_str()
            .unwrap()
            .ends_with("/oauth2/v2.0/token")
    );
}

#[tokio::test]
async fn untrusted_server_is_refused() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let other = Sim::start(SimConfig::default()).await.unwrap();
    // Every emulator has its own CA: trusting `other`'s while talking to `sim` must fail (TLS-1).
    let client = client_with_ca(&sim, other.ca_pem());
    let req = http::Request::get("https://login.microsoftonline.com/common/discovery/v2.0/keys")
        .body(Bytes::new())
        .unwrap();
    let err = client.send(req).await.unwrap_err();
    assert!(err.to_string().contains("TLS"), "{err}");
}

#[tokio::test]
async fn device_code_sign_in_and_token_through_the_outbound_client() {
    let sim = Sim::start(SimConfig {
        auto_approve: true,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let client = client_for(&sim);
    let state = tempfile::tempdir().unwrap();
    let settings = ManagerSettings {
        open_browser: false,
        ..ManagerSettings::default()
    };
    let manager = TokenManager::new(Arc::new(client), Some(state.path()), settings).unwrap();
    manager.login("admin@contoso.com", None).await.unwrap();
    let audience = Audience::new("https://outlook.office365.com");
    let token = manager.token("admin@contoso.com", &audience).await.unwrap();
    let claims = sim
        .control()
        .check_token(token.expose(), "https://outlook.office365.com");
    assert!(claims.is_ok(), "the emulator accepts the token: {claims:?}");
    assert_eq!(sim.control().grant_count(exosim::GrantType::DeviceCode), 1);
}

/// Issue 10 row 15: token calls through a corporate proxy reuse one CONNECT tunnel to the IdP instead
/// of opening one per call (5 s tokens through squid made 16 CONNECTs a minute).
#[tokio::test]
async fn token_calls_through_an_upstream_proxy_reuse_one_connection() {
    use exoproxy::route::UpstreamSource;
    use exoproxy::token::{AccountConfig, Flow};
    use support::{StubMode, endpoint, start_stub};

    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let proxy = start_stub(StubMode::Forward { basic: None }).await;
    // The stub splices a CONNECT to 127.0.0.1 at the target's port: name the emulator's port.
    let port = sim.addr().port();
    let router = Router::new(RouteConfig {
        upstream: UpstreamSource::Static(vec![endpoint(proxy.addr)]),
        connect_ports: vec![443, port],
        ..RouteConfig::default()
    })
    .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile_certs(sim.ca_pem().as_bytes()) {
        roots.add(cert).unwrap();
    }
    let tls = exoproxy::tls_client::client_config_with_roots(roots).unwrap();
    let upstream = Upstream::new(UpstreamConfig::default());
    let client = OutboundClient::new(Arc::new(router), Arc::new(upstream), tls);

    // The emulator's discovery document names port 443; the Entra layout keeps the emulator's port.
    let settings = ManagerSettings {
        discovery: false,
        ..ManagerSettings::default()
    };
    let manager = TokenManager::new(Arc::new(client), None, settings).unwrap();
    let mut app = AccountConfig::new("OAuthUser@contoso.onmicrosoft.com");
    app.authority = Some(format!("https://login.microsoftonline.com:{port}"));
    app.client_id = Some(exosim::config::SECRET_APP_CLIENT_ID.into());
    app.flow = Flow::Secret {
        secret: exoproxy::token::secret::ClientSecret::new(exosim::config::SECRET_APP_SECRET),
    };
    manager.add_account(app.clone());
    let audience = Audience::new("https://outlook.office365.com");
    let mut token = manager.token(&app.upn, &audience).await.unwrap();
    for _ in 0..4 {
        token = manager
            .invalidate_and_reacquire(&app.upn, &audience, &token, None)
            .await
            .unwrap();
    }
    assert_eq!(
        sim.control()
            .grant_count(exosim::GrantType::ClientCredentials),
        5
    );
    assert_eq!(
        proxy.connections(),
        1,
        "5 token calls over one CONNECT: {:?}",
        proxy.lines()
    );
}

/// Issue 10 row 15: a pooled connection the server closed while idle is not an error: the call goes
/// out once on a fresh connection.
#[tokio::test]
async fn a_pooled_connection_closed_by_the_server_is_replaced() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        // Answers one request per connection, then closes it (without announcing `Connection: close`).
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).await.unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                .await;
            let _ = stream.shutdown().await;
        }
    });
    let router = Router::new(RouteConfig {
        allow_local: vec!["127.0.0.1".into()],
        http_ports: vec![port],
        ..RouteConfig::default()
    })
    .unwrap();
    let tls =
        exoproxy::tls_client::client_config_with_roots(rustls::RootCertStore::empty()).unwrap();
    let client = OutboundClient::new(
        Arc::new(router),
        Arc::new(Upstream::new(UpstreamConfig::default())),
        tls,
    );
    for _ in 0..3 {
        let req = http::Request::get(format!("http://127.0.0.1:{port}/realm"))
            .body(Bytes::new())
            .unwrap();
        let resp = client.send(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.body().as_ref(), b"{}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}

/// Live configuration (docs/ARCHITECTURE.md#live-configuration): `set_route` moves every clone of
/// the client (the token manager holds one) to the new route, and no call reuses a pooled
/// connection of the old one.
#[tokio::test]
async fn set_route_moves_every_clone_and_drops_the_old_routes_pool() {
    use exoproxy::route::UpstreamSource;
    use support::{StubMode, endpoint, start_stub};

    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let (first, second) = (
        start_stub(StubMode::Forward { basic: None }).await,
        start_stub(StubMode::Forward { basic: None }).await,
    );
    let port = sim.addr().port();
    let router_via = |proxy: std::net::SocketAddr| {
        let router = Router::new(RouteConfig {
            upstream: UpstreamSource::Static(vec![endpoint(proxy)]),
            connect_ports: vec![443, port],
            ..RouteConfig::default()
        })
        .unwrap();
        Arc::new(router)
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile_certs(sim.ca_pem().as_bytes()) {
        roots.add(cert).unwrap();
    }
    let tls = exoproxy::tls_client::client_config_with_roots(roots).unwrap();
    let upstream = || Arc::new(Upstream::new(UpstreamConfig::default()));
    let client = OutboundClient::new(router_via(first.addr), upstream(), tls);
    let held_by_tokens = client.clone();
    let discovery = format!(
        "https://login.microsoftonline.com:{port}/contoso.onmicrosoft.com/v2.0/.well-known/openid-configuration"
    );
    let get = || http::Request::get(&discovery).body(Bytes::new()).unwrap();

    assert_eq!(held_by_tokens.send(get()).await.unwrap().status(), 200);
    assert_eq!((first.connections(), second.connections()), (1, 0));
    client.set_route(router_via(second.addr), upstream());
    assert_eq!(held_by_tokens.send(get()).await.unwrap().status(), 200);
    assert_eq!((first.connections(), second.connections()), (1, 1));
}

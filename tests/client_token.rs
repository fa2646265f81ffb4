//! The proxy's own outbound client against exosim: OpenID discovery and a whole device-code sign-in
//! through `OutboundClient` (the real `token::Transport`), routed by the Router/Upstream with a
//! `connect_to` mapping, TLS verified against the emulator's CA.
#![allow(clippy::unwrap_used, clippy::expect_used)]

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

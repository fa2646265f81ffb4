//! STS DIRECT (the blank-page problem): a browser-like client that reaches the company ADFS through the
//! corporate proxy gets a blank sign-in page; through exoproxy, which discovered `sts.contoso.test` as
//! contoso.test's federation STS (home-realm discovery through the normal route, i.e. the corporate
//! proxy), the STS is reached DIRECT and the sign-in form appears. `exoproxy route` explains it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use exoproxy::client::OutboundClient;
use exoproxy::handler::Proxy;
use exoproxy::listener;
use exoproxy::route::{
    InterceptRule, RouteConfig, Router, StsConfig, UpstreamSource, discover_sts,
};
use exoproxy::target::Target;
use exoproxy::upstream::{ConnectTo, Upstream, UpstreamConfig};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A corporate proxy: CONNECT host:port is spliced to 127.0.0.1:port; the local ports of its
/// upstream sockets are recorded so the emulator can tell proxied connections apart.
struct CorpProxy {
    addr: SocketAddr,
    tunnels: Arc<Mutex<Vec<String>>>,
    ports: Arc<Mutex<HashSet<u16>>>,
}

async fn start_corp_proxy() -> CorpProxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tunnels = Arc::new(Mutex::new(Vec::new()));
    let ports = Arc::new(Mutex::new(HashSet::new()));
    let (t, p) = (tunnels.clone(), ports.clone());
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let (t, p) = (t.clone(), p.clone());
            tokio::spawn(async move {
                let Some((head, _)) = read_head(&mut client).await else {
                    return;
                };
                let target = head.split(' ').nth(1).unwrap_or_default().to_string();
                let port: u16 = target.rsplit(':').next().unwrap().parse().unwrap();
                let mut upstream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
                p.lock()
                    .unwrap()
                    .insert(upstream.local_addr().unwrap().port());
                t.lock().unwrap().push(target);
                client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    CorpProxy {
        addr,
        tunnels,
        ports,
    }
}

fn sim_ca(sim: &exosim::Sim) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(sim.ca_pem().as_bytes()).unwrap()
}

/// CONNECT through `proxy`, TLS to `host` trusting the emulator CA, GET `path`; the response text.
async fn browse(
    proxy: SocketAddr,
    host: &str,
    port: u16,
    path: &str,
    ca: &CertificateDer<'static>,
) -> String {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    let req = format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let (head, _) = read_head(&mut stream).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "CONNECT {host}: {head}");
    let mut tls = tls_connect_to(stream, ca, host).await;
    let get = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Mozilla/5.0\r\nConnection: close\r\n\r\n"
    );
    tls.write_all(get.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn route_config(corp: SocketAddr, sim_port: u16) -> RouteConfig {
    RouteConfig {
        upstream: UpstreamSource::Static(vec![endpoint(corp)]),
        connect_ports: vec![443, sim_port],
        intercept: vec![InterceptRule {
            profile: "exo".into(),
            hosts: vec!["outlook.office365.com".into()],
        }],
        sts: StsConfig {
            discover: true,
            domains: vec!["fed@contoso.test".into()],
            realm_base: format!("https://login.microsoftonline.com:{sim_port}"),
        },
        ..RouteConfig::default()
    }
}

/// DIRECT dials of the emulated names go to the emulator.
fn upstream_config(sim: SocketAddr) -> UpstreamConfig {
    let map = |host: &str| ConnectTo {
        host: host.into(),
        port: None,
        to_host: "127.0.0.1".into(),
        to_port: sim.port(),
    };
    UpstreamConfig {
        connect_to: vec![map("sts.contoso.test"), map("login.microsoftonline.com")],
        ..test_upstream()
    }
}

#[tokio::test]
async fn discovered_sts_goes_direct_and_the_sign_in_page_is_not_blank() {
    let sim = exosim::Sim::start(exosim::SimConfig::default())
        .await
        .unwrap();
    let ca = sim_ca(&sim);
    let corp = start_corp_proxy().await;
    let proxied_ports = corp.ports.clone();
    sim.control()
        .treat_as_proxied(move |peer| proxied_ports.lock().unwrap().contains(&peer.port()));
    let sim_port = sim.addr().port();
    let path = "/adfs/ls/?username=fed%40contoso.test&wa=wsignin1.0";

    // Through the corporate proxy alone: the blank page.
    let blank = browse(corp.addr, "sts.contoso.test", sim_port, path, &ca).await;
    assert!(blank.starts_with("HTTP/1.1 200"), "{blank}");
    assert!(
        !blank.contains("loginForm"),
        "the corporate proxy path should be blank: {blank}"
    );

    // exoproxy: discovery through the normal route (the corporate proxy), then the STS DIRECT.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = route_config(corp.addr, sim_port);
    let router = Arc::new(Router::start(config.clone(), &[addr]).await.unwrap());
    let mut up = upstream_config(sim.addr());
    up.own_addrs.push(addr);
    let upstream = Arc::new(Upstream::new(up));
    let tls = exoproxy::tls_client::client_config(std::slice::from_ref(&ca)).unwrap();
    let client = OutboundClient::new(router.clone(), upstream.clone(), tls);
    let report = discover_sts(
        &router,
        &config.sts,
        |url| {
            let client = client.clone();
            async move { client.get_realm(&url, Duration::from_secs(5)).await }
        },
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        report,
        vec!["fed@contoso.test: sts.contoso.test".to_string()]
    );
    let realm_via_corp = corp
        .tunnels
        .lock()
        .unwrap()
        .iter()
        .any(|t| t.starts_with("login.microsoftonline.com"));
    assert!(
        realm_via_corp,
        "discovery must use the normal route: {:?}",
        corp.tunnels.lock().unwrap()
    );

    let sts_target = Target::parse_connect(&format!("sts.contoso.test:{sim_port}")).unwrap();
    let decision = router.decide(&sts_target).await.unwrap();
    assert_eq!(
        decision.to_string(),
        "TUNNEL via DIRECT (federation STS for contoso.test, discovered)"
    );

    let proxy = Arc::new(Proxy::new(router.clone(), upstream, test_limits()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(listener::serve(vec![listener], proxy, async move {
        let _ = stopped.await;
    }));
    let tunnels_before = corp.tunnels.lock().unwrap().len();
    let page = browse(addr, "sts.contoso.test", sim_port, path, &ca).await;
    assert!(
        page.contains("loginForm"),
        "expected the sign-in form through exoproxy: {page}"
    );
    assert_eq!(
        corp.tunnels.lock().unwrap().len(),
        tunnels_before,
        "the STS must not go through the corporate proxy"
    );
    let _ = stop.send(());
    sim.shutdown().await;
}

#[tokio::test]
async fn discovery_never_sends_intercepted_or_authority_hosts_direct() {
    let router = Router::start(route_config(dead_port().await, 9), &[])
        .await
        .unwrap();
    let sts = router.sts().unwrap();
    // A realm answer naming the Exchange host and the authority as its "STS".
    let body = br#"{"account_type":"Federated","federation_protocol":"WSTrust",
        "federation_metadata_url":"https://outlook.office365.com/x",
        "federation_active_auth_url":"https://login.microsoftonline.com/y",
        "AuthURL":"https://sts.evil.test/adfs/ls/"}"#;
    let hits = AtomicUsize::new(0);
    let hosts = sts
        .discover("a@evil.test", |_| {
            hits.fetch_add(1, Ordering::SeqCst);
            async {
                Ok(exoproxy::route::sts::FetchResponse {
                    status: 200,
                    body: body.to_vec(),
                })
            }
        })
        .await
        .unwrap();
    assert_eq!(hosts, vec!["sts.evil.test".to_string()]);
    assert!(sts.explain("outlook.office365.com").is_none());
    assert!(sts.explain("login.microsoftonline.com").is_none());
}

#[tokio::test]
async fn exoproxy_route_explains_the_discovered_sts() {
    let sim = exosim::Sim::start(exosim::SimConfig::default())
        .await
        .unwrap();
    let ca = sim_ca(&sim);
    let sim_port = sim.addr().port();
    let mut config = exoproxy::config::load(None, &Default::default()).unwrap();
    config.route = RouteConfig {
        upstream: UpstreamSource::Direct,
        ..route_config(dead_port().await, sim_port)
    };
    config.route.allow_local = vec![];
    config.upstream = upstream_config(sim.addr());
    let url = format!("https://sts.contoso.test:{sim_port}/adfs/ls/");
    let report = exoproxy::app::route_report(&config, &url, &[ca])
        .await
        .unwrap();
    assert!(
        report
            .contains("decision: TUNNEL via DIRECT (federation STS for contoso.test, discovered)"),
        "{report}"
    );
    assert!(
        report.contains("sts:      fed@contoso.test: sts.contoso.test"),
        "{report}"
    );
    sim.shutdown().await;
}

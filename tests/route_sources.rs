//! The corporate network sources drive real routing decisions through the real proxy: a PAC served
//! over http decides per host (stub proxy vs DIRECT); PAC-9/PAC-10 fail closed (502 `pac_error`, nothing
//! reaches the stub); PAC-11 still loading → 503 `pac_loading`; BAD-30 a PAC naming this proxy →
//! 502 `proxy_loop`; FLT-13 a simulated network change switches the route; FLT-14 a PAC server that
//! appears after the start is used without a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use exoproxy::handler::Proxy;
use exoproxy::listener;
use exoproxy::route::pac::{OnFailure, PacConfig, PacSource};
use exoproxy::route::source::system_source;
use exoproxy::route::system::{Selected, SettingsWatcher, SystemProxy};
use exoproxy::route::{RouteConfig, Router, UpstreamSource};
use exoproxy::upstream::{ConnectTo, Upstream, UpstreamConfig};
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// A loopback HTTP server answering every request with `body` (or holding it `delay` first);
/// counts requests.
async fn serve_pac(body: String, delay: Duration) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let body = body.clone();
            seen.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let _ = read_head(&mut stream).await;
                tokio::time::sleep(delay).await;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/x-ns-proxy-autoconfig\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes()).await;
            });
        }
    });
    (addr, hits)
}

fn pac_config(source: PacSource) -> PacConfig {
    PacConfig {
        source,
        loading_wait: Duration::from_millis(300),
        retry_backoff: vec![Duration::from_secs(3600)],
        ..PacConfig::default()
    }
}

/// `origin.test` and `proxied.test` both map to the origin when dialled DIRECT.
fn upstream_for(origin: SocketAddr) -> UpstreamConfig {
    let map = |host: &str| ConnectTo {
        host: host.into(),
        port: None,
        to_host: "127.0.0.1".into(),
        to_port: origin.port(),
    };
    UpstreamConfig {
        connect_to: vec![map("origin.test"), map("proxied.test")],
        ..test_upstream()
    }
}

/// The real router and handler on a fresh loopback port; `source` builds the upstream source once
/// the port is known.
async fn start<F, Fut>(upstream: UpstreamConfig, source: F) -> Running
where
    F: FnOnce(SocketAddr) -> Fut,
    Fut: std::future::Future<Output = UpstreamSource>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = RouteConfig {
        upstream: source(addr).await,
        // The origins listen on ephemeral ports, outside the default plain-http ports (BAD-25).
        http_ports: (1..=u16::MAX).collect(),
        ..RouteConfig::default()
    };
    let router = Router::start(config, &[addr]).await.unwrap();
    let mut upstream = upstream;
    upstream.own_addrs.push(addr);
    let proxy = Arc::new(Proxy::new(
        Arc::new(router),
        Arc::new(Upstream::new(upstream)),
        test_limits(),
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(listener::serve(vec![listener], proxy, async move {
        let _ = stopped.await;
    }));
    drop(task);
    Running { addr, _stop: stop }
}

/// A running proxy; dropping it stops it.
struct Running {
    addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn pac_source(config: PacConfig, own: SocketAddr) -> UpstreamSource {
    let mut config = config;
    config.own_addrs.push(own);
    UpstreamSource::Pac(Arc::new(
        exoproxy::route::pac::PacResolver::start(config).await,
    ))
}

async fn get(proxy: SocketAddr, host: &str, port: u16) -> RawResponse {
    let req = format!("GET http://{host}:{port}/x HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n");
    raw(proxy, req.as_bytes()).await
}

#[tokio::test]
async fn pac_over_http_decides_per_host_through_the_proxy() {
    let origin = start_origin().await;
    let stub = start_stub(StubMode::Forward { basic: None }).await;
    let script = format!(
        "function FindProxyForURL(url, host) {{ if (host == \"proxied.test\") return \"PROXY {}\"; return \"DIRECT\"; }}",
        stub.addr
    );
    let (pac_addr, pac_hits) = serve_pac(script, Duration::ZERO).await;
    let url = PacSource::Url(format!("http://{pac_addr}/proxy.pac"));
    let proxy = start(upstream_for(origin.addr), |own| {
        pac_source(
            PacConfig {
                loading_wait: Duration::from_secs(5),
                ..pac_config(url)
            },
            own,
        )
    })
    .await;

    let direct = get(proxy.addr, "origin.test", origin.addr.port()).await;
    assert_eq!(direct.status(), 200, "{}", direct.text);
    assert_eq!(
        stub.connections(),
        0,
        "DIRECT must not touch the corporate proxy"
    );

    let proxied = get(proxy.addr, "proxied.test", origin.addr.port()).await;
    assert_eq!(proxied.status(), 200, "{}", proxied.text);
    assert_eq!(stub.connections(), 1);
    assert!(
        stub.lines()[0].contains("proxied.test"),
        "{:?}",
        stub.lines()
    );
    assert_eq!(origin.requests(), 2);
    assert_eq!(
        pac_hits.load(Ordering::SeqCst),
        1,
        "the PAC is fetched once"
    );
}

#[tokio::test]
async fn pac_10_unreachable_pac_fails_closed() {
    let origin = start_origin().await;
    let stub = start_stub(StubMode::Forward { basic: None }).await;
    let dead = dead_port().await;
    let url = PacSource::Url(format!("http://{dead}/proxy.pac"));
    let proxy = start(upstream_for(origin.addr), |own| {
        pac_source(pac_config(url), own)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = get(proxy.addr, "origin.test", origin.addr.port()).await;
    assert_eq!(r.status(), 502, "{}", r.text);
    assert_eq!(r.code(), "pac_error");
    assert_eq!(stub.connections(), 0);
    assert_eq!(
        origin.requests(),
        0,
        "fail closed: nothing goes DIRECT either"
    );
}

/// FLT-14: the proxy starts while its PAC server is unreachable (no network yet), keeps serving
/// (502 `pac_error`: fail closed), and once the server answers, routes by its script without a
/// restart.
#[tokio::test]
async fn flt_14_started_without_its_pac_the_proxy_recovers_when_the_server_appears() {
    let origin = start_origin().await;
    let dead = dead_port().await;
    let url = PacSource::Url(format!("http://{dead}/proxy.pac"));
    let proxy = start(upstream_for(origin.addr), |own| {
        pac_source(
            PacConfig {
                retry_backoff: vec![Duration::from_millis(100)],
                ..pac_config(url)
            },
            own,
        )
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = get(proxy.addr, "origin.test", origin.addr.port()).await;
    assert_eq!(r.status(), 502, "{}", r.text);
    assert_eq!(r.code(), "pac_error");

    // The network comes up: the PAC server answers at that address.
    let listener = TcpListener::bind(dead).await.unwrap();
    let server = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = read_head(&mut stream).await;
            let body = "function FindProxyForURL(url, host) { return \"DIRECT\"; }";
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/x-ns-proxy-autoconfig\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(reply.as_bytes()).await;
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r = get(proxy.addr, "origin.test", origin.addr.port()).await;
        if r.status() == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never recovered: {}",
            r.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(origin.requests(), 1, "only the request after the recovery");
    server.abort();
}

#[tokio::test]
async fn pac_9_broken_script_fails_closed_unless_direct_is_opted_in() {
    let origin = start_origin().await;
    let stub = start_stub(StubMode::Forward { basic: None }).await;
    let broken = PacSource::Inline("function FindProxyForURL(url, host) { return ".into());
    let proxy = start(upstream_for(origin.addr), |own| {
        pac_source(pac_config(broken.clone()), own)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = get(proxy.addr, "origin.test", origin.addr.port()).await;
    assert_eq!(
        (r.status(), r.code().as_str()),
        (502, "pac_error"),
        "{}",
        r.text
    );
    assert_eq!(stub.connections() + origin.requests(), 0);

    let direct = PacConfig {
        on_failure: OnFailure::Direct,
        ..pac_config(broken)
    };
    let opted_in = start(upstream_for(origin.addr), |own| pac_source(direct, own)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = get(opted_in.addr, "origin.test", origin.addr.port()).await;
    assert_eq!(r.status(), 200, "pac_failure = direct: {}", r.text);
    assert_eq!(stub.connections(), 0);
}

#[tokio::test]
async fn pac_11_still_loading_is_503() {
    let origin = start_origin().await;
    let (pac_addr, _) = serve_pac(
        "function FindProxyForURL(){return \"DIRECT\";}".into(),
        Duration::from_secs(30),
    )
    .await;
    let url = PacSource::Url(format!("http://{pac_addr}/proxy.pac"));
    let proxy = start(upstream_for(origin.addr), |own| {
        pac_source(pac_config(url), own)
    })
    .await;
    let r = get(proxy.addr, "origin.test", origin.addr.port()).await;
    assert_eq!(r.status(), 503, "{}", r.text);
    assert_eq!(r.code(), "pac_loading");
    assert!(r.header("retry-after").is_some());
    assert_eq!(origin.requests(), 0);
}

#[tokio::test]
async fn bad_30_pac_naming_this_proxy_is_a_loop() {
    let origin = start_origin().await;
    let proxy = start(upstream_for(origin.addr), |own| {
        let script = format!(
            "function FindProxyForURL(u, h) {{ return \"PROXY 127.0.0.1:{}\"; }}",
            own.port()
        );
        pac_source(pac_config(PacSource::Inline(script)), own)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = tokio::time::timeout(
        Duration::from_secs(3),
        get(proxy.addr, "origin.test", origin.addr.port()),
    )
    .await
    .expect("a loop is refused at once, not retried");
    assert_eq!(r.status(), 502, "{}", r.text);
    assert_eq!(r.code(), "proxy_loop");
    assert_eq!(origin.requests(), 0);
}

#[tokio::test]
async fn flt_13_network_change_switches_the_route() {
    let origin = start_origin().await;
    let stub = start_stub(StubMode::Forward { basic: None }).await;
    // The settings reader: DIRECT until the "VPN" comes up, then the corporate proxy.
    let vpn = Arc::new(Mutex::new(false));
    let (vpn_r, vpn_a) = (vpn.clone(), vpn.clone());
    let stub_endpoint = endpoint(stub.addr);
    let reader = Box::new(move || {
        Ok(if *vpn_r.lock().unwrap() {
            Selected::Proxies(SystemProxy {
                http: vec![stub_endpoint.clone()],
                https: vec![stub_endpoint.clone()],
                source: "ie",
                ..SystemProxy::default()
            })
        } else {
            Selected::Direct {
                why: "ie: no proxy".into(),
            }
        })
    });
    let addresses = Box::new(move || {
        let mut a: Vec<std::net::IpAddr> = vec!["192.0.2.10".parse().unwrap()];
        if *vpn_a.lock().unwrap() {
            a.push("10.8.0.2".parse().unwrap());
        }
        a
    });
    let mut watcher = SettingsWatcher::new(reader, addresses);
    watcher.address_interval = Duration::from_millis(50);
    let proxy = start(upstream_for(origin.addr), |_| async move {
        system_source(watcher, PacConfig::default(), false)
    })
    .await;

    let before = get(proxy.addr, "origin.test", origin.addr.port()).await;
    assert_eq!(before.status(), 200, "{}", before.text);
    assert_eq!(stub.connections(), 0);

    *vpn.lock().unwrap() = true;
    let mut switched = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let r = get(proxy.addr, "origin.test", origin.addr.port()).await;
        assert_eq!(r.status(), 200, "{}", r.text);
        if stub.connections() > 0 {
            switched = true;
            break;
        }
    }
    assert!(
        switched,
        "the route did not switch to the corporate proxy after the network change"
    );
}

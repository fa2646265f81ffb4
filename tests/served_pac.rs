//! Served PAC: `GET /proxy.pac` on the proxy's own port (origin-form, `Host` = our address) returns a
//! script that sends intercepted hosts to us, STS/direct hosts and bypass entries DIRECT, and
//! everything else where the corporate PAC says (embedded, renamed). Checked by evaluating the served
//! script with our own PacResolver and, when installed, pacparser's `pactester`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use exoproxy::handler::Proxy;
use exoproxy::listener;
use exoproxy::route::pac::{PacConfig, PacResolver, PacSource};
use exoproxy::route::{InterceptRule, RouteConfig, Router, UpstreamSource};
use exoproxy::upstream::Upstream;
use support::*;
use tokio::net::TcpListener;

const CORP_PAC: &str = r#"
function FindProxyForURL(url, host) {
  if (shExpMatch(host, "*.intranet.corp")) return "DIRECT";
  return "PROXY corp-proxy.example:8080; DIRECT";
}
"#;

struct Running {
    addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(upstream: impl FnOnce(SocketAddr) -> UpstreamSource) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = RouteConfig {
        upstream: upstream(addr),
        direct_hosts: vec!["sts.contoso.test".into(), ".adfs.contoso.test".into()],
        bypass: vec!["<local>;*.lan.example".into()],
        intercept: vec![InterceptRule {
            profile: "exo".into(),
            hosts: vec![
                "outlook.office365.com".into(),
                "*.ps.compliance.protection.outlook.com".into(),
            ],
        }],
        ..RouteConfig::default()
    };
    let router = Router::start(config, &[addr]).await.unwrap();
    let mut upstream = test_upstream();
    upstream.own_addrs.push(addr);
    let proxy = Arc::new(Proxy::new(
        Arc::new(router),
        Arc::new(Upstream::new(upstream)),
        test_limits(),
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(listener::serve(vec![listener], proxy, async move {
        let _ = stopped.await;
    }));
    Running { addr, _stop: stop }
}

async fn fetch_pac(proxy: SocketAddr, host: &str) -> RawResponse {
    let req = format!("GET /proxy.pac HTTP/1.1\r\nHost: {host}\r\n\r\n");
    raw(proxy, req.as_bytes()).await
}

/// What our own engine says for each URL of the served script.
async fn eval_all(script: &str, urls: &[&str]) -> Vec<String> {
    let resolver = PacResolver::start(PacConfig {
        source: PacSource::Inline(script.to_string()),
        ..PacConfig::default()
    })
    .await;
    let mut out = Vec::new();
    for url in urls {
        let target = exoproxy::app::target_of_url(url).unwrap();
        let (_, host) = exoproxy::route::pac::script_args(&target);
        out.push(resolver.eval(url, &host).await.unwrap());
    }
    out
}

fn pactester(script: &str, url: &str) -> Option<String> {
    let dir = std::env::temp_dir().join(format!("exoproxy-served-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let file = dir.join("served.pac");
    std::fs::write(&file, script).ok()?;
    let out = std::process::Command::new("pactester")
        .arg("-p")
        .arg(&file)
        .arg("-u")
        .arg(url)
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_pac_embeds_the_corporate_script() {
    let proxy = start(|own| {
        let resolver = futures_start(PacConfig {
            source: PacSource::Inline(CORP_PAC.into()),
            own_addrs: vec![own],
            ..PacConfig::default()
        });
        UpstreamSource::Pac(Arc::new(resolver))
    })
    .await;
    let r = fetch_pac(proxy.addr, &proxy.addr.to_string()).await;
    assert_eq!(r.status(), 200, "{}", r.text);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/x-ns-proxy-autoconfig")
    );
    let script = r.body().to_string();
    assert!(
        script.contains("function __corp_FindProxyForURL("),
        "{script}"
    );
    let us = format!("PROXY {}", proxy.addr);
    let cases = [
        (
            "https://outlook.office365.com/powershell-liveid",
            us.as_str(),
        ),
        (
            "https://eur01.ps.compliance.protection.outlook.com/",
            us.as_str(),
        ),
        ("https://sts.contoso.test/adfs/ls/", "DIRECT"),
        ("https://fs.adfs.contoso.test/", "DIRECT"),
        ("https://adfs.contoso.test/", "DIRECT"),
        ("http://printer/", "DIRECT"),
        ("http://nas.lan.example/", "DIRECT"),
        ("http://wiki.intranet.corp/", "DIRECT"),
        (
            "https://www.example.com/",
            "PROXY corp-proxy.example:8080; DIRECT",
        ),
    ];
    let urls: Vec<&str> = cases.iter().map(|c| c.0).collect();
    let answers = eval_all(&script, &urls).await;
    for ((url, want), got) in cases.iter().zip(&answers) {
        assert_eq!(got, want, "our engine, {url}");
    }
    if std::process::Command::new("pactester")
        .arg("-v")
        .output()
        .is_ok()
    {
        for (url, want) in cases {
            assert_eq!(
                pactester(&script, url).as_deref(),
                Some(want),
                "pactester, {url}"
            );
        }
    }
}

/// `PacResolver::start` is async only by signature; the closure above needs a value.
fn futures_start(config: PacConfig) -> PacResolver {
    tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(PacResolver::start(config))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_pac_with_static_upstream_and_refusals() {
    let proxy = start(|_| {
        UpstreamSource::Static(vec![
            exoproxy::target::ProxyEndpoint::parse("p1.corp:8080").unwrap(),
        ])
    })
    .await;
    let r = fetch_pac(proxy.addr, &format!("localhost:{}", proxy.addr.port())).await;
    assert_eq!(r.status(), 200, "{}", r.text);
    let answers = eval_all(
        r.body(),
        &["https://www.example.com/", "https://outlook.office365.com/"],
    )
    .await;
    assert_eq!(answers[0], "PROXY p1.corp:8080");
    // The address the client used to fetch the PAC is the one it is told to use.
    assert_eq!(answers[1], format!("PROXY localhost:{}", proxy.addr.port()));

    // Another Host, another path, another method: still "not a proxy request".
    let other_host = fetch_pac(proxy.addr, "evil.example").await;
    assert_eq!(other_host.status(), 400, "{}", other_host.text);
    let other_path = raw(
        proxy.addr,
        format!("GET /status HTTP/1.1\r\nHost: {}\r\n\r\n", proxy.addr).as_bytes(),
    )
    .await;
    assert_eq!(other_path.status(), 400);
    let post = raw(
        proxy.addr,
        format!(
            "POST /proxy.pac HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\n\r\n",
            proxy.addr
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(post.status(), 400);
}

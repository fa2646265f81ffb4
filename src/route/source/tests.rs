use super::*;
use crate::route::pac::PacSource;
use crate::route::sts::FetchResponse;
use crate::route::system::SystemProxy;
use crate::route::{InterceptRule, RouteConfig, Router};
use crate::target::{Action, ProxyEndpoint, Target};

fn connect(host: &str) -> Target {
    Target::parse_connect(&format!("{host}:443")).unwrap()
}

fn http(host: &str) -> Target {
    Target::from_http_authority(host).unwrap()
}

fn proxy(s: &str) -> ProxyEndpoint {
    ProxyEndpoint::parse(s).unwrap()
}

fn fixed(selected: Selected) -> SettingsWatcher {
    SettingsWatcher::new(Box::new(move || Ok(selected.clone())), Box::new(Vec::new))
}

async fn router_with(upstream: UpstreamSource) -> Router {
    let config = RouteConfig {
        upstream,
        intercept: vec![InterceptRule {
            profile: "exo".into(),
            hosts: vec!["outlook.office365.com".into()],
        }],
        ..RouteConfig::default()
    };
    Router::start(config, &[]).await.unwrap()
}

#[tokio::test]
async fn pac_default_route_is_looked_up() {
    let pac = PacConfig {
        source: PacSource::Inline(
            "function FindProxyForURL(u, h) { return \"PROXY p.corp:8080; DIRECT\"; }".into(),
        ),
        ..PacConfig::default()
    };
    let spec = SourceSpec::Pac(Box::new(pac));
    let upstream = start(&spec, &UpstreamSource::Direct, false, &[]).await;
    let router = router_with(upstream).await;
    let d = router.decide(&connect("www.example.com")).await.unwrap();
    assert_eq!(
        d.to_string(),
        "TUNNEL via PROXY p.corp:8080, DIRECT (PAC (inline script))"
    );
    // An intercepted host travels the PAC route too, explained by its rule.
    let d = router
        .decide(&connect("outlook.office365.com"))
        .await
        .unwrap();
    assert!(matches!(d.action, Action::Intercept { .. }));
    assert_eq!(d.hops.len(), 2, "{d}");
}

#[tokio::test]
async fn system_proxies_per_scheme_with_their_bypass() {
    let selected = Selected::Proxies(SystemProxy {
        http: vec![proxy("h.corp:80")],
        https: vec![proxy("s.corp:8443")],
        bypass: vec!["*.corp.example".into()],
        source: "ie",
        ..SystemProxy::default()
    });
    let router = router_with(system_source(fixed(selected), PacConfig::default(), false)).await;
    let d = router.decide(&connect("www.example.com")).await.unwrap();
    assert_eq!(
        d.to_string(),
        "TUNNEL via PROXY s.corp:8443 (ie proxy settings)"
    );
    let d = router.decide(&http("www.example.com")).await.unwrap();
    assert_eq!(
        d.to_string(),
        "TUNNEL via PROXY h.corp:80 (ie proxy settings)"
    );
    let d = router.decide(&connect("wiki.corp.example")).await.unwrap();
    assert_eq!(d.hops, vec![Hop::Direct]);
    assert!(d.why.contains("*.corp.example"), "{d}");
}

#[tokio::test]
async fn wpad_from_settings_fails_closed() {
    let router = router_with(system_source(
        fixed(Selected::Wpad { source: "ie" }),
        PacConfig::default(),
        false,
    ))
    .await;
    let err = router
        .decide(&connect("www.example.com"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProxyError::Pac(ref m) if m.contains("WPAD")),
        "{err}"
    );
}

#[tokio::test]
async fn discovered_sts_is_direct_at_step_4() {
    let config = RouteConfig {
        upstream: UpstreamSource::Static(vec![proxy("p.corp:8080")]),
        direct_hosts: vec!["sts.explicit.test".into()],
        ..RouteConfig::default()
    };
    let router = Router::start(config, &[]).await.unwrap();
    let answer = br#"{"account_type":"Federated","federation_active_auth_url":"https://sts.contoso.test/adfs/services/trust/2005/usernamemixed"}"#;
    router
        .sts()
        .unwrap()
        .discover("contoso.test", |_| async {
            Ok(FetchResponse {
                status: 200,
                body: answer.to_vec(),
            })
        })
        .await
        .unwrap();
    let d = router.decide(&connect("sts.contoso.test")).await.unwrap();
    assert_eq!(
        d.to_string(),
        "TUNNEL via DIRECT (federation STS for contoso.test, discovered)"
    );
    let d = router.decide(&connect("sts.explicit.test")).await.unwrap();
    assert_eq!(d.hops, vec![Hop::Direct]);
    let d = router.decide(&connect("other.contoso.test")).await.unwrap();
    assert_eq!(
        d.to_string(),
        "TUNNEL via PROXY p.corp:8080 (static upstream)"
    );
}

#[test]
fn pac_downloads_get_the_injected_tls_config() {
    let tls = crate::tls_client::client_config_with_roots(rustls::RootCertStore::empty()).unwrap();
    let mut pac = SourceSpec::Pac(Box::default());
    pac.set_pac_tls(tls.clone());
    let SourceSpec::Pac(config) = &pac else {
        unreachable!()
    };
    assert!(Arc::ptr_eq(config.tls.as_ref().unwrap(), &tls));
    let mut system = SourceSpec::System {
        live: LiveConfig::default(),
        pac: Box::default(),
    };
    system.set_pac_tls(tls.clone());
    let SourceSpec::System { pac, .. } = &system else {
        unreachable!()
    };
    assert!(Arc::ptr_eq(pac.tls.as_ref().unwrap(), &tls));
}

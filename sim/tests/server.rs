//! exosim's server-level behaviour over real TLS on loopback: routing by host, home-realm discovery,
//! the STS blank page through a proxy, login-host faults, the control host, and clean shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use exosim::LoginFault;

#[tokio::test]
async fn userrealm_tells_managed_from_federated() {
    let h = Harness::start().await;
    let managed = h
        .client
        .get("https://login.microsoftonline.com/common/userrealm/admin@contoso.com?api-version=1.0")
        .await
        .json();
    assert_eq!(managed["account_type"], "Managed");
    let federated = h
        .client
        .get("https://login.microsoftonline.com/common/userrealm/fed@contoso.test?api-version=1.0")
        .await
        .json();
    assert_eq!(federated["account_type"], "Federated");
    assert_eq!(
        federated["federation_metadata_url"],
        "https://sts.contoso.test/adfs/services/trust/mex"
    );
    assert_eq!(
        federated["federation_active_auth_url"],
        "https://sts.contoso.test/adfs/services/trust/2005/usernamemixed"
    );
    let legacy = h
        .client
        .get("https://login.microsoftonline.com/getuserrealm.srf?login=fed%40contoso.test&json=1")
        .await
        .json();
    assert_eq!(legacy["NameSpaceType"], "Federated");
    assert!(legacy["AuthURL"].as_str().unwrap().starts_with(
        "https://sts.contoso.test/adfs/ls/?username=fed%40contoso.test&wa=wsignin1.0"
    ));
    let legacy_managed = h
        .client
        .get("https://login.microsoftonline.com/getuserrealm.srf?login=user%40contoso.com&json=1")
        .await
        .json();
    assert_eq!(legacy_managed["NameSpaceType"], "Managed");
    assert!(legacy_managed["AuthURL"].is_null());
    let unknown = h.client.get("https://login.microsoftonline.com/common/userrealm/someone@fabrikam.test?api-version=1.0").await.json();
    assert_eq!(unknown["account_type"], "Unknown");
    assert_eq!(h.sim.control().counters().userrealm_requests, 5);
    h.sim.shutdown().await;
}

#[tokio::test]
async fn sts_serves_a_form_direct_and_a_blank_page_through_a_proxy() {
    let h = Harness::start().await;
    let url = "https://sts.contoso.test/adfs/ls/?username=fed%40contoso.test&wa=wsignin1.0";
    let direct = h.client.get(url).await;
    assert_eq!(direct.status, 200);
    assert!(direct.text().contains("<form") && direct.text().contains("fed@contoso.test"));
    for header in [("via", "1.1 squid"), ("x-forwarded-for", "127.0.0.1")] {
        let proxied = h.client.get_with(url, &[header]).await;
        assert_eq!(proxied.status, 200);
        assert!(proxied.body.is_empty(), "blank page through a proxy");
    }
    // A CONNECT tunnel carries no headers: the control plane marks the proxy's peer instead.
    h.sim.control().treat_as_proxied(|_peer| true);
    assert!(h.client.get(url).await.body.is_empty());
    let metadata = h
        .client
        .get("https://sts.contoso.test/adfs/services/trust/mex")
        .await;
    assert!(metadata.text().contains("EntityDescriptor"));
    let c = h.sim.control().counters();
    assert_eq!((c.sts_direct, c.sts_proxied), (1, 3));
    h.sim.shutdown().await;
}

#[tokio::test]
async fn hosts_are_routed_and_unknown_hosts_get_421() {
    let h = Harness::start().await;
    let exchange = h
        .client
        .get("https://outlook.office365.com/adminapi/beta/contoso.onmicrosoft.com/EXOBanner")
        .await;
    assert_ne!(exchange.status, 421, "Exchange host is served");
    let tenant_host = h
        .client
        .get("https://nam04b.ps.compliance.protection.outlook.com/powershell-liveid")
        .await;
    assert_ne!(tenant_host.status, 421, "tenant S&C host is served");
    // The leaf carries localhost, but no emulated service lives there: misdirected.
    assert_eq!(h.client.get("https://localhost/").await.status, 421);
    h.sim.shutdown().await;
}

async fn token_call(h: &Harness) -> Answer {
    refresh(h, "whatever").await
}

#[tokio::test]
async fn login_faults_status_throttle_delay_and_times() {
    let h = Harness::start().await;
    let control = h.sim.control();
    control.set_login_fault(Some(LoginFault::Status(503)));
    let unavailable = token_call(&h).await;
    assert_eq!(unavailable.status, 503);
    assert_aad_error(&unavailable, "temporarily_unavailable", 90033);

    control.set_login_fault_times(LoginFault::Throttle(Duration::from_secs(7)), 1);
    let throttled = token_call(&h).await;
    assert_eq!(throttled.status, 429);
    assert_eq!(throttled.headers["retry-after"], "7");
    assert_eq!(
        token_call(&h).await.status,
        400,
        "fault fired once, then the endpoint answers"
    );

    control.set_token_delay(Some(Duration::from_millis(300)));
    let start = Instant::now();
    token_call(&h).await;
    assert!(start.elapsed() >= Duration::from_millis(300));
    control.set_token_delay(None);
    assert_eq!(control.counters().faults_served, 2);
    h.sim.shutdown().await;
}

#[tokio::test]
async fn refuse_closes_login_connections_but_not_other_hosts() {
    let h = Harness::start().await;
    h.sim.control().set_login_fault(Some(LoginFault::Refuse));
    let url =
        format!("https://login.microsoftonline.com/{TENANT}/v2.0/.well-known/openid-configuration");
    let req = http::Request::get(url.as_str())
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    assert!(
        h.client.send(req).await.is_err(),
        "login host connection is closed"
    );
    assert_eq!(
        h.client
            .get("https://sts.contoso.test/adfs/ls/")
            .await
            .status,
        200
    );
    h.sim.control().set_login_fault(None);
    assert_eq!(h.client.get(&url).await.status, 200);
    assert_eq!(h.sim.control().counters().refused_connections, 1);
    h.sim.shutdown().await;
}

#[tokio::test]
async fn control_host_drives_the_same_knobs_over_https() {
    let h = Harness::start().await;
    let dc = device_code(&h).await;
    let devices = h
        .client
        .get("https://control.exosim.test/devices")
        .await
        .json();
    assert_eq!(devices["pending"][0], dc["user_code"]);
    let approved = h
        .client
        .post(&format!(
            "https://control.exosim.test/device/approve?upn=user%40contoso.com&user_code={}",
            dc["user_code"].as_str().unwrap()
        ))
        .await;
    assert_eq!(approved.status, 200, "{}", approved.text());
    let tokens = poll(&h, dc["device_code"].as_str().unwrap()).await.json();
    assert_eq!(
        claims(tokens["access_token"].as_str().unwrap())["upn"],
        "user@contoso.com"
    );

    assert_eq!(
        h.client
            .post("https://control.exosim.test/fault?kind=status&code=502&times=1")
            .await
            .status,
        200
    );
    assert_eq!(token_call(&h).await.status, 502);
    assert_eq!(
        h.client
            .post("https://control.exosim.test/exchange?cae=true&throttle_secs=3")
            .await
            .status,
        200
    );
    let settings = h.sim.control().exchange().settings();
    assert!(settings.cae);
    assert_eq!(settings.throttle, Some(Duration::from_secs(3)));
    assert_eq!(
        h.client
            .post("https://control.exosim.test/revoke?upn=user%40contoso.com")
            .await
            .status,
        200
    );
    assert_aad_error(
        &refresh(&h, tokens["refresh_token"].as_str().unwrap()).await,
        "invalid_grant",
        50173,
    );
    let counters = h
        .client
        .get("https://control.exosim.test/counters")
        .await
        .json();
    assert_eq!(counters["devicecode_requests"], 1);
    assert_eq!(
        h.client
            .post("https://control.exosim.test/fault?kind=bogus")
            .await
            .status,
        400
    );
    h.sim.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_the_listener() {
    let h = Harness::start().await;
    let addr = h.sim.addr();
    assert_eq!(
        h.client
            .get("https://control.exosim.test/counters")
            .await
            .status,
        200
    );
    h.sim.shutdown().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "nothing listens after shutdown"
    );
}

#[tokio::test]
async fn debug_output_of_a_busy_sim_never_shows_tokens_or_the_canary() {
    let config = exosim::SimConfig {
        canary: Some("CANARY-dbg-42".into()),
        ..exosim::SimConfig::default()
    };
    let h = Harness::with(config).await;
    let tokens = sign_in(&h).await;
    assert!(
        tokens["refresh_token"]
            .as_str()
            .unwrap()
            .contains("CANARY-dbg-42")
    );
    let printed = format!("{:?} {:?}", h.sim, h.sim.control());
    assert!(!printed.contains("CANARY-dbg-42"), "SEC-19: {printed}");
    assert!(!printed.contains(tokens["refresh_token"].as_str().unwrap()));
    h.sim.shutdown().await;
}

#[tokio::test]
async fn untrusted_certificate_fault_hits_login_hosts_only_tls_2() {
    let h = Harness::start().await;
    h.sim
        .control()
        .set_login_fault_times(LoginFault::UntrustedCertificate, 1);
    let url =
        format!("https://login.microsoftonline.com/{TENANT}/v2.0/.well-known/openid-configuration");
    let req = http::Request::get(url.as_str())
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let err = h.client.send(req).await.unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    assert_eq!(h.client.get(&url).await.status, 200, "fault fired once");
    h.sim
        .control()
        .set_login_fault(Some(LoginFault::UntrustedCertificate));
    let exchange = h
        .client
        .get("https://outlook.office365.com/powershell-liveid")
        .await;
    assert_ne!(exchange.status, 421, "Exchange keeps its trusted leaf");
    h.sim.shutdown().await;
}

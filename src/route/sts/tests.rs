use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

const V1_FEDERATED: &str = include_str!("fixtures/userrealm_federated.json");
const V1_MANAGED: &str = include_str!("fixtures/userrealm_managed.json");
const LEGACY_FEDERATED: &str = include_str!("fixtures/getuserrealm_federated.json");
const LEGACY_MANAGED: &str = include_str!("fixtures/getuserrealm_managed.json");
const LEGACY_UNKNOWN: &str = include_str!("fixtures/getuserrealm_unknown.json");

fn ok(body: &str) -> Result<FetchResponse, String> {
    Ok(FetchResponse {
        status: 200,
        body: body.as_bytes().to_vec(),
    })
}

fn status(code: u16) -> Result<FetchResponse, String> {
    Ok(FetchResponse {
        status: code,
        body: Vec::new(),
    })
}

fn directory() -> StsDirectory {
    StsDirectory::new(
        &[],
        &[
            "outlook.office365.com".into(),
            "*.microsoftonline.com".into(),
        ],
    )
    .unwrap()
    .with_realm_base("http://127.0.0.1:1")
}

#[test]
fn v1_federated_answer_names_the_sts_host_once() {
    let realm = UserRealm::parse(V1_FEDERATED.as_bytes()).unwrap();
    assert_eq!(realm.namespace, NamespaceType::Federated);
    assert_eq!(realm.domain.as_deref(), Some("contoso.test"));
    assert_eq!(realm.federation_protocol.as_deref(), Some("WSTrust"));
    assert_eq!(realm.sts_urls.len(), 2);
    assert_eq!(realm.sts_hosts().unwrap(), vec!["sts.contoso.test"]);
}

#[test]
fn legacy_federated_answer_uses_auth_url_and_metadata_url() {
    let realm = UserRealm::parse(LEGACY_FEDERATED.as_bytes()).unwrap();
    assert_eq!(realm.namespace, NamespaceType::Federated);
    // AuthURL and FederationMetadataUrl (with an explicit :443) name the same host.
    assert_eq!(realm.sts_hosts().unwrap(), vec!["adfs.contoso.test"]);
}

#[test]
fn managed_and_unknown_realms_have_no_sts() {
    for (body, kind) in [
        (V1_MANAGED, NamespaceType::Managed),
        (LEGACY_MANAGED, NamespaceType::Managed),
        (LEGACY_UNKNOWN, NamespaceType::Unknown),
    ] {
        let realm = UserRealm::parse(body.as_bytes()).unwrap();
        assert_eq!(realm.namespace, kind);
        assert!(realm.sts_hosts().unwrap().is_empty());
    }
}

#[test]
fn malformed_answers_are_errors() {
    for bad in [
        "",
        "[]",
        "{\"ver\":\"1.0\"}",
        "<html>",
        "{\"account_type\":5}",
    ] {
        assert!(
            UserRealm::parse(bad.as_bytes()).is_err(),
            "{bad:?} accepted"
        );
    }
    let evil = r#"{"NameSpaceType":"Federated","AuthURL":"https://user@sts.test/"}"#;
    assert!(
        UserRealm::parse(evil.as_bytes())
            .unwrap()
            .sts_hosts()
            .is_err()
    );
    let not_http = r#"{"NameSpaceType":"Federated","AuthURL":"javascript:alert(1)"}"#;
    assert!(
        UserRealm::parse(not_http.as_bytes())
            .unwrap()
            .sts_hosts()
            .is_err()
    );
}

#[test]
fn realm_urls_encode_the_upn() {
    assert_eq!(
        user_realm_url("https://login.microsoftonline.com/", "a+b@contoso.test"),
        "https://login.microsoftonline.com/common/userrealm/a%2Bb@contoso.test?api-version=1.0"
    );
    assert_eq!(
        get_user_realm_url("http://127.0.0.1:9", "a b@x.test"),
        "http://127.0.0.1:9/getuserrealm.srf?login=a%20b@x.test&json=1"
    );
}

#[test]
fn explicit_direct_hosts_match_exact_and_strict_subdomains() {
    let dir = StsDirectory::new(&["sts.corp.test".into(), "*.adfs.test".into()], &[]).unwrap();
    assert_eq!(
        dir.explain("sts.corp.test").as_deref(),
        Some("direct_hosts entry sts.corp.test")
    );
    assert_eq!(
        dir.explain("a.b.adfs.test").as_deref(),
        Some("direct_hosts entry *.adfs.test")
    );
    assert!(dir.explain("adfs.test").is_none());
    assert!(dir.explain("xsts.corp.test").is_none());
    assert!(StsDirectory::new(&["bad host".into(), "*.".into()], &[]).is_err());
}

#[tokio::test]
async fn discovery_of_a_federated_domain_sends_its_sts_direct() {
    let dir = directory();
    let hosts = dir
        .discover("alice@Contoso.test", |url: String| async move {
            assert!(
                url.contains("/common/userrealm/alice@Contoso.test"),
                "{url}"
            );
            ok(V1_FEDERATED)
        })
        .await
        .unwrap();
    assert_eq!(hosts, vec!["sts.contoso.test"]);
    assert_eq!(
        dir.explain("sts.contoso.test").as_deref(),
        Some("federation STS for contoso.test, discovered")
    );
    assert!(dir.explain("contoso.test").is_none());
}

#[tokio::test]
async fn legacy_endpoint_is_tried_when_v1_fails() {
    let dir = directory();
    let hosts = dir
        .discover("contoso.test", |url: String| async move {
            if url.contains("/common/userrealm/") {
                status(404)
            } else {
                assert!(url.contains("getuserrealm.srf?login=user@contoso.test&json=1"));
                ok(LEGACY_FEDERATED)
            }
        })
        .await
        .unwrap();
    assert_eq!(hosts, vec!["adfs.contoso.test"]);
}

#[tokio::test]
async fn failed_refresh_keeps_known_hosts_and_records_the_error() {
    let dir = directory();
    dir.discover("a@contoso.test", |_| async { ok(V1_FEDERATED) })
        .await
        .unwrap();
    let err = dir
        .discover("a@contoso.test", |_| async {
            Err("connection refused".to_string())
        })
        .await
        .unwrap_err();
    assert!(err.0.contains("connection refused"), "{err}");
    assert!(dir.explain("sts.contoso.test").is_some());
    let state = &dir.domains()["contoso.test"];
    assert_eq!(state.failures, 1);
    assert!(state.last_error.is_some());
}

#[tokio::test]
async fn domain_turning_managed_drops_its_hosts() {
    let dir = directory();
    dir.discover("a@contoso.test", |_| async { ok(V1_FEDERATED) })
        .await
        .unwrap();
    let managed = V1_MANAGED.replace("fabrikam", "contoso");
    dir.discover("a@contoso.test", |_| {
        let body = managed.clone();
        async move { ok(&body) }
    })
    .await
    .unwrap();
    assert!(dir.explain("sts.contoso.test").is_none());
    assert_eq!(
        dir.domains()["contoso.test"].namespace,
        Some(NamespaceType::Managed)
    );
}

#[tokio::test]
async fn realm_cannot_send_intercepted_hosts_direct() {
    let dir = directory();
    let body = r#"{"account_type":"Federated","federation_active_auth_url":"https://outlook.office365.com/x","federation_metadata_url":"https://login.microsoftonline.com/y"}"#;
    let hosts = dir
        .discover("a@evil.test", |_| async move { ok(body) })
        .await
        .unwrap();
    assert!(hosts.is_empty());
    assert!(dir.explain("outlook.office365.com").is_none());
    assert_eq!(dir.domains()["evil.test"].refused.len(), 2);
}

#[tokio::test]
async fn a_new_directory_inherits_discovered_hosts_of_configured_domains_under_its_own_guard() {
    let old = directory();
    old.discover("alice@contoso.test", |_| async { ok(V1_FEDERATED) })
        .await
        .unwrap();
    let gone = r#"{"account_type":"Federated","federation_active_auth_url":"https://sts.gone.test/x","federation_metadata_url":"https://sts.gone.test/y"}"#;
    old.discover("bob@gone.test", |_| async move { ok(gone) })
        .await
        .unwrap();
    assert!(old.explain("sts.gone.test").is_some());

    let kept = directory();
    kept.inherit(&old, &["alice@contoso.test".into()]);
    assert!(kept.explain("sts.contoso.test").is_some());
    assert!(
        kept.explain("sts.gone.test").is_none(),
        "a domain no longer configured"
    );

    let guarded = StsDirectory::new(&[], &["sts.contoso.test".into()]).unwrap();
    guarded.inherit(&old, &["contoso.test".into()]);
    assert!(guarded.explain("sts.contoso.test").is_none());
    assert_eq!(
        guarded.domains()["contoso.test"].refused,
        ["sts.contoso.test"]
    );
}

#[test]
fn retry_backoff_doubles_and_caps() {
    let policy = RefreshPolicy::default();
    assert_eq!(next_attempt_in(&policy, 0), Duration::from_secs(12 * 3600));
    assert_eq!(next_attempt_in(&policy, 1), Duration::from_secs(30));
    assert_eq!(next_attempt_in(&policy, 2), Duration::from_secs(60));
    assert_eq!(next_attempt_in(&policy, 10), Duration::from_secs(1800));
    assert_eq!(
        next_attempt_in(&policy, u32::MAX),
        Duration::from_secs(1800)
    );
}

#[tokio::test(start_paused = true)]
async fn refresher_retries_failures_with_backoff_then_succeeds() {
    let dir = Arc::new(directory());
    let calls = Arc::new(AtomicUsize::new(0));
    let fetch = {
        let calls = calls.clone();
        move |url: String| {
            // Each discovery makes two fetches when failing (v1, legacy); the third discovery works.
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 4 {
                    Err("network down".to_string())
                } else if url.contains("/common/userrealm/") {
                    ok(V1_FEDERATED)
                } else {
                    status(500)
                }
            }
        }
    };
    let task = tokio::spawn(dir.clone().run_refresher(
        vec!["a@contoso.test".into()],
        fetch,
        RefreshPolicy::default(),
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(dir.explain("sts.contoso.test").is_none());
    assert_eq!(dir.domains()["contoso.test"].failures, 1);
    // Retries at +30 s (fails again) and +60 s after that (succeeds).
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(dir.domains()["contoso.test"].failures, 2);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(dir.explain("sts.contoso.test").is_some());
    assert_eq!(dir.domains()["contoso.test"].failures, 0);
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    task.abort();
}

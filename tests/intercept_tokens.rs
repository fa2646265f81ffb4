//! Token life through the intercepted path against exosim: rollover on a keep-alive connection
//! (TOK-13), one audience per host (TOK-11), a revoked refresh token (FLT-11), the wrong-user guard,
//! and the CAE claims challenge answered by one re-acquisition and one replay.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod intercept_support;

use std::time::Duration;

use intercept_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tok13_token_rolls_over_on_a_keep_alive_connection() {
    let h = Harness::start(Options {
        token_lifetime: Duration::from_secs(2),
        ..Options::default()
    })
    .await;
    let tenant = tenant_host(&h).await;
    let mut client = h.client(&tenant).await;
    let before = refresh_calls(&h);
    for _ in 0..6 {
        let (status, _, body) = send(&mut client, post_json(&tenant, REST_PATH, GET_MAILBOX)).await;
        assert_eq!(status, 200, "{body}");
        tokio::time::sleep(Duration::from_millis(900)).await;
    }
    // 5.4 s of 2-second tokens on one connection: every request was accepted, so each one carried
    // a token that was valid then, i.e. the rolled-over one.
    assert!(refresh_calls(&h) >= before + 2, "no rollover happened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_host_gets_the_token_of_its_own_audience() {
    let h = Harness::start(Options::default()).await;
    let exo = tenant_host_of(&h, EXO).await;
    let scc = tenant_host_of(&h, "ps.compliance.protection.outlook.com").await;
    assert!(
        scc.ends_with(".ps.compliance.protection.outlook.com"),
        "{scc}"
    );
    // exosim answers a token of the wrong audience with 401; past authentication, S&C does not know
    // Get-Mailbox (a cmdlet-level 400), Exchange answers 200.
    for host in [&exo, &scc, &exo] {
        let (status, body) = rest_once(&h, host).await;
        let authenticated = status == 200 || body.contains("CommandNotFoundException");
        assert!(authenticated, "{host}: {status} {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_refresh_token_gives_one_clear_message_and_no_more_calls() {
    let h = Harness::start(Options {
        token_lifetime: Duration::from_secs(2),
        ..Options::default()
    })
    .await;
    let tenant = tenant_host(&h).await;
    h.control().revoke_user(ADMIN);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, body) = rest_once(&h, &tenant).await;
    assert_eq!(status, 503, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["error"]["code"], "reauth_required");
    let message = json["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("exoproxy login admin@contoso.com"),
        "{message}"
    );
    let calls = refresh_calls(&h);
    for _ in 0..3 {
        let (status, _) = rest_once(&h, &tenant).await;
        assert_eq!(status, 503);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        refresh_calls(&h),
        calls,
        "token calls after the refresh token was revoked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_as_the_wrong_user_is_refused_naming_both() {
    let h = Harness::start(Options {
        sign_in: false,
        ..Options::default()
    })
    .await;
    let (status, body) = rest_once(&h, EXO).await;
    assert_eq!(status, 503, "{body}");
    let code = h.control().pending_devices().pop().unwrap();
    assert!(body.contains(&code), "{body}");
    h.control().sign_in_as(Some("user@contoso.com"));
    h.control().approve_device(Some(&code)).unwrap();
    for _ in 0..50 {
        let failed = h.tokens.accounts().iter().any(|a| a.last_error.is_some());
        if failed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = rest_once(&h, EXO).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("user@contoso.com") && body.contains("admin@contoso.com"),
        "{body}"
    );
    assert!(
        h.tokens.accounts().iter().all(|a| a.tokens.is_empty()),
        "the wrong user's token was kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cae_claims_challenge_is_answered_once_and_replayed() {
    let h = Harness::start(Options::default()).await;
    let tenant = tenant_host(&h).await;
    let mut client = h.client(&tenant).await;
    let (status, _, _) = send(&mut client, post_json(&tenant, REST_PATH, GET_MAILBOX)).await;
    assert_eq!(status, 200);
    h.control().update_exchange(|s| s.cae = true);
    let (calls, requests) = (refresh_calls(&h), h.control().exchange().request_count());
    let (status, _, body) = send(&mut client, post_json(&tenant, REST_PATH, GET_MAILBOX)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(refresh_calls(&h), calls + 1, "one re-acquisition");
    assert_eq!(
        h.control().exchange().request_count(),
        requests + 2,
        "one replay"
    );
    // The new token satisfies the claims: the next request needs no challenge.
    let (status, _, _) = send(&mut client, post_json(&tenant, REST_PATH, GET_MAILBOX)).await;
    assert_eq!(status, 200);
    assert_eq!(h.control().exchange().request_count(), requests + 3);
}

/// Issue 10 row 13: the IdP refuses one audience's scope (`invalid_scope`, AADSTS70011). That is final
/// for the account and that audience: one token call in a 6 s window of requests (before: retried
/// with backoff, about every 2 s, forever), the answer names the audience and the scope, and the
/// account's other audience keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_scope_is_final_for_that_audience_and_names_it() {
    let h = Harness::start(Options::default()).await;
    let exo = tenant_host(&h).await;
    let scc_resource = "https://ps.compliance.protection.outlook.com";
    h.control().set_scope_error(scc_resource, Some(70011));
    let before = refresh_calls(&h);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    let mut message = String::new();
    while tokio::time::Instant::now() < deadline {
        let (status, body) = rest_once(&h, "ps.compliance.protection.outlook.com").await;
        assert_eq!(status, 503, "{body}");
        message = body;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        refresh_calls(&h) - before,
        1,
        "token calls for a refused audience in 6 s"
    );
    assert!(message.contains(scc_resource), "{message}");
    assert!(message.contains("/.default"), "scope named: {message}");
    assert!(message.contains("invalid_scope"), "{message}");
    let (status, body) = rest_once(&h, &exo).await;
    assert_eq!(status, 200, "the other audience still works: {body}");
}

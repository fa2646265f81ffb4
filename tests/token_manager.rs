//! TokenManager against a scripted fake IdP: single-flight (LOAD-11), outages (FLT-5), backoff (FLT-6),
//! revoked grants (FLT-11), rotation persistence (TOK-8), clock skew (TOK-12), audiences (TOK-11/15),
//! the wrong-user guard, on-demand device sign-in, claims challenges, app-only flows, logout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod token_support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use exoproxy::token::cache::{CachedAccount, Load, StoredAccessToken, TokenCache, file_stem};
use exoproxy::token::schedule::Jitter;
use exoproxy::token::secret::{AccessToken, RefreshToken};
use exoproxy::token::{
    AccountConfig, AccountStatus, Audience, Flow, ManagerSettings, TokenError, TokenManager,
};
use token_support::*;
use tokio::time::Instant;

const REFRESH: &str = "refresh_token";
const DEVICE: &str = "urn:ietf:params:oauth:grant-type:device_code";

fn settings() -> ManagerSettings {
    ManagerSettings {
        jitter: Jitter::None,
        open_browser: false,
        ..ManagerSettings::default()
    }
}

fn config() -> AccountConfig {
    let mut config = AccountConfig::new(UPN);
    config.authority = Some(AUTHORITY.into());
    config
}

fn manager(idp: &Arc<FakeIdp>, dir: &Path) -> TokenManager {
    let manager = TokenManager::new(idp.clone(), Some(dir), settings()).unwrap();
    manager.add_account(config());
    manager
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Writes a cache file with a refresh token and, optionally, an access token valid `valid_for` seconds.
fn seed(dir: &Path, rt: &str, access: Option<(&str, i64, i64)>) {
    let cache = TokenCache::open(dir).unwrap();
    let access_tokens = access
        .map(|(token, issued_ago, valid_for)| StoredAccessToken {
            audience: Audience::new(EXO),
            token: AccessToken::new(token),
            issued_at: unix_now() - issued_ago,
            expires_at: unix_now() + valid_for,
        })
        .into_iter()
        .collect();
    let account = CachedAccount {
        upn: UPN.into(),
        refresh_token: Some(RefreshToken::new(rt)),
        access_tokens,
        ..CachedAccount::default()
    };
    cache.save(&account).unwrap();
}

fn cached_rt(dir: &Path) -> Option<String> {
    match TokenCache::open(dir).unwrap().load(UPN) {
        Load::Loaded(account) => account.refresh_token.map(|t| t.expose().to_string()),
        _ => None,
    }
}

fn exo() -> Audience {
    Audience::new(EXO)
}

#[tokio::test(start_paused = true)]
async fn load11_tok7_thousand_concurrent_gets_make_exactly_one_call() {
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path(), "rt-0", Some(("expired", 4000, -10)));
    let idp = FakeIdp::new(|_, _| {
        delayed(
            tokens(&jwt(UPN, EXO, "fresh"), Some("rt-1"), 3600),
            Duration::from_millis(200),
        )
    });
    let manager = manager(&idp, dir.path());
    let started = Instant::now();
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let manager = manager.clone();
            tokio::spawn(async move { manager.token(UPN, &exo()).await })
        })
        .collect();
    for task in tasks {
        let token = task.await.unwrap().unwrap();
        assert_eq!(token.expose(), jwt(UPN, EXO, "fresh"));
    }
    assert_eq!(
        idp.grants(REFRESH).len(),
        1,
        "exactly one refresh for 1000 callers"
    );
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test(start_paused = true)]
async fn flt5_valid_cached_token_is_served_while_the_idp_is_down() {
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path(), "rt-0", Some(("cached-at", 60, 3000)));
    let idp = FakeIdp::new(|_, _| delayed(status(503, None), Duration::from_secs(30)));
    let manager = manager(&idp, dir.path());
    let started = Instant::now();
    for _ in 0..10 {
        assert_eq!(
            manager.token(UPN, &exo()).await.unwrap().expose(),
            "cached-at"
        );
    }
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert!(idp.calls().is_empty());
}

#[tokio::test(start_paused = true)]
async fn flt5_expired_token_and_slow_idp_answer_within_15s_with_a_retry_hint() {
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path(), "rt-0", None);
    let idp = FakeIdp::new(|_, _| delayed(status(504, None), Duration::from_secs(30)));
    let manager = manager(&idp, dir.path());
    let started = Instant::now();
    let waiters: Vec<_> = (0..20)
        .map(|_| {
            let manager = manager.clone();
            tokio::spawn(async move { manager.token(UPN, &exo()).await })
        })
        .collect();
    for waiter in waiters {
        match waiter.await.unwrap() {
            Err(TokenError::Unavailable { retry_after, .. }) => assert!(retry_after.is_some()),
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
    assert!(
        started.elapsed() <= Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        idp.grants(REFRESH).len(),
        1,
        "no refresh storm: one call in flight"
    );
    let err = manager.token(UPN, &exo()).await.unwrap_err();
    assert!(matches!(err, TokenError::Unavailable { .. }));
    assert!(err.to_string().contains(UPN));
}

/// Gaps between consecutive refresh calls, in whole seconds.
fn gaps(calls: &[Call]) -> Vec<u64> {
    calls
        .windows(2)
        .map(|w| (w[1].at - w[0].at).as_millis().div_ceil(1000) as u64)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn flt6_backoff_schedule_circuit_and_recovery() {
    let dir = tempfile::tempdir().unwrap();
    // Issued now, valid 600 s: the refresher fires at 300 s (max(5 min, 20 %), clamped to 50 %).
    seed(dir.path(), "rt-0", Some(("at-0", 0, 600)));
    let idp = FakeIdp::new(|_, n| {
        if n < 6 {
            status(503, None)
        } else {
            tokens(&jwt(UPN, EXO, "new"), Some("rt-1"), 3600)
        }
    });
    let manager = manager(&idp, dir.path());
    let t0 = Instant::now();
    manager.token(UPN, &exo()).await.unwrap();
    // After 5 failures the circuit is open: an audience without a token fails fast, without a call.
    tokio::time::sleep(Duration::from_secs(300 + 1 + 2 + 4 + 8 + 2)).await;
    let before = idp.calls().len();
    assert_eq!(before, 5);
    let scc = Audience::new(SCC);
    let fast = Instant::now();
    assert!(matches!(
        manager.token(UPN, &scc).await,
        Err(TokenError::Unavailable { .. })
    ));
    assert_eq!(fast.elapsed(), Duration::ZERO);
    assert_eq!(idp.calls().len(), before);
    assert!(matches!(
        manager.accounts()[0].status,
        AccountStatus::Failing { failures: 5 }
    ));
    // The cached token still serves meanwhile (valid until 600 s).
    assert_eq!(manager.token(UPN, &exo()).await.unwrap().expose(), "at-0");
    tokio::time::sleep(Duration::from_secs(120)).await;
    let calls = idp.grants(REFRESH);
    let first = (calls[0].at - t0).as_secs();
    assert!((295..=305).contains(&first), "first refresh at {first}s");
    assert_eq!(
        gaps(&calls),
        vec![1, 2, 4, 8, 16, 32],
        "1→60 s exponential schedule"
    );
    assert_eq!(calls.len(), 7, "recovered in one attempt");
    assert_eq!(
        manager.token(UPN, &exo()).await.unwrap().expose(),
        jwt(UPN, EXO, "new")
    );
    assert!(matches!(manager.accounts()[0].status, AccountStatus::Ready));
}

#[tokio::test(start_paused = true)]
async fn flt6_retry_after_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path(), "rt-0", None);
    let idp = FakeIdp::new(|_, n| match n {
        0 => status(429, Some(20)),
        1 => status(503, Some(20)),
        _ => tokens(&jwt(UPN, EXO, "ok"), Some("rt-1"), 3600),
    });
    let manager = manager(&idp, dir.path());
    match manager.token(UPN, &exo()).await {
        Err(TokenError::Unavailable { retry_after, .. }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(20)))
        }
        other => panic!("{other:?}"),
    }
    // Inside the Retry-After window callers fail fast, no call is made.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(manager.token(UPN, &exo()).await.is_err());
    assert_eq!(idp.calls().len(), 1);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(manager.token(UPN, &exo()).await.is_err());
    assert_eq!(
        idp.calls().len(),
        2,
        "a trial call exactly when Retry-After elapsed"
    );
    tokio::time::sleep(Duration::from_secs(19)).await;
    assert!(manager.token(UPN, &exo()).await.is_err());
    assert_eq!(idp.calls().len(), 2);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(manager.token(UPN, &exo()).await.is_ok());
    assert_eq!(gaps(&idp.grants(REFRESH)), vec![20, 20]);
}

#[tokio::test(start_paused = true)]
async fn flt11_invalid_grant_stops_all_token_calls_until_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path(), "rt-revoked", Some(("old", 4000, -1)));
    let idp = FakeIdp::new(|call, _| match call.grant() {
        Some(REFRESH) => error(
            400,
            "invalid_grant",
            50173,
            "The provided grant has expired due to it being revoked.",
        ),
        Some(DEVICE) => tokens(&jwt(UPN, EXO, "after-login"), Some("rt-new"), 3600),
        _ => device_start(),
    });
    let manager = manager(&idp, dir.path());
    for _ in 0..3 {
        match manager.token(UPN, &exo()).await {
            Err(TokenError::SignInRequired { aadsts, .. }) => assert_eq!(aadsts, Some(50173)),
            other => panic!("expected SignInRequired, got {other:?}"),
        }
    }
    tokio::time::sleep(Duration::from_secs(3 * 3600)).await;
    assert_eq!(
        idp.calls().len(),
        1,
        "no further token calls after invalid_grant"
    );
    assert_eq!(
        manager.accounts()[0].status,
        AccountStatus::SignInRequired {
            aadsts: Some(50173)
        }
    );
    let message = manager.token(UPN, &exo()).await.unwrap_err().to_string();
    assert!(
        message.contains("AADSTS50173") && message.contains("exoproxy login"),
        "{message}"
    );

    // The state survives a restart: still no calls (never an invalid_grant loop, TOK-8).
    let restarted = manager_from(&idp, dir.path());
    assert!(matches!(
        restarted.token(UPN, &exo()).await,
        Err(TokenError::SignInRequired { .. })
    ));
    assert_eq!(idp.calls().len(), 1);

    // A new sign-in clears it.
    restarted.login(UPN, None).await.unwrap();
    assert_eq!(
        restarted.token(UPN, &exo()).await.unwrap().expose(),
        jwt(UPN, EXO, "after-login")
    );
    assert_eq!(cached_rt(dir.path()).as_deref(), Some("rt-new"));
}

fn manager_from(idp: &Arc<FakeIdp>, dir: &Path) -> TokenManager {
    manager(idp, dir)
}

#[tokio::test(start_paused = true)]
async fn tok8_rotated_refresh_token_is_persisted_and_used_next() {
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path(), "rt-0", None);
    let issued = Arc::new(AtomicUsize::new(0));
    let counter = issued.clone();
    let state_dir = dir.path().to_path_buf();
    let idp = FakeIdp::new(move |call, _| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        // The presented RT must be the newest one issued, and it must already be on disk.
        assert_eq!(
            call.field("refresh_token"),
            Some(format!("rt-{n}").as_str())
        );
        assert_eq!(
            cached_rt(&state_dir).as_deref(),
            Some(format!("rt-{n}").as_str())
        );
        tokens(
            &jwt(UPN, EXO, &format!("at-{n}")),
            Some(&format!("rt-{}", n + 1)),
            3600,
        )
    });
    let manager = manager(&idp, dir.path());
    let first = manager.token(UPN, &exo()).await.unwrap();
    assert_eq!(cached_rt(dir.path()).as_deref(), Some("rt-1"));
    let second = manager
        .invalidate_and_reacquire(UPN, &exo(), &first, None)
        .await
        .unwrap();
    assert_ne!(first, second);
    assert_eq!(cached_rt(dir.path()).as_deref(), Some("rt-2"));
    drop(manager);
    // A new process picks up the latest RT (and the cached AT).
    let restarted = manager_from(&idp, dir.path());
    assert_eq!(restarted.token(UPN, &exo()).await.unwrap(), second);
    restarted
        .invalidate_and_reacquire(UPN, &exo(), &second, None)
        .await
        .unwrap();
    assert_eq!(idp.grants(REFRESH).len(), 3);
}

#[tokio::test(start_paused = true)]
async fn tok12_clock_skew_uses_expires_in_not_the_jwt_exp() {
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path(), "rt-0", None);
    // The IdP's clock is far off: the JWT's exp claim is in the past, but expires_in is 3600 s.
    let idp = FakeIdp::new(|_, n| {
        tokens(
            &format!("{}-{n}", jwt(UPN, EXO, "skewed")),
            Some("rt-1"),
            3600,
        )
    });
    let manager = manager(&idp, dir.path());
    let t0 = Instant::now();
    let first = manager.token(UPN, &exo()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(40 * 60)).await;
    assert_eq!(
        manager.token(UPN, &exo()).await.unwrap(),
        first,
        "no early refresh"
    );
    tokio::time::sleep(Duration::from_secs(20 * 60)).await;
    let calls = idp.grants(REFRESH);
    assert_eq!(calls.len(), 2, "one proactive refresh");
    assert_eq!(
        (calls[1].at - t0).as_secs(),
        48 * 60,
        "refresh at expires − 20 %"
    );
    assert_ne!(manager.token(UPN, &exo()).await.unwrap(), first);
}

#[tokio::test(start_paused = true)]
async fn tok11_tokens_are_kept_per_audience() {
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path(), "rt-0", None);
    let idp = FakeIdp::new(|call, n| {
        let scope = call.field("scope").unwrap().to_string();
        let aud = scope
            .split_whitespace()
            .next()
            .unwrap()
            .trim_end_matches("/.default")
            .to_string();
        tokens(
            &jwt(UPN, &aud, &n.to_string()),
            Some(&format!("rt-{}", n + 1)),
            3600,
        )
    });
    let manager = manager(&idp, dir.path());
    let exo_token = manager.token(UPN, &exo()).await.unwrap();
    let scc_token = manager.token(UPN, &Audience::new(SCC)).await.unwrap();
    assert_ne!(exo_token, scc_token);
    let aud = |t: &AccessToken| {
        exoproxy::token::jwt::Claims::decode(t.expose())
            .unwrap()
            .aud
            .unwrap()
    };
    assert_eq!(aud(&exo_token), EXO);
    assert_eq!(aud(&scc_token), SCC);
    let scopes: Vec<String> = idp
        .calls()
        .iter()
        .map(|c| c.field("scope").unwrap().to_string())
        .collect();
    assert_eq!(
        scopes[0],
        format!("{EXO}/.default offline_access openid profile")
    );
    assert_eq!(
        scopes[1],
        format!("{SCC}/.default offline_access openid profile")
    );
    assert_eq!(manager.token(UPN, &exo()).await.unwrap(), exo_token);
}

#[tokio::test(start_paused = true)]
async fn on_demand_device_sign_in_exposes_the_code_and_polls_per_rfc8628() {
    let dir = tempfile::tempdir().unwrap();
    let polls = Arc::new(AtomicUsize::new(0));
    let seen = polls.clone();
    let idp = FakeIdp::new(move |call, _| match call.grant() {
        None => device_start(),
        Some(DEVICE) => match seen.fetch_add(1, Ordering::SeqCst) {
            0 => error(
                400,
                "authorization_pending",
                70016,
                "OAuth 2.0 device flow error. Authorization is pending.",
            ),
            1 => error(400, "slow_down", 70016, "slow down"),
            2 => error(400, "authorization_pending", 70016, "pending"),
            _ => tokens(&jwt(UPN, EXO, "device"), Some("rt-device"), 3600),
        },
        Some(_) => panic!("unexpected grant"),
    });
    let manager = manager(&idp, dir.path());
    let t0 = Instant::now();
    let err = manager.token(UPN, &exo()).await.unwrap_err();
    match &err {
        TokenError::SignInPending { prompt, .. } => {
            assert_eq!(prompt.user_code, "ABCD-EFGH");
            assert_eq!(prompt.verification_uri, "https://microsoft.com/devicelogin");
        }
        other => panic!("expected SignInPending, got {other:?}"),
    }
    assert!(err.to_string().contains("ABCD-EFGH") && err.to_string().contains("devicelogin"));
    // A second request does not start a second device flow.
    assert!(matches!(
        manager.token(UPN, &exo()).await,
        Err(TokenError::SignInPending { .. })
    ));
    assert!(matches!(
        manager.accounts()[0].status,
        AccountStatus::SignInPending { .. }
    ));
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        manager.token(UPN, &exo()).await.unwrap().expose(),
        jwt(UPN, EXO, "device")
    );
    let poll_times: Vec<u64> = idp
        .grants(DEVICE)
        .iter()
        .map(|c| (c.at - t0).as_secs())
        .collect();
    assert_eq!(
        poll_times,
        vec![5, 10, 20, 30],
        "interval 5 s, +5 s after slow_down"
    );
    assert_eq!(
        idp.calls().iter().filter(|c| c.grant().is_none()).count(),
        1
    );
    assert_eq!(cached_rt(dir.path()).as_deref(), Some("rt-device"));
}

#[tokio::test(start_paused = true)]
async fn device_sign_in_errors_end_the_flow() {
    for (error_name, code) in [
        ("authorization_declined", 70000),
        ("expired_token", 70019),
        ("bad_verification_code", 70018),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let idp = FakeIdp::new(move |call, _| match call.grant() {
            None => device_start(),
            _ => error(400, error_name, code, "stop"),
        });
        let manager = manager(&idp, dir.path());
        let err = manager.login(UPN, None).await.unwrap_err();
        assert!(
            matches!(err, TokenError::SignInFailed { .. }),
            "{error_name}: {err:?}"
        );
        assert!(err.to_string().contains(error_name), "{err}");
        assert_eq!(idp.grants(DEVICE).len(), 1, "{error_name}: polling stops");
        assert_eq!(manager.accounts()[0].status, AccountStatus::SignedOut);
    }
}

#[tokio::test(start_paused = true)]
async fn wrong_user_guard_discards_the_token_and_names_both_upns() {
    let dir = tempfile::tempdir().unwrap();
    let idp = FakeIdp::new(|call, _| match call.grant() {
        None => device_start(),
        _ => tokens(&jwt("eve@contoso.com", EXO, "eve"), Some("rt-eve"), 3600),
    });
    let manager = manager(&idp, dir.path());
    let err = manager.login(UPN, None).await.unwrap_err();
    assert!(matches!(err, TokenError::WrongUser { .. }));
    let message = err.to_string();
    assert!(
        message.contains(UPN) && message.contains("eve@contoso.com"),
        "{message}"
    );
    assert!(!TokenCache::open(dir.path()).unwrap().path_for(UPN).exists());
    assert_eq!(manager.accounts()[0].status, AccountStatus::SignedOut);
    assert!(!manager.accounts()[0].has_refresh_token);

    // Same user with different case is accepted.
    let dir = tempfile::tempdir().unwrap();
    let idp = FakeIdp::new(|call, _| match call.grant() {
        None => device_start(),
        _ => tokens(&jwt("admin@CONTOSO.com", EXO, "ok"), Some("rt"), 3600),
    });
    manager_from(&idp, dir.path())
        .login(UPN, None)
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn claims_challenge_is_forwarded_on_reacquire() {
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path(), "rt-0", Some(("rejected-at", 60, 3000)));
    let idp = FakeIdp::new(|_, n| tokens(&jwt(UPN, EXO, &format!("cae-{n}")), Some("rt-1"), 3600));
    let manager = manager(&idp, dir.path());
    let rejected = manager.token(UPN, &exo()).await.unwrap();
    assert_eq!(rejected.expose(), "rejected-at");
    let claims = r#"{"access_token":{"nbf":{"essential":true,"value":"1604106651"}}}"#;
    let fresh = manager
        .invalidate_and_reacquire(UPN, &exo(), &rejected, Some(claims.into()))
        .await
        .unwrap();
    assert_ne!(fresh, rejected);
    assert_eq!(idp.calls()[0].field("claims"), Some(claims));
    // A second 401 for the same, already replaced token does not call again.
    let again = manager
        .invalidate_and_reacquire(UPN, &exo(), &rejected, Some(claims.into()))
        .await
        .unwrap();
    assert_eq!(again, fresh);
    assert_eq!(idp.calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn tok1_corrupt_cache_means_sign_in_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let cache = TokenCache::open(dir.path()).unwrap();
    std::fs::write(
        cache.dir().join(format!("{}.json", file_stem(UPN))),
        b"\x00\xffgarbage",
    )
    .unwrap();
    let idp = FakeIdp::new(|_, _| device_start());
    let manager = TokenManager::new(
        idp.clone(),
        Some(dir.path()),
        ManagerSettings {
            auto_sign_in: false,
            ..settings()
        },
    )
    .unwrap();
    manager.add_account(config());
    let err = manager.token(UPN, &exo()).await.unwrap_err();
    assert!(matches!(err, TokenError::SignInRequired { .. }));
    assert!(
        err.to_string().contains("token cache was unusable"),
        "{err}"
    );
    assert!(idp.calls().is_empty());
}

#[tokio::test(start_paused = true)]
async fn tok9_logout_wipes_disk_and_memory() {
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path(), "rt-0", Some(("at", 60, 3000)));
    let idp = FakeIdp::new(|_, _| device_start());
    let manager = manager(&idp, dir.path());
    assert!(manager.token(UPN, &exo()).await.is_ok());
    manager.logout(UPN).unwrap();
    assert!(cached_rt(dir.path()).is_none());
    let summary = &manager.accounts()[0];
    assert_eq!(summary.status, AccountStatus::SignedOut);
    assert!(summary.tokens.is_empty() && !summary.has_refresh_token);
    // The next request starts a fresh sign-in instead of serving the old token.
    assert!(matches!(
        manager.token(UPN, &exo()).await,
        Err(TokenError::SignInPending { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn accounts_lists_cached_users_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    seed(
        dir.path(),
        "rt-secret-value",
        Some(("at-secret-value", 60, 3000)),
    );
    let idp = FakeIdp::new(|_, _| status(500, None));
    let manager = TokenManager::new(idp, Some(dir.path()), settings()).unwrap();
    let accounts = manager.accounts();
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0].upn, UPN);
    assert_eq!(accounts[0].status, AccountStatus::Ready);
    assert_eq!(accounts[0].tokens[0].0, exo());
    let shown = format!("{accounts:?}");
    assert!(!shown.contains("secret-value"), "{shown}");
}

#[tokio::test]
async fn app_only_certificate_and_secret_flows() {
    let cert_pem = include_str!("../src/token/testdata/rsa_cert.pem");
    let key_pem = include_str!("../src/token/testdata/rsa_key.pem");
    let idp = FakeIdp::new(|call, _| {
        assert_eq!(call.grant(), Some("client_credentials"));
        if let Some(assertion) = call.field("client_assertion") {
            let payload = assertion.split('.').nth(1).unwrap();
            use base64::Engine as _;
            let claims: serde_json::Value = serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(payload)
                    .unwrap(),
            )
            .unwrap();
            assert_eq!(claims["aud"], token_endpoint("contoso.onmicrosoft.com"));
            assert_eq!(claims["iss"], "app-id");
            assert_eq!(claims["sub"], "app-id");
        } else {
            assert_eq!(call.field("client_secret"), Some("app-secret"));
        }
        assert_eq!(
            call.field("scope"),
            Some("https://outlook.office365.com/.default")
        );
        tokens("app-token", None, 3600)
    });
    let manager = TokenManager::new(idp.clone(), None, settings()).unwrap();
    let mut app = AccountConfig::new("OAuthUser@contoso.onmicrosoft.com");
    app.authority = Some(AUTHORITY.into());
    app.client_id = Some("app-id".into());
    app.flow = Flow::CertificateInline {
        cert_pem: cert_pem.into(),
        key_pem: exoproxy::token::secret::PrivateKeyPem::new(key_pem),
    };
    manager.add_account(app.clone());
    assert_eq!(
        manager.token(&app.upn, &exo()).await.unwrap().expose(),
        "app-token"
    );
    let mut with_secret = app.clone();
    with_secret.upn = "Other@contoso.onmicrosoft.com".into();
    with_secret.flow = Flow::Secret {
        secret: exoproxy::token::secret::ClientSecret::new("app-secret"),
    };
    manager.add_account(with_secret.clone());
    assert_eq!(
        manager
            .token(&with_secret.upn, &exo())
            .await
            .unwrap()
            .expose(),
        "app-token"
    );
    assert!(
        idp.calls()
            .iter()
            .all(|c| c.path == "/contoso.onmicrosoft.com/oauth2/v2.0/token")
    );
}

#[tokio::test]
async fn app_only_bad_secret_is_terminal() {
    let idp = FakeIdp::new(|_, _| {
        error(
            401,
            "invalid_client",
            7_000_215,
            "Invalid client secret provided.",
        )
    });
    let manager = TokenManager::new(idp.clone(), None, settings()).unwrap();
    let mut app = AccountConfig::new("OAuthUser@contoso.onmicrosoft.com");
    app.authority = Some(AUTHORITY.into());
    app.flow = Flow::Secret {
        secret: exoproxy::token::secret::ClientSecret::new("wrong"),
    };
    manager.add_account(app.clone());
    for _ in 0..3 {
        match manager.token(&app.upn, &exo()).await {
            Err(TokenError::SignInRequired { aadsts, .. }) => assert_eq!(aadsts, Some(7_000_215)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(idp.calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn tok14_offline_start_recovers_without_user_action() {
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path(), "rt-0", None);
    let idp = FakeIdp::new(|_, n| {
        if n < 3 {
            Reply {
                transport_error: true,
                ..status(0, None)
            }
        } else {
            tokens(&jwt(UPN, EXO, "online"), Some("rt-1"), 3600)
        }
    });
    let manager = manager(&idp, dir.path());
    let mut token = None;
    for _ in 0..10 {
        match manager.token(UPN, &exo()).await {
            Ok(t) => {
                token = Some(t);
                break;
            }
            Err(TokenError::Unavailable { retry_after, .. }) => {
                tokio::time::sleep(retry_after.unwrap()).await
            }
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(token.unwrap().expose(), jwt(UPN, EXO, "online"));
    assert_eq!(idp.calls().len(), 4);
    assert!(idp.calls().iter().all(|c| c.grant() == Some(REFRESH)));
}

#[tokio::test(start_paused = true)]
async fn short_lived_test_tokens_are_reused_and_renewed_at_half_life() {
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path(), "rt-0", None);
    let idp = FakeIdp::new(|_, n| {
        tokens(
            &jwt(UPN, EXO, &n.to_string()),
            Some(&format!("rt-{}", n + 1)),
            20,
        )
    });
    let manager = manager(&idp, dir.path());
    let t0 = Instant::now();
    let first = manager.token(UPN, &exo()).await.unwrap();
    for _ in 0..5 {
        assert_eq!(manager.token(UPN, &exo()).await.unwrap(), first);
    }

    assert_eq!(
        idp.calls().len(),
        1,
        "a 20 s token is reused, not re-fetched per request"
    );
    tokio::time::sleep(Duration::from_secs(35)).await;
    let times: Vec<u64> = idp.calls().iter().map(|c| (c.at - t0).as_secs()).collect();
    assert_eq!(
        times,
        vec![0, 10, 20, 30],
        "renewed at half of each 20 s lifetime"
    );
    assert_ne!(manager.token(UPN, &exo()).await.unwrap(), first);
}

#[tokio::test(start_paused = true)]
async fn logout_during_a_refresh_does_not_resurrect_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path(), "rt-0", None);
    let idp = FakeIdp::new(|_, _| {
        delayed(
            tokens(&jwt(UPN, EXO, "late"), Some("rt-late"), 3600),
            Duration::from_secs(5),
        )
    });
    let manager = manager(&idp, dir.path());
    let pending = {
        let manager = manager.clone();
        tokio::spawn(async move { manager.token(UPN, &exo()).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    manager.logout(UPN).unwrap();
    assert!(pending.await.unwrap().is_err());
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(
        cached_rt(dir.path()).is_none(),
        "the late answer is not persisted after logout"
    );
    assert!(!manager.accounts()[0].has_refresh_token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load11_single_flight_holds_on_a_multi_threaded_runtime() {
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path(), "rt-0", Some(("expired", 4000, -10)));
    let idp = FakeIdp::new(|_, n| {
        delayed(
            tokens(&jwt(UPN, EXO, &n.to_string()), Some("rt-1"), 3600),
            Duration::from_millis(100),
        )
    });
    let manager = manager(&idp, dir.path());
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let manager = manager.clone();
            tokio::spawn(async move { manager.token(UPN, &exo()).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(idp.grants(REFRESH).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn tok15_accounts_in_different_tenants_never_share_tokens() {
    let dir = tempfile::tempdir().unwrap();
    const OTHER: &str = "Admin@Fabrikam.com";
    let idp = FakeIdp::new(|call, n| {
        // Each tenant's token endpoint only honours its own refresh token.
        let tenant = call
            .path
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap()
            .to_string();
        let rt = call.field("refresh_token").unwrap();
        assert!(rt.starts_with(&tenant), "{rt} presented to {tenant}");
        let upn = if tenant == "contoso.com" { UPN } else { OTHER };
        tokens(
            &jwt(upn, EXO, &n.to_string()),
            Some(&format!("{tenant}-rt-{n}")),
            3600,
        )
    });
    let cache = TokenCache::open(dir.path()).unwrap();
    for (upn, rt) in [(UPN, "contoso.com-rt"), (OTHER, "fabrikam.com-rt")] {
        let account = CachedAccount {
            upn: upn.into(),
            refresh_token: Some(RefreshToken::new(rt)),
            ..CachedAccount::default()
        };
        cache.save(&account).unwrap();
    }
    let manager = manager(&idp, dir.path());
    let mut other = config();
    other.upn = OTHER.into();
    manager.add_account(other);
    let a = manager.token(UPN, &exo()).await.unwrap();
    let b = manager.token(OTHER, &exo()).await.unwrap();
    let user = |t: &AccessToken| {
        exoproxy::token::jwt::Claims::decode(t.expose())
            .unwrap()
            .upn
            .unwrap()
    };
    assert_eq!(user(&a), UPN);
    assert_eq!(user(&b), OTHER);
    assert_ne!(cache.path_for(UPN), cache.path_for(OTHER));
    let accounts = manager.accounts();
    assert_eq!(accounts.len(), 2);
}

/// Issue 10 row 16: an account used once for S&C, then only for Exchange. S&C is renewed in the
/// background while it was asked for within `idle_renewal` (1 h), then no more; its next request renews
/// on demand. Before: renewed every 48 min forever.
#[tokio::test(start_paused = true)]
async fn idle_audience_is_not_renewed_in_the_background_and_renews_on_demand() {
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path(), "rt-0", None);
    let idp = FakeIdp::new(|call, n| {
        let scope = call.field("scope").unwrap_or_default();
        let aud = if scope.starts_with(SCC) { SCC } else { EXO };
        tokens(
            &jwt(UPN, aud, &n.to_string()),
            Some(&format!("rt-{}", n + 1)),
            3600,
        )
    });
    let manager = manager(&idp, dir.path());
    let scc = Audience::new(SCC);
    let t0 = Instant::now();
    let first = manager.token(UPN, &scc).await.unwrap();
    for _ in 0..18 {
        manager.token(UPN, &exo()).await.unwrap();
        tokio::time::sleep(Duration::from_secs(600)).await;
    }
    let scc_calls = |idp: &FakeIdp| -> Vec<u64> {
        idp.calls()
            .iter()
            .filter(|c| c.field("scope").is_some_and(|s| s.starts_with(SCC)))
            .map(|c| (c.at - t0).as_secs())
            .collect()
    };
    // 3600 s tokens renew at 48 min: the renewal at 2880 s is within an hour of the use at 0 s, the
    // next one (5760 s) is not.
    assert_eq!(scc_calls(&idp), vec![0, 2880], "S&C renewals while idle");
    let exo_calls = idp.calls().len() - 2;
    assert!(exo_calls >= 3, "Exchange, in use, keeps being renewed");
    // The expired S&C token is renewed by its next request.
    let renewed = manager.token(UPN, &scc).await.unwrap();
    assert_ne!(renewed, first);
    assert_eq!(scc_calls(&idp), vec![0, 2880, 10_800]);
}

#[tokio::test(start_paused = true)]
async fn sign_out_is_final_until_a_new_sign_in_and_renew_now_renews_at_once() {
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path(), "rt-0", None);
    let idp = FakeIdp::new(|_, n| {
        tokens(
            &jwt(UPN, EXO, &n.to_string()),
            Some(&format!("rt-{}", n + 1)),
            20,
        )
    });
    let manager = manager(&idp, dir.path());
    let first = manager.token(UPN, &exo()).await.unwrap();
    // `renew` renews now, long before the half-life.
    assert_eq!(manager.renew_now(UPN).await.unwrap(), vec![exo()]);
    assert_eq!(idp.grants(REFRESH).len(), 2);
    assert_ne!(manager.token(UPN, &exo()).await.unwrap(), first);

    manager.sign_out(UPN).unwrap();
    assert!(cached_rt(dir.path()).is_none());
    assert_eq!(manager.accounts()[0].status, AccountStatus::SignedOut);
    let err = manager.token(UPN, &exo()).await.unwrap_err();
    assert!(
        matches!(err, TokenError::SignInRequired { .. }),
        "no device code is started: {err}"
    );
    assert!(err.to_string().contains("exoproxy login"), "{err}");
    assert!(matches!(
        manager.renew_now(UPN).await,
        Err(TokenError::SignInRequired { .. })
    ));
    let calls = idp.calls().len();
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(
        idp.calls().len(),
        calls,
        "nothing renews a signed-out account"
    );
    assert!(cached_rt(dir.path()).is_none(), "nothing writes it back");
}

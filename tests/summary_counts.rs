//! The activity summary's counters as the token manager and the request path feed them (issue
//! row 11). The counters are process-wide, so this file holds one test and nothing else runs in
//! its process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod token_support;

use std::sync::Arc;
use std::time::Duration;

use exoproxy::summary::{self, Counts};
use exoproxy::token::cache::{CachedAccount, TokenCache};
use exoproxy::token::schedule::Jitter;
use exoproxy::token::secret::RefreshToken;
use exoproxy::token::{AccountConfig, Audience, ManagerSettings, TokenManager};
use token_support::*;

fn manager(idp: &Arc<FakeIdp>) -> (TokenManager, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let account = CachedAccount {
        upn: UPN.into(),
        refresh_token: Some(RefreshToken::new("rt-0")),
        ..CachedAccount::default()
    };
    TokenCache::open(dir.path())
        .unwrap()
        .save(&account)
        .unwrap();
    let settings = ManagerSettings {
        jitter: Jitter::None,
        open_browser: false,
        ..ManagerSettings::default()
    };
    let manager = TokenManager::new(idp.clone(), Some(dir.path()), settings).unwrap();
    let mut config = AccountConfig::new(UPN);
    config.authority = Some(AUTHORITY.into());
    manager.add_account(config);
    (manager, dir)
}

#[tokio::test(start_paused = true)]
async fn token_calls_and_requests_are_counted_for_the_summary() {
    let _ = Counts::take();
    let good = FakeIdp::new(|_, _| tokens(&jwt(UPN, EXO, "fresh"), Some("rt-1"), 3600));
    let (good, _dir) = manager(&good);
    good.token(UPN, &Audience::new(EXO)).await.unwrap();
    let down = FakeIdp::new(|_, _| delayed(status(503, None), Duration::from_millis(10)));
    let (down, _dir2) = manager(&down);
    assert!(down.token(UPN, &Audience::new(EXO)).await.is_err());
    summary::request(200);
    summary::request(502);
    summary::request(403);

    let counts = Counts::take();
    assert_eq!(counts.token_refreshes, 1, "{counts}");
    assert!(counts.token_refresh_failures >= 1, "{counts}");
    assert_eq!((counts.requests, counts.errors), (3, 2), "{counts}");
    assert_eq!(Counts::take(), Counts::default(), "taking resets");
}

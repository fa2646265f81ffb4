//! FLT-19: a writer killed (SIGKILL) in the middle of cache writes never leaves a partial cache; TOK-4:
//! its lock file is taken over by the next writer. The writer is this test binary re-run as a child.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use exoproxy::token::Audience;
use exoproxy::token::cache::{CachedAccount, Load, StoredAccessToken, TokenCache};
use exoproxy::token::secret::{AccessToken, RefreshToken};

const UPN: &str = "admin@contoso.com";
const CHILD_ENV: &str = "EXOPROXY_FLT19_STATE_DIR";

fn account(n: u64) -> CachedAccount {
    CachedAccount {
        upn: UPN.into(),
        refresh_token: Some(RefreshToken::new(format!("rt-{n}"))),
        access_tokens: vec![StoredAccessToken {
            audience: Audience::new("https://outlook.office365.com"),
            // A realistic ~100 KiB token set makes each write long enough to be interrupted.
            token: AccessToken::new(format!("at-{n}-{}", "x".repeat(100 * 1024))),
            issued_at: 0,
            expires_at: 1,
        }],
        ..CachedAccount::default()
    }
}

/// Child mode: write the cache in a tight loop until killed.
#[test]
#[ignore = "run only as the child of flt19_kill_during_write_never_leaves_a_partial_cache"]
fn flt19_writer_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let cache = TokenCache::open(Path::new(&dir)).unwrap();
    for n in 0.. {
        cache.save(&account(n)).unwrap();
    }
}

#[test]
fn flt19_kill_during_write_never_leaves_a_partial_cache() {
    let iterations: u64 = std::env::var("EXOPROXY_FLT19_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let state = tempfile::tempdir().unwrap();
    let cache = TokenCache::open(state.path()).unwrap();
    cache.save(&account(0)).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut child_writes_seen = 0;
    for i in 0..iterations {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "flt19_writer_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, state.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(5 + (i * 7) % 40));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        match TokenCache::open(state.path()).unwrap().load(UPN) {
            Load::Loaded(account) => {
                let rt = account.refresh_token.unwrap();
                let n: u64 = rt.expose().strip_prefix("rt-").unwrap().parse().unwrap();
                if n < 1_000_000 && i > 0 {
                    child_writes_seen += 1;
                }
                assert!(
                    account.access_tokens[0].token.expose().len() > 100 * 1024,
                    "iteration {i}"
                );
            }
            other => panic!("iteration {i}: partial or missing cache: {other:?}"),
        }
        // The killed writer's lock (dead pid) must not block the next writer (TOK-4).
        let started = Instant::now();
        cache.save(&account(1_000_000 + i)).unwrap();
        assert!(started.elapsed() < Duration::from_secs(5), "iteration {i}");
    }
    assert!(
        child_writes_seen > iterations / 4,
        "the child really wrote: {child_writes_seen}/{iterations}"
    );
}

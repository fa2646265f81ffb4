//! Property tests of the token-cache reader (docs/TESTING.md#fuzz-3), through its public entry
//! point: a file in `<state dir>/tokens/` read by [`TokenCache::load`], as the proxy does at start.
//!
//! - Arbitrary bytes, JSON-shaped files with arbitrary fields, and a valid cache with one byte
//!   changed, inserted or removed never panic the reader. A file it refuses is quarantined whole
//!   (moved aside byte for byte: nothing lost) with a reason that says how to recover
//!   (`exoproxy login`), and the account then reads as missing.
//! - Whatever it accepts belongs to the account asked for and round-trips: saved and read again,
//!   it is the same account (tokens compared in clear, timestamps, marks).
//!
//! 256 cases per property; `PROPTEST_CASES` for more.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use exoproxy::token::Audience;
use exoproxy::token::cache::{
    CachedAccount, Load, RefreshRecord, SignInMark, StoredAccessToken, TokenCache,
};
use exoproxy::token::secret::{AccessToken, RefreshToken};
use proptest::prelude::*;

const UPN: &str = "Admin@Contoso.com";

/// What an account holds, secrets in clear, for comparisons.
type View = (
    String,
    Option<String>,
    Vec<(String, String, i64, i64)>,
    Option<SignInMark>,
    Option<RefreshRecord>,
);

fn view(account: &CachedAccount) -> View {
    (
        account.upn.clone(),
        account
            .refresh_token
            .as_ref()
            .map(|t| t.expose().to_string()),
        account
            .access_tokens
            .iter()
            .map(|t| {
                let audience = t.audience.as_str().to_string();
                (
                    audience,
                    t.token.expose().to_string(),
                    t.issued_at,
                    t.expires_at,
                )
            })
            .collect(),
        account.sign_in_required.clone(),
        account.last_refresh.clone(),
    )
}

/// Writes `bytes` as the account's file and reads it; checks the reader's promises either way and
/// returns the account when it was accepted.
fn load_bytes(bytes: &[u8]) -> Option<CachedAccount> {
    let state = tempfile::tempdir().unwrap();
    let cache = TokenCache::open(state.path()).unwrap();
    load_in(&cache, bytes)
}

fn load_in(cache: &TokenCache, bytes: &[u8]) -> Option<CachedAccount> {
    std::fs::write(cache.path_for(UPN), bytes).unwrap();
    match cache.load(UPN) {
        Load::Loaded(account) => {
            assert!(account.upn.eq_ignore_ascii_case(UPN), "{}", account.upn);
            round_trips(cache, &account);
            Some(*account)
        }
        Load::Quarantined { moved_to, reason } => {
            let moved = moved_to.expect("a refused file is moved aside");
            assert_eq!(
                std::fs::read(&moved).unwrap(),
                bytes,
                "quarantine lost bytes"
            );
            assert!(reason.contains("exoproxy login"), "{reason}");
            assert!(matches!(cache.load(UPN), Load::Missing));
            None
        }
        Load::Missing => panic!("a file that exists read as missing"),
    }
}

/// Saved and read again, an accepted account is the same.
fn round_trips(cache: &TokenCache, account: &CachedAccount) {
    cache.save(account).unwrap();
    match cache.load(UPN) {
        Load::Loaded(again) => assert_eq!(view(&again), view(account)),
        other => panic!("a saved account did not load: {other:?}"),
    }
}

fn sample() -> CachedAccount {
    CachedAccount {
        upn: UPN.into(),
        refresh_token: Some(RefreshToken::new("rt-1")),
        access_tokens: vec![StoredAccessToken {
            audience: Audience::new("https://outlook.office365.com"),
            token: AccessToken::new("at-1"),
            issued_at: 1000,
            expires_at: 4600,
        }],
        sign_in_required: Some(SignInMark {
            aadsts: Some(70008),
            detail: "expired".into(),
        }),
        last_refresh: Some(RefreshRecord {
            at: 1000,
            ok: true,
            detail: String::new(),
        }),
    }
}

/// A text that is sometimes JSON-significant.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-zA-Z0-9@._/:-]{0,24}",
        any::<String>(),
        Just(UPN.to_string()),
        Just(UPN.to_ascii_lowercase()),
    ]
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{Value, json};
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u32>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop::collection::vec(inner, 0..4).prop_map(Value::from)
    })
}

/// A file with the cache's fields (each present or not, of the right type or not).
fn cache_shaped() -> impl Strategy<Value = Vec<u8>> {
    let record = (text(), text(), any::<i64>(), any::<i64>()).prop_map(|(a, t, i, e)| {
        serde_json::json!({"audience": a, "token": t, "issued_at": i, "expires_at": e})
    });
    (
        prop_oneof![Just(1u32), Just(2u32), any::<u32>()],
        text(),
        prop::option::of(text()),
        prop::collection::vec(record, 0..3),
        prop::option::of((prop::option::of(any::<u32>()), text())),
        prop::option::of((any::<i64>(), any::<bool>(), text())),
        prop::collection::vec((text(), json_value()), 0..2),
    )
        .prop_map(|(version, upn, refresh, tokens, mark, last, extra)| {
            let mut file = serde_json::json!({
                "version": version,
                "upn": upn,
                "refresh_token": refresh,
                "access_tokens": tokens,
                "sign_in_required": mark.map(|(aadsts, detail)| serde_json::json!({"aadsts": aadsts, "detail": detail})),
                "last_refresh": last.map(|(at, ok, detail)| serde_json::json!({"at": at, "ok": ok, "detail": detail})),
            });
            for (key, value) in extra {
                file[key] = value;
            }
            serde_json::to_vec_pretty(&file).unwrap()
        })
}

/// One byte of `bytes` changed, inserted or removed.
fn edit(bytes: &[u8], at: usize, kind: u8, byte: u8) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let at = at % (out.len() + 1);
    match kind % 3 {
        0 if at < out.len() => out[at] = byte,
        1 => out.insert(at, byte),
        _ if at < out.len() => {
            out.remove(at);
        }
        _ => out.push(byte),
    }
    out
}

proptest! {
    #[test]
    fn fuzz3_arbitrary_bytes_never_panic_the_token_cache_reader(
        bytes in prop::collection::vec(any::<u8>(), 0..2048)
    ) {
        load_bytes(&bytes);
    }

    #[test]
    fn fuzz3_cache_shaped_files_never_panic_and_round_trip_when_accepted(bytes in cache_shaped()) {
        load_bytes(&bytes);
    }

    #[test]
    fn fuzz3_saved_cache_with_one_byte_changed_never_panics(
        at in any::<usize>(), kind in any::<u8>(), byte in any::<u8>()
    ) {
        let state = tempfile::tempdir().unwrap();
        let cache = TokenCache::open(state.path()).unwrap();
        cache.save(&sample()).unwrap();
        let saved = std::fs::read(cache.path_for(UPN)).unwrap();
        load_in(&cache, &edit(&saved, at, kind, byte));
    }
}

/// The plain-text version 1 of the cache, written with every field, is accepted (so the
/// generator above reaches the accepting path) and reads back as written.
#[test]
fn fuzz3_a_version_1_file_is_accepted_as_written() {
    let file = serde_json::json!({
        "version": 1,
        "upn": UPN,
        "refresh_token": "rt-1",
        "access_tokens": [{"audience": "https://outlook.office365.com", "token": "at-1",
            "issued_at": 1000, "expires_at": 4600}],
        "sign_in_required": {"aadsts": 70008, "detail": "expired"},
        "last_refresh": {"at": 1000, "ok": true, "detail": ""},
    });
    let account = load_bytes(&serde_json::to_vec(&file).unwrap()).expect("accepted");
    assert_eq!(view(&account), view(&sample()));
}

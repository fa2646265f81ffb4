use std::os::unix::fs::PermissionsExt as _;

use super::*;
use crate::platform::test_support::FakeDpapi;

const UPN: &str = "Admin@Contoso.com";

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
        sign_in_required: None,
        last_refresh: Some(RefreshRecord {
            at: 1000,
            ok: true,
            detail: String::new(),
        }),
    }
}

fn loaded(load: Load) -> CachedAccount {
    match load {
        Load::Loaded(account) => *account,
        other => panic!("expected a loaded cache, got {other:?}"),
    }
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn quarantined_files(cache: &TokenCache) -> Vec<String> {
    fs::read_dir(cache.dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".corrupt."))
        .collect()
}

#[test]
fn round_trip_is_owner_only() {
    let state = tempfile::tempdir().unwrap();
    let cache = TokenCache::open(state.path()).unwrap();
    assert_eq!(mode(cache.dir()), 0o700);
    assert!(matches!(cache.load(UPN), Load::Missing));
    cache.save(&sample()).unwrap();
    let path = cache.path_for(UPN);
    assert_eq!(path.file_name().unwrap(), "admin@contoso.com.json");
    assert_eq!(mode(&path), 0o600);
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"version\": 2"), "{text}");
    let account = loaded(cache.load("admin@contoso.com"));
    assert_eq!(account.refresh_token.unwrap().expose(), "rt-1");
    assert_eq!(account.access_tokens[0].token.expose(), "at-1");
    assert_eq!(account.access_tokens[0].expires_at, 4600);
    assert_eq!(cache.list(), vec![UPN.to_string()]);
    assert!(
        !fs::read_dir(cache.dir())
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().contains(".lock"))
    );
}

#[test]
fn tok1_corrupt_files_are_quarantined_never_crash() {
    let big = vec![b' '; 10 * 1024 * 1024];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("zero bytes", Vec::new()),
        ("truncated", br#"{"version":1,"upn":"Admin@Contoso.com","refresh_tok"#.to_vec()),
        ("random bytes", (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect()),
        ("wrong schema", br#"{"tokens":["x"]}"#.to_vec()),
        ("wrong version", br#"{"version":3,"upn":"Admin@Contoso.com","refresh_token":null,"sign_in_required":null,"last_refresh":null}"#.to_vec()),
        ("another account", br#"{"version":1,"upn":"eve@evil.example","refresh_token":"x","sign_in_required":null,"last_refresh":null}"#.to_vec()),
        ("10 MiB", big),
    ];
    for (what, bytes) in cases {
        let state = tempfile::tempdir().unwrap();
        let cache = TokenCache::open(state.path()).unwrap();
        fs::write(cache.path_for(UPN), &bytes).unwrap();
        match cache.load(UPN) {
            Load::Quarantined {
                moved_to: Some(moved),
                ..
            } => {
                assert!(moved.exists(), "{what}");
                assert!(!cache.path_for(UPN).exists(), "{what}");
            }
            other => panic!("{what}: expected quarantine, got {other:?}"),
        }
        assert_eq!(quarantined_files(&cache).len(), 1, "{what}");
        // After quarantine the account simply has no cache: a new sign-in can save again.
        assert!(matches!(cache.load(UPN), Load::Missing), "{what}");
        cache.save(&sample()).unwrap();
        loaded(cache.load(UPN));
    }
}

#[test]
fn tok1_symlinks_are_never_followed() {
    let state = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let cache = TokenCache::open(state.path()).unwrap();
    let victim = outside.path().join("other-users-file.json");
    let mut other = sample();
    other.upn = UPN.into();
    let key = seal::read_or_create_key(cache.dir(), &OsProtector::new(TOKEN_CACHE_KEY)).unwrap();
    let other_bytes = encode(&other, &key).unwrap();
    fs::write(&victim, other_bytes.as_slice()).unwrap();
    for target in [victim.as_path(), Path::new("/dev/zero")] {
        std::os::unix::fs::symlink(target, cache.path_for(UPN)).unwrap();
        assert!(
            matches!(cache.load(UPN), Load::Quarantined { .. }),
            "{target:?}"
        );
        assert!(fs::symlink_metadata(cache.path_for(UPN)).is_err());
        for name in quarantined_files(&cache) {
            let path = cache.dir().join(name);
            assert!(
                fs::symlink_metadata(&path)
                    .unwrap()
                    .file_type()
                    .is_symlink()
            );
            fs::remove_file(path).unwrap();
        }
    }
    // The file outside the directory is untouched.
    assert_eq!(fs::read(&victim).unwrap(), other_bytes.as_slice());
    // A directory where the file should be is also quarantined.
    fs::create_dir(cache.path_for(UPN)).unwrap();
    assert!(matches!(cache.load(UPN), Load::Quarantined { .. }));
}

#[test]
fn tok3_loose_permissions_are_fixed_to_0600() {
    let state = tempfile::tempdir().unwrap();
    let cache = TokenCache::open(state.path()).unwrap();
    cache.save(&sample()).unwrap();
    let path = cache.path_for(UPN);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(cache.dir(), fs::Permissions::from_mode(0o755)).unwrap();
    let cache = TokenCache::open(state.path()).unwrap();
    assert_eq!(mode(cache.dir()), 0o700);
    loaded(cache.load(UPN));
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn tok4_stale_lock_of_a_dead_process_is_taken_over() {
    let state = tempfile::tempdir().unwrap();
    let cache = TokenCache::open(state.path()).unwrap();
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    child.wait().unwrap();
    let lock = cache.path_for(UPN).with_extension("lock");
    fs::write(&lock, dead_pid.to_string()).unwrap();
    let started = std::time::Instant::now();
    cache.save(&sample()).unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!lock.exists());
    loaded(cache.load(UPN));
}

#[test]
fn tok4_lock_of_a_live_process_is_taken_over_after_5s() {
    let state = tempfile::tempdir().unwrap();
    let cache = TokenCache::open(state.path()).unwrap();
    let lock = cache.path_for(UPN).with_extension("lock");
    // pid 1 is alive; make the lock look 10 s old instead of waiting.
    fs::write(&lock, "1").unwrap();
    let old = SystemTime::now() - Duration::from_secs(10);
    File::options()
        .write(true)
        .open(&lock)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let started = std::time::Instant::now();
    cache.save(&sample()).unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[test]
fn flt18_tok6_failed_write_keeps_the_old_file() {
    let state = tempfile::tempdir().unwrap();
    let cache = TokenCache::open(state.path()).unwrap();
    cache.save(&sample()).unwrap();
    let before = fs::read(cache.path_for(UPN)).unwrap();
    let mut newer = sample();
    newer.refresh_token = Some(RefreshToken::new("rt-2"));
    cache.fail_next_write();
    assert!(cache.save(&newer).is_err());
    assert_eq!(fs::read(cache.path_for(UPN)).unwrap(), before);
    // No temp file is left behind (only the file and the key), and the next write works.
    assert_eq!(fs::read_dir(cache.dir()).unwrap().count(), 2);
    cache.save(&newer).unwrap();
    assert_eq!(
        loaded(cache.load(UPN)).refresh_token.unwrap().expose(),
        "rt-2"
    );
}

#[test]
fn flt19_leftover_temp_files_are_ignored() {
    let state = tempfile::tempdir().unwrap();
    let cache = TokenCache::open(state.path()).unwrap();
    cache.save(&sample()).unwrap();
    // A writer killed mid-write leaves a partial temp file; loads never see it.
    fs::write(
        cache.dir().join(".admin@contoso.com.json.tmp.999.1"),
        b"{\"version\":1,",
    )
    .unwrap();
    assert_eq!(
        loaded(cache.load(UPN)).refresh_token.unwrap().expose(),
        "rt-1"
    );
    assert_eq!(cache.list(), vec![UPN.to_string()]);
    // Orphans of dead writers are deleted at the next start: they may contain a refresh token.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let orphan = cache
        .dir()
        .join(format!(".admin@contoso.com.json.tmp.{dead}.1"));
    fs::rename(
        cache.dir().join(".admin@contoso.com.json.tmp.999.1"),
        &orphan,
    )
    .unwrap();
    let reopened = TokenCache::open(state.path()).unwrap();
    assert!(!orphan.exists());
    assert_eq!(
        loaded(reopened.load(UPN)).refresh_token.unwrap().expose(),
        "rt-1"
    );
}

#[test]
fn tok9_logout_removes_the_file() {
    let state = tempfile::tempdir().unwrap();
    let cache = TokenCache::open(state.path()).unwrap();
    cache.save(&sample()).unwrap();
    cache.remove(UPN).unwrap();
    assert!(matches!(cache.load(UPN), Load::Missing));
    cache.remove(UPN).unwrap();
}

#[test]
fn file_stems_are_safe_and_distinct() {
    assert_eq!(file_stem("Admin@Contoso.com"), "admin@contoso.com");
    let odd = file_stem("../../etc/passwd");
    assert!(!odd.contains('/') && !odd.starts_with('.'), "{odd}");
    assert_ne!(file_stem("a+b@x.com"), file_stem("a/b@x.com"));
    assert_ne!(file_stem("a+b@x.com"), "a_b@x.com");
}

// === sealing (SEC-19) ===

const CANARY: &str = "CANARY-sec19-unit-7f3a";

fn canary_account() -> CachedAccount {
    let mut account = sample();
    account.refresh_token = Some(RefreshToken::new(format!("1.exosim.abc.{CANARY}")));
    account.access_tokens[0].token = AccessToken::new(format!("eyJ.{CANARY}.sig"));
    account
}

fn quarantine_reason(load: Load) -> String {
    match load {
        Load::Quarantined {
            moved_to: Some(moved),
            reason,
        } => {
            assert!(moved.exists());
            reason
        }
        other => panic!("expected quarantine, got {other:?}"),
    }
}

fn write_v1(cache: &TokenCache, upn: &str, refresh: &str, access: &str) {
    let v1 = serde_json::json!({
        "version": 1, "upn": upn, "refresh_token": refresh,
        "access_tokens": [{"audience": "https://outlook.office365.com", "token": access,
            "issued_at": 1000, "expires_at": 4600}],
        "sign_in_required": null, "last_refresh": null,
    });
    fs::write(cache.path_for(upn), serde_json::to_vec(&v1).unwrap()).unwrap();
}

#[test]
fn sec19_sealed_round_trip_never_writes_a_token_in_clear() {
    let state = tempfile::tempdir().unwrap();
    let cache = TokenCache::open(state.path()).unwrap();
    cache.save(&canary_account()).unwrap();
    let first = fs::read(cache.path_for(UPN)).unwrap();
    for needle in [CANARY, "1.exosim.abc", "eyJ."] {
        assert!(
            !first.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{needle} in {}",
            String::from_utf8_lossy(&first)
        );
    }
    let account = loaded(cache.load(UPN));
    let rt = account.refresh_token.unwrap();
    assert_eq!(rt.expose(), format!("1.exosim.abc.{CANARY}"));
    assert_eq!(
        account.access_tokens[0].token.expose(),
        format!("eyJ.{CANARY}.sig")
    );
    assert_eq!(account.access_tokens[0].expires_at, 4600);
    // A fresh nonce per seal: the same account saved twice gives different bytes.
    cache.save(&canary_account()).unwrap();
    assert_ne!(fs::read(cache.path_for(UPN)).unwrap(), first);
    // No key material or token in any file but the key file.
    for entry in fs::read_dir(cache.dir()).unwrap().flatten() {
        let bytes = fs::read(entry.path()).unwrap();
        assert!(!bytes.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()));
    }
}

#[test]
fn sec19_key_file_is_owner_only_32_bytes_and_reused() {
    let state = tempfile::tempdir().unwrap();
    let cache = TokenCache::open(state.path()).unwrap();
    let key_file = cache.dir().join(seal::KEY_FILE);
    assert!(!key_file.exists(), "created before the first save");
    cache.save(&sample()).unwrap();
    assert_eq!(mode(&key_file), 0o600);
    let key = fs::read(&key_file).unwrap();
    assert_eq!(key.len(), 32);
    cache.save(&sample()).unwrap();
    TokenCache::open(state.path())
        .unwrap()
        .save(&sample())
        .unwrap();
    assert_eq!(fs::read(&key_file).unwrap(), key, "the key was replaced");
    assert_eq!(cache.list(), vec![UPN.to_string()], "the key is no account");
    let debug = format!(
        "{:?}",
        seal::read_key(cache.dir(), &OsProtector::new(TOKEN_CACHE_KEY)).ok()
    );
    assert_eq!(debug, "Some(SealKey([redacted]))");
}

#[test]
fn sec19_concurrent_first_saves_agree_on_one_key() {
    let state = tempfile::tempdir().unwrap();
    let upns: Vec<String> = (0..8).map(|i| format!("user{i}@contoso.com")).collect();
    std::thread::scope(|scope| {
        for upn in &upns {
            let dir = state.path();
            scope.spawn(move || {
                let mut account = sample();
                account.upn = upn.clone();
                TokenCache::open(dir).unwrap().save(&account).unwrap();
            });
        }
    });
    let cache = TokenCache::open(state.path()).unwrap();
    for upn in &upns {
        let account = loaded(cache.load(upn));
        assert_eq!(account.refresh_token.unwrap().expose(), "rt-1", "{upn}");
    }
    let leftovers: Vec<_> = fs::read_dir(cache.dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn sec19_rel6_version_1_loads_and_is_rewritten_sealed() {
    let state = tempfile::tempdir().unwrap();
    let cache = TokenCache::open(state.path()).unwrap();
    write_v1(&cache, UPN, "rt-plain-v1", "at-plain-v1");
    let account = loaded(cache.load(UPN));
    assert_eq!(
        account.refresh_token.as_ref().unwrap().expose(),
        "rt-plain-v1"
    );
    assert_eq!(account.access_tokens[0].token.expose(), "at-plain-v1");
    assert!(
        !cache.dir().join(seal::KEY_FILE).exists(),
        "a load made a key"
    );
    cache.save(&account).unwrap();
    let text = fs::read_to_string(cache.path_for(UPN)).unwrap();
    assert!(text.contains("\"version\": 2"), "{text}");
    assert!(!text.contains("plain-v1"), "{text}");
    let again = loaded(cache.load(UPN));
    assert_eq!(again.refresh_token.unwrap().expose(), "rt-plain-v1");
}

#[test]
fn sec19_tampered_seal_is_quarantined_with_a_sign_in_hint() {
    let state = tempfile::tempdir().unwrap();
    let cache = TokenCache::open(state.path()).unwrap();
    cache.save(&sample()).unwrap();
    let path = cache.path_for(UPN);
    let mut json: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let sealed = json["refresh_token"].as_str().unwrap().to_string();
    // Flip one character in the middle of the ciphertext.
    let mut chars: Vec<char> = sealed.chars().collect();
    let mid = chars.len() / 2;
    chars[mid] = if chars[mid] == 'A' { 'B' } else { 'A' };
    json["refresh_token"] = chars.into_iter().collect::<String>().into();
    fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    let reason = quarantine_reason(cache.load(UPN));
    assert!(reason.contains("does not open"), "{reason}");
    assert!(
        reason.contains("exoproxy login Admin@Contoso.com"),
        "{reason}"
    );
    assert!(!path.exists());
    assert_eq!(quarantined_files(&cache).len(), 1);
}

#[test]
fn sec19_file_copied_onto_another_account_is_quarantined() {
    let state = tempfile::tempdir().unwrap();
    let cache = TokenCache::open(state.path()).unwrap();
    cache.save(&sample()).unwrap();
    let other = "eve@contoso.com";
    let mut json: serde_json::Value =
        serde_json::from_slice(&fs::read(cache.path_for(UPN)).unwrap()).unwrap();
    json["upn"] = other.into();
    fs::write(cache.path_for(other), serde_json::to_vec(&json).unwrap()).unwrap();
    let reason = quarantine_reason(cache.load(other));
    assert!(reason.contains("does not open"), "{reason}");
    loaded(cache.load(UPN));
}

#[test]
fn sec19_wrong_or_missing_key_is_quarantined() {
    for case in ["wrong key", "missing key"] {
        let state = tempfile::tempdir().unwrap();
        let cache = TokenCache::open(state.path()).unwrap();
        cache.save(&sample()).unwrap();
        let key_file = cache.dir().join(seal::KEY_FILE);
        if case == "wrong key" {
            fs::write(&key_file, [7u8; 32]).unwrap();
        } else {
            fs::remove_file(&key_file).unwrap();
        }
        let reason = quarantine_reason(cache.load(UPN));
        let expected = if case == "wrong key" {
            "does not open"
        } else {
            "is missing"
        };
        assert!(reason.contains(expected), "{case}: {reason}");
        assert!(reason.contains("exoproxy login"), "{case}: {reason}");
        // Signing in again works: the save makes (or reuses) a key and the new file opens.
        cache.save(&sample()).unwrap();
        loaded(cache.load(UPN));
    }
}

#[test]
fn sec19_unusable_key_file_is_replaced_on_save() {
    let state = tempfile::tempdir().unwrap();
    let cache = TokenCache::open(state.path()).unwrap();
    cache.save(&sample()).unwrap();
    let key_file = cache.dir().join(seal::KEY_FILE);
    fs::write(&key_file, b"short").unwrap();
    // Reading under an unusable key quarantines; the next save replaces the key.
    let reason = quarantine_reason(cache.load(UPN));
    assert!(reason.contains("unusable"), "{reason}");
    cache.save(&sample()).unwrap();
    assert_eq!(fs::read(&key_file).unwrap().len(), 32);
    loaded(cache.load(UPN));
}

#[test]
fn sec19_unsealed_file_without_tokens_needs_no_key() {
    let state = tempfile::tempdir().unwrap();
    let cache = TokenCache::open(state.path()).unwrap();
    let mark = CachedAccount {
        upn: UPN.into(),
        sign_in_required: Some(SignInMark {
            aadsts: Some(700_082),
            detail: "expired".into(),
        }),
        ..CachedAccount::default()
    };
    cache.save(&mark).unwrap();
    fs::remove_file(cache.dir().join(seal::KEY_FILE)).unwrap();
    let account = loaded(cache.load(UPN));
    assert_eq!(account.sign_in_required, mark.sign_in_required);
}

// --- the key protector seam (DPAPI on Windows), exercised with a stand-in ---

fn protected_cache(state: &Path, user: u8) -> TokenCache {
    TokenCache::open(state)
        .unwrap()
        .with_protector(Box::new(FakeDpapi { user }))
}

#[test]
fn tok5_key_file_holds_the_protected_key_and_round_trips() {
    let state = tempfile::tempdir().unwrap();
    let cache = protected_cache(state.path(), 1);
    cache.save(&sample()).unwrap();
    let stored = fs::read(cache.dir().join(seal::KEY_FILE)).unwrap();
    assert_ne!(stored.len(), 32, "the raw key is not what is stored");
    assert!(stored.starts_with(b"FAKEDPAPI:"));
    assert_eq!(mode(&cache.dir().join(seal::KEY_FILE)), 0o600);
    // Another handle (a restart) unprotects the key and opens the sealed tokens.
    let reopened = protected_cache(state.path(), 1);
    let account = loaded(reopened.load(UPN));
    assert_eq!(account.refresh_token.unwrap().expose(), "rt-1");
    // A second save reuses the key: the stored blob is unchanged.
    reopened.save(&sample()).unwrap();
    assert_eq!(fs::read(cache.dir().join(seal::KEY_FILE)).unwrap(), stored);
}

#[test]
fn tok2_tok5_key_file_of_another_user_is_an_unusable_key() {
    let state = tempfile::tempdir().unwrap();
    protected_cache(state.path(), 1).save(&sample()).unwrap();
    // The same profile read as another user (or a copied profile): the key does not unprotect.
    let other = protected_cache(state.path(), 2);
    let reason = quarantine_reason(other.load(UPN));
    assert!(reason.contains("unusable"), "{reason}");
    assert!(reason.contains("another user"), "{reason}");
    assert!(reason.contains("exoproxy login"), "{reason}");
    // Signing in again sets the old key aside and creates one this user can unprotect.
    other.save(&sample()).unwrap();
    loaded(other.load(UPN));
    let names: Vec<String> = fs::read_dir(other.dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n.starts_with(&format!("{}.corrupt.", seal::KEY_FILE))),
        "{names:?}"
    );
}

#[test]
fn tok5_raw_key_from_before_protection_is_an_unusable_key() {
    let state = tempfile::tempdir().unwrap();
    // Written by the platform protector of Unix (the raw 32 bytes), then read under DPAPI.
    TokenCache::open(state.path())
        .unwrap()
        .save(&sample())
        .unwrap();
    let protected = protected_cache(state.path(), 1);
    let reason = quarantine_reason(protected.load(UPN));
    assert!(reason.contains("not a protected blob"), "{reason}");
    protected.save(&sample()).unwrap();
    loaded(protected.load(UPN));
}

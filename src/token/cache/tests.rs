use std::os::unix::fs::PermissionsExt as _;

use super::*;

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
    assert!(text.contains("\"version\": 1"), "{text}");
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
        ("wrong version", br#"{"version":2,"upn":"Admin@Contoso.com","refresh_token":null,"sign_in_required":null,"last_refresh":null}"#.to_vec()),
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
    fs::write(&victim, encode(&other).as_slice()).unwrap();
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
    assert_eq!(fs::read(&victim).unwrap(), encode(&other).as_slice());
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
fn flt18_failed_write_keeps_the_old_file() {
    let state = tempfile::tempdir().unwrap();
    let cache = TokenCache::open(state.path()).unwrap();
    cache.save(&sample()).unwrap();
    let before = fs::read(cache.path_for(UPN)).unwrap();
    let mut newer = sample();
    newer.refresh_token = Some(RefreshToken::new("rt-2"));
    cache.fail_next_write();
    assert!(cache.save(&newer).is_err());
    assert_eq!(fs::read(cache.path_for(UPN)).unwrap(), before);
    // No temp file is left behind, and the next write works.
    assert_eq!(fs::read_dir(cache.dir()).unwrap().count(), 1);
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
fn logout_removes_the_file() {
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

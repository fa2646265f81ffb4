//! The on-disk token cache: one JSON file per user in `<state dir>/tokens/`.
//!
//! Contract:
//! - Files are `tokens/<sanitised upn>.json`, mode 0600 in a 0700 directory (TOK-5). A file or directory
//!   found with group/other bits is fixed to owner-only with a warning, then loaded (TOK-3: we chose "fix").
//!   On Windows the `tokens/` folder gets a protected owner-only DACL (the user and SYSTEM, full control,
//!   inherited by its files, nothing inherited from the parent) when the cache is opened; if that fails
//!   it keeps the profile's inherited ACL and a warning says so. No OS keyring.
//! - Schema version 2 (SEC-19): the refresh token and the access tokens are sealed with ChaCha20-Poly1305
//!   under a per-install 32-byte key in `tokens/.cache-key` (0600, created atomically on the first save,
//!   never logged; on Windows the file holds the key's DPAPI blob for the current user), a random nonce
//!   per value and the account's UPN as associated data (see the `seal` module). Everything else (UPN,
//!   audiences, expiry times, sign-in mark) stays readable for support. This protects against casual
//!   disclosure (backups, `grep`, a file pasted into a ticket), not against code running as the same
//!   user, which can read the key file too. Version-1 files (plain-text tokens) still load and are
//!   rewritten as version 2 on the next save.
//! - The directory and the writes go through the platform's secret-file layer (`platform::private_dir`,
//!   `platform::write_private_atomic`): a symlinked `tokens/` is refused; writes are atomic (temp file
//!   in the same directory, fsync, rename, fsync of the directory; TOK-6, FLT-19). A failed write leaves
//!   the previous file intact and returns an error (FLT-18). Temp files of dead writers are deleted when
//!   the cache is opened: they may hold a refresh token.
//! - Anything unreadable (truncated, empty, random bytes, wrong schema or version, another user's file,
//!   larger than 1 MiB, a symlink or non-regular file, a sealed value that does not open because it was
//!   tampered with, the key is another install's, the key file is missing or (Windows) does not unprotect
//!   for this user) is renamed to `<name>.corrupt.<unix ts>` and reported as [`Load::Quarantined`] with
//!   a reason that says to sign in again with `exoproxy login <upn>`; it never panics and never follows
//!   a symlink (TOK-1).
//! - Writers take `<name>.lock` holding their pid; a lock whose pid is dead, or older than 5 s, is taken
//!   over (TOK-4). Inside one process a mutex serialises writers.

// The tests check POSIX modes and symlinks; Windows ACLs and DPAPI are not covered here (the key
// protector seam is, with a stand-in).
#[cfg(test)]
#[cfg(unix)]
mod tests;

mod seal;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::platform::{KeyProtector, OsProtector, TOKEN_CACHE_KEY};
use crate::token::account::{Audience, normalize_upn};
use crate::token::secret::{AccessToken, RefreshToken};

/// Schema version written into every file (2: tokens sealed).
pub const CACHE_VERSION: u32 = 2;
/// The older schema with plain-text tokens: still read, rewritten as [`CACHE_VERSION`] on the next save.
pub const PLAINTEXT_CACHE_VERSION: u32 = 1;
/// Larger files are not read (a token cache is a few KiB).
pub const MAX_CACHE_FILE: u64 = 1024 * 1024;
/// A lock older than this is considered abandoned even if its pid looks alive.
pub const STALE_LOCK_AGE: Duration = Duration::from_secs(5);

/// Handle on the `tokens/` directory.
#[derive(Debug)]
pub struct TokenCache {
    dir: PathBuf,
    /// Serialises writers inside this process; the lock file covers other processes.
    write_lock: Mutex<()>,
    /// Test hook: make the next write fail after the temp file is written (FLT-18).
    fail_next_write: AtomicBool,
    /// Protects the sealing key file: DPAPI on Windows, the identity on Unix.
    protector: Box<dyn KeyProtector>,
}

/// What is persisted for one account. Secrets stay in redacting newtypes.
#[derive(Debug, Clone, Default)]
pub struct CachedAccount {
    /// The account's UPN as configured.
    pub upn: String,
    /// The newest refresh token (rotated on every use).
    pub refresh_token: Option<RefreshToken>,
    /// Access tokens, one per audience.
    pub access_tokens: Vec<StoredAccessToken>,
    /// Set when the IdP said a new sign-in is required (FLT-11); survives restarts.
    pub sign_in_required: Option<SignInMark>,
    /// Outcome of the last refresh attempt, for `accounts`.
    pub last_refresh: Option<RefreshRecord>,
}

/// An access token with its wall-clock validity.
#[derive(Debug, Clone)]
pub struct StoredAccessToken {
    /// Resource it was minted for.
    pub audience: Audience,
    /// The token.
    pub token: AccessToken,
    /// Unix seconds when we received it.
    pub issued_at: i64,
    /// Unix seconds when it expires (receipt time + `expires_in`).
    pub expires_at: i64,
}

/// Why the account needs a new interactive sign-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignInMark {
    /// AADSTS code of the refusal, if any.
    pub aadsts: Option<u32>,
    /// A short human-readable reason.
    pub detail: String,
}

/// The last refresh attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshRecord {
    /// Unix seconds.
    pub at: i64,
    /// Success or not.
    pub ok: bool,
    /// Error summary on failure (never a token).
    pub detail: String,
}

/// Result of reading one account's file.
#[derive(Debug)]
pub enum Load {
    /// No file: the account has never signed in (or logged out).
    Missing,
    /// The file was read.
    Loaded(Box<CachedAccount>),
    /// The file was unusable and moved aside; a new sign-in is required.
    Quarantined {
        /// Where the bad file now is (`None` if even the rename failed).
        moved_to: Option<PathBuf>,
        /// What was wrong.
        reason: String,
    },
}

/// Why a write failed.
#[derive(Debug, thiserror::Error)]
#[error("could not save the token cache {path}: {source}")]
pub struct CacheWriteError {
    path: PathBuf,
    source: io::Error,
}

/// The JSON schema. Version 1 and 2 have the same shape: in version 1 the token strings are plain text,
/// in version 2 they are sealed (`seal` submodule).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileJson {
    version: u32,
    upn: String,
    refresh_token: Option<String>,
    #[serde(default)]
    access_tokens: Vec<AccessRecordJson>,
    sign_in_required: Option<SignInMark>,
    last_refresh: Option<RefreshRecord>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccessRecordJson {
    audience: String,
    token: String,
    issued_at: i64,
    expires_at: i64,
}

// === impl TokenCache ===

impl TokenCache {
    /// Opens (creating) `<state_dir>/tokens`: mode 0700 on Unix, an owner-only ACL on Windows.
    pub fn open(state_dir: &Path) -> io::Result<Self> {
        let dir = state_dir.join("tokens");
        crate::platform::private_dir(&dir)?;
        crate::platform::sweep_temp_files(&dir);
        Ok(Self {
            dir,
            write_lock: Mutex::new(()),
            fail_next_write: AtomicBool::new(false),
            protector: Box::new(OsProtector::new(TOKEN_CACHE_KEY)),
        })
    }

    /// The `tokens/` directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cache file of `upn`.
    pub fn path_for(&self, upn: &str) -> PathBuf {
        self.dir.join(format!("{}.json", file_stem(upn)))
    }

    /// Reads the account's file; quarantines it when unusable.
    /// The account file's modification time and length, or `None` when there is none: a cheap way to
    /// notice that another process (`exoproxy login`) wrote it since it was last read.
    pub fn stamp(&self, upn: &str) -> Option<(SystemTime, u64)> {
        let meta = fs::metadata(self.path_for(upn)).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    }

    pub fn load(&self, upn: &str) -> Load {
        let path = self.path_for(upn);
        match read_checked(&path) {
            Ok(None) => Load::Missing,
            Ok(Some(bytes)) => match decode(&bytes, upn, &self.dir, &*self.protector) {
                Ok(account) => Load::Loaded(Box::new(account)),
                Err(reason) => quarantine(&path, upn, reason),
            },
            Err(ReadProblem::Corrupt(reason)) => quarantine(&path, upn, reason),
            Err(ReadProblem::Io(e)) => Load::Quarantined {
                moved_to: None,
                reason: format!(
                    "could not read {}: {e}; sign in again with `exoproxy login {upn}`",
                    path.display()
                ),
            },
        }
    }

    /// Atomically replaces the account's file.
    /// The tokens are sealed under the install's key, which is created on the first save.
    pub fn save(&self, account: &CachedAccount) -> Result<(), CacheWriteError> {
        let path = self.path_for(&account.upn);
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let bytes = match seal::read_or_create_key(&self.dir, &*self.protector)
            .and_then(|key| encode(account, &key))
        {
            Ok(bytes) => bytes,
            Err(source) => return Err(CacheWriteError { path, source }),
        };
        let lock = FileLock::acquire(&path.with_extension("lock"));
        let result = self.write_atomically(&path, &bytes);
        drop(lock);
        result.map_err(|source| CacheWriteError { path, source })
    }

    /// Deletes the account's file (logout). The bytes are overwritten first, best effort.
    pub fn remove(&self, upn: &str) -> io::Result<()> {
        let path = self.path_for(upn);
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok(meta) = fs::symlink_metadata(&path)
            && meta.is_file()
            && let Ok(mut file) = OpenOptions::new().write(true).open(&path)
        {
            let zeros = vec![0u8; usize::try_from(meta.len().min(MAX_CACHE_FILE)).unwrap_or(0)];
            let _ = file.write_all(&zeros).and_then(|()| file.sync_all());
        }
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The UPNs that have a cache file (read from each file, not from the name).
    pub fn list(&self) -> Vec<String> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let stem = name.strip_suffix(".json")?;
                (!stem.starts_with('.')).then(|| upn_in_file(&e.path()))?
            })
            .collect()
    }

    /// Test hook: protect the key file with `protector` instead of the platform's (the cache tests
    /// run on Unix only, see `mod tests`).
    #[cfg(all(test, unix))]
    pub(crate) fn with_protector(mut self, protector: Box<dyn KeyProtector>) -> Self {
        self.protector = protector;
        self
    }

    #[cfg(test)]
    pub(crate) fn fail_next_write(&self) {
        self.fail_next_write.store(true, Ordering::SeqCst);
    }

    fn write_atomically(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        crate::platform::write_private_atomic_checked(path, bytes, || {
            if self.fail_next_write.swap(false, Ordering::SeqCst) {
                return Err(io::Error::other("injected write failure (test)"));
            }
            Ok(())
        })
    }
}

// === file helpers ===

enum ReadProblem {
    Corrupt(String),
    Io(io::Error),
}

/// Reads the file without following symlinks, fixing loose permissions, refusing huge files.
fn read_checked(path: &Path) -> Result<Option<Zeroizing<Vec<u8>>>, ReadProblem> {
    let meta = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ReadProblem::Io(e)),
        Ok(meta) => meta,
    };
    if meta.file_type().is_symlink() {
        return Err(ReadProblem::Corrupt("it is a symbolic link".into()));
    }
    if !meta.is_file() {
        return Err(ReadProblem::Corrupt("it is not a regular file".into()));
    }
    if meta.len() > MAX_CACHE_FILE {
        return Err(ReadProblem::Corrupt(format!(
            "it is larger than {MAX_CACHE_FILE} bytes"
        )));
    }
    let file = File::open(path).map_err(ReadProblem::Io)?;
    let opened = file.metadata().map_err(ReadProblem::Io)?;
    if !same_file(&meta, &opened) {
        return Err(ReadProblem::Corrupt(
            "it was replaced while being opened".into(),
        ));
    }
    fix_permissions(path, &file, &opened);
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_CACHE_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadProblem::Io)?;
    Ok(Some(bytes))
}

fn decode(
    bytes: &[u8],
    upn: &str,
    dir: &Path,
    protector: &dyn KeyProtector,
) -> Result<CachedAccount, String> {
    if bytes.is_empty() {
        return Err("it is empty".into());
    }
    let mut file: FileJson = serde_json::from_slice(bytes)
        .map_err(|e| format!("it is not a version-{CACHE_VERSION} cache ({e})"))?;
    if file.version != CACHE_VERSION && file.version != PLAINTEXT_CACHE_VERSION {
        return Err(format!(
            "unsupported version {} (expected {CACHE_VERSION})",
            file.version
        ));
    }
    if normalize_upn(&file.upn) != normalize_upn(upn) {
        return Err(format!("it belongs to another account ({})", file.upn));
    }
    if file.version == CACHE_VERSION {
        unseal_tokens(&mut file, dir, protector)?;
    }
    let access_tokens = file
        .access_tokens
        .iter_mut()
        .map(|r| StoredAccessToken {
            audience: Audience::new(r.audience.clone()),
            token: AccessToken::new(std::mem::take(&mut r.token)),
            issued_at: r.issued_at,
            expires_at: r.expires_at,
        })
        .collect();
    Ok(CachedAccount {
        upn: std::mem::take(&mut file.upn),
        refresh_token: file.refresh_token.take().map(RefreshToken::new),
        access_tokens,
        sign_in_required: file.sign_in_required.take(),
        last_refresh: file.last_refresh.take(),
    })
}

/// Replaces the sealed token strings of a version-2 file by their plain text, in place.
fn unseal_tokens(
    file: &mut FileJson,
    dir: &Path,
    protector: &dyn KeyProtector,
) -> Result<(), String> {
    if file.refresh_token.is_none() && file.access_tokens.is_empty() {
        return Ok(()); // nothing sealed: no key needed
    }
    let key = seal::read_key(dir, protector).map_err(|problem| match problem {
        seal::KeyProblem::Missing => format!(
            "its tokens are sealed but the key file {} is missing",
            seal::key_path(dir).display()
        ),
        seal::KeyProblem::Unusable(reason) => format!(
            "its tokens are sealed but the key file {} is unusable ({reason})",
            seal::key_path(dir).display()
        ),
    })?;
    let upn = normalize_upn(&file.upn);
    let unopened = || {
        "a sealed token does not open (the file was altered, copied from another account, \
         or sealed under another install's key)"
            .to_string()
    };
    if let Some(sealed) = &mut file.refresh_token {
        *sealed = key
            .open(sealed, &upn, seal::Field::Refresh)
            .ok_or_else(unopened)?;
    }
    for record in &mut file.access_tokens {
        let field = seal::Field::Access(&record.audience);
        record.token = key.open(&record.token, &upn, field).ok_or_else(unopened)?;
    }
    Ok(())
}

fn encode(account: &CachedAccount, key: &seal::SealKey) -> io::Result<Zeroizing<Vec<u8>>> {
    let upn = normalize_upn(&account.upn);
    let refresh_token = match &account.refresh_token {
        Some(t) => Some(key.seal(t.expose(), &upn, seal::Field::Refresh)?),
        None => None,
    };
    let access_tokens = account
        .access_tokens
        .iter()
        .map(|t| {
            let audience = t.audience.as_str();
            Ok(AccessRecordJson {
                audience: audience.to_string(),
                token: key.seal(t.token.expose(), &upn, seal::Field::Access(audience))?,
                issued_at: t.issued_at,
                expires_at: t.expires_at,
            })
        })
        .collect::<io::Result<_>>()?;
    let file = FileJson {
        version: CACHE_VERSION,
        upn: account.upn.clone(),
        refresh_token,
        access_tokens,
        sign_in_required: account.sign_in_required.clone(),
        last_refresh: account.last_refresh.clone(),
    };
    // Serialising plain structs of strings and integers cannot fail.
    let bytes = Zeroizing::new(serde_json::to_vec_pretty(&file).unwrap_or_default());
    drop(file);
    Ok(bytes)
}

impl Drop for FileJson {
    fn drop(&mut self) {
        self.refresh_token.zeroize();
        for record in &mut self.access_tokens {
            record.token.zeroize();
        }
    }
}

fn quarantine(path: &Path, upn: &str, reason: String) -> Load {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let target = path.with_file_name(format!("{name}.corrupt.{}", unix_now()));
    let moved_to = fs::rename(path, &target).ok().map(|()| target);
    let reason = format!("{reason}; sign in again with `exoproxy login {upn}`");
    tracing::warn!(
        file = %path.display(),
        moved_to = ?moved_to.as_ref().map(|p| p.display().to_string()),
        %reason,
        "token cache file is unusable: moved aside"
    );
    Load::Quarantined { moved_to, reason }
}

fn upn_in_file(path: &Path) -> Option<String> {
    let bytes = match read_checked(path) {
        Ok(Some(bytes)) => bytes,
        _ => return None,
    };
    #[derive(Deserialize)]
    struct UpnOnly {
        upn: String,
    }
    serde_json::from_slice::<UpnOnly>(&bytes)
        .ok()
        .map(|u| u.upn)
}

/// `Admin@Contoso.com` → `admin@contoso.com`; anything outside `[a-z0-9._@-]` becomes `_` and a short
/// hash of the UPN is appended so two UPNs never share a file.
pub fn file_stem(upn: &str) -> String {
    let upn = normalize_upn(upn);
    let clean: String = upn
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '.' | '_' | '@' | '-' => c,
            _ => '_',
        })
        .collect();
    if clean == upn && !clean.is_empty() && !clean.starts_with('.') {
        return clean;
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, upn.as_bytes());
    format!(
        "_{}-{}",
        clean.trim_start_matches('.'),
        hex::encode(&digest.as_ref()[..4])
    )
}

#[cfg(unix)]
fn fix_permissions(path: &Path, file: &File, meta: &fs::Metadata) {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(file = %path.display(), mode = format!("{mode:o}"),
            "token cache was readable by other users: fixed to 0600 (TOK-3); consider signing in again");
        if let Err(e) = file.set_permissions(fs::Permissions::from_mode(0o600)) {
            tracing::warn!(file = %path.display(), error = %e, "could not fix token cache permissions");
        }
    }
}

#[cfg(not(unix))]
fn fix_permissions(_path: &Path, _file: &File, _meta: &fs::Metadata) {}

#[cfg(unix)]
fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    a.len() == b.len()
}

pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

// === impl FileLock ===

/// A cross-process lock file holding the writer's pid; removed on drop.
struct FileLock {
    path: Option<PathBuf>,
}

impl FileLock {
    /// Takes the lock, waiting up to [`STALE_LOCK_AGE`] for a live holder. If the lock cannot be taken
    /// at all (odd file system), the write still proceeds: the rename keeps it atomic either way.
    fn acquire(path: &Path) -> Self {
        let deadline = std::time::Instant::now() + STALE_LOCK_AGE + Duration::from_millis(500);
        loop {
            match OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(mut file) => {
                    let _ = write!(file, "{}", std::process::id());
                    return Self {
                        path: Some(path.to_path_buf()),
                    };
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if lock_is_stale(path) {
                        tracing::warn!(lock = %path.display(), "taking over a stale token cache lock (TOK-4)");
                        let _ = fs::remove_file(path);
                        continue;
                    }
                }
                Err(_) => return Self { path: None },
            }
            if std::time::Instant::now() >= deadline {
                tracing::warn!(lock = %path.display(), "token cache lock still held: writing anyway");
                return Self { path: None };
            }
            // Blocking sleep: lock contention across processes is rare and short (a write takes ms).
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = fs::remove_file(path);
        }
    }
}

/// Stale when the holder's pid is dead (or is us: in-process writers are serialised by a mutex), when
/// the pid is unreadable, or when the lock is older than [`STALE_LOCK_AGE`].
fn lock_is_stale(path: &Path) -> bool {
    let age = fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .unwrap_or_default();
    if age > STALE_LOCK_AGE {
        return true;
    }
    let pid = fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    match pid {
        None => age > Duration::from_millis(500), // a writer may be between create and write
        Some(pid) if pid == std::process::id() => true,
        Some(pid) => !crate::platform::pid_alive(pid),
    }
}

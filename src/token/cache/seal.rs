//! Sealing of the cache's secrets: ChaCha20-Poly1305 under a per-install key (schema version 2).
//!
//! Contract:
//! - The key is 32 random bytes, created on the first save and stored in `tokens/.cache-key` through the
//!   platform's [`KeyProtector`]: on Unix the raw bytes, mode 0600; on Windows the `CryptProtectData`
//!   blob of the key (current user, `CRYPTPROTECT_UI_FORBIDDEN`, fixed description and entropy "exoproxy
//!   token cache key"), read back with `CryptUnprotectData`. A key file that does not unprotect (another
//!   user's, a copied profile, a raw key from before DPAPI) is an unusable key: moved aside on the next
//!   save, and the files sealed under it are quarantined when read. Creation is atomic and never
//!   replaces a key (`platform::create_private_atomic`: a temp file hard-linked into place); when
//!   another writer won the race, that writer's key is used. A reader never sees half a key.
//! - A sealed value is `base64url(nonce ‖ ciphertext ‖ tag)` with a fresh random 96-bit nonce per seal.
//!   The associated data binds the value to the account (normalised UPN) and to its field, so a file or a
//!   value copied onto another account or field does not open.
//! - The key is never logged: [`SealKey`]'s `Debug` prints `[redacted]`.
//! - What this protects against: casual disclosure (backups, `grep`, a cache file pasted into a ticket).
//!   It does not protect against code running as the same user, which can read the key file (and, on
//!   Windows, ask DPAPI to unprotect it) too. On Windows DPAPI also keeps the key from another account
//!   that copies the file, and from a copy of the profile on another machine.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom as _, SystemRandom};
use zeroize::Zeroizing;

use super::{ReadProblem, read_checked, unix_now};
use crate::platform::KeyProtector;

/// Name of the key file inside `tokens/`.
pub(crate) const KEY_FILE: &str = ".cache-key";
/// ChaCha20-Poly1305 key length.
const KEY_LEN: usize = 32;

/// The per-install sealing key.
pub(crate) struct SealKey(LessSafeKey);

/// Which field a sealed value belongs to (part of the associated data).
#[derive(Clone, Copy)]
pub(crate) enum Field<'a> {
    /// The refresh token.
    Refresh,
    /// The access token of this audience.
    Access(&'a str),
}

// === impl SealKey ===

impl SealKey {
    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let key = UnboundKey::new(&CHACHA20_POLY1305, bytes).ok()?;
        Some(Self(LessSafeKey::new(key)))
    }

    /// Seals `plaintext` for `field` of the account `upn` (normalised).
    pub(crate) fn seal(&self, plaintext: &str, upn: &str, field: Field<'_>) -> io::Result<String> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| io::Error::other("no system randomness for the token cache nonce"))?;
        // Room for the tag up front, so appending it never reallocates and leaves a plaintext copy behind.
        let mut buf = Zeroizing::new(Vec::with_capacity(
            plaintext.len() + CHACHA20_POLY1305.tag_len(),
        ));
        buf.extend_from_slice(plaintext.as_bytes());
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(associated_data(upn, field)),
                &mut *buf,
            )
            .map_err(|_| io::Error::other("token cache sealing failed"))?;
        let mut out = Vec::with_capacity(NONCE_LEN + buf.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Ok(URL_SAFE_NO_PAD.encode(out))
    }

    /// Opens a value sealed by [`seal`](Self::seal); `None` when it was tampered with, sealed under
    /// another key, or sealed for another account or field.
    pub(crate) fn open(&self, sealed: &str, upn: &str, field: Field<'_>) -> Option<String> {
        let raw = Zeroizing::new(URL_SAFE_NO_PAD.decode(sealed).ok()?);
        if raw.len() < NONCE_LEN + CHACHA20_POLY1305.tag_len() {
            return None;
        }
        let (nonce, body) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = Zeroizing::new(body.to_vec());
        let plain_len = self
            .0
            .open_in_place(nonce, Aad::from(associated_data(upn, field)), &mut body)
            .ok()?
            .len();
        body.truncate(plain_len);
        // A non-UTF-8 plaintext cannot come from `seal`; its bytes are zeroized by `Zeroizing` on drop.
        let plain = std::str::from_utf8(&body).ok()?;
        Some(plain.to_owned())
    }
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey([redacted])")
    }
}

fn associated_data(upn: &str, field: Field<'_>) -> Vec<u8> {
    let field = match field {
        Field::Refresh => "refresh".to_string(),
        Field::Access(audience) => format!("access:{audience}"),
    };
    format!("exoproxy token cache v2\n{upn}\n{field}").into_bytes()
}

// === key file ===

/// Why the key could not be read.
pub(crate) enum KeyProblem {
    /// There is no key file.
    Missing,
    /// The key file exists but is unusable (does not unprotect, wrong size, symlink, unreadable).
    Unusable(String),
}

/// Reads the key of `dir` (the `tokens/` directory), unprotecting it with `protector`.
pub(crate) fn read_key(dir: &Path, protector: &dyn KeyProtector) -> Result<SealKey, KeyProblem> {
    let path = key_path(dir);
    let stored = match read_checked(&path) {
        Ok(None) => return Err(KeyProblem::Missing),
        Ok(Some(bytes)) => bytes,
        Err(ReadProblem::Corrupt(reason)) => return Err(KeyProblem::Unusable(reason)),
        Err(ReadProblem::Io(e)) => return Err(KeyProblem::Unusable(e.to_string())),
    };
    let bytes = protector.unprotect(&stored).map_err(KeyProblem::Unusable)?;
    if bytes.len() != KEY_LEN {
        return Err(KeyProblem::Unusable(format!(
            "it holds {} bytes, not {KEY_LEN}",
            bytes.len()
        )));
    }
    SealKey::from_bytes(&bytes).ok_or_else(|| KeyProblem::Unusable("rejected by the cipher".into()))
}

/// Reads the key of `dir`, creating it when missing. An unusable key file is moved aside and replaced:
/// files sealed under it could not be opened anyway and are quarantined when read.
pub(crate) fn read_or_create_key(dir: &Path, protector: &dyn KeyProtector) -> io::Result<SealKey> {
    match read_key(dir, protector) {
        Ok(key) => return Ok(key),
        Err(KeyProblem::Missing) => {}
        Err(KeyProblem::Unusable(reason)) => set_aside_unusable_key(dir, &reason),
    }
    create_key(dir, protector)
}

fn set_aside_unusable_key(dir: &Path, reason: &str) {
    let path = key_path(dir);
    let target = dir.join(format!("{KEY_FILE}.corrupt.{}", unix_now()));
    let moved = fs::rename(&path, &target);
    tracing::warn!(file = %path.display(), %reason, moved_aside = moved.is_ok(),
        "token cache key file is unusable: a new key is created; cached sign-ins must be repeated");
}

fn create_key(dir: &Path, protector: &dyn KeyProtector) -> io::Result<SealKey> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    SystemRandom::new()
        .fill(&mut *key)
        .map_err(|_| io::Error::other("no system randomness for the token cache key"))?;
    let stored = protector.protect(&*key)?;
    match crate::platform::create_private_atomic(&key_path(dir), &stored) {
        Ok(()) => {
            tracing::debug!(dir = %dir.display(), "token cache key created");
            accept(&key)
        }
        // Another writer created the key first: use theirs.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read_existing(dir, protector),
        Err(e) => Err(e),
    }
}

fn accept(key: &[u8; KEY_LEN]) -> io::Result<SealKey> {
    SealKey::from_bytes(key).ok_or_else(|| io::Error::other("key rejected by the cipher"))
}

fn read_existing(dir: &Path, protector: &dyn KeyProtector) -> io::Result<SealKey> {
    read_key(dir, protector).map_err(|problem| {
        let detail = match problem {
            KeyProblem::Missing => "it vanished".to_string(),
            KeyProblem::Unusable(reason) => reason,
        };
        io::Error::other(format!(
            "token cache key {} is unusable: {detail}",
            key_path(dir).display()
        ))
    })
}

/// Where the key of `dir` lives.
pub(crate) fn key_path(dir: &Path) -> PathBuf {
    dir.join(KEY_FILE)
}

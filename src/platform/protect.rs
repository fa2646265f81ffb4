//! The key-protection seam: DPAPI on Windows, the identity elsewhere.

use std::fmt;
use std::io;

use zeroize::Zeroizing;

/// What a protected secret is for. On Windows the description is stored (readable) in the DPAPI blob
/// and the entropy must be presented again to unprotect, so another program running as the same user
/// does not open the blob by accident with a bare `CryptUnprotectData`.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(windows), allow(dead_code))]
pub(crate) struct Purpose {
    pub(crate) description: &'static str,
    pub(crate) entropy: &'static [u8],
}

/// The token cache's sealing key (`tokens/.cache-key`).
pub(crate) const TOKEN_CACHE_KEY: Purpose = Purpose {
    description: "exoproxy token cache key",
    entropy: b"exoproxy token cache key v1",
};

/// The local CA's private key (`exoproxy-ca.key`).
pub(crate) const CA_KEY: Purpose = Purpose {
    description: "exoproxy local CA key",
    entropy: b"exoproxy local CA key v1",
};

/// Turns a secret into the bytes stored on disk and back.
pub(crate) trait KeyProtector: fmt::Debug + Send + Sync {
    /// The bytes to store for `secret`.
    fn protect(&self, secret: &[u8]) -> io::Result<Zeroizing<Vec<u8>>>;
    /// The secret from stored bytes; `Err` with a reason when they do not unprotect for this user.
    fn unprotect(&self, stored: &[u8]) -> Result<Zeroizing<Vec<u8>>, String>;
}

/// The operating system's protection for one [`Purpose`]: DPAPI (current user) on Windows, none elsewhere.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(windows), allow(dead_code))] // the purpose only matters to DPAPI
pub(crate) struct OsProtector(Purpose);

// === impl OsProtector ===

impl OsProtector {
    pub(crate) const fn new(purpose: Purpose) -> Self {
        Self(purpose)
    }
}

#[cfg(windows)]
impl KeyProtector for OsProtector {
    fn protect(&self, secret: &[u8]) -> io::Result<Zeroizing<Vec<u8>>> {
        super::dpapi::protect(secret, &self.0)
    }

    fn unprotect(&self, stored: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
        super::dpapi::unprotect(stored, &self.0)
    }
}

/// Unix: the file's mode (0600 in a 0700 directory) is the protection; the bytes are stored as they are.
#[cfg(not(windows))]
impl KeyProtector for OsProtector {
    fn protect(&self, secret: &[u8]) -> io::Result<Zeroizing<Vec<u8>>> {
        Ok(Zeroizing::new(secret.to_vec()))
    }

    fn unprotect(&self, stored: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
        Ok(Zeroizing::new(stored.to_vec()))
    }
}

/// A stand-in for DPAPI in Linux tests: stored bytes are a marker, a user tag and the secret XOR 0x5a,
/// so a raw key never appears in the file and a blob of "another user" does not unprotect.
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    const MARKER: &[u8] = b"FAKEDPAPI:";

    #[derive(Debug, Clone, Copy)]
    pub(crate) struct FakeDpapi {
        /// Stands for the Windows user whose master key protects the blob.
        pub(crate) user: u8,
    }

    impl KeyProtector for FakeDpapi {
        fn protect(&self, secret: &[u8]) -> io::Result<Zeroizing<Vec<u8>>> {
            let mut out = Zeroizing::new(MARKER.to_vec());
            out.push(self.user);
            out.extend(secret.iter().map(|b| b ^ 0x5a));
            Ok(out)
        }

        fn unprotect(&self, stored: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
            let body = stored
                .strip_prefix(MARKER)
                .ok_or("it is not a protected blob")?;
            match body.split_first() {
                Some((user, secret)) if *user == self.user => {
                    Ok(Zeroizing::new(secret.iter().map(|b| b ^ 0x5a).collect()))
                }
                _ => Err("it was protected for another user".into()),
            }
        }
    }

    #[test]
    fn fake_dpapi_round_trips_and_refuses_other_users() {
        let alice = FakeDpapi { user: 1 };
        let stored = alice.protect(b"secret").unwrap();
        assert!(!stored.windows(6).any(|w| w == b"secret"));
        assert_eq!(&*alice.unprotect(&stored).unwrap(), b"secret");
        assert!(FakeDpapi { user: 2 }.unprotect(&stored).is_err());
        assert!(alice.unprotect(b"secret").is_err());
    }
}

#[cfg(all(test, not(windows)))]
mod tests {
    use super::*;

    #[test]
    fn unix_protector_stores_the_bytes_unchanged() {
        let protector = OsProtector::new(TOKEN_CACHE_KEY);
        let stored = protector.protect(&[7u8; 32]).unwrap();
        assert_eq!(&*stored, &[7u8; 32]);
        assert_eq!(&*protector.unprotect(&stored).unwrap(), &[7u8; 32]);
    }
}

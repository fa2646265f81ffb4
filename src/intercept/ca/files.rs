//! The CA's two files: where they live, owner-only writing, reading, and parsing into an issuer.
//!
//! Contract: [`CaFiles::write_new`] creates the directory with `platform::private_dir` (owner-only,
//! a symlink refused) and writes the key first, each file with `platform::write_private_atomic` (a
//! 0600 temp file in the same directory, fsync, rename, fsync of the directory), so a crash leaves
//! either the old file or the new one, never a key in a shared temp dir. [`parse_ca`] checks everything a
//! loaded CA must satisfy before it is used: PEM/DER shape, CA basic constraints, validity now, and
//! that the key's public half is the certificate's.
//!
//! The key file holds the PKCS#8 PEM as stored by the platform's [`KeyProtector`]: the PEM itself on
//! Unix, its DPAPI blob for the current user on Windows (description "exoproxy local CA key"). A stored key that
//! does not unprotect is [`CaError::Corrupt`] (regenerate), except a plain PEM written before the key
//! was protected: it is used and rewritten protected, so an existing install keeps its trusted CA.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{Issuer, KeyPair, PublicKeyData};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::extensions::GeneralName;
use zeroize::Zeroizing;

use super::CaError;
use crate::platform::{CA_KEY, KeyProtector, OsProtector};

/// File name of the CA certificate inside the state directory.
pub const CERT_FILE_NAME: &str = "exoproxy-ca.pem";
/// File name of the CA private key inside the state directory.
pub const KEY_FILE_NAME: &str = "exoproxy-ca.key";

/// Paths of the CA certificate and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFiles {
    /// The directory holding both files (0700 on Unix).
    pub dir: PathBuf,
    /// The CA certificate (PEM).
    pub cert: PathBuf,
    /// The CA private key (PKCS#8 PEM, 0600 on Unix; its DPAPI blob on Windows).
    pub key: PathBuf,
}

/// What [`parse_ca`] extracts from the two files.
pub(super) struct ParsedCa {
    pub(super) cert_der: CertificateDer<'static>,
    pub(super) issuer: Issuer<'static, KeyPair>,
    pub(super) permitted: Vec<String>,
    pub(super) not_after: OffsetDateTime,
}

// === impl CaFiles ===

impl CaFiles {
    /// The standard file names inside `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            cert: dir.join(CERT_FILE_NAME),
            key: dir.join(KEY_FILE_NAME),
        }
    }

    /// (certificate exists, key exists).
    pub(super) fn presence(&self) -> (bool, bool) {
        (self.cert.exists(), self.key.exists())
    }

    /// Reads both files; the key text is zeroized when dropped.
    pub(super) fn read_both(&self) -> Result<(String, Zeroizing<String>), CaError> {
        self.read_both_with(&OsProtector::new(CA_KEY))
    }

    /// [`read_both`](Self::read_both) with the key file unprotected by `protector`.
    pub(super) fn read_both_with(
        &self,
        protector: &dyn KeyProtector,
    ) -> Result<(String, Zeroizing<String>), CaError> {
        match self.presence() {
            (true, false) => return Err(self.incomplete(&self.cert, &self.key)),
            (false, true) => return Err(self.incomplete(&self.key, &self.cert)),
            _ => {}
        }
        check_key_mode(&self.key)?;
        let cert = fs::read_to_string(&self.cert).map_err(|e| self.read_error(&self.cert, e))?;
        let stored = fs::read(&self.key)
            .map(Zeroizing::new)
            .map_err(|e| io(&self.key, e))?;
        let key = self.key_text(&stored, protector)?;
        Ok((cert, key))
    }

    /// Creates the directory owner-only and writes key then certificate, each atomically.
    pub(super) fn write_new(&self, cert_pem: &[u8], key_pem: &[u8]) -> Result<(), CaError> {
        self.write_new_with(cert_pem, key_pem, &OsProtector::new(CA_KEY))
    }

    /// [`write_new`](Self::write_new) with the key protected by `protector`.
    pub(super) fn write_new_with(
        &self,
        cert_pem: &[u8],
        key_pem: &[u8],
        protector: &dyn KeyProtector,
    ) -> Result<(), CaError> {
        crate::platform::private_dir(&self.dir).map_err(|e| io(&self.dir, e))?;
        crate::platform::sweep_temp_files(&self.dir);
        let stored = protector.protect(key_pem).map_err(|e| io(&self.key, e))?;
        write_atomic(&self.key, &stored)?;
        write_atomic(&self.cert, cert_pem)
    }

    /// The key PEM from the stored bytes (see the module doc for the plain-PEM exception).
    fn key_text(
        &self,
        stored: &[u8],
        protector: &dyn KeyProtector,
    ) -> Result<Zeroizing<String>, CaError> {
        let mut plain = match protector.unprotect(stored) {
            Ok(plain) => plain,
            Err(_) if is_plain_key_pem(stored) => {
                self.protect_plain_key(stored, protector);
                Zeroizing::new(stored.to_vec())
            }
            Err(reason) => {
                return Err(CaError::Corrupt {
                    path: self.key.clone(),
                    detail: reason,
                });
            }
        };
        match String::from_utf8(std::mem::take(&mut *plain)) {
            Ok(text) => Ok(Zeroizing::new(text)),
            Err(e) => {
                drop(Zeroizing::new(e.into_bytes()));
                Err(CaError::Corrupt {
                    path: self.key.clone(),
                    detail: "not UTF-8 text".into(),
                })
            }
        }
    }

    /// Rewrites a key stored before protection existed in its protected form (best effort: the plain
    /// key stays usable if that fails).
    fn protect_plain_key(&self, pem: &[u8], protector: &dyn KeyProtector) {
        let rewritten = protector
            .protect(pem)
            .map_err(|e| io(&self.key, e))
            .and_then(|stored| write_atomic(&self.key, &stored));
        match rewritten {
            Ok(()) => tracing::info!(key = %self.key.display(),
                "local CA key was stored unprotected (older version): now protected for this user"),
            Err(e) => tracing::warn!(key = %self.key.display(), error = %e,
                "local CA key is stored unprotected and could not be protected; it is still used"),
        }
    }

    fn incomplete(&self, present: &Path, missing: &Path) -> CaError {
        CaError::Incomplete {
            present: present.to_path_buf(),
            missing: missing.to_path_buf(),
        }
    }

    fn read_error(&self, path: &Path, e: std::io::Error) -> CaError {
        if e.kind() == std::io::ErrorKind::InvalidData {
            return CaError::Corrupt {
                path: path.to_path_buf(),
                detail: "not UTF-8 text".into(),
            };
        }
        io(path, e)
    }
}

// === parsing ===

/// Parses and validates the CA certificate and key as of `now`.
pub(super) fn parse_ca(
    files: &CaFiles,
    cert_pem: &str,
    key_pem: &str,
    now: OffsetDateTime,
) -> Result<ParsedCa, CaError> {
    let corrupt_cert = |detail: &str| CaError::Corrupt {
        path: files.cert.clone(),
        detail: detail.into(),
    };
    let der = pem_certificate(cert_pem).ok_or_else(|| corrupt_cert("no PEM CERTIFICATE block"))?;
    let key = KeyPair::from_pem(key_pem).map_err(|_| CaError::Corrupt {
        path: files.key.clone(),
        detail: "not a PKCS#8 PEM private key".into(),
    })?;
    let (_, x509) = x509_parser::parse_x509_certificate(&der)
        .map_err(|_| corrupt_cert("not a DER X.509 certificate"))?;
    if !x509.is_ca() {
        return Err(corrupt_cert("not a CA certificate"));
    }
    if x509.public_key().raw != key.subject_public_key_info().as_slice() {
        return Err(CaError::Mismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
        });
    }
    let (not_before, not_after) = validity(&x509);
    if now < not_before || now > not_after {
        let detail = format!("valid from {not_before} until {not_after}");
        return Err(CaError::Expired {
            path: files.cert.clone(),
            detail,
        });
    }
    let permitted = permitted_dns_subtrees(&x509).map_err(|d| corrupt_cert(&d))?;
    let cert_der = CertificateDer::from(der);
    let issuer = Issuer::from_ca_cert_der(&cert_der, key)
        .map_err(|e| corrupt_cert(&format!("unusable as an issuer: {e}")))?;
    Ok(ParsedCa {
        cert_der,
        issuer,
        permitted,
        not_after,
    })
}

fn pem_certificate(text: &str) -> Option<Vec<u8>> {
    use rustls_pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(text.as_bytes())
        .ok()
        .map(|c| c.to_vec())
}

fn validity(
    x509: &x509_parser::certificate::X509Certificate<'_>,
) -> (OffsetDateTime, OffsetDateTime) {
    let v = x509.validity();
    let at = |t: &x509_parser::time::ASN1Time| {
        OffsetDateTime::from_unix_timestamp(t.timestamp()).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    };
    (at(&v.not_before), at(&v.not_after))
}

fn permitted_dns_subtrees(
    x509: &x509_parser::certificate::X509Certificate<'_>,
) -> Result<Vec<String>, String> {
    let constraints = x509
        .name_constraints()
        .map_err(|_| "unreadable name constraints".to_string())?
        .ok_or_else(|| "not name-constrained".to_string())?;
    let subtrees = constraints
        .value
        .permitted_subtrees
        .as_deref()
        .unwrap_or(&[]);
    let names: Vec<String> = subtrees
        .iter()
        .filter_map(|s| match &s.base {
            GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
            _ => None,
        })
        .collect();
    if names.is_empty() {
        return Err("no permitted DNS name constraints".into());
    }
    Ok(names)
}

// === owner-only file system helpers ===

/// A PKCS#8 PEM key in the clear (what the key file held before it was protected).
fn is_plain_key_pem(stored: &[u8]) -> bool {
    std::str::from_utf8(stored).is_ok_and(|text| {
        text.trim_start().starts_with("-----BEGIN ") && KeyPair::from_pem(text).is_ok()
    })
}

fn io(path: &Path, source: std::io::Error) -> CaError {
    CaError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), CaError> {
    crate::platform::write_private_atomic(path, contents).map_err(|e| io(path, e))
}

#[cfg(unix)]
fn check_key_mode(key: &Path) -> Result<(), CaError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = fs::metadata(key).map_err(|e| io(key, e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(CaError::InsecureKeyFile {
            path: key.to_path_buf(),
            mode,
        });
    }
    match current_uid() {
        Some(uid) if uid != meta.uid() => Err(CaError::ForeignKeyOwner {
            path: key.to_path_buf(),
            owner: meta.uid(),
        }),
        _ => Ok(()),
    }
}

/// Our effective uid without libc: `/proc/self` belongs to it (Linux). Elsewhere unknown.
#[cfg(unix)]
fn current_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self").ok().map(|m| m.uid())
}

#[cfg(not(unix))]
fn check_key_mode(_key: &Path) -> Result<(), CaError> {
    Ok(())
}

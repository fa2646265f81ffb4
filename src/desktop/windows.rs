//! The Windows [`Desktop`]: HKCU values and the user's `Root` certificate store. Each function is one
//! thin OS call; what to call and in which order is decided by the pure plan (`plan.rs`).

// The registry and CryptoAPI are C functions: calling them needs `unsafe`. Each block passes buffers
// whose sizes we own, NUL-terminated UTF-16 names alive for the call, and closes what it opened.
#![allow(unsafe_code)]

use std::io;
use std::ptr;

use windows_sys::Win32::Foundation::{ERROR_FILE_NOT_FOUND, ERROR_SUCCESS};
use windows_sys::Win32::Security::Cryptography::{
    CERT_FIND_SHA1_HASH, CERT_STORE_ADD_REPLACE_EXISTING, CERT_STORE_PROV_SYSTEM_W,
    CERT_SYSTEM_STORE_CURRENT_USER, CRYPT_INTEGER_BLOB, CertAddEncodedCertificateToStore,
    CertCloseStore, CertCreateCertificateContext, CertDeleteCertificateFromStore,
    CertFindCertificateInStore, CertFreeCertificateContext, CertOpenStore, HCERTSTORE,
    PKCS_7_ASN_ENCODING, X509_ASN_ENCODING,
};
use windows_sys::Win32::System::Registry::{
    HKEY, HKEY_CURRENT_USER, KEY_SET_VALUE, REG_OPTION_NON_VOLATILE, RRF_NOEXPAND, RegCloseKey,
    RegCreateKeyExW, RegDeleteKeyValueW, RegSetValueExW,
};

use super::Desktop;
use super::plan::RegData;
use crate::platform::registry::{self, ReadError};

/// The current user's registry and certificate stores.
#[derive(Debug)]
pub(super) struct Registry;

const ENCODING: u32 = X509_ASN_ENCODING | PKCS_7_ASN_ENCODING;

impl Desktop for Registry {
    fn read(&self, key: &str, name: &str) -> io::Result<Option<RegData>> {
        // RRF_NOEXPAND keeps REG_EXPAND_SZ as stored, so a restore writes the same bytes back.
        match registry::read_value(HKEY_CURRENT_USER, key, name, RRF_NOEXPAND) {
            Ok(value) => Ok(value.map(|v| RegData {
                kind: v.kind,
                bytes: v.bytes,
            })),
            Err(ReadError::Os(code)) => Err(os_error("reading", key, name, code)),
            Err(ReadError::KeptChanging) => Err(io::Error::other(format!(
                "HKCU\\{key}\\{name} kept changing size"
            ))),
        }
    }

    fn write(&mut self, key: &str, name: &str, data: &RegData) -> io::Result<()> {
        let (key_w, name_w) = (wide(key), wide(name));
        let mut hkey: HKEY = ptr::null_mut();
        let len = u32::try_from(data.bytes.len()).map_err(io::Error::other)?;
        // SAFETY: out-pointer to a local HKEY; names NUL-terminated and alive.
        let rc = unsafe {
            RegCreateKeyExW(
                HKEY_CURRENT_USER,
                key_w.as_ptr(),
                0,
                ptr::null(),
                REG_OPTION_NON_VOLATILE,
                KEY_SET_VALUE,
                ptr::null(),
                &mut hkey,
                ptr::null_mut(),
            )
        };
        if rc != ERROR_SUCCESS {
            return Err(os_error("opening", key, name, rc));
        }
        // SAFETY: `hkey` is open; the data pointer covers `len` bytes; the key is closed right after.
        let rc = unsafe {
            let rc = RegSetValueExW(
                hkey,
                name_w.as_ptr(),
                0,
                data.kind,
                data.bytes.as_ptr(),
                len,
            );
            RegCloseKey(hkey);
            rc
        };
        match rc {
            ERROR_SUCCESS => Ok(()),
            other => Err(os_error("writing", key, name, other)),
        }
    }

    fn delete(&mut self, key: &str, name: &str) -> io::Result<()> {
        let (key_w, name_w) = (wide(key), wide(name));
        // SAFETY: names NUL-terminated and alive for the call.
        let rc = unsafe { RegDeleteKeyValueW(HKEY_CURRENT_USER, key_w.as_ptr(), name_w.as_ptr()) };
        match rc {
            ERROR_SUCCESS | ERROR_FILE_NOT_FOUND => Ok(()),
            other => Err(os_error("deleting", key, name, other)),
        }
    }

    fn trust(&mut self, der: &[u8]) -> io::Result<()> {
        let len = u32::try_from(der.len()).map_err(io::Error::other)?;
        with_root_store(|store| {
            // SAFETY: `store` is open; `der` covers `len` bytes; no context is returned.
            let ok = unsafe {
                CertAddEncodedCertificateToStore(
                    store,
                    ENCODING,
                    der.as_ptr(),
                    len,
                    CERT_STORE_ADD_REPLACE_EXISTING,
                    ptr::null_mut(),
                )
            };
            if ok == 0 {
                return Err(last("adding the CA to CurrentUser\\Root"));
            }
            Ok(())
        })
    }

    fn untrust(&mut self, der: &[u8]) -> io::Result<()> {
        let len = u32::try_from(der.len()).map_err(io::Error::other)?;
        // SAFETY: `der` covers `len` bytes; the context is freed below.
        let cert = unsafe { CertCreateCertificateContext(ENCODING, der.as_ptr(), len) };
        if cert.is_null() {
            return Err(last("reading the saved CA certificate"));
        }
        // Found by its SHA-1 thumbprint, the store's own key (Wine does not implement
        // CERT_FIND_EXISTING; Windows accepts both).
        let thumbprint = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der);
        let blob = CRYPT_INTEGER_BLOB {
            cbData: 20,
            pbData: thumbprint.as_ref().as_ptr().cast_mut(),
        };
        let result = with_root_store(|store| {
            // SAFETY: `store` is valid and `blob` points to the 20-byte thumbprint, alive for the
            // call; a found context is consumed by the delete.
            unsafe {
                let found = CertFindCertificateInStore(
                    store,
                    ENCODING,
                    0,
                    CERT_FIND_SHA1_HASH,
                    ptr::addr_of!(blob).cast(),
                    ptr::null(),
                );
                if !found.is_null() && CertDeleteCertificateFromStore(found) == 0 {
                    return Err(last("removing the CA from CurrentUser\\Root"));
                }
            }
            Ok(())
        });
        // SAFETY: created above, not used after.
        unsafe { CertFreeCertificateContext(cert) };
        result
    }
}

/// Whether `der` is in `CurrentUser\Root`, found by its SHA-1 thumbprint as `untrust` finds it.
pub(super) fn in_user_root(der: &[u8]) -> io::Result<bool> {
    let thumbprint = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der);
    let blob = CRYPT_INTEGER_BLOB {
        cbData: 20,
        pbData: thumbprint.as_ref().as_ptr().cast_mut(),
    };
    with_root_store(|store| {
        // SAFETY: `store` is valid and `blob` points to the 20-byte thumbprint, alive for the call;
        // a found context is freed at once.
        unsafe {
            let found = CertFindCertificateInStore(
                store,
                ENCODING,
                0,
                CERT_FIND_SHA1_HASH,
                ptr::addr_of!(blob).cast(),
                ptr::null(),
            );
            if found.is_null() {
                return Ok(false);
            }
            CertFreeCertificateContext(found);
        }
        Ok(true)
    })
}

/// Runs `f` with the current user's "Root" system store open.
fn with_root_store<T>(f: impl FnOnce(HCERTSTORE) -> io::Result<T>) -> io::Result<T> {
    let name = wide("Root");
    // SAFETY: the store name is NUL-terminated and alive; the store is closed after `f`.
    let store = unsafe {
        CertOpenStore(
            CERT_STORE_PROV_SYSTEM_W,
            0,
            0,
            CERT_SYSTEM_STORE_CURRENT_USER,
            name.as_ptr().cast(),
        )
    };
    if store.is_null() {
        return Err(last("opening CurrentUser\\Root"));
    }
    let result = f(store);
    // SAFETY: opened above.
    unsafe { CertCloseStore(store, 0) };
    result
}

fn os_error(doing: &str, key: &str, name: &str, code: u32) -> io::Error {
    let code = i32::try_from(code).unwrap_or(i32::MAX);
    let e = io::Error::from_raw_os_error(code);
    io::Error::new(e.kind(), format!("{doing} HKCU\\{key}\\{name}: {e}"))
}

fn last(doing: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{doing}: {e}"))
}

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

//! DPAPI (`CryptProtectData` / `CryptUnprotectData`) in the current user's scope.
//!
//! One of the crate's documented exceptions to `unsafe_code = "deny"`: DPAPI is a C API. Input blobs
//! borrow our slices for the duration of the call; every output buffer is copied, wiped when it held a
//! secret, and released with `LocalFree` by a guard.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::io;
use std::os::windows::ffi::OsStrExt as _;

use windows_sys::Win32::Foundation::LocalFree;
use windows_sys::Win32::Security::Cryptography::{
    CRYPT_INTEGER_BLOB, CRYPTPROTECT_UI_FORBIDDEN, CryptProtectData, CryptUnprotectData,
};
use zeroize::Zeroizing;

use super::protect::Purpose;

/// An output blob allocated by DPAPI with `LocalAlloc`.
struct OutBlob(CRYPT_INTEGER_BLOB);

// === impl OutBlob ===

impl OutBlob {
    fn bytes(&self) -> &[u8] {
        if self.0.pbData.is_null() || self.0.cbData == 0 {
            return &[];
        }
        // SAFETY: DPAPI wrote cbData bytes at pbData, which stays allocated until drop.
        unsafe { std::slice::from_raw_parts(self.0.pbData, self.0.cbData as usize) }
    }

    /// Copies the bytes out and wipes DPAPI's buffer (it holds the plaintext after unprotect).
    fn take_wiped(self) -> Zeroizing<Vec<u8>> {
        let copy = Zeroizing::new(self.bytes().to_vec());
        if !self.0.pbData.is_null() {
            // SAFETY: the buffer is writable for cbData bytes (allocated for us by DPAPI).
            unsafe { std::ptr::write_bytes(self.0.pbData, 0, self.0.cbData as usize) };
        }
        copy
    }
}

impl Drop for OutBlob {
    fn drop(&mut self) {
        if !self.0.pbData.is_null() {
            // SAFETY: allocated by DPAPI with LocalAlloc, freed once.
            unsafe { LocalFree(self.0.pbData.cast::<c_void>()) };
        }
    }
}

/// Protects `secret` for the current user.
pub(super) fn protect(secret: &[u8], purpose: &Purpose) -> io::Result<Zeroizing<Vec<u8>>> {
    let input = in_blob(secret)?;
    let entropy = in_blob(purpose.entropy)?;
    let description: Vec<u16> = std::ffi::OsStr::new(purpose.description)
        .encode_wide()
        .chain(std::iter::once(0))
        .collect();
    let mut out = OutBlob(CRYPT_INTEGER_BLOB::default());
    // SAFETY: input, entropy and description outlive the call; out receives a LocalAlloc'd buffer.
    let ok = unsafe {
        CryptProtectData(
            &input,
            description.as_ptr(),
            &entropy,
            std::ptr::null(),
            std::ptr::null(),
            CRYPTPROTECT_UI_FORBIDDEN,
            &mut out.0,
        )
    };
    if ok == 0 {
        return Err(io::Error::other(format!(
            "DPAPI could not protect the {}: {}",
            purpose.description,
            io::Error::last_os_error()
        )));
    }
    Ok(out.take_wiped())
}

/// Unprotects `stored`; `Err` when it was protected for another user or machine, or is not a DPAPI blob.
pub(super) fn unprotect(stored: &[u8], purpose: &Purpose) -> Result<Zeroizing<Vec<u8>>, String> {
    let input = in_blob(stored).map_err(|e| e.to_string())?;
    let entropy = in_blob(purpose.entropy).map_err(|e| e.to_string())?;
    let mut out = OutBlob(CRYPT_INTEGER_BLOB::default());
    // SAFETY: input and entropy outlive the call; the description is not asked for (null);
    // out receives a LocalAlloc'd buffer.
    let ok = unsafe {
        CryptUnprotectData(
            &input,
            std::ptr::null_mut(),
            &entropy,
            std::ptr::null(),
            std::ptr::null(),
            CRYPTPROTECT_UI_FORBIDDEN,
            &mut out.0,
        )
    };
    if ok == 0 {
        return Err(format!(
            "DPAPI cannot decrypt it for this Windows user (written by another user or on another \
             machine, or not a protected file): {}",
            io::Error::last_os_error()
        ));
    }
    Ok(out.take_wiped())
}

/// A read-only view of `bytes` for DPAPI (which never writes through an input blob).
fn in_blob(bytes: &[u8]) -> io::Result<CRYPT_INTEGER_BLOB> {
    let len = u32::try_from(bytes.len()).map_err(|_| io::Error::other("secret too large"))?;
    Ok(CRYPT_INTEGER_BLOB {
        cbData: len,
        pbData: bytes.as_ptr().cast_mut(),
    })
}

//! The one registry reader: `RegGetValueW` with its size query, retried when the value grows between
//! the query and the read. Callers (the proxy-settings reader in `route::system`, `desktop`'s
//! install plan) turn the Windows error code into their own error and the bytes into their own type.

// The registry API is C: calling it needs `unsafe`. The block passes NUL-terminated UTF-16 names alive
// for the call and a buffer whose size we own.
#![allow(unsafe_code)]

use std::ptr;

use windows_sys::Win32::Foundation::{ERROR_FILE_NOT_FOUND, ERROR_MORE_DATA, ERROR_SUCCESS};
use windows_sys::Win32::System::Registry::{HKEY, REG_ROUTINE_FLAGS, RRF_RT_ANY, RegGetValueW};

/// A value as stored: its `REG_*` type and its bytes.
#[derive(Debug)]
pub(crate) struct RawValue {
    pub(crate) kind: u32,
    pub(crate) bytes: Vec<u8>,
}

/// Why a value could not be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The call failed with this Windows error code.
    Os(u32),
    /// The value changed size on every one of the attempts.
    KeptChanging,
}

/// `root\subkey\name` of any type; `None` when the key or the value does not exist. `flags` adds
/// `RRF_*` flags to `RRF_RT_ANY` (`RRF_NOEXPAND` keeps a `REG_EXPAND_SZ` as stored).
pub(crate) fn read_value(
    root: HKEY,
    subkey: &str,
    name: &str,
    flags: REG_ROUTINE_FLAGS,
) -> Result<Option<RawValue>, ReadError> {
    let (subkey_w, name_w) = (wide(subkey), wide(name));
    let mut buf: Vec<u8> = Vec::new();
    for _ in 0..4 {
        let mut kind = 0u32;
        let mut size = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        let data = if buf.is_empty() {
            ptr::null_mut()
        } else {
            buf.as_mut_ptr().cast()
        };
        // SAFETY: the names are NUL-terminated UTF-16 buffers alive for the call; `data` is null
        // (size query) or points to `size` writable bytes.
        let rc = unsafe {
            RegGetValueW(
                root,
                subkey_w.as_ptr(),
                name_w.as_ptr(),
                RRF_RT_ANY | flags,
                &mut kind,
                data,
                &mut size,
            )
        };
        match rc {
            ERROR_FILE_NOT_FOUND => return Ok(None),
            ERROR_SUCCESS if !buf.is_empty() || size == 0 => {
                buf.truncate(size as usize);
                return Ok(Some(RawValue { kind, bytes: buf }));
            }
            ERROR_SUCCESS | ERROR_MORE_DATA => buf = vec![0; size as usize + 2],
            other => return Err(ReadError::Os(other)),
        }
    }
    Err(ReadError::KeptChanging)
}

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

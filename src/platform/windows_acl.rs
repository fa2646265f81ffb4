//! The Windows calls behind `restrict_dir_to_owner` (the current user's SID as text, the owner-only
//! SDDL turned into a DACL, and `SetNamedSecurityInfoW` with `PROTECTED_DACL_SECURITY_INFORMATION`)
//! and behind `check_not_writable_by_others` (`GetNamedSecurityInfoW`, then each allow entry of the
//! DACL read with `GetAce`).
//!
//! One of the crate's documented exceptions to `unsafe_code = "deny"`: the token and security
//! descriptor APIs are C calls. Buffers are sized by the API's own length answer; every handle and
//! every `LocalAlloc`'d result is released by a guard.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::os::windows::ffi::OsStrExt as _;
use std::path::Path;

use windows_sys::Win32::Foundation::{ERROR_SUCCESS, LocalFree};
use windows_sys::Win32::Security::Authorization::{
    ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW,
    GetNamedSecurityInfoW, SDDL_REVISION_1, SE_FILE_OBJECT, SetNamedSecurityInfoW,
};
use windows_sys::Win32::Security::{
    ACCESS_ALLOWED_ACE, ACE_HEADER, ACL, DACL_SECURITY_INFORMATION, GetAce,
    GetSecurityDescriptorDacl, OWNER_SECURITY_INFORMATION, PROTECTED_DACL_SECURITY_INFORMATION,
    PSECURITY_DESCRIPTOR, PSID, TOKEN_USER,
};
use windows_sys::Win32::System::Threading::GetCurrentProcess;

/// A buffer returned by the system with `LocalAlloc`.
struct Local(*mut c_void);

// === impl Local ===

impl Drop for Local {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: allocated by the system with LocalAlloc, freed once.
            unsafe { LocalFree(self.0) };
        }
    }
}

/// Gives `dir` the owner-only protected DACL; children inherit it.
pub(super) fn set_owner_only(dir: &Path) -> Result<(), String> {
    let sid = current_user_sid()?;
    let sddl =
        super::owner_only_sddl(&sid).ok_or_else(|| format!("unexpected user SID {sid:?}"))?;
    let descriptor = descriptor_from_sddl(&sddl)?;
    let dacl = dacl_of(&descriptor)?;
    let path = wide(dir.as_os_str());
    // SAFETY: path is NUL-terminated; dacl points into `descriptor`, alive for the call; owner,
    // group and SACL are not changed (null).
    let rc = unsafe {
        SetNamedSecurityInfoW(
            path.as_ptr(),
            SE_FILE_OBJECT,
            DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            dacl,
            std::ptr::null(),
        )
    };
    if rc != ERROR_SUCCESS {
        return Err(format!(
            "SetNamedSecurityInfoW failed: {}",
            std::io::Error::from_raw_os_error(rc as i32)
        ));
    }
    Ok(())
}

/// The SID of the user this process runs as, e.g. `S-1-5-21-…-1001`.
fn current_user_sid() -> Result<String, String> {
    // SAFETY: the pseudo handle of our own process needs no closing.
    let buf =
        crate::peer::windows::token_user_of(unsafe { GetCurrentProcess() }).ok_or_else(|| {
            format!(
                "reading this process's user: {}",
                std::io::Error::last_os_error()
            )
        })?;
    // SAFETY: buf holds a TOKEN_USER written by GetTokenInformation; its SID points inside buf.
    let sid = unsafe { (*(buf.as_ptr().cast::<TOKEN_USER>())).User.Sid };
    // SAFETY: sid is valid while buf lives.
    unsafe { sid_text(sid) }
}

/// # Safety
/// `sid` must point to a valid SID for the duration of the call.
unsafe fn sid_text(sid: PSID) -> Result<String, String> {
    let mut text: *mut u16 = std::ptr::null_mut();
    // SAFETY: the caller guarantees sid; text receives a LocalAlloc'd string freed by the guard.
    if unsafe { ConvertSidToStringSidW(sid, &mut text) } == 0 {
        return Err(format!(
            "ConvertSidToStringSidW: {}",
            std::io::Error::last_os_error()
        ));
    }
    let text = Local(text.cast::<c_void>());
    // SAFETY: a NUL-terminated UTF-16 string written by ConvertSidToStringSidW.
    Ok(unsafe { from_wide_nul(text.0.cast::<u16>()) })
}

// === who may write ===

/// Rights that let a holder change a file or folder (winnt.h values): write or append data (add a
/// file or subfolder to a folder), delete a child, delete, change the DACL or the owner, and the
/// generic write and all rights.
pub(super) const WRITE_RIGHTS: u32 =
    0x0002 | 0x0004 | 0x0040 | 0x0001_0000 | 0x0004_0000 | 0x0008_0000 | 0x1000_0000 | 0x4000_0000;
/// Rights on a folder that let a holder replace a file in it that they do not own: delete a child,
/// delete or rename the folder, change its DACL or owner, generic all. Adding new files is not among
/// them (`C:\ProgramData` lets every user add files, like a sticky folder on Unix).
pub(super) const REPLACE_CHILD_RIGHTS: u32 =
    0x0040 | 0x0001_0000 | 0x0004_0000 | 0x0008_0000 | 0x1000_0000;
/// `ACCESS_ALLOWED_ACE_TYPE`.
const ACCESS_ALLOWED: u8 = 0;
/// `INHERIT_ONLY_ACE`: the entry is only inherited by children and does not apply to the object.
const INHERIT_ONLY: u8 = 0x08;
/// SYSTEM and BUILTIN\Administrators: they can take any file anyway.
const TRUSTED_SIDS: [&str; 2] = ["S-1-5-18", "S-1-5-32-544"];

/// The SIDs (with a name for the common groups) that an allow entry of `path`'s DACL grants any of
/// `rights`, other than its owner, the current user, SYSTEM and Administrators. A missing (NULL)
/// DACL allows everyone everything and is reported as `Everyone`.
pub(super) fn foreign_writers(path: &Path, rights: u32) -> Result<Vec<String>, String> {
    let me = current_user_sid()?;
    let wide_path = wide(path.as_os_str());
    let mut owner: PSID = std::ptr::null_mut();
    let mut dacl: *mut ACL = std::ptr::null_mut();
    let mut descriptor: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
    // SAFETY: the path is NUL-terminated; owner and dacl point into `descriptor`, a LocalAlloc'd
    // buffer freed by the guard below after their last use.
    let rc = unsafe {
        GetNamedSecurityInfoW(
            wide_path.as_ptr(),
            SE_FILE_OBJECT,
            OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION,
            &mut owner,
            std::ptr::null_mut(),
            &mut dacl,
            std::ptr::null_mut(),
            &mut descriptor,
        )
    };
    let _descriptor = Local(descriptor);
    if rc != ERROR_SUCCESS {
        return Err(format!(
            "GetNamedSecurityInfoW failed: {}",
            std::io::Error::from_raw_os_error(rc as i32)
        ));
    }
    if dacl.is_null() {
        return Ok(vec!["Everyone (the file has no access list)".into()]);
    }
    // SAFETY: owner points into the live descriptor.
    let owner = unsafe { sid_text(owner) }.unwrap_or_default();
    let mut writers = Vec::new();
    // SAFETY: dacl points into the live descriptor.
    let count = unsafe { (*dacl).AceCount };
    for index in 0..u32::from(count) {
        let mut ace: *mut c_void = std::ptr::null_mut();
        // SAFETY: index < AceCount; ace receives a pointer into the DACL.
        if unsafe { GetAce(dacl, index, &mut ace) } == 0 || ace.is_null() {
            continue;
        }
        // SAFETY: every ACE starts with an ACE_HEADER.
        let header = unsafe { *(ace.cast::<ACE_HEADER>()) };
        if header.AceType != ACCESS_ALLOWED || header.AceFlags & INHERIT_ONLY != 0 {
            continue;
        }
        let allowed = ace.cast::<ACCESS_ALLOWED_ACE>();
        // SAFETY: an ACCESS_ALLOWED_ACE: the mask, then the SID starting at SidStart.
        let (mask, sid) = unsafe { ((*allowed).Mask, std::ptr::addr_of_mut!((*allowed).SidStart)) };
        if mask & rights == 0 {
            continue;
        }
        // SAFETY: the SID lies inside the ACE, inside the live descriptor.
        let sid = unsafe { sid_text(sid.cast::<c_void>()) }?;
        if sid != owner && sid != me && !TRUSTED_SIDS.contains(&sid.as_str()) {
            writers.push(named(sid));
        }
    }
    Ok(writers)
}

/// `S-1-1-0` → `Everyone (S-1-1-0)`, for the groups that usually appear by mistake.
fn named(sid: String) -> String {
    let name = match sid.as_str() {
        "S-1-1-0" => "Everyone",
        "S-1-5-11" => "Authenticated Users",
        "S-1-5-32-545" => "Users",
        "S-1-5-4" => "INTERACTIVE",
        _ => return sid,
    };
    format!("{name} ({sid})")
}

fn descriptor_from_sddl(sddl: &str) -> Result<Local, String> {
    let text = wide(std::ffi::OsStr::new(sddl));
    let mut descriptor: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
    // SAFETY: text is NUL-terminated; descriptor receives a LocalAlloc'd buffer freed by the guard.
    let ok = unsafe {
        ConvertStringSecurityDescriptorToSecurityDescriptorW(
            text.as_ptr(),
            SDDL_REVISION_1,
            &mut descriptor,
            std::ptr::null_mut(),
        )
    };
    if ok == 0 {
        return Err(format!(
            "the SDDL {sddl} was refused: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(Local(descriptor))
}

/// The DACL inside `descriptor` (borrowed: valid while `descriptor` lives).
fn dacl_of(descriptor: &Local) -> Result<*const ACL, String> {
    let mut present = 0;
    let mut defaulted = 0;
    let mut dacl: *mut ACL = std::ptr::null_mut();
    // SAFETY: descriptor is a valid self-relative security descriptor; out-pointers are ours.
    let ok =
        unsafe { GetSecurityDescriptorDacl(descriptor.0, &mut present, &mut dacl, &mut defaulted) };
    if ok == 0 || present == 0 || dacl.is_null() {
        return Err("the owner-only security descriptor has no DACL".into());
    }
    Ok(dacl.cast_const())
}

fn wide(text: &std::ffi::OsStr) -> Vec<u16> {
    text.encode_wide().chain(std::iter::once(0)).collect()
}

/// # Safety
/// `ptr` must point to a NUL-terminated UTF-16 string.
unsafe fn from_wide_nul(ptr: *const u16) -> String {
    let mut len = 0;
    // SAFETY: the caller guarantees a terminating NUL.
    while unsafe { *ptr.add(len) } != 0 {
        len += 1;
    }
    // SAFETY: len u16s were just read.
    String::from_utf16_lossy(unsafe { std::slice::from_raw_parts(ptr, len) })
}

//! Windows half of the same-user check: the owning process of the client's TCP row, then that
//! process's user SID compared with ours.
//!
//! This is the crate's one exception to `unsafe_code = "deny"`: the IP Helper and token APIs are C
//! calls. Every buffer is sized by the API's own length answer and every handle is closed by a guard.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::net::{IpAddr, SocketAddr};

use windows_sys::Win32::Foundation::{CloseHandle, ERROR_INSUFFICIENT_BUFFER, HANDLE, NO_ERROR};
use windows_sys::Win32::NetworkManagement::IpHelper::{
    GetExtendedTcpTable, MIB_TCP6ROW_OWNER_PID, MIB_TCPROW_OWNER_PID, TCP_TABLE_OWNER_PID_ALL,
};
use windows_sys::Win32::Networking::WinSock::{AF_INET, AF_INET6};
use windows_sys::Win32::Security::{
    EqualSid, GetTokenInformation, TOKEN_QUERY, TOKEN_USER, TokenUser,
};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, OpenProcess, OpenProcessToken, PROCESS_QUERY_LIMITED_INFORMATION,
};

use super::PeerUser;

pub(super) fn check(client: SocketAddr, local: SocketAddr) -> PeerUser {
    let Some(pid) = owning_pid(client, local) else {
        return PeerUser::Unknown(format!("no TCP row for {client} → {local}"));
    };
    match (user_sid(pid), token_user_of(unsafe { GetCurrentProcess() })) {
        (Some(theirs), Some(ours)) => {
            // SAFETY: both buffers hold a TOKEN_USER written by GetTokenInformation.
            let same = unsafe { EqualSid(sid_ptr(&theirs), sid_ptr(&ours)) } != 0;
            if same {
                PeerUser::Same
            } else {
                PeerUser::Other(format!("process {pid} of another user"))
            }
        }
        _ => PeerUser::Unknown(format!("cannot read the user of process {pid}")),
    }
}

/// The pid owning the TCP row `client → local`.
fn owning_pid(client: SocketAddr, local: SocketAddr) -> Option<u32> {
    let family = if client.is_ipv4() { AF_INET } else { AF_INET6 };
    let table = tcp_table(u32::from(family))?;
    // The count is the first u32; Windows targets are little-endian, so it is the low half of word 0.
    let count = (*table.first()? & 0xffff_ffff) as usize;
    let port = |p: u32| u16::from_be(p as u16);
    if client.is_ipv4() {
        let rows = rows::<MIB_TCPROW_OWNER_PID>(&table, count)?;
        rows.iter()
            .find(|r| {
                let l = SocketAddr::new(
                    IpAddr::from(r.dwLocalAddr.to_ne_bytes()),
                    port(r.dwLocalPort),
                );
                let rem = SocketAddr::new(
                    IpAddr::from(r.dwRemoteAddr.to_ne_bytes()),
                    port(r.dwRemotePort),
                );
                l == client && rem == local
            })
            .map(|r| r.dwOwningPid)
    } else {
        let rows = rows::<MIB_TCP6ROW_OWNER_PID>(&table, count)?;
        rows.iter()
            .find(|r| {
                let l = SocketAddr::new(IpAddr::from(r.ucLocalAddr), port(r.dwLocalPort));
                let rem = SocketAddr::new(IpAddr::from(r.ucRemoteAddr), port(r.dwRemotePort));
                l.ip() == client.ip() && l.port() == client.port() && rem.port() == local.port()
            })
            .map(|r| r.dwOwningPid)
    }
}

/// The raw table: a u32 count followed by rows (aligned by the API).
fn tcp_table(family: u32) -> Option<Vec<u64>> {
    let mut size: u32 = 0;
    // SAFETY: a null buffer with size 0 asks for the needed size.
    let rc = unsafe {
        GetExtendedTcpTable(
            std::ptr::null_mut(),
            &mut size,
            0,
            family,
            TCP_TABLE_OWNER_PID_ALL,
            0,
        )
    };
    if rc != ERROR_INSUFFICIENT_BUFFER {
        return None;
    }
    for _ in 0..3 {
        // u64 elements keep the rows 8-byte aligned.
        let mut buf = vec![0u64; (size as usize).div_ceil(8) + 64];
        let mut len = (buf.len() * 8) as u32;
        // SAFETY: buf is writable for len bytes.
        let rc = unsafe {
            GetExtendedTcpTable(
                buf.as_mut_ptr().cast::<c_void>(),
                &mut len,
                0,
                family,
                TCP_TABLE_OWNER_PID_ALL,
                0,
            )
        };
        match rc {
            NO_ERROR => return Some(buf),
            ERROR_INSUFFICIENT_BUFFER => size = len,
            _ => return None,
        }
    }
    None
}

/// Views the rows after the count, checking that they fit in the buffer.
fn rows<T>(table: &[u64], count: usize) -> Option<&[T]> {
    let offset = std::mem::align_of::<T>().max(4);
    let needed = offset + count.checked_mul(std::mem::size_of::<T>())?;
    if needed > table.len() * 8 {
        return None;
    }
    // SAFETY: the buffer is 8-byte aligned, large enough (checked above), and the API wrote `count`
    // rows of T after the count field, at T's alignment.
    Some(unsafe {
        std::slice::from_raw_parts(table.as_ptr().cast::<u8>().add(offset).cast::<T>(), count)
    })
}

struct Handle(HANDLE);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle was opened by us and is closed once.
        unsafe { CloseHandle(self.0) };
    }
}

fn user_sid(pid: u32) -> Option<Vec<u64>> {
    // SAFETY: plain call; a null handle is checked.
    let process = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
    if process.is_null() {
        return None;
    }
    let process = Handle(process);
    token_user_of(process.0)
}

/// The TOKEN_USER of a process, in an 8-byte aligned buffer (also the state dir's ACL owner).
pub(crate) fn token_user_of(process: HANDLE) -> Option<Vec<u64>> {
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: token receives a handle we close through the guard.
    if unsafe { OpenProcessToken(process, TOKEN_QUERY, &mut token) } == 0 {
        return None;
    }
    let token = Handle(token);
    let mut len = 0u32;
    // SAFETY: size query with a null buffer.
    unsafe { GetTokenInformation(token.0, TokenUser, std::ptr::null_mut(), 0, &mut len) };
    let mut buf = vec![0u64; (len as usize).div_ceil(8)];
    // SAFETY: buf is writable for len bytes.
    let ok = unsafe {
        GetTokenInformation(
            token.0,
            TokenUser,
            buf.as_mut_ptr().cast::<c_void>(),
            len,
            &mut len,
        )
    };
    (ok != 0).then_some(buf)
}

fn sid_ptr(token_user: &[u64]) -> *mut c_void {
    // SAFETY: the buffer holds a TOKEN_USER written by GetTokenInformation.
    unsafe { (*(token_user.as_ptr().cast::<TOKEN_USER>())).User.Sid }
}

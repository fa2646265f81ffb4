//! Live reads of the Windows proxy settings and interface addresses. Everything here is a thin OS
//! call whose output goes through the same platform-neutral parsers the tests exercise on Linux
//! ([`RegValue::from_raw`], [`from_ie_values_and_blob`], [`ConnectionSettings`]).
//!
//! - IE: the values under `HKCU\…\Internet Settings` plus the authoritative
//!   `Connections\DefaultConnectionSettings` blob; from `HKLM` instead when the policy
//!   `ProxySettingsPerUser = 0` makes the settings machine-wide (docs/PROTOCOL.md#wininet-settings).
//! - WinHTTP: `HKLM\…\Internet Settings\Connections\WinHttpSettings`; a missing value is "Direct access".
//! - Addresses: `GetIpAddrTable` (IPv4; enough to notice a VPN or Wi-Fi switch, and needs no extra
//!   windows-sys features).

// The registry and IP Helper APIs are C functions: calling them needs `unsafe`. Each block passes
// buffers whose sizes we own and checks the returned length before reading; nothing escapes a block.
#![allow(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr};
use std::ptr;

use windows_sys::Win32::Foundation::ERROR_SUCCESS;
use windows_sys::Win32::NetworkManagement::IpHelper::{
    GetIpAddrTable, MIB_IPADDRROW_XP, MIB_IPADDRTABLE,
};
use windows_sys::Win32::System::Registry::{HKEY, HKEY_CURRENT_USER, HKEY_LOCAL_MACHINE};

use crate::platform::registry::{self, ReadError};
use crate::route::system::blob::ConnectionSettings;
use crate::route::system::ie::{RegValue, RegValues, from_ie_values, from_ie_values_and_blob};
use crate::route::system::{SettingsError, SystemProxy};

const IE_SUBKEY: &str = r"Software\Microsoft\Windows\CurrentVersion\Internet Settings";
const CONNECTIONS_SUBKEY: &str =
    r"Software\Microsoft\Windows\CurrentVersion\Internet Settings\Connections";
const POLICY_SUBKEY: &str = r"Software\Policies\Microsoft\Windows\CurrentVersion\Internet Settings";
const IE_VALUES: [&str; 5] = [
    "ProxyEnable",
    "ProxyServer",
    "ProxyOverride",
    "AutoConfigURL",
    "AutoDetect",
];

/// The current user's IE/WinINet settings (source `"ie"`).
pub fn read_ie() -> Result<SystemProxy, SettingsError> {
    let per_machine = matches!(
        read_value(HKEY_LOCAL_MACHINE, POLICY_SUBKEY, "ProxySettingsPerUser")?,
        Some(RegValue::Dword(0))
    );
    let root = if per_machine {
        HKEY_LOCAL_MACHINE
    } else {
        HKEY_CURRENT_USER
    };
    let mut values = RegValues::new();
    for name in IE_VALUES {
        if let Some(value) = read_value(root, IE_SUBKEY, name)? {
            values.insert(name, value);
        }
    }
    match read_value(root, CONNECTIONS_SUBKEY, "DefaultConnectionSettings")? {
        Some(RegValue::Binary(blob)) => from_ie_values_and_blob(&values, &blob),
        _ => from_ie_values(&values),
    }
}

/// The machine WinHTTP settings (source `"winhttp"`); no value means direct access.
pub fn read_winhttp() -> Result<SystemProxy, SettingsError> {
    match read_value(HKEY_LOCAL_MACHINE, CONNECTIONS_SUBKEY, "WinHttpSettings")? {
        Some(RegValue::Binary(blob)) => {
            ConnectionSettings::parse(&blob, "WinHttpSettings")?.to_system_proxy("winhttp")
        }
        Some(_) => Err(SettingsError::new(
            "WinHttpSettings",
            "value is not REG_BINARY",
        )),
        None => Ok(SystemProxy::empty("winhttp")),
    }
}

/// One registry value; `None` when the key or value does not exist.
fn read_value(root: HKEY, subkey: &str, name: &str) -> Result<Option<RegValue>, SettingsError> {
    match registry::read_value(root, subkey, name, 0) {
        Ok(Some(raw)) => RegValue::from_raw(raw.kind, &raw.bytes).map(Some),
        Ok(None) => Ok(None),
        Err(ReadError::Os(code)) => Err(SettingsError::new(
            "registry",
            format!("reading {subkey}\\{name} failed with error {code}"),
        )),
        Err(ReadError::KeptChanging) => Err(SettingsError::new(
            "registry",
            format!("{subkey}\\{name} kept changing size while being read"),
        )),
    }
}

/// The machine's IPv4 interface addresses; empty if the table cannot be read.
pub fn interface_addresses() -> Vec<IpAddr> {
    let mut size: u32 = 0;
    // SAFETY: a null table with size 0 only asks for the needed size.
    unsafe { GetIpAddrTable(ptr::null_mut(), &mut size, 0) };
    // u32 words keep the buffer aligned for MIB_IPADDRTABLE.
    let mut words = vec![0u32; (size as usize).div_ceil(4) + 1];
    let mut size_bytes = u32::try_from(words.len() * 4).unwrap_or(u32::MAX);
    let table = words.as_mut_ptr().cast::<MIB_IPADDRTABLE>();
    // SAFETY: `table` points to `size_bytes` writable, aligned bytes.
    if unsafe { GetIpAddrTable(table, &mut size_bytes, 0) } != ERROR_SUCCESS {
        return Vec::new();
    }
    let header = std::mem::size_of::<u32>();
    let row_size = std::mem::size_of::<MIB_IPADDRROW_XP>();
    let capacity = (words.len() * 4).saturating_sub(header) / row_size;
    // SAFETY: the call succeeded, so the buffer holds a table header; we read at most `capacity`
    // rows, all inside the buffer, whatever count the header claims.
    let rows = unsafe {
        let count = ((*table).dwNumEntries as usize).min(capacity);
        std::slice::from_raw_parts(
            ptr::addr_of!((*table).table).cast::<MIB_IPADDRROW_XP>(),
            count,
        )
    };
    rows.iter()
        .map(|row| IpAddr::V4(Ipv4Addr::from(row.dwAddr.to_ne_bytes())))
        .collect()
}

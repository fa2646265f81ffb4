//! The WinINet ("IE") per-user values under
//! `HKCU\Software\Microsoft\Windows\CurrentVersion\Internet Settings` (docs/PROTOCOL.md#wininet-settings):
//! `ProxyEnable` (DWORD), `ProxyServer`, `ProxyOverride`, `AutoConfigURL` (strings), `AutoDetect`
//! (DWORD), read from a [`RegValues`] map that a `.reg` export or the live registry filled.
//!
//! `ProxyServer` only counts when `ProxyEnable` is non-zero, like WinINet; `AutoConfigURL` counts
//! whenever it is non-empty. When the caller also has the `DefaultConnectionSettings` blob, its flags
//! are authoritative and [`from_ie_values_and_blob`] prefers them.

use std::collections::BTreeMap;

use crate::route::system::blob::{
    ConnectionSettings, PROXY_TYPE_AUTO_DETECT, PROXY_TYPE_AUTO_PROXY_URL, PROXY_TYPE_PROXY,
};
use crate::route::system::proxy_list::{parse_bypass_list, parse_proxy_list};
use crate::route::system::{SettingsError, SystemProxy};

/// One registry value, as far as proxy settings need types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegValue {
    Dword(u32),
    String(String),
    Binary(Vec<u8>),
    /// Any other type (`hex(n):`), kept as raw bytes with its type number.
    Other(u32, Vec<u8>),
}

/// The values of one registry key; names compare case-insensitively, as in the registry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegValues {
    values: BTreeMap<String, RegValue>,
}

// === impl RegValues ===

impl RegValues {
    pub fn new() -> RegValues {
        RegValues::default()
    }

    /// Sets a value (a later set of the same name, in any case, replaces it).
    pub fn insert(&mut self, name: &str, value: RegValue) {
        self.values.insert(name.to_ascii_lowercase(), value);
    }

    pub fn remove(&mut self, name: &str) {
        self.values.remove(&name.to_ascii_lowercase());
    }

    pub fn get(&self, name: &str) -> Option<&RegValue> {
        self.values.get(&name.to_ascii_lowercase())
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// A DWORD; a REG_SZ holding a decimal number is accepted too (scripts write `/t REG_SZ /d 1`).
    pub fn dword(&self, name: &str) -> Result<Option<u32>, SettingsError> {
        match self.get(name) {
            None => Ok(None),
            Some(RegValue::Dword(n)) => Ok(Some(*n)),
            Some(RegValue::String(s)) => s.trim().parse().map(Some).map_err(|_| {
                SettingsError::new(
                    "Internet Settings",
                    format!("{name} is not a number: {s:?}"),
                )
            }),
            Some(other) => Err(SettingsError::new(
                "Internet Settings",
                format!("{name} has the wrong type ({})", other.type_name()),
            )),
        }
    }

    /// A non-empty, trimmed string value.
    pub fn string(&self, name: &str) -> Result<Option<&str>, SettingsError> {
        match self.get(name) {
            None => Ok(None),
            Some(RegValue::String(s)) => Ok(Some(s.trim()).filter(|s| !s.is_empty())),
            Some(other) => Err(SettingsError::new(
                "Internet Settings",
                format!("{name} has the wrong type ({})", other.type_name()),
            )),
        }
    }

    /// A REG_BINARY value.
    pub fn binary(&self, name: &str) -> Option<&[u8]> {
        match self.get(name) {
            Some(RegValue::Binary(b)) => Some(b),
            _ => None,
        }
    }
}

impl RegValue {
    /// Decodes raw registry data of type `kind` (`REG_SZ`=1, `REG_EXPAND_SZ`=2, `REG_BINARY`=3,
    /// `REG_DWORD`=4) as the Windows API returns it: strings are UTF-16LE, possibly NUL-terminated.
    pub fn from_raw(kind: u32, bytes: &[u8]) -> Result<RegValue, SettingsError> {
        let bad = |why: &str| SettingsError::new("registry", why.to_string());
        match kind {
            1 | 2 => {
                if !bytes.len().is_multiple_of(2) {
                    return Err(bad("string value with an odd byte count"));
                }
                let units: Vec<u16> = bytes
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect();
                let s = String::from_utf16(&units).map_err(|_| bad("invalid UTF-16 string"))?;
                Ok(RegValue::String(s.trim_end_matches('\0').to_string()))
            }
            3 => Ok(RegValue::Binary(bytes.to_vec())),
            4 => match bytes {
                [a, b, c, d] => Ok(RegValue::Dword(u32::from_le_bytes([*a, *b, *c, *d]))),
                _ => Err(bad("REG_DWORD value that is not 4 bytes")),
            },
            other => Ok(RegValue::Other(other, bytes.to_vec())),
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            RegValue::Dword(_) => "REG_DWORD",
            RegValue::String(_) => "REG_SZ",
            RegValue::Binary(_) => "REG_BINARY",
            RegValue::Other(..) => "other",
        }
    }
}

/// Reads the IE per-user values into settings (source `"ie"`).
pub fn from_ie_values(values: &RegValues) -> Result<SystemProxy, SettingsError> {
    let mut out = SystemProxy::empty("ie");
    if values.dword("ProxyEnable")?.unwrap_or(0) != 0 {
        if let Some(server) = values.string("ProxyServer")? {
            let list = parse_proxy_list(server, "ProxyServer")?;
            out.http = list.http;
            out.https = list.https;
        }
        if let Some(bypass) = values.string("ProxyOverride")? {
            out.bypass = parse_bypass_list(bypass);
        }
    }
    out.auto_config_url = values.string("AutoConfigURL")?.map(str::to_string);
    out.auto_detect = values.dword("AutoDetect")?.unwrap_or(0) != 0;
    Ok(out)
}

/// IE values plus the `DefaultConnectionSettings` blob: the blob's flags decide what is enabled
/// (the Settings app writes it, and may leave the plain values stale), the plain values fill in any
/// string the blob leaves empty.
pub fn from_ie_values_and_blob(
    values: &RegValues,
    blob: &[u8],
) -> Result<SystemProxy, SettingsError> {
    let blob = ConnectionSettings::parse(blob, "DefaultConnectionSettings")?;
    let mut merged = values.clone();
    let enabled = |flag: u32| RegValue::Dword(u32::from(blob.flags & flag != 0));
    merged.insert("ProxyEnable", enabled(PROXY_TYPE_PROXY));
    merged.insert("AutoDetect", enabled(PROXY_TYPE_AUTO_DETECT));
    let fill = |merged: &mut RegValues, name: &str, s: &str| {
        if !s.is_empty() {
            merged.insert(name, RegValue::String(s.to_string()));
        }
    };
    fill(&mut merged, "ProxyServer", &blob.proxy_server);
    fill(&mut merged, "ProxyOverride", &blob.bypass);
    if blob.flags & PROXY_TYPE_AUTO_PROXY_URL == 0 {
        merged.remove("AutoConfigURL");
    } else {
        fill(&mut merged, "AutoConfigURL", &blob.auto_config_url);
    }
    from_ie_values(&merged)
}

//! The binary connection-settings blob: `WinHttpSettings` (HKLM, machine WinHTTP) and
//! `DefaultConnectionSettings` (HKCU, the authoritative IE copy) share one layout
//! (docs/PROTOCOL.md#winhttp-settings):
//!
//! ```text
//! u32 version (ignored) · u32 change counter · u32 flags
//! u32 len + proxy string · u32 len + bypass string · u32 len + auto-config URL · zero padding
//! ```
//!
//! All integers are little-endian; strings are ASCII and not NUL-terminated. The parser is strict:
//! a length that runs past the end, a length field cut in half, an absurd length or a non-ASCII
//! string is an error. The only leniency is that the blob may stop cleanly after the bypass string,
//! because `netsh winhttp` writes version-0x18 blobs without an auto-config URL field.

use crate::route::system::proxy_list::{parse_bypass_list, parse_proxy_list};
use crate::route::system::{SettingsError, SystemProxy};

/// Flag 0x01: direct connections allowed (always set by Windows).
pub const PROXY_TYPE_DIRECT: u32 = 0x01;
/// Flag 0x02: use the manual proxy string.
pub const PROXY_TYPE_PROXY: u32 = 0x02;
/// Flag 0x04: use the auto-config (PAC) URL.
pub const PROXY_TYPE_AUTO_PROXY_URL: u32 = 0x04;
/// Flag 0x08: WPAD auto-detection.
pub const PROXY_TYPE_AUTO_DETECT: u32 = 0x08;

/// No real setting is longer than this; a larger length means the blob is corrupt or hostile.
const MAX_FIELD_LEN: usize = 32 * 1024;

/// The decoded fields of a connection-settings blob.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectionSettings {
    pub version: u32,
    pub counter: u32,
    pub flags: u32,
    pub proxy_server: String,
    pub bypass: String,
    pub auto_config_url: String,
}

/// A cursor over the blob that fails instead of panicking.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

// === impl ConnectionSettings ===

impl ConnectionSettings {
    /// Decodes a blob; `what` names it in errors (`"WinHttpSettings"`).
    pub fn parse(bytes: &[u8], what: &'static str) -> Result<ConnectionSettings, SettingsError> {
        let mut r = Reader { bytes, pos: 0 };
        let err = |detail: String| SettingsError::new(what, detail);
        let version = r.u32("version").map_err(err)?;
        let counter = r.u32("change counter").map_err(err)?;
        let flags = r.u32("flags").map_err(err)?;
        let proxy_server = r.string("proxy server").map_err(err)?;
        let bypass = r.string("bypass list").map_err(err)?;
        let auto_config_url = if r.at_end() {
            String::new()
        } else {
            r.string("auto-config URL").map_err(err)?
        };
        Ok(ConnectionSettings {
            version,
            counter,
            flags,
            proxy_server,
            bypass,
            auto_config_url,
        })
    }

    /// Encodes the fields in the documented layout (version 0x46, with the 32 bytes of padding IE
    /// writes). Used by tests and by tools that want to show what a setting would look like.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for n in [self.version, self.counter, self.flags] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        for s in [&self.proxy_server, &self.bypass, &self.auto_config_url] {
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        out.extend_from_slice(&[0u8; 32]);
        out
    }

    /// Applies the flags: the proxy string only counts with 0x02, the URL only with 0x04.
    pub fn to_system_proxy(&self, source: &'static str) -> Result<SystemProxy, SettingsError> {
        let mut out = SystemProxy::empty(source);
        if self.flags & PROXY_TYPE_PROXY != 0 {
            let list = parse_proxy_list(&self.proxy_server, source)?;
            out.http = list.http;
            out.https = list.https;
            out.bypass = parse_bypass_list(&self.bypass);
        }
        if self.flags & PROXY_TYPE_AUTO_PROXY_URL != 0 && !self.auto_config_url.trim().is_empty() {
            out.auto_config_url = Some(self.auto_config_url.trim().to_string());
        }
        out.auto_detect = self.flags & PROXY_TYPE_AUTO_DETECT != 0;
        Ok(out)
    }
}

/// Parses a `WinHttpSettings` blob straight into settings.
pub fn parse_winhttp_settings(bytes: &[u8]) -> Result<SystemProxy, SettingsError> {
    ConnectionSettings::parse(bytes, "WinHttpSettings")?.to_system_proxy("winhttp")
}

// === impl Reader ===

impl Reader<'_> {
    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn take(&mut self, n: usize, field: &str) -> Result<&[u8], String> {
        let remaining = self.bytes.len() - self.pos;
        if n > remaining {
            return Err(format!(
                "truncated at {field}: needs {n} bytes at offset {}, only {remaining} left",
                self.pos
            ));
        }
        let slice = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(slice)
    }

    fn u32(&mut self, field: &str) -> Result<u32, String> {
        let b = self.take(4, field)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self, field: &str) -> Result<String, String> {
        let len = self.u32(field)? as usize;
        if len > MAX_FIELD_LEN {
            return Err(format!(
                "{field} length {len} exceeds {MAX_FIELD_LEN} bytes: corrupt blob"
            ));
        }
        let bytes = self.take(len, field)?;
        if !bytes.is_ascii() {
            return Err(format!("{field} is not ASCII"));
        }
        // ASCII is valid UTF-8; a trailing NUL some writers add is not part of the value.
        let s = String::from_utf8_lossy(bytes);
        Ok(s.trim_end_matches('\0').to_string())
    }
}

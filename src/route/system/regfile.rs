//! `.reg` exports as regedit writes them: `REGEDIT4` (ANSI) and `Windows Registry Editor Version 5.00`
//! (UTF-16LE with a BOM; UTF-8 accepted too). Values: `"name"="string"` (escapes `\\` and `\"`),
//! `dword:0000001`, `hex:01,02,…` and `hex(n):…` with `\` continuation lines, `@` for the default value,
//! `"name"=-` and `[-key]` deletions. Anything else is an error naming the line.
//!
//! [`ie_from_reg`] and [`winhttp_from_reg`] pick the proxy keys out of a parsed file and feed the
//! IE and blob parsers, so a user can attach `reg export` output to a bug report and we read exactly
//! what their machine would give the live reader.

use crate::route::system::blob::ConnectionSettings;
use crate::route::system::ie::{RegValue, RegValues, from_ie_values, from_ie_values_and_blob};
use crate::route::system::{SettingsError, SystemProxy};

const WHAT: &str = ".reg file";

/// `HKCU\…\Internet Settings`: the IE per-user values.
pub const IE_KEY: &str =
    r"HKEY_CURRENT_USER\Software\Microsoft\Windows\CurrentVersion\Internet Settings";
/// `HKCU\…\Internet Settings\Connections`: `DefaultConnectionSettings`.
pub const IE_CONNECTIONS_KEY: &str =
    r"HKEY_CURRENT_USER\Software\Microsoft\Windows\CurrentVersion\Internet Settings\Connections";
/// `HKLM\…\Internet Settings\Connections`: `WinHttpSettings`.
pub const WINHTTP_KEY: &str =
    r"HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows\CurrentVersion\Internet Settings\Connections";
/// The 32-bit registry view of [`WINHTTP_KEY`].
pub const WINHTTP_KEY_WOW64: &str = r"HKEY_LOCAL_MACHINE\SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\Internet Settings\Connections";

/// The keys of a `.reg` file with their values, in file order; paths keep their spelling.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegFile {
    keys: Vec<(String, RegValues)>,
    /// `REGEDIT4` files store `hex(2)`/`hex(7)` strings as ANSI, version 5 as UTF-16LE.
    unicode: bool,
}

// === impl RegFile ===

impl RegFile {
    /// Decodes (BOM-sniffed) and parses a whole export.
    pub fn parse(bytes: &[u8]) -> Result<RegFile, SettingsError> {
        let text = decode(bytes)?;
        let mut lines = logical_lines(&text).into_iter();
        let header = lines
            .by_ref()
            .map(|(_, l)| l)
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default();
        let unicode = match header.trim() {
            "Windows Registry Editor Version 5.00" => true,
            "REGEDIT4" => false,
            other => return Err(err(1, format!("unknown header {other:?}"))),
        };
        let mut file = RegFile {
            keys: Vec::new(),
            unicode,
        };
        let mut current: Option<usize> = None;
        for (number, line) in lines {
            file.parse_line(&mut current, number, line.trim())?;
        }
        Ok(file)
    }

    fn parse_line(
        &mut self,
        current: &mut Option<usize>,
        number: usize,
        line: &str,
    ) -> Result<(), SettingsError> {
        if line.is_empty() || line.starts_with(';') {
            return Ok(());
        }
        if let Some(path) = line.strip_prefix('[') {
            let path = path
                .strip_suffix(']')
                .ok_or_else(|| err(number, "unterminated key name"))?;
            *current = if path.starts_with('-') {
                None
            } else {
                Some(self.key_index(path))
            };
            return Ok(());
        }
        let Some(index) = *current else {
            return Ok(()); // values of a deleted key, or before any key: nothing to keep
        };
        let (name, data) = split_value_line(line).map_err(|e| err(number, e))?;
        let values = &mut self.keys[index].1;
        match parse_data(data, self.unicode).map_err(|e| err(number, e))? {
            Some(value) => values.insert(&name, value),
            None => values.remove(&name),
        }
        Ok(())
    }

    fn key_index(&mut self, path: &str) -> usize {
        let wanted = normalise_key(path);
        if let Some(i) = self
            .keys
            .iter()
            .position(|(p, _)| normalise_key(p) == wanted)
        {
            return i;
        }
        self.keys.push((path.to_string(), RegValues::new()));
        self.keys.len() - 1
    }

    /// The values of a key (`HKCU`/`HKLM` abbreviations and any letter case accepted). A key under
    /// `HKEY_USERS\<sid>` matches the same path under `HKEY_CURRENT_USER`.
    pub fn key(&self, path: &str) -> Option<&RegValues> {
        let wanted = normalise_key(path);
        let user_suffix = wanted.strip_prefix("HKEY_CURRENT_USER\\");
        self.keys
            .iter()
            .find(|(p, _)| {
                let p = normalise_key(p);
                p == wanted || user_suffix.is_some_and(|s| is_users_key_for(&p, s))
            })
            .map(|(_, v)| v)
    }
}

/// IE settings from an export of `HKCU\…\Internet Settings` (with or without its `Connections`
/// subkey); `None` when the file has neither key.
pub fn ie_from_reg(file: &RegFile) -> Result<Option<SystemProxy>, SettingsError> {
    let values = file.key(IE_KEY);
    let blob = file
        .key(IE_CONNECTIONS_KEY)
        .and_then(|k| k.binary("DefaultConnectionSettings"));
    let empty = RegValues::new();
    match (values, blob) {
        (None, None) => Ok(None),
        (values, Some(blob)) => from_ie_values_and_blob(values.unwrap_or(&empty), blob).map(Some),
        (Some(values), None) => from_ie_values(values).map(Some),
    }
}

/// WinHTTP settings from an export of `HKLM\…\Internet Settings\Connections` (64-bit view first);
/// `None` when the file has no `WinHttpSettings` value, which Windows reads as direct.
pub fn winhttp_from_reg(file: &RegFile) -> Result<Option<SystemProxy>, SettingsError> {
    let blob = [WINHTTP_KEY, WINHTTP_KEY_WOW64]
        .iter()
        .filter_map(|k| file.key(k))
        .find_map(|k| k.binary("WinHttpSettings"));
    match blob {
        None => Ok(None),
        Some(b) => ConnectionSettings::parse(b, "WinHttpSettings")?
            .to_system_proxy("winhttp")
            .map(Some),
    }
}

fn err(line: usize, detail: impl std::fmt::Display) -> SettingsError {
    SettingsError::new(WHAT, format!("line {line}: {detail}"))
}

/// UTF-16LE with BOM (regedit 5), UTF-8 with or without BOM, else Latin-1 (REGEDIT4 ANSI).
fn decode(bytes: &[u8]) -> Result<String, SettingsError> {
    if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        if !rest.len().is_multiple_of(2) {
            return Err(SettingsError::new(
                WHAT,
                "UTF-16 text with an odd byte count",
            ));
        }
        let units = rest
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]));
        return char::decode_utf16(units)
            .collect::<Result<String, _>>()
            .map_err(|_| SettingsError::new(WHAT, "invalid UTF-16 text"));
    }
    let bytes = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(bytes);
    Ok(match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => bytes.iter().map(|&b| char::from(b)).collect(),
    })
}

/// Joins `\`-continued lines; each logical line keeps the 1-based number of its first line.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end();
        let (number, mut joined) = match pending.take() {
            Some((n, acc)) => (n, acc + line.trim_start()),
            None => (i + 1, line.to_string()),
        };
        if joined.ends_with('\\') && !joined.trim_start().starts_with('[') {
            joined.pop();
            pending = Some((number, joined));
        } else {
            out.push((number, joined));
        }
    }
    out.extend(pending);
    out
}

fn normalise_key(path: &str) -> String {
    let upper = path.trim().trim_end_matches('\\').to_ascii_uppercase();
    for (short, long) in [
        ("HKCU\\", "HKEY_CURRENT_USER\\"),
        ("HKLM\\", "HKEY_LOCAL_MACHINE\\"),
    ] {
        if let Some(rest) = upper.strip_prefix(short) {
            return format!("{long}{rest}");
        }
    }
    upper
}

/// `HKEY_USERS\S-1-5-21-…\<suffix>` (an export taken for another user, or by an admin).
fn is_users_key_for(path: &str, suffix: &str) -> bool {
    path.strip_prefix("HKEY_USERS\\")
        .and_then(|rest| rest.split_once('\\'))
        .is_some_and(|(_, rest)| rest == suffix)
}

/// `"name"=data` or `@=data` → (name, data); the name may contain escaped quotes and `=`.
fn split_value_line(line: &str) -> Result<(String, &str), String> {
    if let Some(data) = line.strip_prefix("@=") {
        return Ok((String::new(), data));
    }
    let quoted = line
        .strip_prefix('"')
        .ok_or("expected \"name\"=value or [key]")?;
    let (name, rest) = unquote(quoted)?;
    let data = rest
        .trim_start()
        .strip_prefix('=')
        .ok_or("expected '=' after the value name")?;
    Ok((name, data.trim()))
}

/// Reads a quoted string body (after the opening quote) up to its closing quote.
fn unquote(s: &str) -> Result<(String, &str), String> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &s[i + 1..])),
            '\\' => match chars.next() {
                Some((_, e @ ('\\' | '"'))) => out.push(e),
                Some((_, 'n')) => out.push('\n'),
                Some((_, e)) => return Err(format!("unknown escape \\{e}")),
                None => return Err("unterminated escape".into()),
            },
            c => out.push(c),
        }
    }
    Err("unterminated string".into())
}

/// A value's data; `None` for a deletion (`-`).
fn parse_data(data: &str, unicode: bool) -> Result<Option<RegValue>, String> {
    if data == "-" {
        return Ok(None);
    }
    if let Some(body) = data.strip_prefix('"') {
        let (s, rest) = unquote(body)?;
        if !rest.trim().is_empty() {
            return Err(format!("junk after string: {rest:?}"));
        }
        return Ok(Some(RegValue::String(s)));
    }
    if let Some(hex) = strip_prefix_ci(data, "dword:") {
        let hex = hex.trim();
        if hex.is_empty() || hex.len() > 8 {
            return Err(format!("dword {hex:?} is not 1-8 hex digits"));
        }
        let n = u32::from_str_radix(hex, 16).map_err(|_| format!("bad dword {hex:?}"))?;
        return Ok(Some(RegValue::Dword(n)));
    }
    if let Some(bytes) = strip_prefix_ci(data, "hex:") {
        return Ok(Some(RegValue::Binary(parse_hex_bytes(bytes)?)));
    }
    if let Some(typed) = strip_prefix_ci(data, "hex(") {
        let (kind, bytes) = typed.split_once("):").ok_or("expected hex(n):")?;
        let kind = u32::from_str_radix(kind, 16).map_err(|_| format!("bad type hex({kind})"))?;
        return typed_value(kind, parse_hex_bytes(bytes)?, unicode).map(Some);
    }
    Err(format!("unknown value data {data:?}"))
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn parse_hex_bytes(s: &str) -> Result<Vec<u8>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .map(|b| {
            if b.len() > 2 {
                return Err(format!("bad hex byte {b:?}"));
            }
            u8::from_str_radix(b, 16).map_err(|_| format!("bad hex byte {b:?}"))
        })
        .collect()
}

/// `hex(2)` (REG_EXPAND_SZ) becomes a string, `hex(3)` binary, `hex(4)` a DWORD; others stay raw.
fn typed_value(kind: u32, bytes: Vec<u8>, unicode: bool) -> Result<RegValue, String> {
    match kind {
        2 if unicode => {
            let units: Vec<u16> = bytes
                .chunks(2)
                .map(|c| u16::from_le_bytes([c[0], *c.get(1).unwrap_or(&0)]))
                .collect();
            let s = String::from_utf16(&units).map_err(|_| "invalid UTF-16 in hex(2)")?;
            Ok(RegValue::String(s.trim_end_matches('\0').to_string()))
        }
        2 => Ok(RegValue::String(
            bytes
                .iter()
                .map(|&b| char::from(b))
                .collect::<String>()
                .trim_end_matches('\0')
                .to_string(),
        )),
        3 => Ok(RegValue::Binary(bytes)),
        4 if bytes.len() == 4 => Ok(RegValue::Dword(u32::from_le_bytes([
            bytes[0], bytes[1], bytes[2], bytes[3],
        ]))),
        _ => Ok(RegValue::Other(kind, bytes)),
    }
}

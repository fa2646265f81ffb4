//! The install plan, platform-neutral and pure (docs/ARCHITECTURE.md, Layering: `desktop`): from the
//! registry values found now to the list of [`Action`]s `exoproxy install` takes, and from the saved
//! [`InstallState`] to the actions `exoproxy uninstall` takes to put every value back byte for byte.
//!
//! What install changes, all per user (HKCU, `CurrentUser\Root`), nothing that needs elevation:
//! - the `Run` key value `exoproxy`: started at logon through `conhost.exe --headless`, so no console
//!   window appears (README, "Install on Windows");
//! - Internet Settings: `AutoConfigURL` = the PAC exoproxy serves, `ProxyEnable` = 0 (the PAC alone
//!   decides); `ProxyServer` and `ProxyOverride` are saved, not changed;
//! - the local CA in the user's Root store.
//!
//! The four Internet Settings values are saved first (type and bytes, or "absent"), and the proxy
//! settings they held become exoproxy's own upstream ([`upstream_toml`]), so exoproxy never reads the
//! settings that now point at itself.

use serde::{Deserialize, Serialize};

/// The per-user logon key (under HKCU).
pub const RUN_KEY: &str = r"Software\Microsoft\Windows\CurrentVersion\Run";
/// The value under [`RUN_KEY`].
pub const RUN_VALUE: &str = "exoproxy";
/// The user's Internet Settings (under HKCU): what WinINet, WinRM's `IEConfig` and .NET read.
pub const INET_KEY: &str = r"Software\Microsoft\Windows\CurrentVersion\Internet Settings";
/// The Internet Settings values install saves before it changes any of them.
pub const SAVED_VALUES: [&str; 4] = [
    "ProxyEnable",
    "ProxyServer",
    "ProxyOverride",
    "AutoConfigURL",
];

/// `REG_SZ`.
pub const REG_SZ: u32 = 1;
/// `REG_DWORD`.
pub const REG_DWORD: u32 = 4;

/// A registry value exactly as stored: its type and its bytes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegData {
    /// The `REG_*` type.
    pub kind: u32,
    /// The raw bytes (UTF-16LE with its terminating NUL for strings), hex in the state file.
    #[serde(with = "hex_bytes")]
    pub bytes: Vec<u8>,
}

/// One value as found before install; `data: None` means it did not exist (uninstall deletes it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedValue {
    /// The key under HKCU.
    pub key: String,
    /// The value name.
    pub name: String,
    /// What was there, or `None`.
    pub data: Option<RegData>,
}

/// What install saved (`install.json` in the state dir): enough for uninstall to restore everything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallState {
    /// Every value install changed, as it was before.
    pub saved: Vec<SavedValue>,
    /// The CA certificate added to `CurrentUser\Root` (DER, hex), to remove the same one.
    #[serde(with = "hex_bytes")]
    pub ca_der: Vec<u8>,
    /// The configuration file install created (removed again), if it created one.
    pub created_config: Option<String>,
}

/// One change, printed by `--dry-run` and carried out otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write the saved state (first, before anything changes).
    SaveState(InstallState),
    /// Write a configuration file that does not exist yet.
    WriteConfig { path: String, text: String },
    /// Set a value under HKCU.
    Set {
        key: String,
        name: String,
        data: RegData,
    },
    /// Delete a value under HKCU (absent is fine).
    Delete { key: String, name: String },
    /// Add the CA to `CurrentUser\Root` (Windows asks the user to confirm).
    TrustCa { der: Vec<u8> },
    /// Remove the CA from `CurrentUser\Root`.
    UntrustCa { der: Vec<u8> },
    /// Remove a file install created.
    RemoveFile { path: String },
}

/// What install needs to know beyond the registry.
#[derive(Debug, Clone)]
pub struct InstallInput {
    /// The exe to start at logon (absolute).
    pub exe: String,
    /// The served PAC, e.g. `http://127.0.0.1:8765/proxy.pac`.
    pub pac_url: String,
    /// The CA certificate (DER).
    pub ca_der: Vec<u8>,
    /// `exoproxy.toml` in the state dir, and whether it exists.
    pub config_path: String,
    pub config_exists: bool,
    /// `install.json` in the state dir, and whether it exists (then install refuses).
    pub state_path: String,
    pub state_exists: bool,
}

/// Why there is no plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A previous install's state is still there: its saved values would be overwritten by ours.
    #[error("already installed ({0} exists): run `exoproxy uninstall` first")]
    AlreadyInstalled(String),
    /// Uninstall without a saved state.
    #[error("not installed: {0} does not exist, nothing to restore")]
    NotInstalled(String),
}

// === install ===

/// The install actions, given the current value of each of [`SAVED_VALUES`] (same order).
pub fn install(
    input: &InstallInput,
    current: &[Option<RegData>],
) -> Result<Vec<Action>, PlanError> {
    if input.state_exists {
        return Err(PlanError::AlreadyInstalled(input.state_path.clone()));
    }
    let mut saved: Vec<SavedValue> = SAVED_VALUES
        .iter()
        .zip(current.iter().chain(std::iter::repeat(&None)))
        .map(|(name, data)| SavedValue {
            key: INET_KEY.into(),
            name: (*name).into(),
            data: data.clone(),
        })
        .collect();
    saved.push(SavedValue {
        key: RUN_KEY.into(),
        name: RUN_VALUE.into(),
        data: None,
    });
    let created_config = (!input.config_exists).then(|| input.config_path.clone());
    let mut actions = vec![Action::SaveState(InstallState {
        saved: saved.clone(),
        ca_der: input.ca_der.clone(),
        created_config: created_config.clone(),
    })];
    if let Some(path) = created_config {
        let text = upstream_toml(&saved, &input.pac_url);
        actions.push(Action::WriteConfig { path, text });
    }
    actions.push(set(RUN_KEY, RUN_VALUE, string(&logon_command(&input.exe))));
    actions.push(Action::TrustCa {
        der: input.ca_der.clone(),
    });
    actions.push(set(INET_KEY, "AutoConfigURL", string(&input.pac_url)));
    actions.push(set(INET_KEY, "ProxyEnable", dword(0)));
    Ok(actions)
}

/// The logon command: `conhost.exe --headless` gives the console program a console without a window.
pub fn logon_command(exe: &str) -> String {
    format!("conhost.exe --headless \"{exe}\" run")
}

/// The `[upstream]` section that replaces the saved settings as exoproxy's own upstream: their PAC
/// (unless it is ours), else their manual proxy and bypass when enabled, else DIRECT.
pub fn upstream_toml(saved: &[SavedValue], our_pac: &str) -> String {
    let value = |name: &str| {
        saved
            .iter()
            .find(|s| s.key == INET_KEY && s.name == name)
            .and_then(|s| s.data.as_ref())
    };
    let text = |name: &str| {
        value(name)
            .and_then(RegData::as_string)
            .filter(|s| !s.is_empty())
    };
    let header = "# Written by `exoproxy install` from the Internet Settings it replaced; removed by uninstall.\n[upstream]\n";
    if let Some(pac) = text("AutoConfigURL").filter(|p| p != our_pac) {
        return format!("{header}source = \"pac\"\npac = {}\n", quote(&pac));
    }
    let enabled = value("ProxyEnable").and_then(RegData::as_dword) == Some(1);
    match text("ProxyServer")
        .filter(|_| enabled)
        .and_then(|s| https_proxy(&s))
    {
        Some(proxy) => {
            let bypass: Vec<String> = text("ProxyOverride")
                .unwrap_or_default()
                .split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(quote)
                .collect();
            format!(
                "{header}source = \"static\"\nproxies = [{}]\nbypass = [{}]\n",
                quote(&format!("http://{proxy}")),
                bypass.join(", ")
            )
        }
        None => format!("{header}source = \"direct\"\n"),
    }
}

/// The proxy for https from an IE `ProxyServer` value: `host:port`, or the `https=` entry of a
/// per-scheme map (else its `http=` entry).
fn https_proxy(server: &str) -> Option<String> {
    if !server.contains('=') {
        return Some(server.trim().trim_start_matches("http://").to_string());
    }
    let entry = |scheme: &str| {
        server.split(';').find_map(|e| {
            let (s, p) = e.split_once('=')?;
            (s.trim().eq_ignore_ascii_case(scheme)).then(|| p.trim().to_string())
        })
    };
    entry("https").or_else(|| entry("http"))
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

// === uninstall ===

/// The uninstall actions: every saved value back (or deleted if it was absent), the CA out of the
/// store, the created config and the state file removed (last, so a failed uninstall can be re-run).
pub fn uninstall(state: Option<&InstallState>, state_path: &str) -> Result<Vec<Action>, PlanError> {
    let state = state.ok_or_else(|| PlanError::NotInstalled(state_path.to_string()))?;
    let mut actions: Vec<Action> = state
        .saved
        .iter()
        .map(|s| match &s.data {
            Some(data) => set(&s.key, &s.name, data.clone()),
            None => Action::Delete {
                key: s.key.clone(),
                name: s.name.clone(),
            },
        })
        .collect();
    actions.push(Action::UntrustCa {
        der: state.ca_der.clone(),
    });
    if let Some(path) = &state.created_config {
        actions.push(Action::RemoveFile { path: path.clone() });
    }
    actions.push(Action::RemoveFile {
        path: state_path.to_string(),
    });
    Ok(actions)
}

// === values ===

fn set(key: &str, name: &str, data: RegData) -> Action {
    Action::Set {
        key: key.into(),
        name: name.into(),
        data,
    }
}

/// A `REG_SZ` value: UTF-16LE with its terminating NUL, as the registry stores it.
pub fn string(s: &str) -> RegData {
    let bytes = s
        .encode_utf16()
        .chain([0])
        .flat_map(u16::to_le_bytes)
        .collect();
    RegData {
        kind: REG_SZ,
        bytes,
    }
}

/// A `REG_DWORD` value.
pub fn dword(v: u32) -> RegData {
    RegData {
        kind: REG_DWORD,
        bytes: v.to_le_bytes().to_vec(),
    }
}

impl RegData {
    /// The text of a `REG_SZ` / `REG_EXPAND_SZ` value (up to its first NUL).
    pub fn as_string(&self) -> Option<String> {
        if self.kind != REG_SZ && self.kind != 2 {
            return None;
        }
        let units: Vec<u16> = self
            .bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|u| *u != 0)
            .collect();
        String::from_utf16(&units).ok()
    }

    /// The number of a `REG_DWORD` value.
    pub fn as_dword(&self) -> Option<u32> {
        let bytes: [u8; 4] = self.bytes.as_slice().try_into().ok()?;
        (self.kind == REG_DWORD).then(|| u32::from_le_bytes(bytes))
    }
}

impl std::fmt::Debug for RegData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.as_string(), self.as_dword()) {
            (Some(s), _) => write!(f, "REG_SZ {s:?}"),
            (_, Some(n)) => write!(f, "REG_DWORD {n}"),
            _ => write!(f, "type {} hex:{}", self.kind, hex::encode(&self.bytes)),
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::SaveState(s) => {
                write!(f, "save the current values:")?;
                for v in &s.saved {
                    match &v.data {
                        Some(d) => write!(f, "\n    HKCU\\{}\\{} = {d:?}", v.key, v.name)?,
                        None => write!(f, "\n    HKCU\\{}\\{} (absent)", v.key, v.name)?,
                    }
                }
                Ok(())
            }
            Action::WriteConfig { path, text } => {
                write!(
                    f,
                    "write {path} (exoproxy's own upstream, from the saved values):"
                )?;
                text.lines().try_for_each(|l| write!(f, "\n    {l}"))
            }
            Action::Set { key, name, data } => write!(f, "set HKCU\\{key}\\{name} = {data:?}"),
            Action::Delete { key, name } => write!(f, "delete HKCU\\{key}\\{name}"),
            Action::TrustCa { der } => write!(
                f,
                "add the exoproxy CA ({} bytes) to CurrentUser\\Root (Windows asks you to confirm)",
                der.len()
            ),
            Action::UntrustCa { .. } => write!(f, "remove the exoproxy CA from CurrentUser\\Root"),
            Action::RemoveFile { path } => write!(f, "remove {path}"),
        }
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        hex::decode(text).map_err(serde::de::Error::custom)
    }
}

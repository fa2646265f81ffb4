//! Upstream proxy settings from the system: environment variables, WinHTTP and IE settings
//! (platform-neutral parsers; live reads behind `cfg(windows)`).
//!
//! Contract:
//! - Every source is turned into one value, [`SystemProxy`], by a sans-IO parser that runs (and is
//!   tested) on every platform: the WinHTTP/IE binary blob ([`blob`]), the IE per-user registry values
//!   ([`ie`]), `netsh winhttp show proxy` output ([`netsh`]), `.reg` exports ([`regfile`]) and
//!   environment variables ([`mod@env`]). Only `windows` (cfg(windows)) touches the OS, and it feeds the same parsers.
//! - Parsers are strict: malformed input is a [`SettingsError`] that says which source and what was
//!   wrong, never a panic and never a silent guess (a lying length in a blob is an error).
//! - Bypass entries are returned raw, in WinHTTP/IE syntax (`<local>`, `*.corp`, `10.*`, CIDR); the
//!   route rules compile them.
//! - [`select()`] picks one source (`direct`, `static`, `env`, `pac`, `winhttp`, `ie`, `auto`) and
//!   yields either static hops plus bypass or a PAC URL; [`SettingsWatcher`] re-reads on an interval and when the
//!   machine's addresses change, publishing snapshots on a `tokio::sync::watch` channel (FLT-13);
//!   [`live_watcher`] wires it to the live sources of a configured [`Source`].
//! - The proxy's own environment only matters when `source = "env"` is chosen (TLS-8): the env parser
//!   takes a lookup closure, and nothing here calls `std::env` except [`env::process_env`].
//! - Credentials found in a proxy URL are returned as [`UserInfo`] (redacting `Debug`) next to the
//!   endpoint, never inside a string that could be logged; a Windows proxy string that carries them
//!   is refused with a pointer to `[[upstream.credentials]]`.

pub mod blob;
pub mod env;
pub mod ie;
pub mod live;
pub mod netsh;
pub mod proxy_list;
pub mod regfile;
pub mod select;
pub mod watch;
#[cfg(windows)]
pub mod windows;

pub use live::{LiveConfig, live_watcher, read_and_select};
pub use select::{Selected, SettingsInputs, Source, select};
pub use watch::{SettingsSnapshot, SettingsWatcher};

use crate::target::{ProxyEndpoint, Scheme, UserInfo};

/// Proxy settings read from one system source, before any policy is applied.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SystemProxy {
    /// Proxies for plain `http://` URLs, in the order they should be tried.
    pub http: Vec<ProxyEndpoint>,
    /// Proxies for `https://` URLs (our CONNECT tunnels), in order.
    pub https: Vec<ProxyEndpoint>,
    /// Raw bypass entries in WinHTTP/IE syntax (`<local>`, `*.corp.example`, `10.*`, `10.0.0.0/8`).
    pub bypass: Vec<String>,
    /// PAC URL, when the source configures one (IE `AutoConfigURL`, blob flag 0x04).
    pub auto_config_url: Option<String>,
    /// WPAD auto-detection requested by the source; only honoured when explicitly enabled.
    pub auto_detect: bool,
    /// Credentials written in proxy URLs (the environment; the Windows settings refuse them), keyed
    /// by endpoint; `config` adds them to the upstream credentials for `source = "env"`.
    pub credentials: Vec<(ProxyEndpoint, UserInfo)>,
    /// Which reader produced this value (`"env"`, `"winhttp"`, `"ie"`, `"netsh"`, `"reg"`), for `why`.
    pub source: &'static str,
}

/// A system source could not be read or parsed; `what` names the source or field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {detail}")]
pub struct SettingsError {
    pub what: &'static str,
    pub detail: String,
}

// === impl SystemProxy ===

impl SystemProxy {
    /// An empty value (no proxy, nothing to bypass) attributed to `source`.
    pub fn empty(source: &'static str) -> SystemProxy {
        SystemProxy {
            source,
            ..SystemProxy::default()
        }
    }

    /// The proxies for a target reached by `scheme` (CONNECT tunnels count as https).
    pub fn proxies_for(&self, scheme: Scheme) -> &[ProxyEndpoint] {
        match scheme {
            Scheme::Http => &self.http,
            Scheme::Connect => &self.https,
        }
    }

    /// True when the source names at least one static proxy.
    pub fn has_proxy(&self) -> bool {
        !self.http.is_empty() || !self.https.is_empty()
    }
}

// === impl SettingsError ===

impl SettingsError {
    pub(crate) fn new(what: &'static str, detail: impl Into<String>) -> SettingsError {
        SettingsError {
            what,
            detail: detail.into(),
        }
    }
}

#[cfg(test)]
mod tests;

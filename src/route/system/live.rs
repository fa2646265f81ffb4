//! Glue between the readers and [`select()`]: reads the live sources a configured [`Source`] needs and
//! selects; [`live_watcher`] wraps that in a [`SettingsWatcher`] with the platform's address source.
//!
//! Only what the source needs is read: `static` and `pac` touch nothing, `ie`/`winhttp` read the
//! registry (Windows; elsewhere they are unavailable), and the process environment is read for `env`
//! only, or for `auto` when `env_in_auto` is explicitly set (TLS-8: the proxy's own `HTTPS_PROXY`
//! must not silently change where traffic goes). A failing read of a needed source is an error, so
//! the watcher keeps the previous settings instead of flipping to direct.

use crate::route::system::env::{from_env, process_env};
use crate::route::system::watch::system_addresses;
use crate::route::system::{
    Selected, SettingsError, SettingsInputs, SettingsWatcher, Source, SystemProxy, select,
};

/// What the live reader needs from config.
#[derive(Clone, Debug, Default)]
pub struct LiveConfig {
    pub source: Source,
    /// Static proxies, bypass, PAC URL and `allow_wpad` from config; system fields are filled live.
    pub config: SettingsInputs,
    /// Let `auto` fall back to the environment (off by default, TLS-8).
    pub env_in_auto: bool,
}

/// Reads the sources `live.source` consults and selects. `env` is the environment lookup
/// ([`process_env`] in production).
pub fn read_and_select(
    live: &LiveConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Selected, SettingsError> {
    let mut inputs = live.config.clone();
    let auto = live.source == Source::Auto;
    if auto || live.source == Source::Ie {
        inputs.ie = read_ie()?;
    }
    if auto || live.source == Source::WinHttp {
        inputs.winhttp = read_winhttp()?;
    }
    if live.source == Source::Env || (auto && live.env_in_auto) {
        inputs.env = Some(from_env(env)?);
    }
    Ok(select(live.source, &inputs))
}

/// A watcher over the live sources, the process environment and the platform's addresses.
pub fn live_watcher(live: LiveConfig) -> SettingsWatcher {
    SettingsWatcher::new(
        Box::new(move || read_and_select(&live, &process_env)),
        Box::new(system_addresses),
    )
}

/// The current user's IE settings; `None` off Windows (also read by `exoproxy doctor`).
pub fn read_ie() -> Result<Option<SystemProxy>, SettingsError> {
    #[cfg(windows)]
    {
        super::windows::read_ie().map(Some)
    }
    #[cfg(not(windows))]
    {
        Ok(None)
    }
}

/// The machine's WinHTTP settings; `None` off Windows (also read by `exoproxy doctor`).
pub fn read_winhttp() -> Result<Option<SystemProxy>, SettingsError> {
    #[cfg(windows)]
    {
        super::windows::read_winhttp().map(Some)
    }
    #[cfg(not(windows))]
    {
        Ok(None)
    }
}

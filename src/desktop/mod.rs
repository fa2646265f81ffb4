//! `exoproxy install` / `uninstall`: wire the user's desktop to exoproxy and back, per user, without
//! admin rights. [`plan`] decides (pure, tested on every OS); [`apply`] carries the actions out through
//! a [`Desktop`], the small OS surface (HKCU values, the user's Root store, files). The Windows
//! implementation is `windows.rs`; elsewhere there is none and only `--dry-run` works
//! (docs/ARCHITECTURE.md, Layering: `desktop` imports nothing from the crate).

pub mod plan;
#[cfg(test)]
mod tests;
#[cfg(windows)]
mod windows;

use std::io::{self, Write};

use plan::{Action, InstallState, RegData};

/// The OS calls install and uninstall make.
pub trait Desktop {
    /// A value under HKCU, or `None` when it does not exist.
    fn read(&self, key: &str, name: &str) -> io::Result<Option<RegData>>;
    /// Sets a value under HKCU (creating the key).
    fn write(&mut self, key: &str, name: &str, data: &RegData) -> io::Result<()>;
    /// Deletes a value under HKCU; absent is success.
    fn delete(&mut self, key: &str, name: &str) -> io::Result<()>;
    /// Adds a certificate (DER) to `CurrentUser\Root`.
    fn trust(&mut self, der: &[u8]) -> io::Result<()>;
    /// Removes that certificate from `CurrentUser\Root`; absent is success.
    fn untrust(&mut self, der: &[u8]) -> io::Result<()>;
}

/// The Windows implementation.
#[cfg(windows)]
pub fn system() -> Option<Box<dyn Desktop>> {
    Some(Box::new(windows::Registry))
}

/// None on other systems: only `--dry-run` works there.
#[cfg(not(windows))]
pub fn system() -> Option<Box<dyn Desktop>> {
    None
}

/// Whether the certificate `der` is in `CurrentUser\Root` (`exoproxy doctor`); `None` off Windows,
/// where that store does not exist.
pub fn in_user_root(der: &[u8]) -> Option<io::Result<bool>> {
    #[cfg(windows)]
    {
        Some(windows::in_user_root(der))
    }
    #[cfg(not(windows))]
    {
        let _ = der;
        None
    }
}

/// The current value of each of [`plan::SAVED_VALUES`]; with no `desktop` (not Windows), none exist.
pub fn current_values(desktop: Option<&dyn Desktop>) -> io::Result<Vec<Option<RegData>>> {
    plan::SAVED_VALUES
        .iter()
        .map(|name| match desktop {
            Some(d) => d.read(plan::INET_KEY, name),
            None => Ok(None),
        })
        .collect()
}

/// Reads `install.json`; `None` when it does not exist.
pub fn read_state(path: &std::path::Path) -> io::Result<Option<InstallState>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Carries out `actions` in order, printing each to `out` before it is made (so the line about the
/// Root store's confirmation dialog appears before the dialog). Stops at the first failure.
pub fn apply(
    actions: &[Action],
    desktop: &mut dyn Desktop,
    state_path: &std::path::Path,
    out: &mut dyn Write,
) -> io::Result<()> {
    for action in actions {
        writeln!(out, "{action}")?;
        out.flush()?;
        match action {
            Action::SaveState(state) => {
                let json = serde_json::to_vec_pretty(state).map_err(io::Error::other)?;
                if let Some(dir) = state_path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                std::fs::write(state_path, json)?;
            }
            Action::WriteConfig { path, text } => std::fs::write(path, text)?,
            Action::Set { key, name, data } => desktop.write(key, name, data)?,
            Action::Delete { key, name } => desktop.delete(key, name)?,
            Action::TrustCa { der } => desktop.trust(der)?,
            Action::UntrustCa { der } => desktop.untrust(der)?,
            Action::RemoveFile { path } => match std::fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            },
        }
    }
    Ok(())
}

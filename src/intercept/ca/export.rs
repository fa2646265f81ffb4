//! `ca export`: write the CA certificate where the user wants it and say exactly how to trust it.
//!
//! Contract: the PEM is written (it is public, no special mode), the path is made absolute, and the
//! returned [`TrustInstructions`] holds ready-to-paste lines for PowerShell, cmd, curl and the Linux
//! system stores, each with the path quoted for its shell.

use std::fmt;
use std::path::{Path, PathBuf};

use super::CaError;

/// The exported file and the commands that trust it, one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustInstructions {
    /// Absolute path of the written PEM file.
    pub path: PathBuf,
    /// `(what the line is for, the command)` in display order.
    pub lines: Vec<(&'static str, String)>,
}

// === impl TrustInstructions ===

impl TrustInstructions {
    /// The instructions for a CA certificate at `path` (absolute).
    pub fn for_path(path: &Path) -> Self {
        let shown = path.display().to_string();
        let ps = powershell_quote(&shown);
        let cmd = format!("\"{shown}\"");
        let sh = posix_quote(&shown);
        let lines = vec![
            (
                "Windows PowerShell (current user)",
                format!(
                    "Import-Certificate -FilePath {ps} -CertStoreLocation Cert:\\CurrentUser\\Root"
                ),
            ),
            (
                "Windows cmd (current user)",
                format!("certutil -user -addstore Root {cmd}"),
            ),
            (
                "curl",
                format!("curl --cacert {sh} https://outlook.office365.com/"),
            ),
            (
                "Debian/Ubuntu system store",
                format!(
                    "sudo cp {sh} /usr/local/share/ca-certificates/exoproxy-ca.crt && sudo update-ca-certificates"
                ),
            ),
            (
                "Fedora/RHEL system store",
                format!(
                    "sudo cp {sh} /etc/pki/ca-trust/source/anchors/exoproxy-ca.pem && sudo update-ca-trust"
                ),
            ),
        ];
        Self {
            path: path.to_path_buf(),
            lines,
        }
    }
}

impl fmt::Display for TrustInstructions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "CA certificate written to {}", self.path.display())?;
        writeln!(f, "Trust it with one of:")?;
        for (label, line) in &self.lines {
            writeln!(f, "  # {label}")?;
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

/// Writes `pem` to `path` and returns the instructions for the absolute path.
pub(super) fn export_pem(pem: &str, path: &Path) -> Result<TrustInstructions, CaError> {
    let io = |source| CaError::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(path, pem).map_err(io)?;
    let absolute = std::path::absolute(path).map_err(io)?;
    Ok(TrustInstructions::for_path(&absolute))
}

/// PowerShell single-quoted string: only `'` needs doubling.
fn powershell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// POSIX shell single-quoted string: close, escaped quote, reopen.
fn posix_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

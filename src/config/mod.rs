//! Configuration in two stages: [`mod@file`] (serde mirror of the TOML, `deny_unknown_fields`) and
//! [`validate`] (typed per-module configs; every error reported at once with its key path and line).
//!
//! Precedence, highest first: command line > environment (`EXOPROXY_*`, bound to the same flags) >
//! config file > built-in defaults. No file is needed to run; a missing default file is not an error,
//! a missing file named with `--config` is.

pub mod file;
pub mod intercept;
pub mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use intercept::InterceptConfig;

use crate::route::RouteConfig;
use crate::upstream::UpstreamConfig;

/// The typed configuration the proxy runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: Vec<SocketAddr>,
    pub max_connections: usize,
    pub state_dir: PathBuf,
    pub route: RouteConfig,
    pub upstream: UpstreamConfig,
    /// TLS interception, token accounts, upstream roots.
    pub intercept: InterceptConfig,
    /// tracing filter (`info`, `exoproxy=debug`, ...).
    pub log_level: String,
    /// Where `run` writes its log (`[log] file`).
    pub log_file: LogFile,
}

/// `[log] file`, resolved against the state dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogFile {
    /// Unset: a file in `<state_dir>/logs/` only when there is no console (`app::log`).
    Auto(PathBuf),
    /// `false`: always stderr.
    Off,
    /// `true` or a path: always this file (rotated daily beside it).
    At(PathBuf),
}

/// The default log file: `<state_dir>/logs/exoproxy.log` (the rotated files are named
/// `exoproxy.YYYY-MM-DD.log`).
pub fn default_log_file(state_dir: &Path) -> PathBuf {
    state_dir.join("logs").join("exoproxy.log")
}

/// Values from the command line or environment that override the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Vec<String>,
    pub upstream: Vec<String>,
    pub bypass: Option<String>,
    pub connect_to: Vec<String>,
    pub state_dir: Option<PathBuf>,
    pub log_level: Option<String>,
    /// `--upstream-ca FILE`: extra roots for upstream TLS.
    pub upstream_ca: Option<PathBuf>,
}

/// One problem in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path (`upstream.proxies`) or the flag (`--listen`); empty for syntax errors.
    pub path: String,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.path.is_empty()) {
            (Some(l), false) => write!(f, "line {l}: {}: {}", self.path, self.message),
            (Some(l), true) => write!(f, "line {l}: {}", self.message),
            (None, false) => write!(f, "{}: {}", self.path, self.message),
            (None, true) => f.write_str(&self.message),
        }
    }
}

/// Parses TOML text into the serde mirror; a syntax or schema error carries its line.
pub fn parse(text: &str) -> Result<file::FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| {
            text.as_bytes()[..s.start.min(text.len())]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1
        });
        ConfigError {
            path: String::new(),
            line,
            message: e.message().trim().to_string(),
        }
    })
}

/// Loads and validates: the file named by `path` (if any), then overrides, then defaults.
/// Errors are prefixed with the file name, ready to print one per line.
pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, Vec<String>> {
    let env = |k: &str| std::env::var(k).ok();
    if let Some(p) = path {
        crate::platform::check_not_writable_by_others(p).map_err(|e| vec![e])?; // CFG-3
    }
    let (text, name) = match path {
        Some(p) => match std::fs::read_to_string(p) {
            Ok(t) => (Some(t), p.display().to_string()),
            Err(e) => return Err(vec![format!("{}: cannot read: {e}", p.display())]),
        },
        None => (None, "built-in defaults".to_string()),
    };
    let file = match text.as_deref().map(parse).transpose() {
        Ok(f) => f.unwrap_or_default(),
        Err(e) => return Err(vec![format!("{name}: {e}")]),
    };
    validate::validate(file, overrides, text.as_deref(), &env)
        .map_err(|errs| errs.iter().map(|e| format!("{name}: {e}")).collect())
}

#[cfg(test)]
mod tests;

//! Configuration in two stages: [`mod@file`] (serde mirror of the TOML, `deny_unknown_fields`; every
//! unknown key and wrong type collected by `keys`) and [`validate`] (typed per-module configs; values
//! checked, not only parsed). Every error of both stages is reported at once with its key path and
//! line. An environment variable that holds a secret and is not set is a warning
//! ([`MissingSecret`]) until a command that uses the secret runs.
//!
//! Precedence, highest first: command line > environment (`EXOPROXY_*`, bound to the same flags) >
//! config file > built-in defaults. No file is needed to run; a missing default file is not an error,
//! a missing file named with `--config` is.

pub mod file;
pub mod intercept;
mod keys;
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
    /// `[timeouts] streaming_idle_secs`: the stream-idle limit of intercepted EWS requests
    /// (`Limits::streaming_idle`).
    pub streaming_idle: std::time::Duration,
    pub state_dir: PathBuf,
    pub route: RouteConfig,
    pub upstream: UpstreamConfig,
    /// TLS interception, token accounts, upstream roots.
    pub intercept: InterceptConfig,
    /// tracing filter (`info`, `exoproxy=debug`, ...).
    pub log_level: String,
    /// Environment variables named by the file that are not set: warnings for `config check` and
    /// the commands that do not use them, errors for those that do ([`Config::require_secrets`]).
    pub missing_secrets: Vec<MissingSecret>,
    /// Where `run` writes its log (`[log] file`).
    pub log_file: LogFile,
}

/// An environment variable named by `password_env`, `nt_hash_env`, `secret_env` or
/// `pfx_password_env` that is not set. The credentials or flow it feeds are left without it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingSecret {
    /// Key path, line and "environment variable X is not set".
    pub error: ConfigError,
    /// The account whose flow needs it; `None` for upstream proxy credentials.
    pub account: Option<String>,
}

/// Which secrets a command uses.
#[derive(Debug, Clone, Copy)]
pub enum SecretUse<'a> {
    /// The proxy: upstream credentials and every account's.
    Serve,
    /// Signing one account in (`login`, `token`): upstream credentials (the IdP may be reached
    /// through the upstream proxy) and that account's.
    Account(&'a str),
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

// === impl Config ===

impl Config {
    /// The missing environment variables that `what` needs, as errors ready to print.
    pub fn require_secrets(&self, what: SecretUse<'_>) -> Result<(), Vec<String>> {
        let needed: Vec<String> = self
            .missing_secrets
            .iter()
            .filter(|m| match (what, &m.account) {
                (SecretUse::Serve, _) | (_, None) => true,
                (SecretUse::Account(upn), Some(a)) => a.eq_ignore_ascii_case(upn),
            })
            .map(|m| m.error.to_string())
            .collect();
        if needed.is_empty() {
            Ok(())
        } else {
            Err(needed)
        }
    }
}

// === impl ConfigError ===

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

/// Parses TOML text into the serde mirror. A syntax error is the one error returned; every unknown
/// key and every value of the wrong type is kept in [`file::FileConfig::problems`] (with its key path
/// and line) and left out, so that [`validate::validate`] reports them with everything else at once.
pub fn parse(text: &str) -> Result<file::FileConfig, ConfigError> {
    let (mut file, problems) = keys::parse_all(text)?;
    file.problems = problems;
    Ok(file)
}

/// Loads and validates: the file named by `path` (if any), then overrides, then defaults.
/// Errors are prefixed with the file name, ready to print one per line.
pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, Vec<String>> {
    let checked = check(path, overrides);
    match checked.config {
        Some(config) if checked.errors.is_empty() => Ok(config),
        _ => Err(checked.errors),
    }
}

/// What `config check` prints: every error, and the warnings (environment variables that only the
/// commands using the secret need), each prefixed with the file name.
#[derive(Debug)]
pub struct Checked {
    /// The configuration, when there are no errors.
    pub config: Option<Config>,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

/// Like [`load`], but keeps the warnings for `config check`.
pub fn check(path: Option<&Path>, overrides: &Overrides) -> Checked {
    let env = |k: &str| std::env::var(k).ok();
    let failed = |errors: Vec<String>| Checked {
        config: None,
        errors,
        warnings: Vec::new(),
    };
    if let Some(p) = path
        && let Err(e) = crate::platform::check_not_writable_by_others(p)
    {
        return failed(vec![e]); // CFG-3
    }
    let (text, name) = match path {
        Some(p) => match std::fs::read_to_string(p) {
            Ok(t) => (Some(t), p.display().to_string()),
            Err(e) => return failed(vec![format!("{}: cannot read: {e}", p.display())]),
        },
        None => (None, "built-in defaults".to_string()),
    };
    let file = match text.as_deref().map(parse).transpose() {
        Ok(f) => f.unwrap_or_default(),
        Err(e) => return failed(vec![format!("{name}: {e}")]),
    };
    let prefixed = |e: &ConfigError| format!("{name}: {e}");
    match validate::validate(file, overrides, text.as_deref(), &env) {
        Ok(config) => Checked {
            warnings: config
                .missing_secrets
                .iter()
                .map(|m| prefixed(&m.error))
                .collect(),
            config: Some(config),
            errors: Vec::new(),
        },
        Err(errors) => failed(errors.iter().map(prefixed).collect()),
    }
}

#[cfg(test)]
mod tests;

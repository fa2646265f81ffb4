//! The environment variables the configuration names as holding secrets (`password_env`,
//! `nt_hash_env`, `secret_env`, `pfx_password_env`): read by this process, never inherited by the
//! processes it starts (the browser of the sign-in flow). docs/TESTING.md#sec-21.
//!
//! Contract:
//! - Every variable name that a loaded configuration names as a secret is remembered for the life
//!   of the process ([`remember`], called by the config loader), set or not.
//! - [`command`] is the one way the proxy starts another program: the remembered variables are
//!   removed from the child's environment.
//! - The proxy does not remove them from its own environment: on Linux `/proc/<pid>/environ` shows
//!   the environment the process was started with, which `unsetenv` does not erase, and it is
//!   readable only by the same user and root (the same protection as the process memory, which
//!   holds the secret anyway). The environment is the channel the admin chose; the command line
//!   never carries a secret (no flag takes one).

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::process::Command;
use std::sync::Mutex;

static NAMES: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Remembers that `var` holds a secret.
pub(crate) fn remember(var: &str) {
    if let Ok(mut names) = NAMES.lock() {
        names.insert(var.to_string());
    }
}

/// The variables remembered so far.
pub(crate) fn names() -> Vec<String> {
    NAMES
        .lock()
        .map(|names| names.iter().cloned().collect())
        .unwrap_or_default()
}

/// A command for `program` whose environment lacks every remembered secret variable.
pub(crate) fn command(program: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new(program);
    for name in names() {
        command.env_remove(name);
    }
    command
}

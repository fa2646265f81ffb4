//! OS protection of secrets at rest, one seam per concern so the callers' logic is the same everywhere.
//!
//! Contract:
//! - [`restrict_dir_to_owner`]: on Windows, gives a folder a protected DACL (no inheritance from the
//!   parent) granting full control to the current user and SYSTEM only, inherited by everything created
//!   inside it (SDDL from [`owner_only_sddl`]). Failure is a warning that says what to check, never an
//!   error: the folder then keeps the ACL inherited from the user profile. On Unix it does nothing
//!   (callers set 0700 / 0600 modes themselves).
//! - [`KeyProtector`]: protects a secret's bytes before they are written and unprotects them after they
//!   are read. [`OsProtector`] is DPAPI on Windows (current-user scope, `CRYPTPROTECT_UI_FORBIDDEN`,
//!   a fixed description and entropy per [`Purpose`](protect::Purpose)) and the identity elsewhere,
//!   so a Unix file holds exactly the bytes it always did. Stored bytes that do not unprotect (another
//!   user's file, a copied profile, a file written before protection existed) are an `Err` with a
//!   reason; the caller decides (the token cache treats the key as unusable, the CA accepts a legacy
//!   plain PEM and protects it).
//! - [`private_dir`], [`write_private_atomic`], [`create_private_atomic`]: the one secret-file layer
//!   (owner-only folders, atomic owner-only files), used by the token cache, the CA files and the
//!   state dir alike (module `private`).
//! - [`check_not_writable_by_others`]: a config file or state dir that other users can change is
//!   refused with the command that fixes it (module `perms`).
//! - [`InstanceLock`]: one running proxy per state dir (module `instance`).
//! - `registry::read_value` (Windows): the one registry reader, for the proxy settings and the
//!   desktop install plan alike.
//! - [`secret_env`]: the environment variables that hold secrets never reach a process we start.
//! - The OS calls live in small `cfg(windows)` modules (`windows_acl`, `dpapi`); the SDDL text and the
//!   seam are platform-neutral and tested on Linux.

mod acl;
#[cfg(windows)]
mod dpapi;
mod instance;
mod perms;
mod private;
mod protect;
#[cfg(windows)]
pub(crate) mod registry;
pub(crate) mod secret_env;
#[cfg(windows)]
mod windows_acl;

#[cfg_attr(not(windows), allow(unused_imports))]
pub(crate) use acl::{owner_only_sddl, restrict_dir_to_owner};
pub(crate) use instance::{InstanceLock, record_bound, running};
pub(crate) use perms::check_not_writable_by_others;
pub(crate) use private::{
    create_private_atomic, pid_alive, private_dir, sweep_temp_files, write_private_atomic,
    write_private_atomic_checked,
};
#[cfg(test)]
pub(crate) use protect::test_support;
pub(crate) use protect::{CA_KEY, KeyProtector, OsProtector, TOKEN_CACHE_KEY};

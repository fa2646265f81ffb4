//! Refusing a configuration or state dir that other users can change (CFG-3 in docs/TESTING.md).
//!
//! The config file decides what is intercepted and where tokens go; the state dir holds the CA key
//! and the token cache. Whoever can write either can make the proxy hand them tokens, so
//! [`check_not_writable_by_others`] refuses, with the command that fixes it:
//! - Unix: the path, or the folder holding it, has a group or other write bit (a sticky folder such
//!   as `/tmp` is fine for the folder: others cannot replace a file they do not own there), or the
//!   path belongs to another user than us or root. Fix: `chmod go-w PATH`.
//! - Windows: an allow entry of the path's DACL grants write (data, append, DACL, owner, delete or
//!   the generic write/all rights) to anyone but the owner, the current user, SYSTEM and
//!   Administrators, or the path has no DACL at all (everyone may do everything). For the folder
//!   holding a file only the rights that replace a file count (delete a child, delete, DACL, owner,
//!   generic all), so a folder where everyone may add files (`C:\ProgramData`) is fine, like a sticky
//!   folder. Inherit-only entries do not apply to the path and are skipped. Fix: remove that entry
//!   (`icacls`).
//!
//! A path that does not exist is not refused here (the caller reports it, or creates it owner-only).

use std::path::Path;

/// `Err` with a message that names the problem and the fix when others can change `path` (module doc).
pub(crate) fn check_not_writable_by_others(path: &Path) -> Result<(), String> {
    if !path.exists() {
        return Ok(());
    }
    check_path(path)?;
    // A file others cannot write can still be replaced through a folder they can write.
    if path.is_file()
        && let Some(dir) = path.parent()
    {
        check_folder(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        })?;
    }
    Ok(())
}

#[cfg(unix)]
fn check_path(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(writable_by_others(path, mode));
    }
    match current_uid() {
        Some(uid) if meta.uid() != uid && meta.uid() != 0 => Err(format!(
            "{} belongs to another user (uid {}), who can change it; it decides what exoproxy \
             intercepts and where tokens go. Use a copy you own (`cp` it, then point --config or \
             --state-dir at the copy)",
            path.display(),
            meta.uid()
        )),
        _ => Ok(()),
    }
}

#[cfg(unix)]
fn check_folder(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt as _;
    let Ok(meta) = std::fs::metadata(dir) else {
        return Ok(());
    };
    let mode = meta.permissions().mode() & 0o7777;
    let sticky = mode & 0o1000 != 0;
    if mode & 0o022 != 0 && !sticky {
        return Err(writable_by_others(dir, mode));
    }
    Ok(())
}

#[cfg(unix)]
fn writable_by_others(path: &Path, mode: u32) -> String {
    format!(
        "{} is writable by other users (mode {mode:o}): whoever can change it decides what exoproxy \
         intercepts and where tokens go. Fix it with `chmod go-w {}`",
        path.display(),
        path.display()
    )
}

/// Our effective uid without libc: `/proc/self` belongs to it (Linux). Elsewhere unknown.
#[cfg(unix)]
fn current_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

#[cfg(windows)]
fn check_path(path: &Path) -> Result<(), String> {
    check_rights(path, super::windows_acl::WRITE_RIGHTS)
}

#[cfg(windows)]
fn check_folder(dir: &Path) -> Result<(), String> {
    check_rights(dir, super::windows_acl::REPLACE_CHILD_RIGHTS)
}

#[cfg(windows)]
fn check_rights(path: &Path, rights: u32) -> Result<(), String> {
    match super::windows_acl::foreign_writers(path, rights) {
        Ok(writers) if writers.is_empty() => Ok(()),
        Ok(writers) => Err(format!(
            "{} can be changed by other users ({}): whoever can change it decides what exoproxy \
             intercepts and where tokens go. Remove their write access (Properties > Security, or \
             `icacls \"{}\" /remove:g <name>`)",
            path.display(),
            writers.join(", "),
            path.display()
        )),
        Err(reason) => Err(format!(
            "cannot read who may change {}: {reason}",
            path.display()
        )),
    }
}

#[cfg(test)]
#[cfg(unix)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn chmod(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn cfg3_owner_only_and_read_only_for_others_pass() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("exoproxy.toml");
        fs::write(&file, "").unwrap();
        for mode in [0o600, 0o644, 0o444] {
            chmod(&file, mode);
            assert_eq!(check_not_writable_by_others(&file), Ok(()), "{mode:o}");
        }
        chmod(tmp.path(), 0o755);
        assert_eq!(check_not_writable_by_others(tmp.path()), Ok(()));
    }

    #[test]
    fn cfg3_group_or_other_write_is_refused_with_the_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("exoproxy.toml");
        fs::write(&file, "").unwrap();
        for mode in [0o666, 0o620, 0o602, 0o777] {
            chmod(&file, mode);
            let err = check_not_writable_by_others(&file).unwrap_err();
            assert!(
                err.contains(&format!("chmod go-w {}", file.display())),
                "{err}"
            );
            assert!(err.contains(&format!("mode {mode:o}")), "{err}");
        }
    }

    #[test]
    fn cfg3_a_folder_others_can_write_is_refused_unless_sticky() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("conf");
        fs::create_dir(&dir).unwrap();
        let file = dir.join("exoproxy.toml");
        fs::write(&file, "").unwrap();
        chmod(&file, 0o600);
        chmod(&dir, 0o777);
        let err = check_not_writable_by_others(&file).unwrap_err();
        assert!(
            err.contains(&format!("chmod go-w {}", dir.display())),
            "{err}"
        );
        assert!(
            check_not_writable_by_others(&dir).is_err(),
            "the folder itself"
        );
        chmod(&dir, 0o1777);
        assert_eq!(check_not_writable_by_others(&file), Ok(()));
    }

    #[test]
    fn cfg3_a_missing_path_is_left_to_the_caller() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(
            check_not_writable_by_others(&tmp.path().join("nope")),
            Ok(())
        );
    }
}

//! The one secret-file layer: owner-only folders and owner-only files replaced atomically. The token
//! cache (`tokens/`), the local CA's files and the state dir all go through it (docs/ARCHITECTURE.md,
//! security model).
//!
//! Contract:
//! - [`private_dir`] creates a folder (and missing parents) owner-only: mode 0700 on Unix, where an
//!   existing folder with a looser mode is tightened with a warning; on Windows an owner-only
//!   protected DACL ([`restrict_dir_to_owner`](super::restrict_dir_to_owner)). A path that is a
//!   symbolic link (or anything but a folder) is refused, never followed: a link planted there would
//!   send the secrets somewhere else.
//! - [`write_private_atomic`] replaces a file so that a reader sees the old bytes or the new ones,
//!   never part of them: the bytes go to a temp file `.<name>.tmp.<pid>.<nanos>` in the same folder
//!   (never a shared temp dir; the rename never crosses file systems), created 0600 on Unix from the
//!   first byte, written, fsynced, renamed over the file, and the folder is fsynced so the rename
//!   survives a power cut. A failed write removes its temp file and leaves the old file as it was.
//! - [`create_private_atomic`] is the same for a file that must never be replaced once it exists (a
//!   key two processes may create at once): the temp file is hard-linked into place, which fails with
//!   `AlreadyExists` when another writer won.
//! - A temp file left by a writer that died is harmless: readers only open final names. It may hold a
//!   secret, so [`sweep_temp_files`] deletes those whose writer's pid is gone.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The marker between a file's name and the writer's pid in a temp file's name.
const TEMP_MARKER: &str = ".tmp.";

/// Creates `dir` owner-only (see the module doc); refuses a symbolic link or a non-folder.
pub(crate) fn private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    // `create` accepts an existing link to a folder: look at the path itself before touching it.
    let meta = fs::symlink_metadata(dir)?;
    if meta.file_type().is_symlink() {
        return Err(io::Error::other(format!(
            "{} is a symbolic link: exoproxy keeps secrets only in a real folder (remove the link \
             or point the setting at the folder itself)",
            dir.display()
        )));
    }
    if !meta.is_dir() {
        return Err(io::Error::other(format!(
            "{} is not a folder",
            dir.display()
        )));
    }
    tighten_to_owner(dir, &meta)?;
    super::restrict_dir_to_owner(dir);
    Ok(())
}

#[cfg(unix)]
fn tighten_to_owner(dir: &Path, meta: &fs::Metadata) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(dir = %dir.display(), mode = format!("{mode:o}"),
            "folder was accessible to other users: fixed to 0700");
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn tighten_to_owner(_dir: &Path, _meta: &fs::Metadata) -> io::Result<()> {
    Ok(()) // the DACL set by `restrict_dir_to_owner` is the protection
}

/// Atomically replaces `path` with `bytes` through an owner-only temp file (see the module doc).
pub(crate) fn write_private_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_private_atomic_checked(path, bytes, || Ok(()))
}

/// [`write_private_atomic`] with `before_rename` run once the temp file is durable and before it
/// replaces `path`; an error from it abandons the write like any other (tests inject failures here).
pub(crate) fn write_private_atomic_checked(
    path: &Path,
    bytes: &[u8],
    before_rename: impl FnOnce() -> io::Result<()>,
) -> io::Result<()> {
    let tmp = temp_path(path)?;
    let result = write_new_private(&tmp, bytes)
        .and_then(|()| before_rename())
        .and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    sync_parent(path);
    Ok(())
}

/// Creates `path` with `bytes` unless it exists (`AlreadyExists`: another writer won); a reader never
/// sees part of the file. On a file system without hard links, falls back to an exclusive create of
/// `path` itself (a concurrent reader may then see it short).
pub(crate) fn create_private_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temp_path(path)?;
    write_new_private(&tmp, bytes).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(e),
        Err(_) => write_new_private(path, bytes)?,
    }
    sync_parent(path);
    Ok(())
}

/// Deletes the temp files in `dir` whose writer (the pid in the name) is no longer running.
pub(crate) fn sweep_temp_files(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let writer = temp_file_writer(&name);
        if writer.is_some_and(|pid| pid != std::process::id() && !pid_alive(pid)) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// The pid of the writer of a temp file named `.<name>.tmp.<pid>.<nanos>`; `None` for other names.
fn temp_file_writer(name: &str) -> Option<u32> {
    let (_, rest) = name.strip_prefix('.')?.rsplit_once(TEMP_MARKER)?;
    let (pid, nanos) = rest.split_once('.')?;
    nanos.bytes().all(|b| b.is_ascii_digit()).then_some(())?;
    pid.parse().ok()
}

/// Linux: `/proc/<pid>` exists. Elsewhere we cannot tell without OS calls: assume alive (the temp
/// file then stays until a sweep on Linux, or forever; it is owner-only either way).
pub(crate) fn pid_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

fn temp_path(path: &Path) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other(format!("{} names no file", path.display())))?;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let tmp = format!(
        ".{}{TEMP_MARKER}{}.{nanos}",
        name.to_string_lossy(),
        std::process::id()
    );
    Ok(path.with_file_name(tmp))
}

/// Creates `path` (never an existing file, never through a link), 0600 on Unix, and makes the bytes
/// durable.
fn write_new_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// A rename is durable only once the folder entry is flushed. Best effort: Windows does not open
/// folders as files, and NTFS journals the rename itself.
fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
}

#[cfg(test)]
#[cfg(unix)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn private_dir_is_created_0700_with_its_parents() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b/state");
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
    }

    #[test]
    fn private_dir_tightens_an_existing_loose_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
    }

    #[test]
    fn private_dir_refuses_a_symlinked_folder_and_leaves_its_target_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("elsewhere");
        fs::create_dir(&target).unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o755)).unwrap();
        let link = tmp.path().join("state");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = private_dir(&link).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(
            err.to_string().contains(&link.display().to_string()),
            "{err}"
        );
        assert_eq!(mode(&target), 0o755, "the link's target was changed");
    }

    #[test]
    fn private_dir_refuses_a_file() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("state");
        fs::write(&file, b"").unwrap();
        assert!(private_dir(&file).is_err());
    }

    #[test]
    fn written_files_are_0600_and_no_temp_file_remains() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("secret");
        write_private_atomic(&path, b"one").unwrap();
        assert_eq!(mode(&path), 0o600);
        write_private_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(names(tmp.path()), vec!["secret".to_string()]);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_removes_its_temp_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("secret");
        write_private_atomic(&path, b"old").unwrap();
        let err = write_private_atomic_checked(&path, b"new", || Err(io::Error::other("injected")))
            .unwrap_err();
        assert_eq!(err.to_string(), "injected");
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(names(tmp.path()), vec!["secret".to_string()]);
    }

    #[test]
    fn the_temp_file_is_0600_before_any_byte_is_written() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("secret");
        let dir = tmp.path().to_path_buf();
        write_private_atomic_checked(&path, b"new", || {
            let temps: Vec<_> = names(&dir)
                .into_iter()
                .filter(|n| n.contains(".tmp."))
                .collect();
            assert_eq!(temps.len(), 1, "{temps:?}");
            assert_eq!(mode(&dir.join(&temps[0])), 0o600);
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn a_reader_never_sees_a_partial_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("secret");
        let small = vec![b'a'; 10];
        let large = vec![b'b'; 256 * 1024];
        write_private_atomic(&path, &small).unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let reader = {
            let (path, done) = (path.clone(), done.clone());
            let (small, large) = (small.clone(), large.clone());
            std::thread::spawn(move || {
                let mut reads = 0;
                while !done.load(Ordering::SeqCst) {
                    let seen = fs::read(&path).unwrap();
                    assert!(seen == small || seen == large, "saw {} bytes", seen.len());
                    reads += 1;
                }
                reads
            })
        };
        for round in 0..50 {
            let bytes = if round % 2 == 0 { &large } else { &small };
            write_private_atomic(&path, bytes).unwrap();
        }
        done.store(true, Ordering::SeqCst);
        assert!(reader.join().unwrap() > 0);
    }

    #[test]
    fn a_leftover_temp_file_is_harmless_and_swept_once_its_writer_is_gone() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("secret");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let orphan = tmp.path().join(format!(".secret.tmp.{dead}.1"));
        let live = tmp
            .path()
            .join(format!(".secret.tmp.{}.2", std::process::id()));
        fs::write(&orphan, b"half").unwrap();
        fs::write(&live, b"half").unwrap();
        write_private_atomic(&path, b"whole").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"whole");
        sweep_temp_files(tmp.path());
        assert!(!orphan.exists(), "the dead writer's temp file stays");
        assert!(live.exists(), "a running writer's temp file was deleted");
        assert!(path.exists());
    }

    #[test]
    fn temp_names_are_recognised_and_other_names_are_not() {
        assert_eq!(temp_file_writer(".a.json.tmp.42.17"), Some(42));
        assert_eq!(temp_file_writer("..cache-key.tmp.7.1"), Some(7));
        for other in [
            "a.json",
            ".a.json.tmp.x.1",
            "a.tmp.1.2",
            ".a.tmp.1",
            ".a.tmp.1.x",
        ] {
            assert_eq!(temp_file_writer(other), None, "{other}");
        }
    }

    #[test]
    fn create_private_atomic_never_replaces() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("key");
        create_private_atomic(&path, b"first").unwrap();
        assert_eq!(mode(&path), 0o600);
        let err = create_private_atomic(&path, b"second").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"first");
        assert_eq!(names(tmp.path()), vec!["key".to_string()]);
    }
}

//! One running proxy per state dir (FLT-20 in docs/TESTING.md): two would write the same token cache
//! and renew the same tokens.
//!
//! Contract: [`InstanceLock::acquire`] takes an OS lock (`File::try_lock`: `flock` on Unix,
//! `LockFileEx` on Windows) on `<state dir>/exoproxy.lock` and keeps it until the guard is dropped,
//! which is the end of the process for `exoproxy run`. The OS releases the lock when the process
//! ends however it ends, so a crash never leaves a stale lock. The holder then writes its pid and
//! listen addresses to `<state dir>/exoproxy.pid` (a separate file: Windows locks are mandatory and
//! would keep the second process from reading the lock file itself). A second process that finds the
//! lock held fails with a message naming that pid; the file's content is only believed while the
//! lock is held, so a stale `exoproxy.pid` is harmless. CLI commands (`accounts`, `login`, …) do not
//! take the lock: they must work while the proxy runs. [`running`] tells them whether a proxy holds
//! it, and where it listens (so `login` / `logout` / `status` can go through it).

use std::fs::{File, OpenOptions};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The lock file inside the state dir.
pub(crate) const LOCK_FILE: &str = "exoproxy.lock";
/// Who holds the lock: pid and listen addresses, written by the holder.
pub(crate) const PID_FILE: &str = "exoproxy.pid";

/// Holds the state dir's instance lock while alive.
#[derive(Debug)]
pub(crate) struct InstanceLock {
    _file: File,
}

// === impl InstanceLock ===

impl InstanceLock {
    /// Takes the lock of `state_dir` (which must exist) for a proxy listening on `listen`; `Err` says
    /// which process holds it.
    pub(crate) fn acquire(state_dir: &Path, listen: &[SocketAddr]) -> Result<Self, String> {
        let path = state_dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| format!("cannot open the lock file {}: {e}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(held_by(state_dir)),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(format!("cannot lock {}: {e}", path.display()));
            }
        }
        let addrs: Vec<String> = listen.iter().map(SocketAddr::to_string).collect();
        let holder = format!("{}\n{}\n", std::process::id(), addrs.join(" "));
        // Best effort: the lock is what counts; without the file the message only lacks the pid.
        if let Err(e) = super::write_private_atomic(&pid_path(state_dir), holder.as_bytes()) {
            tracing::warn!(dir = %state_dir.display(), error = %e, "could not record this process in the state dir");
        }
        Ok(Self { _file: file })
    }
}

/// The listen addresses of the proxy that holds `state_dir`'s lock, or `None` when none does.
/// Looks at the lock only when the recorded pid is alive, and then with a shared lock released at
/// once, so a proxy starting at that moment is not kept from its own lock but by a vanishing chance.
pub(crate) fn running(state_dir: &Path) -> Option<Vec<SocketAddr>> {
    let recorded = std::fs::read_to_string(pid_path(state_dir)).ok()?;
    let mut lines = recorded.lines();
    let pid: u32 = lines.next()?.trim().parse().ok()?;
    if !super::pid_alive(pid) {
        return None;
    }
    let addrs: Vec<SocketAddr> = (lines.next().unwrap_or_default().split_whitespace())
        .filter_map(|a| a.parse().ok())
        .collect();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(state_dir.join(LOCK_FILE))
        .ok()?;
    match file.try_lock_shared() {
        Err(std::fs::TryLockError::WouldBlock) => Some(addrs),
        Ok(()) | Err(std::fs::TryLockError::Error(_)) => None,
    }
}

/// Rewrites the pid file with the addresses actually bound (a configured port 0 becomes the real
/// port), but only when the file names this process: only the lock holder may speak for the dir.
pub(crate) fn record_bound(state_dir: &Path, bound: &[SocketAddr]) {
    let recorded = std::fs::read_to_string(pid_path(state_dir)).unwrap_or_default();
    if recorded.lines().next() != Some(std::process::id().to_string().as_str()) {
        return;
    }
    let addrs: Vec<String> = bound.iter().map(SocketAddr::to_string).collect();
    let holder = format!("{}\n{}\n", std::process::id(), addrs.join(" "));
    if let Err(e) = super::write_private_atomic(&pid_path(state_dir), holder.as_bytes()) {
        tracing::warn!(dir = %state_dir.display(), error = %e, "could not record the listen addresses");
    }
}

fn pid_path(state_dir: &Path) -> PathBuf {
    state_dir.join(PID_FILE)
}

/// The message for a lock held by another process, with its pid and addresses when recorded.
fn held_by(state_dir: &Path) -> String {
    let recorded = std::fs::read_to_string(pid_path(state_dir)).unwrap_or_default();
    let mut lines = recorded.lines();
    let pid = lines.next().filter(|p| p.parse::<u32>().is_ok());
    let addrs = lines.next().filter(|a| !a.is_empty());
    let who = match (pid, addrs) {
        (Some(pid), Some(addrs)) => format!("pid {pid}, listening on {addrs}"),
        (Some(pid), None) => format!("pid {pid}"),
        _ => "pid not recorded yet: it is starting".into(),
    };
    format!(
        "another exoproxy is already running with the state dir {} ({who}). Stop it first, or give \
         this one its own --state-dir",
        state_dir.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flt20_a_second_lock_on_the_same_dir_names_the_holder_and_is_free_after_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let listen: Vec<SocketAddr> = vec!["127.0.0.1:8765".parse().unwrap()];
        let first = InstanceLock::acquire(tmp.path(), &listen).unwrap();
        let err = InstanceLock::acquire(tmp.path(), &[]).unwrap_err();
        assert!(
            err.contains(&format!(
                "pid {}, listening on 127.0.0.1:8765",
                std::process::id()
            )),
            "{err}"
        );
        assert!(err.contains(&tmp.path().display().to_string()), "{err}");
        drop(first);
        let _again = InstanceLock::acquire(tmp.path(), &[]).unwrap();
    }

    #[test]
    fn running_names_the_lock_holder_only() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(running(tmp.path()), None);
        let listen: Vec<SocketAddr> = vec!["127.0.0.1:8765".parse().unwrap()];
        let held = InstanceLock::acquire(tmp.path(), &listen).unwrap();
        assert_eq!(running(tmp.path()), Some(listen.clone()));
        let bound: Vec<SocketAddr> = vec!["127.0.0.1:40001".parse().unwrap()];
        record_bound(tmp.path(), &bound);
        assert_eq!(
            running(tmp.path()),
            Some(bound.clone()),
            "port 0 becomes the real port"
        );
        drop(held);
        assert_eq!(
            running(tmp.path()),
            None,
            "a pid file without the lock is stale"
        );
        std::fs::write(tmp.path().join(PID_FILE), "1\n127.0.0.1:1\n").unwrap();
        record_bound(tmp.path(), &bound);
        let kept = std::fs::read_to_string(tmp.path().join(PID_FILE)).unwrap();
        assert_eq!(
            kept, "1\n127.0.0.1:1\n",
            "another process's record is not ours to change"
        );
    }

    #[test]
    fn flt20_a_leftover_pid_file_without_a_lock_is_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(PID_FILE), "1\n127.0.0.1:1\n").unwrap();
        std::fs::write(tmp.path().join(LOCK_FILE), "").unwrap();
        let _lock = InstanceLock::acquire(tmp.path(), &[]).unwrap();
        let recorded = std::fs::read_to_string(tmp.path().join(PID_FILE)).unwrap();
        assert!(recorded.starts_with(&format!("{}\n", std::process::id())));
    }
}

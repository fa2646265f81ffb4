//! A config file or state dir that other users can write is refused (CFG-3 in docs/TESTING.md),
//! by `run` and by `config check`, with the `chmod go-w` that fixes it. Unix modes only: the Windows
//! ACL check is in `platform::perms`.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Env {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("exoproxy.toml");
        let text = format!(
            "state_dir = {:?}\n\n[upstream]\nsource = \"direct\"\n\n[routing]\ndiscover_sts = false\n\n[intercept]\nenabled = false\n",
            dir.path().join("state").display().to_string()
        );
        std::fs::write(&config, text).unwrap();
        chmod(&config, 0o600);
        Env { dir, config }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Runs a command that must end by itself within 20 s (`run` only ends here by refusing).
    fn output(&self, args: &[&str]) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_exoproxy"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("EXOPROXY_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("exoproxy {args:?} still running after 20 s: it was not refused");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait_with_output().unwrap()
    }
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `run` on a free loopback port (refused before it binds).
fn run_args() -> Vec<String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    vec!["run".into(), "--listen".into(), format!("127.0.0.1:{port}")]
}

#[test]
fn cfg3_config_check_passes_an_owner_only_config() {
    let env = Env::new();
    let out = env.output(&["config", "check"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn cfg3_config_writable_by_others_is_refused_by_config_check_and_run() {
    let env = Env::new();
    chmod(&env.config, 0o666);
    let fix = format!("chmod go-w {}", env.config.display());
    let check = env.output(&["config", "check"]);
    assert_eq!(check.status.code(), Some(2), "{}", stderr(&check));
    assert!(stderr(&check).contains(&fix), "{}", stderr(&check));
    let args = run_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = env.output(&args);
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    assert!(stderr(&run).contains(&fix), "{}", stderr(&run));
}

#[test]
fn cfg3_group_writable_config_is_refused() {
    let env = Env::new();
    chmod(&env.config, 0o620);
    let check = env.output(&["config", "check"]);
    assert_eq!(check.status.code(), Some(2), "{}", stderr(&check));
    assert!(stderr(&check).contains("chmod go-w"), "{}", stderr(&check));
}

#[test]
fn cfg3_state_dir_writable_by_others_is_refused_by_config_check_and_run() {
    let env = Env::new();
    std::fs::create_dir(env.state()).unwrap();
    chmod(&env.state(), 0o777);
    let fix = format!("chmod go-w {}", env.state().display());
    let check = env.output(&["config", "check"]);
    assert_eq!(check.status.code(), Some(2), "{}", stderr(&check));
    assert!(stderr(&check).contains(&fix), "{}", stderr(&check));
    let args = run_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = env.output(&args);
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    assert!(stderr(&run).contains(&fix), "{}", stderr(&run));
    // Refused, not silently tightened: the owner decides what to do with what others may have put there.
    assert_eq!(
        std::fs::metadata(env.state()).unwrap().permissions().mode() & 0o777,
        0o777
    );
}

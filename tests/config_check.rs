//! `exoproxy config check` through the real binary: the example file passes on a machine without
//! the environment variables it names (they are warnings), and a broken file gets every error with
//! its key path and line, exit code 2.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

/// The variables `config/exoproxy.toml` names (set or commented out).
const EXAMPLE_VARIABLES: [&str; 4] = [
    "EXOPROXY_PROXY_PASSWORD",
    "EXOPROXY_PROXY_NT_HASH",
    "EXO_PFX_PASSWORD",
    "EXO_APP_SECRET",
];

fn exoproxy(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_exoproxy"));
    cmd.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    for var in EXAMPLE_VARIABLES {
        cmd.env_remove(var);
    }
    // Nothing from the developer's own setup: no state dir config, no overrides.
    for (key, _) in std::env::vars() {
        if key.starts_with("EXOPROXY_") {
            cmd.env_remove(key);
        }
    }
    cmd.output().unwrap()
}

#[test]
fn the_example_config_passes_without_its_variables() {
    let out = exoproxy(&["config", "check", "config/exoproxy.toml"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("config/exoproxy.toml: ok"),
        "{out:?}"
    );
    assert!(
        stderr.contains("config warning:")
            && stderr.contains("upstream.credentials[0].password_env")
            && stderr.contains("EXOPROXY_PROXY_PASSWORD"),
        "{stderr}"
    );
}

#[test]
fn commands_that_do_not_use_the_secret_run_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap();
    let out = exoproxy(&[
        "--config",
        "config/exoproxy.toml",
        "--state-dir",
        state,
        "accounts",
    ]);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn every_error_at_once_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[listen]\nadresses = [\"127.0.0.1:1\"]\nmax_connections = \"x\"\n\n[log]\nlevel = \"verbose\"\ncolour = 1\n",
    )
    .unwrap();
    let out = exoproxy(&["config", "check", path_str(&file)]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "line 2: listen.adresses",
        "line 3: listen.max_connections",
        "line 6: log.level",
        "line 7: log.colour",
        "4 error(s)",
    ] {
        assert!(stderr.contains(expected), "{expected} missing in {stderr}");
    }
}

/// `run` and `token` use the secret: they refuse to start while its variable is not set (exit 2,
/// naming the key and the variable). The authority is a closed loopback port, so a command that did
/// not refuse would fail fast without leaving the machine.
#[test]
fn commands_that_use_the_secret_refuse_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.toml");
    std::fs::write(
        &file,
        format!(
            "state_dir = {state:?}\n[listen]\naddresses = [\"127.0.0.1:0\"]\n\n[[account]]\n\
             upn = \"app@contoso.test\"\nflow = \"secret\"\nclient_id = \"app\"\n\
             secret_env = \"EXO_APP_SECRET\"\nauthority = \"https://127.0.0.1:9\"\n",
            state = dir.path().join("state").display().to_string()
        ),
    )
    .unwrap();
    let config = path_str(&file);
    for args in [
        &["--config", config, "token", "app@contoso.test"][..],
        &["--config", config, "run"][..],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_exoproxy"))
            .args(args)
            .env_remove("EXO_APP_SECRET")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > std::time::Duration::from_secs(20) {
                child.kill().unwrap();
                panic!("{args:?} did not refuse to start");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("account[0].secret_env") && stderr.contains("EXO_APP_SECRET"),
            "{args:?}: {stderr}"
        );
    }
    // `accounts` does not use it.
    let out = exoproxy(&["--config", config, "accounts"]);
    assert!(out.status.success(), "{out:?}");
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// FLT-15: `config check` checks the EWS stream-idle key like every other timeout.
#[test]
fn flt_15_config_check_checks_streaming_idle_secs() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("idle.toml");
    std::fs::write(&file, "[timeouts]\nstreaming_idle_secs = 0\n").unwrap();
    let out = exoproxy(&["config", "check", path_str(&file)]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 2: timeouts.streaming_idle_secs"),
        "{stderr}"
    );
    std::fs::write(&file, "[timeouts]\nstreaming_idle_secs = 2100\n").unwrap();
    let out = exoproxy(&["config", "check", path_str(&file)]);
    assert!(out.status.success(), "{out:?}");
}

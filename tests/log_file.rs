//! `[log] file`: the proxy logs to a daily-rotated file in `<state_dir>/logs/` instead of stderr,
//! keeps at most `KEEP_FILES` of them, and says on stderr (and in its start line) where the log is
//! (src/app/log.rs).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use exoproxy::app::log::KEEP_FILES;

/// Kills the proxy (by its own pid) when the test ends, pass or fail.
struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn log_file_gets_the_start_line_and_a_summary_and_old_files_are_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let logs = state.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    // Ten files from earlier days, oldest created first: more than the proxy keeps.
    for day in 1..=10 {
        std::fs::write(logs.join(format!("exoproxy.2020-01-{day:02}.log")), "old\n").unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::write(logs.join("notes.txt"), "not a log\n").unwrap();
    let config = dir.path().join("exoproxy.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = {:?}\n[log]\nfile = true\n",
            state.display().to_string()
        ),
    )
    .unwrap();
    let addr = free_addr();
    let mut proxy = Proxy(
        Command::new(env!("CARGO_BIN_EXE_exoproxy"))
            .arg("--config")
            .arg(&config)
            .args(["run", "--listen", &addr.to_string()])
            .env_remove("EXOPROXY_LOG")
            .env("EXOPROXY_SUMMARY_SECS", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_for("the listener", || TcpStream::connect(addr).is_ok());

    let today = log_files(&logs)
        .into_iter()
        .find(|f| {
            !f.to_string_lossy().contains("2020-01-") && f.extension().is_some_and(|e| e == "log")
        })
        .expect("today's log file");
    let mut client = TcpStream::connect(addr).unwrap();
    client
        .write_all(b"GET http://exoproxy.invalid/ HTTP/1.1\r\nHost: exoproxy.invalid\r\nConnection: close\r\n\r\n")
        .unwrap();
    let _ = client.read_to_end(&mut Vec::new());
    let text = || std::fs::read_to_string(&today).unwrap_or_default();
    wait_for("the start line and a summary in the file", || {
        text().contains(" ready; point clients at ") && text().contains("activity in the last")
    });
    assert!(
        text().contains(&format!("log={}", today.display())),
        "the start line names the file: {}",
        text()
    );

    let _ = proxy.0.kill();
    let _ = proxy.0.wait();
    let mut stderr = String::new();
    proxy
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        stderr.contains(&format!("exoproxy: logging to {}", today.display())),
        "stderr names the file: {stderr:?}"
    );
    assert!(
        !stderr.contains(" ready; "),
        "the log lines went to the file: {stderr:?}"
    );

    let files = log_files(&logs);
    let rotated: Vec<_> = files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "log"))
        .collect();
    assert_eq!(rotated.len(), KEEP_FILES, "{files:?}");
    assert!(rotated.contains(&&today));
    for day in 1..=4 {
        let old = logs.join(format!("exoproxy.2020-01-{day:02}.log"));
        assert!(!old.exists(), "the oldest go first: {files:?}");
    }
    assert!(
        logs.join("notes.txt").exists(),
        "other files are left alone"
    );
}

#[test]
fn without_a_log_file_setting_the_proxy_logs_to_stderr_on_unix() {
    // The default is a file only when there is no console (Windows); the suite's piped stderr
    // keeps receiving the log.
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config = dir.path().join("exoproxy.toml");
    std::fs::write(
        &config,
        format!("state_dir = {:?}\n", state.display().to_string()),
    )
    .unwrap();
    let addr = free_addr();
    let mut proxy = Proxy(
        Command::new(env!("CARGO_BIN_EXE_exoproxy"))
            .arg("--config")
            .arg(&config)
            .args(["run", "--listen", &addr.to_string()])
            .env_remove("EXOPROXY_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_for("the listener", || TcpStream::connect(addr).is_ok());
    std::thread::sleep(Duration::from_millis(200));
    let _ = proxy.0.kill();
    let _ = proxy.0.wait();
    let mut stderr = String::new();
    proxy
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.contains(" ready; point clients at "), "{stderr:?}");
    assert!(stderr.contains("log=stderr"), "{stderr:?}");
    assert!(!state.join("logs").exists());
}

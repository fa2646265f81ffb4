//! The `exoproxy run` binary for process-level tests: a throwaway state dir, loopback only, killed
//! (by its own pid) on drop. Its stderr is a pipe the test reads when it wants to: tests of a
//! stalled console leave it unread.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running proxy.
pub(crate) struct Running {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Running {
    /// The config file the proxy was started with.
    pub(crate) fn config(&self) -> std::path::PathBuf {
        self._dir.path().join("exoproxy.toml")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `exoproxy run` with `env` set (and `EXOPROXY_LOG` unset unless given) and waits until it
/// accepts connections; its stderr is piped and not read.
pub(crate) fn start(env: &[(&str, &str)]) -> Running {
    start_with("", env)
}

/// [`start`] with `extra` appended to the config file (after `state_dir`).
pub(crate) fn start_with(extra: &str, env: &[(&str, &str)]) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("exoproxy.toml");
    let state = dir.path().join("state").display().to_string();
    std::fs::write(&config, format!("state_dir = {state:?}\n{extra}")).unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_exoproxy"));
    cmd.arg("--config")
        .arg(&config)
        .args(["run", "--listen", &addr.to_string()])
        .env_remove("EXOPROXY_LOG")
        .env_remove("EXOPROXY_SUMMARY_SECS")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    let running = Running {
        child,
        addr,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "the proxy did not start listening"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    running
}

/// Starts `exoproxy --config FILE run` with no command-line address: the file, written by
/// `config(addr, state_dir)`, names everything (the live-configuration tests rewrite it). Waits until
/// the proxy accepts connections; its stderr is piped and not read.
pub(crate) fn start_from_file(config: impl Fn(SocketAddr, &str) -> String) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("exoproxy.toml");
    let state = dir.path().join("state").display().to_string();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    std::fs::write(&file, config(addr, &state)).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_exoproxy"))
        .arg("--config")
        .arg(&file)
        .arg("run")
        .env_remove("EXOPROXY_LOG")
        .env_remove("EXOPROXY_LISTEN")
        .env_remove("EXOPROXY_SUMMARY_SECS")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let running = Running {
        child,
        addr,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "the proxy did not start listening"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    running
}

/// Reads `stderr` on a thread from now on; lines arrive on the receiver.
pub(crate) fn read_lines(stderr: ChildStderr) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Receives lines until one satisfies `found` or `within` passes; returns every line read.
pub(crate) fn lines_until(
    lines: &mpsc::Receiver<String>,
    within: Duration,
    mut found: impl FnMut(&str) -> bool,
) -> (bool, Vec<String>) {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) => {
                let hit = found(&line);
                seen.push(line);
                if hit {
                    return (true, seen);
                }
            }
            Err(_) => break,
        }
    }
    (false, seen)
}

/// The served PAC, addressed to the proxy itself: answered 200 without any upstream.
pub(crate) fn pac_request(addr: SocketAddr) -> Vec<u8> {
    format!("GET /proxy.pac HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").into_bytes()
}

/// An origin-form request for someone else: refused 400 `not_a_proxy_request`.
pub(crate) fn bad_request() -> Vec<u8> {
    b"GET /elsewhere HTTP/1.1\r\nHost: example.invalid\r\nConnection: close\r\n\r\n".to_vec()
}

/// Sends one request on a fresh connection; the status code, or an error after `within`.
pub(crate) fn status_of(addr: SocketAddr, request: &[u8], within: Duration) -> Result<u16, String> {
    let mut stream = TcpStream::connect_timeout(&addr, within).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(within)).ok();
    stream.set_write_timeout(Some(within)).ok();
    stream.write_all(request).map_err(|e| e.to_string())?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&head);
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|code| code.trim().parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {text:?}"))
}

//! `exoproxy install` / `uninstall` on a non-Windows machine, and "never a loop" through the real
//! binary (issue 12; README "Install on Windows", "Never a loop").
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn exoproxy(state: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_exoproxy"));
    cmd.arg("--state-dir").arg(state);
    cmd.env_remove("EXOPROXY_LOG").env_remove("EXOPROXY_CONFIG");
    for var in [
        "HTTPS_PROXY",
        "HTTP_PROXY",
        "https_proxy",
        "http_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

#[test]
fn install_dry_run_prints_the_plan_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = exoproxy(&state)
        .args(["install", "--dry-run"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Internet Settings\\ProxyServer (absent)"),
        "{text}"
    );
    assert!(
        text.contains("AutoConfigURL = REG_SZ \"http://127.0.0.1:8765/proxy.pac\""),
        "{text}"
    );
    assert!(
        text.contains("CurrentVersion\\Run\\exoproxy = REG_SZ \"conhost.exe --headless"),
        "{text}"
    );
    assert!(text.contains("Windows asks you to confirm"), "{text}");
    assert!(text.contains("source = \"direct\""), "{text}");
    assert!(!state.join("install.json").exists() && !state.join("exoproxy.toml").exists());
}

#[test]
fn install_and_uninstall_for_real_need_windows() {
    let dir = tempfile::tempdir().unwrap();
    for command in ["install", "uninstall"] {
        let out = exoproxy(dir.path()).arg(command).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains("runs only on Windows") && err.contains("--dry-run"),
            "{err}"
        );
    }
    let out = exoproxy(dir.path())
        .args(["uninstall", "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not installed"));
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An echo server on loopback: answers each connection's bytes with the same bytes.
fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

#[test]
fn https_proxy_naming_our_own_port_is_reported_and_requests_go_direct() {
    let dir = tempfile::tempdir().unwrap();
    let echo = echo_server();
    let port = free_port();
    let config = dir.path().join("exoproxy.toml");
    std::fs::write(
        &config,
        format!(
            "[upstream]\nsource = \"env\"\n[routing]\nallow_local = [\"127.0.0.1\"]\nconnect_ports = [{echo}]\n"
        ),
    )
    .unwrap();
    let stderr = std::fs::File::create(dir.path().join("stderr")).unwrap();
    let child = exoproxy(&dir.path().join("state"))
        .arg("--config")
        .arg(&config)
        .args(["run", "--listen", &format!("127.0.0.1:{port}")])
        .env("HTTPS_PROXY", format!("http://127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let _running = Running(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut conn = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(c) => break c,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => panic!("exoproxy did not listen: {e}"),
        }
    };
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        conn,
        "CONNECT 127.0.0.1:{echo} HTTP/1.1\r\nHost: 127.0.0.1:{echo}\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap() == 1 {
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 200"), "not tunnelled: {head}");
    assert!(!head.contains("proxy_loop"), "{head}");
    conn.write_all(b"ping").unwrap();
    let mut echoed = [0u8; 4];
    conn.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"ping");

    let own = format!("127.0.0.1:{port}, exoproxy itself: using DIRECT instead");
    let mut log = String::new();
    while Instant::now() < deadline {
        log = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
        if log.contains(&own) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(log.contains(&own) && log.contains("HTTPS_PROXY"), "{log}");
}

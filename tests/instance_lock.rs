//! One instance per state dir (FLT-20 in docs/TESTING.md), through the real binary: a second
//! `exoproxy run` on the same state dir but another port exits 1 and names the pid holding it; CLI
//! commands keep working while the proxy runs; a killed proxy leaves no stale lock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A config with nothing that reaches beyond loopback: direct upstream, no interception, no STS.
fn write_config(dir: &Path) -> PathBuf {
    let config = dir.join("exoproxy.toml");
    let text = format!(
        "state_dir = {:?}\n\n[upstream]\nsource = \"direct\"\n\n[routing]\ndiscover_sts = false\n\n[intercept]\nenabled = false\n",
        dir.join("state").display().to_string()
    );
    std::fs::write(&config, text).unwrap();
    config
}

fn exoproxy(config: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_exoproxy"));
    cmd.arg("--config").arg(config).args(args);
    cmd.env_remove("EXOPROXY_LOG");
    cmd
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The proxy binary, killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_proxy(config: &Path, port: u16) -> Running {
    let child = exoproxy(config, &["run", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let running = Running(child);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
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

/// Runs `cmd` to completion within 20 s (a second proxy that wrongly starts would run forever).
fn finish(mut cmd: Command) -> (ExitStatus, String) {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut running = Running(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = running.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "still running after 20 s");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut running.0.stderr.take().unwrap(), &mut stderr).unwrap();
    (status, stderr)
}

#[test]
fn flt20_second_run_on_the_same_state_dir_exits_1_naming_the_pid() {
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path());
    let first_port = free_port();
    let mut first = start_proxy(&config, first_port);
    let pid = first.0.id();

    let second_port = free_port();
    let (status, stderr) = finish(exoproxy(
        &config,
        &["run", "--listen", &format!("127.0.0.1:{second_port}")],
    ));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("pid {pid}")), "{stderr}");
    assert!(
        stderr.contains(&format!("127.0.0.1:{first_port}")),
        "{stderr}"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", second_port)).is_err(),
        "the second proxy listened"
    );

    // The CLI keeps working beside the running proxy.
    let (status, stderr) = finish(exoproxy(&config, &["accounts"]));
    assert!(status.success(), "accounts: {status} {stderr}");

    // A crash (SIGKILL) releases the lock with the process: the next run starts.
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    let _third = start_proxy(&config, second_port);
}

//! `exoproxy demo` end to end: the real binary starts exosim and exoproxy on loopback, signs in,
//! runs WS-Man and REST through the proxy across token rollovers, and must report a PASS with the
//! signed-in account from `whoami`, no failed request and several refreshes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The demo runs 12 s; startup, sign-in and shutdown take a few more on a busy machine.
const LIMIT: Duration = Duration::from_secs(90);

#[test]
fn demo_passes_across_token_rollovers() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_exoproxy"))
        .args(["demo", "--seconds", "12", "--token-lifetime", "4"])
        .env_remove("EXOPROXY_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start exoproxy demo");
    // Drained on their own threads so a chatty child never blocks on a full pipe.
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > LIMIT {
            child.kill().unwrap();
            panic!("exoproxy demo still running after {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    let all = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(status.success(), "exit {status}\n{all}");
    assert!(
        stdout.contains("whoami -> admin@contoso.com"),
        "no whoami line\n{all}"
    );
    assert_eq!(report_value(&stdout, "failed requests:"), 0, "{all}");
    assert!(report_value(&stdout, "token refreshes:") >= 2, "{all}");
    assert!(report_value(&stdout, "REST requests:") > 0, "{all}");
    assert!(stdout.contains("result:           PASS"), "{all}");
}

fn drain(mut pipe: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        pipe.read_to_string(&mut text).unwrap();
        text
    })
}

/// The first number after `label` in the report.
fn report_value(stdout: &str, label: &str) -> u64 {
    let line = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{stdout}"));
    line.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{label:?} is not followed by a number: {line:?}"))
}

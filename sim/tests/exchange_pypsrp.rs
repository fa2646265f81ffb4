//! A real third-party WS-Man client (pypsrp) against the Exchange emulator over HTTPS: the RPS
//! redirect, the affinity cookie, Basic-with-Bearer auth and the WinRS shell, end to end.
//!
//! Needs Python with pypsrp (`scripts/setup.sh`); the interpreter is `$EXO_PYTHON` or `python3`. A
//! missing module fails the test with a clear message: it never skips silently.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod exchange_support;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use exchange_support::*;
use exosim::exchange::ExchangeSettings;

fn python() -> String {
    std::env::var("EXO_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/wsman_whoami.py")
}

/// Fail loudly when the client library is absent.
fn require_pypsrp() {
    let ok = Command::new(python())
        .args(["-c", "import pypsrp.shell, pypsrp.wsman"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "pypsrp missing: run scripts/setup.sh (interpreter: {})",
        python()
    );
}

/// Run the client; `token_file` is a path or `-` (then `stdin_token` is piped in).
async fn run_client(
    h: &Harness,
    user: &str,
    token_file: &str,
    stdin_token: Option<String>,
) -> Output {
    let mut cmd = Command::new(python());
    cmd.arg(script())
        .arg(format!(
            "https://outlook.office365.com:{}/PowerShell-LiveID?BasicAuthToOAuthConversion=true",
            h.addr.port()
        ))
        .arg("--ca")
        .arg(&h.ca_file)
        .args([
            "--username",
            user,
            "--token-file",
            token_file,
            "--operation-timeout",
            "5",
        ])
        .env_remove("EXO_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    tokio::task::spawn_blocking(move || {
        let mut child = cmd.spawn().expect("start the Python client");
        let mut stdin = child.stdin.take().unwrap();
        if let Some(token) = stdin_token {
            stdin.write_all(token.as_bytes()).unwrap();
        }
        drop(stdin);
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

fn describe(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pypsrp_whoami_follows_the_redirect_and_prints_the_upn() {
    require_pypsrp();
    let h = start(ExchangeSettings::default()).await;
    let token_file = write_private("token", &h.tokens.mint(&Mint::user(EXO, ADMIN)));
    let out = run_client(&h, ADMIN, token_file.to_str().unwrap(), None).await;
    std::fs::remove_file(&token_file).unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        ADMIN,
        "{}",
        describe(&out)
    );
    // 302 + Create + Command + Receive + Delete at least; the shell was closed.
    assert!(
        h.exchange.request_count() >= 5,
        "{}",
        h.exchange.request_count()
    );
    assert_eq!(h.exchange.open_shells(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pypsrp_with_an_expired_token_gets_401() {
    require_pypsrp();
    let h = start(ExchangeSettings::default()).await;
    let expired = h.tokens.mint(&Mint {
        expires_in: -60,
        ..Mint::user(EXO, ADMIN)
    });
    let out = run_client(&h, ADMIN, "-", Some(expired)).await;
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("HTTP 401"), "{}", describe(&out));
    assert!(
        stderr.contains("error=\"invalid_token\""),
        "{}",
        describe(&out)
    );
    assert_eq!(h.exchange.open_shells(), 0);
}

//! WS-Man end to end: pypsrp (a real third-party WS-Man client) through exoproxy to exosim's RPS
//! endpoint, with a placeholder password: the proxy injects `Basic base64(upn:Bearer <jwt>)` on every
//! request; the 302 to the tenant host, the MS-WSMAN cookie and the `;PSVersion` query pass through.
//! Token errors reach the client as a WS-Man fault whose text carries the device code.
//!
//! Needs Python with pypsrp (`scripts/setup.sh`); the interpreter is `$EXO_PYTHON` or `python3`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod intercept_support;

use intercept_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pypsrp_whoami_through_the_proxy_prints_the_upn() {
    let h = Harness::start(Options::default()).await;
    let out = whoami(&h, ADMIN).await;
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(ADMIN), "{}", describe(&out));
    assert_eq!(h.control().exchange().open_shells(), 0, "shell not deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_needed_is_a_wsman_fault_with_the_code() {
    let h = Harness::start(Options {
        sign_in: false,
        ..Options::default()
    })
    .await;
    let out = whoami(&h, ADMIN).await;
    assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
    let code = h.control().pending_devices().pop().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&code) && stderr.contains("devicelogin"),
        "{}",
        describe(&out)
    );
}

/// A WS-Man Receive long-poll for PowerShell's default OperationTimeout (180 s, also exosim's cap)
/// through interception: the server's 500 `w:TimedOut` fault arrives intact after the whole wait,
/// and the same shell goes on (cookie affinity, token injection) afterwards.
/// `EXOPROXY_LONG_POLL_SECS=180` runs it as PowerShell waits, against the default limits. The suite
/// runs it CI-sized (20 s, docs/TESTING.md "long forms"): the proxy's idle limits are scaled by the
/// same factor (stream idle 300 s → 33 s, tunnel idle 1 h → 400 s), so the poll takes the same share
/// of each limit as the real one does of the defaults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_180_second_long_poll_is_not_cut() {
    const REAL: u64 = 180;
    let secs: u64 = std::env::var("EXOPROXY_LONG_POLL_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let defaults = exoproxy::limits::Limits::default();
    let scaled = |d: std::time::Duration| d * u32::try_from(secs).unwrap() / REAL as u32;
    let limits = exoproxy::limits::Limits {
        stream_idle: scaled(defaults.stream_idle),
        tunnel_idle: scaled(defaults.tunnel_idle),
        ..defaults.clone()
    };
    assert!(secs != REAL || limits == defaults);
    let h = Harness::start(Options {
        limits,
        ..Options::default()
    })
    .await;
    h.control()
        .update_exchange(|s| s.operation_timeout_cap = std::time::Duration::from_secs(secs));
    let started = std::time::Instant::now();
    let long_poll = (secs + 5).to_string();
    let out = wsman_script(h.proxy, &h.ca_file, ADMIN, &["--long-poll", &long_poll]).await;
    let waited = started.elapsed();
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("long-poll: w:TimedOut after"),
        "{}",
        describe(&out)
    );
    assert!(stdout.contains("after the long-poll"), "{}", describe(&out));
    assert!(
        waited.as_secs() >= secs,
        "the Receive was answered after {waited:?}"
    );
    assert_eq!(h.control().exchange().open_shells(), 0, "shell not deleted");
}

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

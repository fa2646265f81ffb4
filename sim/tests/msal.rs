//! exosim driven by MSAL for Python (a real Entra ID client library): device-code flow with a forced
//! refresh, and client credentials with a certificate. Fails with a pointer to scripts/setup.sh when python3 or msal is
//! missing (`python3 -m pip install msal`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;

fn msal_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import msal, requests"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        panic!("python3 with msal and requests is missing: run scripts/setup.sh");
    }
    ok
}

fn script() -> String {
    format!("{}/tests/msal/msal_client.py", env!("CARGO_MANIFEST_DIR"))
}

fn ca_file(h: &Harness) -> tempfile::NamedTempFile {
    let mut ca = tempfile::NamedTempFile::new().unwrap();
    ca.write_all(h.sim.ca_pem().as_bytes()).unwrap();
    ca
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msal_device_code_flow_then_silent_refresh() {
    if !msal_available() {
        return;
    }
    let h = Harness::start().await;
    let ca = ca_file(&h);
    let keys = format!("{}/keys", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new("python3")
        .args([
            &script(),
            &h.sim.addr().port().to_string(),
            &ca.path().display().to_string(),
            "device",
            &keys,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let control = h.sim.control();
    let lines = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        // Let MSAL poll into authorization_pending at least once before approving.
        std::thread::sleep(std::time::Duration::from_millis(1500));
        control.approve_device(first["user_code"].as_str()).unwrap();
        let last: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        (first, last)
    })
    .await
    .unwrap();
    assert!(child.wait().unwrap().success());
    let (first, result) = lines;
    assert!(first["flow_error"].is_null(), "{first}");
    assert_eq!(result["username"], "admin@contoso.com", "{result}");
    let first_at = result["first"]["access_token"]
        .as_str()
        .expect("device flow token");
    let second_at = result["second"]["access_token"]
        .as_str()
        .expect("refreshed token");
    assert_ne!(first_at, second_at);
    assert!(h.sim.control().check_token(second_at, OUTLOOK).is_ok());
    let c = h.sim.control().counters();
    assert!(
        c.device_code_grants >= 2,
        "MSAL polled while pending: {c:?}"
    );
    assert_eq!(c.refresh_token_grants, 1);
    h.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msal_client_credentials_with_a_certificate_rs256_and_ps256() {
    if !msal_available() {
        return;
    }
    let h = Harness::start().await;
    let ca = ca_file(&h);
    for mode in ["cert", "cert256"] {
        let keys = format!("{}/keys", env!("CARGO_MANIFEST_DIR"));
        let args = [
            script(),
            h.sim.addr().port().to_string(),
            ca.path().display().to_string(),
            mode.into(),
            keys,
        ];
        let output = tokio::task::spawn_blocking(move || {
            Command::new("python3").args(&args).output().unwrap()
        })
        .await
        .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let result: Value = serde_json::from_slice(&output.stdout).unwrap();
        let at = result["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("{mode}: {result}"));
        let checked = h.sim.control().check_token(at, OUTLOOK).unwrap();
        assert_eq!(checked.roles, vec!["Exchange.ManageAsApp".to_string()]);
    }
    h.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msal_authorization_code_with_pkce_and_login_hint() {
    if !msal_available() {
        return;
    }
    let h = Harness::start().await;
    let ca = ca_file(&h);
    let args = [
        script(),
        h.sim.addr().port().to_string(),
        ca.path().display().to_string(),
        "authcode".into(),
    ];
    let output =
        tokio::task::spawn_blocking(move || Command::new("python3").args(&args).output().unwrap())
            .await
            .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(result["status"], 302, "{result}");
    let at = result["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{result}"));
    assert_eq!(
        h.sim
            .control()
            .check_token(at, OUTLOOK)
            .unwrap()
            .upn
            .as_deref(),
        Some("user@contoso.com")
    );
    assert_eq!(result["preferred_username"], "user@contoso.com");
    h.sim.shutdown().await;
}

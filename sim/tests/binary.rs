//! The `exosim` binary: starts on a free port, writes its CA, prints its endpoints, and answers curl.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn binary_prints_endpoints_and_serves_openid_configuration_to_curl() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("exosim-ca.pem");
    let mut child = Command::new(env!("CARGO_BIN_EXE_exosim"))
        .args(["--listen", "127.0.0.1:0", "--ca-out"])
        .arg(&ca)
        .args(["--token-lifetime", "5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr = first
        .split("https://")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let summary: Vec<String> = lines
        .by_ref()
        .take_while(|l| !l.as_ref().unwrap().starts_with("Token lifetime"))
        .map(Result::unwrap)
        .collect();
    let summary = summary.join("\n");
    for expected in [
        "login.microsoftonline.com",
        "outlook.office365.com",
        "sts.contoso.test",
        "control.exosim.test",
        "admin@contoso.com",
        "a0c73c16-a7e3-4564-9a95-2bdf47383716",
    ] {
        assert!(
            summary.contains(expected),
            "summary lacks {expected}:\n{summary}"
        );
    }
    let port = addr.rsplit(':').next().unwrap();
    let curl = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(&ca)
        .args(["--connect-to", &format!("login.microsoftonline.com:443:127.0.0.1:{port}")])
        .arg("https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0/.well-known/openid-configuration")
        .output();
    child.kill().unwrap();
    child.wait().unwrap();
    let Ok(curl) = curl else {
        panic!("curl is missing: run scripts/setup.sh");
    };
    let doc: serde_json::Value = serde_json::from_slice(&curl.stdout).unwrap();
    assert_eq!(
        doc["token_endpoint"],
        "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
    );
}

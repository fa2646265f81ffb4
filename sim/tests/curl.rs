//! exosim driven by a real third-party client: curl with `--connect-to` and `--cacert` (the emulator's
//! CA), against the token endpoint and discovery. Fails with a pointer to scripts/setup.sh when curl is missing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::process::Command;

use common::*;
use exosim::config::{CERT_APP_CLIENT_ID, RPS_CLIENT_ID};
use serde_json::Value;

/// curl bound to one running emulator.
struct Curl {
    ca: tempfile::NamedTempFile,
    port: u16,
}

impl Curl {
    fn new(h: &Harness) -> Option<Curl> {
        if Command::new("curl").arg("--version").output().is_err() {
            panic!("curl is missing: run scripts/setup.sh");
        }
        let mut ca = tempfile::NamedTempFile::new().unwrap();
        ca.write_all(h.sim.ca_pem().as_bytes()).unwrap();
        Some(Curl {
            ca,
            port: h.sim.addr().port(),
        })
    }

    /// Run curl on `url` (POSTing `form` when given); returns (HTTP status, JSON body).
    async fn call(&self, url: &str, form: Option<&[(&str, &str)]>) -> (u16, Value) {
        let host = url
            .trim_start_matches("https://")
            .split('/')
            .next()
            .unwrap()
            .to_string();
        let mut args = vec![
            "-sS".to_string(),
            "--max-time".into(),
            "10".into(),
            "--cacert".into(),
            self.ca.path().display().to_string(),
            "--connect-to".into(),
            format!("{host}:443:127.0.0.1:{}", self.port),
            "-w".into(),
            "\n%{http_code}".into(),
        ];
        if let Some(form) = form {
            args.push("--data".into());
            args.push(form_body(form));
        }
        args.push(url.to_string());
        let output =
            tokio::task::spawn_blocking(move || Command::new("curl").args(&args).output().unwrap())
                .await
                .unwrap();
        assert!(
            output.status.success(),
            "curl failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8(output.stdout).unwrap();
        let (body, status) = text.rsplit_once('\n').unwrap();
        (
            status.parse().unwrap(),
            serde_json::from_str(body).unwrap_or(Value::Null),
        )
    }
}

fn token_url() -> String {
    format!("https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_reads_the_openid_configuration() {
    let h = Harness::start().await;
    let Some(curl) = Curl::new(&h) else { return };
    let url =
        format!("https://login.microsoftonline.com/{TENANT}/v2.0/.well-known/openid-configuration");
    let (status, doc) = curl.call(&url, None).await;
    assert_eq!(status, 200);
    assert_eq!(doc["token_endpoint"], token_url());
    h.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_device_code_pending_approved_refresh_rotation_and_revoke() {
    let h = Harness::start().await;
    let Some(curl) = Curl::new(&h) else { return };
    let devicecode = format!("https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/devicecode");
    let (status, dc) = curl
        .call(
            &devicecode,
            Some(&[
                ("client_id", RPS_CLIENT_ID),
                (
                    "scope",
                    "https://outlook.office365.com/.default offline_access",
                ),
            ]),
        )
        .await;
    assert_eq!(status, 200);
    let device_code = dc["device_code"].as_str().unwrap();
    let poll_form = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
        ("client_id", RPS_CLIENT_ID),
        ("device_code", device_code),
    ];
    let (status, pending) = curl.call(&token_url(), Some(&poll_form)).await;
    assert_eq!(
        (status, pending["error"].as_str()),
        (400, Some("authorization_pending"))
    );
    assert!(
        pending["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS70016:")
    );

    h.sim
        .control()
        .approve_device(dc["user_code"].as_str())
        .unwrap();
    let (status, tokens) = curl.call(&token_url(), Some(&poll_form)).await;
    assert_eq!(status, 200);
    assert_eq!(
        claims(tokens["access_token"].as_str().unwrap())["aud"],
        OUTLOOK
    );

    let rt1 = tokens["refresh_token"].as_str().unwrap().to_string();
    let form1 = [
        ("grant_type", "refresh_token"),
        ("client_id", RPS_CLIENT_ID),
        ("refresh_token", rt1.as_str()),
        (
            "scope",
            "https://outlook.office365.com/.default offline_access",
        ),
    ];
    let (status, rotated) = curl.call(&token_url(), Some(&form1)).await;
    assert_eq!(status, 200);
    assert_ne!(rotated["refresh_token"].as_str().unwrap(), rt1);
    let (status, _) = curl.call(&token_url(), Some(&form1)).await;
    assert_eq!(status, 200, "old refresh token stays valid");

    h.sim.control().revoke_user("admin@contoso.com");
    let (status, revoked) = curl.call(&token_url(), Some(&form1)).await;
    assert_eq!(status, 400);
    assert_eq!(revoked["error"], "invalid_grant");
    assert_eq!(revoked["error_codes"][0], 50173);
    assert!(
        revoked["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS50173:")
    );
    h.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_client_credentials_with_a_certificate_assertion() {
    let h = Harness::start().await;
    let Some(curl) = Curl::new(&h) else { return };
    let assertion = client_assertion(&token_url(), Thumbprint::Sha1, 300);
    let (status, body) = curl
        .call(
            &token_url(),
            Some(&[
                ("grant_type", "client_credentials"),
                ("client_id", CERT_APP_CLIENT_ID),
                ("scope", "https://outlook.office365.com/.default"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", &assertion),
            ]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let c = claims(body["access_token"].as_str().unwrap());
    assert_eq!(c["roles"][0], "Exchange.ManageAsApp");
    assert_eq!(c["appid"], CERT_APP_CLIENT_ID);
    h.sim.shutdown().await;
}

//! curl drives the Exchange REST endpoint over HTTPS: the front-door 302, paging through
//! `@odata.nextLink`, 401 for a bad token and 429 in throttle mode.
//! The token travels in a header file (`-H @file`), never on curl's command line (SEC-21).
//! curl (7.88) drops a header-file Authorization when a redirect changes host, even with
//! `--location-trusted`, so the test follows the 302 itself, as the community REST helpers do (probe
//! the front door without following, then POST to `Location`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod exchange_support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use exchange_support::*;
use exosim::exchange::ExchangeSettings;
use serde_json::Value;

const TENANT_HOST: &str = "nam12b.outlook.office365.com";
const BODY: &str =
    r#"{"CmdletInput":{"CmdletName":"Get-Mailbox","Parameters":{"ResultSize":"Unlimited"}}}"#;

/// Result of one curl run: status, response headers (lower-cased) and body.
struct CurlOut {
    status: u16,
    headers: String,
    body: String,
}

async fn curl(h: &Harness, url: &str, header_file: &Path) -> CurlOut {
    let port = h.addr.port();
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "20", "-D", "-", "--cacert"])
        .arg(&h.ca_file)
        .args([
            "--resolve",
            &format!("outlook.office365.com:{port}:127.0.0.1"),
        ])
        .args(["--resolve", &format!("{TENANT_HOST}:{port}:127.0.0.1")])
        .args([
            "--noproxy",
            "*",
            "-H",
            "Content-Type: application/json",
            "--data",
            BODY,
        ])
        .arg("-H")
        .arg(format!("@{}", header_file.display()))
        .args(["-w", "\n%{http_code}", url]);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("curl missing: install curl (scripts/setup.sh)");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (rest, trailer) = text.rsplit_once('\n').unwrap();
    let (headers, body) = rest.split_once("\r\n\r\n").unwrap();
    CurlOut {
        status: trailer.parse().unwrap(),
        headers: headers.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

fn bearer_file(token: &str) -> std::path::PathBuf {
    write_private("auth-header", &format!("Authorization: Bearer {token}\n"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_pages_through_mailboxes_after_the_front_door_redirect() {
    let h = start(ExchangeSettings {
        mailboxes: 7,
        page_size: 5,
        ..ExchangeSettings::default()
    })
    .await;
    let port = h.addr.port();
    let auth = bearer_file(&h.tokens.mint(&Mint::user(EXO, ADMIN)));
    let url = format!(
        "https://outlook.office365.com:{port}/adminapi/beta/contoso.onmicrosoft.com/InvokeCommand"
    );
    let probe = curl(&h, &url, &auth).await;
    assert_eq!(probe.status, 302, "{}", probe.headers);
    let location = probe
        .headers
        .lines()
        .find_map(|l| l.strip_prefix("location: "))
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(
        location,
        url.replace("outlook.office365.com", TENANT_HOST)
            .to_ascii_lowercase()
    );
    let first = curl(&h, &location, &auth).await;
    assert_eq!(first.status, 200, "{}\n{}", first.headers, first.body);
    let v: Value = serde_json::from_str(&first.body).unwrap();
    assert_eq!(v["value"].as_array().unwrap().len(), 5);
    let next = v["@odata.nextLink"].as_str().unwrap();
    assert!(
        next.starts_with(&format!("https://{TENANT_HOST}:{port}/")),
        "{next}"
    );
    let second = curl(&h, next, &auth).await;
    std::fs::remove_file(&auth).unwrap();
    assert_eq!(second.status, 200);
    let v: Value = serde_json::from_str(&second.body).unwrap();
    assert_eq!(v["value"].as_array().unwrap().len(), 2);
    assert_eq!(v["value"][1]["Alias"], "user0007");
    assert!(v.get("@odata.nextLink").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_sees_401_for_a_bad_token_and_429_when_throttled() {
    let h = start(ExchangeSettings::default()).await;
    let url = format!(
        "https://{TENANT_HOST}:{}/adminapi/v1.0/contoso.onmicrosoft.com/InvokeCommand",
        h.addr.port()
    );
    let bad = bearer_file("not-a-token");
    let out = curl(&h, &url, &bad).await;
    std::fs::remove_file(&bad).unwrap();
    assert_eq!(out.status, 401);
    assert!(
        out.headers.contains("www-authenticate: bearer "),
        "{}",
        out.headers
    );

    h.exchange
        .update(|s| s.throttle = Some(Duration::from_secs(3)));
    let auth = bearer_file(&h.tokens.mint(&Mint::user(EXO, ADMIN)));
    let out = curl(&h, &url, &auth).await;
    std::fs::remove_file(&auth).unwrap();
    assert_eq!(out.status, 429);
    assert!(out.headers.contains("retry-after: 3"), "{}", out.headers);
    assert!(
        out.headers.contains("rate-limit-remaining: 0"),
        "{}",
        out.headers
    );
}

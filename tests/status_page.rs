//! The status surface on the proxy's own port (docs/STATUS.md; docs/TESTING.md SEC-9..SEC-14):
//! `/status.json` (schema 1), the server-rendered page `/`, its script `/status.js` and the CA
//! download `/exoproxy-ca.pem`, against a proxy signed in at exosim with a canary in every token.
//! Checks: the data is there (account, token expiry, CA fingerprint, a recent error, open tunnels),
//! the security headers are on every reply, a wrong `Host` (DNS rebinding) gets 400 and no data,
//! a non-GET gets no data, and the canary appears in none of the replies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod intercept_support;

use std::net::SocketAddr;

use exoproxy::route::pac::PacSource;
use intercept_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CANARY: &str = "CANARY-status-7f3a91c2e04b";

/// One raw HTTP/1.1 exchange on a fresh connection: status, lower-cased head, body.
async fn raw(proxy: SocketAddr, method: &str, path: &str, host: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    let request = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).await.unwrap();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_string())
}

fn assert_security_headers(head: &str, what: &str) {
    for line in [
        "cache-control: no-store",
        "content-security-policy: default-src 'self'",
        "x-frame-options: deny",
        "x-content-type-options: nosniff",
    ] {
        assert!(head.contains(line), "{what}: missing {line:?} in\n{head}");
    }
}

/// A request through the proxy that gets a token injected, so the account holds one.
async fn use_a_token(h: &Harness) {
    let tenant = tenant_host(h).await;
    let mut client = h.client(&tenant).await;
    let (status, _, body) = send(&mut client, post_json(&tenant, REST_PATH, GET_MAILBOX)).await;
    assert_eq!(status, 200, "{body}");
}

/// A CONNECT the proxy refuses (a loopback destination): one error for the recent-errors list.
async fn answer_an_error(h: &Harness) {
    let (_, head) = try_connect(h.proxy, "127.0.0.1").await;
    assert!(
        head.contains("connect_denied") || head.contains(" 403 "),
        "{head}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_page_script_and_ca_for_our_own_host() {
    let h = Harness::start(Options {
        canary: Some(CANARY.into()),
        ..Options::default()
    })
    .await;
    use_a_token(&h).await;
    answer_an_error(&h).await;
    let _tunnel = h.client(EXO).await;
    let host = h.proxy.to_string();

    let (status, head, body) = raw(h.proxy, "GET", "/status.json", &host).await;
    assert_eq!(status, 200, "{body}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert_security_headers(&head, "/status.json");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["schema"], 1);
    assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
    let account = &json["accounts"][0];
    assert_eq!(account["upn"], ADMIN);
    assert_eq!(account["state"], "ready");
    assert_eq!(account["has_refresh_token"], true);
    let token = &account["tokens"][0];
    assert!(
        token["expires_in_seconds"].as_u64().unwrap() > 3000,
        "{json}"
    );
    assert!(token["expires_at"].as_i64().unwrap() > json["now"].as_i64().unwrap());
    assert_eq!(account["last_renewal"]["ok"], true, "{json}");
    assert_eq!(account["tenant"], "contoso.com", "{json}");
    assert_eq!(account["flow"], "device-code", "{json}");
    // The hour-long token is renewed in the background ahead of its expiry, not before now.
    let next = account["next_renewal_at"].as_i64().unwrap();
    assert!(next > json["now"].as_i64().unwrap(), "{json}");
    assert!(next < token["expires_at"].as_i64().unwrap(), "{json}");
    let upstream = &json["upstream"];
    assert_eq!(upstream["source"], "no upstream configured", "{json}");
    assert_eq!(upstream["proxies"], serde_json::json!([]), "{json}");
    assert!(upstream["pac"].is_null(), "{json}");
    let der = rustls_pemfile_der(&h.ca_pem);
    let digest = ring::digest::digest(&ring::digest::SHA256, &der);
    let fingerprint: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    assert_eq!(json["ca"]["fingerprint_sha256"], fingerprint.join(":"));
    assert!(json["ca"]["not_after"].as_i64().unwrap() > json["now"].as_i64().unwrap());
    let hosts = json["intercepted_hosts"].as_array().unwrap();
    assert!(hosts.iter().any(|x| x == EXO), "{json}");
    let errors = json["recent_errors"].as_array().unwrap();
    let denied = errors
        .iter()
        .find(|e| e["code"] == "connect_denied" && e["host"] == "127.0.0.1")
        .unwrap_or_else(|| panic!("no connect_denied error in {json}"));
    assert_eq!(denied["status"], 403);
    assert!(!denied["hint"].as_str().unwrap().is_empty());
    assert!(json["open"]["tunnels"].as_u64().unwrap() >= 1, "{json}");
    assert!(json["open"]["connections"].as_u64().unwrap() >= 1, "{json}");
    assert!(!body.contains(CANARY), "the canary is in /status.json");

    let (status, head, page) = raw(h.proxy, "GET", "/", &host).await;
    assert_eq!(status, 200, "{page}");
    assert!(head.contains("content-type: text/html"), "{head}");
    assert_security_headers(&head, "/");
    assert!(page.contains(ADMIN), "{page}");
    assert!(
        page.contains("<td>contoso.com</td><td>device-code</td>"),
        "{page}"
    );
    assert!(page.contains("in <span data-due=\""), "{page}");
    assert!(page.contains("Upstream: no upstream configured"), "{page}");
    assert!(page.contains("data-expires=\""), "{page}");
    assert!(page.contains("<script src=\"/status.js\" defer></script>"));
    assert!(page.contains("href=\"/exoproxy-ca.pem\""));
    assert!(page.contains(
        r"Import-Certificate -FilePath .\exoproxy-ca.pem -CertStoreLocation Cert:\CurrentUser\Root"
    ));
    assert!(page.contains("connect_denied"), "{page}");
    assert!(!page.contains("<script>"), "no inline script under the CSP");
    assert!(!page.contains(CANARY), "the canary is in the page");

    let (status, head, script) = raw(h.proxy, "GET", "/status.js", &host).await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/javascript"), "{head}");
    assert_security_headers(&head, "/status.js");
    assert!(script.contains("data-expires") && script.contains("data-due"));

    let (status, head, pem) = raw(h.proxy, "GET", "/exoproxy-ca.pem", &host).await;
    assert_eq!(status, 200);
    assert_security_headers(&head, "/exoproxy-ca.pem");
    assert_eq!(pem, h.ca_pem);

    // The icon a browser asks for with every page (a refusal would be a console error).
    let (status, head, icon) = raw(h.proxy, "GET", "/favicon.ico", &host).await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: image/svg+xml"), "{head}");
    assert_security_headers(&head, "/favicon.ico");
    assert!(icon.starts_with("<svg "), "{icon}");

    // `localhost:<port>` names us too.
    let localhost = format!("localhost:{}", h.proxy.port());
    let (status, _, _) = raw(h.proxy, "GET", "/status.json", &localhost).await;
    assert_eq!(status, 200);
}

/// SEC: a DNS-rebinding page reaches us under its own name: 400, and nothing of the status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_host_or_a_post_gets_no_data() {
    let h = Harness::start(Options::default()).await;
    let port = h.proxy.port();
    for (method, path, host) in [
        (
            "GET",
            "/status.json",
            format!("rebind.attacker.example:{port}"),
        ),
        ("GET", "/", format!("rebind.attacker.example:{port}")),
        ("GET", "/exoproxy-ca.pem", "attacker.example".to_string()),
        ("GET", "/status.json", format!("127.0.0.1:{}", port + 1)),
        ("POST", "/status.json", h.proxy.to_string()),
    ] {
        let (status, head, body) = raw(h.proxy, method, path, &host).await;
        assert!(
            status == 400 || status == 421,
            "{method} {path} Host {host}: {status}\n{head}"
        );
        assert!(
            !body.contains(ADMIN)
                && !body.contains("BEGIN CERTIFICATE")
                && !body.contains("schema"),
            "{method} {path} Host {host} leaked data: {body}"
        );
    }
}

fn rustls_pemfile_der(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let b64: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

/// `/metrics` after known traffic, read by Python's `prometheus_client` (installed by
/// scripts/setup.sh): names, types and values. The `prometheus-client` crate writes the OpenMetrics
/// text format (what Prometheus asks for first), so the parser is `prometheus_client`'s strict
/// OpenMetrics one; its 0.0.4-format `prometheus_client.parser` does not pair `_total` samples with
/// an OpenMetrics counter family.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_with_the_prometheus_parser() {
    let h = Harness::start(Options {
        canary: Some(CANARY.into()),
        ..Options::default()
    })
    .await;
    use_a_token(&h).await;
    answer_an_error(&h).await;
    let _tunnel = h.client(EXO).await;
    // A blind tunnel (not intercepted) that relays 9 bytes up and closes.
    let mut blind = connect_tunnel(h.proxy, "blind.test").await;
    blind.write_all(b"hello\r\n\r\n").await.unwrap();
    blind.shutdown().await.unwrap();
    let mut sink = Vec::new();
    let _ = blind.read_to_end(&mut sink).await;
    drop(blind);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let (status, head, text) = raw(h.proxy, "GET", "/metrics", &h.proxy.to_string()).await;
    assert_eq!(status, 200, "{text}");
    assert!(
        head.contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    assert_security_headers(&head, "/metrics");
    assert!(!text.contains(CANARY), "the canary is in /metrics");
    let (status, _, body) = raw(h.proxy, "GET", "/metrics", "attacker.example:80").await;
    assert_eq!(status, 400);
    assert!(!body.contains("exoproxy_"), "{body}");

    let families = parse_metrics(&text);
    let family = |name: &str| {
        families
            .get(name)
            .unwrap_or_else(|| panic!("no family {name} in {text}"))
    };
    let value = |name: &str, sample: &str, labels: serde_json::Value| -> f64 {
        let f = family(name);
        f["samples"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == sample && s["labels"] == labels)
            .map(|s| s["value"].as_f64().unwrap())
            .unwrap_or_else(|| panic!("no {sample} {labels} in {f:#}"))
    };
    assert_eq!(family("exoproxy_requests")["type"], "counter");
    assert!(
        value(
            "exoproxy_requests",
            "exoproxy_requests_total",
            serde_json::json!({"status": "200"})
        ) >= 2.0
    );
    assert_eq!(family("exoproxy_errors")["type"], "counter");
    assert!(
        value(
            "exoproxy_errors",
            "exoproxy_errors_total",
            serde_json::json!({"code": "connect_denied"})
        ) >= 1.0
    );
    assert_eq!(family("exoproxy_token_calls")["type"], "counter");
    assert!(
        value(
            "exoproxy_token_calls",
            "exoproxy_token_calls_total",
            serde_json::json!({"account": ADMIN, "result": "ok"})
        ) >= 1.0
    );
    let idp = family("exoproxy_idp_request_duration_seconds");
    assert_eq!(idp["type"], "histogram", "{idp:#}");
    let answered = serde_json::json!({"outcome": "answered"});
    let calls = value(
        "exoproxy_idp_request_duration_seconds",
        "exoproxy_idp_request_duration_seconds_count",
        answered,
    );
    assert!(calls >= 2.0, "device code and its poll, at least: {idp:#}");
    assert_eq!(family("exoproxy_open_tunnels")["type"], "gauge");
    assert!(
        value(
            "exoproxy_open_tunnels",
            "exoproxy_open_tunnels",
            serde_json::json!({})
        ) >= 1.0
    );
    assert!(
        value(
            "exoproxy_open_connections",
            "exoproxy_open_connections",
            serde_json::json!({})
        ) >= 1.0
    );
    // REL-1's process gauges (tests/rel1_gauges.rs follows them through a burst).
    assert_eq!(family("exoproxy_tasks")["type"], "gauge");
    assert!(value("exoproxy_tasks", "exoproxy_tasks", serde_json::json!({})) >= 1.0);
    assert_eq!(family("exoproxy_open_fds")["type"], "gauge");
    assert!(
        value(
            "exoproxy_open_fds",
            "exoproxy_open_fds",
            serde_json::json!({})
        ) >= 3.0
    );
    let rss = family("exoproxy_resident_memory_bytes");
    assert_eq!(rss["type"], "gauge", "{rss:#}");
    let rss = value(
        "exoproxy_resident_memory_bytes",
        "exoproxy_resident_memory_bytes",
        serde_json::json!({}),
    );
    assert!(rss >= 1024.0 * 1024.0, "{rss}");
    assert_eq!(family("exoproxy_relayed_bytes")["type"], "counter");
    let up = serde_json::json!({"direction": "up"});
    assert!(value("exoproxy_relayed_bytes", "exoproxy_relayed_bytes_total", up) >= 9.0);
}

/// A PAC that sends `dead-proxy.test` to a proxy that refuses connections and the rest DIRECT.
fn pac_with_a_dead_proxy(port: u16) -> String {
    format!(
        "function FindProxyForURL(url, host) {{\n\
         if (host == \"dead-proxy.test\") return \"PROXY 127.0.0.1:{port}\";\n\
         return \"DIRECT\";\n}}\n"
    )
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The value of one sample in `/metrics` now, 0 when the series does not exist yet.
async fn metric(proxy: SocketAddr, family: &str, sample: &str, labels: serde_json::Value) -> f64 {
    let (status, _, text) = raw(proxy, "GET", "/metrics", &proxy.to_string()).await;
    assert_eq!(status, 200, "{text}");
    let families = parse_metrics(&text);
    let Some(f) = families.get(family) else {
        return 0.0;
    };
    assert_eq!(f["type"], "counter", "{f:#}");
    (f["samples"].as_array().unwrap().iter())
        .find(|s| s["name"] == sample && s["labels"] == labels)
        .map_or(0.0, |s| s["value"].as_f64().unwrap())
}

/// Issue 11: requests and tunnels by decision and status class, PAC evaluations by result, and the
/// upstream section (source, proxies with their health, the PAC's state) with a PAC-routed proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_pac_evaluations_and_proxy_health_are_shown() {
    let dead = closed_port();
    let h = Harness::start(Options {
        canary: Some(CANARY.into()),
        pac: Some(PacSource::Inline(pac_with_a_dead_proxy(dead))),
        ..Options::default()
    })
    .await;
    let tunnels = |decision: &str, outcome: &str| serde_json::json!({"decision": decision, "outcome": outcome});
    let count = |family: &'static str, labels: serde_json::Value| {
        let (proxy, sample) = (h.proxy, format!("{family}_total"));
        async move { metric(proxy, family, &sample, labels).await }
    };
    let pac_ok = || {
        count(
            "exoproxy_pac_evaluations",
            serde_json::json!({"result": "ok"}),
        )
    };
    let direct = || count("exoproxy_tunnels", tunnels("direct", "2xx"));
    let (pac_before, direct_before) = (pac_ok().await, direct().await);
    let intercepted_before = count("exoproxy_tunnels", tunnels("intercept", "2xx")).await;
    let requests_before = count("exoproxy_routed_requests", tunnels("intercept", "2xx")).await;
    let proxy_before = count("exoproxy_tunnels", tunnels("proxy", "5xx")).await;
    let block_before = count("exoproxy_tunnels", tunnels("block", "4xx")).await;

    // PAC → DIRECT (a fresh host: not answered from the PAC cache).
    drop(connect_tunnel(h.proxy, "pac-direct.test").await);
    assert!(
        pac_ok().await >= pac_before + 1.0,
        "the PAC lookup is not counted"
    );
    assert!(direct().await >= direct_before + 1.0);
    // Intercepted: the CONNECT and the request inside it.
    use_a_token(&h).await;
    let intercepted = count("exoproxy_tunnels", tunnels("intercept", "2xx")).await;
    assert!(intercepted >= intercepted_before + 1.0);
    let requests = count("exoproxy_routed_requests", tunnels("intercept", "2xx")).await;
    assert!(requests >= requests_before + 1.0);
    // Blocked (a loopback destination) and the PAC's dead proxy (502, remembered as bad).
    answer_an_error(&h).await;
    let block = count("exoproxy_tunnels", tunnels("block", "4xx")).await;
    assert!(block >= block_before + 1.0);
    let (_, head) = try_connect(h.proxy, "dead-proxy.test").await;
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    let proxy = count("exoproxy_tunnels", tunnels("proxy", "5xx")).await;
    assert!(proxy >= proxy_before + 1.0);

    let host = h.proxy.to_string();
    let (status, _, body) = raw(h.proxy, "GET", "/status.json", &host).await;
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let upstream = &json["upstream"];
    assert_eq!(upstream["source"], "PAC (inline script)", "{json}");
    let dead = format!("127.0.0.1:{dead}");
    let bad = (upstream["proxies"].as_array().unwrap().iter())
        .find(|p| p["proxy"] == dead.as_str())
        .unwrap_or_else(|| panic!("{dead} not among the proxies: {json}"));
    assert_eq!(bad["health"], "bad", "{json}");
    assert!(bad["seconds_left"].as_u64().unwrap() > 0, "{json}");
    let pac = &upstream["pac"];
    assert_eq!(pac["state"], "loaded", "{json}");
    assert_eq!(pac["source"], "(inline script)", "{json}");
    assert_eq!(pac["on_failure"], "fail", "{json}");
    assert!(pac["last_error"].is_null(), "{json}");
    let loaded_at = pac["loaded_at"].as_i64().unwrap();
    let now = json["now"].as_i64().unwrap();
    assert!(loaded_at > now - 600 && loaded_at <= now, "{json}");

    let (_, _, page) = raw(h.proxy, "GET", "/", &host).await;
    assert!(page.contains("Upstream: PAC (inline script)"), "{page}");
    assert!(
        page.contains(&format!("{dead} (bad: tried last for")),
        "{page}"
    );
    assert!(
        page.contains(
            "<p id=\"pac\">PAC <code>(inline script)</code>: loaded, script in use loaded <time"
        ),
        "{page}"
    );
    assert!(!page.contains(CANARY) && !body.contains(CANARY));
}

/// A PAC URL with userinfo (credentials) is shown without it, in the JSON and on the page, also
/// in the load error that names the URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pac_url_is_shown_without_its_credentials() {
    let port = closed_port();
    let url = format!("http://pacuser:{CANARY}@127.0.0.1:{port}/proxy.pac");
    let h = Harness::start(Options {
        sign_in: false,
        pac: Some(PacSource::Url(url)),
        ..Options::default()
    })
    .await;
    let host = h.proxy.to_string();
    let clean = format!("http://127.0.0.1:{port}/proxy.pac");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let json = loop {
        let (_, _, body) = raw(h.proxy, "GET", "/status.json", &host).await;
        assert!(
            !body.contains(CANARY) && !body.contains("pacuser"),
            "{body}"
        );
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        if json["upstream"]["pac"]["state"] == "failed" {
            break json;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the PAC load never failed: {json}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(json["upstream"]["source"], format!("PAC {clean}"), "{json}");
    assert_eq!(json["upstream"]["pac"]["source"], clean.as_str(), "{json}");
    assert!(json["upstream"]["pac"]["loaded_at"].is_null(), "{json}");
    assert!(json["upstream"]["pac"]["last_error"].is_string(), "{json}");
    let (_, _, page) = raw(h.proxy, "GET", "/", &host).await;
    assert!(
        page.contains(&format!("<code>{clean}</code>: failed, no script loaded")),
        "{page}"
    );
    assert!(
        !page.contains(CANARY) && !page.contains("pacuser"),
        "{page}"
    );
}

/// Families as `{name: {type, samples: [{name, labels, value}]}}`, parsed by `prometheus_client`
/// (which refuses anything not valid OpenMetrics, `# EOF` included).
fn parse_metrics(text: &str) -> serde_json::Map<String, serde_json::Value> {
    use std::io::Write as _;
    let script = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = {}
for f in text_string_to_metric_families(sys.stdin.read()):
    out[f.name] = {"type": f.type, "samples": [
        {"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples]}
print(json.dumps(out))
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (scripts/setup.sh installs prometheus_client)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the Prometheus parser refused /metrics: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

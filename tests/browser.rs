//! The status page and the proxy in a real browser: headless Chromium (Debian `chromium`, installed
//! by scripts/setup.sh) driven over the DevTools protocol by `tests/browser/cdp.py`, against the
//! real `exoproxy` binary signed in at exosim (docs/TESTING.md SEC-12, SEC-13, SEC-16).
//!
//! - The page: the account row and a live countdown render (the countdown changes between two
//!   looks), the CA link downloads a PEM that `openssl x509` parses (the fingerprint the page
//!   shows), nothing is logged as an error in the console, and a screenshot is saved under
//!   `target/browser/` (the README shows a copy, docs/status-page.png).
//! - A page on another origin (served here, on another loopback port) can neither read
//!   `/status.json` nor sign the account out: not by a form that posts the real admin token (the
//!   `Origin` check alone stops it), not by a `no-cors` fetch, not by a fetch with the admin header
//!   (its preflight gets no CORS answer). The page's own sign-out form, same origin, does work.
//! - SEC-16: a `no-cors` fetch to Exchange from a page, with Chromium using the proxy (which
//!   intercepts, Chromium trusting its CA), reaches exosim without `Authorization`.
//!
//! Chromium only talks to loopback (its resolver resolves nothing else) and runs one at a time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod sim_env;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use exosim::SimConfig;
use serde_json::{Value, json};
use sim_env::{ADMIN, SimEnv};

const REST_URL: &str =
    "https://outlook.office365.com/adminapi/beta/contoso.onmicrosoft.com/InvokeCommand";
const GET_MAILBOX: &str = r#"{"CmdletInput":{"CmdletName":"Get-Mailbox","Parameters":{}}}"#;

/// One Chromium at a time: the suite shares two cores.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// exosim and the `exoproxy run` binary signed in at it; the proxy is killed (by its pid) on drop.
struct SignedIn {
    env: SimEnv,
    proxy: Child,
    addr: SocketAddr,
}

impl Drop for SignedIn {
    fn drop(&mut self) {
        let _ = self.proxy.kill();
        let _ = self.proxy.wait();
    }
}

impl SignedIn {
    async fn start() -> SignedIn {
        let env = SimEnv::start(
            SimConfig {
                auto_approve: true,
                device_code_interval: Duration::from_secs(1),
                ..SimConfig::default()
            },
            "",
        )
        .await;
        let exoproxy = |args: &[&str]| {
            let mut cmd = env.exoproxy(args);
            cmd.stdin(Stdio::null());
            cmd
        };
        let mut login = exoproxy(&["login", ADMIN]);
        let out = blocking(move || login.output().unwrap()).await;
        assert!(
            out.status.success(),
            "login: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let proxy = exoproxy(&["run", "--listen", &addr.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = SignedIn { env, proxy, addr };
        // The port is bound before the admin surface (and its token file) is ready.
        let deadline = Instant::now() + Duration::from_secs(20);
        while started.try_status().is_none() {
            assert!(Instant::now() < deadline, "the proxy did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        started
    }

    /// `/status.json`, as a same-user client that names us in `Host` reads it.
    fn status(&self) -> Value {
        self.try_status().expect("/status.json answers 200")
    }

    fn try_status(&self) -> Option<Value> {
        let mut stream = TcpStream::connect(self.addr).ok()?;
        let request = format!(
            "GET /status.json HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        );
        stream.write_all(request.as_bytes()).ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.1 200")
            .then(|| serde_json::from_str(body).unwrap())
    }

    fn account(&self) -> Value {
        self.status()["accounts"][0].clone()
    }

    /// The admin token of this run (docs/STATUS.md): what the page's forms embed.
    fn admin_token(&self) -> String {
        let token = std::fs::read_to_string(self.env.state.join("admin-token"))
            .expect("the running proxy writes <state_dir>/admin-token");
        token.trim().to_string()
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// Runs `tests/browser/cdp.py` with `plan` (its docstring has the format); what happened.
async fn chromium(plan: Value) -> Value {
    let _one = ONE_BROWSER.lock().await;
    blocking(move || {
        let mut child = Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/cdp.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 (scripts/setup.sh installs websocket-client and chromium)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(plan.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "the Chromium driver failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    })
    .await
}

/// Errors the page caused: console errors and assertions, uncaught exceptions, error log entries.
fn page_errors(run: &Value) -> Vec<String> {
    let console = run["console"].as_array().unwrap().iter();
    let log = run["log"].as_array().unwrap().iter();
    let exceptions = run["exceptions"].as_array().unwrap().iter();
    console
        .filter(|c| c["level"] == "error" || c["level"] == "assert")
        .chain(log.filter(|l| l["level"] == "error"))
        .chain(exceptions)
        .map(Value::to_string)
        .collect()
}

/// Responses Chromium received for `url` (whatever the page could read of them).
fn responses<'a>(run: &'a Value, method: &str, url: &str) -> Vec<&'a Value> {
    let all = run["responses"].as_array().unwrap();
    (all.iter())
        .filter(|r| r["method"] == method && r["url"] == url)
        .collect()
}

/// Where test artifacts go: `target/browser/`.
fn artifacts() -> PathBuf {
    let exe = Path::new(env!("CARGO_BIN_EXE_exoproxy"));
    let dir = exe.parent().unwrap().parent().unwrap().join("browser");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A page served on its own loopback port (another origin than the proxy's), for every path;
/// stops with the value.
struct OtherOrigin {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl OtherOrigin {
    fn serve(html: String) -> OtherOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(mut stream) = stream else { continue };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{html}",
                    html.len()
                );
                let _ = stream.write_all(reply.as_bytes());
            }
        });
        OtherOrigin { addr, stop }
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

impl Drop for OtherOrigin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr); // wakes the accept loop
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_renders_in_chromium_with_a_live_countdown_and_the_ca_download() {
    let p = SignedIn::start().await;
    let downloads = tempfile::tempdir().unwrap();
    let screenshot = artifacts().join("status-page.png");
    let _ = std::fs::remove_file(&screenshot);
    let countdown = "document.querySelector('#accounts [data-expires]').textContent";
    let run = chromium(json!({
        "url": format!("http://{}/", p.addr),
        "steps": [
            {"eval": "document.querySelector('#accounts').innerText"},
            {"eval": countdown},
            {"sleep": 1.3},
            {"eval": countdown},
            {"screenshot": screenshot},
            {"download": "a[href='/exoproxy-ca.pem']", "dir": downloads.path()},
        ],
    }))
    .await;
    let results = run["results"].as_array().unwrap();

    let accounts = results[0].as_str().unwrap();
    let row = accounts.lines().find(|l| l.starts_with(ADMIN));
    let row = row.unwrap_or_else(|| panic!("no row for {ADMIN}: {accounts}"));
    assert!(row.contains("ready"), "{row}");
    let (first, second) = (results[1].as_str().unwrap(), results[3].as_str().unwrap());
    // `59m 58s`: minutes and seconds left of the hour-long token.
    let shape = |t: &str| t.ends_with('s') && t.contains("m ") && !t.contains('h');
    assert!(shape(first) && shape(second), "{first:?} {second:?}");
    assert_ne!(first, second, "the countdown does not tick");

    let pem = Path::new(results[5].as_str().expect("one downloaded file"));
    assert_eq!(pem.file_name().unwrap(), "exoproxy-ca.pem");
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(pem)
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl x509 refused the download");
    let fingerprint = String::from_utf8_lossy(&out.stdout);
    let expected = p.status()["ca"]["fingerprint_sha256"].clone();
    assert!(
        fingerprint.trim().ends_with(expected.as_str().unwrap()),
        "{fingerprint} vs {expected}"
    );

    assert_eq!(page_errors(&run), Vec::<String>::new(), "console errors");
    let png = std::fs::read(&screenshot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000);
    println!("screenshot: {}", screenshot.display());
}

/// The other origin's page: it tries to read the status, then to sign the account out in every way
/// a page can, with the real admin token; `attempt()` resolves to what it could see.
fn hostile_page(proxy: SocketAddr, token: &str) -> String {
    format!(
        r#"<!DOCTYPE html><html><head><title>elsewhere</title></head><body>
<form id="signout" method="POST" action="http://{proxy}/action/signout">
<input type="hidden" name="token" value="{token}"><input type="hidden" name="account" value="{ADMIN}">
</form>
<script>
const base = "http://{proxy}";
const form = () => new URLSearchParams({{token: "{token}", account: "{ADMIN}"}});
async function outcome(f) {{
  try {{ return await f(); }} catch (e) {{ return "refused: " + e.name; }}
}}
async function attempt() {{
  return {{
    read: await outcome(async () => {{
      const r = await fetch(base + "/status.json");
      return "read " + r.status + ": " + await r.text();
    }}),
    opaque: await outcome(async () => {{
      const r = await fetch(base + "/status.json", {{mode: "no-cors"}});
      return r.type + " " + r.status + " " + (await r.text()).length;
    }}),
    no_cors_post: await outcome(async () => {{
      const r = await fetch(base + "/action/signout", {{method: "POST", mode: "no-cors", body: form()}});
      return r.type;
    }}),
    with_header: await outcome(async () => {{
      const r = await fetch(base + "/action/signout",
        {{method: "POST", headers: {{"X-Admin-Token": "{token}"}}, body: form()}});
      return "answered " + r.status;
    }}),
  }};
}}
</script></body></html>"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sec_12_13_a_page_on_another_origin_can_neither_read_the_status_nor_sign_out() {
    let p = SignedIn::start().await;
    let token = p.admin_token();
    let page = OtherOrigin::serve(hostile_page(p.addr, &token));
    let signout = format!("http://{}/action/signout", p.addr);
    let run = chromium(json!({
        "url": page.url(),
        "steps": [
            {"eval": "attempt()"},
            // Last, a top-level form post (a navigation, so it goes after the fetches).
            {"eval": "document.getElementById('signout').submit()"},
            {"wait_load": 10},
            {"eval": "location.href"},
        ],
    }))
    .await;
    let seen = &run["results"][0];
    assert_eq!(seen["read"], "refused: TypeError", "{seen}");
    assert_eq!(seen["opaque"], "opaque 0 0", "{seen}");
    assert_eq!(seen["no_cors_post"], "opaque", "{seen}");
    assert_eq!(seen["with_header"], "refused: TypeError", "{seen}");
    assert_eq!(run["results"][3], signout.as_str(), "the form was posted");
    // Both posts reached the proxy (the form's and the no-cors fetch's) and were refused for their
    // Origin; the preflight of the fetch with the header got no CORS approval, so it never posted.
    let posts = responses(&run, "POST", &signout);
    let statuses: Vec<&Value> = posts.iter().map(|r| &r["status"]).collect();
    assert_eq!(
        statuses,
        [&json!(403), &json!(403)],
        "{:#}",
        run["responses"]
    );
    for r in run["responses"].as_array().unwrap() {
        let headers = r["headers"].as_object().unwrap();
        assert!(
            !headers.keys().any(|k| k.starts_with("access-control-")),
            "a CORS header: {r}"
        );
    }
    let account = p.account();
    assert_eq!(account["state"], "ready", "signed out by another origin");
    assert_eq!(account["has_refresh_token"], true);

    // The same form on the page's own origin (with its own embedded token) signs out: what was
    // refused above was the origin, nothing else.
    let run = chromium(json!({
        "url": format!("http://{}/", p.addr),
        "steps": [
            {"eval": "document.querySelector('form[action$=\"/action/signout\"]').submit()"},
            {"wait_load": 10},
        ],
    }))
    .await;
    assert_eq!(page_errors(&run), Vec::<String>::new(), "console errors");
    let statuses: Vec<&Value> = (responses(&run, "POST", &signout).iter())
        .map(|r| &r["status"])
        .collect();
    assert_eq!(statuses, [&json!(303)], "{:#}", run["responses"]);
    assert_eq!(p.account()["has_refresh_token"], false, "{}", p.status());
}

/// SEC-16: Chromium configured to use the proxy (which intercepts Exchange and whose CA Chromium
/// trusts) fetches Exchange `no-cors` from a page: the proxy relays it without a token; exosim
/// answers its "no credentials" 401. The same request from a script client gets the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sec_16_no_cors_fetch_from_chromium_through_the_proxy_carries_no_token() {
    let p = SignedIn::start().await;
    let page = OtherOrigin::serve(format!(
        r#"<!DOCTYPE html><html><head><title>a page</title></head><body><script>
async function attempt() {{
  const post = await fetch("{REST_URL}", {{method: "POST", mode: "no-cors", body: '{GET_MAILBOX}'}});
  const get = await fetch("{REST_URL}", {{mode: "no-cors"}});
  return post.type + " " + get.type;
}}
</script></body></html>"#
    ));
    let before = p.env.sim.control().exchange().request_count();
    let run = chromium(json!({
        "url": page.url(),
        "proxy": p.addr.to_string(),
        "trust_pem": p.env.state.join("exoproxy-ca.pem"),
        "steps": [{"eval": "attempt()"}],
    }))
    .await;
    assert_eq!(run["results"][0], "opaque opaque", "{run:#}");
    for method in ["POST", "GET"] {
        let seen = responses(&run, method, REST_URL);
        assert_eq!(seen.len(), 1, "{method}: {:#}", run["responses"]);
        let headers = &seen[0]["headers"];
        assert_eq!(seen[0]["status"], 401, "{method}: {headers}");
        let diagnostics = headers["x-ms-diagnostics"].as_str().unwrap();
        assert!(
            diagnostics.contains("No credentials were presented"),
            "{method}: exosim saw credentials: {diagnostics}"
        );
        assert!(headers.get("x-localproxy-error").is_none(), "{headers}");
    }
    assert_eq!(p.env.sim.control().exchange().request_count(), before + 2);

    // The control: a client that is no browser gets the token on the same request (the front door
    // answers 302 to the tenant host only once the token is accepted).
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "20",
        ])
        .args(["--proxy", &format!("http://{}", p.addr)])
        .arg("--cacert")
        .arg(p.env.state.join("exoproxy-ca.pem"))
        .args([
            "-H",
            "content-type: application/json",
            "--data",
            GET_MAILBOX,
            REST_URL,
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "302");
}

//! Admin actions and the CLI that talks to the running proxy (docs/STATUS.md, "Actions";
//! docs/TESTING.md SEC-9, SEC-11, SEC-12, SEC-14): the real binary against exosim on loopback, raw
//! HTTP on real sockets.
//! - SEC-9/11/12: a missing or wrong token (401), a GET (405, `Allow: POST`), a foreign `Origin`, a
//!   form without `Origin`, a `text/plain` body (403) change nothing: the account stays ready and
//!   no token call is made for it; the same request done right acts.
//! - SEC-14: `<state dir>/admin-token` is 256 bits of hex, owner-only, new at every start (the old
//!   one stops working).
//! - Issue 11: after `exoproxy logout` with the proxy running the account stays signed out across
//!   renewals (2 s tokens), requests get `reauth_required` saying to run `exoproxy login`, and
//!   `exoproxy login` then works at once; a waiting client and `login` see the same device code;
//!   `exoproxy status` prints `/status.json`; `exoproxy token` without a sign-in says to log in.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod sim_env;

use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use exosim::{GrantType, SimConfig};
use sim_env::{ADMIN, Running, SimEnv, output, text};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const REST_URL: &str =
    "https://outlook.office365.com/adminapi/beta/contoso.onmicrosoft.com/InvokeCommand";
const GET_MAILBOX: &str = r#"{"CmdletInput":{"CmdletName":"Get-Mailbox","Parameters":{}}}"#;
const FORM: &str = "application/x-www-form-urlencoded";

/// exosim, a config naming it, a state dir, and the proxy once started.
struct Env {
    env: SimEnv,
    port: u16,
    proxy: Option<Running>,
}

/// The emulator and the files, as `env.sim`, `env.state`.
impl std::ops::Deref for Env {
    type Target = SimEnv;
    fn deref(&self) -> &SimEnv {
        &self.env
    }
}

/// Request headers: name, value.
type Headers<'a> = Vec<(&'a str, &'a str)>;

/// A raw reply: status, lower-cased head, body.
struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Env {
    /// exosim with `token_lifetime` tokens (auto-approving device codes when `approve`), `ADMIN`
    /// configured (and `extra` accounts), not signed in, no proxy yet.
    async fn new(token_lifetime: Duration, approve: bool, extra: &[&str]) -> Env {
        let mut more = format!("[intercept]\ndefault_account = \"{ADMIN}\"\n");
        for upn in extra {
            more.push_str(&format!("\n[[account]]\nupn = \"{upn}\"\n"));
        }
        let env = SimEnv::start(
            SimConfig {
                auto_approve: approve,
                ..SimConfig::default()
            },
            &more,
        )
        .await;
        env.sim.control().set_token_lifetime(token_lifetime);
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Env {
            env,
            port,
            proxy: None,
        }
    }

    fn exoproxy(&self, args: &[&str]) -> Command {
        self.env.exoproxy(args)
    }

    async fn cli(&self, args: &[&str]) -> Output {
        output(self.exoproxy(args)).await
    }

    /// `exoproxy login ADMIN`, which must succeed; its stdout.
    async fn login(&self) -> String {
        let out = self.cli(&["login", ADMIN]).await;
        assert!(
            out.status.success(),
            "{}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// Starts (or restarts) the proxy and waits until it answers `/status.json`.
    async fn start_proxy(&mut self) {
        self.proxy = None;
        let child = self
            .exoproxy(&["run", "--listen", &format!("127.0.0.1:{}", self.port)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.proxy = Some(Running(child));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(reply) = self.try_raw("GET", "/status.json", &[], "").await
                && reply.status == 200
            {
                return;
            }
            assert!(Instant::now() < deadline, "the proxy did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn host(&self) -> String {
        self.addr().to_string()
    }

    fn origin(&self) -> String {
        format!("http://{}", self.host())
    }

    fn admin_token(&self) -> String {
        std::fs::read_to_string(self.state.join("admin-token")).unwrap()
    }

    async fn try_raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> std::io::Result<Reply> {
        let mut stream = TcpStream::connect(self.addr()).await?;
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host());
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        stream.write_all(request.as_bytes()).await?;
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).await?;
        let reply = text(&bytes);
        let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Ok(Reply {
            status,
            head: head.to_ascii_lowercase(),
            body: body.to_string(),
        })
    }

    async fn raw(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        self.try_raw(method, path, headers, body).await.unwrap()
    }

    /// The account's entry in `/status.json`.
    async fn account(&self, upn: &str) -> serde_json::Value {
        let reply = self.raw("GET", "/status.json", &[], "").await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let status: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        status["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["upn"] == upn)
            .cloned()
            .unwrap_or_else(|| panic!("{upn} not in {status}"))
    }

    /// One REST call through the proxy: (status, head and body).
    async fn call(&self) -> (String, String) {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-L", "--post302", "--max-time", "20", "-D", "-"])
            .args(["-w", "\n%{http_code}"])
            .args(["--proxy", &format!("http://{}", self.host())])
            .arg("--cacert")
            .arg(self.state.join("exoproxy-ca.pem"))
            .args(["-H", "content-type: application/json"])
            .args(["--data", GET_MAILBOX, REST_URL]);
        let out = text(&output(cmd).await.stdout);
        let status = out.lines().last().unwrap_or("").to_string();
        (status, out)
    }

    fn refresh_grants(&self) -> u64 {
        self.sim.control().grant_count(GrantType::RefreshToken)
    }

    /// A signed-in account and a running proxy that has used (and so renews) its token.
    async fn signed_in_and_running(token_lifetime: Duration) -> Env {
        let mut env = Env::new(token_lifetime, true, &[]).await;
        env.login().await;
        env.start_proxy().await;
        let (status, out) = env.call().await;
        assert_eq!(status, "200", "signed in: {out}");
        env
    }

    /// Nothing changed for `ADMIN`: still ready with a token, and still served.
    async fn assert_untouched(&self, what: &str) {
        let account = self.account(ADMIN).await;
        assert_eq!(account["state"], "ready", "{what}: {account}");
        let (status, out) = self.call().await;
        assert_eq!(status, "200", "{what}: {out}");
    }
}

fn assert_admin_headers(reply: &Reply, what: &str) {
    for line in [
        "cache-control: no-store",
        "content-security-policy: default-src 'self'",
        "x-frame-options: deny",
        "x-content-type-options: nosniff",
    ] {
        assert!(
            reply.head.contains(line),
            "{what}: no {line:?}\n{}",
            reply.head
        );
    }
    assert!(
        !reply.head.contains("access-control-allow"),
        "{what}: a CORS header\n{}",
        reply.head
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sec_9_an_action_without_or_with_a_wrong_token_is_401_and_changes_nothing() {
    let env = Env::signed_in_and_running(Duration::from_secs(3600)).await;
    let origin = env.origin();
    let account = format!("account={ADMIN}");
    let wrong = format!("token={}&account={ADMIN}", "0".repeat(64));
    let cases: [(&str, Headers, &str); 4] = [
        ("no token at all", vec![("Origin", &origin)], &account),
        ("a wrong form token", vec![("Origin", &origin)], &wrong),
        (
            "a wrong header token",
            vec![("X-Admin-Token", "nope")],
            &account,
        ),
        (
            "an empty header token",
            vec![("X-Admin-Token", "")],
            &account,
        ),
    ];
    let grants = env.refresh_grants();
    for (what, mut headers, body) in cases {
        headers.push(("Content-Type", FORM));
        let reply = env.raw("POST", "/action/signout", &headers, body).await;
        assert_eq!(reply.status, 401, "{what}: {}", reply.body);
        assert!(reply.body.contains("admin token"), "{what}: {}", reply.body);
        assert_admin_headers(&reply, what);
        let reply = env.raw("POST", "/action/renew", &headers, body).await;
        assert_eq!(reply.status, 401, "{what} (renew): {}", reply.body);
    }
    assert_eq!(env.refresh_grants(), grants, "no renewal was made");
    env.assert_untouched("after refused actions").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sec_11_an_action_by_get_or_any_other_method_is_405_and_changes_nothing() {
    let env = Env::signed_in_and_running(Duration::from_secs(3600)).await;
    let token = env.admin_token();
    let query = format!("/action/signout?token={token}&account={ADMIN}");
    for method in ["GET", "PUT", "DELETE"] {
        let headers = [("X-Admin-Token", token.as_str()), ("Content-Type", FORM)];
        let reply = env.raw(method, &query, &headers, "").await;
        assert_eq!(reply.status, 405, "{method}: {}", reply.body);
        assert!(
            reply.head.contains("allow: post"),
            "{method}\n{}",
            reply.head
        );
        assert_admin_headers(&reply, method);
    }
    env.assert_untouched("after GET/PUT/DELETE").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sec_12_a_foreign_origin_a_form_without_origin_or_text_plain_is_403() {
    let env = Env::signed_in_and_running(Duration::from_secs(3600)).await;
    let token = env.admin_token();
    let origin = env.origin();
    let body = format!("token={token}&account={ADMIN}");
    let cases: [(&str, Headers); 5] = [
        (
            "a foreign Origin",
            vec![
                ("Origin", "http://evil.example:8080"),
                ("Content-Type", FORM),
            ],
        ),
        (
            "a foreign Origin with the header",
            vec![
                ("Origin", "http://127.0.0.1:1"),
                ("X-Admin-Token", &token),
                ("Content-Type", FORM),
            ],
        ),
        ("no Origin and no header", vec![("Content-Type", FORM)]),
        (
            "text/plain",
            vec![("Origin", &origin), ("Content-Type", "text/plain")],
        ),
        (
            "text/plain with the header",
            vec![("X-Admin-Token", &token), ("Content-Type", "text/plain")],
        ),
    ];
    for (what, headers) in cases {
        let reply = env.raw("POST", "/action/signout", &headers, &body).await;
        assert_eq!(reply.status, 403, "{what}: {}", reply.body);
        assert_admin_headers(&reply, what);
    }
    env.assert_untouched("after cross-origin attempts").await;

    // The same form from our own origin acts: 303 back to the page, which shows the outcome.
    let grants = env.refresh_grants();
    let headers = [("Origin", origin.as_str()), ("Content-Type", FORM)];
    let reply = env
        .raw(
            "POST",
            "/action/renew",
            &headers,
            &format!("token={token}&account={ADMIN}"),
        )
        .await;
    assert_eq!(reply.status, 303, "{}", reply.body);
    assert!(reply.head.contains("location: /\r\n"), "{}", reply.head);
    assert_admin_headers(&reply, "303");
    assert!(env.refresh_grants() > grants, "renew made a token call");
    let page = env.raw("GET", "/", &[], "").await;
    assert!(page.body.contains("id=\"last-action\""), "{}", page.body);
    assert!(page.body.contains("renewed"), "{}", page.body);
    assert!(
        page.body
            .contains(&format!("name=\"token\" value=\"{token}\"")),
        "the page's forms carry the token"
    );
    let unknown = env
        .raw(
            "POST",
            "/action/nope",
            &[("X-Admin-Token", &token), ("Content-Type", FORM)],
            "",
        )
        .await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sec_14_the_admin_token_file_is_256_bits_owner_only_and_new_at_every_start() {
    let mut env = Env::signed_in_and_running(Duration::from_secs(3600)).await;
    let first = env.admin_token();
    assert_eq!(first.len(), 64, "256 bits in hex");
    assert!(first.bytes().all(|b| b.is_ascii_hexdigit()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(env.state.join("admin-token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "owner-only: {mode:o}");
    }
    env.start_proxy().await;
    let second = env.admin_token();
    assert_ne!(first, second, "a new token at every start");
    let renew = |token: String| {
        let env = &env;
        async move {
            let headers = [("X-Admin-Token", token.as_str()), ("Content-Type", FORM)];
            let body = format!("account={ADMIN}");
            env.raw("POST", "/action/renew", &headers, &body).await
        }
    };
    assert_eq!(renew(first).await.status, 401, "the last start's token");
    assert_eq!(renew(second).await.status, 303, "this start's token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_with_the_proxy_running_is_final_across_renewals_and_login_works_at_once() {
    let env = Env::signed_in_and_running(Duration::from_secs(2)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(env.refresh_grants() > 0, "the proxy renews 2 s tokens");

    let out = env.cli(&["logout", ADMIN]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("signed out"),
        "{}",
        text(&out.stdout)
    );
    let grants = env.refresh_grants();
    tokio::time::sleep(Duration::from_secs(6)).await; // three token lifetimes
    assert_eq!(
        env.refresh_grants(),
        grants,
        "nothing renews a signed-out account"
    );
    let account = env.account(ADMIN).await;
    assert_eq!(account["state"], "signed_out", "{account}");
    assert_eq!(account["tokens"], serde_json::json!([]), "{account}");
    let cached: Vec<String> = (std::fs::read_dir(env.state.join("tokens")).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".json"))
        .collect();
    assert!(cached.is_empty(), "the cache holds no account: {cached:?}");
    let (status, out) = env.call().await;
    assert_eq!(status, "503", "{out}");
    assert!(out.contains("reauth_required"), "{out}");
    assert!(out.contains(&format!("exoproxy login {ADMIN}")), "{out}");
    assert!(
        !out.contains("enter the code"),
        "no device code is started: {out}"
    );
    let status_out = env.cli(&["status"]).await;
    assert!(
        text(&status_out.stdout).contains(&format!(
            "{ADMIN}: signed out: run `exoproxy login {ADMIN}`"
        )),
        "{}",
        text(&status_out.stdout)
    );

    let login = env.login().await;
    assert!(
        login.contains("the running exoproxy uses the new sign-in now"),
        "{login}"
    );
    let (status, out) = env.call().await;
    assert_eq!(status, "200", "the new sign-in is used at once: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_client_and_signin_share_one_device_code() {
    let mut env = Env::new(Duration::from_secs(3600), false, &[]).await;
    env.start_proxy().await;
    let (status, out) = env.call().await;
    assert_eq!(status, "503", "{out}");
    let pending = env.sim.control().pending_devices();
    assert_eq!(pending.len(), 1, "{pending:?}");
    let code = &pending[0];
    assert!(
        out.contains(code.as_str()),
        "the client is shown the code: {out}"
    );

    let token = env.admin_token();
    let headers = [
        ("X-Admin-Token", token.as_str()),
        ("Content-Type", FORM),
        ("Accept", "application/json"),
    ];
    let reply = env
        .raw(
            "POST",
            "/action/signin",
            &headers,
            &format!("account={ADMIN}"),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_admin_headers(&reply, "signin");
    let json: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(json["ok"], true, "{json}");
    assert_eq!(json["action"], "signin");
    assert_eq!(json["user_code"], code.as_str(), "the same code: {json}");
    assert!(
        json["verification_uri"]
            .as_str()
            .unwrap()
            .starts_with("https://")
    );
    let expires = json["expires_at"].as_str().unwrap();
    assert!(
        expires.len() == 20 && expires.ends_with('Z'),
        "RFC 3339: {expires}"
    );
    assert_eq!(
        env.sim.control().pending_devices().len(),
        1,
        "no second code"
    );
    let account = env.account(ADMIN).await;
    assert_eq!(account["sign_in"]["user_code"], code.as_str(), "{account}");

    // `exoproxy login` prints the same code and waits until it is approved.
    let login = env
        .exoproxy(&["login", ADMIN])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    env.sim.control().approve_device(Some(code)).unwrap();
    let out = tokio::task::spawn_blocking(move || login.wait_with_output().unwrap())
        .await
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains(&format!("enter the code {code}")),
        "{stdout}"
    );
    assert!(stdout.contains("uses the new sign-in now"), "{stdout}");
    let (status, out) = env.call().await;
    assert_eq!(status, "200", "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_prints_the_running_proxy_and_token_without_sign_in_says_login() {
    const OTHER: &str = "other@contoso.com";
    let mut env = Env::new(Duration::from_secs(3600), true, &[OTHER]).await;
    let none = env.cli(&["status"]).await;
    assert!(!none.status.success());
    assert!(
        text(&none.stderr).contains("no exoproxy is running"),
        "{}",
        text(&none.stderr)
    );

    let token = env.cli(&["token", OTHER]).await;
    assert!(!token.status.success());
    let err = text(&token.stderr);
    assert!(
        err.contains(&format!("run `exoproxy login {OTHER}`")),
        "{err}"
    );
    assert!(
        !err.contains("enter the code") && text(&token.stdout).is_empty(),
        "{err}"
    );
    assert!(
        env.sim.control().pending_devices().is_empty(),
        "no device code was started"
    );

    env.login().await;
    env.start_proxy().await;
    let (status, out) = env.call().await;
    assert_eq!(status, "200", "{out}");
    let out = env.cli(&["status"]).await;
    let report = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        report.contains(&format!("at http://127.0.0.1:{}/", env.port)),
        "{report}"
    );
    assert!(report.contains(&format!("{ADMIN}: ready")), "{report}");
    assert!(
        report.contains("token https://outlook.office365.com: expires in"),
        "{report}"
    );
    let out = env.cli(&["status", "--json"]).await;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["schema"], 1);
    assert_eq!(json["accounts"][0]["upn"], ADMIN);
}

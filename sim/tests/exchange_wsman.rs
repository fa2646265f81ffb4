//! WS-Man (RPS) behaviour of the Exchange emulator, driven through `Exchange::handle` directly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod exchange_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use exchange_support::*;
use exosim::exchange::{Exchange, ExchangeSettings};

const TENANT_HOST: &str = "nam12b.outlook.office365.com";

struct Env {
    ex: Arc<Exchange>,
    tokens: Arc<TestTokens>,
}

impl Env {
    fn new(settings: ExchangeSettings) -> Env {
        Env {
            ex: Arc::new(Exchange::new(settings)),
            tokens: Arc::new(TestTokens::new()),
        }
    }

    fn admin_auth(&self) -> String {
        basic(ADMIN, &self.tokens.mint(&Mint::user(EXO, ADMIN)))
    }

    async fn post(
        &self,
        host: &str,
        auth: &str,
        cookie: Option<&str>,
        body: String,
    ) -> http::Response<Bytes> {
        let req = wsman_request(host, RPS_PATH, auth, cookie, body);
        self.ex.handle(host, req, &*self.tokens).await
    }

    /// Create a shell on the tenant host; returns (shell id, affinity cookie).
    async fn open_shell(&self, auth: &str) -> (String, String) {
        let resp = self.post(TENANT_HOST, auth, None, create_body()).await;
        assert_eq!(resp.status(), 200, "{}", body_text(&resp));
        let cookie = set_cookie_value(&resp).expect("Create sets MS-WSMAN");
        (element_text(&body_text(&resp), "ShellId").unwrap(), cookie)
    }

    async fn run(&self, auth: &str, cookie: &str, shell: &str, cmd: &str) -> String {
        let resp = self
            .post(TENANT_HOST, auth, Some(cookie), command_body(shell, cmd))
            .await;
        assert_eq!(resp.status(), 200, "{}", body_text(&resp));
        element_text(&body_text(&resp), "CommandId").unwrap()
    }
}

fn fault_code(resp: &http::Response<Bytes>) -> String {
    let body = body_text(resp);
    let at = body.find("Code=\"").expect("WSManFault with a Code") + 6;
    body[at..at + body[at..].find('"').unwrap()].to_owned()
}

fn stdout_of(resp: &http::Response<Bytes>) -> String {
    let body = body_text(resp);
    let b64 = element_text(&body, "Stream").unwrap_or_default();
    String::from_utf8(STANDARD.decode(b64).unwrap()).unwrap()
}

#[tokio::test]
async fn front_door_redirects_to_tenant_host_keeping_the_query() {
    let env = Env::new(ExchangeSettings::default());
    let resp = env
        .post(
            "outlook.office365.com",
            &env.admin_auth(),
            None,
            create_body(),
        )
        .await;
    assert_eq!(resp.status(), 302);
    assert_eq!(
        resp.headers()["location"],
        "https://nam12b.outlook.office365.com/PowerShell-LiveID?BasicAuthToOAuthConversion=true;PSVersion=5.1.19041.1"
    );
    let set_cookie = resp.headers()["set-cookie"].to_str().unwrap();
    assert!(
        set_cookie.starts_with("MS-WSMAN=")
            && set_cookie.ends_with("; path=/PowerShell-LiveID; secure; HttpOnly")
    );
    // The cookie from the front door is honoured on the tenant host.
    let front_cookie = set_cookie_value(&resp).unwrap();
    let resp = env
        .post(
            TENANT_HOST,
            &env.admin_auth(),
            Some(&front_cookie),
            create_body(),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers().get("set-cookie").is_none(),
        "affinity already established"
    );
    // The older URI and the S&C front door redirect too.
    let req = wsman_request(
        "ps.outlook.com",
        "/powershell?BasicAuthToOAuthConversion=true",
        &env.admin_auth(),
        None,
        create_body(),
    );
    let resp = env.ex.handle("ps.outlook.com", req, &*env.tokens).await;
    assert_eq!(resp.status(), 302);
    let scc = basic(ADMIN, &env.tokens.mint(&Mint::user(SCC, ADMIN)));
    let resp = env
        .post(
            "ps.compliance.protection.outlook.com",
            &scc,
            None,
            create_body(),
        )
        .await;
    assert_eq!(resp.status(), 302);
    let location = resp.headers()["location"].to_str().unwrap();
    assert!(
        location
            .starts_with("https://nam12b.ps.compliance.protection.outlook.com/PowerShell-LiveID?"),
        "{location}"
    );
    assert_eq!(env.ex.request_count(), 4);
}

#[tokio::test]
async fn create_sets_the_affinity_cookie() {
    let env = Env::new(ExchangeSettings::default());
    let resp = env
        .post(TENANT_HOST, &env.admin_auth(), None, create_body())
        .await;
    assert_eq!(resp.status(), 200);
    let set_cookie = resp.headers()["set-cookie"].to_str().unwrap();
    assert!(set_cookie.starts_with("MS-WSMAN="), "{set_cookie}");
    assert!(
        set_cookie.ends_with("; path=/PowerShell-LiveID; secure; HttpOnly"),
        "{set_cookie}"
    );
    let body = body_text(&resp);
    assert!(body.contains("<w:Selector Name=\"ShellId\">"), "{body}");
    assert!(
        body.contains("<a:RelatesTo>uuid:TEST-1</a:RelatesTo>"),
        "{body}"
    );
    assert_eq!(env.ex.open_shells(), 1);
}

#[tokio::test]
async fn request_without_cookie_gets_invalid_selectors_fault() {
    let env = Env::new(ExchangeSettings::default());
    let auth = env.admin_auth();
    let (shell, cookie) = env.open_shell(&auth).await;
    let resp = env
        .post(TENANT_HOST, &auth, None, command_body(&shell, "whoami"))
        .await;
    assert_eq!(resp.status(), 500);
    assert_eq!(fault_code(&resp), "2150858843");
    assert!(body_text(&resp).contains("w:InvalidSelectors"));
    // A cookie issued to someone else does not count either.
    let resp = env
        .post(
            TENANT_HOST,
            &auth,
            Some("0123456789abcdef"),
            command_body(&shell, "whoami"),
        )
        .await;
    assert_eq!(fault_code(&resp), "2150858843");
    env.run(&auth, &cookie, &shell, "whoami").await;
}

#[tokio::test]
async fn whoami_prints_the_token_upn() {
    let env = Env::new(ExchangeSettings::default());
    // The Basic user matches the UPN case-insensitively.
    let auth = basic(
        "Admin@Contoso.com",
        &env.tokens.mint(&Mint::user(EXO, ADMIN)),
    );
    let (shell, cookie) = env.open_shell(&auth).await;
    let cmd = env.run(&auth, &cookie, &shell, "whoami").await;
    let resp = env
        .post(
            TENANT_HOST,
            &auth,
            Some(&cookie),
            receive_body(&shell, &cmd, "PT20S"),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        stdout_of(&resp),
        "admin@contoso.com\r\n",
        "{}",
        body_text(&resp)
    );
    let body = body_text(&resp);
    assert!(body.contains("CommandState/Done"), "{body}");
    assert_eq!(element_text(&body, "ExitCode").as_deref(), Some("0"));
    let resp = env
        .post(TENANT_HOST, &auth, Some(&cookie), delete_body(&shell))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(env.ex.open_shells(), 0);
}

#[tokio::test]
async fn basic_user_must_match_the_token() {
    let env = Env::new(ExchangeSettings::default());
    let token = env.tokens.mint(&Mint::user(EXO, ADMIN));
    let resp = env
        .post(
            TENANT_HOST,
            &basic("user@contoso.com", &token),
            None,
            create_body(),
        )
        .await;
    assert_eq!(resp.status(), 401);
    assert!(
        resp.headers()["x-ms-diagnostics"]
            .to_str()
            .unwrap()
            .contains("user name")
    );
    // App-only: OAuthUser@<tenant> is the accepted user name, and whoami shows it.
    let app = env.tokens.mint(&Mint::app(EXO));
    let resp = env
        .post(
            TENANT_HOST,
            &basic("someone@contoso.com", &app),
            None,
            create_body(),
        )
        .await;
    assert_eq!(resp.status(), 401);
    let auth = basic(&format!("OAuthUser@{TID}"), &app);
    let (shell, cookie) = env.open_shell(&auth).await;
    let cmd = env.run(&auth, &cookie, &shell, "whoami").await;
    let resp = env
        .post(
            TENANT_HOST,
            &auth,
            Some(&cookie),
            receive_body(&shell, &cmd, "PT20S"),
        )
        .await;
    assert_eq!(stdout_of(&resp), format!("OAuthUser@{TID}\r\n"));
}

#[tokio::test]
async fn token_for_the_other_audience_is_refused() {
    let env = Env::new(ExchangeSettings::default());
    let scc = basic(ADMIN, &env.tokens.mint(&Mint::user(SCC, ADMIN)));
    let resp = env.post(TENANT_HOST, &scc, None, create_body()).await;
    assert_eq!(resp.status(), 401);
    assert!(
        resp.headers()["x-ms-diagnostics"]
            .to_str()
            .unwrap()
            .contains("audience")
    );
    let resp = env
        .post(
            "ps.compliance.protection.outlook.com",
            &env.admin_auth(),
            None,
            create_body(),
        )
        .await;
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn expired_token_gets_401_with_bearer_and_basic_challenges() {
    let env = Env::new(ExchangeSettings::default());
    let expired = Mint {
        expires_in: -60,
        ..Mint::user(EXO, ADMIN)
    };
    let auth = basic(ADMIN, &env.tokens.mint(&expired));
    for host in ["outlook.office365.com", TENANT_HOST] {
        let resp = env.post(host, &auth, None, create_body()).await;
        assert_eq!(resp.status(), 401, "{host}");
        let challenges: Vec<&str> = resp
            .headers()
            .get_all("www-authenticate")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert!(
            challenges
                .iter()
                .any(|c| c.starts_with("Bearer ") && c.contains("error=\"invalid_token\"")),
            "{challenges:?}"
        );
        assert!(
            challenges.iter().any(|c| c.starts_with("Basic realm=")),
            "{challenges:?}"
        );
        assert!(
            resp.headers()["x-ms-diagnostics"]
                .to_str()
                .unwrap()
                .contains("expired")
        );
    }
    // A tampered signature and a non-JWT are refused the same way.
    let mut forged = env.tokens.mint(&Mint::user(EXO, ADMIN));
    forged.push('x');
    let resp = env
        .post(TENANT_HOST, &basic(ADMIN, &forged), None, create_body())
        .await;
    assert_eq!(resp.status(), 401);
    let resp = env
        .post(TENANT_HOST, &basic(ADMIN, "not-a-jwt"), None, create_body())
        .await;
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn oauth_conversion_flag_and_bearer_password_are_required() {
    let env = Env::new(ExchangeSettings::default());
    let req = wsman_request(
        TENANT_HOST,
        "/PowerShell-LiveID",
        &env.admin_auth(),
        None,
        create_body(),
    );
    assert_eq!(
        env.ex.handle(TENANT_HOST, req, &*env.tokens).await.status(),
        401
    );
    let plain = format!("Basic {}", STANDARD.encode(format!("{ADMIN}:hunter2")));
    assert_eq!(
        env.post(TENANT_HOST, &plain, None, create_body())
            .await
            .status(),
        401
    );
    let resp = env.post(TENANT_HOST, "", None, create_body()).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(env.ex.open_shells(), 0);
}

#[tokio::test]
async fn receive_without_output_times_out_with_wsman_fault() {
    let env = Env::new(ExchangeSettings {
        operation_timeout_cap: Duration::from_millis(300),
        ..ExchangeSettings::default()
    });
    let auth = env.admin_auth();
    let (shell, cookie) = env.open_shell(&auth).await;
    let cmd = env.run(&auth, &cookie, &shell, "more").await;
    // The client asks for 180 s; the cap shortens it.
    let started = Instant::now();
    let resp = env
        .post(
            TENANT_HOST,
            &auth,
            Some(&cookie),
            receive_body(&shell, &cmd, "PT180.000S"),
        )
        .await;
    let waited = started.elapsed();
    assert_eq!(resp.status(), 500);
    assert_eq!(fault_code(&resp), "2150858793");
    assert!(body_text(&resp).contains("<s:Value>w:TimedOut</s:Value>"));
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    // A client OperationTimeout below the cap wins.
    env.ex
        .update(|s| s.operation_timeout_cap = Duration::from_secs(30));
    let started = Instant::now();
    let resp = env
        .post(
            TENANT_HOST,
            &auth,
            Some(&cookie),
            receive_body(&shell, &cmd, "PT0.200S"),
        )
        .await;
    assert_eq!(fault_code(&resp), "2150858793");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn receive_long_poll_wakes_on_send_and_signal() {
    let env = Arc::new(Env::new(ExchangeSettings::default()));
    let auth = env.admin_auth();
    let (shell, cookie) = env.open_shell(&auth).await;
    let cmd = env.run(&auth, &cookie, &shell, "more").await;
    let poll = {
        let (env, auth, cookie, shell, cmd) = (
            env.clone(),
            auth.clone(),
            cookie.clone(),
            shell.clone(),
            cmd.clone(),
        );
        tokio::spawn(async move {
            env.post(
                TENANT_HOST,
                &auth,
                Some(&cookie),
                receive_body(&shell, &cmd, "PT20S"),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let resp = env
        .post(
            TENANT_HOST,
            &auth,
            Some(&cookie),
            send_body(&shell, &cmd, b"hello\r\n", false),
        )
        .await;
    assert_eq!(resp.status(), 200, "{}", body_text(&resp));
    let resp = tokio::time::timeout(Duration::from_secs(5), poll)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(stdout_of(&resp), "hello\r\n");
    assert!(body_text(&resp).contains("CommandState/Running"));
    // Terminate ends the command; the next Receive reports Done.
    let resp = env
        .post(TENANT_HOST, &auth, Some(&cookie), signal_body(&shell, &cmd))
        .await;
    assert_eq!(resp.status(), 200);
    let resp = env
        .post(
            TENANT_HOST,
            &auth,
            Some(&cookie),
            receive_body(&shell, &cmd, "PT20S"),
        )
        .await;
    assert!(body_text(&resp).contains("CommandState/Done"));
}

#[tokio::test]
async fn sixth_shell_of_a_user_gets_the_quota_fault() {
    let env = Env::new(ExchangeSettings::default());
    let auth = env.admin_auth();
    let mut shells = Vec::new();
    for _ in 0..5 {
        shells.push(env.open_shell(&auth).await);
    }
    let resp = env
        .post(TENANT_HOST, &auth, Some(&shells[0].1), create_body())
        .await;
    assert_eq!(resp.status(), 500);
    assert_eq!(fault_code(&resp), "2150859173");
    // Another user has their own quota.
    let user = "user@contoso.com";
    env.open_shell(&basic(user, &env.tokens.mint(&Mint::user(EXO, user))))
        .await;
    // Closing one shell frees a slot.
    let (shell, cookie) = &shells[0];
    assert_eq!(
        env.post(TENANT_HOST, &auth, Some(cookie), delete_body(shell))
            .await
            .status(),
        200
    );
    env.open_shell(&auth).await;
}

#[tokio::test]
async fn shells_of_other_users_are_not_found() {
    let env = Env::new(ExchangeSettings::default());
    let (shell, _) = env.open_shell(&env.admin_auth()).await;
    let user = "user@contoso.com";
    let other = basic(user, &env.tokens.mint(&Mint::user(EXO, user)));
    let (_, other_cookie) = env.open_shell(&other).await;
    let resp = env
        .post(
            TENANT_HOST,
            &other,
            Some(&other_cookie),
            command_body(&shell, "whoami"),
        )
        .await;
    assert_eq!(fault_code(&resp), "2150858843");
}

#[tokio::test]
async fn cae_mode_challenges_until_claims_are_satisfied() {
    let env = Env::new(ExchangeSettings {
        cae: true,
        ..ExchangeSettings::default()
    });
    let resp = env
        .post(TENANT_HOST, &env.admin_auth(), None, create_body())
        .await;
    assert_eq!(resp.status(), 401);
    let bearer = resp
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("Bearer "))
        .unwrap();
    assert!(bearer.contains("error=\"insufficient_claims\""), "{bearer}");
    let claims = bearer
        .split("claims=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&STANDARD.decode(claims).unwrap()).unwrap();
    assert!(json["access_token"].is_object(), "{json}");
    let satisfied = Mint {
        claims_satisfied: true,
        ..Mint::user(EXO, ADMIN)
    };
    env.open_shell(&basic(ADMIN, &env.tokens.mint(&satisfied)))
        .await;
}

#[tokio::test]
async fn unknown_commands_fail_like_cmd_and_echo_works() {
    let env = Env::new(ExchangeSettings::default());
    let auth = env.admin_auth();
    let (shell, cookie) = env.open_shell(&auth).await;
    let cmd = env.run(&auth, &cookie, &shell, "echo hi there").await;
    let resp = env
        .post(
            TENANT_HOST,
            &auth,
            Some(&cookie),
            receive_body(&shell, &cmd, "PT20S"),
        )
        .await;
    assert_eq!(stdout_of(&resp), "hi there\r\n");
    let cmd = env.run(&auth, &cookie, &shell, "format").await;
    let resp = env
        .post(
            TENANT_HOST,
            &auth,
            Some(&cookie),
            receive_body(&shell, &cmd, "PT20S"),
        )
        .await;
    let body = body_text(&resp);
    assert!(body.contains("Name=\"stderr\""), "{body}");
    assert_eq!(element_text(&body, "ExitCode").as_deref(), Some("1"));
}

#[tokio::test]
async fn reset_drops_shells_and_cookies() {
    let env = Env::new(ExchangeSettings::default());
    let auth = env.admin_auth();
    let (shell, cookie) = env.open_shell(&auth).await;
    env.ex.reset_shells();
    assert_eq!(env.ex.open_shells(), 0);
    let resp = env
        .post(
            TENANT_HOST,
            &auth,
            Some(&cookie),
            command_body(&shell, "whoami"),
        )
        .await;
    assert_eq!(fault_code(&resp), "2150858843");
}

#[test]
fn serves_exchange_hosts_only() {
    for host in [
        "outlook.office365.com",
        "nam12b.outlook.office365.com",
        "ps.outlook.com",
        "ps.compliance.protection.outlook.com",
        "nam04b.ps.compliance.protection.outlook.com",
    ] {
        assert!(Exchange::serves(host), "{host}");
    }
    for host in [
        "login.microsoftonline.com",
        "sts.contoso.test",
        "outlook.office365.com.evil.test",
    ] {
        assert!(!Exchange::serves(host), "{host}");
    }
}

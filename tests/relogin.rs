//! Issue 10 row 2: the refresh token is revoked (the proxy answers 503 `reauth_required`), then
//! `exoproxy login` succeeds in another process: the running proxy picks the new sign-in up from the
//! token cache at the next request, without a restart; with the proxy running, `login` goes through
//! it (the `signin` admin action), which uses the new sign-in at once. Real binaries against
//! exosim on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod sim_env;

use exosim::SimConfig;
use sim_env::{ADMIN, Running, SimEnv, output, text};

const REST_URL: &str =
    "https://outlook.office365.com/adminapi/beta/contoso.onmicrosoft.com/InvokeCommand";
const GET_MAILBOX: &str = r#"{"CmdletInput":{"CmdletName":"Get-Mailbox","Parameters":{}}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_login_is_picked_up_by_the_running_proxy_after_a_revocation() {
    let env = SimEnv::start(
        SimConfig {
            auto_approve: true,
            ..SimConfig::default()
        },
        "",
    )
    .await;
    let (sim, state) = (&env.sim, &env.state);
    // Tokens that are never fresh enough to reuse: every request asks for a new one, so the
    // revocation shows at the next request.
    sim.control().set_token_lifetime(Duration::from_secs(1));
    let exoproxy = |args: &[&str]| env.exoproxy(args);
    let login = || async {
        let out = output(exoproxy(&["login", ADMIN])).await;
        assert!(
            out.status.success(),
            "{}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    };
    login().await;

    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _proxy = Running(
        exoproxy(&["run", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "the proxy did not start listening"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ca = state.join("exoproxy-ca.pem");
    // One REST call through the proxy: (status, X-Exoproxy-Error or "").
    let call = || async {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sS",
            "-L",
            "--post302",
            "-o",
            "/dev/null",
            "--max-time",
            "20",
            "-D",
            "-",
            "-w",
            "\n%{http_code}",
        ])
        .args(["--proxy", &format!("http://127.0.0.1:{port}")])
        .arg("--cacert")
        .arg(&ca)
        .args([
            "-H",
            "content-type: application/json",
            "--data",
            GET_MAILBOX,
            REST_URL,
        ]);
        let out = text(&output(cmd).await.stdout);
        let status = out.lines().last().unwrap_or("").to_string();
        (status, out)
    };

    let (status, out) = call().await;
    assert_eq!(status, "200", "signed in: {out}");

    sim.control().revoke_user(ADMIN);
    tokio::time::sleep(Duration::from_millis(1100)).await; // the last token has expired
    let (status, out) = call().await;
    assert_eq!(status, "503", "revoked: {out}");
    assert!(out.contains("reauth_required"), "{out}");

    // With the proxy running, `login` goes through it (issue 11: the CLI talks to the proxy).
    let stdout = login().await;
    assert!(
        stdout.contains("the running exoproxy uses the new sign-in now"),
        "{stdout}"
    );
    let (status, out) = call().await;
    assert_eq!(
        status, "200",
        "the new sign-in is used at once, without a restart: {out}"
    );
}

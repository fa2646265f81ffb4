//! `exoproxy doctor` (issue 11, deliverable 5): the real binary against exosim on loopback. A healthy
//! setup (signed in, proxy running) exits 0; a broken one (revoked refresh token, IdP unreachable,
//! an upstream proxy refusing our password with 407, an invalid config) names each problem and its
//! fix and exits non-zero. The CA trust check is Windows-only: on Linux it says it does not apply.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod sim_env;

use exosim::{Sim, SimConfig};
use sim_env::{ADMIN, Running, output, text};

fn exoproxy(config: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_exoproxy"));
    cmd.arg("--config")
        .arg(config)
        .args(args)
        .env_remove("EXOPROXY_LOG")
        .stdin(Stdio::null());
    cmd
}

/// Runs `exoproxy doctor`: (exit code, stdout, stderr).
async fn doctor(config: &Path) -> (i32, String, String) {
    let started = Instant::now();
    let out = output(exoproxy(config, &["doctor"])).await;
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "doctor must not hang"
    );
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

/// The line of `stdout` for `check` (`VERDICT  check ...`) and the fix line after it.
fn finding<'a>(stdout: &'a str, verdict: &str, check: &str) -> Option<(&'a str, &'a str)> {
    let lines: Vec<&str> = stdout.lines().collect();
    let at = lines.iter().position(|l| {
        l.starts_with(verdict) && l[verdict.len()..].trim_start().starts_with(check)
    })?;
    let fix = lines
        .get(at + 1)
        .filter(|l| l.trim_start().starts_with("fix:"))
        .copied()
        .unwrap_or("");
    Some((lines[at], fix))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A config for the emulator: every https host maps to `to` (the sim, or a closed port).
fn write_config(dir: &Path, sim: &Sim, https_to: u16, extra: &str) -> std::path::PathBuf {
    let sim_ca = dir.join("exosim-ca.pem");
    std::fs::write(&sim_ca, sim.ca_pem()).unwrap();
    let config = dir.join("exoproxy.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = {state:?}\nconnect_to = [\":443:127.0.0.1:{https_to}\"]\n{extra}\n\
             [tls]\nextra_roots = {ca:?}\n\n[[account]]\nupn = \"{ADMIN}\"\n",
            state = dir.join("state").display().to_string(),
            ca = sim_ca.display().to_string(),
        ),
    )
    .unwrap();
    config
}

async fn sim() -> Sim {
    Sim::start(SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        auto_approve: true,
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_setup_passes_and_a_revoked_refresh_token_fails_with_the_login_fix() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    // contoso.test is federated in exosim (its STS: sts.contoso.test).
    let sts = "[routing]\nsts_domains = [\"contoso.test\"]\n";
    let config = write_config(dir.path(), &sim, sim.addr().port(), sts);
    let login = output(exoproxy(&config, &["login", ADMIN])).await;
    assert!(login.status.success(), "{}", text(&login.stderr));

    let port = free_port();
    let _proxy = Running(
        exoproxy(&config, &["run", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "the proxy did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (code, stdout, stderr) = doctor(&config).await;
    assert_eq!(code, 0, "healthy:\n{stdout}\n{stderr}");
    for (verdict, check) in [
        ("PASS", "config"),
        ("PASS", "proxy"),
        ("PASS", "ca"),
        ("PASS", "reach login.microsoftonline.com"),
        ("PASS", "reach outlook.office365.com"),
        ("PASS", "clock"),
        ("PASS", "account admin@contoso.com"),
    ] {
        assert!(
            finding(&stdout, verdict, check).is_some(),
            "{verdict} {check}:\n{stdout}"
        );
    }
    let (sts, _) = finding(&stdout, "PASS", "sts contoso.test").expect(&stdout);
    assert!(sts.contains("sts.contoso.test DIRECT"), "{sts}");
    let (proxy, _) = finding(&stdout, "PASS", "proxy").unwrap();
    assert!(proxy.contains(&addr.to_string()), "{proxy}");
    let (account, _) = finding(&stdout, "PASS", "account admin@contoso.com").unwrap();
    assert!(
        account.contains("running proxy says ready") && account.contains("works now"),
        "{account}"
    );
    // CA not trusted is a Windows check (CurrentUser\Root): here it says it does not apply.
    let (trust, _) = finding(&stdout, "SKIP", "ca trust").expect(&stdout);
    assert!(trust.contains("does not apply"), "{trust}");
    let (desktop, _) = finding(&stdout, "SKIP", "desktop").expect(&stdout);
    assert!(desktop.contains("does not apply"), "{desktop}");
    assert!(
        stderr.contains("doctor: checking a token request for admin@contoso.com"),
        "a progress line per check: {stderr}"
    );
    assert!(stdout.contains("0 failed"), "{stdout}");

    sim.control().revoke_user(ADMIN);
    let (code, stdout, _) = doctor(&config).await;
    assert_ne!(code, 0, "revoked:\n{stdout}");
    let (line, fix) = finding(&stdout, "FAIL", "account admin@contoso.com").expect(&stdout);
    assert!(line.contains("the token request failed"), "{line}");
    assert!(
        fix.contains("fix: run `exoproxy login admin@contoso.com`"),
        "{fix}"
    );
    assert!(
        stdout.contains("1 failed"),
        "only the account fails:\n{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_idp_fails_reach_and_no_running_proxy_only_warns() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let closed = free_port(); // bound and released: nothing listens there
    let config = write_config(dir.path(), &sim, closed, "");

    let (code, stdout, _) = doctor(&config).await;
    assert_ne!(code, 0, "{stdout}");
    let (line, fix) = finding(&stdout, "FAIL", "reach login.microsoftonline.com").expect(&stdout);
    assert!(
        line.contains("the identity provider unreachable via DIRECT"),
        "{line}"
    );
    assert!(
        fix.contains("exoproxy route https://login.microsoftonline.com/"),
        "{fix}"
    );
    assert!(
        finding(&stdout, "FAIL", "reach outlook.office365.com").is_some(),
        "{stdout}"
    );
    let (proxy, fix) = finding(&stdout, "WARN", "proxy").expect(&stdout);
    assert!(proxy.contains("no exoproxy is running"), "{proxy}");
    assert!(fix.contains("exoproxy run"), "{fix}");
    // Never signed in: reported with the command, and no device-code sign-in is started.
    let (_, fix) = finding(&stdout, "FAIL", "account admin@contoso.com").expect(&stdout);
    assert!(fix.contains("exoproxy login admin@contoso.com"), "{fix}");
    assert!(!stdout.contains("enter the code"), "{stdout}");
    let (clock, _) = finding(&stdout, "WARN", "clock").expect(&stdout);
    assert!(clock.contains("could not read the time"), "{clock}");
}

/// A loopback proxy that answers every request with 407 (Basic), keeping the connection.
fn proxy_demanding_auth() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = stream.read(&mut chunk) else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let reply = "HTTP/1.1 407 Proxy Authentication Required\r\n\
                                     Proxy-Authenticate: Basic realm=\"corp\"\r\n\
                                     Content-Length: 0\r\n\r\n";
                        if stream.write_all(reply.as_bytes()).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_407_from_the_upstream_proxy_is_named_a_wrong_proxy_password() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = proxy_demanding_auth();
    let upstream = format!(
        "\n[upstream]\nsource = \"static\"\nproxies = [\"http://{proxy}\"]\n\n\
         [[upstream.credentials]]\nproxy = \"{proxy}\"\nusername = \"svc\"\npassword_env = \"DOCTOR_TEST_PROXY_PASSWORD\"\n"
    );
    let config = write_config(dir.path(), &sim, sim.addr().port(), &upstream);
    let mut cmd = exoproxy(&config, &["doctor"]);
    cmd.env("DOCTOR_TEST_PROXY_PASSWORD", "canary-wrong-password");
    let out = output(cmd).await;
    let stdout = text(&out.stdout);
    assert_ne!(out.status.code(), Some(0), "{stdout}");
    let (line, fix) = finding(&stdout, "FAIL", "reach login.microsoftonline.com").expect(&stdout);
    assert!(line.contains("407"), "{line}");
    assert!(
        fix.contains(&format!(
            "wrong proxy password: fix [[upstream.credentials]] for {proxy}"
        )),
        "{fix}"
    );
    assert!(
        !stdout.contains("canary-wrong-password") && !text(&out.stderr).contains("canary"),
        "the password is never printed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_config_fails_first_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("exoproxy.toml");
    std::fs::write(&config, "[upstream]\nproxies = 7\n").unwrap();
    let (code, stdout, _) = doctor(&config).await;
    assert_ne!(code, 0, "{stdout}");
    let (line, fix) = finding(&stdout, "FAIL", "config").expect(&stdout);
    assert!(line.contains("upstream.proxies"), "{line}");
    assert!(fix.contains("exoproxy config check"), "{fix}");
    assert!(
        !stdout.contains("reach "),
        "nothing else is checked: {stdout}"
    );
}

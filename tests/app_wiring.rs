//! The product as a user runs it: the `exoproxy` binary with a config file, against exosim on
//! loopback (hostnames mapped by `connect_to`, exosim's CA trusted by `tls.extra_roots`).
//! `login` signs in by device code (auto-approved by the emulator), `accounts` shows the state
//! without tokens, `token` prints one with a warning, `run` intercepts curl's REST call and injects
//! the token, serves the CRL, `ca export` writes the CA, `logout` forgets the account.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use exosim::{Sim, SimConfig};

const ADMIN: &str = "admin@contoso.com";
const REST_URL: &str =
    "https://outlook.office365.com/adminapi/beta/contoso.onmicrosoft.com/InvokeCommand";
const GET_MAILBOX: &str = r#"{"CmdletInput":{"CmdletName":"Get-Mailbox","Parameters":{}}}"#;

struct Env {
    _sim: Sim,
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Env {
    async fn new() -> Env {
        let sim = Sim::start(SimConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            auto_approve: true,
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let sim_ca = dir.path().join("exosim-ca.pem");
        std::fs::write(&sim_ca, sim.ca_pem()).unwrap();
        let config = dir.path().join("exoproxy.toml");
        let text = format!(
            "state_dir = {state:?}\nconnect_to = [\"::127.0.0.1:{port}\"]\n\n[tls]\nextra_roots = {ca:?}\n\n[[account]]\nupn = \"{ADMIN}\"\n",
            state = dir.path().join("state").display().to_string(),
            port = sim.addr().port(),
            ca = sim_ca.display().to_string(),
        );
        std::fs::write(&config, text).unwrap();
        Env {
            _sim: sim,
            dir,
            config,
        }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn exoproxy(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_exoproxy"));
        cmd.arg("--config").arg(&self.config).args(args);
        cmd.env_remove("EXOPROXY_LOG");
        cmd
    }

    /// Runs a CLI command off the async runtime (the emulator keeps serving meanwhile).
    async fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.exoproxy(args);
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The proxy binary, killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_proxy(env: &Env, port: u16) -> Running {
    let child = env
        .exoproxy(&["run", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "the proxy did not start listening"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Running(child)
}

async fn curl(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(&args)
            .output()
            .expect("curl is missing: run scripts/setup.sh")
    })
    .await
    .unwrap()
}

fn rest_call(proxy: u16, ca: &Path) -> Vec<String> {
    [
        "-sS",
        "-L",
        "--post302",
        "--max-time",
        "20",
        "-w",
        "\n%{http_code}",
        "--proxy",
        &format!("http://127.0.0.1:{proxy}"),
        "--cacert",
        &ca.display().to_string(),
        "-H",
        "content-type: application/json",
        "--data",
        GET_MAILBOX,
        REST_URL,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_accounts_token_run_export_logout() {
    let env = Env::new().await;

    let login = env.run(&["login", ADMIN]).await;
    let out = text(&login.stdout);
    assert!(login.status.success(), "{out}\n{}", text(&login.stderr));
    assert!(out.contains("enter the code"), "{out}");
    assert!(out.contains("signed in"), "{out}");

    let accounts = env.run(&["accounts"]).await;
    let out = text(&accounts.stdout);
    assert!(accounts.status.success(), "{out}");
    assert!(
        out.contains(ADMIN) && out.contains("state:    ready"),
        "{out}"
    );
    assert!(
        !out.contains("eyJ"),
        "accounts must never print a token: {out}"
    );

    let token = env.run(&["token", ADMIN]).await;
    let jwt = text(&token.stdout);
    assert!(token.status.success(), "{}", text(&token.stderr));
    assert!(
        jwt.starts_with("eyJ") && jwt.trim().split('.').count() == 3,
        "{jwt}"
    );
    assert!(text(&token.stderr).contains("warning"));

    let port = free_port();
    let proxy = start_proxy(&env, port).await;
    let ca = env.state().join("exoproxy-ca.pem");
    let rest = curl(rest_call(port, &ca)).await;
    let body = text(&rest.stdout);
    assert!(body.ends_with("\n200"), "{body}\n{}", text(&rest.stderr));
    assert!(body.contains("\"value\""), "{body}");

    let crl = curl(vec![
        "-sS".into(),
        "-o".into(),
        env.dir.path().join("ca.crl").display().to_string(),
        "-w".into(),
        "%{http_code} %{content_type}".into(),
        format!("http://127.0.0.1:{port}/exoproxy-ca.crl"),
    ])
    .await;
    assert_eq!(text(&crl.stdout), "200 application/pkix-crl");
    let crl_der = std::fs::read(env.dir.path().join("ca.crl")).unwrap();
    assert_eq!(crl_der[0], 0x30, "a DER SEQUENCE");
    drop(proxy);

    let exported = env.dir.path().join("exported-ca.pem");
    let export = env
        .run(&["ca", "export", &exported.display().to_string()])
        .await;
    let out = text(&export.stdout);
    assert!(export.status.success(), "{}", text(&export.stderr));
    assert!(
        out.contains("Import-Certificate") && out.contains("certutil"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(&exported).unwrap(),
        std::fs::read_to_string(&ca).unwrap()
    );

    let logout = env.run(&["logout", ADMIN]).await;
    assert!(logout.status.success(), "{}", text(&logout.stderr));
    let accounts = env.run(&["accounts"]).await;
    let out = text(&accounts.stdout);
    assert!(!out.contains("state:    ready"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_account_entry_is_a_config_error_with_its_key() {
    let env = Env::new().await;
    std::fs::write(
        &env.config,
        "[[account]]\nupn = \"admin@contoso.com\"\nflow = \"certificate\"\n\n[intercept]\nclouds = [\"mars\"]\n",
    )
    .unwrap();
    let check = env.run(&["config", "check"]).await;
    let err = text(&check.stderr);
    assert_eq!(check.status.code(), Some(2), "{err}");
    assert!(err.contains("account[0].certificate"), "{err}");
    assert!(err.contains("account[0].client_id"), "{err}");
    assert!(
        err.contains("intercept.clouds") && err.contains("mars"),
        "{err}"
    );
}

/// App-only sign-in from a PFX file as `Export-PfxCertificate` writes it by default (3DES/SHA-1),
/// its password from the environment: exosim checks the assertion against the app's registered
/// certificate, so a wrong key or thumbprint would fail here. A wrong password is a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_for_an_app_from_a_pfx_file() {
    const APP: &str = "OAuthUser@contoso.onmicrosoft.com";
    let env = Env::new().await;
    let pfx = Path::new(env!("CARGO_MANIFEST_DIR")).join("sim/keys/app-client.pfx");
    let mut config = std::fs::read_to_string(&env.config).unwrap();
    config.push_str(&format!(
        "\n[[account]]\nupn = \"{APP}\"\nflow = \"certificate\"\nclient_id = \"{id}\"\n\
         certificate = {pfx:?}\npfx_password_env = \"EXO_TEST_PFX_PASSWORD\"\n",
        id = exosim::config::CERT_APP_CLIENT_ID,
        pfx = pfx.display().to_string(),
    ));
    std::fs::write(&env.config, config).unwrap();

    let run_with = |args: &[&str], password: &str| {
        let mut cmd = env.exoproxy(args);
        cmd.env("EXO_TEST_PFX_PASSWORD", password);
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
    };
    let token = run_with(&["token", APP], "exosim-pfx").await.unwrap();
    let jwt = text(&token.stdout);
    assert!(token.status.success(), "{}", text(&token.stderr));
    let claims = jwt.trim().split('.').nth(1).unwrap();
    use base64::Engine as _;
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["appid"], exosim::config::CERT_APP_CLIENT_ID);

    // Forget the cached token, so that the next call must read the PFX again.
    let logout = run_with(&["logout", APP], "exosim-pfx").await.unwrap();
    assert!(logout.status.success(), "{}", text(&logout.stderr));
    let wrong = run_with(&["token", APP], "not-the-password").await.unwrap();
    let err = text(&wrong.stderr);
    assert!(!wrong.status.success());
    assert!(
        err.contains("app-client.pfx") && err.contains("password"),
        "{err}"
    );
    assert!(!err.contains("not-the-password"), "{err}");
}

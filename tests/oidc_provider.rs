//! Issue 10 row 12: exoproxy against a standards-conformant OpenID provider that is not Entra ID —
//! panva's `oidc-provider` from npm (installed into `tests/oidc/node_modules` by `scripts/setup.sh`),
//! started by `tests/oidc/provider.mjs` on loopback with TLS. The real `exoproxy token` binary, with an
//! app-only (`flow = "secret"`) account whose `authority` is the provider's issuer, must discover it at
//! `{issuer}/.well-known/openid-configuration` and get a token by client credentials; an explicit
//! `discovery_url` must win over the authority. The provider's host name is mapped to loopback by
//! `connect_to` and its CA trusted through `tls.extra_roots`, as a user would configure it.
//! Skipped, with a message, only where `node` is missing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

const HOST: &str = "idp.oidc.test";
const CLIENT_ID: &str = "exoproxy-app";
const SECRET: &str = "oidc-peer-secret-0123456789";
const UPN: &str = "OAuthUser@oidc.test";

/// The node process; killed (by its own pid) on drop.
struct Provider {
    child: Child,
    _stdin: ChildStdin,
    port: u16,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn node_present() -> bool {
    Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn peer_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc")
}

/// A CA and a server certificate for [`HOST`]; returns (CA PEM path, cert path, key path).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec![HOST.to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server-key.pem"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, leaf.pem()).unwrap();
    std::fs::write(&paths.2, leaf_key.serialize_pem()).unwrap();
    paths
}

fn start_provider(cert: &Path, key: &Path) -> Provider {
    let dir = peer_dir();
    assert!(
        dir.join("node_modules/oidc-provider/package.json").exists(),
        "oidc-provider is not installed in tests/oidc: run scripts/setup.sh"
    );
    let mut child = Command::new("node")
        .arg(dir.join("provider.mjs"))
        .current_dir(&dir)
        .env("OIDC_ISSUER", format!("https://{HOST}"))
        .env("OIDC_CERT", cert)
        .env("OIDC_KEY", key)
        .env("OIDC_CLIENT_ID", CLIENT_ID)
        .env("OIDC_CLIENT_SECRET", SECRET)
        .env("OIDC_SCOPE", "exchange")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node");
    let stdin = child.stdin.take().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .strip_prefix("PORT ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("provider did not start: {line:?}"));
    Provider {
        child,
        _stdin: stdin,
        port,
    }
}

/// Runs `exoproxy token` with one app-only account (`extra` adds account keys); returns
/// (success, stdout, stderr).
fn exoproxy_token(dir: &Path, port: u16, ca: &Path, extra: &str) -> (bool, String, String) {
    let config = dir.join("exoproxy.toml");
    let text = format!(
        "state_dir = {state:?}\nconnect_to = [\"{HOST}:443:127.0.0.1:{port}\"]\n\n[tls]\nextra_roots = {ca:?}\n\n\
         [[account]]\nupn = \"{UPN}\"\nflow = \"secret\"\nclient_id = \"{CLIENT_ID}\"\n\
         secret_env = \"EXO_OIDC_SECRET\"\nscope = \"exchange\"\n{extra}\n",
        state = dir.join("state").display().to_string(),
        ca = ca.display().to_string(),
    );
    std::fs::write(&config, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_exoproxy"))
        .arg("--config")
        .arg(&config)
        .args(["token", UPN])
        .env("EXO_OIDC_SECRET", SECRET)
        .env_remove("EXOPROXY_LOG")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn standards_openid_provider_is_discovered_at_the_issuer_and_issues_a_token() {
    if !node_present() {
        eprintln!("SKIPPED: node is not installed (scripts/setup.sh installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path());
    let provider = start_provider(&cert, &key);

    // The issuer as authority: discovery at {issuer}/.well-known/openid-configuration.
    let (ok, token, stderr) = exoproxy_token(
        dir.path(),
        provider.port,
        &ca,
        &format!("authority = \"https://{HOST}\""),
    );
    assert!(ok, "exoproxy token failed: {stderr}");
    assert!(token.trim().len() >= 20, "no token printed: {token:?}");

    // An odd layout: the authority alone would be discovered at a path that does not exist (404);
    // the explicit discovery_url wins.
    let state = dir.path().join("state");
    std::fs::remove_dir_all(&state).unwrap();
    let odd = format!(
        "authority = \"https://{HOST}/no-such-tenant\"\ndiscovery_url = \"https://{HOST}/.well-known/openid-configuration\""
    );
    let (ok, token, stderr) = exoproxy_token(dir.path(), provider.port, &ca, &odd);
    assert!(ok, "exoproxy token with discovery_url failed: {stderr}");
    assert!(token.trim().len() >= 20, "no token printed: {token:?}");
    std::fs::remove_dir_all(&state).unwrap();
    let (ok, _, stderr) = exoproxy_token(
        dir.path(),
        provider.port,
        &ca,
        &format!("authority = \"https://{HOST}/no-such-tenant\""),
    );
    assert!(!ok, "the wrong discovery path must fail");
    assert!(stderr.contains("404"), "{stderr}");
}

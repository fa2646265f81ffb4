//! `exoproxy demo`: see exoproxy work without a tenant, in one command.
//!
//! Contract: starts exosim (the Entra ID + Exchange Online emulator) in-process on loopback, then
//! exoproxy through [`super::start`] exactly as `exoproxy run` wires it (same router, upstream,
//! token manager, local CA), trusting exosim's CA and dialing it through a catch-all `connect_to`.
//! It signs in by device code (the emulator approves at once), runs a WS-Man `whoami` through the
//! proxy, then REST calls and periodic `whoami` sessions for `seconds` with tokens living
//! `token_lifetime` seconds, and prints a report. Nothing leaves 127.0.0.1. Exit 0 only when no
//! request failed, `whoami` printed the signed-in account every time and the token was refreshed
//! at least once. Everything lives in a fresh temp folder, removed at the end.

mod client;
mod load;
mod tally;
mod wsman;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use exosim::{GrantType, Sim, SimConfig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use self::client::Dialer;
use self::tally::{Counts, Tally};
use super::Services;
use crate::config::{self, Config, Overrides};
use crate::intercept::LocalCa;
use crate::token::{AccountConfig, Flow, SignInPrompt, TokenManager};
use crate::upstream::ConnectTo;

/// The account the demo signs in (one of exosim's built-in users).
pub const DEMO_UPN: &str = "admin@contoso.com";
/// Where Remote PowerShell and the REST module start: the Exchange Online front door.
const FRONT_DOOR: &str = "outlook.office365.com";
/// Longest the device-code sign-in may take (the emulator approves on the first poll).
const SIGN_IN_LIMIT: Duration = Duration::from_secs(30);
/// Longest the proxy may take to stop after being asked to.
const STOP_LIMIT: Duration = Duration::from_secs(10);
/// Number of announced steps.
const STEPS: u32 = 5;

/// A fresh folder under the system temp dir, removed on drop.
#[derive(Debug)]
struct WorkDir(PathBuf);

/// exoproxy serving on loopback, and what the demo's clients need to reach it.
struct Running {
    addr: SocketAddr,
    /// PEM of exoproxy's local CA (the demo's clients trust exactly this).
    ca_pem: String,
    services: Services,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

/// What the demo prints at the end.
#[derive(Debug)]
struct Report {
    duration: Duration,
    token_lifetime: u64,
    counts: Counts,
    first_whoami: String,
    sessions: load::Sessions,
    refreshes: u64,
}

/// Runs the demo for `seconds` with tokens living `token_lifetime` seconds; see the module docs.
pub async fn run(seconds: u64, token_lifetime: u64) -> ExitCode {
    let dir = match WorkDir::create() {
        Ok(dir) => dir,
        Err(e) => return failed(&e),
    };
    let outcome = run_in(&dir.0, seconds, token_lifetime).await;
    drop(dir);
    match outcome {
        Ok(report) => {
            print!("{report}");
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => failed(&e),
    }
}

/// The five steps; the emulator and the proxy stop before this returns.
async fn run_in(dir: &Path, seconds: u64, token_lifetime: u64) -> Result<Report, String> {
    step(
        1,
        "starting exosim, the Entra ID + Exchange Online emulator, on loopback",
    );
    let sim = start_sim(token_lifetime).await?;
    println!(
        "      exosim at {}, access tokens live {token_lifetime} s",
        sim.addr()
    );
    step(
        2,
        "starting exoproxy (intercepting the Exchange hosts, trusting exosim's CA)",
    );
    let proxy = Running::start(&demo_config(dir, &sim)?).await?;
    println!("      exoproxy at http://{}", proxy.addr);
    step(3, &format!("signing in {DEMO_UPN} by device code"));
    sign_in(&proxy.services.tokens).await?;
    step(
        4,
        "WS-Man: opening a remote shell through exoproxy and running whoami",
    );
    let dialer = Dialer::new(proxy.addr, &proxy.ca_pem)?;
    let tally = Arc::new(Tally::default());
    let first = wsman::whoami(&dialer, &tally, DEMO_UPN, FRONT_DOOR, None)
        .await
        .map_err(|e| format!("WS-Man whoami failed: {e}"))?;
    println!(
        "      whoami -> {}  (shell on {}, now deleted)",
        first.output, first.tenant_host
    );
    step(
        5,
        &format!(
            "{seconds} s of REST calls from {} keep-alive clients plus a whoami every few seconds, across token rollovers",
            load::REST_CLIENTS
        ),
    );
    let plan = load::Plan {
        host: first.tenant_host.clone(),
        upn: DEMO_UPN.into(),
        cookie: first.cookie.clone(),
        duration: Duration::from_secs(seconds),
    };
    let sessions = load::run(&dialer, &tally, &plan).await;
    let refreshes = sim.control().grant_count(GrantType::RefreshToken);
    proxy.stop().await;
    sim.shutdown().await;
    Ok(Report {
        duration: plan.duration,
        token_lifetime,
        counts: tally.counts(),
        first_whoami: first.output,
        sessions,
        refreshes,
    })
}

/// `[n/5] message` on stdout.
fn step(n: u32, message: &str) {
    println!("[{n}/{STEPS}] {message}");
}

fn failed(message: &str) -> ExitCode {
    eprintln!("demo failed: {message}");
    ExitCode::FAILURE
}

/// exosim with short-lived tokens, approving device codes by itself.
async fn start_sim(token_lifetime: u64) -> Result<Sim, String> {
    Sim::start(SimConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        token_lifetime: Duration::from_secs(token_lifetime),
        device_code_interval: Duration::from_secs(1),
        auto_approve: true,
        ..SimConfig::default()
    })
    .await
    .map_err(|e| format!("cannot start exosim: {e}"))
}

/// The built-in defaults, plus: listen on a free loopback port, state in `dir`, trust exosim's CA,
/// dial exosim for every host, one account (the default), no STS discovery (no real Entra ID here).
fn demo_config(dir: &Path, sim: &Sim) -> Result<Config, String> {
    let sim_ca = dir.join("exosim-ca.pem");
    std::fs::write(&sim_ca, sim.ca_pem())
        .map_err(|e| format!("cannot write {}: {e}", sim_ca.display()))?;
    let overrides = Overrides {
        listen: vec!["127.0.0.1:0".into()],
        state_dir: Some(dir.join("state")),
        upstream_ca: Some(sim_ca),
        ..Overrides::default()
    };
    let mut config = config::load(None, &overrides).map_err(|errors| errors.join("; "))?;
    config.upstream.connect_to.push(ConnectTo {
        host: String::new(),
        port: None,
        to_host: "127.0.0.1".into(),
        to_port: sim.addr().port(),
    });
    config.intercept.accounts.push(AccountConfig::new(DEMO_UPN));
    config.intercept.default_account = Some(DEMO_UPN.into());
    config.route.sts.discover = false;
    Ok(config)
}

/// Device-code sign-in, shown as a user would see it.
async fn sign_in(tokens: &TokenManager) -> Result<(), String> {
    let handle = tokens
        .begin_login(DEMO_UPN, Some(Flow::DeviceCode))
        .await
        .map_err(|e| format!("sign-in: {e}"))?;
    if let SignInPrompt::Device(prompt) = &handle.prompt {
        println!(
            "      To sign in, open {} and enter the code {}",
            prompt.verification_uri, prompt.user_code
        );
        println!("      (the emulator approves it at once, as if you had)");
    }
    match tokio::time::timeout(SIGN_IN_LIMIT, handle.wait()).await {
        Ok(Ok(())) => {
            println!("      signed in; exoproxy keeps the tokens fresh from now on");
            Ok(())
        }
        Ok(Err(e)) => Err(format!("sign-in: {e}")),
        Err(_) => Err(format!("sign-in: not finished within {SIGN_IN_LIMIT:?}")),
    }
}

// === impl WorkDir ===

impl WorkDir {
    fn create() -> Result<WorkDir, String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!("exoproxy-demo-{}-{nanos}", std::process::id());
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(WorkDir(path))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            eprintln!("warning: could not remove {}: {e}", self.0.display());
        }
    }
}

// === impl Running ===

impl Running {
    /// Wires and serves exoproxy through [`super::start`], as `exoproxy run` does.
    async fn start(config: &Config) -> Result<Running, String> {
        // The demo makes its throwaway CA itself, so the proxy does not print its first-run advice
        // to trust a new CA: nothing outside this process ever trusts it.
        LocalCa::load_or_create(&config.state_dir, &config.intercept.ca_domains())
            .map_err(|e| format!("local CA: {e}"))?;
        let (proxy, listeners, services) =
            super::start(config).await.map_err(describe_start_error)?;
        let addr = listeners
            .first()
            .and_then(|l| l.local_addr().ok())
            .ok_or("exoproxy bound no address")?;
        let ca_pem = services
            .intercept
            .as_ref()
            .ok_or("interception is off")?
            .leaves()
            .ca()
            .cert_pem()
            .to_string();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(crate::listener::serve(listeners, proxy, async move {
            let _ = stopped.await;
        }));
        Ok(Running {
            addr,
            ca_pem,
            services,
            stop: Some(stop),
            task,
        })
    }

    /// Asks the listener to stop and waits for it (bounded).
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = &mut self.task;
        if tokio::time::timeout(STOP_LIMIT, task).await.is_err() {
            tracing::warn!("exoproxy did not stop within {STOP_LIMIT:?}");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // An early error return still stops the listener.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn describe_start_error(e: super::StartError) -> String {
    match e {
        super::StartError::Config(errors) => {
            format!("exoproxy configuration: {}", errors.join("; "))
        }
        super::StartError::Runtime(e) => format!("cannot start exoproxy: {e}"),
    }
}

// === impl Report ===

impl Report {
    /// No failed request, `whoami` always printed the account, at least one refresh.
    fn passed(&self) -> bool {
        self.counts.failures == 0
            && self.first_whoami.eq_ignore_ascii_case(DEMO_UPN)
            && self.sessions.matched == self.sessions.run
            && self.refreshes >= 1
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.duration.as_secs();
        writeln!(f, "\nexoproxy demo report")?;
        writeln!(
            f,
            "  duration:         {seconds} s, access tokens living {} s",
            self.token_lifetime
        )?;
        writeln!(
            f,
            "  REST requests:    {} from {} keep-alive clients",
            self.counts.rest,
            load::REST_CLIENTS
        )?;
        writeln!(
            f,
            "  WS-Man requests:  {} in {} whoami sessions ({} printed {DEMO_UPN})",
            self.counts.wsman,
            self.sessions.run + 1,
            self.sessions.matched + u64::from(self.first_whoami.eq_ignore_ascii_case(DEMO_UPN)),
        )?;
        writeln!(f, "  failed requests:  {}", self.counts.failures)?;
        for message in &self.counts.messages {
            writeln!(f, "    e.g. {message}")?;
        }
        writeln!(
            f,
            "  token refreshes:  {} (expected rollovers: about {})",
            self.refreshes,
            seconds / self.token_lifetime.max(1)
        )?;
        writeln!(
            f,
            "  result:           {}",
            if self.passed() { "PASS" } else { "FAIL" }
        )
    }
}

#[cfg(test)]
mod tests;

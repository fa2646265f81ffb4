//! The account and CA commands: `login`, `logout`, `accounts`, `token`, `ca export`, `ca regenerate`.
//!
//! Contract: while a proxy runs for the state dir ([`Running`]), `login` and `logout` go through it
//! (admin actions `signin` / `signout`): a new sign-in is used at once, a sign-out is final, and
//! `login` shows the same pending device code the proxy shows its clients. Without a running proxy
//! they use the same wiring as the proxy ([`Services`]), so token calls take the proxy's route and
//! the same token cache. `token` never starts a sign-in: without one it says to run `login`.
//! Output for people goes to stdout; `token` prints only the token on stdout (for scripts) and its
//! warning on stderr. Exit codes: 0 ok, 1 the operation failed, 2 bad input or configuration.

use std::path::Path;
use std::process::ExitCode;

use super::running::Running;
use super::{Services, StartError};
use crate::admin::status::{rfc3339, unix_now};
use crate::config::Config;
use crate::intercept::LocalCa;
use crate::token::{AccountStatus, Audience, Flow, SignInPrompt, TokenManager};

/// `exoproxy login UPN [--flow F]`: signs in and waits; shows the device code or browser URL.
pub async fn login(config: &Config, upn: &str, flow: Option<&str>) -> ExitCode {
    let flow = match flow {
        None => None,
        Some("device-code") => Some(Flow::DeviceCode),
        Some("browser") => Some(Flow::Browser),
        Some(other) => {
            eprintln!(
                "error: --flow {other:?}: choose device-code or browser (app-only flows are configured in [[account]])"
            );
            return ExitCode::from(2);
        }
    };
    if let Some(running) = Running::find(&config.state_dir) {
        return login_through(&running, upn, flow).await;
    }
    let Some(tokens) = token_manager(config).await else {
        return ExitCode::from(2);
    };
    let handle = match tokens.begin_login(upn, flow).await {
        Ok(handle) => handle,
        Err(e) => return failed(&e.to_string()),
    };
    match &handle.prompt {
        SignInPrompt::Device(prompt) => println!(
            "To sign in {upn}, open {} and enter the code {}\n(waiting for you to finish; Ctrl-C to give up)",
            prompt.verification_uri, prompt.user_code
        ),
        SignInPrompt::Browser { url } => {
            println!("Finish signing in {upn} in your browser. If none opened, open:\n{url}")
        }
        SignInPrompt::None => {}
    }
    if let Err(e) = handle.wait().await {
        return failed(&e.to_string());
    }
    println!("{upn}: signed in; exoproxy now keeps its tokens fresh.");
    print_accounts(&tokens, Some(upn));
    ExitCode::SUCCESS
}

/// `login` through the running proxy: it starts (or reuses) the account's one pending sign-in;
/// print its code and wait, with a countdown, until the account is ready or the code expired.
async fn login_through(running: &Running, upn: &str, flow: Option<Flow>) -> ExitCode {
    let flow = match flow {
        Some(Flow::Browser) => Some("browser"),
        Some(_) => Some("device-code"),
        None => None,
    };
    let mut fields = vec![("account", upn)];
    fields.extend(flow.map(|f| ("flow", f)));
    let reply = match running.action("signin", &fields).await {
        Ok(reply) => reply,
        Err(e) => return failed(&e),
    };
    let message = reply["message"].as_str().unwrap_or_default();
    if reply["ok"] != true {
        return failed(message);
    }
    match (&reply["user_code"], &reply["verification_uri"]) {
        (serde_json::Value::String(code), serde_json::Value::String(uri)) => println!(
            "To sign in {upn}, open {uri} and enter the code {code}
(the running exoproxy shows              its clients the same code; waiting for you to finish; Ctrl-C stops only this wait)"
        ),
        (_, serde_json::Value::String(uri)) => {
            println!("Finish signing in {upn} in your browser. If none opened, open:
{uri}")
        }
        _ => {
            println!("{message}");
            return ExitCode::SUCCESS;
        }
    }
    let device = reply["user_code"].is_string();
    wait_until_ready(running, upn, device).await
}

/// Polls `/status.json` until `upn` is ready (0), or its sign-in ended without it, or the device
/// code (for the browser flow: five minutes) ran out (1). Prints the time left every 30 s.
async fn wait_until_ready(running: &Running, upn: &str, device: bool) -> ExitCode {
    let started = unix_now();
    let mut shown = started;
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let account = match running.get("/status.json").await {
            Ok((200, body)) => account_in(&body, upn),
            Ok((status, body)) => return failed(&format!("status {status}: {}", body.trim())),
            Err(e) => return failed(&e),
        };
        let state = account["state"].as_str().unwrap_or("unknown");
        if state == "ready" {
            println!("{upn}: signed in; the running exoproxy uses the new sign-in now.");
            return ExitCode::SUCCESS;
        }
        let now = unix_now();
        // The device code's own expiry; the browser flow leaves the account in its old state.
        let deadline = match (device, state) {
            (true, "sign_in_pending") => account["sign_in"]["expires_at"].as_i64(),
            (true, _) => None,
            (false, _) => Some(started + 300),
        };
        let Some(deadline) = deadline.filter(|at| now <= *at) else {
            let why =
                (account["last_error"].as_str()).unwrap_or("the sign-in did not complete in time");
            return failed(&format!("{upn} is {state}: {why}"));
        };
        if now - shown >= 30 {
            shown = now;
            println!("  still waiting for the sign-in: {} s left", deadline - now);
        }
    }
}

/// The account `upn` in a `/status.json` body (`null` when absent).
fn account_in(body: &str, upn: &str) -> serde_json::Value {
    let status: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let accounts = status["accounts"].as_array().cloned().unwrap_or_default();
    accounts
        .into_iter()
        .find(|a| {
            a["upn"]
                .as_str()
                .is_some_and(|u| u.eq_ignore_ascii_case(upn))
        })
        .unwrap_or_default()
}

/// `exoproxy logout UPN`: through the running proxy (final: it stops renewing), else wipes the
/// account's tokens from the cache.
pub async fn logout(config: &Config, upn: &str) -> ExitCode {
    if let Some(running) = Running::find(&config.state_dir) {
        return match running.action("signout", &[("account", upn)]).await {
            Ok(reply) if reply["ok"] == true => {
                println!("{}", reply["message"].as_str().unwrap_or_default());
                ExitCode::SUCCESS
            }
            Ok(reply) => failed(reply["message"].as_str().unwrap_or("refused")),
            Err(e) => failed(&e),
        };
    }
    let Some(tokens) = token_manager(config).await else {
        return ExitCode::from(2);
    };
    match tokens.logout(upn) {
        Ok(()) => {
            println!("{upn}: signed out; its tokens are deleted.");
            ExitCode::SUCCESS
        }
        Err(e) => failed(&format!("could not delete the tokens of {upn}: {e}")),
    }
}

/// `exoproxy accounts`: one block per account; never a token.
pub async fn accounts(config: &Config) -> ExitCode {
    let Some(tokens) = token_manager(config).await else {
        return ExitCode::from(2);
    };
    if tokens.accounts().is_empty() {
        println!("No accounts yet. Sign in with `exoproxy login admin@contoso.com`.");
    }
    print_accounts(&tokens, None);
    ExitCode::SUCCESS
}

/// `exoproxy token UPN [--audience URI]`: a fresh access token on stdout, a warning on stderr.
pub async fn token(config: &Config, upn: &str, audience: Option<&str>) -> ExitCode {
    let Some(tokens) = token_manager(config).await else {
        return ExitCode::from(2);
    };
    let audience = match audience {
        Some(a) => Audience::new(a.trim_end_matches('/')),
        None => config
            .intercept
            .accounts
            .iter()
            .find(|a| a.upn.eq_ignore_ascii_case(upn))
            .map_or_else(
                || crate::token::Cloud::Global.exchange(),
                |a| a.default_audience(),
            ),
    };
    let delegated = (config.intercept.accounts.iter())
        .find(|a| a.upn.eq_ignore_ascii_case(upn))
        .is_none_or(|a| a.flow.is_delegated());
    let signed_in =
        (tokens.accounts().iter()).any(|a| a.upn.eq_ignore_ascii_case(upn) && a.has_refresh_token);
    if delegated && !signed_in {
        // A device code printed here would wait for a user who only wanted a token.
        return failed(&format!(
            "{upn} is not signed in: run `exoproxy login {upn}` first"
        ));
    }
    match tokens.token(upn, &audience).await {
        Ok(token) => {
            eprintln!(
                "warning: this is a live access token for {upn} ({audience}); anyone who sees it can act as you until it expires. Do not paste it anywhere."
            );
            println!("{}", token.expose());
            ExitCode::SUCCESS
        }
        Err(e) => failed(&e.to_string()),
    }
}

/// `exoproxy ca export FILE`: writes the CA certificate and prints how to trust it.
pub fn ca_export(config: &Config, file: &Path) -> ExitCode {
    let ca = match LocalCa::load_or_create(&config.state_dir, &config.intercept.ca_domains()) {
        Ok((ca, _)) => ca,
        Err(e) => return failed(&e.to_string()),
    };
    match ca.export(file) {
        Ok(instructions) => {
            println!("{instructions}");
            ExitCode::SUCCESS
        }
        Err(e) => failed(&e.to_string()),
    }
}

/// `exoproxy ca regenerate`: replaces the CA; the old one must be removed from trust stores.
pub fn ca_regenerate(config: &Config) -> ExitCode {
    if let Err(e) = super::ensure_state_dir(&config.state_dir) {
        return failed(&e);
    }
    match LocalCa::regenerate(&config.state_dir, &config.intercept.ca_domains()) {
        Ok(ca) => {
            println!(
                "New local CA written to {}.\nRestart exoproxy, trust the new CA (`exoproxy ca export exoproxy-ca.pem` prints how) and remove the old \"exoproxy\" CA from your trust stores.",
                ca.files().cert.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => failed(&e.to_string()),
    }
}

/// The token manager with the proxy's wiring, or `None` after printing why not.
async fn token_manager(config: &Config) -> Option<TokenManager> {
    let mut config = config.clone();
    config.intercept.enabled = false; // no CA needed to talk to the IdP
    match Services::build(&config, &config.listen).await {
        Ok(services) => Some(services.tokens),
        Err(StartError::Config(errors)) => {
            for e in errors {
                eprintln!("config error: {e}");
            }
            None
        }
        Err(StartError::Runtime(e)) => {
            eprintln!("error: {e}");
            None
        }
    }
}

fn print_accounts(tokens: &TokenManager, only: Option<&str>) {
    for summary in tokens.accounts() {
        if only.is_some_and(|u| !u.eq_ignore_ascii_case(&summary.upn)) {
            continue;
        }
        println!("{}", summary.upn);
        println!("  state:    {}", status_text(&summary.status, &summary.upn));
        let refresh = if summary.has_refresh_token {
            "held"
        } else {
            "none"
        };
        println!("  refresh:  {refresh}");
        for (audience, secs) in &summary.tokens {
            println!(
                "  token:    {audience}, valid {}m {}s more",
                secs / 60,
                secs % 60
            );
        }
        if let Some(last) = &summary.last_refresh {
            let outcome = if last.ok { "ok" } else { last.detail.as_str() };
            println!("  last refresh: {} ({outcome})", rfc3339(last.at));
        }
        if let Some(error) = &summary.last_error {
            println!("  last error: {error}");
        }
    }
}

/// The account's state in words; a suggested command is complete, ready to paste.
fn status_text(status: &AccountStatus, upn: &str) -> String {
    match status {
        AccountStatus::Ready => "ready".into(),
        AccountStatus::Failing { failures } => {
            format!("token calls failing ({failures} in a row); retrying")
        }
        AccountStatus::SignInRequired { aadsts } => match aadsts {
            Some(code) => format!("sign-in required (AADSTS{code}): run `exoproxy login {upn}`"),
            None => format!("sign-in required: run `exoproxy login {upn}`"),
        },
        AccountStatus::SignInPending {
            user_code,
            verification_uri,
            ..
        } => format!("waiting for sign-in: open {verification_uri} and enter {user_code}"),
        AccountStatus::SignedOut => format!("signed out: run `exoproxy login {upn}`"),
    }
}

fn failed(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

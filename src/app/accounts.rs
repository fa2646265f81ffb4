//! The account and CA commands: `login`, `logout`, `accounts`, `token`, `ca export`, `ca regenerate`.
//!
//! Contract: they use the same wiring as the proxy ([`Services`]), so token calls take the proxy's
//! route and the same token cache; a running proxy picks up a `login` done here on its next request.
//! Output for people goes to stdout; `token` prints only the token on stdout (for scripts) and its
//! warning on stderr. Exit codes: 0 ok, 1 the operation failed, 2 bad input or configuration.

use std::path::Path;
use std::process::ExitCode;

use super::{Services, StartError};
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

/// `exoproxy logout UPN`: wipes the account's tokens from the cache.
pub async fn logout(config: &Config, upn: &str) -> ExitCode {
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
            println!("  last refresh: {} ({outcome})", unix_time_text(last.at));
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

/// `YYYY-MM-DD HH:MM:SS UTC` for Unix seconds.
fn unix_time_text(at: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(at) {
        Ok(t) => format!(
            "{}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => at.to_string(),
    }
}

fn failed(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

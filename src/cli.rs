//! Command-line interface (clap). `exoproxy` alone runs the proxy; subcommands inspect and manage it.
//!
//! Global flags are bound to `EXOPROXY_*` environment variables by clap, which gives the documented
//! precedence command line > environment > file > defaults for free.
//!
//! The `///` comments on the argument types are `--help` text for users, written as plain text, so
//! rustdoc's Markdown lints do not apply to them.
#![allow(
    rustdoc::broken_intra_doc_links,
    rustdoc::bare_urls,
    rustdoc::invalid_html_tags
)]

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Overrides;

/// Authenticating forward proxy for Exchange Online administration.
#[derive(Debug, Parser)]
#[command(name = "exoproxy", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Flags every subcommand understands.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// TOML configuration file (default: exoproxy.toml in the state dir, if present).
    #[arg(long, global = true, env = "EXOPROXY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on (repeatable); default 127.0.0.1:8765 and [::1]:8765.
    #[arg(
        long,
        global = true,
        env = "EXOPROXY_LISTEN",
        value_delimiter = ',',
        value_name = "ADDR"
    )]
    pub listen: Vec<String>,
    /// Upstream proxy URL, tried in order (repeatable), e.g. http://proxy.corp:8080.
    #[arg(
        long,
        global = true,
        env = "EXOPROXY_UPSTREAM",
        value_delimiter = ',',
        value_name = "URL"
    )]
    pub upstream: Vec<String>,
    /// Bypass list in WinHTTP/IE syntax, e.g. "<local>;*.corp.example".
    #[arg(long, global = true, env = "EXOPROXY_BYPASS", value_name = "LIST")]
    pub bypass: Option<String>,
    /// HOST:PORT:ADDR:PORT: dial ADDR:PORT for requests to HOST:PORT (repeatable; like curl).
    #[arg(long = "connect-to", global = true, value_name = "MAPPING")]
    pub connect_to: Vec<String>,
    /// PEM file of extra roots trusted for TLS to the real servers (besides the system's).
    #[arg(long, global = true, env = "EXOPROXY_UPSTREAM_CA", value_name = "FILE")]
    pub upstream_ca: Option<PathBuf>,
    /// Folder for the CA, tokens and other state.
    #[arg(long, global = true, env = "EXOPROXY_HOME", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// More log output (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Less log output (-q warnings only, -qq errors only).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "verbose")]
    pub quiet: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy (the default).
    Run,
    /// Explain how a URL would be routed: DIRECT, which upstream proxy, or blocked, and why.
    Route {
        /// e.g. https://outlook.office365.com/powershell-liveid or http://intranet/
        url: String,
    },
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// PAC tools.
    #[command(subcommand)]
    Pac(PacCommand),
    /// Sign in an account now (device code by default) and keep its tokens for the proxy.
    Login {
        /// e.g. admin@contoso.com
        upn: String,
        /// device-code, or browser (opens the system browser).
        #[arg(long, value_name = "FLOW")]
        flow: Option<String>,
    },
    /// Forget an account's tokens (memory and disk).
    Logout {
        /// e.g. admin@contoso.com
        upn: String,
    },
    /// List accounts: sign-in state, token expiry, last refresh. Never prints a token.
    Accounts,
    /// Print a fresh access token (e.g. for Connect-ExchangeOnline -AccessToken).
    Token {
        /// e.g. admin@contoso.com
        upn: String,
        /// The resource, default Exchange Online of the account's cloud
        /// (e.g. https://ps.compliance.protection.outlook.com).
        #[arg(long, value_name = "URI")]
        audience: Option<String>,
    },
    /// The local CA that signs the intercepted hosts' certificates.
    #[command(subcommand)]
    Ca(CaCommand),
    /// See exoproxy work without a tenant: runs the Entra ID + Exchange Online emulator on
    /// loopback, signs in, runs WS-Man and REST calls across token rollovers, prints a report.
    Demo {
        /// How long to run REST and WS-Man calls, in seconds.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3600))]
        seconds: u64,
        /// Lifetime of the emulator's access tokens, in seconds (short, to see rollovers).
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(2..=3600))]
        token_lifetime: u64,
    },
    /// Wire this Windows user's desktop to exoproxy (no admin rights): start at logon, trust the CA,
    /// point Internet Settings at the served PAC; saves what it replaces first.
    Install(DesktopArgs),
    /// Undo `install`: restore the saved Internet Settings exactly, remove the CA and the logon entry.
    Uninstall(DesktopArgs),
}

/// Flags of `install` and `uninstall`.
#[derive(Debug, Args)]
pub struct DesktopArgs {
    /// Print every change without making it (works on any OS).
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Write the CA certificate to FILE and print the commands that trust it.
    Export {
        /// e.g. exoproxy-ca.pem
        file: PathBuf,
    },
    /// Replace the CA (after a key leak, expiry or a change of intercepted clouds); trust it again.
    Regenerate,
}

#[derive(Debug, Subcommand)]
pub enum PacCommand {
    /// Print what the PAC script returns for a URL (like pactester), e.g. `PROXY p.corp:8080; DIRECT`.
    Eval {
        /// e.g. `https://outlook.office365.com/`
        url: String,
        /// The PAC file to evaluate (default: upstream.pac from the configuration).
        #[arg(long, value_name = "FILE")]
        pac: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check a configuration file; prints every error with its key and line, exit code 2 on errors.
    Check {
        /// The file to check (default: --config).
        file: Option<PathBuf>,
    },
}

// === impl GlobalArgs ===

impl GlobalArgs {
    /// The overrides for `config::load`.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen.clone(),
            upstream: self.upstream.clone(),
            bypass: self.bypass.clone(),
            connect_to: self.connect_to.clone(),
            state_dir: self.state_dir.clone(),
            log_level: self.log_level(),
            upstream_ca: self.upstream_ca.clone(),
        }
    }

    fn log_level(&self) -> Option<String> {
        match (self.verbose, self.quiet) {
            (0, 0) => None,
            (1, _) => Some("debug".into()),
            (v, _) if v >= 2 => Some("trace".into()),
            (_, 1) => Some("warn".into()),
            _ => Some("error".into()),
        }
    }

    /// The config file to read: `--config`, else `exoproxy.toml` in the state dir when it exists.
    pub fn config_file(&self) -> Option<PathBuf> {
        if let Some(p) = &self.config {
            return Some(p.clone());
        }
        let dir = self
            .state_dir
            .clone()
            .or_else(crate::config::validate::default_state_dir)?;
        let candidate = dir.join("exoproxy.toml");
        candidate.is_file().then_some(candidate)
    }
}

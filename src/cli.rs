//! Command-line interface (clap). `exoproxy` alone runs the proxy; subcommands inspect and manage it.
//!
//! Contract: a flag appears only on the commands it changes. `--config`, `--state-dir` and `-v`/`-q`
//! are global; the proxy's flags ([`RunArgs`]: `--listen` and the [`NetworkArgs`]) belong to `run`
//! (and to `exoproxy` without a subcommand) and to `route`, which must decide as the proxy would; the
//! network flags also to `login` and `token`, which reach the IdP as the proxy does. Flags are bound
//! to `EXOPROXY_*` environment variables by clap, which gives the documented precedence command
//! line > environment > file > defaults; `-v`/`-q` beat `EXOPROXY_LOG` (see `app::log`).
//!
//! The `///` comments on the argument types are `--help` text for users, written as plain text, so
//! rustdoc's Markdown lints do not apply to them.
#![allow(
    rustdoc::broken_intra_doc_links,
    rustdoc::bare_urls,
    rustdoc::invalid_html_tags
)]

use std::path::PathBuf;

use std::ffi::OsString;

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::Overrides;

/// Authenticating forward proxy for Exchange Online administration.
#[derive(Debug, Parser)]
#[command(name = "exoproxy", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The flags of `run`, for `exoproxy` without a subcommand.
    #[command(
        flatten,
        next_help_heading = "Proxy options (exoproxy alone; with a subcommand, after it)"
    )]
    pub run: RunArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Flags every subcommand understands.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// TOML configuration file (default: exoproxy.toml in the state dir, if present).
    #[arg(long, global = true, env = "EXOPROXY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Folder for the CA, tokens and other state.
    #[arg(long, global = true, env = "EXOPROXY_HOME", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// More log output (-v debug, -vv trace); beats EXOPROXY_LOG.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Less log output (-q warnings only, -qq errors only); beats EXOPROXY_LOG.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "verbose")]
    pub quiet: u8,
}

/// The flags of the running proxy: where it listens, and how it reaches the network.
#[derive(Debug, Clone, Default, Args)]
pub struct RunArgs {
    /// Address to listen on (repeatable); default 127.0.0.1:8765 and [::1]:8765.
    #[arg(
        long,
        env = "EXOPROXY_LISTEN",
        value_delimiter = ',',
        value_name = "ADDR"
    )]
    pub listen: Vec<String>,
    #[command(flatten)]
    pub network: NetworkArgs,
}

/// How exoproxy reaches the network: for the proxy, and for the commands that go out as it does
/// (`route`, `login`, `token`).
#[derive(Debug, Clone, Default, Args)]
pub struct NetworkArgs {
    /// Upstream proxy URL, tried in order (repeatable), e.g. http://proxy.corp:8080.
    #[arg(
        long,
        env = "EXOPROXY_UPSTREAM",
        value_delimiter = ',',
        value_name = "URL"
    )]
    pub upstream: Vec<String>,
    /// Bypass list in WinHTTP/IE syntax, e.g. "<local>;*.corp.example".
    #[arg(long, env = "EXOPROXY_BYPASS", value_name = "LIST")]
    pub bypass: Option<String>,
    /// HOST:PORT:ADDR:PORT: dial ADDR:PORT for requests to HOST:PORT (repeatable; like curl).
    #[arg(long = "connect-to", value_name = "MAPPING")]
    pub connect_to: Vec<String>,
    /// PEM file of extra roots trusted for TLS to the real servers (besides the system's).
    #[arg(long, env = "EXOPROXY_UPSTREAM_CA", value_name = "FILE")]
    pub upstream_ca: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy (the default).
    Run(RunArgs),
    /// Explain how the running proxy would route a URL or host: DIRECT, which upstream proxy,
    /// intercepted or blocked, and which rule decided.
    Route {
        /// A URL, or a host as a client CONNECTs to it: https://outlook.office365.com/powershell-liveid,
        /// http://intranet/, outlook.office365.com (= https://outlook.office365.com/), host:8443
        target: String,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// PAC tools.
    #[command(subcommand)]
    Pac(PacCommand),
    /// What the running proxy says about itself: accounts, tokens, upstream, CA, recent errors
    /// (its /status.json).
    Status {
        /// Print the raw /status.json instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Sign in an account now (device code by default) and keep its tokens for the proxy; through
    /// the running proxy when one runs for this state dir (used at once, same code as it shows).
    Login {
        /// e.g. admin@contoso.com
        upn: String,
        /// device-code, or browser (opens the system browser).
        #[arg(long, value_name = "FLOW")]
        flow: Option<String>,
        #[command(flatten)]
        network: NetworkArgs,
    },
    /// Forget an account's tokens (memory and disk); through the running proxy when one runs, which
    /// then stops renewing them until the next login.
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
        #[command(flatten)]
        network: NetworkArgs,
    },
    /// The local CA that signs the intercepted hosts' certificates.
    #[command(subcommand)]
    Ca(CaCommand),
    /// See exoproxy work without a tenant: runs the Entra ID + Exchange Online emulator on
    /// loopback, signs in, runs WS-Man and REST calls across token rollovers, prints a report.
    #[cfg(feature = "demo")]
    Demo {
        /// How long to run REST and WS-Man calls, in seconds.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3600))]
        seconds: u64,
        /// Lifetime of the emulator's access tokens, in seconds (short, to see rollovers).
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(2..=3600))]
        token_lifetime: u64,
    },
    /// Check the setup and say what to fix: config, running proxy, CA and its trust, desktop wiring,
    /// accounts (a token request now), the route to the identity provider and Exchange (upstream proxy
    /// and its password included), STS hosts, clock skew. Exit 0 when nothing fails.
    Doctor,
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
    /// The script sees what the running proxy passes: https://host[:port]/ for https (a CONNECT
    /// carries no path), scheme://host[:port]/ for http.
    Eval {
        /// A URL or a host, as for `exoproxy route`, e.g. https://outlook.office365.com/
        url: String,
        /// The PAC file or http(s):// URL to evaluate, as upstream.pac takes it (default: the
        /// configured one).
        #[arg(long, value_name = "FILE|URL")]
        pac: Option<String>,
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

// === impl Cli ===

impl Cli {
    /// Parses the process's arguments; prints the error or help and exits on failure.
    pub fn parse_args() -> Cli {
        Cli::try_parse_args(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    /// Parses `args` (the program name first). The proxy flags before a subcommand are refused:
    /// `exoproxy --listen …` runs the proxy, and with a subcommand they go after it, where they
    /// exist only for the commands that use them.
    pub fn try_parse_args<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let matches = Cli::command().try_get_matches_from(args)?;
        let cli = Cli::from_arg_matches(&matches)?;
        if let Some((name, _)) = matches.subcommand()
            && let Some(flag) = top_level_run_flag(&matches)
        {
            let message = format!(
                "{flag} before the subcommand: write it after `{name}` if `{name}` takes it \
                 (see `exoproxy {name} --help`)"
            );
            return Err(Cli::command().error(ErrorKind::ArgumentConflict, message));
        }
        Ok(cli)
    }

    /// The overrides for `config::load`: the global flags plus the proxy flags the command takes.
    pub fn overrides(&self) -> Overrides {
        let none = RunArgs::default();
        let (listen, network) = match &self.command {
            None => (&self.run.listen[..], &self.run.network),
            Some(Command::Run(run) | Command::Route { run, .. }) => (&run.listen[..], &run.network),
            Some(Command::Login { network, .. } | Command::Token { network, .. }) => {
                (&none.listen[..], network)
            }
            Some(_) => (&none.listen[..], &none.network),
        };
        Overrides {
            listen: listen.to_vec(),
            upstream: network.upstream.clone(),
            bypass: network.bypass.clone(),
            connect_to: network.connect_to.clone(),
            state_dir: self.global.state_dir.clone(),
            log_level: self.global.log_level(),
            upstream_ca: network.upstream_ca.clone(),
        }
    }
}

/// The first proxy flag given on the command line before any subcommand.
fn top_level_run_flag(matches: &ArgMatches) -> Option<String> {
    let command = Cli::command();
    let global = ["config", "state_dir", "verbose", "quiet"];
    command
        .get_arguments()
        .filter(|arg| !global.contains(&arg.get_id().as_str()))
        .find(|arg| matches.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine))
        .map(|arg| format!("--{}", arg.get_long().unwrap_or(arg.get_id().as_str())))
}

// === impl GlobalArgs ===

impl GlobalArgs {
    /// The level `-v`/`-q` ask for; `None` leaves it to `EXOPROXY_LOG` and the file.
    pub fn log_level(&self) -> Option<String> {
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

/// The warning for a password written on the command line (`--upstream http://user:pass@proxy`):
/// every local user can read it in the process list (docs/TESTING.md#sec-21).
pub const PASSWORD_ON_COMMAND_LINE: &str = "a proxy password is written on the command line, where \
     every local user can read it (ps, /proc/<pid>/cmdline): name an environment variable \
     (password_env) or a file (password_file) in [[upstream.credentials]] instead";

/// True when an argument is, or lists (`--flag=URL`, comma-separated), a URL with a password.
/// Only the command line counts: `EXOPROXY_UPSTREAM` is the environment, readable by our user only.
pub fn password_on_command_line<I, T>(args: I) -> bool
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    args.into_iter().skip(1).any(|arg| {
        let arg = arg.into().to_string_lossy().into_owned();
        let value = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => value.to_string(),
            _ => arg,
        };
        value.split(',').any(|item| {
            url::Url::parse(item.trim()).is_ok_and(|u| u.password().is_some_and(|p| !p.is_empty()))
        })
    })
}

#[cfg(test)]
mod sec21_tests {
    use super::*;

    #[test]
    fn sec_21_a_password_on_the_command_line_is_noticed() {
        let args = |list: &[&str]| password_on_command_line(list.iter().copied());
        assert!(args(&[
            "exoproxy",
            "run",
            "--upstream",
            "http://u:p%40ss@proxy:8080"
        ]));
        assert!(args(&[
            "exoproxy",
            "run",
            "--upstream=http://a:1,http://u:pw@proxy:8080"
        ]));
        assert!(args(&[
            "exoproxy",
            "login",
            "a@b.test",
            "--upstream",
            "http://u:pw@p:1"
        ]));
        assert!(!args(&[
            "exoproxy",
            "run",
            "--upstream",
            "http://u@proxy:8080"
        ]));
        assert!(!args(&[
            "exoproxy",
            "run",
            "--upstream",
            "http://proxy:8080"
        ]));
        // The program name is not an argument.
        assert!(!args(&["http://u:pw@p:1", "run"]));
    }
}

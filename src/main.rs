//! The `exoproxy` binary: parse the command line, set up logging, dispatch, map the outcome to an exit
//! code (0 ok, 1 runtime failure, 2 usage or configuration error).

use std::process::ExitCode;

use exoproxy::app::{self, accounts, log};
use exoproxy::cli::{CaCommand, Cli, Command, ConfigCommand, PacCommand};
use exoproxy::config::{Config, SecretUse};

fn main() -> ExitCode {
    // First: a panic report never carries request data (docs/TESTING.md#sec-20).
    app::panic::install();
    let cli = Cli::parse_args();
    let overrides = cli.overrides();
    let flag = cli.global.log_level();
    if let Some(Command::Config(ConfigCommand::Check { file })) = &cli.command {
        let _log = match logging(flag.as_deref(), "warn") {
            Ok(guard) => guard,
            Err(code) => return code,
        };
        let file = file.clone().or_else(|| cli.global.config_file());
        return app::config_check(file.as_deref(), &overrides);
    }
    if let Some(Command::Doctor) = &cli.command {
        // Runs on an invalid configuration too: that is its first finding.
        let _log = match logging(flag.as_deref(), "error") {
            Ok(guard) => guard,
            Err(code) => return code,
        };
        let file = cli.global.config_file();
        return app::block_on(app::doctor::run(file.as_deref(), &overrides));
    }
    #[cfg(feature = "demo")]
    if let Some(Command::Demo {
        seconds,
        token_lifetime,
    }) = &cli.command
    {
        // Self-contained: no config file; warnings only unless -v or EXOPROXY_LOG.
        let _log = match logging(flag.as_deref(), "warn") {
            Ok(guard) => guard,
            Err(code) => return code,
        };
        return app::block_on(app::demo::run(*seconds, *token_lifetime));
    }
    let config = match load(&cli) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // Only the proxy writes a log file; the other commands report to the console they run in.
    let file = match &cli.command {
        Some(Command::Run(_)) | None => log::file_wanted(&config.log_file),
        Some(_) => None,
    };
    let _log =
        match log::init_with(flag.as_deref(), &command_level(&cli, &config), file).map_err(|e| {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }) {
            Ok(guard) => guard,
            Err(code) => return code,
        };
    if exoproxy::cli::password_on_command_line(std::env::args_os()) {
        tracing::warn!("{}", exoproxy::cli::PASSWORD_ON_COMMAND_LINE);
    }
    if let Err(code) = require_secrets(&cli, &config) {
        return code;
    }
    match &cli.command {
        Some(Command::Config(_) | Command::Doctor) => handled_before_loading(),
        #[cfg(feature = "demo")]
        Some(Command::Demo { .. }) => handled_before_loading(),
        Some(Command::Route { target, .. }) => app::block_on(app::explain_route(&config, target)),
        Some(Command::Pac(PacCommand::Eval { url, pac })) => {
            app::block_on(app::pac_eval(&config, url, pac.as_deref()))
        }
        Some(Command::Login { upn, flow, .. }) => {
            app::block_on(accounts::login(&config, upn, flow.as_deref()))
        }
        Some(Command::Logout { upn }) => app::block_on(accounts::logout(&config, upn)),
        Some(Command::Status { json }) => app::block_on(app::status::status(&config, *json)),
        Some(Command::Accounts) => app::block_on(accounts::accounts(&config)),
        Some(Command::Token { upn, audience, .. }) => {
            app::block_on(accounts::token(&config, upn, audience.as_deref()))
        }
        Some(Command::Ca(CaCommand::Export { file })) => accounts::ca_export(&config, file),
        Some(Command::Ca(CaCommand::Regenerate)) => accounts::ca_regenerate(&config),
        Some(Command::Install(args)) => app::desktop::install(&config, args.dry_run),
        Some(Command::Uninstall(args)) => app::desktop::uninstall(&config, args.dry_run),
        Some(Command::Run(_)) | None => {
            let source = app::ConfigSource {
                file: cli.global.config_file(),
                overrides: cli.overrides(),
            };
            app::block_on(app::run(config, source))
        }
    }
}

/// The configured level for a command. The proxy logs at the configured level. `login` and `token`
/// log warnings only unless the file asks for more (their progress lines would bury the device-code
/// prompt); the commands that print a report (`route`, `pac eval`, `accounts`, ...) log errors only,
/// since the report already says what went wrong. `-v` and `EXOPROXY_LOG` still beat these.
fn command_level(cli: &Cli, config: &Config) -> String {
    let quiet_by_default = |quiet: &str| match config.log_level.as_str() {
        "info" => quiet.to_string(),
        level => level.to_string(),
    };
    match &cli.command {
        Some(Command::Run(_)) | None => config.log_level.clone(),
        Some(Command::Login { .. } | Command::Token { .. }) => quiet_by_default("warn"),
        Some(_) => quiet_by_default("error"),
    }
}

/// Starts logging; an invalid filter (`EXOPROXY_LOG=verbose`) is a usage error, exit code 2.
fn logging(flag: Option<&str>, configured: &str) -> Result<log::LogGuard, ExitCode> {
    log::init(flag, configured).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })
}

/// `config check`, `doctor` and `demo` return before the configuration is loaded; this arm keeps the match
/// exhaustive without a wildcard that could hide a new command.
fn handled_before_loading() -> ExitCode {
    eprintln!("error: internal: a command was dispatched twice");
    ExitCode::FAILURE
}

/// The commands that use secrets named by the config refuse to run while a variable is not set; the
/// others (`accounts`, `logout`, `route`, `ca export`, ...) never need them.
fn require_secrets(cli: &Cli, config: &Config) -> Result<(), ExitCode> {
    let needed = match &cli.command {
        Some(Command::Run(_)) | None => SecretUse::Serve,
        Some(Command::Login { upn, .. } | Command::Token { upn, .. }) => SecretUse::Account(upn),
        _ => return Ok(()),
    };
    config.require_secrets(needed).map_err(|errors| {
        for e in &errors {
            eprintln!("config error: {e}");
        }
        ExitCode::from(2)
    })
}

/// Loads the configuration or prints every error and returns exit code 2.
fn load(cli: &Cli) -> Result<Config, ExitCode> {
    let file = cli.global.config_file();
    exoproxy::config::load(file.as_deref(), &cli.overrides()).map_err(|errors| {
        for e in &errors {
            eprintln!("config error: {e}");
        }
        ExitCode::from(2)
    })
}

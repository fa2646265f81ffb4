//! The `exoproxy` binary: parse the command line, set up logging, dispatch, map the outcome to an exit
//! code (0 ok, 1 runtime failure, 2 usage or configuration error).

use std::process::ExitCode;

use clap::Parser;
use exoproxy::app::{self, accounts};
use exoproxy::cli::{CaCommand, Cli, Command, ConfigCommand, PacCommand};
use exoproxy::config::Config;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let overrides = cli.global.overrides();
    if let Some(Command::Config(ConfigCommand::Check { file })) = &cli.command {
        let file = file.clone().or_else(|| cli.global.config_file());
        return app::config_check(file.as_deref(), &overrides);
    }
    if let Some(Command::Demo {
        seconds,
        token_lifetime,
    }) = &cli.command
    {
        // Self-contained: no config file, no environment; warnings only unless -v.
        let _log = app::init_logging(overrides.log_level.as_deref().unwrap_or("warn"));
        return app::block_on(app::demo::run(*seconds, *token_lifetime));
    }
    let config = match load(&cli) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match &cli.command {
        Some(Command::Config(_) | Command::Demo { .. }) => handled_before_loading(),
        Some(Command::Route { url }) => app::block_on(app::explain_route(&config, url)),
        Some(Command::Pac(PacCommand::Eval { url, pac })) => {
            app::block_on(app::pac_eval(&config, url, pac.as_deref()))
        }
        Some(Command::Login { upn, flow }) => {
            let _log = quiet_logging(&config);
            app::block_on(accounts::login(&config, upn, flow.as_deref()))
        }
        Some(Command::Logout { upn }) => app::block_on(accounts::logout(&config, upn)),
        Some(Command::Accounts) => app::block_on(accounts::accounts(&config)),
        Some(Command::Token { upn, audience }) => {
            let _log = quiet_logging(&config);
            app::block_on(accounts::token(&config, upn, audience.as_deref()))
        }
        Some(Command::Ca(CaCommand::Export { file })) => accounts::ca_export(&config, file),
        Some(Command::Ca(CaCommand::Regenerate)) => accounts::ca_regenerate(&config),
        Some(Command::Install(args)) => app::desktop::install(&config, args.dry_run),
        Some(Command::Uninstall(args)) => app::desktop::uninstall(&config, args.dry_run),
        Some(Command::Run) | None => {
            let _log = app::init_logging(&config.log_level);
            app::block_on(app::run(config))
        }
    }
}

/// Commands that talk to the IdP log warnings only (the token manager's own progress lines).
fn quiet_logging(config: &Config) -> app::log::LogGuard {
    let level = if config.log_level == "info" {
        "warn"
    } else {
        &config.log_level
    };
    app::init_logging(level)
}

/// `config check` and `demo` return before the configuration is loaded; this arm keeps the match
/// exhaustive without a wildcard that could hide a new command.
fn handled_before_loading() -> ExitCode {
    eprintln!("error: internal: a command was dispatched twice");
    ExitCode::FAILURE
}

/// Loads the configuration or prints every error and returns exit code 2.
fn load(cli: &Cli) -> Result<Config, ExitCode> {
    let file = cli.global.config_file();
    exoproxy::config::load(file.as_deref(), &cli.global.overrides()).map_err(|errors| {
        for e in &errors {
            eprintln!("config error: {e}");
        }
        ExitCode::from(2)
    })
}

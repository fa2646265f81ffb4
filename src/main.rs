//! The `exoproxy` binary: parse the command line, set up logging, dispatch, map the outcome to an exit
//! code (0 ok, 1 runtime failure, 2 usage or configuration error).

use std::process::ExitCode;

use clap::Parser;
use exoproxy::app;
use exoproxy::cli::{Cli, Command, ConfigCommand, PacCommand};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let overrides = cli.global.overrides();
    match &cli.command {
        Some(Command::Config(ConfigCommand::Check { file })) => {
            let file = file.clone().or_else(|| cli.global.config_file());
            app::config_check(file.as_deref(), &overrides)
        }
        Some(Command::Route { url }) => {
            let config = match load(&cli) {
                Ok(c) => c,
                Err(code) => return code,
            };
            app::block_on(app::explain_route(&config, url))
        }
        Some(Command::Pac(PacCommand::Eval { url, pac })) => {
            let config = match load(&cli) {
                Ok(c) => c,
                Err(code) => return code,
            };
            app::block_on(app::pac_eval(&config, url, pac.as_deref()))
        }
        Some(Command::Run) | None => {
            let config = match load(&cli) {
                Ok(c) => c,
                Err(code) => return code,
            };
            app::init_logging(&config.log_level);
            app::block_on(app::run(config))
        }
    }
}

/// Loads the configuration or prints every error and returns exit code 2.
fn load(cli: &Cli) -> Result<exoproxy::config::Config, ExitCode> {
    let file = cli.global.config_file();
    exoproxy::config::load(file.as_deref(), &cli.global.overrides()).map_err(|errors| {
        for e in &errors {
            eprintln!("config error: {e}");
        }
        ExitCode::from(2)
    })
}

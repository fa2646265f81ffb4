//! `exosim`: run the emulator standalone (for `exoproxy demo` and manual poking with curl).
//! Prints the hosts it serves, the users and clients it knows, and how to reach it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use exosim::config::{AUTHORITY_HOSTS, EXCHANGE_CERT_NAMES};
use exosim::{ClientCredential, Sim, SimConfig};

/// Emulator of Entra ID, Exchange Online and an ADFS-like STS (tests and demo only).
#[derive(Debug, Parser)]
#[command(name = "exosim", version)]
struct Args {
    /// Address to listen on (HTTPS for every emulated host).
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Write the emulator CA certificate (PEM) here.
    #[arg(long)]
    ca_out: Option<PathBuf>,
    /// Access token lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    token_lifetime: u64,
    /// Device code polling interval in seconds.
    #[arg(long, default_value_t = 5)]
    device_interval: u64,
    /// Device code lifetime in seconds.
    #[arg(long, default_value_t = 900)]
    device_lifetime: u64,
    /// Approve every device code at once.
    #[arg(long)]
    auto_approve: bool,
    /// The user sign-ins pick by default.
    #[arg(long)]
    user: Option<String>,
    /// Embed this unique string in every access and refresh token (log-leak tests).
    #[arg(long)]
    canary: Option<String>,
    /// Treat connections from this peer port as coming through a proxy (STS blank page). Repeatable.
    #[arg(long)]
    proxy_source_port: Vec<u16>,
    /// TOML file adding users, clients and domains (see exosim::config_file).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Turn on Exchange's CAE mode (claims challenges).
    #[arg(long)]
    cae: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("exosim: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), exosim::Error> {
    let mut config = config_from(&args);
    if let Some(path) = &args.config {
        exosim::config_file::apply_file(&mut config, path)?;
    }
    let sim = Sim::start(config.clone()).await?;
    if let Some(path) = &args.ca_out {
        std::fs::write(path, sim.ca_pem())?;
    }
    print_summary(&sim, &config, &args);
    if tokio::signal::ctrl_c().await.is_err() {
        eprintln!("exosim: cannot wait for Ctrl-C; stopping");
    }
    sim.shutdown().await;
    Ok(())
}

fn config_from(args: &Args) -> SimConfig {
    let mut config = SimConfig {
        listen: args.listen,
        token_lifetime: Duration::from_secs(args.token_lifetime),
        device_code_interval: Duration::from_secs(args.device_interval),
        device_code_lifetime: Duration::from_secs(args.device_lifetime),
        auto_approve: args.auto_approve,
        canary: args.canary.clone(),
        proxy_source_ports: args.proxy_source_port.clone(),
        ..SimConfig::default()
    };
    if let Some(user) = &args.user {
        config.default_user = user.clone();
    }
    config.exchange.cae = args.cae;
    config
}

fn print_summary(sim: &Sim, config: &SimConfig, args: &Args) {
    let addr = sim.addr();
    println!(
        "exosim listening on https://{addr} (every host below; route with --connect-to HOST:443:{addr})"
    );
    match &args.ca_out {
        Some(path) => println!("CA certificate: {}", path.display()),
        None => println!("CA certificate: not written (use --ca-out FILE)"),
    }
    println!("Entra ID authority hosts:");
    for host in AUTHORITY_HOSTS {
        println!(
            "  https://{host}/{{tenant}}/v2.0/.well-known/openid-configuration  (devicecode, token, authorize, keys, userrealm)"
        );
    }
    println!("Exchange hosts:");
    for host in EXCHANGE_CERT_NAMES {
        println!("  https://{host}/  (/powershell-liveid, /adminapi/...)");
    }
    for sts in config.sts_hosts() {
        println!("STS: https://{sts}/adfs/ls/  metadata https://{sts}/adfs/services/trust/mex");
    }
    println!(
        "Control: https://{}/counters  (POST /device/approve, /revoke, /fault, /exchange ...)",
        config.control_host
    );
    print_directory(config);
    println!(
        "Token lifetime {}s; device code interval {}s; auto-approve {}",
        args.token_lifetime, args.device_interval, args.auto_approve
    );
}

/// Tenants, users and clients, so a person can pick what to sign in with.
fn print_directory(config: &SimConfig) {
    println!("Tenants:");
    for t in &config.tenants {
        let domains: Vec<String> = t
            .domains
            .iter()
            .map(|d| match &d.federated_sts {
                Some(sts) => format!("{} (federated to {sts})", d.name),
                None => format!("{} (managed)", d.name),
            })
            .collect();
        println!("  {} {}: {}", t.id, t.initial_domain, domains.join(", "));
    }
    println!("Users (default {}):", config.default_user);
    for u in &config.users {
        println!("  {} ({})", u.upn, u.display_name);
    }
    println!("Clients:");
    for c in &config.clients {
        let kind = match &c.credential {
            ClientCredential::Public => "public".to_string(),
            ClientCredential::Certificate(_) => "certificate (sim/keys/app-client.pem)".to_string(),
            ClientCredential::Secret(_) => format!("secret {}", exosim::config::SECRET_APP_SECRET),
        };
        println!("  {} {} [{kind}]", c.id, c.name);
    }
}

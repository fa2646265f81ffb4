//! Wiring and shutdown: the only module that knows all others. Builds the shared state from a
//! [`Config`], binds the listeners, runs until Ctrl-C/SIGTERM, and implements the small CLI commands
//! that need several modules (`route`, `config check`).

use std::future::Future;
use std::path::Path;
use std::process::ExitCode;

use std::net::SocketAddr;
use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use tokio::net::TcpListener;

use crate::client::OutboundClient;
use crate::config::{self, Config, Overrides};
use crate::handler::Proxy;
use crate::limits::Limits;
use crate::listener;
use crate::route::Router;
use crate::route::pac::{PacConfig, PacResolver, PacSource, host_from_url};
use crate::route::source::SourceSpec;
use crate::route::sts::RefreshPolicy;
use crate::route::system::env::process_env;
use crate::route::system::{Selected, read_and_select};
use crate::target::Target;
use crate::tls_client;
use crate::upstream::Upstream;

pub mod accounts;
pub mod demo;
pub mod desktop;
pub mod log;
mod services;

pub use services::Services;

/// Runs a future on a fresh multi-threaded runtime; a runtime that cannot start is exit code 1.
pub fn block_on<F: Future<Output = ExitCode>>(f: F) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(f),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr through the batching [`log::LogSink`] with the configured filter (`EXOPROXY_LOG`
/// overrides it). Keep the guard until `main` returns: dropping it writes what is still queued.
pub fn init_logging(level: &str) -> log::LogGuard {
    let filter = std::env::var("EXOPROXY_LOG").unwrap_or_else(|_| level.to_string());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (sink, guard) = log::LogSink::start(std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(sink)
        .try_init();
    guard
}

/// `exoproxy config check [FILE]`: every error with its key path and line; exit 2 on errors.
pub fn config_check(file: Option<&Path>, overrides: &Overrides) -> ExitCode {
    match config::load(file, overrides) {
        Ok(_) => {
            let name = file.map_or("built-in defaults".into(), |p| p.display().to_string());
            println!("{name}: ok");
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("config error: {e}");
            }
            eprintln!("{} error(s)", errors.len());
            ExitCode::from(2)
        }
    }
}

/// `exoproxy route URL`: prints the decision for a URL and the rule that made it (after STS
/// discovery for the configured domains, so discovered STS hosts are explained).
pub async fn explain_route(config: &Config, url: &str) -> ExitCode {
    match route_report(config, url, &[]).await {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

/// The text `exoproxy route` prints; `extra_roots` are trusted for STS discovery (tests, emulator).
pub async fn route_report(
    config: &Config,
    url: &str,
    extra_roots: &[CertificateDer<'static>],
) -> Result<String, String> {
    let target = target_of_url(url).map_err(|e| format!("error: {e}"))?;
    let router = Router::start(config.route.clone(), &config.listen)
        .await
        .map_err(|errors| {
            let lines: Vec<String> = errors
                .iter()
                .map(|e| format!("config error: {e}"))
                .collect();
            lines.join("\n")
        })?;
    let router = Arc::new(router);
    let upstream = Arc::new(Upstream::new(config.upstream.clone()));
    let tls = tls_client::client_config(extra_roots).map_err(|e| format!("error: {e}"))?;
    let client = OutboundClient::new(router.clone(), upstream, tls);
    let discovered = discover_sts_now(&router, &client, &config.route.sts).await;
    let mut out = format!("{url}\n  target:   {target:?}\n");
    for line in discovered {
        out.push_str(&format!("  sts:      {line}\n"));
    }
    match router.decide(&target).await {
        Ok(decision) => out.push_str(&format!("  decision: {decision}\n")),
        Err(e) => out.push_str(&format!("  decision: error: {e}\n")),
    }
    Ok(out)
}

/// STS discovery for `exoproxy route`: synchronous, each domain within 10 s.
async fn discover_sts_now(
    router: &Router,
    client: &OutboundClient,
    sts: &crate::route::StsConfig,
) -> Vec<String> {
    let timeout = std::time::Duration::from_secs(10);
    let fetch = |url: String| async move { client.get_realm(&url, timeout).await };
    crate::route::discover_sts(router, sts, fetch, timeout).await
}

/// Keeps the STS directory fresh in the background (discovery through the normal route).
fn spawn_sts_refresher(
    router: &Arc<Router>,
    client: &OutboundClient,
    sts: &crate::route::StsConfig,
) {
    let Some(directory) = router.sts().cloned().filter(|_| sts.discover) else {
        return;
    };
    if sts.domains.is_empty() {
        return;
    }
    let client = client.clone();
    let fetch = move |url: String| {
        let client = client.clone();
        async move {
            client
                .get_realm(&url, std::time::Duration::from_secs(15))
                .await
        }
    };
    tokio::spawn(directory.run_refresher(sts.domains.clone(), fetch, RefreshPolicy::default()));
}

/// `exoproxy pac eval URL [--pac FILE]`: prints what the PAC script returns for `url`, like
/// pactester. Exit 0 with the directive, 1 when evaluation failed, 2 for bad input.
pub async fn pac_eval(config: &Config, url: &str, pac_file: Option<&Path>) -> ExitCode {
    let Some(host) = host_from_url(url) else {
        eprintln!("error: {url:?} is not a URL with a host");
        return ExitCode::from(2);
    };
    let mut pac = match (&config.route.source, pac_file) {
        (_, Some(file)) => PacConfig {
            source: PacSource::File(file.to_path_buf()),
            ..PacConfig::default()
        },
        (SourceSpec::Pac(pac), None) => (**pac).clone(),
        (SourceSpec::System { live, pac }, None) => match read_and_select(live, &process_env) {
            Ok(Selected::Pac { url, .. }) => PacConfig {
                source: PacSource::parse(&url),
                ..(**pac).clone()
            },
            Ok(other) => {
                eprintln!("error: the system settings name no PAC ({other:?}); use --pac FILE");
                return ExitCode::from(2);
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
        (SourceSpec::Ready, None) => {
            eprintln!("error: no PAC configured (upstream.pac); use --pac FILE");
            return ExitCode::from(2);
        }
    };
    pac.retry_backoff = vec![std::time::Duration::from_secs(3600)];
    pac.loading_wait = std::time::Duration::from_secs(15);
    let resolver = PacResolver::start(pac).await;
    match resolver.eval(url, &host).await {
        Ok(directive) => {
            println!("{directive}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The target a client would ask for: CONNECT host:port for `https://`, absolute-form for `http://`.
pub fn target_of_url(url: &str) -> Result<Target, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let authority = uri
        .authority()
        .ok_or_else(|| format!("{url:?} has no host: write https://host/ or http://host/"))?;
    let host = authority.host();
    match uri.scheme_str() {
        Some("https") => {
            let port = authority.port_u16().unwrap_or(443);
            Target::parse_connect(&format!("{host}:{port}")).map_err(|e| e.0)
        }
        Some("http") => Target::from_http_authority(authority.as_str()).map_err(|e| e.0),
        _ => Err(format!(
            "{url:?}: only http:// and https:// URLs are routed"
        )),
    }
}

/// Runs the proxy until Ctrl-C or SIGTERM.
pub async fn run(config: Config) -> ExitCode {
    match serve(config, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(StartError::Config(errors)) => {
            for e in errors {
                eprintln!("config error: {e}");
            }
            ExitCode::from(2)
        }
        Err(StartError::Runtime(e)) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Why the proxy could not start.
#[derive(Debug)]
pub enum StartError {
    /// The configuration is unusable (exit code 2).
    Config(Vec<String>),
    /// The OS refused something (a port in use, a folder we cannot create).
    Runtime(String),
}

/// Binds, builds the shared state and serves until `shutdown` completes.
pub async fn serve(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    let (proxy, listeners, _services) = start(&config).await?;
    listener::serve(listeners, proxy, shutdown).await;
    tracing::info!("exoproxy stopped");
    Ok(())
}

/// Binds the listeners and wires the proxy without serving yet (`serve`, `demo` and tests).
pub async fn start(
    config: &Config,
) -> Result<(Arc<Proxy>, Vec<TcpListener>, Services), StartError> {
    ensure_state_dir(&config.state_dir).map_err(StartError::Runtime)?;
    let listeners = bind(config).await?;
    let bound: Vec<SocketAddr> = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect();
    let services = Services::build(config, &bound).await?;
    spawn_sts_refresher(&services.router, &services.client, &config.route.sts);
    let limits = Limits {
        max_connections: config.max_connections,
        ..Limits::default()
    };
    let mut proxy = Proxy::new(services.router.clone(), services.upstream.clone(), limits);
    if let Some(state) = &services.intercept {
        proxy = proxy.with_intercept(state.clone());
    }
    announce(config, &bound, &services);
    Ok((Arc::new(proxy), listeners, services))
}

/// Binds every configured address. With the built-in defaults a missing IPv6 stack is not fatal
/// (SEC-4); an address the user asked for is.
async fn bind(config: &Config) -> Result<Vec<TcpListener>, StartError> {
    let mut listeners = Vec::new();
    for addr in &config.listen {
        match TcpListener::bind(addr).await {
            Ok(l) => listeners.push(l),
            Err(e)
                if addr.is_ipv6()
                    && config.listen.len() > 1
                    && e.kind() != std::io::ErrorKind::AddrInUse =>
            {
                tracing::warn!(%addr, error = %e, "IPv6 loopback unavailable; serving IPv4 only");
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                return Err(StartError::Runtime(format!(
                    "{addr} is already in use: is another exoproxy running? Stop it, or choose \
                     another address with --listen"
                )));
            }
            Err(e) => return Err(StartError::Runtime(format!("cannot listen on {addr}: {e}"))),
        }
    }
    if listeners.is_empty() {
        return Err(StartError::Runtime("no address could be bound".into()));
    }
    Ok(listeners)
}

fn announce(config: &Config, bound: &[SocketAddr], services: &Services) {
    let addrs: Vec<String> = bound.iter().map(SocketAddr::to_string).collect();
    let upstream = match &config.route.source {
        SourceSpec::Ready => config.route.upstream.to_string(),
        SourceSpec::Pac(pac) => format!("PAC {}", pac.source),
        SourceSpec::System { live, .. } => format!("system settings ({:?})", live.source),
    };
    let intercept = match &services.intercept {
        Some(state) => format!(
            "{} (CA {})",
            config.intercept.ca_domains().join(", "),
            state.leaves().ca().files().cert.display()
        ),
        None => "off".into(),
    };
    tracing::info!(
        listen = %addrs.join(", "),
        upstream = %upstream,
        intercept = %intercept,
        state_dir = %config.state_dir.display(),
        "exoproxy {} ready; point clients at http://{}",
        env!("CARGO_PKG_VERSION"),
        addrs.first().map_or("", String::as_str),
    );
}

/// Creates the state folder owner-only: 0700 on Unix, a protected owner-only ACL on Windows (a
/// failure to set the ACL is a warning: the folder keeps its inherited ACL).
fn ensure_state_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create the state dir {}: {e}", dir.display()))?;
    crate::platform::restrict_dir_to_owner(dir);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot restrict {}: {e}", dir.display()))?;
    }
    Ok(())
}

/// Completes on Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C: shutting down"),
        () = term => tracing::info!("SIGTERM: shutting down"),
    }
}

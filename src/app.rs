//! Wiring and shutdown: the only module that knows all others. Builds the shared state from a
//! [`Config`], binds the listeners, runs until a stop signal ([`signals`]), and implements the small
//! CLI commands that need several modules (`route`, `pac eval`, `config check`). `route` and `pac eval`
//! decide exactly as the running proxy would: same target parsing, same PAC reduction
//! ([`crate::route::pac::script_args`]), same result grammar.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::net::SocketAddr;
use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use tokio::net::TcpListener;

use crate::admin::action::{Actions, AdminToken};
use crate::admin::status::ReloadRequests;
use crate::client::OutboundClient;
use crate::config::{self, Config, Overrides};
use crate::handler::Proxy;
use crate::limits::Limits;
use crate::listener;
use crate::platform::InstanceLock;
use crate::route::Router;
use crate::route::pac::directive::parse_directives;
use crate::route::pac::{PacConfig, PacResolver, PacSource, script_args};
use crate::route::source::SourceSpec;
use crate::route::sts::RefreshPolicy;
use crate::route::system::env::process_env;
use crate::route::system::{Selected, read_and_select};
use crate::target::{Action, Decision, Hop, Scheme, Target};
use crate::tls_client;
use crate::upstream::Upstream;

pub mod accounts;
#[cfg(feature = "demo")]
pub mod demo;
pub mod desktop;
pub mod doctor;
pub mod log;
pub mod panic;
pub mod reload;
pub mod running;
mod services;
pub mod signals;
pub mod status;

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

/// `exoproxy config check [FILE]`: every error with its key path and line, then the warnings
/// (environment variables not set); exit 2 on errors.
pub fn config_check(file: Option<&Path>, overrides: &Overrides) -> ExitCode {
    let mut checked = config::check(file, overrides);
    if let Some(config) = &checked.config
        && let Err(e) = crate::platform::check_not_writable_by_others(&config.state_dir)
    {
        checked.errors.push(e);
    }
    for w in &checked.warnings {
        eprintln!("config warning: {w}");
    }
    if checked.errors.is_empty() {
        let name = file.map_or("built-in defaults".into(), |p| p.display().to_string());
        println!("{name}: ok");
        return ExitCode::SUCCESS;
    }
    for e in &checked.errors {
        eprintln!("config error: {e}");
    }
    eprintln!("{} error(s)", checked.errors.len());
    ExitCode::from(2)
}

/// `exoproxy route URL|HOST`: prints the decision for a URL or host and the rule that made it (after
/// STS discovery for the configured domains, so discovered STS hosts are explained).
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
    let mut out = format!("{url}\n  request:  {}\n", request_words(&target));
    for line in discovered {
        out.push_str(&format!("  sts:      {line}\n"));
    }
    match router.decide(&target).await {
        Ok(decision) => {
            out.push_str(&format!("  decision: {decision}\n"));
            out.push_str(&format!("  meaning:  {}\n", decision_words(&decision)));
        }
        Err(e) => out.push_str(&format!("  decision: error: {e}\n")),
    }
    Ok(out)
}

/// What a client sends the proxy for the target, in words.
fn request_words(target: &Target) -> String {
    match target.scheme {
        Scheme::Connect => format!("CONNECT {target} (an https:// client sends no path)"),
        Scheme::Http => format!(
            "GET {} (plain http, forwarded by exoproxy)",
            target.pac_url()
        ),
    }
}

/// What the proxy does with a decision, in words.
fn decision_words(decision: &Decision) -> String {
    let hops = match decision.hops.as_slice() {
        [Hop::Direct] => "straight to the server".to_string(),
        hops => {
            let names: Vec<String> = hops
                .iter()
                .map(|hop| match hop {
                    Hop::Direct => "directly".to_string(),
                    Hop::Proxy(p) => format!("through the proxy {p}"),
                })
                .collect();
            names.join(", else ")
        }
    };
    match &decision.action {
        Action::Block { .. } => "refused with 403 connect_denied".into(),
        Action::Tunnel => format!("relayed unchanged, {hops}"),
        Action::Intercept { profile } => format!(
            "TLS ends here (local CA), each request gets a token of the {profile} profile, sent on {hops}"
        ),
    }
}

/// STS discovery for `exoproxy route`: synchronous, each domain within 10 s. Once the IdP could not
/// be reached, the remaining fetches fail at once with the same short reason, so an unreachable IdP is
/// one short line per domain rather than a timeout and a transport error per endpoint.
async fn discover_sts_now(
    router: &Router,
    client: &OutboundClient,
    sts: &crate::route::StsConfig,
) -> Vec<String> {
    let timeout = std::time::Duration::from_secs(10);
    let unreachable: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
    let fetch = |url: String| {
        let unreachable = &unreachable;
        async move {
            if let Some(reason) = unreachable.lock().ok().and_then(|r| r.clone()) {
                return Err(reason);
            }
            let outcome = client.get_realm(&url, timeout).await;
            if let Err(e) = &outcome {
                let reason = format!("the IdP is unreachable ({})", shorten(e));
                if let Ok(mut slot) = unreachable.lock() {
                    *slot = Some(reason.clone());
                }
                return Err(reason);
            }
            outcome
        }
    };
    let lines = crate::route::discover_sts(router, sts, fetch, timeout).await;
    let Some(reason) = unreachable.lock().ok().and_then(|r| r.clone()) else {
        return lines;
    };
    // A failed domain's line names each endpoint tried; with the IdP unreachable they all say the same.
    lines
        .into_iter()
        .map(|line| match line.split_once(": ") {
            Some((domain, rest)) if rest.contains(&reason) => {
                format!("{domain}: not discovered: {reason}")
            }
            _ => line,
        })
        .collect()
}

/// The start of an error message, up to 120 characters.
fn shorten(error: &str) -> String {
    let clipped: String = error.chars().take(120).collect();
    match clipped.len() < error.len() {
        true => format!("{clipped}…"),
        false => clipped,
    }
}

/// Keeps the STS directory fresh in the background (discovery through the normal route); the
/// handle stops it when a reload replaces the router.
fn spawn_sts_refresher(
    router: &Arc<Router>,
    client: &OutboundClient,
    sts: &crate::route::StsConfig,
) -> Option<tokio::task::AbortHandle> {
    let directory = router.sts().cloned().filter(|_| sts.discover)?;
    if sts.domains.is_empty() {
        return None;
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
    let task =
        tokio::spawn(directory.run_refresher(sts.domains.clone(), fetch, RefreshPolicy::default()));
    Some(task.abort_handle())
}

/// `exoproxy pac eval URL|HOST [--pac FILE|URL]`: prints what the PAC script returns for what the
/// running proxy would pass it (the URL reduced by [`script_args`]), like pactester. Exit 0 with a
/// valid directive, 1 when evaluation failed or the result is not one the proxy accepts, 2 for bad
/// input.
pub async fn pac_eval(config: &Config, url: &str, pac_location: Option<&str>) -> ExitCode {
    let target = match target_of_url(url) {
        Ok(target) => target,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut pac = match pac_config(config, pac_location) {
        Ok(pac) => pac,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    pac.retry_backoff = vec![std::time::Duration::from_secs(3600)];
    pac.loading_wait = std::time::Duration::from_secs(15);
    let resolver = PacResolver::start(pac).await;
    let (script_url, host) = script_args(&target);
    if script_url != url {
        eprintln!("FindProxyForURL({script_url:?}, {host:?}): what the proxy passes for {url}");
    }
    let result = match resolver.eval(&script_url, &host).await {
        Ok(result) => result,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match parse_directives(&result) {
        Ok(_) => {
            println!("{result}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: the script returned {result:?}, which the proxy refuses: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The PAC `pac eval` runs: `--pac` (a file or URL, read as `upstream.pac` is) with the configured PAC
/// settings, else the configured PAC, else the one the system settings name.
fn pac_config(config: &Config, location: Option<&str>) -> Result<PacConfig, String> {
    let configured = match &config.route.source {
        SourceSpec::Pac(pac) | SourceSpec::System { pac, .. } => Some((**pac).clone()),
        SourceSpec::Ready => None,
    };
    if let Some(location) = location {
        return Ok(PacConfig {
            source: PacSource::parse(location),
            ..configured.unwrap_or_default()
        });
    }
    match (&config.route.source, configured) {
        (SourceSpec::System { live, .. }, Some(pac)) => {
            match read_and_select(live, &process_env).map_err(|e| e.to_string())? {
                Selected::Pac { url, .. } => Ok(PacConfig {
                    source: PacSource::parse(&url),
                    ..pac
                }),
                Selected::Wpad { source } => Err(format!(
                    "the {source} settings ask for WPAD auto-detection, not a PAC address; use --pac FILE|URL"
                )),
                Selected::Proxies(_) | Selected::Direct { .. } => Err(format!(
                    "the system settings ({}) name no PAC script; use --pac FILE|URL",
                    live.source
                )),
            }
        }
        (_, Some(pac)) => Ok(pac),
        (_, None) => Err("no PAC configured (upstream.pac); use --pac FILE|URL".into()),
    }
}

/// The target a client would ask the proxy for: CONNECT host:port for `https://` URLs and bare
/// `host[:port]` (port 443 by default), absolute-form for `http://` URLs. Path and query are not
/// part of a target.
pub fn target_of_url(url: &str) -> Result<Target, String> {
    if !url.contains("://") {
        return bare_host_target(url);
    }
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let authority = uri
        .authority()
        .ok_or_else(|| format!("{url:?} has no host: write https://host/ or http://host/"))?;
    let host = authority.host();
    match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
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

/// `outlook.office365.com` or `host:8443`, as a client CONNECTs to it.
fn bare_host_target(arg: &str) -> Result<Target, String> {
    if arg.contains(['/', '?', '#']) {
        return Err(format!(
            "{arg:?} is neither a host nor a URL: write host, host:port or https://host/path"
        ));
    }
    let after_brackets = arg.rsplit_once(']').map_or(arg, |(_, rest)| rest);
    let authority = match after_brackets.contains(':') {
        true => arg.to_string(),
        false => format!("{arg}:443"),
    };
    Target::parse_connect(&authority).map_err(|e| e.0)
}

/// Where the running configuration was read from, to read it again ([`reload`]).
#[derive(Debug, Clone)]
pub struct ConfigSource {
    /// The file; `None`: built-in defaults only.
    pub file: Option<PathBuf>,
    /// The command line and environment, which keep beating the file on every reload.
    pub overrides: Overrides,
}

/// Runs the proxy until a stop signal ([`signals`]: Ctrl-C, SIGTERM, Windows console events), holding the state dir's instance lock (one proxy per
/// state dir) until it returns. `config` was read from `source`; a change of that file, or SIGHUP,
/// reloads it ([`reload`]).
pub async fn run(config: Config, source: ConfigSource) -> ExitCode {
    let lock = ensure_state_dir(&config.state_dir)
        .and_then(|()| InstanceLock::acquire(&config.state_dir, &config.listen));
    let _instance = match lock {
        Ok(lock) => lock,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (stop, hangups) = signals::install();
    match serve_live(config, Some((source, hangups)), stop).await {
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
    serve_live(config, None, shutdown).await
}

/// [`serve`]; with a source, the configuration is reloaded on SIGHUP and when its file changes.
async fn serve_live(
    config: Config,
    live: Option<(ConfigSource, signals::Hangups)>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let (source, hangups) = live.unzip();
    let (reload_requests, admin_reloads) = tokio::sync::mpsc::unbounded_channel();
    let reloadable = source.clone().map(|source| (source, reload_requests));
    let (proxy, listeners, _services) = start_with(&config, reloadable).await?;
    let watcher = hangups.map(|hangups| {
        let file = source.and_then(|s| s.file);
        tokio::spawn(reload::watch(proxy.clone(), file, hangups, admin_reloads))
    });
    let (stop_summary, stopped) = tokio::sync::oneshot::channel::<()>();
    let summary = tokio::spawn(crate::summary::run(crate::summary::interval(), async {
        let _ = stopped.await;
    }));
    listener::serve(listeners, proxy, shutdown).await;
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    let _ = stop_summary.send(());
    let _ = summary.await;
    tracing::info!("exoproxy stopped");
    Ok(())
}

/// Binds the listeners and wires the proxy without serving yet (`serve`, `demo` and tests).
pub async fn start(
    config: &Config,
) -> Result<(Arc<Proxy>, Vec<TcpListener>, Services), StartError> {
    start_with(config, None).await
}

/// [`start`]; with the `source` of `config`, the proxy can reload it ([`Proxy::reload_config`]),
/// and the `reload` action asks for one on the given sender ([`reload::watch`] serves it).
async fn start_with(
    config: &Config,
    reloadable: Option<(ConfigSource, ReloadRequests)>,
) -> Result<(Arc<Proxy>, Vec<TcpListener>, Services), StartError> {
    ensure_state_dir(&config.state_dir).map_err(StartError::Runtime)?;
    // A new admin token at every start, written before the port is bound: a CLI that finds the
    // proxy listening always finds the token it needs (the page's forms embed the same one).
    let admin_token = AdminToken::create(&config.state_dir).map_err(|e| {
        StartError::Runtime(format!(
            "cannot write the admin token in {}: {e}",
            config.state_dir.display()
        ))
    })?;
    let actions = Arc::new(Actions::new(admin_token));
    let listeners = bind(config).await?;
    let bound: Vec<SocketAddr> = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect();
    crate::platform::record_bound(&config.state_dir, &bound);
    let services = Services::build(config, &bound).await?;
    let refresher = spawn_sts_refresher(&services.router, &services.client, &config.route.sts);
    let reload_requests = reloadable.as_ref().map(|(_, requests)| requests.clone());
    let reloader = reloadable.map(|(source, reload)| {
        let admin = reload::AdminHandles {
            actions: actions.clone(),
            reload,
        };
        Arc::new(reload::Reloader::new(
            source, config, &bound, &services, refresher, admin,
        ))
    });
    let limits = Limits {
        max_connections: config.max_connections,
        streaming_idle: config.streaming_idle,
        ..Limits::default()
    };
    let mut proxy = Proxy::new(services.router.clone(), services.upstream.clone(), limits);
    if let Some(state) = &services.intercept {
        proxy = proxy.with_intercept(state.clone());
    }
    proxy = proxy.with_admin(Arc::new(crate::admin::status::Sources {
        router: services.router.clone(),
        upstream: services.upstream.clone(),
        intercept: services.intercept.clone(),
        started: tokio::time::Instant::now(),
        config: reloader.as_ref().map(|r| r.view()),
        actions,
        reload: reload_requests,
    }));
    if let Some(reloader) = reloader {
        proxy = proxy.with_reloader(reloader);
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
        log = %log::current_file().map_or("stderr".into(), |f| f.display().to_string()),
        "exoproxy {} ready; point clients at http://{}",
        env!("CARGO_PKG_VERSION"),
        addrs.first().map_or("", String::as_str),
    );
}

/// Refuses a state dir that other users can write (CFG-3: it holds the CA key and the tokens), then
/// creates it owner-only through the secret-file layer (`platform::private_dir`: 0700 on Unix, an
/// owner-only ACL on Windows, a symlink refused). A folder that others could only read is tightened.
pub(crate) fn ensure_state_dir(dir: &Path) -> Result<(), String> {
    crate::platform::check_not_writable_by_others(dir)?;
    crate::platform::private_dir(dir)
        .map_err(|e| format!("cannot create the state dir {}: {e}", dir.display()))
}

//! Stage two: the serde mirror plus command-line/environment overrides become typed, per-module
//! configs. Every problem is collected (key path, line where the file has one, reason) so a user fixes
//! them all in one go; nothing is half-applied. Values are checked, not only parsed: URLs with a URL
//! parser, files that must exist, log filters. An environment variable that holds a secret and is
//! not set is a [`MissingSecret`] warning, not an error: only the commands that use the secret refuse
//! to run without it (`Config::require_secrets`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use zeroize::Zeroizing;

use super::file::{CredentialEntry, FileConfig, LogFileEntry, LogSection};
use super::keys::KeyLines;
use super::{Config, ConfigError, LogFile, MissingSecret, Overrides, default_log_file};
use crate::route::pac::{OnFailure, PacConfig, PacSource};
use crate::route::source::SourceSpec;
use crate::route::system::env::from_env;
use crate::route::system::{LiveConfig, SettingsInputs, Source};
use crate::route::{RouteConfig, StaticOrigin, UpstreamSource};
use crate::target::{Host, ProxyEndpoint, ProxyUrl, UserInfo};
use crate::upstream::{ConnectTo, ProxyCredentials, UpstreamConfig};

/// Default listen port (documented in the README).
pub const DEFAULT_PORT: u16 = 8765;

/// Collects errors and warnings while building the typed config.
pub(super) struct Errors {
    lines: KeyLines,
    list: Vec<ConfigError>,
    missing: Vec<MissingSecret>,
}

impl Errors {
    fn error_at(&self, path: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            path: path.to_string(),
            line: self.lines.line(path),
            message: message.into(),
        }
    }

    pub(super) fn push(&mut self, path: &str, message: impl Into<String>) {
        let error = self.error_at(path, message);
        self.list.push(error);
    }

    /// The value of the environment variable `var` named at `path`; a warning when it is not set.
    /// `account` is the UPN whose flow needs it (`None`: upstream proxy credentials).
    pub(super) fn secret_env(
        &mut self,
        env: &dyn Fn(&str) -> Option<String>,
        path: &str,
        var: &str,
        account: Option<&str>,
    ) -> Option<String> {
        crate::platform::secret_env::remember(var);
        let value = env(var).filter(|v| !v.is_empty());
        if value.is_none() {
            let error = self.error_at(path, format!("environment variable {var} is not set"));
            self.missing.push(MissingSecret {
                error,
                account: account.map(str::to_string),
            });
        }
        value
    }

    /// True when `file` is an existing file; an error at `path` otherwise.
    pub(super) fn file_exists(&mut self, path: &str, file: &Path) -> bool {
        match std::fs::metadata(file) {
            Ok(m) if m.is_file() => true,
            Ok(_) => {
                self.push(path, format!("{} is not a file", file.display()));
                false
            }
            Err(e) => {
                self.push(path, format!("{}: {e}", file.display()));
                false
            }
        }
    }
}

/// Builds the typed configuration. `source` is the file text (for line numbers), when there is one.
pub fn validate(
    mut file: FileConfig,
    overrides: &Overrides,
    source: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Vec<ConfigError>> {
    let mut errors = Errors {
        lines: source.map(KeyLines::of).unwrap_or_default(),
        list: std::mem::take(&mut file.problems),
        missing: Vec::new(),
    };
    let listen = listen_addrs(&file, overrides, &mut errors);
    let proxies = proxy_urls(&file, overrides, &mut errors);
    let chosen = upstream_source(&file, overrides, &proxies, env, &mut errors);
    let upstream = upstream_config(&file, overrides, &proxies, &chosen, env, &mut errors);
    let mut route = route_config(&file, overrides, chosen, &mut errors);
    let intercept =
        super::intercept::intercept_config(&file, overrides.upstream_ca.as_ref(), env, &mut errors);
    route.intercept = intercept.rules();
    if file.routing.sts_domains.is_none() {
        // Discover the federation STS of every configured account's domain (docs/PROTOCOL.md#home-realm).
        route.sts.domains = intercept.accounts.iter().map(|a| a.upn.clone()).collect();
    }
    let state_dir = overrides
        .state_dir
        .clone()
        .or_else(|| file.state_dir.as_ref().map(PathBuf::from))
        .or_else(default_state_dir);
    let max_connections = match file.listen.max_connections {
        None => 1024,
        Some(n @ 1..=65536) => n as usize,
        Some(n) => {
            errors.push("listen.max_connections", format!("{n} is not in 1..=65536"));
            1024
        }
    };
    let streaming_idle = timeout_secs(
        file.timeouts.streaming_idle_secs,
        "timeouts.streaming_idle_secs",
        crate::limits::DEFAULT_STREAMING_IDLE,
        &mut errors,
    );
    if let Some(level) = &file.log.level
        && let Err(e) = check_log_filter(level)
    {
        errors.push("log.level", e);
    }
    let log_level = overrides
        .log_level
        .clone()
        .or(file.log.level.clone())
        .unwrap_or_else(|| "info".into());
    let state_dir = state_dir.unwrap_or_else(|| PathBuf::from(".exoproxy"));
    let log_file = log_file(&file.log, &state_dir, &mut errors);
    if !errors.list.is_empty() {
        // File order; flags (no line) first.
        errors.list.sort_by_key(|e| e.line.unwrap_or(0));
        return Err(errors.list);
    }
    Ok(Config {
        listen,
        max_connections,
        streaming_idle,
        state_dir,
        route,
        upstream,
        intercept,
        log_level,
        missing_secrets: errors.missing,
        log_file,
    })
}

/// A `[timeouts]` value: seconds in (0, 86400], else an error at `path` and the default.
fn timeout_secs(
    value: Option<f64>,
    path: &str,
    default: Duration,
    errors: &mut Errors,
) -> Duration {
    match value {
        None => default,
        Some(s) if s > 0.0 && s <= 86_400.0 => Duration::from_secs_f64(s),
        Some(s) => {
            errors.push(
                path,
                format!("{s} is not a number of seconds in (0, 86400]"),
            );
            default
        }
    }
}

/// The log levels a filter directive may name (`tracing` levels plus `off`).
const LOG_LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// A tracing filter whose every directive is `LEVEL` or `TARGET=LEVEL`. A bare word that is not a
/// level (`verbose`) would parse as a target name and silence every other log line.
pub fn check_log_filter(filter: &str) -> Result<(), String> {
    let directives: Vec<&str> = filter
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    if directives.is_empty() {
        return Err("empty log filter: use a level such as \"info\"".into());
    }
    for directive in directives {
        let level = directive.rsplit_once('=').map_or(directive, |(_, l)| l);
        if !LOG_LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "{directive:?} names no log level: use one of {} (e.g. \"info\" or \"exoproxy=debug\")",
                LOG_LEVELS.join(", ")
            ));
        }
    }
    tracing_subscriber::EnvFilter::try_new(filter)
        .map(|_| ())
        .map_err(|e| format!("{filter:?}: {e}"))
}

/// `[log] file`: a relative path is taken from the state dir; a path must name a file.
fn log_file(log: &LogSection, state_dir: &Path, errors: &mut Errors) -> LogFile {
    let path = match &log.file {
        None => return LogFile::Auto(default_log_file(state_dir)),
        Some(LogFileEntry::Switch(false)) => return LogFile::Off,
        Some(LogFileEntry::Switch(true)) => return LogFile::At(default_log_file(state_dir)),
        Some(LogFileEntry::Path(path)) => Path::new(path),
    };
    if path.file_stem().is_none() || path.as_os_str().to_string_lossy().ends_with(['/', '\\']) {
        errors.push(
            "log.file",
            format!("{path:?} names no file: write true or a path such as \"logs/exoproxy.log\""),
        );
        return LogFile::Off;
    }
    LogFile::At(state_dir.join(path))
}

fn listen_addrs(file: &FileConfig, o: &Overrides, errors: &mut Errors) -> Vec<SocketAddr> {
    let (raw, path) = match (&o.listen, &file.listen.addresses) {
        (list, _) if !list.is_empty() => (list.clone(), "--listen"),
        (_, Some(list)) => (list.clone(), "listen.addresses"),
        _ => {
            return vec![
                SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)),
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, DEFAULT_PORT)),
            ];
        }
    };
    if raw.is_empty() {
        errors.push(path, "at least one listen address is needed");
    }
    let allow_remote = file.listen.allow_remote.unwrap_or(false);
    let mut addrs = Vec::new();
    for s in raw {
        match s.parse::<SocketAddr>() {
            Ok(a) if !a.ip().is_loopback() && !allow_remote => errors.push(
                path,
                format!(
                    "{a} is not a loopback address: exoproxy holds admin tokens, so it listens on \
                     loopback only unless listen.allow_remote = true"
                ),
            ),
            Ok(a) => addrs.push(a),
            Err(_) => errors.push(
                path,
                format!("{s:?} is not a socket address (e.g. 127.0.0.1:8765 or [::1]:8765)"),
            ),
        }
    }
    addrs
}

fn upstream_config(
    file: &FileConfig,
    o: &Overrides,
    proxies: &[ProxyUrl],
    chosen: &Chosen,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Errors,
) -> UpstreamConfig {
    let mut cfg = UpstreamConfig::default();
    let t = &file.timeouts;
    let secs = timeout_secs;
    cfg.connect_timeout = secs(
        t.connect_secs,
        "timeouts.connect_secs",
        cfg.connect_timeout,
        errors,
    );
    cfg.connect_reply_timeout = secs(
        t.connect_reply_secs,
        "timeouts.connect_reply_secs",
        cfg.connect_reply_timeout,
        errors,
    );
    cfg.total_timeout = secs(
        t.failover_total_secs,
        "timeouts.failover_total_secs",
        cfg.total_timeout,
        errors,
    );
    cfg.bad_proxy_ttl = secs(
        t.bad_proxy_secs,
        "timeouts.bad_proxy_secs",
        cfg.bad_proxy_ttl,
        errors,
    );
    let (raw_connect_to, path) = if o.connect_to.is_empty() {
        (&file.connect_to, "connect_to")
    } else {
        (&o.connect_to, "--connect-to")
    };
    for s in raw_connect_to {
        match parse_connect_to(s) {
            Ok(c) => cfg.connect_to.push(c),
            Err(e) => errors.push(path, e),
        }
    }
    for (i, entry) in file.upstream.credentials.iter().enumerate() {
        let path = format!("upstream.credentials[{i}]");
        if let Some(c) = credential(entry, &path, env, errors) {
            cfg.credentials.push(c);
        }
    }
    // Credentials written in a proxy URL (`--upstream http://user:pass@proxy:3128`, `HTTPS_PROXY`)
    // beat an `[[upstream.credentials]]` entry for the same proxy.
    let in_urls = proxies
        .iter()
        .filter_map(|u| Some((&u.endpoint, u.userinfo.as_ref()?)))
        .chain(chosen.env_credentials.iter().map(|(e, u)| (e, u)));
    for (endpoint, userinfo) in in_urls {
        cfg.credentials.retain(|(e, _)| e != endpoint);
        cfg.credentials
            .push((endpoint.clone(), url_credentials(userinfo)));
    }
    cfg
}

/// Credentials written in a proxy URL: user and password, any scheme the proxy offers.
fn url_credentials(userinfo: &UserInfo) -> ProxyCredentials {
    ProxyCredentials {
        username: userinfo.username.clone(),
        password: userinfo.password.clone(),
        ..ProxyCredentials::default()
    }
}

fn credential(
    entry: &CredentialEntry,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Errors,
) -> Option<(ProxyEndpoint, ProxyCredentials)> {
    let proxy = match entry.proxy.as_deref().map(ProxyEndpoint::parse) {
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => {
            errors.push(&format!("{path}.proxy"), e.0);
            None
        }
        None => {
            errors.push(&format!("{path}.proxy"), "missing: the proxy's host:port");
            None
        }
    };
    let schemes = credential_schemes(entry, path, errors);
    let sso = schemes.as_deref() == Some(&[crate::upstream::auth::Scheme::Negotiate][..]);
    let username = entry.username.clone().unwrap_or_default();
    if username.is_empty() && !sso {
        errors.push(&format!("{path}.username"), "missing");
    }
    let secrets = [
        entry.password_env.is_some(),
        entry.password_file.is_some(),
        entry.password.is_some(),
        entry.nt_hash_env.is_some(),
    ];
    let (password, nt_hash) = match (secrets.iter().filter(|s| **s).count(), &entry.nt_hash_env) {
        (0, _) if sso && username.is_empty() => (Some(String::new()), None),
        (1, Some(var)) => (
            Some(String::new()),
            Some(credential_nt_hash(var, path, env, errors)?),
        ),
        (1, None) => (credential_password(entry, path, env, errors), None),
        _ => {
            errors.push(
                path,
                "set exactly one of password_env, password_file, password, nt_hash_env",
            );
            (None, None)
        }
    };
    Some((
        proxy?,
        ProxyCredentials {
            username,
            password: Zeroizing::new(password?),
            domain: entry.domain.clone(),
            nt_hash,
            schemes: schemes.unwrap_or_default(),
        },
    ))
}

/// The one password source of an entry (`credential` checked there is exactly one).
fn credential_password(
    entry: &CredentialEntry,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Errors,
) -> Option<String> {
    if let Some(var) = &entry.password_env {
        return errors.secret_env(env, &format!("{path}.password_env"), var, None);
    }
    if let Some(file) = &entry.password_file {
        return match std::fs::read_to_string(file) {
            Ok(text) => Some(text.lines().next().unwrap_or("").to_string()),
            Err(e) => {
                errors.push(
                    &format!("{path}.password_file"),
                    format!("cannot read {file}: {e}"),
                );
                None
            }
        };
    }
    entry.password.clone()
}

/// The NT hash from an environment variable: 32 hex digits (the value is never echoed).
fn credential_nt_hash(
    var: &str,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Errors,
) -> Option<Zeroizing<[u8; 16]>> {
    let field = format!("{path}.nt_hash_env");
    let text = Zeroizing::new(errors.secret_env(env, &field, var, None)?);
    let mut hash = Zeroizing::new([0u8; 16]);
    match hex::decode_to_slice(text.trim(), hash.as_mut_slice()) {
        Ok(()) => Some(hash),
        Err(_) => {
            errors.push(
                &field,
                format!("{var} must hold 32 hex digits (an NT hash)"),
            );
            None
        }
    }
}

fn credential_schemes(
    entry: &CredentialEntry,
    path: &str,
    errors: &mut Errors,
) -> Option<Vec<crate::upstream::auth::Scheme>> {
    let names = entry.schemes.as_ref()?;
    let mut schemes = Vec::new();
    for name in names {
        match crate::upstream::auth::Scheme::parse(name) {
            Some(s) => schemes.push(s),
            None => errors.push(
                &format!("{path}.schemes"),
                format!("unknown scheme {name:?}: use negotiate, ntlm or basic"),
            ),
        }
    }
    Some(schemes)
}

/// `--upstream` (or `EXOPROXY_UPSTREAM`) when given, else `upstream.proxies`, each parsed once.
fn proxy_urls(file: &FileConfig, o: &Overrides, errors: &mut Errors) -> Vec<ProxyUrl> {
    let (raw, path) = match (&o.upstream, &file.upstream.proxies) {
        (list, _) if !list.is_empty() => (list.as_slice(), "--upstream"),
        (_, Some(list)) => (list.as_slice(), "upstream.proxies"),
        _ => return Vec::new(),
    };
    raw.iter()
        .filter_map(|url| match ProxyUrl::parse(url, None) {
            Ok(u) => Some(u),
            Err(e) => {
                errors.push(path, e.0);
                None
            }
        })
        .collect()
}

fn route_config(
    file: &FileConfig,
    o: &Overrides,
    chosen: Chosen,
    errors: &mut Errors,
) -> RouteConfig {
    let r = &file.routing;
    let mut cfg = RouteConfig {
        fallback_direct: file.upstream.fallback_direct.unwrap_or(false),
        bypass: file.upstream.bypass.clone().unwrap_or_default(),
        direct_hosts: r.direct_hosts.clone().unwrap_or_default(),
        block: r.block.clone().unwrap_or_default(),
        connect_ports: vec![443],
        allow_local: r.allow_local.clone().unwrap_or_default(),
        ..RouteConfig::default()
    };
    if let Some(bypass) = &o.bypass {
        cfg.bypass = split_list(bypass);
    }
    if let Some(ports) = &r.connect_ports {
        cfg.connect_ports = port_list(ports, "routing.connect_ports", errors);
    }
    if let Some(ports) = &r.http_ports {
        cfg.http_ports = port_list(ports, "routing.http_ports", errors);
    }
    cfg.bypass.extend(chosen.env_bypass);
    cfg.upstream = chosen.route;
    cfg.static_origin = chosen.static_origin;
    cfg.source = chosen.spec;
    cfg.sts.discover = r.discover_sts.unwrap_or(true);
    cfg.sts.domains = r.sts_domains.clone().unwrap_or_default();
    for d in &cfg.sts.domains {
        if crate::route::sts::domain_of(d).is_empty() {
            errors.push("routing.sts_domains", format!("{d:?} names no domain"));
        }
    }
    cfg
}

/// What `upstream.source` decides: the fixed default route, the runtime source, bypass entries and
/// credentials from the proxy's environment.
struct Chosen {
    route: UpstreamSource,
    spec: SourceSpec,
    static_origin: StaticOrigin,
    env_bypass: Vec<String>,
    env_credentials: Vec<(ProxyEndpoint, UserInfo)>,
}

/// The source named by `upstream.source`, or implied: `pac` when `upstream.pac` is set and no
/// proxies are given on the command line, `static` when proxies are listed, else `direct`.
fn source_of(file: &FileConfig, o: &Overrides, errors: &mut Errors) -> Source {
    let u = &file.upstream;
    match u.source.as_deref() {
        Some(name) => name.parse().unwrap_or_else(|e: String| {
            errors.push("upstream.source", e);
            Source::Direct
        }),
        None if u.pac.is_some() && o.upstream.is_empty() => Source::Pac,
        None if o.upstream.is_empty() && u.proxies.as_ref().is_none_or(Vec::is_empty) => {
            Source::Direct
        }
        None => Source::Static,
    }
}

/// Builds the default route from the source. `env` reads `HTTPS_PROXY`/`NO_PROXY` once, and only
/// because the user asked (TLS-8); the sources that need a runtime (`pac`, `winhttp`, `ie`, `auto`)
/// are started from the `SourceSpec`, and DIRECT is never used in their place.
fn upstream_source(
    file: &FileConfig,
    o: &Overrides,
    proxies: &[ProxyUrl],
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Errors,
) -> Chosen {
    let u = &file.upstream;
    let pac = pac_config(file, errors);
    let mut chosen = Chosen {
        route: UpstreamSource::Direct,
        spec: SourceSpec::Ready,
        static_origin: StaticOrigin::Config,
        env_bypass: Vec::new(),
        env_credentials: Vec::new(),
    };
    let live = match source_of(file, o, errors) {
        Source::Direct => return chosen,
        Source::Static => {
            let listed =
                !o.upstream.is_empty() || u.proxies.as_ref().is_some_and(|p| !p.is_empty());
            if !listed {
                errors.push(
                    "upstream.proxies",
                    "source is \"static\" but no proxies are listed",
                );
            }
            chosen.route = UpstreamSource::Static(endpoints(proxies));
            return chosen;
        }
        Source::Env => {
            match from_env(env) {
                Ok(settings) => {
                    // One list serves CONNECT and plain http: the https proxies, else the http ones.
                    let list = [settings.https, settings.http]
                        .into_iter()
                        .find(|l| !l.is_empty())
                        .unwrap_or_default();
                    if !list.is_empty() {
                        chosen.route = UpstreamSource::Static(list);
                        chosen.static_origin = StaticOrigin::Environment;
                    }
                    chosen.env_bypass = settings.bypass;
                    chosen.env_credentials = settings.credentials;
                }
                Err(e) => errors.push("upstream.source", e.to_string()),
            }
            return chosen;
        }
        Source::Pac => {
            if u.pac.is_none() {
                errors.push(
                    "upstream.pac",
                    "source is \"pac\" but no PAC file or URL is set",
                );
            } else {
                chosen.spec = SourceSpec::Pac(Box::new(pac));
            }
            return chosen;
        }
        live @ (Source::WinHttp | Source::Ie | Source::Auto) => live,
    };
    chosen.spec = SourceSpec::System {
        live: LiveConfig {
            source: live,
            config: SettingsInputs {
                static_proxies: endpoints(proxies),
                static_bypass: u.bypass.clone().unwrap_or_default(),
                pac_url: u.pac.clone(),
                allow_wpad: u.wpad.unwrap_or(false),
                ..SettingsInputs::default()
            },
            env_in_auto: false,
        },
        pac: Box::new(pac),
    };
    chosen
}

fn endpoints(proxies: &[ProxyUrl]) -> Vec<ProxyEndpoint> {
    proxies.iter().map(|u| u.endpoint.clone()).collect()
}

/// `upstream.pac` and `upstream.pac_failure`: a URL must parse, a local file must exist.
fn pac_config(file: &FileConfig, errors: &mut Errors) -> PacConfig {
    let u = &file.upstream;
    let mut pac = PacConfig::default();
    match u.pac_failure.as_deref() {
        None | Some("fail") => {}
        Some("direct") => pac.on_failure = OnFailure::Direct,
        Some(other) => errors.push(
            "upstream.pac_failure",
            format!("{other:?}: use \"fail\" (default) or \"direct\""),
        ),
    }
    let Some(script) = &u.pac else {
        return pac;
    };
    pac.source = PacSource::parse(script);
    match &pac.source {
        PacSource::Url(url) => match url::Url::parse(url) {
            Ok(parsed) if parsed.host_str().is_some_and(|h| !h.is_empty()) => {}
            Ok(_) => errors.push("upstream.pac", format!("{url:?} names no host")),
            Err(e) => errors.push("upstream.pac", format!("{url:?} is not a URL: {e}")),
        },
        PacSource::File(path) => {
            errors.file_exists("upstream.pac", path);
        }
        PacSource::Inline(_) => {}
    }
    pac
}

/// The valid ports of a configured port list; each entry that is no port is an error at `key`.
fn port_list(ports: &[i64], key: &str, errors: &mut Errors) -> Vec<u16> {
    let mut valid = Vec::with_capacity(ports.len());
    for p in ports {
        match u16::try_from(*p) {
            Ok(port) if port > 0 => valid.push(port),
            _ => errors.push(key, format!("{p} is not a port")),
        }
    }
    valid
}

/// Splits a bypass list written with `,`, `;` or whitespace.
fn split_list(s: &str) -> Vec<String> {
    s.split([',', ';', ' ', '\t', '\n'])
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

/// An `authority` URL: `https://host[/path]`; `http://` only with `tls.allow_http_authority` (tests
/// against a local emulator), since tokens and client secrets are sent to it.
pub(super) fn check_authority(url: &str, path: &str, allow_http: bool, errors: &mut Errors) {
    let parsed = match url::Url::parse(url) {
        Ok(u) => u,
        Err(e) => return errors.push(path, format!("{url:?} is not a URL: {e}")),
    };
    if parsed.host_str().is_none_or(str::is_empty) {
        return errors.push(path, format!("{url:?} names no host"));
    }
    match parsed.scheme() {
        "https" => {}
        "http" if allow_http => {}
        "http" => errors.push(
            path,
            format!(
                "{url:?}: an authority must be https:// (tokens and secrets are sent to it); \
                 tls.allow_http_authority = true allows http:// for tests against a local emulator"
            ),
        ),
        other => errors.push(path, format!("{url:?}: scheme {other}:// is not https://")),
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        errors.push(
            path,
            format!("{url:?}: an authority has no query or fragment"),
        );
    }
}

/// Parses curl's `HOST:PORT:CONNECT-TO-HOST:CONNECT-TO-PORT` (empty HOST or PORT = any; IPv6 in
/// brackets).
pub fn parse_connect_to(s: &str) -> Result<ConnectTo, String> {
    let bad = || {
        format!("{s:?} is not HOST:PORT:ADDR:PORT (e.g. outlook.office365.com:443:127.0.0.1:8443)")
    };
    let (host, rest) = take_host(s).ok_or_else(bad)?;
    let (port, rest) = rest.split_once(':').ok_or_else(bad)?;
    let (to_host, to_port) = take_host(rest).ok_or_else(bad)?;
    let port = match port {
        "" => None,
        p => Some(p.parse::<u16>().map_err(|_| bad())?),
    };
    let to_port = to_port.parse::<u16>().map_err(|_| bad())?;
    let norm = |h: &str| -> Result<String, String> {
        match h {
            "" => Ok(String::new()),
            h => Host::parse(h)
                .map(|h| h.as_str_for_lookup())
                .map_err(|e| e.0),
        }
    };
    let to_host = norm(to_host)?;
    if to_host.is_empty() || to_port == 0 {
        return Err(bad());
    }
    Ok(ConnectTo {
        host: norm(host)?,
        port,
        to_host,
        to_port,
    })
}

/// Splits off a host (bracketed IPv6 or up to the next ':') and the text after its ':'.
fn take_host(s: &str) -> Option<(&str, &str)> {
    if s.starts_with('[') {
        let end = s.find(']')?;
        let rest = s[end + 1..].strip_prefix(':').unwrap_or(&s[end + 1..]);
        Some((&s[..=end], rest))
    } else {
        s.split_once(':')
    }
}

/// The OS's per-user data folder for exoproxy.
pub fn default_state_dir() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(home) = var("EXOPROXY_HOME") {
        return Some(home);
    }
    if cfg!(windows) {
        return var("LOCALAPPDATA").map(|d| d.join("exoproxy"));
    }
    if cfg!(target_os = "macos") {
        return var("HOME").map(|h| h.join("Library/Application Support/exoproxy"));
    }
    var("XDG_DATA_HOME")
        .or_else(|| var("HOME").map(|h| h.join(".local/share")))
        .map(|d| d.join("exoproxy"))
}

#[cfg(test)]
#[path = "source_tests.rs"]
mod source_tests;

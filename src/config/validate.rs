//! Stage two: the serde mirror plus command-line/environment overrides become typed, per-module
//! configs. Every problem is collected (key path, line where the file has one, reason) so a user fixes
//! them all in one go; nothing is half-applied.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use zeroize::Zeroizing;

use super::file::{CredentialEntry, FileConfig, LogFileEntry, LogSection};
use super::{Config, ConfigError, LogFile, Overrides, default_log_file};
use crate::route::pac::{OnFailure, PacConfig, PacSource};
use crate::route::source::SourceSpec;
use crate::route::system::{LiveConfig, SettingsInputs, Source};
use crate::route::{RouteConfig, UpstreamSource};
use crate::target::{Host, ProxyEndpoint};
use crate::upstream::{ConnectTo, ProxyCredentials, UpstreamConfig};

/// Default listen port (issue 2; documented in the README).
pub const DEFAULT_PORT: u16 = 8765;

/// Collects errors while building the typed config.
pub(super) struct Errors<'a> {
    source: Option<&'a str>,
    list: Vec<ConfigError>,
}

impl Errors<'_> {
    pub(super) fn push(&mut self, path: &str, message: impl Into<String>) {
        let line = self.source.and_then(|s| line_of(s, path));
        self.list.push(ConfigError {
            path: path.to_string(),
            line,
            message: message.into(),
        });
    }
}

/// Builds the typed configuration. `source` is the file text (for line numbers), when there is one.
pub fn validate(
    file: FileConfig,
    overrides: &Overrides,
    source: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Vec<ConfigError>> {
    let mut errors = Errors {
        source,
        list: Vec::new(),
    };
    let listen = listen_addrs(&file, overrides, &mut errors);
    let upstream = upstream_config(&file, overrides, env, &mut errors);
    let mut route = route_config(&file, overrides, env, &mut errors);
    let intercept =
        super::intercept::intercept_config(&file, overrides.upstream_ca.as_ref(), env, &mut errors);
    route.intercept = intercept.rules();
    if file.routing.sts_domains.is_none() {
        // Discover the federation STS of every configured account's domain (issue 5 §3).
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
    let log_level = overrides
        .log_level
        .clone()
        .or(file.log.level.clone())
        .unwrap_or_else(|| "info".into());
    let state_dir = state_dir.unwrap_or_else(|| PathBuf::from(".exoproxy"));
    let log_file = log_file(&file.log, &state_dir, &mut errors);
    if !errors.list.is_empty() {
        return Err(errors.list);
    }
    Ok(Config {
        listen,
        max_connections,
        state_dir,
        route,
        upstream,
        intercept,
        log_level,
        log_file,
    })
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
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Errors,
) -> UpstreamConfig {
    let mut cfg = UpstreamConfig::default();
    let t = &file.timeouts;
    let secs = |v: Option<f64>, path: &str, default: Duration, errors: &mut Errors| match v {
        None => default,
        Some(s) if s > 0.0 && s <= 86_400.0 => Duration::from_secs_f64(s),
        Some(s) => {
            errors.push(
                path,
                format!("{s} is not a number of seconds in (0, 86400]"),
            );
            default
        }
    };
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
    // Credentials written in a proxy URL (`--upstream http://user:pass@proxy:3128`).
    for url in proxy_urls(file, o) {
        if let Ok((endpoint, Some(cred))) = parse_proxy_url(&url) {
            cfg.credentials.retain(|(e, _)| *e != endpoint);
            cfg.credentials.push((endpoint, cred));
        }
    }
    cfg
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
    let nt_hash = match &entry.nt_hash_env {
        Some(var) => Some(credential_nt_hash(var, path, env, errors)?),
        None => None,
    };
    let secrets = [
        entry.password_env.is_some(),
        entry.password_file.is_some(),
        entry.password.is_some(),
        nt_hash.is_some(),
    ];
    let password = match secrets.iter().filter(|s| **s).count() {
        0 if sso && username.is_empty() => Some(String::new()),
        1 if nt_hash.is_some() => Some(String::new()),
        1 => credential_password(entry, path, env, errors),
        _ => {
            errors.push(
                path,
                "set exactly one of password_env, password_file, password, nt_hash_env",
            );
            None
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

fn credential_password(
    entry: &CredentialEntry,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Errors,
) -> Option<String> {
    match (&entry.password_env, &entry.password_file, &entry.password) {
        (Some(var), None, None) => env(var).or_else(|| {
            errors.push(
                &format!("{path}.password_env"),
                format!("environment variable {var} is not set"),
            );
            None
        }),
        (None, Some(file), None) => match std::fs::read_to_string(file) {
            Ok(text) => Some(text.lines().next().unwrap_or("").to_string()),
            Err(e) => {
                errors.push(
                    &format!("{path}.password_file"),
                    format!("cannot read {file}: {e}"),
                );
                None
            }
        },
        (None, None, Some(p)) => Some(p.clone()),
        _ => {
            errors.push(
                path,
                "set exactly one of password_env, password_file, password, nt_hash_env",
            );
            None
        }
    }
}

/// The NT hash from an environment variable: 32 hex digits (the value is never echoed).
fn credential_nt_hash(
    var: &str,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Errors,
) -> Option<Zeroizing<[u8; 16]>> {
    let field = format!("{path}.nt_hash_env");
    let Some(text) = env(var).map(Zeroizing::new) else {
        errors.push(&field, format!("environment variable {var} is not set"));
        return None;
    };
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

fn proxy_urls(file: &FileConfig, o: &Overrides) -> Vec<String> {
    if !o.upstream.is_empty() {
        o.upstream.clone()
    } else {
        file.upstream.proxies.clone().unwrap_or_default()
    }
}

fn route_config(
    file: &FileConfig,
    o: &Overrides,
    env: &dyn Fn(&str) -> Option<String>,
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
        cfg.connect_ports.clear();
        for p in ports {
            match u16::try_from(*p) {
                Ok(port) if port > 0 => cfg.connect_ports.push(port),
                _ => errors.push("routing.connect_ports", format!("{p} is not a port")),
            }
        }
    }
    cfg.upstream = upstream_source(file, o, env, &mut cfg.bypass, errors);
    cfg.source = source_spec(file, o, errors);
    cfg.sts.discover = r.discover_sts.unwrap_or(true);
    cfg.sts.domains = r.sts_domains.clone().unwrap_or_default();
    for d in &cfg.sts.domains {
        if crate::route::sts::domain_of(d).is_empty() {
            errors.push("routing.sts_domains", format!("{d:?} names no domain"));
        }
    }
    cfg
}

/// The configured source when it needs a runtime (`pac`, `winhttp`, `ie`, `auto`); `Ready`
/// otherwise (`upstream_source` already chose the fixed route).
fn source_spec(file: &FileConfig, o: &Overrides, errors: &mut Errors) -> SourceSpec {
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
    let source = match u.source.as_deref() {
        Some(s) => s,
        None if u.pac.is_some() && o.upstream.is_empty() => "pac",
        None => return SourceSpec::Ready,
    };
    let live_source = match source {
        "pac" => {
            let Some(script) = &u.pac else {
                errors.push(
                    "upstream.pac",
                    "source is \"pac\" but no PAC file or URL is set",
                );
                return SourceSpec::Ready;
            };
            pac.source = PacSource::parse(script);
            return SourceSpec::Pac(Box::new(pac));
        }
        "winhttp" => Source::WinHttp,
        "ie" => Source::Ie,
        "auto" => Source::Auto,
        _ => return SourceSpec::Ready,
    };
    let static_proxies = proxy_urls(file, o)
        .iter()
        .filter_map(|url| parse_proxy_url(url).ok().map(|(e, _)| e))
        .collect();
    let live = LiveConfig {
        source: live_source,
        config: SettingsInputs {
            static_proxies,
            static_bypass: u.bypass.clone().unwrap_or_default(),
            pac_url: u.pac.clone(),
            allow_wpad: u.wpad.unwrap_or(false),
            ..SettingsInputs::default()
        },
        env_in_auto: false,
    };
    SourceSpec::System {
        live,
        pac: Box::new(pac),
    }
}

/// Picks the default upstream. Proxies given on the command line or in the file imply `static`;
/// `env` reads `HTTPS_PROXY`/`NO_PROXY` once, and only because the user asked (TLS-8).
fn upstream_source(
    file: &FileConfig,
    o: &Overrides,
    env: &dyn Fn(&str) -> Option<String>,
    bypass: &mut Vec<String>,
    errors: &mut Errors,
) -> UpstreamSource {
    let urls = proxy_urls(file, o);
    let source = match file.upstream.source.as_deref() {
        Some(s) => s,
        None if file.upstream.pac.is_some() && o.upstream.is_empty() => "pac",
        None if urls.is_empty() => "direct",
        None => "static",
    };
    match source {
        "direct" => UpstreamSource::Direct,
        // Started at run time from `source_spec`; DIRECT is never used in their place.
        "pac" | "winhttp" | "ie" | "auto" => UpstreamSource::Direct,
        "static" => {
            if urls.is_empty() {
                errors.push(
                    "upstream.proxies",
                    "source is \"static\" but no proxies are listed",
                );
            }
            let mut endpoints = Vec::new();
            for url in &urls {
                match parse_proxy_url(url) {
                    Ok((e, _)) => endpoints.push(e),
                    Err(msg) => errors.push("upstream.proxies", msg),
                }
            }
            UpstreamSource::Static(endpoints)
        }
        "env" => {
            let var = |k: &str| env(k).or_else(|| env(&k.to_ascii_lowercase()));
            if let Some(no_proxy) = var("NO_PROXY") {
                bypass.extend(no_proxy_to_bypass(&no_proxy));
            }
            match var("HTTPS_PROXY").or_else(|| var("HTTP_PROXY")) {
                Some(url) => match parse_proxy_url(&url) {
                    Ok((e, _)) => UpstreamSource::Static(vec![e]),
                    Err(msg) => {
                        errors.push("upstream.source", format!("HTTPS_PROXY: {msg}"));
                        UpstreamSource::Direct
                    }
                },
                None => UpstreamSource::Direct,
            }
        }
        other => {
            errors.push(
                "upstream.source",
                format!(
                    "unknown source {other:?}: use \"direct\", \"static\", \"env\", \"pac\", \
                     \"winhttp\", \"ie\" or \"auto\""
                ),
            );
            UpstreamSource::Direct
        }
    }
}

/// Turns curl's `NO_PROXY` (a name matches itself and its subdomains, a leading dot too) into
/// WinHTTP/IE bypass entries, where a plain name matches only itself.
fn no_proxy_to_bypass(list: &str) -> Vec<String> {
    let mut out = Vec::new();
    for entry in split_list(list) {
        let name = entry.trim_start_matches('.');
        let is_ip_or_cidr = name.parse::<std::net::IpAddr>().is_ok() || name.contains('/');
        if entry == "*" || is_ip_or_cidr {
            out.push(entry);
        } else if !name.is_empty() {
            out.push(name.to_string());
            out.push(format!("*.{name}"));
        }
    }
    out
}

/// Splits a bypass list written with `,`, `;` or whitespace.
fn split_list(s: &str) -> Vec<String> {
    s.split([',', ';', ' ', '\t', '\n'])
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

/// Parses `http://[user[:pass]@]host:port[/]` into an endpoint and optional credentials.
pub fn parse_proxy_url(url: &str) -> Result<(ProxyEndpoint, Option<ProxyCredentials>), String> {
    let rest = match url.split_once("://") {
        Some(("http", rest)) => rest,
        Some((scheme, _)) => {
            return Err(format!(
                "proxy scheme {scheme:?} is not supported: use http://host:port"
            ));
        }
        None => url,
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (userinfo, hostport) = match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    let endpoint = ProxyEndpoint::parse(hostport).map_err(|e| format!("proxy URL: {e}"))?;
    let creds = userinfo.map(|u| {
        let (user, pass) = u.split_once(':').unwrap_or((u, ""));
        ProxyCredentials {
            username: percent_decode(user),
            password: Zeroizing::new(percent_decode(pass)),
            ..ProxyCredentials::default()
        }
    });
    Ok((endpoint, creds))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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

/// The 1-based line of a dotted key path (`upstream.proxies`, `upstream.credentials[1].proxy`) in
/// the TOML text: the key's line inside its table, or the table header's line.
pub(crate) fn line_of(source: &str, path: &str) -> Option<usize> {
    let clean: String = path
        .chars()
        .filter(|c| !c.is_ascii_digit() && *c != '[' && *c != ']')
        .collect();
    let (table, key) = match clean.rsplit_once('.') {
        Some((t, k)) => (t.to_string(), k.to_string()),
        None => (String::new(), clean.clone()),
    };
    let mut current = String::new();
    let mut table_line = None;
    for (i, raw) in source.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('[') {
            current = line
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_string();
            if current == table || current == clean {
                table_line.get_or_insert(i + 1);
            }
            continue;
        }
        let k = line.split('=').next().unwrap_or("").trim();
        if current == table && k == key {
            return Some(i + 1);
        }
    }
    table_line
}

#[cfg(test)]
#[path = "source_tests.rs"]
mod source_tests;

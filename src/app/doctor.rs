//! `exoproxy doctor`: gathers the facts for each check of [`crate::doctor::checks`] and prints each
//! finding as it comes (README, "doctor").
//!
//! Contract:
//! - Facts come from the code the proxy itself runs: `config::check`, the instance lock, the
//!   running proxy's `/status.json`, [`LocalCa::load`] (never creates a CA), the desktop readers,
//!   [`Services::build`] with the proxy's route, upstream chain and proxy credentials; a token request
//!   is a real refresh through that route.
//! - Never hangs: every network step has a timeout ([`STATUS_TIMEOUT`], [`NET_TIMEOUT`],
//!   [`TOKEN_TIMEOUT`]); a progress line on stderr names the check being run.
//! - Never starts a sign-in: a delegated account without a refresh token is reported, not signed in.
//! - Exit 0 when nothing failed, 1 otherwise. Nothing printed is a secret.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::Request;
use http::header::{DATE, HOST, USER_AGENT};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

use super::{Services, StartError};
use crate::config::{self, Config, Overrides};
use crate::doctor::checks::{
    self, CaState, ReachFailure, Running, Setting, StsDomain, TokenCheck, Trust,
};
use crate::doctor::{Finding, all_passed, render, summary};
use crate::error::ProxyError;
use crate::intercept::{CaFiles, LocalCa};
use crate::route::UpstreamSource;
use crate::route::source::SourceSpec;
use crate::route::sts::domain_of;
use crate::route::system::env::{from_env, process_env};
use crate::route::system::live::{read_ie, read_winhttp};
use crate::route::system::{Selected, SettingsError, SystemProxy, select};
use crate::target::{Action, Hop, Target};
use crate::token::{AccountSummary, Cloud, TokenError, TokenManager};

/// How long the running proxy has to answer `/status.json`.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one reachability or clock check may take.
pub const NET_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one account's token request may take.
pub const TOKEN_TIMEOUT: Duration = Duration::from_secs(20);

/// The findings so far; each is printed when added.
#[derive(Default)]
struct Report {
    findings: Vec<Finding>,
}

impl Report {
    fn progress(&self, what: &str) {
        eprintln!("doctor: checking {what}...");
    }

    fn add(&mut self, finding: Finding) {
        print!("{}", render(&finding));
        let _ = std::io::stdout().flush();
        self.findings.push(finding);
    }

    fn finish(self) -> ExitCode {
        print!("{}", summary(&self.findings));
        if all_passed(&self.findings) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }
}

/// `exoproxy doctor`.
pub async fn run(file: Option<&Path>, overrides: &Overrides) -> ExitCode {
    let mut report = Report::default();
    report.progress("the configuration");
    let mut checked = config::check(file, overrides);
    if let Some(c) = &checked.config
        && let Err(e) = crate::platform::check_not_writable_by_others(&c.state_dir)
    {
        checked.errors.push(e);
    }
    let name = file.map_or("built-in defaults".into(), |p| p.display().to_string());
    report.add(checks::config(&name, &checked.errors, &checked.warnings));
    let Some(config) = checked.config.filter(|_| checked.errors.is_empty()) else {
        return report.finish();
    };

    report.progress("the running proxy");
    let running = running_proxy(&config.state_dir).await;
    report.add(checks::proxy(
        &config.state_dir.display().to_string(),
        running.as_ref().map(|(r, _)| r),
    ));
    // Our addresses: the configured ones and those the running proxy recorded (`run --listen`).
    let mut own = config.listen.clone();
    if let Some((r, _)) = &running {
        own.extend(r.addrs.iter().filter(|a| !config.listen.contains(a)));
    }
    let status = running.and_then(|(_, status)| status);

    report.progress("the local CA");
    let (ca, der) = ca_state(&config);
    report.add(checks::ca(&ca, unix(SystemTime::now())));
    report.add(checks::ca_trust(&trust(der.as_deref())));

    report.progress("the desktop's proxy settings");
    let ie = setting(read_ie());
    let winhttp = setting(read_winhttp());
    for finding in checks::desktop(&ie, &winhttp, &own) {
        report.add(finding);
    }
    let selected = upstream_selection(&config, &ie, &winhttp);
    for finding in checks::upstream_loop(selected.as_ref(), &own) {
        report.add(finding);
    }

    report.progress("the route to the identity provider and Exchange");
    let services = match services(&config).await {
        Ok(s) => s,
        Err(finding) => {
            report.add(finding);
            return report.finish();
        }
    };
    let (idps, exchanges) = hosts(&config);
    for (role, host) in idps
        .iter()
        .map(|h| ("the identity provider", h))
        .chain(exchanges.iter().map(|h| ("Exchange Online", h)))
    {
        report.progress(&format!("{host} over the route the proxy would use"));
        let (route, outcome) = reach(&services, &config, host).await;
        report.add(checks::reach(role, host, &route, &outcome));
    }

    if let Some(idp) = idps.first() {
        report.progress(&format!("the clock against {idp}"));
        let date = idp_date(&services, idp).await;
        report.add(checks::clock(idp, &date, unix(SystemTime::now())));
    }

    let summaries = services.tokens.accounts();
    if summaries.is_empty() {
        report.add(Finding::warn(
            "accounts",
            "no account configured or signed in: no request gets a token",
            "add [[account]] upn = \"admin@contoso.com\" to the config, then `exoproxy login admin@contoso.com`",
        ));
    }
    for account in &summaries {
        report.progress(&format!("a token request for {}", account.upn));
        let state = state_words(status.as_ref(), account);
        let check = token_check(&services.tokens, account, &config).await;
        report.add(checks::account(&account.upn, &state, &check));
    }

    report.progress("the federation STS hosts");
    let domains = sts_domains(&services, &config).await;
    for finding in checks::sts(config.route.sts.discover, &domains) {
        report.add(finding);
    }
    report.finish()
}

/// Unix seconds.
fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The proxy holding the state dir's lock, and its `/status.json` when it answered.
async fn running_proxy(state_dir: &Path) -> Option<(Running, Option<serde_json::Value>)> {
    let addrs = crate::platform::running(state_dir)?;
    let mut last = Err("no listen address recorded".to_string());
    let mut status = None;
    for addr in &addrs {
        match timeout(STATUS_TIMEOUT, fetch_status(*addr)).await {
            Ok(Ok(value)) => {
                last = Ok(*addr);
                status = Some(value);
                break;
            }
            Ok(Err(e)) => last = Err(format!("{addr}: {e}")),
            Err(_) => {
                last = Err(format!(
                    "{addr}: no answer within {}s",
                    STATUS_TIMEOUT.as_secs()
                ));
            }
        }
    }
    let running = Running {
        addrs,
        answer: last,
    };
    Some((running, status))
}

/// `GET /status.json` from the proxy at `addr` (the `Host` names it, as the admin endpoints require).
async fn fetch_status(addr: SocketAddr) -> Result<serde_json::Value, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let conn = tokio::spawn(conn);
    let request = Request::get("/status.json")
        .header(HOST, addr.to_string())
        .header(
            USER_AGENT,
            concat!("exoproxy-doctor/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string());
    let result = async {
        let response = response?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("answered {status}"));
        }
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))
    }
    .await;
    conn.abort();
    result
}

/// The CA as the proxy would load it, and its certificate for the trust check.
fn ca_state(config: &Config) -> (CaState, Option<Vec<u8>>) {
    if !config.intercept.enabled {
        return (CaState::Off, None);
    }
    let files = CaFiles::in_dir(&config.state_dir);
    if !files.cert.exists() && !files.key.exists() {
        return (CaState::NotCreated, None);
    }
    match LocalCa::load(&config.state_dir, &config.intercept.ca_domains()) {
        Ok(ca) => match checks::ca_facts(ca.cert_der()) {
            Ok(facts) => (CaState::Loaded(facts), Some(ca.cert_der().to_vec())),
            Err(e) => (CaState::Unusable(e), None),
        },
        Err(e) => (CaState::Unusable(e.to_string()), None),
    }
}

/// Whether the CA is in `CurrentUser\Root`: not applicable off Windows, whatever the CA (so the
/// store is asked even without a CA: only its answer says whether it exists on this OS).
fn trust(der: Option<&[u8]>) -> Trust {
    match (der, crate::desktop::in_user_root(der.unwrap_or_default())) {
        (_, None) => Trust::NotApplicable,
        (None, Some(_)) => Trust::NoCa,
        (Some(_), Some(Ok(true))) => Trust::Trusted,
        (Some(_), Some(Ok(false))) => Trust::NotTrusted,
        (Some(_), Some(Err(e))) => Trust::Unreadable(e.to_string()),
    }
}

fn setting(read: Result<Option<SystemProxy>, SettingsError>) -> Setting {
    match read {
        Ok(Some(p)) => Setting::Read(p),
        Ok(None) => Setting::NotOnThisOs,
        Err(e) => Setting::Unreadable(e.to_string()),
    }
}

/// What exoproxy's upstream source selects now, when it is a list or system settings that could
/// name exoproxy itself (as `route::source` compiles it).
fn upstream_selection(config: &Config, ie: &Setting, winhttp: &Setting) -> Option<Selected> {
    match &config.route.source {
        SourceSpec::System { live, .. } => {
            let mut inputs = live.config.clone();
            if let Setting::Read(p) = ie {
                inputs.ie = Some(p.clone());
            }
            if let Setting::Read(p) = winhttp {
                inputs.winhttp = Some(p.clone());
            }
            if live.env_in_auto {
                inputs.env = from_env(process_env).ok();
            }
            Some(select(live.source, &inputs))
        }
        SourceSpec::Pac(_) => None,
        SourceSpec::Ready => match &config.route.upstream {
            UpstreamSource::Static(list) => Some(Selected::Proxies(SystemProxy {
                https: list.clone(),
                http: list.clone(),
                ..SystemProxy::empty("static")
            })),
            _ => None,
        },
    }
}

/// The proxy's services (interception off: no CA is needed to reach the IdP), within a timeout.
async fn services(config: &Config) -> Result<Services, Finding> {
    let mut config = config.clone();
    config.intercept.enabled = false;
    let fix = "correct the configuration (`exoproxy config check`)";
    match timeout(NET_TIMEOUT, Services::build(&config, &config.listen)).await {
        Ok(Ok(services)) => Ok(services),
        Ok(Err(StartError::Config(errors))) => Err(Finding::fail("route", errors.join("; "), fix)),
        Ok(Err(StartError::Runtime(e))) => Err(Finding::fail("route", e, fix)),
        Err(_) => Err(Finding::fail(
            "route",
            format!(
                "the route (PAC, system settings) was not ready within {}s",
                NET_TIMEOUT.as_secs()
            ),
            "check upstream.pac / upstream.source (`exoproxy pac eval https://outlook.office365.com/`)",
        )),
    }
}

/// The identity provider hosts and Exchange hosts of the configured accounts (the global cloud's
/// when there are none), each once.
fn hosts(config: &Config) -> (Vec<String>, Vec<String>) {
    let mut idps = Vec::new();
    let mut exchanges = Vec::new();
    let push = |list: &mut Vec<String>, url: &str| {
        let host = url
            .parse::<http::Uri>()
            .ok()
            .and_then(|u| u.host().map(str::to_ascii_lowercase));
        if let Some(host) = host.filter(|h| !list.contains(h)) {
            list.push(host);
        }
    };
    for account in &config.intercept.accounts {
        push(&mut idps, &account.authority());
        push(&mut exchanges, account.cloud.exchange().as_str());
    }
    if config.intercept.accounts.is_empty() {
        push(&mut idps, Cloud::Global.authority());
        push(&mut exchanges, Cloud::Global.exchange().as_str());
    }
    (idps, exchanges)
}

/// A tunnel and a TLS handshake to `host:443` over the route the proxy would take; the route in words.
async fn reach(
    services: &Services,
    config: &Config,
    host: &str,
) -> (String, Result<(), ReachFailure>) {
    let target = match Target::parse_connect(&format!("{host}:443")) {
        Ok(t) => t,
        Err(e) => return ("-".into(), Err(ReachFailure::Other(e.0))),
    };
    let decision = match services.router.decide(&target).await {
        Ok(d) => d,
        Err(e) => return ("-".into(), Err(ReachFailure::Other(e.to_string()))),
    };
    let route = decision
        .hops
        .iter()
        .map(Hop::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    if let Action::Block { reason } = &decision.action {
        return (route, Err(ReachFailure::Blocked(reason.to_string())));
    }
    let attempt = async {
        let connected = services
            .upstream
            .connect(&target, &decision)
            .await
            .map_err(|e| failure_of(e, config))?;
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| ReachFailure::Other(format!("bad host name: {e}")))?;
        TlsConnector::from(services.upstream_tls.clone())
            .connect(name, connected.stream)
            .await
            .map_err(|e| ReachFailure::Tls(e.to_string()))?;
        Ok(())
    };
    match timeout(NET_TIMEOUT, attempt).await {
        Ok(outcome) => (route, outcome),
        Err(_) => (route, Err(ReachFailure::TimedOut(NET_TIMEOUT))),
    }
}

/// A 407 is named as such (with whether we had credentials for that proxy); the rest as reported.
fn failure_of(error: ProxyError, config: &Config) -> ReachFailure {
    match error {
        ProxyError::UpstreamAuthFailed { proxy, .. } => ReachFailure::ProxyAuth {
            had_credentials: config
                .upstream
                .credentials
                .iter()
                .any(|(p, _)| p.to_string().eq_ignore_ascii_case(&proxy)),
            proxy,
        },
        other => ReachFailure::Other(other.to_string()),
    }
}

/// The `Date` of the identity provider's answer to `GET https://<idp>/`, in Unix seconds.
async fn idp_date(services: &Services, idp: &str) -> Result<i64, String> {
    let request = Request::get(format!("https://{idp}/"))
        .header(USER_AGENT, concat!("exoproxy/", env!("CARGO_PKG_VERSION")))
        .body(Bytes::new())
        .map_err(|e| e.to_string())?;
    let response = timeout(NET_TIMEOUT, services.client.send(request))
        .await
        .map_err(|_| format!("no answer within {}s", NET_TIMEOUT.as_secs()))?
        .map_err(|e| e.to_string())?;
    let date = response
        .headers()
        .get(DATE)
        .and_then(|d| d.to_str().ok())
        .ok_or("its answer has no Date header")?;
    httpdate::parse_http_date(date)
        .map(unix)
        .map_err(|e| format!("unreadable Date {date:?}: {e}"))
}

/// The account's state in words: the running proxy's view when it answered, else the cache's.
fn state_words(status: Option<&serde_json::Value>, account: &AccountSummary) -> String {
    let live = status
        .and_then(|s| s.get("accounts"))
        .and_then(|a| a.as_array())
        .and_then(|list| {
            list.iter().find(|a| {
                a.get("upn")
                    .and_then(|u| u.as_str())
                    .is_some_and(|u| u.eq_ignore_ascii_case(&account.upn))
            })
        })
        .and_then(|a| a.get("state"))
        .and_then(|s| s.as_str());
    match live {
        Some(state) => format!("running proxy says {state}"),
        None => {
            let cached = if account.has_refresh_token {
                "signed in"
            } else {
                "no refresh token"
            };
            // `accounts` lists cached accounts too; the cache is all doctor can see without a proxy.
            format!("token cache: {cached}")
        }
    }
}

/// A token request now: a refresh (or an app-only acquisition) through the proxy's route. A delegated
/// account without a refresh token is not tried (that would start a sign-in).
async fn token_check(
    tokens: &TokenManager,
    account: &AccountSummary,
    config: &Config,
) -> TokenCheck {
    let configured = config
        .intercept
        .accounts
        .iter()
        .find(|a| a.upn.eq_ignore_ascii_case(&account.upn));
    let delegated = configured.is_none_or(|a| a.flow.is_delegated());
    if delegated && !account.has_refresh_token {
        return TokenCheck::NotSignedIn;
    }
    let audience = configured.map_or_else(|| Cloud::Global.exchange(), |a| a.default_audience());
    let upn = &account.upn;
    let attempt = async {
        // A cached token would prove nothing: drop it and ask the IdP.
        let cached = tokens.token(upn, &audience).await?;
        tokens
            .invalidate_and_reacquire(upn, &audience, &cached, None)
            .await
    };
    match timeout(TOKEN_TIMEOUT, attempt).await {
        Ok(Ok(_)) => {
            let valid_for = tokens
                .accounts()
                .iter()
                .find(|s| s.upn.eq_ignore_ascii_case(upn))
                .and_then(|s| s.tokens.iter().find(|(a, _)| *a == audience).map(|t| t.1))
                .unwrap_or(0);
            TokenCheck::Renewed { valid_for }
        }
        Ok(Err(e)) => TokenCheck::Failed {
            sign_in: matches!(
                e,
                TokenError::SignInRequired { .. }
                    | TokenError::SignInPending { .. }
                    | TokenError::SignInFailed { .. }
                    | TokenError::WrongUser { .. }
            ),
            error: e.to_string(),
        },
        Err(_) => TokenCheck::TimedOut(TOKEN_TIMEOUT),
    }
}

/// Discovers each configured domain's STS now (as `exoproxy route` does) and decides each host.
async fn sts_domains(services: &Services, config: &Config) -> Vec<StsDomain> {
    let sts = &config.route.sts;
    if !sts.discover {
        return Vec::new();
    }
    let lines = super::discover_sts_now(&services.router, &services.client, sts).await;
    let states = services
        .router
        .sts()
        .map(|d| d.domains())
        .unwrap_or_default();
    let mut domains: Vec<StsDomain> = Vec::new();
    for domain in sts.domains.iter().map(|d| domain_of(d)) {
        if domains.iter().any(|d| d.domain == domain) {
            continue;
        }
        let state = states.get(&domain);
        let mut hosts = Vec::new();
        for host in state.map(|s| s.hosts.clone()).unwrap_or_default() {
            hosts.push(sts_route(services, &host).await);
        }
        // Discovery's own line for the domain says why it found nothing, unless the domain is managed.
        let error = state.and_then(|s| s.last_error.clone()).or_else(|| {
            lines
                .iter()
                .find_map(|l| l.strip_prefix(&format!("{domain}: ")))
                .filter(|rest| hosts.is_empty() && *rest != "no federation STS")
                .map(str::to_string)
        });
        domains.push(StsDomain {
            domain,
            hosts,
            error,
        });
    }
    domains
}

/// `(host, route words, DIRECT?)` for an STS host.
async fn sts_route(services: &Services, host: &str) -> (String, String, bool) {
    let Ok(target) = Target::parse_connect(&format!("{host}:443")) else {
        return (host.to_string(), "an invalid host".into(), false);
    };
    match services.router.decide(&target).await {
        Ok(d) => {
            let direct = matches!(d.action, Action::Tunnel) && d.hops == [Hop::Direct];
            let words = d
                .hops
                .iter()
                .map(Hop::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            let words = match &d.action {
                Action::Tunnel => words,
                Action::Intercept { .. } => format!("intercepted, {words}"),
                Action::Block { .. } => "blocked".into(),
            };
            (host.to_string(), words, direct)
        }
        Err(e) => (host.to_string(), format!("no route ({e})"), false),
    }
}

//! One function per `doctor` check: facts in, one [`Finding`] (or a few) out, no I/O.
//!
//! The facts are gathered by `app::doctor` through the same code the proxy runs (config validation,
//! the instance lock, `Router::decide` and `Upstream::connect`, the token manager); the loop test is
//! `route::loops`, the one home of "this proxy setting names exoproxy itself".

use std::net::SocketAddr;
use std::time::Duration;

use x509_parser::extensions::GeneralName;

use super::Finding;
use crate::route::loops::{self, SelfReference};
use crate::route::system::{Selected, SystemProxy};

/// Clock skew beyond which Entra ID tokens start failing (their `nbf`/`exp` tolerance is 5 minutes).
pub const MAX_SKEW: Duration = Duration::from_secs(5 * 60);
/// A CA that expires within this is a warning: replace it before clients start refusing it.
pub const CA_RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);

/// `config`: the result of `config check` on the file the proxy would read.
pub fn config(name: &str, errors: &[String], warnings: &[String]) -> Finding {
    if !errors.is_empty() {
        return Finding::fail(
            "config",
            format!("{} error(s): {}", errors.len(), errors.join("; ")),
            "correct the file (`exoproxy config check` lists each error with its line)",
        );
    }
    if !warnings.is_empty() {
        return Finding::warn(
            "config",
            format!("{name} is valid, with warnings: {}", warnings.join("; ")),
            "set the environment variables the file names before starting the proxy",
        );
    }
    Finding::pass("config", format!("{name} is valid"))
}

/// The running proxy as the instance lock and its `/status.json` tell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    /// Where it listens, as it recorded.
    pub addrs: Vec<SocketAddr>,
    /// `Ok(where it answered)`, or why `/status.json` could not be read.
    pub answer: Result<SocketAddr, String>,
}

/// `proxy`: whether a proxy runs for this state dir and answers.
pub fn proxy(state_dir: &str, running: Option<&Running>) -> Finding {
    let Some(running) = running else {
        return Finding::warn(
            "proxy",
            format!("no exoproxy is running for the state dir {state_dir}"),
            "start it: `exoproxy run` (on Windows `exoproxy install` starts it at logon)",
        );
    };
    match &running.answer {
        Ok(addr) => Finding::pass("proxy", format!("running and answering on http://{addr}/")),
        Err(e) => Finding::fail(
            "proxy",
            format!("running but /status.json did not answer: {e}"),
            "look at its log; if it hangs, stop it and start `exoproxy run` again",
        ),
    }
}

/// What `doctor` reads from the CA certificate (parsed with x509-parser, not taken on trust).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFacts {
    pub is_ca: bool,
    /// Permitted DNS subtrees of the name constraints; empty when there are none.
    pub permitted: Vec<String>,
    /// Whether IP addresses are excluded (so no leaf can be minted for an IP).
    pub excludes_ips: bool,
    /// Unix seconds.
    pub not_after: i64,
}

/// Parses the facts `doctor` checks from a DER certificate.
pub fn ca_facts(der: &[u8]) -> Result<CaFacts, String> {
    let (_, x509) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("not a DER X.509 certificate: {e}"))?;
    let constraints = x509
        .name_constraints()
        .map_err(|e| format!("unreadable name constraints: {e}"))?;
    let (permitted, excludes_ips) = match constraints {
        None => (Vec::new(), false),
        Some(nc) => {
            let permitted = nc
                .value
                .permitted_subtrees
                .as_deref()
                .unwrap_or(&[])
                .iter()
                .filter_map(|s| match &s.base {
                    GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                    _ => None,
                })
                .collect();
            let excludes_ips = nc
                .value
                .excluded_subtrees
                .as_deref()
                .unwrap_or(&[])
                .iter()
                .any(|s| matches!(s.base, GeneralName::IPAddress(_)));
            (permitted, excludes_ips)
        }
    };
    Ok(CaFacts {
        is_ca: x509.is_ca(),
        permitted,
        excludes_ips,
        not_after: x509.validity().not_after.timestamp(),
    })
}

/// How the CA stands on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaState {
    /// Interception is off: no CA is used.
    Off,
    /// Neither file exists yet: the proxy creates them at its first start.
    NotCreated,
    /// The proxy would refuse to start with it (the load error names the fix).
    Unusable(String),
    Loaded(CaFacts),
}

/// `ca`: the local CA exists, is name-constrained and not near expiry (`now`: Unix seconds).
pub fn ca(state: &CaState, now: i64) -> Finding {
    let regenerate = "`exoproxy ca regenerate`, then trust the new CA (`exoproxy ca export exoproxy-ca.pem` prints how)";
    let facts = match state {
        CaState::Off => return Finding::skip("ca", "interception is off: no local CA is used"),
        CaState::NotCreated => {
            return Finding::warn(
                "ca",
                "no local CA yet",
                "start `exoproxy run` once (it creates the CA), then trust it: `exoproxy ca export exoproxy-ca.pem` prints how",
            );
        }
        CaState::Unusable(e) => return Finding::fail("ca", e.clone(), regenerate),
        CaState::Loaded(facts) => facts,
    };
    if !facts.is_ca || facts.permitted.is_empty() || !facts.excludes_ips {
        return Finding::fail(
            "ca",
            "the CA certificate is not a name-constrained CA (a leaked key could mint for any name)",
            regenerate,
        );
    }
    let left = facts.not_after - now;
    let expires = date_of(facts.not_after);
    if left <= 0 {
        return Finding::fail("ca", format!("the CA expired on {expires}"), regenerate);
    }
    let constrained = format!(
        "name-constrained to {} (IP addresses excluded)",
        facts.permitted.join(", ")
    );
    if left < CA_RENEW_BEFORE.as_secs() as i64 {
        return Finding::warn(
            "ca",
            format!("{constrained}; expires soon, on {expires}"),
            regenerate,
        );
    }
    Finding::pass("ca", format!("{constrained}; valid until {expires}"))
}

/// Whether the CA is in the user's trust store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Not Windows: there is no `CurrentUser\Root` to look in.
    NotApplicable,
    /// No CA to look for (interception off, or not created yet).
    NoCa,
    Trusted,
    NotTrusted,
    Unreadable(String),
}

/// `ca trust`: on Windows, the CA is in `CurrentUser\Root`.
pub fn ca_trust(trust: &Trust) -> Finding {
    let how = "run `exoproxy install`, or `exoproxy ca export exoproxy-ca.pem` and \
               `Import-Certificate -FilePath .\\exoproxy-ca.pem -CertStoreLocation Cert:\\CurrentUser\\Root`";
    match trust {
        Trust::NotApplicable => Finding::skip(
            "ca trust",
            "CurrentUser\\Root is a Windows store: the check does not apply on this OS (trust the CA in each client: `exoproxy ca export exoproxy-ca.pem` prints how)",
        ),
        Trust::NoCa => Finding::skip("ca trust", "no local CA to look for"),
        Trust::Trusted => Finding::pass("ca trust", "the CA is in CurrentUser\\Root"),
        Trust::NotTrusted => Finding::fail(
            "ca trust",
            "the CA is not in CurrentUser\\Root: PowerShell and WinRM refuse the intercepted hosts",
            how,
        ),
        Trust::Unreadable(e) => Finding::warn(
            "ca trust",
            format!("cannot read CurrentUser\\Root: {e}"),
            how,
        ),
    }
}

/// One of the desktop's proxy settings as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setting {
    /// Not Windows: the setting does not exist.
    NotOnThisOs,
    Unreadable(String),
    Read(SystemProxy),
}

/// `desktop`: whether the IE (WinINet) and WinHTTP settings point at exoproxy. Browsers, .NET and
/// PowerShell follow IE's (not pointing at us: a warning); services and WinRM follow WinHTTP's (said,
/// not judged).
pub fn desktop(ie: &Setting, winhttp: &Setting, own: &[SocketAddr]) -> Vec<Finding> {
    if matches!((ie, winhttp), (Setting::NotOnThisOs, Setting::NotOnThisOs)) {
        return vec![Finding::skip(
            "desktop",
            "no WinHTTP or Internet Settings on this OS: the check does not apply (point clients at exoproxy with HTTPS_PROXY)",
        )];
    }
    [("IE", ie), ("WinHTTP", winhttp)]
        .into_iter()
        .map(|(name, setting)| desktop_setting(name, setting, own))
        .collect()
}

fn desktop_setting(name: &str, setting: &Setting, own: &[SocketAddr]) -> Finding {
    let check = format!("desktop {name}");
    let proxy = match setting {
        Setting::NotOnThisOs => return Finding::skip(check, "not on this OS"),
        Setting::Unreadable(e) => {
            return Finding::warn(
                check,
                format!("cannot read the {name} proxy settings: {e}"),
                "check them by hand (`netsh winhttp show proxy`, Internet Options)",
            );
        }
        Setting::Read(proxy) => proxy,
    };
    let pac = proxy.auto_config_url.as_deref();
    let points = pac.is_some_and(|u| loops::pac_url_is_ours(u, own))
        || proxy
            .https
            .iter()
            .chain(&proxy.http)
            .any(|p| loops::names_this_proxy(p, own));
    let described = describe_setting(proxy);
    if points {
        return Finding::pass(check, format!("points at exoproxy ({described})"));
    }
    if name == "WinHTTP" {
        // Informational: most desktops leave WinHTTP alone, and the recipes (README) use IE's.
        return Finding::pass(
            check,
            format!(
                "does not point at exoproxy ({described}): only WinHTTP clients (services, WinRM without -ProxyAccessType IEConfig) bypass it"
            ),
        );
    }
    Finding::warn(
        check,
        format!(
            "does not point at exoproxy ({described}): browsers, .NET and PowerShell bypass exoproxy"
        ),
        "run `exoproxy install` (points Internet Settings at the served PAC)",
    )
}

fn describe_setting(proxy: &SystemProxy) -> String {
    let mut parts = Vec::new();
    if let Some(url) = &proxy.auto_config_url {
        parts.push(format!("AutoConfigURL {url}"));
    }
    if !proxy.https.is_empty() {
        let list: Vec<String> = proxy.https.iter().map(ToString::to_string).collect();
        parts.push(format!("proxy {}", list.join(", ")));
    }
    if parts.is_empty() {
        "no proxy".into()
    } else {
        parts.join(", ")
    }
}

/// `upstream loop`: whether exoproxy's own upstream source (`selected`, `None` for sources that
/// cannot name it: direct, a configured PAC, the environment) names exoproxy itself; the same test
/// and fix text the running proxy logs (`route::loops`).
pub fn upstream_loop(selected: Option<&Selected>, own: &[SocketAddr]) -> Vec<Finding> {
    let check = "upstream loop";
    let Some(selected) = selected else {
        return vec![Finding::pass(
            check,
            "the upstream source cannot name exoproxy itself",
        )];
    };
    let found: Vec<SelfReference> = match selected {
        Selected::Proxies(p) => {
            let mut found = Vec::new();
            for list in [&p.https, &p.http] {
                let (kept, ours) = loops::split_own(list, own);
                for f in loops::findings(p.source, &ours, &kept) {
                    if !found.contains(&f) {
                        found.push(f);
                    }
                }
            }
            found
        }
        Selected::Pac { url, source, .. } if loops::pac_url_is_ours(url, own) => {
            vec![SelfReference {
                source: (*source).to_string(),
                value: format!("the PAC {url}"),
                instead: "DIRECT".into(),
            }]
        }
        _ => Vec::new(),
    };
    if found.is_empty() {
        return vec![Finding::pass(
            check,
            format!(
                "the upstream source ({}) does not lead back into exoproxy",
                selected.describe()
            ),
        )];
    }
    found
        .iter()
        .map(|f| {
            let text = f.to_string();
            let (problem, fix) = text.split_once("; to fix: ").unwrap_or((&text, ""));
            Finding::warn(check, problem.to_string(), fix.to_string())
        })
        .collect()
}

/// Why a host could not be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReachFailure {
    /// The upstream proxy answered 407; `had_credentials` when `[[upstream.credentials]]` names it.
    ProxyAuth {
        proxy: String,
        had_credentials: bool,
    },
    /// A rule blocks the host.
    Blocked(String),
    /// The TLS handshake with the host failed (a TLS-inspecting proxy, a wrong `connect_to`).
    Tls(String),
    /// Connect-level or routing failure, as the dialer reported it.
    Other(String),
    TimedOut(Duration),
}

/// `reach HOST`: a tunnel and a TLS handshake to `host`, over the route the proxy would use (`route`,
/// e.g. `PROXY proxy.corp:8080`, `DIRECT`).
pub fn reach(role: &str, host: &str, route: &str, outcome: &Result<(), ReachFailure>) -> Finding {
    let check = format!("reach {host}");
    let failure = match outcome {
        Ok(()) => return Finding::pass(check, format!("{role} reachable via {route}")),
        Err(f) => f,
    };
    let (detail, fix) = match failure {
        ReachFailure::ProxyAuth {
            proxy,
            had_credentials: true,
        } => (
            format!("the upstream proxy {proxy} answered 407: wrong proxy password"),
            format!(
                "wrong proxy password: fix [[upstream.credentials]] for {proxy} (its username, and password or password_env)"
            ),
        ),
        ReachFailure::ProxyAuth { proxy, .. } => (
            format!("the upstream proxy {proxy} answered 407: it wants credentials"),
            format!("add [[upstream.credentials]] for {proxy} (proxy, username, and password or password_env)"),
        ),
        ReachFailure::Blocked(why) => (
            format!("{role} is blocked: {why}"),
            "remove it from routing.block".to_string(),
        ),
        ReachFailure::Tls(e) => (
            format!("{role}: TLS failed via {route}: {e}"),
            "if a proxy inspects TLS, add its root to tls.extra_roots; otherwise check connect_to".to_string(),
        ),
        ReachFailure::Other(e) => (
            format!("{role} unreachable via {route}: {e}"),
            "check the network and the upstream proxy settings (`exoproxy route https://HOST/` shows the route)".replace("HOST", host),
        ),
        ReachFailure::TimedOut(after) => (
            format!("{role}: no connection via {route} within {}s", after.as_secs()),
            "check the network, the firewall and the upstream proxy settings".to_string(),
        ),
    };
    Finding::fail(check, detail, fix)
}

/// What a token request for an account did now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenCheck {
    /// A delegated account without a refresh token: nothing to try without the user.
    NotSignedIn,
    /// A refresh (or an app-only acquisition) worked: the new token's validity in seconds.
    Renewed {
        valid_for: u64,
    },
    /// The IdP refused: `sign_in` when only a new interactive sign-in helps.
    Failed {
        error: String,
        sign_in: bool,
    },
    TimedOut(Duration),
}

/// `account UPN`: its state (as the running proxy or the cache tells it) and a token request now.
pub fn account(upn: &str, state: &str, check: &TokenCheck) -> Finding {
    let name = format!("account {upn}");
    let login = format!("run `exoproxy login {upn}`");
    match check {
        TokenCheck::NotSignedIn => Finding::fail(
            name,
            format!("{state}; not signed in (no refresh token)"),
            login,
        ),
        TokenCheck::Renewed { valid_for } => Finding::pass(
            name,
            format!(
                "{state}; a token request works now (new token valid {}m)",
                valid_for / 60
            ),
        ),
        TokenCheck::Failed {
            error,
            sign_in: true,
        } => Finding::fail(
            name,
            format!("{state}; the token request failed: {error}"),
            login,
        ),
        TokenCheck::Failed { error, .. } => Finding::fail(
            name,
            format!("{state}; the token request failed: {error}"),
            "see the reach lines for the identity provider; then `exoproxy token UPN` retries"
                .replace("UPN", upn),
        ),
        TokenCheck::TimedOut(after) => Finding::fail(
            name,
            format!(
                "{state}; no answer to the token request within {}s",
                after.as_secs()
            ),
            "see the reach lines for the identity provider",
        ),
    }
}

/// One domain's STS discovery: its hosts and the route each gets (`None`: the decision failed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsDomain {
    pub domain: String,
    /// `(host, the route words, DIRECT?)`.
    pub hosts: Vec<(String, String, bool)>,
    pub error: Option<String>,
}

/// `sts`: each federated domain's STS hosts are discovered and go DIRECT.
pub fn sts(discover: bool, domains: &[StsDomain]) -> Vec<Finding> {
    if !discover {
        return vec![Finding::skip("sts", "routing.discover_sts is off")];
    }
    if domains.is_empty() {
        return vec![Finding::skip(
            "sts",
            "no account domains to discover (add [[account]] or routing.sts_domains)",
        )];
    }
    domains.iter().map(sts_domain).collect()
}

fn sts_domain(d: &StsDomain) -> Finding {
    let check = format!("sts {}", d.domain);
    if let Some(not_direct) = d.hosts.iter().find(|(_, _, direct)| !direct) {
        return Finding::fail(
            check,
            format!(
                "the STS host {} goes {}, not DIRECT",
                not_direct.0, not_direct.1
            ),
            "remove it from the rules that catch it (routing.intercept, routing.block), or list it in routing.direct_hosts",
        );
    }
    match (&d.error, d.hosts.is_empty()) {
        (Some(e), true) => Finding::warn(
            check,
            format!("discovery failed: {e}"),
            "see the reach lines for the identity provider; or list the STS in routing.direct_hosts",
        ),
        (_, true) => Finding::pass(check, "managed domain: no federation STS"),
        (_, false) => {
            let hosts: Vec<&str> = d.hosts.iter().map(|h| h.0.as_str()).collect();
            Finding::pass(check, format!("{} DIRECT", hosts.join(", ")))
        }
    }
}

/// `clock`: local time against the IdP's `Date` header (Unix seconds both).
pub fn clock(host: &str, idp_date: &Result<i64, String>, local: i64) -> Finding {
    let check = "clock";
    let theirs = match idp_date {
        Ok(t) => *t,
        Err(e) => {
            return Finding::warn(
                check,
                format!("could not read the time of {host}: {e}"),
                "see the reach lines for the identity provider",
            );
        }
    };
    let skew = local - theirs;
    let words = match skew {
        0 => "in step with".to_string(),
        s if s > 0 => format!("{s}s ahead of"),
        s => format!("{}s behind", -s),
    };
    if skew.unsigned_abs() > MAX_SKEW.as_secs() {
        return Finding::warn(
            check,
            format!(
                "this machine's clock is {words} {host}: tokens may be refused (Entra ID tolerates 5 minutes)"
            ),
            "set the clock right: enable time sync (`w32tm /resync`, or timedatectl set-ntp true)",
        );
    }
    Finding::pass(check, format!("{words} {host} (within 5 minutes)"))
}

/// `YYYY-MM-DD` of Unix seconds.
fn date_of(unix: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) => format!("{}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()),
        Err(_) => unix.to_string(),
    }
}

#[cfg(test)]
mod tests;

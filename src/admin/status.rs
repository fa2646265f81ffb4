//! The status snapshot behind `GET /status.json` and `GET /` (docs/STATUS.md is the schema).
//!
//! Contract:
//! - [`Status`] is schema [`SCHEMA`]: fields are only added within a schema number; a rename or a
//!   removal bumps it.
//! - It is built from read-only views of the live state (token manager, the router's default
//!   route and PAC status, bad-proxy memory, STS directory, local CA, the summary's gauges and
//!   recent errors); building it never dials, never waits on a token call or a PAC, and never
//!   contains a token, a refresh token, a header value or a secret (`tests/status_page.rs` checks
//!   with a canary token); URLs are shown without their userinfo ([`redact_userinfo`]).

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::time::Instant;

use super::action::{Actions, Outcome};
use crate::intercept::InterceptState;
use crate::route::Router;
use crate::route::pac::{OnFailure, PacState, PacStatus};
use crate::summary::{ErrorAnswered, Open};
use crate::token::manager::{AccountStatus, AccountSummary};
use crate::upstream::Upstream;

/// The schema number of [`Status`].
pub const SCHEMA: u32 = 1;

/// What the status page and `/status.json` show.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub schema: u32,
    /// exoproxy's version.
    pub version: &'static str,
    /// Unix seconds when this snapshot was taken.
    pub now: i64,
    pub uptime_seconds: u64,
    pub accounts: Vec<AccountView>,
    pub upstream: UpstreamView,
    /// Federation domains and the STS hosts sent DIRECT for them.
    pub sts: Vec<StsView>,
    /// Host patterns whose HTTPS is intercepted (and gets tokens).
    pub intercepted_hosts: Vec<String>,
    /// The local CA; `null` when interception is off.
    pub ca: Option<CaView>,
    /// The last answered errors, newest first (at most 50).
    pub recent_errors: Vec<ErrorAnswered>,
    pub open: OpenView,
    /// The configuration file in use and the last reload; `null` when the proxy cannot reload
    /// (started without the reloader, as in-process tests are).
    pub config: Option<ConfigView>,
    /// The last admin action (`POST /action/...`) and its outcome; `null` before the first.
    pub last_action: Option<Outcome>,
}

/// The configuration in use (docs/STATUS.md, `config`).
#[derive(Debug, Clone, Serialize)]
pub struct ConfigView {
    /// The file read; `null`: built-in defaults and the command line only.
    pub file: Option<String>,
    /// Unix seconds when the configuration in use was loaded (start or last applied reload).
    pub loaded_at: i64,
    /// The last reload attempt, applied or refused; `null` before the first.
    pub last_reload: Option<ReloadOutcome>,
}

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReloadTrigger {
    /// The file's content changed (checked every 2 s).
    FileChanged,
    /// SIGHUP (Unix).
    Sighup,
    /// The status page's reload action.
    Admin,
}

/// How a reload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReloadResult {
    /// The new file is in force for new requests (settings in `restart_needed` excepted).
    Applied,
    /// The file was invalid: the running configuration stays, `errors` says why.
    Refused,
}

/// One reload attempt (`Proxy::reload_config`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReloadOutcome {
    /// Unix seconds.
    pub at: i64,
    pub trigger: ReloadTrigger,
    pub result: ReloadResult,
    /// Why the file was refused, each with its key path and line; empty when applied.
    pub errors: Vec<String>,
    /// Settings the file changes that only a restart applies (`listen`, `state_dir`, ...); the
    /// running values stay until then.
    pub restart_needed: Vec<String>,
}

// === impl ReloadOutcome ===

impl ReloadOutcome {
    /// A refusal for one reason.
    pub fn refused(trigger: ReloadTrigger, why: &str) -> ReloadOutcome {
        ReloadOutcome {
            at: unix_now(),
            trigger,
            result: ReloadResult::Refused,
            errors: vec![why.to_string()],
            restart_needed: Vec::new(),
        }
    }
}

/// One account, without any token.
#[derive(Debug, Clone, Serialize)]
pub struct AccountView {
    pub upn: String,
    /// The tenant signed in to (configured, else the UPN's domain).
    pub tenant: String,
    /// `device-code`, `browser`, `certificate` or `secret`.
    pub flow: &'static str,
    /// `ready`, `failing`, `sign_in_required`, `sign_in_pending` or `signed_out`.
    pub state: &'static str,
    /// Consecutive failures (state `failing`).
    pub failures: Option<u32>,
    /// AADSTS code of the refusal (state `sign_in_required`).
    pub aadsts: Option<u32>,
    /// The device-code sign-in waiting for the user (state `sign_in_pending`).
    pub sign_in: Option<SignInView>,
    pub has_refresh_token: bool,
    /// Access tokens held, per audience.
    pub tokens: Vec<TokenView>,
    pub last_renewal: Option<RenewalView>,
    /// Unix seconds when the background renewal next runs; `null` when none is scheduled (no
    /// token held, audiences idle, or a sign-in needed): the next request renews on demand.
    pub next_renewal_at: Option<i64>,
    pub last_error: Option<String>,
}

/// A pending device-code sign-in: what the user enters where.
#[derive(Debug, Clone, Serialize)]
pub struct SignInView {
    pub user_code: String,
    pub verification_uri: String,
    /// Unix seconds when the code expires.
    pub expires_at: i64,
}

/// An access token's audience and expiry (never the token).
#[derive(Debug, Clone, Serialize)]
pub struct TokenView {
    pub audience: String,
    /// Unix seconds.
    pub expires_at: i64,
    pub expires_in_seconds: u64,
}

/// The last renewal attempt.
#[derive(Debug, Clone, Serialize)]
pub struct RenewalView {
    /// Unix seconds.
    pub at: i64,
    pub ok: bool,
    pub detail: String,
}

/// The upstream side.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamView {
    /// Where the default route comes from ([`crate::route::DefaultRouteView::source`]), without
    /// any URL's userinfo.
    pub source: String,
    /// The proxies the default route names and those remembered as bad, with their health.
    pub proxies: Vec<ProxyView>,
    /// The PAC in use; `null` without one.
    pub pac: Option<PacView>,
    /// Proxies that failed at connect level recently: tried last until the mark expires.
    pub bad_proxies: Vec<BadProxyView>,
}

/// One upstream proxy and its health.
#[derive(Debug, Clone, Serialize)]
pub struct ProxyView {
    /// `host:port` (never credentials).
    pub proxy: String,
    /// `healthy`, or `bad`: it failed at connect level and is tried last for `seconds_left`.
    pub health: &'static str,
    pub seconds_left: Option<u64>,
}

/// The PAC in use (from its loader's status).
#[derive(Debug, Clone, Serialize)]
pub struct PacView {
    /// The URL or file, without userinfo.
    pub source: String,
    /// `loading`, `loaded` or `failed`.
    pub state: &'static str,
    /// Unix seconds when the script in use was loaded; `null` before the first load.
    pub loaded_at: Option<i64>,
    /// The latest load or refresh failure (a previous script may still be in use).
    pub last_error: Option<String>,
    /// What a request gets while no script is loaded: `fail` or `direct`.
    pub on_failure: &'static str,
}

/// One remembered bad proxy.
#[derive(Debug, Clone, Serialize)]
pub struct BadProxyView {
    pub proxy: String,
    pub seconds_left: u64,
}

/// One federation domain.
#[derive(Debug, Clone, Serialize)]
pub struct StsView {
    pub domain: String,
    pub hosts: Vec<String>,
    pub last_error: Option<String>,
    pub failures: u32,
}

/// The local CA.
#[derive(Debug, Clone, Serialize)]
pub struct CaView {
    /// SHA-256 of the certificate (DER), upper-case hex pairs joined by `:`.
    pub fingerprint_sha256: String,
    /// Unix seconds.
    pub not_after: i64,
    pub permitted_domains: Vec<String>,
}

/// What is open now.
#[derive(Debug, Clone, Serialize)]
pub struct OpenView {
    pub connections: u64,
    pub tunnels: u64,
}

/// What the snapshot is read from: the running proxy's shared services.
#[derive(Debug)]
pub struct Sources {
    pub router: Arc<Router>,
    pub upstream: Arc<Upstream>,
    /// Interception (CA, token manager); `None` when off.
    pub intercept: Option<Arc<InterceptState>>,
    pub started: Instant,
    /// The configuration in use and the last reload, shared by every configuration's snapshot;
    /// `None` when the proxy cannot reload.
    pub config: Option<Arc<Mutex<ConfigView>>>,
    /// The admin token and the last action's outcome (`POST /action/...`), shared by every
    /// configuration's snapshot.
    pub actions: Arc<Actions>,
    /// Where the `reload` action asks for a reload (the task that also serves SIGHUP and file
    /// changes, so reloads stay one at a time); `None` when the proxy cannot reload.
    pub reload: Option<ReloadRequests>,
}

/// A reload asked for by the `reload` action: the outcome comes back on the enclosed sender.
pub type ReloadRequests =
    tokio::sync::mpsc::UnboundedSender<tokio::sync::oneshot::Sender<ReloadOutcome>>;

// === impl Sources ===

impl Sources {
    /// The snapshot now.
    pub fn status(&self) -> Status {
        let now = unix_now();
        let accounts = match &self.intercept {
            Some(state) => (state.tokens().accounts().iter())
                .map(|a| account_view(a, now))
                .collect(),
            None => Vec::new(),
        };
        Status {
            schema: SCHEMA,
            version: env!("CARGO_PKG_VERSION"),
            now,
            uptime_seconds: self.started.elapsed().as_secs(),
            accounts,
            upstream: self.upstream_view(),
            sts: self.sts(),
            intercepted_hosts: self.router.patterns().intercept.clone(),
            ca: self.intercept.as_ref().map(|s| ca_view(s)),
            recent_errors: crate::summary::recent_errors(),
            open: OpenView {
                connections: Open::Connection.count(),
                tunnels: Open::Tunnel.count(),
            },
            config: self.config.as_ref().map(|c| {
                c.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone()
            }),
            last_action: self.actions.last(),
        }
    }

    /// The local CA certificate (PEM), for `/exoproxy-ca.pem`.
    pub fn ca_pem(&self) -> Option<String> {
        let state = self.intercept.as_ref()?;
        Some(state.leaves().ca().cert_pem().to_string())
    }

    fn upstream_view(&self) -> UpstreamView {
        let route = self.router.default_route_view();
        let bad_proxies: Vec<BadProxyView> = (self.upstream.bad_proxies().into_iter())
            .map(|(proxy, left)| BadProxyView {
                proxy: proxy.to_string(),
                seconds_left: left.as_secs(),
            })
            .collect();
        let mut proxies: Vec<String> = route.proxies.iter().map(|p| p.to_string()).collect();
        for bad in &bad_proxies {
            if !proxies.contains(&bad.proxy) {
                proxies.push(bad.proxy.clone());
            }
        }
        UpstreamView {
            source: redact_userinfo(&route.source),
            proxies: (proxies.into_iter())
                .map(|proxy| proxy_view(proxy, &bad_proxies))
                .collect(),
            pac: route.pac.as_ref().map(pac_view),
            bad_proxies,
        }
    }

    fn sts(&self) -> Vec<StsView> {
        let Some(sts) = self.router.sts() else {
            return Vec::new();
        };
        sts.domains()
            .into_iter()
            .map(|(domain, d)| StsView {
                domain,
                hosts: d.hosts,
                last_error: d.last_error,
                failures: d.failures,
            })
            .collect()
    }
}

/// `now`: Unix seconds, to turn the token's seconds left into an expiry time.
fn account_view(summary: &AccountSummary, now: i64) -> AccountView {
    let (state, failures, aadsts, sign_in) = match &summary.status {
        AccountStatus::Ready => ("ready", None, None, None),
        AccountStatus::Failing { failures } => ("failing", Some(*failures), None, None),
        AccountStatus::SignInRequired { aadsts } => ("sign_in_required", None, *aadsts, None),
        AccountStatus::SignInPending {
            user_code,
            verification_uri,
            expires_in_seconds,
        } => (
            "sign_in_pending",
            None,
            None,
            Some(SignInView {
                user_code: user_code.clone(),
                verification_uri: verification_uri.clone(),
                expires_at: now.saturating_add(i64::try_from(*expires_in_seconds).unwrap_or(0)),
            }),
        ),
        AccountStatus::SignedOut => ("signed_out", None, None, None),
    };
    AccountView {
        upn: summary.upn.clone(),
        tenant: summary.tenant.clone(),
        flow: summary.flow,
        state,
        failures,
        aadsts,
        sign_in,
        has_refresh_token: summary.has_refresh_token,
        tokens: summary
            .tokens
            .iter()
            .map(|(audience, left)| TokenView {
                audience: audience.to_string(),
                expires_at: now.saturating_add(i64::try_from(*left).unwrap_or(i64::MAX)),
                expires_in_seconds: *left,
            })
            .collect(),
        last_renewal: summary.last_refresh.as_ref().map(|r| RenewalView {
            at: r.at,
            ok: r.ok,
            detail: r.detail.clone(),
        }),
        next_renewal_at: (summary.next_renewal_in_seconds)
            .map(|left| now.saturating_add(i64::try_from(left).unwrap_or(i64::MAX))),
        last_error: summary.last_error.clone(),
    }
}

/// `proxy` with its health from the bad-proxy memory.
fn proxy_view(proxy: String, bad: &[BadProxyView]) -> ProxyView {
    let left = bad
        .iter()
        .find(|b| b.proxy == proxy)
        .map(|b| b.seconds_left);
    ProxyView {
        proxy,
        health: if left.is_some() { "bad" } else { "healthy" },
        seconds_left: left,
    }
}

fn pac_view(status: &PacStatus) -> PacView {
    PacView {
        source: redact_userinfo(&status.source),
        state: match status.state {
            PacState::Loading => "loading",
            PacState::Loaded => "loaded",
            PacState::Failed => "failed",
        },
        loaded_at: status.loaded_at.map(|at| {
            at.duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        }),
        last_error: status.last_error.as_deref().map(redact_userinfo),
        on_failure: match status.on_failure {
            OnFailure::Fail => "fail",
            OnFailure::Direct => "direct",
        },
    }
}

/// `text` with the userinfo of every URL in it removed (`http://user:pw@pac.corp/x` →
/// `http://pac.corp/x`): a PAC or proxy URL may carry credentials, the status surface never does.
pub fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let authority_end = after
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace())
            .unwrap_or(after.len());
        let authority = &after[..authority_end];
        out.push_str(
            authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host),
        );
        rest = &after[authority_end..];
    }
    out.push_str(rest);
    out
}

fn ca_view(state: &InterceptState) -> CaView {
    let ca = state.leaves().ca();
    let digest = ring::digest::digest(&ring::digest::SHA256, ca.cert_der().as_ref());
    let fingerprint = digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    CaView {
        fingerprint_sha256: fingerprint,
        not_after: ca.not_after().unix_timestamp(),
        permitted_domains: ca.permitted_domains().to_vec(),
    }
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `2026-12-07T18:23:21Z` for Unix seconds.
pub fn rfc3339(at: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(at) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => at.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_removed_from_every_url_and_nothing_else() {
        for (text, want) in [
            (
                "http://alice:s3cret@pac.corp.test/proxy.pac",
                "http://pac.corp.test/proxy.pac",
            ),
            (
                "ie: PAC https://u@pac.corp.test:8443/a.pac?x=y@z",
                "ie: PAC https://pac.corp.test:8443/a.pac?x=y@z",
            ),
            (
                "fetch http://a:b@one.test failed; http://c:d@two.test/x",
                "fetch http://one.test failed; http://two.test/x",
            ),
            ("static upstream", "static upstream"),
            ("PAC C:\\pac\\corp.pac", "PAC C:\\pac\\corp.pac"),
            ("http://", "http://"),
        ] {
            assert_eq!(redact_userinfo(text), want, "{text}");
        }
    }

    #[test]
    fn a_proxy_is_bad_while_remembered_else_healthy() {
        let bad = [BadProxyView {
            proxy: "proxy-a.test:8080".into(),
            seconds_left: 42,
        }];
        let a = proxy_view("proxy-a.test:8080".into(), &bad);
        assert_eq!((a.health, a.seconds_left), ("bad", Some(42)));
        let b = proxy_view("proxy-b.test:8080".into(), &bad);
        assert_eq!((b.health, b.seconds_left), ("healthy", None));
    }
}

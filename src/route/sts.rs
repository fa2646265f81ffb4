//! Federation discovery: hosts of the company STS that must be reached DIRECT.
//!
//! Why: when a federated tenant's sign-in page reaches the company's ADFS (or other STS) through a
//! proxy, Windows Integrated Authentication breaks and the sign-in window stays blank
//! (docs/PROTOCOL.md#home-realm).
//! So the STS hosts are tunnelled DIRECT and never intercepted.
//!
//! Contract:
//! - Sans-IO parsing of the home-realm answers (docs/PROTOCOL.md#home-realm): MSAL's
//!   `/common/userrealm/{upn}?api-version=1.0` (`account_type`, `federation_protocol`,
//!   `federation_metadata_url`, `federation_active_auth_url`) and the legacy
//!   `/getuserrealm.srf?login={upn}&json=1` (`NameSpaceType`, `AuthURL`, …) → [`UserRealm`]
//!   → the STS host names ([`UserRealm::sts_hosts`]). Keys are matched case-insensitively.
//! - [`StsDirectory`] holds the explicit `direct_hosts` (exact names or `*.suffix`) and the hosts
//!   discovered per domain. [`StsDirectory::explain`] is the hot-path lookup: a read lock, an `Arc`
//!   clone and a few hash probes, never I/O; it returns the explanation for `Decision::why`, e.g.
//!   `federation STS for contoso.test, discovered`.
//! - [`StsDirectory::discover`] takes an injected async fetch (`app` wires the proxy's own client,
//!   `OutboundClient::get_realm`; discovery never dials by itself, docs/ARCHITECTURE.md), tries the
//!   1.0 endpoint then the legacy one, and on failure keeps the hosts it already knew: a failed
//!   discovery never blocks or reroutes requests. [`StsDirectory::run_refresher`]
//!   repeats it on a schedule with exponential back-off after failures ([`next_attempt_in`]).
//! - Discovery never adds a host matching `never_direct` (the intercepted Exchange and Entra hosts):
//!   a realm answer must not be able to switch off token injection for Exchange.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use crate::target::Host;

/// What kind of account a domain has in Entra ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NamespaceType {
    /// Passwords are checked by Entra ID itself: no STS to send DIRECT.
    Managed,
    /// Sign-in is redirected to the company's STS (ADFS, PingFederate, Okta, …).
    Federated,
    /// The domain is not known to Entra ID (or the answer said so).
    Unknown,
}

/// The parts of a home-realm answer that routing needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRealm {
    pub namespace: NamespaceType,
    pub domain: Option<String>,
    pub federation_protocol: Option<String>,
    /// STS URLs named by the answer, in the order of [`STS_URL_KEYS`].
    pub sts_urls: Vec<String>,
}

/// Keys of a realm answer that hold STS URLs (compared case-insensitively).
pub const STS_URL_KEYS: [&str; 5] = [
    "AuthURL",
    "federation_active_auth_url",
    "federation_metadata_url",
    "FederationMetadataUrl",
    "FederationActiveAuthUrl",
];

/// Discovery or parsing failed; the message is safe to log (no tokens, no bodies).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("STS discovery: {0}")]
pub struct StsError(pub String);

/// What the injected fetch returns: status and body of a GET.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// When discovery runs again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefreshPolicy {
    /// After a success (federation settings change rarely).
    pub refresh_every: Duration,
    /// First retry after a failure; doubles per consecutive failure…
    pub retry_min: Duration,
    /// …up to this.
    pub retry_max: Duration,
}

/// The discovery state of one domain, for logs and the status page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DomainState {
    /// STS hosts currently sent DIRECT for this domain (kept across failed refreshes).
    pub hosts: Vec<String>,
    pub namespace: Option<NamespaceType>,
    /// Hosts the realm named but `never_direct` refused.
    pub refused: Vec<String>,
    pub last_error: Option<String>,
    pub last_success: Option<Instant>,
    /// Consecutive failures since the last success.
    pub failures: u32,
}

/// Host → explanation, exact names and `*.suffix` patterns.
#[derive(Debug, Default)]
struct HostTable {
    exact: HashMap<Box<str>, Arc<str>>,
    /// Keyed by the suffix without `*.`; matches strict subdomains only (WinHTTP semantics).
    suffix: HashMap<Box<str>, Arc<str>>,
}

/// Explicit and discovered DIRECT hosts; shared as `Arc<StsDirectory>`.
#[derive(Debug)]
pub struct StsDirectory {
    explicit: HostTable,
    never_direct: HostTable,
    discovered: RwLock<Arc<HostTable>>,
    domains: Mutex<BTreeMap<String, DomainState>>,
    /// Base of the realm endpoints, `https://login.microsoftonline.com` (the emulator in tests).
    realm_base: String,
}

// === impl UserRealm ===

impl UserRealm {
    /// Parses either answer shape (JSON object).
    pub fn parse(body: &[u8]) -> Result<UserRealm, StsError> {
        let json: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| StsError(format!("realm answer is not JSON: {e}")))?;
        let obj = json
            .as_object()
            .ok_or_else(|| StsError("realm answer is not a JSON object".into()))?;
        let get = |key: &str| {
            obj.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .and_then(|(_, v)| v.as_str())
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        let kind = get("account_type")
            .or_else(|| get("NameSpaceType"))
            .ok_or_else(|| StsError("realm answer has no account_type/NameSpaceType".into()))?;
        let namespace = match kind.to_ascii_lowercase().as_str() {
            "managed" => NamespaceType::Managed,
            "federated" => NamespaceType::Federated,
            _ => NamespaceType::Unknown,
        };
        let mut sts_urls: Vec<String> = Vec::new();
        for url in STS_URL_KEYS.iter().filter_map(|k| get(k)) {
            if !sts_urls.iter().any(|u| u == url) {
                sts_urls.push(url.to_string());
            }
        }
        Ok(UserRealm {
            namespace,
            domain: get("domain_name")
                .or_else(|| get("DomainName"))
                .map(Into::into),
            federation_protocol: get("federation_protocol").map(Into::into),
            sts_urls,
        })
    }

    /// The host names of the STS URLs of a federated realm (none for managed or unknown ones).
    /// A URL that is not `https://`/`http://` with a valid host is an error, not skipped: it means the
    /// answer is not what we think it is.
    pub fn sts_hosts(&self) -> Result<Vec<String>, StsError> {
        if self.namespace != NamespaceType::Federated {
            return Ok(Vec::new());
        }
        let mut hosts: Vec<String> = Vec::new();
        for url in &self.sts_urls {
            let host = url_host(url)?;
            if !hosts.contains(&host) {
                hosts.push(host);
            }
        }
        Ok(hosts)
    }
}

/// The normalised host of an absolute `http(s)://` URL.
pub fn url_host(url: &str) -> Result<String, StsError> {
    let bad = |why: &str| StsError(format!("STS URL {url:?}: {why}"));
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("not absolute"))?;
    if !scheme.eq_ignore_ascii_case("https") && !scheme.eq_ignore_ascii_case("http") {
        return Err(bad("not http(s)"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(bad("userinfo is not allowed"));
    }
    let host = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => &authority[..i],
        _ => authority,
    };
    Host::parse(host)
        .map(|h| h.as_str_for_lookup())
        .map_err(|e| bad(&e.0))
}

/// The domain part of a UPN (or the input itself when it has no `@`), lower-cased.
pub fn domain_of(upn_or_domain: &str) -> String {
    let domain = upn_or_domain
        .rsplit_once('@')
        .map_or(upn_or_domain, |(_, d)| d);
    domain.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// `{base}/common/userrealm/{upn}?api-version=1.0` (MSAL's home-realm discovery).
pub fn user_realm_url(base: &str, upn: &str) -> String {
    format!(
        "{}/common/userrealm/{}?api-version=1.0",
        base.trim_end_matches('/'),
        percent_encode(upn)
    )
}

/// `{base}/getuserrealm.srf?login={upn}&json=1` (the legacy endpoint).
pub fn get_user_realm_url(base: &str, upn: &str) -> String {
    format!(
        "{}/getuserrealm.srf?login={}&json=1",
        base.trim_end_matches('/'),
        percent_encode(upn)
    )
}

/// Percent-encodes everything but RFC 3986 unreserved characters and `@` (a UPN stays readable).
fn percent_encode(s: &str) -> String {
    const UPN: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~')
        .remove(b'@');
    percent_encoding::utf8_percent_encode(s, UPN).to_string()
}

// === impl RefreshPolicy ===

impl Default for RefreshPolicy {
    fn default() -> Self {
        RefreshPolicy {
            refresh_every: Duration::from_secs(12 * 3600),
            retry_min: Duration::from_secs(30),
            retry_max: Duration::from_secs(30 * 60),
        }
    }
}

/// Delay before the next discovery: `refresh_every` after a success, else `retry_min` doubled per
/// consecutive failure, capped at `retry_max`.
pub fn next_attempt_in(policy: &RefreshPolicy, consecutive_failures: u32) -> Duration {
    if consecutive_failures == 0 {
        return policy.refresh_every;
    }
    let factor = 1u32 << (consecutive_failures - 1).min(16);
    policy
        .retry_min
        .saturating_mul(factor)
        .min(policy.retry_max)
}

// === impl HostTable ===

impl HostTable {
    /// Compiles `name` / `*.suffix` patterns; `why` gives each entry's explanation.
    fn compile(
        patterns: &[String],
        why: impl Fn(&str) -> String,
    ) -> Result<HostTable, Vec<String>> {
        let mut table = HostTable::default();
        let mut errors = Vec::new();
        for pattern in patterns {
            let p = pattern.trim();
            let (is_suffix, name) = match p.strip_prefix("*.") {
                Some(rest) => (true, rest),
                None => (false, p),
            };
            match Host::parse(name) {
                Ok(host) => {
                    let key: Box<str> = host.as_str_for_lookup().into();
                    let map = if is_suffix {
                        &mut table.suffix
                    } else {
                        &mut table.exact
                    };
                    map.entry(key).or_insert_with(|| why(p).into());
                }
                Err(e) => errors.push(format!("direct host {pattern:?}: {}", e.0)),
            }
        }
        if errors.is_empty() {
            Ok(table)
        } else {
            Err(errors)
        }
    }

    fn lookup(&self, host: &str) -> Option<&Arc<str>> {
        if let Some(why) = self.exact.get(host) {
            return Some(why);
        }
        if self.suffix.is_empty() {
            return None;
        }
        // Probe each parent domain: `a.b.c` → `b.c`, `c`.
        host.match_indices('.')
            .find_map(|(i, _)| self.suffix.get(&host[i + 1..]))
    }

    fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.suffix.is_empty()
    }
}

// === impl StsDirectory ===

impl StsDirectory {
    /// Compiles the explicit `direct_hosts` and the `never_direct` guard (both `name` or `*.suffix`).
    pub fn new(direct_hosts: &[String], never_direct: &[String]) -> Result<Self, Vec<String>> {
        let explicit = HostTable::compile(direct_hosts, |p| format!("direct_hosts entry {p}"));
        let never = HostTable::compile(never_direct, |p| format!("never direct: {p}"));
        let (explicit, never_direct) = match (explicit, never) {
            (Ok(a), Ok(b)) => (a, b),
            (a, b) => {
                let mut errors = a.err().unwrap_or_default();
                errors.extend(b.err().unwrap_or_default());
                return Err(errors);
            }
        };
        Ok(StsDirectory {
            explicit,
            never_direct,
            discovered: RwLock::new(Arc::new(HostTable::default())),
            domains: Mutex::new(BTreeMap::new()),
            realm_base: "https://login.microsoftonline.com".into(),
        })
    }

    /// Uses another realm endpoint base (sovereign clouds, the emulator).
    pub fn with_realm_base(mut self, base: impl Into<String>) -> Self {
        self.realm_base = base.into();
        self
    }

    /// Why `host` (normalised: lower case, no trailing dot) goes DIRECT, or `None`. Hot path.
    pub fn explain(&self, host: &str) -> Option<Arc<str>> {
        if let Some(why) = self.explicit.lookup(host) {
            return Some(why.clone());
        }
        let discovered = self
            .discovered
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        discovered.lookup(host).cloned()
    }

    /// [`explain`](Self::explain) for a parsed host.
    pub fn explain_host(&self, host: &Host) -> Option<Arc<str>> {
        self.explain(&host.as_str_for_lookup())
    }

    /// The discovery state of every domain seen so far.
    pub fn domains(&self) -> BTreeMap<String, DomainState> {
        self.lock_domains().clone()
    }

    /// Asks the realm endpoints about `upn_or_domain` and records the STS hosts of its domain.
    /// On failure the domain keeps the hosts it had; the error is recorded and returned.
    pub async fn discover<F, Fut>(
        &self,
        upn_or_domain: &str,
        fetch: F,
    ) -> Result<Vec<String>, StsError>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<FetchResponse, String>>,
    {
        let domain = domain_of(upn_or_domain);
        if domain.is_empty() {
            return Err(StsError(format!("no domain in {upn_or_domain:?}")));
        }
        let upn = if upn_or_domain.contains('@') {
            upn_or_domain.trim().to_string()
        } else {
            format!("user@{domain}")
        };
        let outcome = self
            .fetch_realm(&upn, &fetch)
            .await
            .and_then(|realm| Ok((realm.namespace, realm.sts_hosts()?)));
        match outcome {
            Ok((namespace, hosts)) => Ok(self.record_success(&domain, namespace, hosts)),
            Err(e) => {
                self.record_failure(&domain, &e);
                Err(e)
            }
        }
    }

    /// Tries the 1.0 endpoint, then the legacy one; the error names both failures.
    async fn fetch_realm<F, Fut>(&self, upn: &str, fetch: &F) -> Result<UserRealm, StsError>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<FetchResponse, String>>,
    {
        let mut failures = Vec::new();
        for url in [
            user_realm_url(&self.realm_base, upn),
            get_user_realm_url(&self.realm_base, upn),
        ] {
            let path = url.split('?').next().unwrap_or_default().to_string();
            match fetch(url).await {
                Ok(r) if r.status == 200 => match UserRealm::parse(&r.body) {
                    Ok(realm) => return Ok(realm),
                    Err(e) => failures.push(format!("{path}: {}", e.0)),
                },
                Ok(r) => failures.push(format!("{path}: HTTP {}", r.status)),
                Err(e) => failures.push(format!("{path}: {e}")),
            }
        }
        Err(StsError(failures.join("; ")))
    }

    fn record_success(
        &self,
        domain: &str,
        namespace: NamespaceType,
        hosts: Vec<String>,
    ) -> Vec<String> {
        let (allowed, refused): (Vec<String>, Vec<String>) = hosts
            .into_iter()
            .partition(|h| self.never_direct.lookup(h).is_none());
        if !refused.is_empty() {
            tracing::warn!(%domain, ?refused, "realm named STS hosts that are intercepted; not sending them DIRECT");
        }
        let mut domains = self.lock_domains();
        let state = domains.entry(domain.to_string()).or_default();
        state.hosts = allowed.clone();
        state.namespace = Some(namespace);
        state.refused = refused;
        state.last_error = None;
        state.last_success = Some(Instant::now());
        state.failures = 0;
        self.publish(&domains);
        allowed
    }

    fn record_failure(&self, domain: &str, error: &StsError) {
        tracing::warn!(%domain, %error, "STS discovery failed; keeping the hosts known so far");
        let mut domains = self.lock_domains();
        let state = domains.entry(domain.to_string()).or_default();
        state.last_error = Some(error.0.clone());
        state.failures = state.failures.saturating_add(1);
    }

    /// Rebuilds the discovered-host table from the domain map (called with the map locked, so
    /// concurrent discoveries publish in order).
    fn publish(&self, domains: &BTreeMap<String, DomainState>) {
        let mut table = HostTable::default();
        for (domain, state) in domains {
            let why: Arc<str> = format!("federation STS for {domain}, discovered").into();
            for host in &state.hosts {
                table
                    .exact
                    .entry(host.as_str().into())
                    .or_insert_with(|| why.clone());
            }
        }
        *self
            .discovered
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(table);
    }

    fn lock_domains(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, DomainState>> {
        self.domains
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts from what `previous` discovered for the domains of `accounts` (a configuration
    /// reload: their STS hosts stay DIRECT while the new refresher rediscovers them). Each host is
    /// checked against this directory's guard again; domains no longer configured are left out.
    pub fn inherit(&self, previous: &StsDirectory, accounts: &[String]) {
        let wanted: Vec<String> = accounts.iter().map(|a| domain_of(a)).collect();
        let mut domains = self.lock_domains();
        for (domain, mut state) in previous.domains() {
            if !wanted.contains(&domain) {
                continue;
            }
            let (allowed, refused): (Vec<String>, Vec<String>) =
                (state.hosts.drain(..)).partition(|h| self.never_direct.lookup(h).is_none());
            state.hosts = allowed;
            state.refused.extend(refused);
            domains.insert(domain, state);
        }
        self.publish(&domains);
    }

    /// True when no host would be sent DIRECT (neither explicit nor discovered).
    pub fn is_empty(&self) -> bool {
        self.explicit.is_empty()
            && self
                .discovered
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .is_empty()
    }

    /// Discovers every account now, then again per `policy`, forever (spawn it; abort to stop).
    pub async fn run_refresher<F, Fut>(
        self: Arc<Self>,
        accounts: Vec<String>,
        fetch: F,
        policy: RefreshPolicy,
    ) where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<FetchResponse, String>>,
    {
        let mut due: Vec<(String, Instant)> =
            accounts.into_iter().map(|a| (a, Instant::now())).collect();
        loop {
            let now = Instant::now();
            for (account, at) in due.iter_mut().filter(|(_, at)| *at <= now) {
                let failures = match self.discover(account, &fetch).await {
                    Ok(_) => 0,
                    Err(_) => self
                        .lock_domains()
                        .get(&domain_of(account))
                        .map_or(1, |s| s.failures),
                };
                *at = Instant::now() + next_attempt_in(&policy, failures);
            }
            match due.iter().map(|(_, at)| *at).min() {
                Some(next) => tokio::time::sleep_until(next).await,
                None => return,
            }
        }
    }
}

#[cfg(test)]
mod tests;

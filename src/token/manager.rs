//! The token library the proxy and the CLI use: `token(upn, audience)`, `login`, `logout`, `accounts`,
//! and `invalidate_and_reacquire` for a resource's 401 or CAE claims challenge.
//!
//! Contract:
//! - A valid cached token is returned at once, even while the IdP is down (FLT-5); otherwise one token
//!   call per (account, audience) is in flight no matter how many callers wait (LOAD-11), and no caller
//!   waits longer than `request_wait` (15 s) before getting [`TokenError::Unavailable`] with a retry hint.
//! - Background refreshers renew ahead of expiry (`schedule::refresh_at`) with backoff (FLT-6), for
//!   audiences asked for within the account's `idle_renewal` (1 h); an idle audience is renewed by its
//!   next request.
//! - `invalid_grant` parks the account in "sign-in required" until `login` (FLT-11), in this process
//!   or in another one: a blocked account looks at its cache file (one `stat`) before answering and
//!   adopts a newer sign-in written there (`Account::adopt_newer_sign_in`).
//! - A refusal of one audience's scope that retrying cannot fix (`invalid_scope`, AADSTS650057, …) is
//!   final for that account and audience until the configuration changes or a new sign-in succeeds;
//!   the account's other audiences are not affected.
//! - A delegated account without a token starts a device-code sign-in on demand; callers get
//!   [`TokenError::SignInPending`] with the code and URL to show.
//!
//! # Wiring
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use bytes::Bytes;
//! use exoproxy::error::ProxyError;
//! use exoproxy::token::{AccountConfig, BoxFuture, Cloud, ManagerSettings, TokenManager};
//! use exoproxy::token::{Transport, TransportError};
//!
//! /// Sends IdP requests through the proxy's upstream chain (corporate proxy, PAC, DIRECT).
//! struct Upstream;
//!
//! impl Transport for Upstream {
//!     fn send(&self, _req: http::Request<Bytes>)
//!     -> BoxFuture<'_, Result<http::Response<Bytes>, TransportError>> {
//!         Box::pin(async { Err(TransportError::Other("wire me".into())) })
//!     }
//! }
//!
//! # async fn handler() -> Result<(), ProxyError> {
//! let state_dir = std::path::Path::new("/home/admin/.local/state/exoproxy");
//! let tokens = TokenManager::new(Arc::new(Upstream), Some(state_dir), ManagerSettings::default())
//!     .map_err(|e| ProxyError::Internal(e.to_string()))?;
//! tokens.add_account(AccountConfig::new("admin@contoso.com"));
//! // Per request: the audience of the intercepted host, never another host's token (TOK-11).
//! let audience = Cloud::Global.audience_for_host("outlook.office365.com").ok_or_else(|| {
//!     ProxyError::Internal("not an Exchange host".into())
//! })?;
//! let token = tokens.token("admin@contoso.com", &audience).await?; // TokenError → ProxyError
//! # drop(token);
//! # Ok(())
//! # }
//! ```

mod flight;
mod live;
mod signin;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::token::account::{AccountConfig, Audience, Flow, normalize_upn};
use crate::token::cache::{RefreshRecord, TokenCache};
use crate::token::error::TokenError;
use crate::token::schedule::Jitter;
use crate::token::secret::AccessToken;
use crate::token::transport::{TOKEN_CALL_TIMEOUT, Transport};
use live::{Account, FlightResult, Phase, Shared};

pub use signin::{SignInPrompt, check_user};

/// Tunables; the defaults are the production values.
#[derive(Debug, Clone)]
pub struct ManagerSettings {
    /// Longest a `token()` caller waits for a token call (FLT-5).
    pub request_wait: Duration,
    /// Whole-request limit of one IdP call.
    pub call_timeout: Duration,
    /// A cached token is served only if it stays valid this long (no expired tokens on the wire).
    pub expiry_margin: Duration,
    /// Retry jitter (tests use [`Jitter::None`]).
    pub jitter: Jitter,
    /// Use OIDC discovery (`false`: the Entra URL layout under the authority).
    pub discovery: bool,
    /// Start a device-code sign-in when a delegated account has no token.
    pub auto_sign_in: bool,
    /// Open the system browser for the browser flow.
    pub open_browser: bool,
}

/// A token-free view of one account, for `exoproxy accounts` and the admin page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSummary {
    /// The account.
    pub upn: String,
    /// The tenant signed in to (configured, else the UPN's domain).
    pub tenant: String,
    /// How it obtains tokens ([`Flow::name`]: `device-code`, `browser`, `certificate`, `secret`).
    pub flow: &'static str,
    /// Seconds until the background refresher next renews a token of this account (the earliest
    /// of its audiences; 0: due now); `None` when nothing is scheduled (no token held, audiences
    /// idle, signed out or a sign-in needed): the next request then renews on demand.
    pub next_renewal_in_seconds: Option<u64>,
    /// Sign-in state.
    pub status: AccountStatus,
    /// Whether a refresh token is held.
    pub has_refresh_token: bool,
    /// Access tokens held: audience and seconds of validity left.
    pub tokens: Vec<(Audience, u64)>,
    /// The last refresh attempt.
    pub last_refresh: Option<RefreshRecord>,
    /// The last failure.
    pub last_error: Option<String>,
}

/// Where an account stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountStatus {
    /// Tokens can be served or obtained without the user.
    Ready,
    /// Token calls are failing; `failures` in a row.
    Failing {
        /// Consecutive failures.
        failures: u32,
    },
    /// A new interactive sign-in is needed.
    SignInRequired {
        /// AADSTS code of the refusal.
        aadsts: Option<u32>,
    },
    /// A device-code sign-in waits for the user.
    SignInPending {
        /// Code to enter.
        user_code: String,
        /// Where.
        verification_uri: String,
        /// Seconds until the code expires.
        expires_in_seconds: u64,
    },
    /// Never signed in (or logged out).
    SignedOut,
}

/// A started sign-in: show `prompt`, then `wait` for the outcome.
#[derive(Debug)]
pub struct LoginHandle {
    /// What the user must do.
    pub prompt: SignInPrompt,
    upn: String,
    done: Option<watch::Receiver<FlightResult>>,
}

/// Tokens for every configured account.
#[derive(Clone)]
pub struct TokenManager {
    shared: Arc<Shared>,
    accounts: Arc<Mutex<HashMap<String, Arc<Account>>>>,
}

// === impl ManagerSettings ===

impl Default for ManagerSettings {
    fn default() -> Self {
        Self {
            request_wait: Duration::from_secs(15),
            call_timeout: TOKEN_CALL_TIMEOUT,
            expiry_margin: Duration::from_secs(30),
            jitter: Jitter::Full,
            discovery: true,
            auto_sign_in: true,
            open_browser: true,
        }
    }
}

// === impl TokenManager ===

impl TokenManager {
    /// A manager over `transport`; `state_dir` holds `tokens/` (`None`: memory only).
    pub fn new(
        transport: Arc<dyn Transport>,
        state_dir: Option<&Path>,
        settings: ManagerSettings,
    ) -> std::io::Result<Self> {
        let cache = state_dir.map(TokenCache::open).transpose()?;
        Ok(Self {
            shared: Arc::new(Shared {
                transport,
                cache,
                settings,
            }),
            accounts: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// Registers (or reconfigures) an account; its cached tokens are loaded from disk.
    pub fn add_account(&self, config: AccountConfig) {
        let key = config.key();
        let mut accounts = self.lock_accounts();
        if let Some(existing) = accounts.get(&key) {
            existing.set_config(config);
            return;
        }
        let account = Arc::new(Account::new(config, self.shared.clone()));
        account.load_from_cache();
        accounts.insert(key, account);
    }

    /// A fresh access token for `upn` at `audience` (see the module contract).
    pub async fn token(&self, upn: &str, audience: &Audience) -> Result<AccessToken, TokenError> {
        let account = self.account(upn);
        let slot = account.slot(audience);
        slot.touch(account.config().idle_renewal);
        if let Some(token) = slot.fresh(self.shared.settings.expiry_margin) {
            return Ok(token);
        }
        if let Some(err) = slot.refused().or_else(|| account.phase_error()) {
            // `exoproxy login` in another process may have signed in again since.
            if !account.adopt_newer_sign_in() {
                return Err(err);
            }
            if let Some(token) = slot.fresh(self.shared.settings.expiry_margin) {
                return Ok(token);
            }
        }
        let config = account.config();
        if config.flow.is_delegated() && account.state().refresh_token.is_none() {
            // `exoproxy login` in another process may have signed in since the cache was read.
            account.load_from_cache();
            if account.state().refresh_token.is_none() {
                return self.sign_in_on_demand(&account, audience).await;
            }
        }
        let rx = flight::join_or_start_gated(&account, &slot, None)?;
        self.wait_flight(&account, rx).await?;
        slot.fresh(Duration::ZERO)
            .ok_or_else(|| TokenError::Unavailable {
                upn: config.upn.clone(),
                detail: "the new token expired immediately".into(),
                retry_after: None,
            })
    }

    /// Drops `rejected` (the token a resource answered 401 / `insufficient_claims` to) and obtains a new
    /// one, passing `claims` (the decoded challenge JSON) to the IdP. Callers retry their request once.
    pub async fn invalidate_and_reacquire(
        &self,
        upn: &str,
        audience: &Audience,
        rejected: &AccessToken,
        claims: Option<String>,
    ) -> Result<AccessToken, TokenError> {
        let account = self.account(upn);
        let slot = account.slot(audience);
        slot.touch(account.config().idle_renewal);
        slot.drop_if(rejected);
        if let Some(token) = slot.fresh(self.shared.settings.expiry_margin) {
            return Ok(token); // someone already replaced it
        }
        if let Some(err) = account.phase_error() {
            return Err(err);
        }
        let rx = flight::join_or_start(&account, &slot, claims);
        self.wait_flight(&account, rx).await?;
        slot.fresh(Duration::ZERO)
            .ok_or_else(|| TokenError::Unavailable {
                upn: upn.to_string(),
                detail: "no token after re-acquisition".into(),
                retry_after: None,
            })
    }

    /// Starts a sign-in (`flow` overrides the configured one) and returns what to show the user.
    pub async fn begin_login(
        &self,
        upn: &str,
        flow: Option<Flow>,
    ) -> Result<LoginHandle, TokenError> {
        let account = self.account(upn);
        let mut config = account.config();
        if let Some(flow) = flow {
            config.flow = flow;
        }
        account.set_config(config.clone());
        let audience = config.default_audience();
        let upn = config.upn.clone();
        let (prompt, done) = match &config.flow {
            Flow::DeviceCode => {
                let (prompt, rx) = signin::start_device(&account, &audience).await?;
                (SignInPrompt::Device(prompt), Some(rx))
            }
            Flow::Browser => {
                let (url, rx) = signin::start_browser(&account, &audience).await?;
                (SignInPrompt::Browser { url }, Some(rx))
            }
            _ => {
                self.token(&upn, &audience).await?;
                (SignInPrompt::None, None)
            }
        };
        Ok(LoginHandle { prompt, upn, done })
    }

    /// Signs in and waits until done (device code: logs the code; browser: opens it).
    pub async fn login(&self, upn: &str, flow: Option<Flow>) -> Result<AccountSummary, TokenError> {
        let handle = self.begin_login(upn, flow).await?;
        handle.wait().await?;
        self.summary_of(upn).ok_or_else(|| TokenError::Config {
            upn: upn.to_string(),
            detail: "account vanished during sign-in".into(),
        })
    }

    /// Wipes the account's tokens from memory and disk and stops its background tasks (TOK-9).
    pub fn logout(&self, upn: &str) -> std::io::Result<()> {
        let key = normalize_upn(upn);
        if let Some(account) = self.lock_accounts().get(&key) {
            account.forget();
        }
        match &self.shared.cache {
            Some(cache) => cache.remove(upn),
            None => Ok(()),
        }
    }

    /// Signs the account out for good (the admin action `signout`, `exoproxy logout` through the
    /// running proxy): as [`Self::logout`], and until a new sign-in (`begin_login`, or one another
    /// process writes to the cache) its requests get [`TokenError::SignInRequired`] instead of a new
    /// device code, and nothing renews it.
    pub fn sign_out(&self, upn: &str) -> std::io::Result<()> {
        self.logout(upn)?;
        self.account(upn).state().phase = Phase::SignedOut;
        Ok(())
    }

    /// Renews the account's tokens now, ignoring any backoff: every audience it holds a token for,
    /// else its default audience. Returns the audiences renewed; an account that needs a sign-in
    /// (or is signed out) gets that error without a call.
    pub async fn renew_now(&self, upn: &str) -> Result<Vec<Audience>, TokenError> {
        let account = self.account(upn);
        if let Some(err) = account.phase_error() {
            return Err(err);
        }
        let config = account.config();
        if config.flow.is_delegated() && account.state().refresh_token.is_none() {
            return Err(TokenError::SignInRequired {
                upn: config.upn.clone(),
                aadsts: None,
                detail: "not signed in".into(),
            });
        }
        let mut audiences: Vec<Audience> = (account.slots().iter())
            .filter(|slot| slot.token().is_some())
            .map(|slot| slot.audience.clone())
            .collect();
        if audiences.is_empty() {
            audiences.push(config.default_audience());
        }
        audiences.sort_by_key(ToString::to_string);
        for audience in &audiences {
            let slot = account.slot(audience);
            let rx = flight::join_or_start(&account, &slot, None);
            self.wait_flight(&account, rx).await?;
        }
        Ok(audiences)
    }

    /// Every known account (configured or cached on disk), without secrets.
    pub fn accounts(&self) -> Vec<AccountSummary> {
        if let Some(cache) = &self.shared.cache {
            for upn in cache.list() {
                let _ = self.account(&upn);
            }
        }
        let mut upns: Vec<String> = self.lock_accounts().values().map(|a| a.upn()).collect();
        upns.sort();
        upns.iter().filter_map(|upn| self.summary_of(upn)).collect()
    }

    fn summary_of(&self, upn: &str) -> Option<AccountSummary> {
        let account = self.lock_accounts().get(&normalize_upn(upn))?.clone();
        let tokens = account
            .slots()
            .iter()
            .filter_map(|slot| {
                let live = slot.token()?;
                let left = live
                    .expires
                    .saturating_duration_since(tokio::time::Instant::now());
                Some((slot.audience.clone(), left.as_secs()))
            })
            .collect::<Vec<_>>();
        // Before `state()`: the refresher's schedule takes that lock itself.
        let next_renewal = flight::next_renewal(&account);
        let config = account.config();
        let state = account.state();
        let status = match &state.phase {
            Phase::SignInRequired(mark) => AccountStatus::SignInRequired {
                aadsts: mark.aadsts,
            },
            Phase::SignInPending(p) => AccountStatus::SignInPending {
                user_code: p.user_code.clone(),
                verification_uri: p.verification_uri.clone(),
                expires_in_seconds: p.remaining().as_secs(),
            },
            Phase::SignedOut => AccountStatus::SignedOut,
            Phase::Ready if state.backoff.failures() > 0 => AccountStatus::Failing {
                failures: state.backoff.failures(),
            },
            Phase::Ready if state.refresh_token.is_none() && tokens.is_empty() => {
                AccountStatus::SignedOut
            }
            Phase::Ready => AccountStatus::Ready,
        };
        Some(AccountSummary {
            upn: account.upn(),
            tenant: config.tenant(),
            flow: config.flow.name(),
            next_renewal_in_seconds: next_renewal.map(|at| {
                at.saturating_duration_since(tokio::time::Instant::now())
                    .as_secs()
            }),
            status,
            has_refresh_token: state.refresh_token.is_some(),
            tokens,
            last_refresh: state.last_refresh.clone(),
            last_error: state.last_error.clone(),
        })
    }

    /// The account for `upn`, created with default settings (device code) when not configured.
    fn account(&self, upn: &str) -> Arc<Account> {
        let key = normalize_upn(upn);
        if let Some(account) = self.lock_accounts().get(&key) {
            return account.clone();
        }
        self.add_account(AccountConfig::new(upn.trim()));
        self.lock_accounts()
            .get(&key)
            .cloned()
            .unwrap_or_else(|| Arc::new(Account::new(AccountConfig::new(upn), self.shared.clone())))
    }

    async fn sign_in_on_demand(
        &self,
        account: &Arc<Account>,
        audience: &Audience,
    ) -> Result<AccessToken, TokenError> {
        let upn = account.upn();
        if !self.shared.settings.auto_sign_in {
            let detail = account
                .state()
                .last_error
                .clone()
                .unwrap_or_else(|| "no token for this account".into());
            return Err(TokenError::SignInRequired {
                upn,
                aadsts: None,
                detail,
            });
        }
        let (prompt, _) = signin::start_device(account, audience).await?;
        Err(TokenError::SignInPending { upn, prompt })
    }

    async fn wait_flight(
        &self,
        account: &Account,
        mut rx: watch::Receiver<FlightResult>,
    ) -> Result<(), TokenError> {
        let wait = self.shared.settings.request_wait;
        match tokio::time::timeout(wait, rx.wait_for(Option::is_some)).await {
            Ok(Ok(result)) => result.clone().unwrap_or(Ok(())),
            Ok(Err(_)) => Err(TokenError::Unavailable {
                upn: account.upn(),
                detail: "the token request was cancelled".into(),
                retry_after: Some(Duration::from_secs(1)),
            }),
            Err(_) => Err(TokenError::Unavailable {
                upn: account.upn(),
                detail: format!(
                    "the identity provider did not answer within {wait:?}; still trying in the background"
                ),
                retry_after: Some(Duration::from_secs(5)),
            }),
        }
    }

    fn lock_accounts(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Account>>> {
        self.accounts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl std::fmt::Debug for TokenManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenManager")
            .field("accounts", &self.lock_accounts().keys().collect::<Vec<_>>())
            .finish()
    }
}

// === impl LoginHandle ===

impl LoginHandle {
    /// Waits for the sign-in to finish.
    pub async fn wait(self) -> Result<(), TokenError> {
        let Some(mut done) = self.done else {
            return Ok(());
        };
        match done.wait_for(Option::is_some).await {
            Ok(result) => result.clone().unwrap_or(Ok(())),
            Err(_) => Err(TokenError::SignInFailed {
                upn: self.upn,
                detail: "the sign-in was cancelled".into(),
            }),
        }
    }
}

//! Per-account live state: the refresh token, the sign-in phase, retry bookkeeping and one [`Slot`] of
//! access token per audience; plus persistence of that state to the cache.
//!
//! Contract: locks here are std mutexes held for a few field reads or writes, never across an await;
//! the async `grant_lock` serialises everything that uses or replaces the refresh token.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::ManagerSettings;
use crate::token::account::{AccountConfig, Audience};
use crate::token::cache::{
    CachedAccount, Load, RefreshRecord, SignInMark, StoredAccessToken, TokenCache, unix_now,
};
use crate::token::error::{DevicePrompt, TokenError};
use crate::token::oauth::Endpoints;
use crate::token::schedule::{Backoff, refresh_at};
use crate::token::secret::{AccessToken, RefreshToken};
use crate::token::transport::Transport;

/// What every account shares: the transport, the cache and the settings.
pub(crate) struct Shared {
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) cache: Option<TokenCache>,
    pub(crate) settings: ManagerSettings,
}

/// The result a flight publishes to everyone waiting on it.
pub(crate) type FlightResult = Option<Result<(), TokenError>>;

/// One account's live state.
pub(crate) struct Account {
    pub(crate) shared: Arc<Shared>,
    config: Mutex<AccountConfig>,
    pub(crate) state: Mutex<State>,
    slots: Mutex<HashMap<Audience, Arc<Slot>>>,
    /// Cached OIDC discovery result.
    pub(crate) endpoints: tokio::sync::Mutex<Option<Endpoints>>,
    /// Serialises refresh-token use, rotation and persistence (TOK-8).
    pub(crate) grant_lock: tokio::sync::Mutex<()>,
    /// Serialises starting an interactive sign-in, so concurrent requests start at most one.
    pub(crate) sign_in_lock: tokio::sync::Mutex<()>,
    /// The running sign-in task (device polling or browser wait), aborted by logout.
    pub(crate) sign_in_task: Mutex<Option<(AbortHandle, watch::Receiver<FlightResult>)>>,
    /// Bumped by logout: a flight that started before must not store (or persist) its tokens.
    generation: AtomicU64,
    /// The cache file's stamp when this process last looked for another process's sign-in.
    cache_seen: Mutex<Option<(SystemTime, u64)>>,
}

/// Mutable per-account fields.
pub(crate) struct State {
    pub(crate) refresh_token: Option<RefreshToken>,
    pub(crate) phase: Phase,
    pub(crate) backoff: Backoff,
    /// No token call before this instant (backoff / Retry-After).
    pub(crate) next_attempt: Option<Instant>,
    pub(crate) last_refresh: Option<RefreshRecord>,
    /// Last failure, for messages and `accounts`.
    pub(crate) last_error: Option<String>,
}

/// Where the account stands with respect to signing in.
#[derive(Debug, Clone)]
pub(crate) enum Phase {
    /// Tokens can be obtained without the user (or none were ever obtained).
    Ready,
    /// The IdP refused the grant: nothing happens until a new sign-in (FLT-11).
    SignInRequired(SignInMark),
    /// A device-code sign-in is waiting for the user.
    SignInPending(DevicePrompt),
    /// Signed out by the admin ([`super::TokenManager::sign_out`]): no token calls, no on-demand
    /// sign-in, until a new sign-in succeeds (kept in memory; the cache file is gone).
    SignedOut,
}

/// The access token for one audience, its single-flight and its refresher.
pub(crate) struct Slot {
    pub(crate) audience: Audience,
    token: Mutex<Option<LiveToken>>,
    flight: Mutex<Option<watch::Receiver<FlightResult>>>,
    pub(crate) wake: Notify,
    refresher: Mutex<Option<AbortHandle>>,
    /// A refusal retrying cannot fix: returned without a call until cleared.
    refused: Mutex<Option<TokenError>>,
    /// When a caller last asked for this audience: idle audiences are not renewed in the background.
    last_used: Mutex<Instant>,
}

/// An access token with its validity on both clocks (FLT-17): the monotonic clock is immune to wall-clock
/// jumps (NTP), the wall clock notices a suspend/hibernate (the monotonic clock stops while asleep). A
/// token is as valid as the *earlier* of the two expiries says.
#[derive(Clone)]
pub(crate) struct LiveToken {
    pub(crate) token: AccessToken,
    pub(crate) issued: Instant,
    pub(crate) expires: Instant,
    /// Unix seconds.
    pub(crate) expires_wall: i64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

// === impl Account ===

impl Account {
    pub(crate) fn new(config: AccountConfig, shared: Arc<Shared>) -> Self {
        let backoff = Backoff::new(shared.settings.jitter);
        Self {
            shared,
            config: Mutex::new(config),
            state: Mutex::new(State {
                refresh_token: None,
                phase: Phase::Ready,
                backoff,
                next_attempt: None,
                last_refresh: None,
                last_error: None,
            }),
            slots: Mutex::new(HashMap::new()),
            endpoints: tokio::sync::Mutex::new(None),
            grant_lock: tokio::sync::Mutex::new(()),
            sign_in_lock: tokio::sync::Mutex::new(()),
            sign_in_task: Mutex::new(None),
            generation: AtomicU64::new(0),
            cache_seen: Mutex::new(None),
        }
    }

    pub(crate) fn config(&self) -> AccountConfig {
        lock(&self.config).clone()
    }

    /// Replaces the configuration; cached endpoints are dropped since the authority may have changed, and
    /// final refusals are forgotten since the scope may have.
    pub(crate) fn set_config(&self, config: AccountConfig) {
        *lock(&self.config) = config;
        self.clear_refusals();
        if let Ok(mut endpoints) = self.endpoints.try_lock() {
            *endpoints = None;
        }
    }

    pub(crate) fn upn(&self) -> String {
        lock(&self.config).upn.clone()
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// The slot for `audience`, created (with its refresher) on first use.
    pub(crate) fn slot(self: &Arc<Self>, audience: &Audience) -> Arc<Slot> {
        let mut slots = lock(&self.slots);
        if let Some(slot) = slots.get(audience) {
            let slot = slot.clone();
            drop(slots);
            if !slot.has_refresher() {
                // Created outside a runtime (e.g. by `accounts()`): start the refresher now.
                super::flight::spawn_refresher(self, &slot);
            }
            return slot;
        }
        let slot = Arc::new(Slot::new(audience.clone()));
        slots.insert(audience.clone(), slot.clone());
        drop(slots);
        super::flight::spawn_refresher(self, &slot);
        slot
    }

    /// Forgets every audience's final refusal (a new configuration or sign-in may fix it).
    pub(crate) fn clear_refusals(&self) {
        for slot in self.slots() {
            slot.set_refused(None);
        }
    }

    pub(crate) fn slots(&self) -> Vec<Arc<Slot>> {
        lock(&self.slots).values().cloned().collect()
    }

    /// Error for the current phase, if it blocks token calls.
    pub(crate) fn phase_error(&self) -> Option<TokenError> {
        let upn = self.upn();
        match &self.state().phase {
            Phase::Ready => None,
            Phase::SignInRequired(mark) => Some(TokenError::SignInRequired {
                upn,
                aadsts: mark.aadsts,
                detail: mark.detail.clone(),
            }),
            Phase::SignInPending(prompt) if prompt.remaining() > Duration::ZERO => {
                Some(TokenError::SignInPending {
                    upn,
                    prompt: prompt.clone(),
                })
            }
            Phase::SignInPending(_) => None,
            Phase::SignedOut => Some(TokenError::SignInRequired {
                upn,
                aadsts: None,
                detail: "signed out".into(),
            }),
        }
    }

    /// Restores the persisted state (refresh token, access tokens, sign-in mark).
    pub(crate) fn load_from_cache(self: &Arc<Self>) {
        let Some(cache) = &self.shared.cache else {
            return;
        };
        match cache.load(&self.upn()) {
            Load::Missing => {}
            Load::Quarantined { reason, .. } => {
                let advice = if reason.contains("sign in again") {
                    ""
                } else {
                    "; sign in again"
                };
                self.state().last_error =
                    Some(format!("the token cache was unusable ({reason}){advice}"));
            }
            Load::Loaded(cached) => self.restore(*cached),
        }
    }

    /// Adopts a sign-in that another process (`exoproxy login`) wrote to the cache since this one last
    /// looked: a refresh token other than ours, without a sign-in-required mark. Called while the
    /// account is blocked (sign-in required, or an audience refused) and before parking it, so a new
    /// sign-in is picked up at once instead of after a restart. Cheap when nothing
    /// changed: one `stat` of the account's file. True when the account was unblocked.
    pub(crate) fn adopt_newer_sign_in(self: &Arc<Self>) -> bool {
        let Some(cache) = &self.shared.cache else {
            return false;
        };
        let upn = self.upn();
        let stamp = cache.stamp(&upn);
        if stamp.is_none() || std::mem::replace(&mut *lock(&self.cache_seen), stamp) == stamp {
            return false;
        }
        let Load::Loaded(cached) = cache.load(&upn) else {
            return false;
        };
        let newer = match (&cached.refresh_token, &self.state().refresh_token) {
            (Some(theirs), ours) => ours.as_ref() != Some(theirs),
            (None, _) => false,
        };
        if !newer || cached.sign_in_required.is_some() {
            return false;
        }
        tracing::info!(account = %upn, "a new sign-in was found in the token cache: using it");
        {
            let mut state = self.state();
            state.phase = Phase::Ready;
            state.backoff.record_success();
            state.next_attempt = None;
            state.last_error = None;
        }
        self.clear_refusals();
        for slot in self.slots() {
            slot.set_token(None);
        }
        self.restore(*cached);
        true
    }

    fn restore(self: &Arc<Self>, cached: CachedAccount) {
        {
            let mut state = self.state();
            state.refresh_token = cached.refresh_token;
            state.last_refresh = cached.last_refresh;
            if let Some(mark) = cached.sign_in_required {
                state.phase = Phase::SignInRequired(mark);
            }
        }
        let (now, wall) = (Instant::now(), unix_now());
        for stored in cached.access_tokens {
            let Some(left) = secs_until(stored.expires_at, wall) else {
                continue;
            };
            let age = secs_until(wall, stored.issued_at).unwrap_or_default();
            let live = LiveToken {
                token: stored.token,
                issued: now.checked_sub(age).unwrap_or(now),
                expires: now + left,
                expires_wall: stored.expires_at,
            };
            self.slot(&stored.audience).set_token(Some(live));
        }
    }

    /// What goes to disk: `refresh_token` is passed explicitly so a rotated one is written before the
    /// old one is dropped from memory (TOK-8).
    pub(crate) fn snapshot(&self, refresh_token: Option<RefreshToken>) -> CachedAccount {
        let (now, wall) = (Instant::now(), unix_now());
        let to_wall = |at: Instant, later: bool| {
            let delta = if later {
                at.saturating_duration_since(now)
            } else {
                now.saturating_duration_since(at)
            };
            let secs = i64::try_from(delta.as_secs()).unwrap_or(i64::MAX / 2);
            if later { wall + secs } else { wall - secs }
        };
        let access_tokens = self
            .slots()
            .iter()
            .filter_map(|slot| {
                let live = slot.token()?;
                Some(StoredAccessToken {
                    audience: slot.audience.clone(),
                    token: live.token,
                    issued_at: to_wall(live.issued, false),
                    expires_at: to_wall(live.expires, true).min(live.expires_wall),
                })
            })
            .collect();
        let state = self.state();
        CachedAccount {
            upn: self.upn(),
            refresh_token,
            access_tokens,
            sign_in_required: match &state.phase {
                Phase::SignInRequired(mark) => Some(mark.clone()),
                _ => None,
            },
            last_refresh: state.last_refresh.clone(),
        }
    }

    /// Writes the snapshot; a failure is logged and the in-memory state keeps serving (FLT-18).
    pub(crate) fn persist(&self, snapshot: &CachedAccount) {
        let Some(cache) = &self.shared.cache else {
            return;
        };
        if let Err(e) = cache.save(snapshot) {
            tracing::warn!(account = %snapshot.upn, error = %e,
                "token cache not saved: still serving from memory, will retry on the next refresh");
        }
    }

    /// Persists the current state (refresh token as it is now).
    pub(crate) fn persist_current(&self) {
        let rt = self.state().refresh_token.clone();
        let snapshot = self.snapshot(rt);
        self.persist(&snapshot);
    }

    /// Stops every background task of this account.
    pub(crate) fn shutdown(&self) {
        for slot in lock(&self.slots).drain().map(|(_, slot)| slot) {
            slot.stop();
        }
        if let Some((task, _)) = lock(&self.sign_in_task).take() {
            task.abort();
        }
    }

    /// Changes whenever the account's tokens are forgotten.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Forgets tokens and the sign-in phase (logout).
    pub(crate) fn forget(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.shutdown();
        let mut state = self.state();
        state.refresh_token = None;
        state.phase = Phase::Ready;
        state.next_attempt = None;
        state.backoff.record_success();
        state.last_error = None;
    }
}

impl Drop for Account {
    /// Background refreshers only hold a weak reference; stop them with the account.
    fn drop(&mut self) {
        self.shutdown();
    }
}

// === impl LiveToken ===

impl LiveToken {
    /// The monotonic expiry, pulled earlier if the wall clock says less time is left.
    pub(crate) fn effective_expiry(&self, now: Instant) -> Instant {
        let wall_left = secs_until(self.expires_wall, unix_now()).unwrap_or_default();
        self.expires.min(now + wall_left)
    }
}

fn secs_until(later: i64, earlier: i64) -> Option<Duration> {
    let delta = later.checked_sub(earlier)?;
    u64::try_from(delta)
        .ok()
        .filter(|d| *d > 0)
        .map(Duration::from_secs)
}

// === impl Slot ===

impl Slot {
    pub(crate) fn new(audience: Audience) -> Self {
        Self {
            audience,
            token: Mutex::new(None),
            flight: Mutex::new(None),
            wake: Notify::new(),
            refresher: Mutex::new(None),
            refused: Mutex::new(None),
            last_used: Mutex::new(Instant::now()),
        }
    }

    pub(crate) fn token(&self) -> Option<LiveToken> {
        lock(&self.token).clone()
    }

    pub(crate) fn set_token(&self, token: Option<LiveToken>) {
        *lock(&self.token) = token;
        self.wake.notify_one();
    }

    /// The token if it stays valid for at least `margin`, or a tenth of its lifetime for very short-lived
    /// (test) tokens (TOK-12: never hand out an expired one).
    pub(crate) fn fresh(&self, margin: Duration) -> Option<AccessToken> {
        let guard = lock(&self.token);
        let live = guard.as_ref()?;
        let margin = margin.min(live.expires.saturating_duration_since(live.issued) / 10);
        let now = Instant::now();
        (live.effective_expiry(now).saturating_duration_since(now) > margin)
            .then(|| live.token.clone())
    }

    /// Records a use; a refresher parked because the audience was idle (longer than `idle`) is woken.
    pub(crate) fn touch(&self, idle: Duration) {
        let now = Instant::now();
        let before = std::mem::replace(&mut *lock(&self.last_used), now);
        if now.saturating_duration_since(before) >= idle {
            self.wake.notify_one();
        }
    }

    /// When a caller last asked for this audience.
    pub(crate) fn last_used(&self) -> Instant {
        *lock(&self.last_used)
    }

    /// The final refusal of this audience, if any.
    pub(crate) fn refused(&self) -> Option<TokenError> {
        lock(&self.refused).clone()
    }

    /// Marks (or clears) this audience as finally refused.
    pub(crate) fn set_refused(&self, refusal: Option<TokenError>) {
        *lock(&self.refused) = refusal;
        self.wake.notify_one();
    }

    /// Drops the token if it is the one the resource rejected.
    pub(crate) fn drop_if(&self, rejected: &AccessToken) {
        let mut guard = lock(&self.token);
        if guard.as_ref().is_some_and(|live| &live.token == rejected) {
            *guard = None;
        }
    }

    /// When the refresher should renew this slot's token, if it has one.
    pub(crate) fn refresh_due(&self, now: Instant) -> Option<Instant> {
        let guard = lock(&self.token);
        let live = guard.as_ref()?;
        Some(refresh_at(live.issued, live.effective_expiry(now), now))
    }

    /// The flight in progress, if any.
    pub(crate) fn flight_in_progress(&self) -> Option<watch::Receiver<FlightResult>> {
        lock(&self.flight)
            .as_ref()
            .filter(|rx| rx.borrow().is_none())
            .cloned()
    }

    /// Runs `start` unless a flight is already in progress; returns the receiver to wait on. With
    /// `unless_fresh`, a token that became fresh meanwhile (a flight finished between the caller's check
    /// and now: flights store the token before publishing) is a finished flight, not a reason for another.
    pub(crate) fn join_or_start(
        &self,
        unless_fresh: Option<Duration>,
        start: impl FnOnce() -> watch::Receiver<FlightResult>,
    ) -> watch::Receiver<FlightResult> {
        let mut guard = lock(&self.flight);
        if let Some(rx) = guard.as_ref().filter(|rx| rx.borrow().is_none()) {
            return rx.clone();
        }
        if unless_fresh.is_some_and(|margin| self.fresh(margin).is_some()) {
            return watch::channel(Some(Ok(()))).1;
        }
        let rx = start();
        *guard = Some(rx.clone());
        rx
    }

    fn has_refresher(&self) -> bool {
        lock(&self.refresher).is_some()
    }

    pub(crate) fn set_refresher(&self, handle: AbortHandle) {
        if let Some(old) = lock(&self.refresher).replace(handle) {
            old.abort();
        }
    }

    fn stop(&self) {
        if let Some(handle) = lock(&self.refresher).take() {
            handle.abort();
        }
        if let Some(rx) = lock(&self.flight).take() {
            drop(rx);
        }
        *lock(&self.token) = None;
    }
}

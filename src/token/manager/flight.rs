//! Getting tokens without the user: refresh-token and client-credentials grants, run as single flights
//! per (account, audience), plus the background refresher that renews ahead of expiry.
//!
//! Contract: at most one token call per slot is in flight (TOK-7, LOAD-11); a flight runs in its own task
//! so a caller that gives up after 15 s does not cancel it (FLT-5); failures feed the backoff (FLT-6);
//! `invalid_grant`-type answers park the account in "sign-in required" with no further calls (FLT-11).

use std::sync::{Arc, Weak};

use tokio::sync::watch;
use tokio::time::Instant;

use super::live::{Account, FlightResult, LiveToken, Phase, Slot};
use crate::token::account::{Audience, Flow};
use crate::token::cache::{RefreshRecord, SignInMark, unix_now};
use crate::token::error::TokenError;
use crate::token::oauth::{
    self, ClientAuth, ClientCertificate, Endpoints, ErrorKind, OAuthError, TokenResponse,
};
use crate::token::secret::AccessToken;
use crate::token::transport::{TransportError, send_with_timeout};

/// Longest the refresher sleeps without re-reading the clocks.
const RECHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Why one call to the IdP failed.
#[derive(Debug)]
pub(crate) enum CallFailure {
    Transport(TransportError),
    OAuth(Box<OAuthError>),
    Config(String),
}

impl CallFailure {
    pub(crate) fn oauth(error: OAuthError) -> Self {
        CallFailure::OAuth(Box::new(error))
    }
}

// === single flight ===

/// Joins the slot's flight or starts one (with `claims` for a CAE challenge).
pub(crate) fn join_or_start(
    account: &Arc<Account>,
    slot: &Arc<Slot>,
    claims: Option<String>,
) -> watch::Receiver<FlightResult> {
    start_flight(account, slot, claims, None)
}

fn start_flight(
    account: &Arc<Account>,
    slot: &Arc<Slot>,
    claims: Option<String>,
    unless_fresh: Option<std::time::Duration>,
) -> watch::Receiver<FlightResult> {
    slot.join_or_start(unless_fresh, || {
        let (tx, rx) = watch::channel(None);
        let (account, slot) = (account.clone(), slot.clone());
        tokio::spawn(async move {
            let result = acquire(&account, &slot, claims.as_deref())
                .await
                .map(|_| ());
            let _ = tx.send(Some(result));
            slot.wake.notify_one();
        });
        rx
    })
}

/// Refuses to start a call while backing off or while the circuit is open; joins a running flight.
pub(crate) fn join_or_start_gated(
    account: &Arc<Account>,
    slot: &Arc<Slot>,
    claims: Option<String>,
) -> Result<watch::Receiver<FlightResult>, TokenError> {
    if let Some(rx) = slot.flight_in_progress() {
        return Ok(rx);
    }
    let now = Instant::now();
    {
        // Inside the backoff window (or Retry-After) callers fail fast; once it has elapsed one trial
        // call is allowed even with the circuit open (half-open).
        let state = account.state();
        if let Some(at) = state.next_attempt.filter(|at| *at > now) {
            let why = state
                .last_error
                .clone()
                .unwrap_or_else(|| "identity provider failing".into());
            let circuit = if state.backoff.circuit_open() {
                "; circuit open after repeated failures, retrying in the background"
            } else {
                ""
            };
            return Err(TokenError::Unavailable {
                upn: account.upn(),
                detail: format!("{why}{circuit}"),
                retry_after: Some(at - now),
            });
        }
    }
    let margin = account.shared.settings.expiry_margin;
    Ok(start_flight(account, slot, claims, Some(margin)))
}

/// Obtains a token for the slot's audience and stores it.
async fn acquire(
    account: &Arc<Account>,
    slot: &Arc<Slot>,
    claims: Option<&str>,
) -> Result<AccessToken, TokenError> {
    let generation = account.generation();
    let _grant = account.grant_lock.lock().await;
    if let Some(err) = slot.refused().or_else(|| account.phase_error()) {
        return Err(err);
    }
    let config = account.config();
    let response = if config.flow.is_delegated() {
        let Some(refresh_token) = account.state().refresh_token.clone() else {
            return Err(TokenError::SignInRequired {
                upn: config.upn.clone(),
                aadsts: None,
                detail: "no refresh token: the account has not signed in".into(),
            });
        };
        let scope = config.scope_for(&slot.audience);
        let client_id = config.client_id().to_string();
        call_token_endpoint(account, |ep| {
            Ok(oauth::refresh_request(
                &ep.token,
                &client_id,
                &refresh_token,
                &scope,
                claims,
            ))
        })
        .await
    } else {
        client_credentials(account, &slot.audience, claims).await
    };
    if account.generation() != generation {
        return Err(TokenError::SignInRequired {
            upn: config.upn.clone(),
            aadsts: None,
            detail: "signed out while the token request was running".into(),
        });
    }
    match response {
        Ok(tokens) => Ok(store(account, slot, tokens)),
        Err(CallFailure::OAuth(e)) if e.refuses_the_scope() => Err(refuse(account, slot, &e)),
        Err(failure) => Err(record_failure(account, failure)),
    }
}

async fn client_credentials(
    account: &Arc<Account>,
    audience: &Audience,
    claims: Option<&str>,
) -> Result<TokenResponse, CallFailure> {
    let config = account.config();
    let scope = config.scope_for(audience);
    let client_id = config.client_id().to_string();
    let certificate = match &config.flow {
        Flow::Certificate { cert_pem, key_pem } => {
            let read = |p: &std::path::Path| {
                std::fs::read_to_string(p)
                    .map_err(|e| CallFailure::Config(format!("{}: {e}", p.display())))
            };
            let key = zeroize::Zeroizing::new(read(key_pem)?);
            Some(load_certificate(&read(cert_pem)?, &key)?)
        }
        Flow::CertificateInline { cert_pem, key_pem } => {
            Some(load_certificate(cert_pem, key_pem.expose())?)
        }
        Flow::CertificatePfx { pfx, password } => {
            let bytes = zeroize::Zeroizing::new(
                std::fs::read(pfx)
                    .map_err(|e| CallFailure::Config(format!("{}: {e}", pfx.display())))?,
            );
            let loaded = ClientCertificate::from_pkcs12(&bytes, password.expose())
                .map_err(|e| CallFailure::Config(format!("{}: {e}", pfx.display())))?;
            Some(loaded)
        }
        _ => None,
    };
    call_token_endpoint(account, |ep| {
        let auth = match (&config.flow, &certificate) {
            (Flow::Secret { secret }, _) => ClientAuth::Secret(secret.clone()),
            (_, Some(cert)) => {
                let jti = oauth::random_urlsafe(16).map_err(CallFailure::oauth)?;
                let jwt = cert
                    .assertion(&client_id, &ep.token, unix_now(), &jti)
                    .map_err(|e| CallFailure::Config(e.to_string()))?;
                ClientAuth::Assertion(jwt)
            }
            _ => {
                return Err(CallFailure::Config(
                    "app-only flow without credentials".into(),
                ));
            }
        };
        Ok(oauth::client_credentials_request(
            &ep.token, &client_id, &scope, &auth, claims,
        ))
    })
    .await
}

fn load_certificate(cert_pem: &str, key_pem: &str) -> Result<ClientCertificate, CallFailure> {
    ClientCertificate::from_pem(cert_pem, key_pem).map_err(|e| CallFailure::Config(e.to_string()))
}

// === calls ===

/// Resolves the endpoints, builds the request with `build`, sends it and parses a token response.
pub(crate) async fn call_token_endpoint(
    account: &Account,
    build: impl FnOnce(&Endpoints) -> Result<http::Request<bytes::Bytes>, CallFailure>,
) -> Result<TokenResponse, CallFailure> {
    let endpoints = endpoints(account).await?;
    let request = build(&endpoints)?;
    let response = send(account, request).await?;
    oauth::parse_token_response(&response).map_err(CallFailure::oauth)
}

/// Sends one request with the whole-call timeout.
pub(crate) async fn send(
    account: &Account,
    request: http::Request<bytes::Bytes>,
) -> Result<http::Response<bytes::Bytes>, CallFailure> {
    let shared = &account.shared;
    let started = Instant::now();
    let sent = send_with_timeout(
        shared.transport.as_ref(),
        request,
        shared.settings.call_timeout,
    )
    .await;
    crate::summary::idp_call(started.elapsed(), sent.is_ok());
    sent.map_err(CallFailure::Transport)
}

/// OIDC discovery once per account (cached): the configured `discovery_url`, else where the authority's
/// kind puts it (`oauth::discovery_url`); the Entra layout when discovery is off.
pub(crate) async fn endpoints(account: &Account) -> Result<Endpoints, CallFailure> {
    let config = account.config();
    if !account.shared.settings.discovery {
        return Ok(oauth::entra_endpoints(
            &config.authority(),
            &config.tenant(),
        ));
    }
    let mut cached = account.endpoints.lock().await;
    if let Some(endpoints) = cached.as_ref() {
        return Ok(endpoints.clone());
    }
    let request = match &config.discovery_url {
        Some(url) => oauth::discovery_request_at(url),
        None => oauth::discovery_request(&config.authority(), &config.tenant()),
    };
    let response = send(account, request).await?;
    let endpoints = oauth::parse_discovery(&response).map_err(CallFailure::oauth)?;
    *cached = Some(endpoints.clone());
    Ok(endpoints)
}

// === outcomes ===

/// Stores a fresh token; a rotated refresh token is persisted before the old one is dropped (TOK-8).
pub(crate) fn store(account: &Account, slot: &Slot, tokens: TokenResponse) -> AccessToken {
    crate::summary::token_refresh(&account.upn(), true);
    let now = Instant::now();
    let access = tokens.access_token.clone();
    slot.set_token(Some(LiveToken {
        token: tokens.access_token,
        issued: now,
        expires: now + tokens.expires_in,
        expires_wall: unix_now()
            .saturating_add(i64::try_from(tokens.expires_in.as_secs()).unwrap_or(i64::MAX)),
    }));
    let new_refresh = {
        let mut state = account.state();
        state.backoff.record_success();
        state.next_attempt = None;
        state.last_error = None;
        state.phase = Phase::Ready;
        state.last_refresh = Some(RefreshRecord {
            at: unix_now(),
            ok: true,
            detail: String::new(),
        });
        tokens.refresh_token.or_else(|| state.refresh_token.clone())
    };
    let snapshot = account.snapshot(new_refresh.clone());
    account.persist(&snapshot);
    account.state().refresh_token = new_refresh;
    access
}

/// Turns a failed call into the account's new state and the caller's error.
fn record_failure(account: &Arc<Account>, failure: CallFailure) -> TokenError {
    crate::summary::token_refresh(&account.upn(), false);
    let upn = account.upn();
    let terminal = match &failure {
        CallFailure::OAuth(e) => e.needs_sign_in() || e.kind == ErrorKind::InvalidClient,
        CallFailure::Config(_) => true,
        CallFailure::Transport(_) => false,
    };
    let detail = describe(&failure);
    if terminal {
        return mark_sign_in_required(account, &failure, detail);
    }
    let retry_after = match &failure {
        CallFailure::OAuth(e) => e.retry_after,
        _ => None,
    };
    let delay = {
        let mut state = account.state();
        let delay = state.backoff.record_failure(retry_after);
        state.next_attempt = Some(Instant::now() + delay);
        state.last_error = Some(detail.clone());
        state.last_refresh = Some(RefreshRecord {
            at: unix_now(),
            ok: false,
            detail: detail.clone(),
        });
        tracing::warn!(account = %upn, failures = state.backoff.failures(), retry_in = ?delay,
            error = %detail, "token refresh failed");
        delay
    };
    TokenError::Unavailable {
        upn,
        detail,
        retry_after: Some(delay),
    }
}

/// Marks the slot's audience as finally refused: no backoff (the account's other audiences keep
/// working), no further calls for it until [`Account::clear_refusals`].
fn refuse(account: &Account, slot: &Slot, error: &OAuthError) -> TokenError {
    let upn = account.upn();
    let scope = account.config().scope_for(&slot.audience);
    let refusal = TokenError::Refused {
        upn: upn.clone(),
        audience: slot.audience.to_string(),
        scope,
        detail: error.to_string(),
    };
    tracing::warn!(account = %upn, audience = %slot.audience, error = %refusal,
        "the identity provider refused this audience: no further token calls for it until the configuration changes or a new sign-in");
    account.state().last_error = Some(refusal.to_string());
    slot.set_refused(Some(refusal.clone()));
    refusal
}

fn mark_sign_in_required(
    account: &Arc<Account>,
    failure: &CallFailure,
    detail: String,
) -> TokenError {
    let upn = account.upn();
    // Another process may have signed in while this refresh token was refused: take its sign-in
    // rather than overwrite it with the refused one; the caller retries.
    if account.adopt_newer_sign_in() {
        return TokenError::Unavailable {
            upn,
            detail: format!("{detail}; a new sign-in was found: retry"),
            retry_after: Some(std::time::Duration::from_secs(1)),
        };
    }
    let aadsts = match failure {
        CallFailure::OAuth(e) => e.aadsts,
        _ => None,
    };
    if let CallFailure::Config(reason) = failure {
        return TokenError::Config {
            upn,
            detail: reason.clone(),
        };
    }
    {
        let mut state = account.state();
        state.phase = Phase::SignInRequired(SignInMark {
            aadsts,
            detail: detail.clone(),
        });
        state.last_error = Some(detail.clone());
        state.last_refresh = Some(RefreshRecord {
            at: unix_now(),
            ok: false,
            detail: detail.clone(),
        });
    }
    tracing::warn!(account = %upn, aadsts = ?aadsts, error = %detail,
        "the identity provider refused the grant: sign-in required, no further token calls until `exoproxy login {upn}`");
    account.persist_current();
    TokenError::SignInRequired {
        upn,
        aadsts,
        detail,
    }
}

pub(crate) fn describe(failure: &CallFailure) -> String {
    match failure {
        CallFailure::Transport(e) => e.to_string(),
        CallFailure::OAuth(e) => e.to_string(),
        CallFailure::Config(e) => e.clone(),
    }
}

// === refresher ===

/// Starts the background refresher of a slot (needs a tokio runtime; without one, getters still work).
pub(crate) fn spawn_refresher(account: &Arc<Account>, slot: &Arc<Slot>) {
    if tokio::runtime::Handle::try_current().is_err() {
        return;
    }
    let task = tokio::spawn(run_refresher(Arc::downgrade(account), slot.clone()));
    slot.set_refresher(task.abort_handle());
}

async fn run_refresher(account: Weak<Account>, slot: Arc<Slot>) {
    loop {
        let wake = {
            let Some(account) = account.upgrade() else {
                return;
            };
            next_wake(&account, &slot)
        };
        let notified = slot.wake.notified();
        match wake {
            Some(at) if at > Instant::now() => {
                // Wake at least every minute: the monotonic clock stops during a suspend, so a long
                // sleep could overshoot the real expiry; the wall-clock check catches it (FLT-17).
                let at = at.min(Instant::now() + RECHECK_EVERY);
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = notified => continue,
                }
            }
            Some(_) => {}
            None => {
                notified.await;
                continue;
            }
        }
        let mut rx = {
            let Some(account) = account.upgrade() else {
                return;
            };
            if next_wake(&account, &slot).is_none_or(|at| at > Instant::now()) {
                continue;
            }
            join_or_start(&account, &slot, None)
        };
        let _ = rx.wait_for(Option::is_some).await;
    }
}

/// When the background refresher next renews one of the account's tokens: the earliest
/// [`next_wake`] of its slots (the status page's "next renewal").
pub(crate) fn next_renewal(account: &Account) -> Option<Instant> {
    (account.slots().iter())
        .filter_map(|slot| next_wake(account, slot))
        .min()
}

/// When the slot needs a call: its refresh time, pushed back by a running backoff; `None` to idle (also
/// when the audience was not asked for within `idle_renewal` before that time, or is refused).
/// Only slots holding a token refresh in the background: one prober per audience in use, and a
/// token-less audience is fetched by its first caller (a half-open trial once the backoff has elapsed).
fn next_wake(account: &Account, slot: &Slot) -> Option<Instant> {
    let now = Instant::now();
    let state = account.state();
    if !matches!(state.phase, Phase::Ready) || slot.refused().is_some() {
        return None;
    }
    if account.config().flow.is_delegated() && state.refresh_token.is_none() {
        return None;
    }
    let due = slot.refresh_due(now)?;
    if due > slot.last_used() + account.config().idle_renewal {
        return None; // idle: the next request renews on demand (`touch` wakes us)
    }
    let backoff_until = state.next_attempt.filter(|_| state.backoff.failures() > 0);
    Some(backoff_until.map_or(due, |until| until.max(due)))
}

//! Interactive sign-in: device code (RFC 8628) and browser (authorization code + PKCE over a loopback
//! redirect), ending in the wrong-user guard.
//!
//! Contract: at most one sign-in per account runs at a time; while a device code waits, the account is
//! `SignInPending` and requests get the code and URL in their error; a countdown is logged every 30 s.
//! A token whose user differs from the configured UPN is discarded (wrong-user guard).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::flight::{CallFailure, call_token_endpoint, endpoints, send, store};
use super::live::{Account, FlightResult, Phase};
use crate::token::account::{Audience, normalize_upn};
use crate::token::error::{DevicePrompt, TokenError};
use crate::token::jwt::Claims;
use crate::token::loopback::{LoopbackRedirect, open_browser};
use crate::token::oauth::{
    self, AuthorizeUrl, DeviceAuthorization, DevicePoll, Pkce, TokenResponse,
};

/// How often the pending device code is logged again.
const COUNTDOWN_EVERY: Duration = Duration::from_secs(30);
/// How long the browser flow waits for the redirect.
const BROWSER_WAIT: Duration = Duration::from_secs(300);

/// What the user must do to finish a sign-in that has started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInPrompt {
    /// Enter a code at a URL (device code flow).
    Device(DevicePrompt),
    /// Finish in the browser that was opened (or open this URL).
    Browser {
        /// The authorize URL.
        url: String,
    },
    /// Nothing to do: app-only flows sign in without a user.
    None,
}

// === device code ===

/// Starts a device-code sign-in for `audience`, or returns the one already waiting.
pub(crate) async fn start_device(
    account: &Arc<Account>,
    audience: &Audience,
) -> Result<(DevicePrompt, watch::Receiver<FlightResult>), TokenError> {
    let _one = account.sign_in_lock.lock().await;
    if let Some(waiting) = waiting_device_sign_in(account) {
        return Ok(waiting);
    }
    let authorization = request_device_code(account, audience).await?;
    let prompt = DevicePrompt {
        user_code: authorization.user_code.clone(),
        verification_uri: authorization.verification_uri.clone(),
        expires_at: Instant::now() + authorization.expires_in,
        message: authorization.message.clone(),
    };
    let previous = match std::mem::replace(
        &mut account.state().phase,
        Phase::SignInPending(prompt.clone()),
    ) {
        Phase::SignInPending(_) => Phase::Ready,
        other => other,
    };
    log_prompt(&account.upn(), &prompt);
    let task = poll_device(
        account.clone(),
        audience.clone(),
        authorization,
        prompt.clone(),
        previous,
    );
    Ok((prompt, spawn_sign_in(account, task)))
}

/// The device sign-in already running, if its code is still valid.
fn waiting_device_sign_in(
    account: &Account,
) -> Option<(DevicePrompt, watch::Receiver<FlightResult>)> {
    let prompt = match &account.state().phase {
        Phase::SignInPending(prompt) if prompt.remaining() > Duration::ZERO => prompt.clone(),
        _ => return None,
    };
    let (_, rx) = account.sign_in_task.lock().ok()?.clone()?;
    Some((prompt, rx))
}

/// RFC 8628 §3.1: asks the IdP for a device code and a user code.
async fn request_device_code(
    account: &Account,
    audience: &Audience,
) -> Result<DeviceAuthorization, TokenError> {
    let config = account.config();
    let upn = config.upn.clone();
    let endpoints = endpoints(account)
        .await
        .map_err(|f| unavailable(&upn, &f))?;
    let Some(device_endpoint) = endpoints.device_authorization else {
        return Err(TokenError::Config {
            upn,
            detail: "the identity provider offers no device code endpoint".into(),
        });
    };
    let scope = config.scope_for(audience);
    let request =
        oauth::device_authorization_request(&device_endpoint, config.client_id(), &scope, None);
    let response = send(account, request)
        .await
        .map_err(|f| unavailable(&upn, &f))?;
    oauth::parse_device_authorization(&response).map_err(|e| {
        if e.is_transient() {
            unavailable(&upn, &CallFailure::oauth(e))
        } else {
            TokenError::sign_in_failed(&upn, &e)
        }
    })
}

/// Runs a sign-in task, publishing its result; the handle lets logout abort it.
fn spawn_sign_in(
    account: &Arc<Account>,
    task: impl Future<Output = Result<(), TokenError>> + Send + 'static,
) -> watch::Receiver<FlightResult> {
    let (tx, rx) = watch::channel(None);
    let handle = tokio::spawn(async move {
        let _ = tx.send(Some(task.await));
    });
    if let Ok(mut slot) = account.sign_in_task.lock()
        && let Some((old, _)) = slot.replace((handle.abort_handle(), rx.clone()))
    {
        old.abort();
    }
    rx
}

async fn poll_device(
    account: Arc<Account>,
    audience: Audience,
    authorization: DeviceAuthorization,
    prompt: DevicePrompt,
    previous: Phase,
) -> Result<(), TokenError> {
    let config = account.config();
    let upn = config.upn.clone();
    let mut interval = authorization.interval;
    let mut last_log = Instant::now();
    let result = loop {
        tokio::time::sleep(interval).await;
        if prompt.remaining() == Duration::ZERO {
            break Err(TokenError::SignInFailed {
                upn: upn.clone(),
                detail: "the device code expired before sign-in completed".into(),
            });
        }
        if last_log.elapsed() >= COUNTDOWN_EVERY {
            log_prompt(&upn, &prompt);
            last_log = Instant::now();
        }
        let poll = call_poll(&account, &authorization).await;
        match poll {
            Ok(DevicePoll::Pending) => {}
            Ok(DevicePoll::SlowDown) => interval += oauth::SLOW_DOWN_STEP,
            Ok(DevicePoll::Done(tokens)) => break finish(&account, &audience, *tokens),
            Err(CallFailure::OAuth(e)) if !e.is_transient() => {
                break Err(TokenError::sign_in_failed(&upn, &e));
            }
            Err(failure) => {
                tracing::debug!(account = %upn, error = ?failure, "device code poll failed; polling on")
            }
        }
    };
    end_sign_in(&account, &result, previous);
    result
}

async fn call_poll(
    account: &Account,
    authorization: &DeviceAuthorization,
) -> Result<DevicePoll, CallFailure> {
    let config = account.config();
    let endpoints = endpoints(account).await?;
    let request = oauth::device_token_request(
        &endpoints.token,
        config.client_id(),
        &authorization.device_code,
    );
    let response = send(account, request).await?;
    oauth::parse_device_poll(&response).map_err(CallFailure::oauth)
}

fn log_prompt(upn: &str, prompt: &DevicePrompt) {
    tracing::info!(
        account = %upn,
        "SIGN-IN NEEDED for {upn}: open {} and enter the code {} ({} s left)",
        prompt.verification_uri,
        prompt.user_code,
        prompt.remaining().as_secs()
    );
}

// === browser ===

/// Everything the browser flow keeps between opening the browser and redeeming the code.
struct BrowserSession {
    audience: Audience,
    listener: LoopbackRedirect,
    pkce: Pkce,
    state: String,
    redirect_uri: String,
}

/// Starts a browser sign-in: binds the loopback listener, opens the browser, waits in the background.
pub(crate) async fn start_browser(
    account: &Arc<Account>,
    audience: &Audience,
) -> Result<(String, watch::Receiver<FlightResult>), TokenError> {
    let _one = account.sign_in_lock.lock().await;
    let upn = account.upn();
    let (url, session) = prepare_browser(account, audience).await?;
    if account.shared.settings.open_browser
        && let Err(e) = open_browser(&url)
    {
        tracing::warn!(error = %e, "could not open a browser: open the sign-in URL yourself");
    }
    tracing::info!(account = %upn, "SIGN-IN NEEDED for {upn}: finish in the browser ({url})");
    Ok((
        url,
        spawn_sign_in(account, wait_browser(account.clone(), session)),
    ))
}

/// Binds the redirect listener and builds the authorize URL (PKCE S256, state, login_hint).
async fn prepare_browser(
    account: &Account,
    audience: &Audience,
) -> Result<(String, BrowserSession), TokenError> {
    let config = account.config();
    let upn = config.upn.clone();
    let endpoints = endpoints(account)
        .await
        .map_err(|f| unavailable(&upn, &f))?;
    let fail = |detail: String| TokenError::SignInFailed {
        upn: upn.clone(),
        detail,
    };
    let authorize = endpoints
        .authorization
        .ok_or_else(|| fail("no authorization endpoint".into()))?;
    let listener = LoopbackRedirect::bind()
        .await
        .map_err(|e| fail(format!("loopback listener: {e}")))?;
    let pkce = Pkce::new().map_err(|e| fail(e.to_string()))?;
    let state = oauth::random_urlsafe(16).map_err(|e| fail(e.to_string()))?;
    let redirect_uri = listener.redirect_uri();
    let scope = config.scope_for(audience);
    let url = AuthorizeUrl {
        endpoint: &authorize,
        client_id: config.client_id(),
        redirect_uri: &redirect_uri,
        scope: &scope,
        state: &state,
        code_challenge: &pkce.challenge,
        login_hint: Some(&upn),
        claims: None,
    }
    .build();
    let session = BrowserSession {
        audience: audience.clone(),
        listener,
        pkce,
        state,
        redirect_uri,
    };
    Ok((url, session))
}

async fn wait_browser(account: Arc<Account>, session: BrowserSession) -> Result<(), TokenError> {
    let config = account.config();
    let upn = config.upn.clone();
    let BrowserSession {
        audience,
        listener,
        pkce,
        state,
        redirect_uri,
    } = session;
    let code = match tokio::time::timeout(BROWSER_WAIT, listener.wait(&state)).await {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => return Err(TokenError::sign_in_failed(&upn, &e)),
        Err(_) => {
            return Err(TokenError::SignInFailed {
                upn,
                detail: "no redirect from the browser within 5 minutes".into(),
            });
        }
    };
    let scope = config.scope_for(&audience);
    let tokens = call_token_endpoint(&account, |ep| {
        Ok(oauth::authorization_code_request(
            &ep.token,
            config.client_id(),
            &code,
            &redirect_uri,
            &pkce.verifier,
            &scope,
        ))
    })
    .await;
    let result = match tokens {
        Ok(tokens) => finish(&account, &audience, tokens),
        Err(failure) => Err(TokenError::SignInFailed {
            upn,
            detail: super::flight::describe(&failure),
        }),
    };
    end_sign_in(&account, &result, Phase::Ready);
    result
}

// === completion ===

/// Applies the wrong-user guard, then stores the tokens as the account's new sign-in.
pub(crate) fn finish(
    account: &Arc<Account>,
    audience: &Audience,
    tokens: TokenResponse,
) -> Result<(), TokenError> {
    let requested = account.upn();
    check_user(&requested, &tokens)?;
    {
        let mut state = account.state();
        state.phase = Phase::Ready;
    }
    account.clear_refusals();
    let slot = account.slot(audience);
    store(account, &slot, tokens);
    tracing::info!(account = %requested, "signed in");
    Ok(())
}

/// The token's `upn` / `preferred_username` / `unique_name` must equal the requested UPN (ignoring case);
/// the ID token is consulted when the access token is not a readable JWT.
pub fn check_user(requested: &str, tokens: &TokenResponse) -> Result<(), TokenError> {
    let from_access = Claims::decode(tokens.access_token.expose()).ok();
    let from_id = tokens
        .id_token
        .as_ref()
        .and_then(|t| Claims::decode(t.expose()).ok());
    let actual = from_access
        .as_ref()
        .and_then(Claims::user)
        .or_else(|| from_id.as_ref().and_then(Claims::user))
        .map(str::to_string);
    match actual {
        Some(actual) if normalize_upn(&actual) == normalize_upn(requested) => Ok(()),
        Some(actual) => Err(TokenError::WrongUser {
            requested: requested.to_string(),
            actual,
        }),
        None => Err(TokenError::WrongUser {
            requested: requested.to_string(),
            actual: "an unknown user (no upn in the token)".into(),
        }),
    }
}

/// After a sign-in ends without tokens the account returns to where it was before (no token: the next
/// request may start over; "sign-in required": still no token calls); the reason is kept for messages.
fn end_sign_in(account: &Account, result: &Result<(), TokenError>, previous: Phase) {
    let mut state = account.state();
    if result.is_err() && matches!(state.phase, Phase::SignInPending(_)) {
        state.phase = previous;
    }
    if let Err(e) = result {
        tracing::warn!(account = %account.upn(), error = %e, "sign-in did not complete");
        state.last_error = Some(e.to_string());
    }
}

fn unavailable(upn: &str, failure: &CallFailure) -> TokenError {
    let retry_after = match failure {
        CallFailure::OAuth(e) => e.retry_after,
        _ => None,
    };
    TokenError::Unavailable {
        upn: upn.to_string(),
        detail: super::flight::describe(failure),
        retry_after: retry_after.or(Some(Duration::from_secs(5))),
    }
}

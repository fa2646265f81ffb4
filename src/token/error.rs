//! What a token request can end in, as values the handler renders (via [`ProxyError`]).
//!
//! Contract: no variant carries a secret; user codes and URLs of a pending device sign-in are not secrets
//! (they are meant to be shown) and are included so the error message is actionable.

use std::time::Duration;

use crate::error::ProxyError;
use crate::token::oauth::OAuthError;

/// A device-code sign-in waiting for the user (RFC 8628 §3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePrompt {
    /// The code to enter.
    pub user_code: String,
    /// Where to enter it.
    pub verification_uri: String,
    /// When the code stops working (tokio clock).
    pub expires_at: tokio::time::Instant,
    /// The IdP's own instruction text.
    pub message: Option<String>,
}

/// Why no token was returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The account needs an interactive sign-in; no token calls are made until it happens (FLT-11).
    #[error("sign-in required for {upn}{}: {detail}; run `exoproxy login {upn}`", aadsts_suffix(*.aadsts))]
    SignInRequired {
        /// Account.
        upn: String,
        /// AADSTS code of the refusal.
        aadsts: Option<u32>,
        /// Reason.
        detail: String,
    },
    /// A device-code sign-in is running: the user must enter the code.
    #[error("sign-in pending for {upn}: open {} and enter the code {} (valid for {}s)",
        .prompt.verification_uri, .prompt.user_code, .prompt.remaining().as_secs())]
    SignInPending {
        /// Account.
        upn: String,
        /// What to tell the user.
        prompt: DevicePrompt,
    },
    /// The IdP is unreachable, slow or failing and no valid token is cached (FLT-5).
    #[error("token unavailable for {upn}: {detail}")]
    Unavailable {
        /// Account.
        upn: String,
        /// What failed.
        detail: String,
        /// When trying again makes sense.
        retry_after: Option<Duration>,
    },
    /// The user signed in as someone else than the account asked for (wrong-user guard).
    #[error(
        "signed in as {actual}, but the proxy asked for {requested}: the token was discarded; sign in again as {requested}"
    )]
    WrongUser {
        /// The UPN the account is configured for.
        requested: String,
        /// The UPN in the token.
        actual: String,
    },
    /// A sign-in ended without tokens (declined, code expired, browser flow failed).
    #[error("sign-in for {upn} failed: {detail}")]
    SignInFailed {
        /// Account.
        upn: String,
        /// What the IdP or the flow said.
        detail: String,
    },
    /// The IdP refused the scope of one audience in a way retrying cannot fix (`invalid_scope`,
    /// AADSTS650057, …): no further calls for this account and audience until the configuration is
    /// reloaded or the account signs in again.
    #[error(
        "the identity provider refuses {audience} for {upn} (scope {scope:?}): {detail}; fix the account's scope or the app registration, then reload the configuration or sign in again"
    )]
    Refused {
        /// Account.
        upn: String,
        /// The audience refused.
        audience: String,
        /// The scope that was asked for.
        scope: String,
        /// What the IdP said.
        detail: String,
    },
    /// The account's configuration cannot work (missing certificate, bad key).
    #[error("account {upn} is misconfigured: {detail}")]
    Config {
        /// Account.
        upn: String,
        /// What is wrong.
        detail: String,
    },
}

// === impl DevicePrompt ===

impl DevicePrompt {
    /// Time left to enter the code.
    pub fn remaining(&self) -> Duration {
        self.expires_at
            .saturating_duration_since(tokio::time::Instant::now())
    }
}

// === impl TokenError ===

impl TokenError {
    /// A failed sign-in from an IdP error.
    pub(crate) fn sign_in_failed(upn: &str, error: &OAuthError) -> Self {
        TokenError::SignInFailed {
            upn: upn.to_string(),
            detail: error.to_string(),
        }
    }
}

fn aadsts_suffix(code: Option<u32>) -> String {
    code.map(|c| format!(" (AADSTS{c})")).unwrap_or_default()
}

impl From<TokenError> for ProxyError {
    fn from(err: TokenError) -> Self {
        let detail = err.to_string();
        match err {
            TokenError::SignInRequired { upn, .. }
            | TokenError::SignInPending { upn, .. }
            | TokenError::SignInFailed { upn, .. }
            | TokenError::Config { upn, .. }
            | TokenError::Refused { upn, .. } => ProxyError::SignInRequired {
                account: upn,
                detail,
            },
            TokenError::WrongUser { requested, .. } => ProxyError::SignInRequired {
                account: requested,
                detail,
            },
            TokenError::Unavailable {
                upn, retry_after, ..
            } => ProxyError::TokenUnavailable {
                account: upn,
                detail,
                retry_after,
            },
        }
    }
}

//! RFC 8628 device authorization grant: start (§3.1/3.2) and poll (§3.4/3.5).
//!
//! Contract: [`parse_device_poll`] turns `authorization_pending` and `slow_down` into [`DevicePoll`]
//! values (keep polling); every other error ends the flow. The caller owns the timing.

use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;

use super::{Form, GRANT_DEVICE_CODE, OAuthError, TokenResponse, parse_token_response, post_form};
use crate::token::oauth::ErrorKind;
use crate::token::secret::DeviceCode;

/// RFC 8628 §3.5: "the interval MUST be increased by 5 seconds for this and all subsequent requests".
pub const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);

/// The device authorization response (RFC 8628 §3.2).
#[derive(Debug, Clone)]
pub struct DeviceAuthorization {
    /// Secret code the client polls with.
    pub device_code: DeviceCode,
    /// Code the user types at `verification_uri`.
    pub user_code: String,
    /// Where the user goes (`https://microsoft.com/devicelogin`).
    pub verification_uri: String,
    /// How long the codes are valid (Entra: 900 s).
    pub expires_in: Duration,
    /// Minimum wait between polls (default 5 s when absent).
    pub interval: Duration,
    /// The IdP's ready-made instruction text.
    pub message: Option<String>,
}

/// One poll's outcome when it is not an error that ends the flow.
#[derive(Debug)]
pub enum DevicePoll {
    /// The user has not finished: wait `interval` and poll again.
    Pending,
    /// Poll slower: add [`SLOW_DOWN_STEP`] to the interval.
    SlowDown,
    /// Signed in.
    Done(Box<TokenResponse>),
}

#[derive(Deserialize)]
struct DeviceBody {
    device_code: String,
    user_code: String,
    #[serde(alias = "verification_url")]
    verification_uri: String,
    expires_in: u64,
    interval: Option<u64>,
    message: Option<String>,
}

/// POST the device authorization request (`client_id`, `scope`, optional `claims`).
pub fn device_authorization_request(
    endpoint: &str,
    client_id: &str,
    scope: &str,
    claims: Option<&str>,
) -> http::Request<Bytes> {
    let mut form = Form::new();
    form.push("client_id", client_id);
    form.push("scope", scope);
    form.push_opt("claims", claims);
    post_form(endpoint, form)
}

/// Parses the device authorization response.
pub fn parse_device_authorization(
    resp: &http::Response<Bytes>,
) -> Result<DeviceAuthorization, OAuthError> {
    if let Some(err) = OAuthError::from_response(resp) {
        return Err(err);
    }
    let body: DeviceBody = serde_json::from_slice(resp.body()).map_err(|_| {
        OAuthError::malformed(
            resp.status().as_u16(),
            "device code response is not the expected JSON",
        )
    })?;
    Ok(DeviceAuthorization {
        device_code: DeviceCode::new(body.device_code),
        user_code: body.user_code,
        verification_uri: body.verification_uri,
        expires_in: Duration::from_secs(body.expires_in),
        interval: Duration::from_secs(body.interval.unwrap_or(5).max(1)),
        message: body.message,
    })
}

/// POST one poll to the token endpoint (RFC 8628 §3.4).
pub fn device_token_request(
    token_endpoint: &str,
    client_id: &str,
    device_code: &DeviceCode,
) -> http::Request<Bytes> {
    let mut form = Form::new();
    form.push("grant_type", GRANT_DEVICE_CODE);
    form.push("client_id", client_id);
    form.push("device_code", device_code.expose());
    post_form(token_endpoint, form)
}

/// Parses one poll: pending / slow down / tokens, or an error that ends the flow.
pub fn parse_device_poll(resp: &http::Response<Bytes>) -> Result<DevicePoll, OAuthError> {
    match parse_token_response(resp) {
        Ok(tokens) => Ok(DevicePoll::Done(Box::new(tokens))),
        Err(err) if err.kind == ErrorKind::AuthorizationPending => Ok(DevicePoll::Pending),
        Err(err) if err.kind == ErrorKind::SlowDown => Ok(DevicePoll::SlowDown),
        Err(err) => Err(err),
    }
}

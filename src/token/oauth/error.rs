//! Identity-provider errors, parsed from the RFC 6749 §5.2 JSON body plus Entra's extras
//! (docs/PROTOCOL.md#token-responses).
//!
//! Contract: code branches on [`ErrorKind`] (the `error` field), never on text; the AADSTS number is kept
//! for messages and for the "sign-in required" state. 429/5xx are transient and carry `Retry-After`.

use std::time::Duration;

use serde::Deserialize;

/// The `error` field, with the values this crate acts on spelled out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// The grant (refresh token, code) is invalid, expired or revoked: a new sign-in is needed.
    InvalidGrant,
    /// MFA, consent or Conditional Access needs the user (`interaction_required`, `consent_required`).
    InteractionRequired,
    /// Client authentication failed (bad secret or assertion).
    InvalidClient,
    /// RFC 8628 §3.5: the user has not finished yet; poll again after the interval.
    AuthorizationPending,
    /// RFC 8628 §3.5: poll slower (interval + 5 s).
    SlowDown,
    /// RFC 8628 §3.5: the user declined.
    AuthorizationDeclined,
    /// RFC 8628 §3.5: the device code expired.
    ExpiredToken,
    /// Entra: the device code is unknown.
    BadVerificationCode,
    /// HTTP 429 or 5xx: the IdP is throttling or failing; try later.
    Transient,
    /// Any other `error` value, kept verbatim.
    Other(String),
}

/// An error answer from the identity provider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.summary())]
pub struct OAuthError {
    /// What happened, as a value to branch on.
    pub kind: ErrorKind,
    /// The raw `error` string (or `http_<status>` when the body had none).
    pub error: String,
    /// HTTP status of the response.
    pub status: u16,
    /// The first AADSTS code, from `error_codes` or the `error_description` prefix.
    pub aadsts: Option<u32>,
    /// First line of `error_description` (no trace/correlation ids).
    pub description: String,
    /// Entra's `suberror` (e.g. `basic_action`, `consent_required`), when present.
    pub suberror: Option<String>,
    /// `Retry-After` of a 429/5xx answer.
    pub retry_after: Option<Duration>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: Option<String>,
    error_description: Option<String>,
    #[serde(default)]
    error_codes: Vec<u32>,
    suberror: Option<String>,
}

// === impl ErrorKind ===

impl ErrorKind {
    fn from_error(error: &str) -> Self {
        match error {
            "invalid_grant" => ErrorKind::InvalidGrant,
            "interaction_required" | "consent_required" | "login_required" => {
                ErrorKind::InteractionRequired
            }
            "invalid_client" | "unauthorized_client" => ErrorKind::InvalidClient,
            "authorization_pending" => ErrorKind::AuthorizationPending,
            "slow_down" => ErrorKind::SlowDown,
            "authorization_declined" | "access_denied" => ErrorKind::AuthorizationDeclined,
            "expired_token" | "code_expired" => ErrorKind::ExpiredToken,
            "bad_verification_code" => ErrorKind::BadVerificationCode,
            "temporarily_unavailable" | "server_error" => ErrorKind::Transient,
            other => ErrorKind::Other(other.to_string()),
        }
    }
}

// === impl OAuthError ===

impl OAuthError {
    /// Parses an error response; `None` for a 2xx status.
    pub fn from_response(resp: &http::Response<bytes::Bytes>) -> Option<Self> {
        let status = resp.status();
        if status.is_success() {
            return None;
        }
        let body: Option<ErrorBody> = serde_json::from_slice(resp.body()).ok();
        let error = body
            .as_ref()
            .and_then(|b| b.error.clone())
            .unwrap_or_else(|| format!("http_{}", status.as_u16()));
        let transient = status == http::StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
        let kind = if transient {
            ErrorKind::Transient
        } else {
            ErrorKind::from_error(&error)
        };
        let full_description = body
            .as_ref()
            .and_then(|b| b.error_description.clone())
            .unwrap_or_default();
        let aadsts = body
            .as_ref()
            .and_then(|b| b.error_codes.first().copied())
            .or_else(|| aadsts_prefix(&full_description));
        Some(Self {
            kind,
            error,
            status: status.as_u16(),
            aadsts,
            description: first_line(&full_description),
            suberror: body.and_then(|b| b.suberror),
            retry_after: transient.then(|| retry_after(resp.headers())).flatten(),
        })
    }

    /// An error for a 2xx response whose body we could not use.
    pub fn malformed(status: u16, what: &str) -> Self {
        Self {
            kind: ErrorKind::Other("malformed_response".into()),
            error: "malformed_response".into(),
            status,
            aadsts: None,
            description: what.to_string(),
            suberror: None,
            retry_after: None,
        }
    }

    /// True when a new interactive sign-in is the only way forward (FLT-11).
    pub fn needs_sign_in(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::InvalidGrant | ErrorKind::InteractionRequired
        )
    }

    /// True when the IdP refuses what was asked for (the scope or resource), so retrying the same request
    /// cannot succeed until the configuration or the app registration changes: `invalid_scope`,
    /// `invalid_resource`, and the AADSTS codes of that kind whatever `error` they come with (70011 invalid
    /// scope, 650057 resource not in the app's permissions, 500011 resource not in the tenant).
    /// Final for one audience only: other audiences of the account keep working (docs/PROTOCOL.md §2.4).
    pub fn refuses_the_scope(&self) -> bool {
        matches!(self.error.as_str(), "invalid_scope" | "invalid_resource")
            || self
                .aadsts
                .is_some_and(|code| AUDIENCE_FINAL_CODES.contains(&code))
    }

    /// True when trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        self.kind == ErrorKind::Transient
    }

    fn summary(&self) -> String {
        let code = self
            .aadsts
            .map(|c| format!(" AADSTS{c}"))
            .unwrap_or_default();
        let desc = if self.description.is_empty() {
            String::new()
        } else {
            format!(": {}", self.description)
        };
        format!("{} (HTTP {}{code}){desc}", self.error, self.status)
    }
}

/// AADSTS codes that refuse the requested scope or resource (see [`OAuthError::refuses_the_scope`]).
const AUDIENCE_FINAL_CODES: &[u32] = &[70011, 650057, 500011];

/// `AADSTS70016: OAuth 2.0 device flow error…` → 70016.
fn aadsts_prefix(description: &str) -> Option<u32> {
    let rest = description.trim_start().strip_prefix("AADSTS")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn first_line(description: &str) -> String {
    description
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// `Retry-After` in delta-seconds (RFC 9110 §10.2.3). Entra sends seconds; an HTTP-date is ignored
/// (the backoff schedule then applies).
pub(crate) fn retry_after(headers: &http::HeaderMap) -> Option<std::time::Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    value.parse::<u64>().ok().map(Duration::from_secs)
}

//! Authentication of Exchange requests and the shape of refusals.
//!
//! - RPS (WS-Man): the query must carry `BasicAuthToOAuthConversion=true`; the `Authorization: Basic`
//!   password is the literal `Bearer <jwt>`; the Basic user must be the token's UPN (case-insensitive)
//!   or, for app-only tokens, `OAuthUser@<tenant>` (docs/PROTOCOL.md#basic-to-oauth).
//! - REST: `Authorization: Bearer <jwt>` (§1.9).
//! - Refusals are 401 with `WWW-Authenticate: Bearer ... error="invalid_token"` and `x-ms-diagnostics`
//!   (plus `Basic realm` on RPS), or the CAE `insufficient_claims` challenge (§1.6). The exact headers of
//!   the real service are UNCONFIRMED; these follow EXO's OAuth front end in general.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};

use super::{TokenCheck, TokenClaims, TokenRejection};

/// Exchange Online's resource app id, as its `WWW-Authenticate: Bearer` names it.
const EXCHANGE_APP_ID: &str = "00000002-0000-0ff1-ce00-000000000000";
const AUTHORIZATION_URI: &str = "https://login.microsoftonline.com/common/oauth2/authorize";

/// Who is calling, once authenticated.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    /// Lower-cased user name: keys shells, quotas and affinity cookies.
    pub(crate) user_key: String,
    /// What `whoami` prints: the token's UPN, or the Basic user for app-only tokens.
    pub(crate) display: String,
}

/// Why a request was not authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthFailure {
    /// RPS query lacks `BasicAuthToOAuthConversion=true`: plain Basic, which EXO no longer accepts.
    NoConversion,
    /// No usable `Authorization` header.
    NoCredentials,
    /// RPS Basic password is not `Bearer <jwt>`.
    NotBearerPassword,
    /// The token verifier refused the token.
    Rejected(TokenRejection),
    /// The Basic user name is neither the token's UPN nor `OAuthUser@<tenant>` for app-only.
    WrongUser,
    /// CAE mode: the token lacks the claim the resource demands.
    InsufficientClaims,
}

/// Which endpoint refuses: RPS adds a Basic challenge, since WinRM speaks Basic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Rps,
    Rest,
}

/// Authenticate an RPS (WS-Man) request.
pub(crate) fn authenticate_rps(
    req: &http::Request<Bytes>,
    audience: &str,
    tokens: &dyn TokenCheck,
    cae: bool,
) -> Result<Identity, AuthFailure> {
    if !has_oauth_conversion(req.uri().query().unwrap_or("")) {
        return Err(AuthFailure::NoConversion);
    }
    let (user, password) = basic_credentials(req).ok_or(AuthFailure::NoCredentials)?;
    let jwt = strip_bearer(&password).ok_or(AuthFailure::NotBearerPassword)?;
    let claims = verify(jwt, audience, tokens, cae)?;
    if !user_matches(&user, &claims) {
        return Err(AuthFailure::WrongUser);
    }
    let display = claims.upn.clone().unwrap_or_else(|| user.clone());
    Ok(Identity {
        user_key: user.to_ascii_lowercase(),
        display,
    })
}

/// Authenticate a REST request (`Authorization: Bearer`).
pub(crate) fn authenticate_bearer(
    req: &http::Request<Bytes>,
    audience: &str,
    tokens: &dyn TokenCheck,
    cae: bool,
) -> Result<Identity, AuthFailure> {
    let header = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .ok_or(AuthFailure::NoCredentials)?;
    let jwt = strip_bearer(header).ok_or(AuthFailure::NoCredentials)?;
    let claims = verify(jwt, audience, tokens, cae)?;
    let display = claims
        .upn
        .clone()
        .unwrap_or_else(|| format!("OAuthUser@{}", claims.tid));
    Ok(Identity {
        user_key: display.to_ascii_lowercase(),
        display,
    })
}

fn verify(
    jwt: &str,
    audience: &str,
    tokens: &dyn TokenCheck,
    cae: bool,
) -> Result<TokenClaims, AuthFailure> {
    let claims = tokens.check(jwt, audience).map_err(AuthFailure::Rejected)?;
    if cae && !claims.claims_satisfied {
        return Err(AuthFailure::InsufficientClaims);
    }
    Ok(claims)
}

/// `BasicAuthToOAuthConversion=true` among `&`-separated parameters; PowerShell appends
/// `;PSVersion=...` to a value with a semicolon, so only the part before `;` counts.
pub(crate) fn has_oauth_conversion(query: &str) -> bool {
    query.split('&').any(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = value.split(';').next().unwrap_or("");
        name.eq_ignore_ascii_case("BasicAuthToOAuthConversion")
            && value.eq_ignore_ascii_case("true")
    })
}

/// Decode `Authorization: Basic base64(user:password)`.
fn basic_credentials(req: &http::Request<Bytes>) -> Option<(String, String)> {
    let header = req
        .headers()
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

fn strip_bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Delegated: the Basic user is the token's UPN. App-only: `OAuthUser@<tenant id or domain>`.
fn user_matches(user: &str, claims: &TokenClaims) -> bool {
    match &claims.upn {
        Some(upn) => user.eq_ignore_ascii_case(upn),
        None => user.split_once('@').is_some_and(|(local, tenant)| {
            local.eq_ignore_ascii_case("OAuthUser") && !tenant.is_empty()
        }),
    }
}

// === refusals ===

/// The 401 for `failure`, shaped per docs/PROTOCOL.md#token-rejection.
pub(crate) fn unauthorized(failure: &AuthFailure, scheme: Scheme) -> Response<Bytes> {
    let mut resp = Response::new(Bytes::from_static(b""));
    *resp.status_mut() = StatusCode::UNAUTHORIZED;
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&bearer_challenge(failure)) {
        headers.append(http::header::WWW_AUTHENTICATE, v);
    }
    if scheme == Scheme::Rps {
        headers.append(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"\""),
        );
    }
    if let Ok(v) = HeaderValue::from_str(&diagnostics(failure)) {
        headers.insert("x-ms-diagnostics", v);
    }
    resp
}

fn bearer_challenge(failure: &AuthFailure) -> String {
    let base = format!(
        "Bearer client_id=\"{EXCHANGE_APP_ID}\", trusted_issuers=\"00000001-0000-0000-c000-000000000000@*\", \
         token_types=\"app_asserted_user_v1 service_asserted_app_v1\", authorization_uri=\"{AUTHORIZATION_URI}\""
    );
    match failure {
        // RFC 6750 §3.1: no error code when the request carried no credentials at all.
        AuthFailure::NoConversion | AuthFailure::NoCredentials => base,
        AuthFailure::InsufficientClaims => {
            format!(
                "{base}, error=\"insufficient_claims\", claims=\"{}\"",
                claims_challenge()
            )
        }
        _ => format!("{base}, error=\"invalid_token\""),
    }
}

/// Base64 of the claims request a CAE resource sends: "give me a token issued after now".
pub(crate) fn claims_challenge() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let json = format!(r#"{{"access_token":{{"nbf":{{"essential":true,"value":"{now}"}}}}}}"#);
    STANDARD.encode(json)
}

/// `x-ms-diagnostics` value; the numeric codes are UNCONFIRMED stand-ins.
fn diagnostics(failure: &AuthFailure) -> String {
    let (code, reason) = match failure {
        AuthFailure::NoConversion => (
            2000000,
            "Basic authentication is not supported; use BasicAuthToOAuthConversion=true",
        ),
        AuthFailure::NoCredentials => (2000000, "No credentials were presented"),
        AuthFailure::NotBearerPassword => (2000001, "The Basic password is not a Bearer token"),
        AuthFailure::Rejected(TokenRejection::Malformed) => (2000001, "The token is malformed"),
        AuthFailure::Rejected(TokenRejection::BadSignature) => {
            (2000002, "The token signature is invalid")
        }
        AuthFailure::Rejected(TokenRejection::Expired) => (2000003, "The token has expired"),
        AuthFailure::Rejected(TokenRejection::WrongAudience { .. }) => {
            (2000004, "The token audience is invalid")
        }
        AuthFailure::WrongUser => (2000005, "The user name does not match the token"),
        AuthFailure::InsufficientClaims => {
            (2000006, "The token does not satisfy the required claims")
        }
    };
    format!("{code};reason=\"{reason}\";error_category=\"invalid_token\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauth_conversion_flag_tolerates_psversion_suffix() {
        assert!(has_oauth_conversion(
            "BasicAuthToOAuthConversion=true;PSVersion=6.1.0"
        ));
        assert!(has_oauth_conversion("a=b&basicauthtooauthconversion=TRUE"));
        assert!(!has_oauth_conversion("BasicAuthToOAuthConversion=false"));
        assert!(!has_oauth_conversion(""));
    }

    #[test]
    fn claims_challenge_is_base64_json() {
        let raw = STANDARD.decode(claims_challenge()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(v["access_token"]["nbf"]["essential"], true);
    }
}

//! Sans-IO OAuth 2.0 / OpenID Connect core: functions that build an `http::Request<Bytes>` and parse an
//! `http::Response<Bytes>`, in the style of oauth2-rs. No sockets here, so tests assert on exact requests.
//!
//! Covered: OIDC discovery, device authorization (RFC 8628), refresh with rotation (RFC 6749 §6),
//! client credentials with a secret or an RFC 7523 assertion, authorization code + PKCE (RFC 7636), and
//! the `claims` parameter of a CAE challenge (PROTOCOL.md §2.5). Errors parse into [`OAuthError`].

// OAuthError is ~130 bytes; it is returned once per token call, never on a hot path.
#![allow(clippy::result_large_err)]

mod assertion;
mod device;
mod error;
mod pkce;
#[cfg(test)]
mod tests;

use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::token::account::is_entra_authority;
use crate::token::secret::{
    AccessToken, AuthorizationCode, ClientSecret, IdToken, PkceVerifier, RefreshToken,
};

pub use assertion::{AssertionError, ClientCertificate};
pub use device::{
    DeviceAuthorization, DevicePoll, SLOW_DOWN_STEP, device_authorization_request,
    device_token_request, parse_device_authorization, parse_device_poll,
};
pub use error::{ErrorKind, OAuthError};
pub use pkce::{AuthorizeUrl, Pkce, parse_redirect_query, random_urlsafe};

/// RFC 8628 §3.4 grant type.
pub const GRANT_DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// RFC 7523 §2.2 client assertion type.
pub const ASSERTION_TYPE_JWT_BEARER: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The endpoints of one authority+tenant, from OIDC discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// `token_endpoint` (RFC 6749 §3.2).
    pub token: String,
    /// `device_authorization_endpoint` (RFC 8628 §4).
    pub device_authorization: Option<String>,
    /// `authorization_endpoint` (RFC 6749 §3.1).
    pub authorization: Option<String>,
    /// `issuer`.
    pub issuer: Option<String>,
}

/// How a confidential client proves itself on the token endpoint.
#[derive(Clone)]
pub enum ClientAuth {
    /// `client_secret` in the form body (client_secret_post).
    Secret(ClientSecret),
    /// A signed JWT assertion (private_key_jwt, RFC 7523 §2.2); already serialised.
    Assertion(Zeroizing<String>),
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientAuth::Secret(_) => f.write_str("ClientAuth::Secret([redacted])"),
            ClientAuth::Assertion(_) => f.write_str("ClientAuth::Assertion([redacted])"),
        }
    }
}

/// A successful token response (RFC 6749 §5.1).
#[derive(Debug, Clone)]
pub struct TokenResponse {
    /// The access token.
    pub access_token: AccessToken,
    /// A new refresh token (Entra rotates it on every use; store it, drop the old one).
    pub refresh_token: Option<RefreshToken>,
    /// An ID token when `openid` was requested.
    pub id_token: Option<IdToken>,
    /// Lifetime of the access token, relative to when the response arrived (clock-skew proof, TOK-12).
    pub expires_in: Duration,
    /// Granted scopes.
    pub scope: Option<String>,
}

#[derive(Deserialize)]
struct TokenBody {
    access_token: String,
    refresh_token: Option<String>,
    id_token: Option<String>,
    expires_in: Option<NumberOrString>,
    scope: Option<String>,
}

/// Entra sends numbers; v1 endpoints and some emulators send strings.
#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrString {
    Number(u64),
    Text(String),
}

#[derive(Deserialize)]
struct DiscoveryBody {
    token_endpoint: String,
    device_authorization_endpoint: Option<String>,
    authorization_endpoint: Option<String>,
    issuer: Option<String>,
}

// === discovery ===

/// `GET` the OpenID configuration of `authority` (see [`discovery_url`]).
pub fn discovery_request(authority: &str, tenant: &str) -> http::Request<Bytes> {
    get(&discovery_url(authority, tenant))
}

/// `GET` an explicitly configured OpenID configuration URL (`discovery_url` of an account).
pub fn discovery_request_at(url: &str) -> http::Request<Bytes> {
    get(url)
}

/// Where the OpenID configuration of `authority` is: Entra ID cloud hosts keep their tenant layout
/// `{authority}/{tenant}/v2.0/.well-known/openid-configuration` (PROTOCOL.md §2.2); any other authority
/// is an issuer, discovered at `{issuer}/.well-known/openid-configuration` (OpenID Connect Discovery
/// 1.0 §4, the form RFC 8414 §5 keeps for OpenID providers).
pub fn discovery_url(authority: &str, tenant: &str) -> String {
    let base = authority.trim_end_matches('/');
    if is_entra_authority(base) {
        format!("{base}/{tenant}/v2.0/.well-known/openid-configuration")
    } else {
        format!("{base}/.well-known/openid-configuration")
    }
}

/// Reads the endpoints out of an OIDC configuration document.
pub fn parse_discovery(resp: &http::Response<Bytes>) -> Result<Endpoints, OAuthError> {
    if let Some(err) = OAuthError::from_response(resp) {
        return Err(err);
    }
    let body: DiscoveryBody = serde_json::from_slice(resp.body()).map_err(|e| {
        OAuthError::malformed(
            resp.status().as_u16(),
            &format!("openid-configuration: {e}"),
        )
    })?;
    Ok(Endpoints {
        token: body.token_endpoint,
        device_authorization: body.device_authorization_endpoint,
        authorization: body.authorization_endpoint,
        issuer: body.issuer,
    })
}

/// Endpoints derived from the Entra URL layout, for when discovery is not wanted.
pub fn entra_endpoints(authority: &str, tenant: &str) -> Endpoints {
    let base = format!("{}/{tenant}/oauth2/v2.0", authority.trim_end_matches('/'));
    Endpoints {
        token: format!("{base}/token"),
        device_authorization: Some(format!("{base}/devicecode")),
        authorization: Some(format!("{base}/authorize")),
        issuer: None,
    }
}

// === token grants ===

/// RFC 6749 §6: refresh; `claims` carries a CAE challenge (PROTOCOL.md §2.5).
pub fn refresh_request(
    token_endpoint: &str,
    client_id: &str,
    refresh_token: &RefreshToken,
    scope: &str,
    claims: Option<&str>,
) -> http::Request<Bytes> {
    let mut form = Form::new();
    form.push("client_id", client_id);
    form.push("grant_type", "refresh_token");
    form.push("refresh_token", refresh_token.expose());
    form.push("scope", scope);
    form.push_opt("claims", claims);
    post_form(token_endpoint, form)
}

/// RFC 6749 §4.4: client credentials, authenticated by a secret or an assertion.
pub fn client_credentials_request(
    token_endpoint: &str,
    client_id: &str,
    scope: &str,
    auth: &ClientAuth,
    claims: Option<&str>,
) -> http::Request<Bytes> {
    let mut form = Form::new();
    form.push("client_id", client_id);
    form.push("grant_type", "client_credentials");
    form.push("scope", scope);
    form.push_opt("claims", claims);
    push_client_auth(&mut form, auth);
    post_form(token_endpoint, form)
}

/// RFC 6749 §4.1.3 + RFC 7636 §4.5: redeem an authorization code with its PKCE verifier.
pub fn authorization_code_request(
    token_endpoint: &str,
    client_id: &str,
    code: &AuthorizationCode,
    redirect_uri: &str,
    verifier: &PkceVerifier,
    scope: &str,
) -> http::Request<Bytes> {
    let mut form = Form::new();
    form.push("client_id", client_id);
    form.push("grant_type", "authorization_code");
    form.push("code", code.expose());
    form.push("redirect_uri", redirect_uri);
    form.push("code_verifier", verifier.expose());
    form.push("scope", scope);
    post_form(token_endpoint, form)
}

fn push_client_auth(form: &mut Form, auth: &ClientAuth) {
    match auth {
        ClientAuth::Secret(secret) => form.push("client_secret", secret.expose()),
        ClientAuth::Assertion(jwt) => {
            form.push("client_assertion_type", ASSERTION_TYPE_JWT_BEARER);
            form.push("client_assertion", jwt);
        }
    }
}

/// Parses a token endpoint answer: a [`TokenResponse`] or the IdP's [`OAuthError`].
pub fn parse_token_response(resp: &http::Response<Bytes>) -> Result<TokenResponse, OAuthError> {
    if let Some(err) = OAuthError::from_response(resp) {
        return Err(err);
    }
    let status = resp.status().as_u16();
    let body: TokenBody = serde_json::from_slice(resp.body())
        .map_err(|_| OAuthError::malformed(status, "token response is not the expected JSON"))?;
    let expires_in = match body.expires_in {
        Some(NumberOrString::Number(n)) => n,
        Some(NumberOrString::Text(t)) => t
            .trim()
            .parse()
            .map_err(|_| OAuthError::malformed(status, "expires_in is not a number"))?,
        // RFC 6749 §5.1 makes it optional; Entra always sends it. One hour is the documented typical value.
        None => 3600,
    };
    Ok(TokenResponse {
        access_token: AccessToken::new(body.access_token),
        refresh_token: body.refresh_token.map(RefreshToken::new),
        id_token: body.id_token.map(IdToken::new),
        expires_in: Duration::from_secs(expires_in),
        scope: body.scope,
    })
}

// === request building ===

/// An `application/x-www-form-urlencoded` body; zeroized on drop since it may carry secrets.
pub(crate) struct Form(Zeroizing<String>);

impl Form {
    pub(crate) fn new() -> Self {
        Self(Zeroizing::new(String::new()))
    }

    pub(crate) fn push(&mut self, key: &str, value: &str) {
        if !self.0.is_empty() {
            self.0.push('&');
        }
        self.0.push_str(&form_encode(key));
        self.0.push('=');
        self.0.push_str(&form_encode(value));
    }

    pub(crate) fn push_opt(&mut self, key: &str, value: Option<&str>) {
        if let Some(value) = value {
            self.push(key, value);
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// Bytes percent-encoded in form bodies and query strings: all but RFC 3986's unreserved characters.
const FORM_ENCODED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes for form bodies and query strings (unreserved characters kept, space as `%20`).
pub fn form_encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, FORM_ENCODED).to_string()
}

/// Decodes `application/x-www-form-urlencoded` (`+` is a space; a malformed `%` escape is kept).
pub fn form_decode(value: &str) -> String {
    percent_encoding::percent_decode_str(&value.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// Splits a form body or query into decoded pairs.
pub fn parse_form(body: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect()
}

fn post_form(uri: &str, form: Form) -> http::Request<Bytes> {
    let body = Bytes::copy_from_slice(form.as_str().as_bytes());
    let mut req = http::Request::new(body);
    *req.method_mut() = http::Method::POST;
    set_uri(&mut req, uri);
    let headers = req.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    headers.insert(
        http::header::ACCEPT,
        http::HeaderValue::from_static("application/json"),
    );
    req
}

fn get(uri: &str) -> http::Request<Bytes> {
    let mut req = http::Request::new(Bytes::new());
    set_uri(&mut req, uri);
    req.headers_mut().insert(
        http::header::ACCEPT,
        http::HeaderValue::from_static("application/json"),
    );
    req
}

/// A URI we cannot parse stays the default `/`; the transport then fails visibly instead of us panicking.
fn set_uri(req: &mut http::Request<Bytes>, uri: &str) {
    match uri.parse::<http::Uri>() {
        Ok(parsed) => *req.uri_mut() = parsed,
        Err(e) => tracing::warn!(%uri, error = %e, "identity provider endpoint is not a valid URI"),
    }
}

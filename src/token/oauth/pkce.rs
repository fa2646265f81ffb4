//! Authorization code + PKCE (RFC 6749 §4.1, RFC 7636): verifier/challenge, the authorize URL and the
//! redirect's query.
//!
//! Contract: the verifier is 43+ characters of base64url from the system RNG, the challenge is its
//! SHA-256 (S256); a redirect is accepted only if its `state` matches the one we sent (CSRF).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SecureRandom as _;

use super::{OAuthError, form_encode, parse_form};
use crate::token::secret::{AuthorizationCode, PkceVerifier};

/// A PKCE pair; the verifier stays with us, the challenge goes into the authorize URL.
#[derive(Debug, Clone)]
pub struct Pkce {
    /// `code_verifier` (RFC 7636 §4.1).
    pub verifier: PkceVerifier,
    /// `code_challenge` = BASE64URL(SHA256(verifier)) (§4.2).
    pub challenge: String,
}

/// The parameters of an authorize request (RFC 6749 §4.1.1, docs/PROTOCOL.md#authorize).
#[derive(Debug, Clone)]
pub struct AuthorizeUrl<'a> {
    /// `authorization_endpoint`.
    pub endpoint: &'a str,
    /// Client id.
    pub client_id: &'a str,
    /// Loopback redirect URI, e.g. `http://127.0.0.1:51234/`.
    pub redirect_uri: &'a str,
    /// Space-separated scopes.
    pub scope: &'a str,
    /// Anti-CSRF value echoed back in the redirect.
    pub state: &'a str,
    /// PKCE S256 challenge.
    pub code_challenge: &'a str,
    /// Pre-fills the UPN on the sign-in page.
    pub login_hint: Option<&'a str>,
    /// CAE claims challenge (JSON).
    pub claims: Option<&'a str>,
}

// === impl Pkce ===

impl Pkce {
    /// A fresh S256 pair.
    pub fn new() -> Result<Self, OAuthError> {
        Ok(Self::from_verifier(PkceVerifier::new(random_urlsafe(32)?)))
    }

    /// The pair for a known verifier (tests, RFC 7636 appendix B).
    pub fn from_verifier(verifier: PkceVerifier) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, verifier.expose().as_bytes());
        let challenge = URL_SAFE_NO_PAD.encode(digest.as_ref());
        Self {
            verifier,
            challenge,
        }
    }
}

// === impl AuthorizeUrl ===

impl AuthorizeUrl<'_> {
    /// The full URL to open in the browser.
    pub fn build(&self) -> String {
        let mut params = vec![
            ("client_id", self.client_id),
            ("response_type", "code"),
            ("redirect_uri", self.redirect_uri),
            ("response_mode", "query"),
            ("scope", self.scope),
            ("state", self.state),
            ("code_challenge", self.code_challenge),
            ("code_challenge_method", "S256"),
        ];
        if let Some(hint) = self.login_hint {
            params.push(("login_hint", hint));
        }
        if let Some(claims) = self.claims {
            params.push(("claims", claims));
        }
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{k}={}", form_encode(v)))
            .collect();
        let sep = if self.endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        format!("{}{sep}{}", self.endpoint, query.join("&"))
    }
}

/// `n` random bytes from the system RNG, base64url without padding.
pub fn random_urlsafe(n: usize) -> Result<String, OAuthError> {
    let mut bytes = vec![0u8; n];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| OAuthError::malformed(0, "system random generator failed"))?;
    Ok(URL_SAFE_NO_PAD.encode(&bytes))
}

/// Reads the redirect's query: the code if `state` matches, else the IdP's error or a state mismatch.
pub fn parse_redirect_query(
    query: &str,
    expected_state: &str,
) -> Result<AuthorizationCode, OAuthError> {
    let pairs = parse_form(query);
    let find = |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    if find("state").as_deref() != Some(expected_state) {
        return Err(OAuthError::malformed(
            0,
            "redirect state does not match (possible CSRF)",
        ));
    }
    if let Some(error) = find("error") {
        let body = serde_json::json!({
            "error": error,
            "error_description": find("error_description").unwrap_or_default(),
        });
        let resp = http::Response::builder()
            .status(http::StatusCode::BAD_REQUEST)
            .body(bytes::Bytes::from(body.to_string()))
            .map_err(|_| OAuthError::malformed(0, "redirect error"))?;
        return Err(OAuthError::from_response(&resp)
            .unwrap_or_else(|| OAuthError::malformed(0, "redirect error")));
    }
    find("code")
        .filter(|c| !c.is_empty())
        .map(AuthorizationCode::new)
        .ok_or_else(|| OAuthError::malformed(0, "redirect carries neither code nor error"))
}

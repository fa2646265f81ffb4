//! RS256 JSON Web Tokens: the emulator signs access and id tokens with one fixed RSA key and verifies
//! them for the Exchange side ([`TokenCheck`]).
//!
//! The key is a 2048-bit RSA test key generated once with `openssl genpkey` and committed under
//! `sim/keys/token-signing.key` (ring cannot generate RSA keys; a fixed key is fine for an emulator and
//! keeps JWKS stable between runs). Its `kid` (also `x5t`) is a base64url SHA-1 of the public key.

use std::time::{SystemTime, UNIX_EPOCH};

use ring::signature::{self, KeyPair, RsaKeyPair, UnparsedPublicKey};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};

use crate::exchange::{TokenCheck, TokenClaims, TokenRejection};
use crate::ids::b64url;

/// PKCS#8 PEM of the token signing key.
const SIGNING_KEY_PEM: &str = include_str!("../keys/token-signing.key");

/// Signs tokens and verifies the ones it signed.
#[derive(Debug)]
pub struct Signer {
    key: RsaKeyPair,
    kid: String,
}

/// A compact JWS split into its decoded parts.
#[derive(Debug, Clone)]
pub(crate) struct Decoded {
    pub(crate) header: Value,
    pub(crate) claims: Value,
    /// `header.payload`, the bytes the signature covers.
    pub(crate) signed: String,
    pub(crate) signature: Vec<u8>,
}

/// Why a compact JWS could not be split and decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed JWT")]
pub(crate) struct Malformed;

// === impl Signer ===

impl Signer {
    /// Load the committed signing key.
    pub fn new() -> Result<Signer, crate::Error> {
        let der = PrivateKeyDer::from_pem_slice(SIGNING_KEY_PEM.as_bytes())
            .map_err(|e| crate::Error::Key(format!("token signing key PEM: {e}")))?;
        let key = RsaKeyPair::from_pkcs8(der.secret_der())
            .map_err(|e| crate::Error::Key(format!("token signing key: {e}")))?;
        let digest = ring::digest::digest(
            &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            key.public_key().as_ref(),
        );
        let kid = b64url(digest.as_ref());
        Ok(Signer { key, kid })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Sign `claims` as an RS256 JWT with this key's `kid`/`x5t`.
    pub fn sign(&self, claims: &Value) -> Result<String, crate::Error> {
        let header = json!({"typ": "JWT", "alg": "RS256", "kid": self.kid, "x5t": self.kid});
        let signed = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let mut sig = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                signed.as_bytes(),
                &mut sig,
            )
            .map_err(|_| crate::Error::Key("RSA signing failed".into()))?;
        Ok(format!("{signed}.{}", b64url(&sig)))
    }

    /// The JWKS document (`/discovery/v2.0/keys`).
    pub fn jwks(&self, issuer: &str) -> Value {
        let components = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(self.key.public());
        let (n, e) = (&components.n, &components.e);
        json!({"keys": [{
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid, "x5t": self.kid,
            "n": b64url(n), "e": b64url(e), "issuer": issuer,
        }]})
    }

    /// Verify signature, `nbf`/`exp` against now, and return the claims.
    pub(crate) fn verify(&self, jwt: &str) -> Result<Value, TokenRejection> {
        let decoded = decode(jwt).map_err(|_| TokenRejection::Malformed)?;
        if decoded.header.get("alg").and_then(Value::as_str) != Some("RS256") {
            return Err(TokenRejection::BadSignature);
        }
        UnparsedPublicKey::new(
            &signature::RSA_PKCS1_2048_8192_SHA256,
            self.key.public_key().as_ref(),
        )
        .verify(decoded.signed.as_bytes(), &decoded.signature)
        .map_err(|_| TokenRejection::BadSignature)?;
        let now = unix_now();
        let claim = |name: &str| numeric_date(&decoded.claims, name);
        match (claim("nbf"), claim("exp")) {
            (_, None) => Err(TokenRejection::Malformed),
            (Some(nbf), _) if nbf > now => Err(TokenRejection::Expired),
            (_, Some(exp)) if exp <= now => Err(TokenRejection::Expired),
            _ => Ok(decoded.claims),
        }
    }
}

impl TokenCheck for Signer {
    fn check(&self, jwt: &str, audience: &str) -> Result<TokenClaims, TokenRejection> {
        let claims = self.verify(jwt)?;
        let aud = str_claim(&claims, "aud").unwrap_or_default();
        if aud.trim_end_matches('/') != audience.trim_end_matches('/') {
            return Err(TokenRejection::WrongAudience {
                expected: audience.to_string(),
                got: aud,
            });
        }
        Ok(token_claims(&claims, aud))
    }
}

fn token_claims(claims: &Value, aud: String) -> TokenClaims {
    let strings = |name: &str| -> Vec<String> {
        claims
            .get(name)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    TokenClaims {
        aud,
        tid: str_claim(claims, "tid").unwrap_or_default(),
        upn: ["upn", "unique_name", "preferred_username"]
            .iter()
            .find_map(|n| str_claim(claims, n)),
        appid: str_claim(claims, "appid").unwrap_or_default(),
        roles: strings("roles"),
        scp: str_claim(claims, "scp"),
        exp: numeric_date(claims, "exp").unwrap_or(0),
        xms_cc: strings("xms_cc"),
        claims_satisfied: claims
            .get(CLAIMS_SATISFIED)
            .and_then(Value::as_bool)
            .unwrap_or(false),
    }
}

/// Private claim marking a token issued in answer to a `claims` request (a CAE challenge).
pub(crate) const CLAIMS_SATISFIED: &str = "xms_exosim_claims_satisfied";

pub(crate) fn str_claim(claims: &Value, name: &str) -> Option<String> {
    claims.get(name).and_then(Value::as_str).map(String::from)
}

/// A NumericDate claim (RFC 7519 §2): JSON number of seconds, which may carry a fraction (MSAL Python
/// sends `time.time()` floats). Negative or absent: `None`.
pub(crate) fn numeric_date(claims: &Value, name: &str) -> Option<u64> {
    let value = claims.get(name)?;
    value
        .as_u64()
        .or_else(|| value.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
}

/// Split and base64url-decode a compact JWS without checking anything.
pub(crate) fn decode(jwt: &str) -> Result<Decoded, Malformed> {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = jwt.trim().split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Malformed);
    };
    let part = |text: &str| {
        URL_SAFE_NO_PAD
            .decode(text.trim_end_matches('='))
            .map_err(|_| Malformed)
    };
    let header: Value = serde_json::from_slice(&part(h)?).map_err(|_| Malformed)?;
    let claims: Value = serde_json::from_slice(&part(p)?).map_err(|_| Malformed)?;
    Ok(Decoded {
        header,
        claims,
        signed: format!("{h}.{p}"),
        signature: part(s)?,
    })
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;

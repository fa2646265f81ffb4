//! Reads the claims of a received access or ID token, without verifying the signature.
//!
//! Contract: only for display and for the wrong-user guard; the resource verifies tokens, we never trust
//! these claims for an authorization decision of our own. A token that is not a JWT yields an error.

use base64::Engine as _;
use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// base64url that accepts the payload with or without `=` padding.
const URL_SAFE_NO_PAD_INDIFFERENT: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
use serde::Deserialize;

/// The claims exoproxy looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Claims {
    /// Expiry, Unix seconds.
    pub exp: Option<i64>,
    /// Not before, Unix seconds.
    pub nbf: Option<i64>,
    /// Audience (a string or a list in JWTs; kept as the first value).
    #[serde(default, deserialize_with = "string_or_first")]
    pub aud: Option<String>,
    /// v1 user principal name.
    pub upn: Option<String>,
    /// v2 user name.
    pub preferred_username: Option<String>,
    /// Legacy user name.
    pub unique_name: Option<String>,
    /// Tenant id.
    pub tid: Option<String>,
    /// Delegated scopes, space separated.
    pub scp: Option<String>,
    /// App roles (app-only tokens).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Client that obtained the token.
    pub appid: Option<String>,
}

/// Why claims could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("token is not a readable JWT: {0}")]
pub struct NotAJwt(&'static str);

// === impl Claims ===

impl Claims {
    /// Decodes the payload of a compact JWT.
    pub fn decode(jwt: &str) -> Result<Self, NotAJwt> {
        let mut parts = jwt.split('.');
        let payload = match (parts.next(), parts.next(), parts.next()) {
            (Some(_), Some(payload), Some(_)) => payload,
            _ => return Err(NotAJwt("not three dot-separated parts")),
        };
        let bytes = URL_SAFE_NO_PAD_INDIFFERENT
            .decode(payload)
            .map_err(|_| NotAJwt("payload is not base64url"))?;
        serde_json::from_slice(&bytes).map_err(|_| NotAJwt("payload is not a JSON claims object"))
    }

    /// The signed-in user's name: `upn`, else `preferred_username`, else `unique_name`.
    pub fn user(&self) -> Option<&str> {
        self.upn
            .as_deref()
            .or(self.preferred_username.as_deref())
            .or(self.unique_name.as_deref())
    }
}

fn string_or_first<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        Some(OneOrMany::One(s)) => Some(s),
        Some(OneOrMany::Many(v)) => v.into_iter().next(),
        None => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn jwt(claims: serde_json::Value) -> String {
        format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    }

    #[test]
    fn decodes_the_claims_we_read() {
        let token = jwt(serde_json::json!({
            "aud": "https://outlook.office365.com", "exp": 1700000000, "tid": "t-1",
            "unique_name": "Admin@Contoso.com", "scp": "Exchange.Manage", "roles": []
        }));
        let claims = Claims::decode(&token).unwrap();
        assert_eq!(claims.aud.as_deref(), Some("https://outlook.office365.com"));
        assert_eq!(claims.exp, Some(1_700_000_000));
        assert_eq!(claims.user(), Some("Admin@Contoso.com"));
        assert_eq!(claims.scp.as_deref(), Some("Exchange.Manage"));
    }

    #[test]
    fn upn_wins_and_audience_lists_are_read() {
        let token = jwt(serde_json::json!({
            "aud": ["a", "b"], "upn": "u@x", "preferred_username": "p@x",
            "roles": ["Exchange.ManageAsApp"]
        }));
        let claims = Claims::decode(&token).unwrap();
        assert_eq!(claims.aud.as_deref(), Some("a"));
        assert_eq!(claims.user(), Some("u@x"));
        assert_eq!(claims.roles, vec!["Exchange.ManageAsApp".to_string()]);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(Claims::decode("opaque-token").is_err());
        assert!(Claims::decode("a.%%%.c").is_err());
        assert!(Claims::decode(&format!("a.{}.c", URL_SAFE_NO_PAD.encode("[1]"))).is_err());
    }
}

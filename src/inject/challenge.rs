//! Whether a response rejects the token we injected, and the claims it asks for.
//!
//! Contract: a rejection is a 401, or a `WWW-Authenticate` challenge with `insufficient_claims`
//! (a Continuous Access Evaluation challenge, docs/PROTOCOL.md#cae-claims), whatever its status. The
//! challenge's
//! `claims="<base64>"` parameter is decoded (standard or URL-safe base64) into the claims JSON the
//! token manager sends with its next token request; claims that cannot be decoded leave a rejection
//! without claims. Only the status and the challenges are read, never the body.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::StatusCode;
use http::header::{HeaderMap, WWW_AUTHENTICATE};

/// A response that rejected the injected token: re-acquire it (with these claims) and replay once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The decoded claims JSON of a CAE challenge.
    pub claims: Option<String>,
}

/// `Some` when a response with this status and these headers rejects the token.
pub fn rejection(status: StatusCode, headers: &HeaderMap) -> Option<Rejection> {
    let challenge = headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.contains("insufficient_claims"));
    match (status == StatusCode::UNAUTHORIZED, challenge) {
        (_, Some(challenge)) => Some(Rejection {
            claims: challenge_claims(challenge),
        }),
        (true, None) => Some(Rejection { claims: None }),
        (false, None) => None,
    }
}

/// The decoded `claims="<base64>"` parameter of a challenge.
fn challenge_claims(challenge: &str) -> Option<String> {
    let start = challenge.find("claims=\"")? + "claims=\"".len();
    let encoded = challenge[start..].split('"').next()?;
    let engines = [
        STANDARD.decode(encoded),
        URL_SAFE_NO_PAD.decode(encoded.trim_end_matches('=')),
    ];
    engines
        .into_iter()
        .find_map(|r| r.ok())
        .and_then(|raw| String::from_utf8(raw).ok())
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn claims_of_a_cae_challenge_are_decoded() {
        let json = r#"{"access_token":{"nbf":{"essential":true,"value":"1604106651"}}}"#;
        let encoded = STANDARD.encode(json);
        let challenge = format!(
            "Bearer realm=\"\", authorization_uri=\"https://login\", error=\"insufficient_claims\", claims=\"{encoded}\""
        );
        assert_eq!(challenge_claims(&challenge).as_deref(), Some(json));
        assert_eq!(challenge_claims("Bearer error=\"invalid_token\""), None);
    }

    #[test]
    fn a_401_or_a_claims_challenge_rejects_the_token() {
        let mut headers = HeaderMap::new();
        assert_eq!(rejection(StatusCode::OK, &headers), None);
        assert_eq!(
            rejection(StatusCode::UNAUTHORIZED, &headers),
            Some(Rejection { claims: None })
        );
        let challenge = format!(
            "Bearer error=\"insufficient_claims\", claims=\"{}\"",
            URL_SAFE_NO_PAD.encode("{}")
        );
        headers.insert(WWW_AUTHENTICATE, HeaderValue::from_str(&challenge).unwrap());
        assert_eq!(
            rejection(StatusCode::FORBIDDEN, &headers),
            Some(Rejection {
                claims: Some("{}".into())
            })
        );
    }
}

//! What a token request asks for: the resource (the access token's `aud`), the delegated permissions,
//! the OpenID Connect extras (`openid`, `offline_access`), and a `claims` request (CAE,
//! docs/PROTOCOL.md#cae-claims).
//!
//! v2 names the resource inside `scope` (`https://outlook.office365.com/.default` → aud
//! `https://outlook.office365.com`); v1 names it in `resource=`.

use serde_json::Value;

use super::errors::AadError;

/// The OpenID Connect scopes that do not name a resource.
const OIDC_SCOPES: &[&str] = &["openid", "profile", "offline_access", "email"];

/// The parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scopes {
    /// The `aud` of the access token.
    pub(crate) resource: String,
    /// Delegated permission names without the resource prefix; `.default` expands to the resource's.
    pub(crate) permissions: Vec<String>,
    pub(crate) dot_default: bool,
    pub(crate) offline_access: bool,
    pub(crate) openid: bool,
}

/// What a `claims` parameter asked of the access token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ClaimsRequest {
    /// The client declared capability `cp1` (CAE capable).
    pub(crate) cp1: bool,
    /// The request carried an access-token claim demand other than `xms_cc` (a challenge's answer).
    pub(crate) challenge_answered: bool,
}

// === impl Scopes ===

impl Scopes {
    /// Parse a v2 `scope` parameter. Without a resource scope Entra issues a Microsoft Graph token.
    pub(crate) fn parse_v2(scope: &str) -> Result<Scopes, AadError> {
        let words: Vec<&str> = scope.split_whitespace().collect();
        let has = |w: &str| words.iter().any(|s| s.eq_ignore_ascii_case(w));
        let mut resource: Option<String> = None;
        let mut permissions = Vec::new();
        let mut dot_default = false;
        for word in words
            .iter()
            .filter(|w| !OIDC_SCOPES.iter().any(|o| o.eq_ignore_ascii_case(w)))
        {
            let (res, perm) = split_scope(word)?;
            if resource
                .as_deref()
                .is_some_and(|r| !r.eq_ignore_ascii_case(&res))
            {
                return Err(AadError::invalid_request(
                    28000,
                    "Provided value for the input parameter scope is not valid because it contains more than one resource. Scope {scope} is not valid.",
                ));
            }
            resource = Some(res);
            if perm == ".default" {
                dot_default = true;
            } else {
                permissions.push(perm);
            }
        }
        Ok(Scopes {
            resource: resource.unwrap_or_else(|| "https://graph.microsoft.com".into()),
            permissions,
            dot_default,
            offline_access: has("offline_access"),
            openid: has("openid"),
        })
    }

    /// A v1 request: the resource is given; v1 always behaves like `.default` and returns a refresh token.
    pub(crate) fn v1(resource: &str, scope: Option<&str>) -> Scopes {
        let scope = scope.unwrap_or_default();
        Scopes {
            resource: resource.trim_end_matches('/').to_string(),
            permissions: Vec::new(),
            dot_default: true,
            offline_access: true,
            openid: scope.split_whitespace().any(|w| w == "openid"),
        }
    }

    /// The `scp` claim: explicit permissions, or what `.default` stands for on this resource.
    pub(crate) fn scp(&self) -> String {
        if !self.permissions.is_empty() {
            return self.permissions.join(" ");
        }
        let exchange = self.resource.contains("outlook.office365")
            || self.resource.contains("protection.outlook");
        if exchange {
            "Exchange.Manage".into()
        } else {
            "user_impersonation".into()
        }
    }

    /// The `scope` field of a v2 answer: granted permissions as full URIs plus the OIDC scopes granted.
    pub(crate) fn granted(&self) -> String {
        let mut out: Vec<String> = self
            .scp()
            .split(' ')
            .map(|p| format!("{}/{}", self.resource, p))
            .collect();
        if self.openid {
            out.push("openid".into());
            out.push("profile".into());
        }
        if self.offline_access {
            out.push("offline_access".into());
        }
        out.join(" ")
    }
}

/// `https://host/Perm` → (`https://host`, `Perm`); a bare GUID resource or `api://x/perm` works too.
fn split_scope(word: &str) -> Result<(String, String), AadError> {
    let invalid = || {
        AadError::invalid_request(
            70011,
            format!(
                "The provided value for the input parameter 'scope' is not valid. The scope '{word}' is not valid."
            ),
        )
    };
    let (prefix, rest) = match word.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), word),
    };
    let (host_part, perm) = rest.rsplit_once('/').ok_or_else(invalid)?;
    if host_part.is_empty() || perm.is_empty() {
        return Err(invalid());
    }
    Ok((format!("{prefix}{host_part}"), perm.to_string()))
}

// === impl ClaimsRequest ===

impl ClaimsRequest {
    /// Parse the `claims` parameter (a JSON object; docs/PROTOCOL.md#cae-claims).
    pub(crate) fn parse(claims: Option<&str>) -> Result<ClaimsRequest, AadError> {
        let Some(text) = claims.filter(|c| !c.trim().is_empty()) else {
            return Ok(ClaimsRequest::default());
        };
        let value: Value = serde_json::from_str(text).map_err(|_| {
            AadError::invalid_request(90014, "The claims parameter is not valid JSON.")
        })?;
        let Some(access) = value.get("access_token").and_then(Value::as_object) else {
            return Ok(ClaimsRequest::default());
        };
        let cp1 = access
            .get("xms_cc")
            .and_then(|x| x.get("values"))
            .and_then(Value::as_array)
            .is_some_and(|values| values.iter().any(|v| v.as_str() == Some("cp1")));
        let challenge_answered = access.keys().any(|k| k != "xms_cc");
        Ok(ClaimsRequest {
            cp1,
            challenge_answered,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_default_names_the_resource() {
        let s = Scopes::parse_v2("https://outlook.office365.com/.default offline_access openid")
            .unwrap();
        assert_eq!(s.resource, "https://outlook.office365.com");
        assert!(s.dot_default && s.offline_access && s.openid);
        assert_eq!(s.scp(), "Exchange.Manage");
    }

    #[test]
    fn two_resources_are_refused_with_aadsts28000() {
        let err = Scopes::parse_v2(
            "https://outlook.office365.com/.default https://graph.microsoft.com/User.Read",
        )
        .unwrap_err();
        assert_eq!(err.code, 28000);
    }

    #[test]
    fn explicit_permissions_become_scp() {
        let s = Scopes::parse_v2(
            "https://graph.microsoft.com/User.Read https://graph.microsoft.com/Mail.Read",
        )
        .unwrap();
        assert_eq!(s.scp(), "User.Read Mail.Read");
        assert!(!s.offline_access);
    }

    #[test]
    fn claims_cp1_and_challenge_answer_are_told_apart() {
        let cp1 = ClaimsRequest::parse(Some(r#"{"access_token":{"xms_cc":{"values":["cp1"]}}}"#))
            .unwrap();
        assert_eq!(
            cp1,
            ClaimsRequest {
                cp1: true,
                challenge_answered: false
            }
        );
        let answer = ClaimsRequest::parse(Some(
            r#"{"access_token":{"nbf":{"essential":true,"value":"1604106651"}}}"#,
        ))
        .unwrap();
        assert!(answer.challenge_answered);
        assert!(ClaimsRequest::parse(Some("{not json")).is_err());
    }
}

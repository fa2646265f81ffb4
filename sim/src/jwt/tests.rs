use serde_json::json;

use super::*;

fn claims(aud: &str, exp_offset: i64) -> Value {
    let now = unix_now() as i64;
    json!({"aud": aud, "tid": "t", "upn": "admin@contoso.com", "appid": "a", "scp": "Exchange.Manage",
           "nbf": now, "iat": now, "exp": now + exp_offset, "xms_cc": ["cp1"]})
}

#[test]
fn signed_token_checks_out_with_its_claims() {
    let signer = Signer::new().unwrap();
    let jwt = signer
        .sign(&claims("https://outlook.office365.com", 60))
        .unwrap();
    let c = signer.check(&jwt, "https://outlook.office365.com").unwrap();
    assert_eq!(c.upn.as_deref(), Some("admin@contoso.com"));
    assert_eq!(c.xms_cc, vec!["cp1".to_string()]);
    assert!(!c.claims_satisfied);
}

#[test]
fn wrong_audience_expired_and_tampered_tokens_are_refused() {
    let signer = Signer::new().unwrap();
    let jwt = signer
        .sign(&claims("https://outlook.office365.com", 60))
        .unwrap();
    assert!(matches!(
        signer.check(&jwt, "https://ps.compliance.protection.outlook.com"),
        Err(TokenRejection::WrongAudience { .. })
    ));
    let old = signer
        .sign(&claims("https://outlook.office365.com", -1))
        .unwrap();
    assert_eq!(
        signer
            .check(&old, "https://outlook.office365.com")
            .unwrap_err(),
        TokenRejection::Expired
    );
    let mut parts: Vec<String> = jwt.split('.').map(String::from).collect();
    parts[1] = b64url(
        claims("https://outlook.office365.com", 9999)
            .to_string()
            .as_bytes(),
    );
    assert_eq!(
        signer
            .check(&parts.join("."), "https://outlook.office365.com")
            .unwrap_err(),
        TokenRejection::BadSignature
    );
    assert_eq!(
        signer.check("not-a-jwt", "x").unwrap_err(),
        TokenRejection::Malformed
    );
}

#[test]
fn jwks_carries_the_signing_kid() {
    let signer = Signer::new().unwrap();
    let jwks = signer.jwks("https://login.microsoftonline.com/{tenantid}/v2.0");
    assert_eq!(jwks["keys"][0]["kid"], signer.kid());
    assert_eq!(jwks["keys"][0]["e"], "AQAB");
}

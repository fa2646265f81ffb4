use super::*;

#[test]
fn claims_of_a_cae_challenge_are_decoded() {
    let json = r#"{"access_token":{"nbf":{"essential":true,"value":"1604106651"}}}"#;
    let encoded = base64::engine::general_purpose::STANDARD.encode(json);
    let challenge = format!(
        "Bearer realm=\"\", authorization_uri=\"https://login\", error=\"insufficient_claims\", claims=\"{encoded}\""
    );
    assert_eq!(challenge_claims(&challenge).as_deref(), Some(json));
    assert_eq!(challenge_claims("Bearer error=\"invalid_token\""), None);
}

#[test]
fn flavor_follows_the_injection_path() {
    assert_eq!(Flavor::of("/PowerShell-LiveID"), Flavor::WsMan);
    assert_eq!(Flavor::of("/adminapi/beta/x/InvokeCommand"), Flavor::Rest);
    assert_eq!(Flavor::of("/owa/"), Flavor::Plain);
}

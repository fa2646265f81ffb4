//! The Entra ID side of exosim over real TLS on loopback (docs/PROTOCOL.md#emulator): discovery, device
//! code, refresh rotation and revocation, client credentials, authorization code + PKCE, v1, errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use exosim::config::{
    CERT_APP_CLIENT_ID, CONTOSO_TENANT_ID, REST_CLIENT_ID, RPS_CLIENT_ID, SECRET_APP_CLIENT_ID,
    SECRET_APP_SECRET,
};
use exosim::{GrantType, SimConfig};

#[tokio::test]
async fn openid_configuration_and_jwks_describe_the_tenant() {
    let h = Harness::start().await;
    let doc = h
        .client
        .get(&format!(
            "https://login.microsoftonline.com/{TENANT}/v2.0/.well-known/openid-configuration"
        ))
        .await;
    assert_eq!(doc.status, 200);
    let doc = doc.json();
    assert_eq!(
        doc["issuer"],
        format!("https://login.microsoftonline.com/{CONTOSO_TENANT_ID}/v2.0")
    );
    assert_eq!(
        doc["token_endpoint"],
        format!("https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token")
    );
    assert!(
        doc["device_authorization_endpoint"]
            .as_str()
            .unwrap()
            .ends_with("/oauth2/v2.0/devicecode")
    );
    let jwks = h.client.get(doc["jwks_uri"].as_str().unwrap()).await.json();
    let tokens = sign_in(&h).await;
    let header: serde_json::Value = {
        use base64::Engine;
        let h64 = tokens["access_token"]
            .as_str()
            .unwrap()
            .split('.')
            .next()
            .unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(h64)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(jwks["keys"][0]["kid"], header["kid"]);
    // Sovereign authority hosts answer too, and unknown tenants get AADSTS90002.
    let us = h
        .client
        .get("https://login.microsoftonline.us/common/v2.0/.well-known/openid-configuration")
        .await
        .json();
    assert_eq!(us["cloud_instance_name"], "microsoftonline.us");
    let unknown = h
        .client
        .get(
            "https://login.microsoftonline.com/fabrikam.test/v2.0/.well-known/openid-configuration",
        )
        .await;
    assert_aad_error(&unknown, "invalid_request", 90002);
    h.sim.shutdown().await;
}

#[tokio::test]
async fn device_code_is_pending_until_approved_then_issues_exchange_tokens() {
    let h = Harness::start().await;
    let dc = device_code(&h).await;
    assert_eq!(dc["verification_uri"], "https://microsoft.com/devicelogin");
    assert_eq!(dc["expires_in"], 900);
    assert_eq!(dc["interval"], 1);
    let device_code = dc["device_code"].as_str().unwrap();
    let pending = poll(&h, device_code).await;
    assert_eq!(pending.status, 400);
    assert_aad_error(&pending, "authorization_pending", 70016);
    assert_eq!(
        pending.json()["correlation_id"],
        "11111111-2222-4333-8444-555555555555"
    );

    assert_eq!(
        h.sim.control().pending_devices(),
        vec![dc["user_code"].as_str().unwrap().to_string()]
    );
    h.sim.control().approve_device(None).unwrap();
    let tokens = poll(&h, device_code).await;
    assert_eq!(tokens.status, 200, "{}", tokens.text());
    let tokens = tokens.json();
    assert_eq!(tokens["token_type"], "Bearer");
    assert!(tokens["refresh_token"].is_string() && tokens["id_token"].is_string());
    let at = tokens["access_token"].as_str().unwrap();
    let checked = h.sim.control().check_token(at, OUTLOOK).unwrap();
    assert_eq!(checked.upn.as_deref(), Some("admin@contoso.com"));
    assert_eq!(checked.appid, RPS_CLIENT_ID);
    assert_eq!(checked.tid, CONTOSO_TENANT_ID);
    let c = claims(at);
    assert_eq!(
        c["iss"],
        format!("https://sts.windows.net/{CONTOSO_TENANT_ID}/")
    );
    assert_eq!(c["scp"], "Exchange.Manage");
    assert!(c["roles"].is_null());

    let again = poll(&h, device_code).await;
    assert_aad_error(&again, "invalid_grant", 54005);
    assert_eq!(h.sim.control().grant_count(GrantType::DeviceCode), 3);
    h.sim.shutdown().await;
}

#[tokio::test]
async fn device_code_declined_expired_slow_down_and_bad_code() {
    let h = Harness::start().await;
    let control = h.sim.control();
    let declined = device_code(&h).await;
    control
        .decline_device(declined["user_code"].as_str())
        .unwrap();
    assert_aad_error(
        &poll(&h, declined["device_code"].as_str().unwrap()).await,
        "authorization_declined",
        65004,
    );

    let expired = device_code(&h).await;
    control.expire_device(None).unwrap();
    assert_aad_error(
        &poll(&h, expired["device_code"].as_str().unwrap()).await,
        "expired_token",
        70019,
    );

    let slow = device_code(&h).await;
    control.slow_down(1);
    let code = slow["device_code"].as_str().unwrap();
    assert_eq!(poll(&h, code).await.json()["error"], "slow_down");
    assert_eq!(
        poll(&h, code).await.json()["error"],
        "authorization_pending"
    );

    assert_aad_error(
        &poll(&h, "not-a-device-code").await,
        "bad_verification_code",
        70018,
    );
    h.sim.shutdown().await;
}

#[tokio::test]
async fn device_code_expires_after_its_lifetime() {
    let config = SimConfig {
        device_code_lifetime: Duration::from_millis(300),
        ..SimConfig::default()
    };
    let h = Harness::with(config).await;
    let dc = device_code(&h).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_aad_error(
        &poll(&h, dc["device_code"].as_str().unwrap()).await,
        "expired_token",
        70019,
    );
    h.sim.shutdown().await;
}

#[tokio::test]
async fn refresh_rotates_keeps_the_old_token_valid_and_revocation_ends_both() {
    let h = Harness::start().await;
    let first = sign_in(&h).await;
    let rt1 = first["refresh_token"].as_str().unwrap();
    let second = refresh(&h, rt1).await;
    assert_eq!(second.status, 200, "{}", second.text());
    let rt2 = second.json()["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(rt1, rt2, "refresh token rotates on every use");
    assert_ne!(
        claims(first["access_token"].as_str().unwrap())["uti"],
        claims(second.json()["access_token"].as_str().unwrap())["uti"]
    );
    assert_eq!(
        refresh(&h, rt1).await.status,
        200,
        "the old refresh token stays valid"
    );

    h.sim.control().revoke_user("admin@contoso.com");
    for rt in [rt1, rt2.as_str()] {
        assert_aad_error(&refresh(&h, rt).await, "invalid_grant", 50173);
    }
    // A fresh sign-in after revocation works again.
    let fresh = sign_in(&h).await;
    assert_eq!(
        refresh(&h, fresh["refresh_token"].as_str().unwrap())
            .await
            .status,
        200
    );
    assert_eq!(h.sim.control().grant_count(GrantType::RefreshToken), 5);
    h.sim.shutdown().await;
}

#[tokio::test]
async fn refresh_error_switch_and_garbage_refresh_token() {
    let h = Harness::start().await;
    let tokens = sign_in(&h).await;
    let rt = tokens["refresh_token"].as_str().unwrap();
    h.sim.control().set_refresh_error(Some(700082));
    assert_aad_error(&refresh(&h, rt).await, "invalid_grant", 700082);
    h.sim.control().set_refresh_error(Some(50076));
    assert_eq!(refresh(&h, rt).await.json()["suberror"], "basic_action");
    h.sim.control().set_refresh_error(None);
    assert_eq!(refresh(&h, rt).await.status, 200);
    assert_aad_error(&refresh(&h, "garbage").await, "invalid_grant", 9002313);
    h.sim.shutdown().await;
}

#[tokio::test]
async fn refresh_token_expiry_gives_aadsts700082() {
    let config = SimConfig {
        refresh_token_lifetime: Duration::from_millis(200),
        ..SimConfig::default()
    };
    let h = Harness::with(config).await;
    let tokens = sign_in(&h).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_aad_error(
        &refresh(&h, tokens["refresh_token"].as_str().unwrap()).await,
        "invalid_grant",
        700082,
    );
    h.sim.shutdown().await;
}

async fn client_credentials(h: &Harness, tenant: &str, extra: &[(&str, &str)]) -> Answer {
    let url = format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token");
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("scope", "https://outlook.office365.com/.default"),
    ];
    form.extend_from_slice(extra);
    h.client.post_form(&url, &form).await
}

#[tokio::test]
async fn client_credentials_with_a_certificate_assertion() {
    let h = Harness::start().await;
    for thumbprint in [Thumbprint::Sha1, Thumbprint::Sha256] {
        let assertion = client_assertion(&h.token_url(), thumbprint, 300);
        let answer = client_credentials(
            &h,
            TENANT,
            &[
                ("client_id", CERT_APP_CLIENT_ID),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", &assertion),
            ],
        )
        .await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        let body = answer.json();
        assert!(body["refresh_token"].is_null());
        let checked = h
            .sim
            .control()
            .check_token(body["access_token"].as_str().unwrap(), OUTLOOK)
            .unwrap();
        assert_eq!(checked.roles, vec!["Exchange.ManageAsApp".to_string()]);
        assert_eq!(checked.upn, None);
        assert_eq!(checked.appid, CERT_APP_CLIENT_ID);
    }
    h.sim.shutdown().await;
}

#[tokio::test]
async fn client_assertion_faults_carry_their_aadsts_codes() {
    let h = Harness::start().await;
    let send = |assertion: String, tenant: &'static str| {
        let h = &h;
        async move {
            client_credentials(
                h,
                tenant,
                &[
                    ("client_id", CERT_APP_CLIENT_ID),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", &assertion),
                ],
            )
            .await
        }
    };
    let wrong_aud = client_assertion(
        "https://login.microsoftonline.com/other/oauth2/v2.0/token",
        Thumbprint::Sha1,
        300,
    );
    assert_aad_error(&send(wrong_aud, TENANT).await, "invalid_client", 50012);
    let expired = client_assertion(&h.token_url(), Thumbprint::Sha1, -600);
    assert_aad_error(&send(expired, TENANT).await, "invalid_client", 700024);
    let good = client_assertion(&h.token_url(), Thumbprint::Sha1, 300);
    let mut tampered: Vec<&str> = good.split('.').collect();
    let other = client_assertion(&h.token_url(), Thumbprint::Sha1, 301);
    tampered[2] = other.split('.').nth(2).unwrap();
    assert_aad_error(
        &send(tampered.join("."), TENANT).await,
        "invalid_client",
        700027,
    );
    let on_common = client_assertion(
        "https://login.microsoftonline.com/common/oauth2/v2.0/token",
        Thumbprint::Sha1,
        300,
    );
    assert_aad_error(&send(on_common, "common").await, "invalid_request", 9001023);
    let missing = client_credentials(&h, TENANT, &[("client_id", CERT_APP_CLIENT_ID)]).await;
    assert_aad_error(&missing, "invalid_client", 7000218);
    h.sim.shutdown().await;
}

#[tokio::test]
async fn client_credentials_with_a_secret() {
    let h = Harness::start().await;
    let ok = client_credentials(
        &h,
        CONTOSO_TENANT_ID,
        &[
            ("client_id", SECRET_APP_CLIENT_ID),
            ("client_secret", SECRET_APP_SECRET),
        ],
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(
        claims(ok.json()["access_token"].as_str().unwrap())["roles"][0],
        "Exchange.ManageAsApp"
    );
    let bad = client_credentials(
        &h,
        TENANT,
        &[
            ("client_id", SECRET_APP_CLIENT_ID),
            ("client_secret", "nope"),
        ],
    )
    .await;
    assert_eq!(bad.status, 401);
    assert_aad_error(&bad, "invalid_client", 7000215);
    let url = h.token_url();
    let no_default = h
        .client
        .post_form(
            &url,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", SECRET_APP_CLIENT_ID),
                ("client_secret", SECRET_APP_SECRET),
                ("scope", "https://outlook.office365.com/Exchange.Manage"),
            ],
        )
        .await;
    assert_aad_error(&no_default, "invalid_request", 1002012);
    h.sim.shutdown().await;
}

/// Authorize (auto-approved) and return the `Location` query pairs.
async fn authorize(
    h: &Harness,
    login_hint: &str,
    challenge: &str,
) -> std::collections::HashMap<String, String> {
    let url = format!(
        "https://login.microsoftonline.com/organizations/oauth2/v2.0/authorize?client_id={REST_CLIENT_ID}&response_type=code&redirect_uri=http%3A%2F%2Flocalhost%3A53124%2F&scope=https%3A%2F%2Foutlook.office365.com%2F.default%20offline_access&state=st-1&code_challenge={challenge}&code_challenge_method=S256&login_hint={login_hint}"
    );
    let answer = h.client.get(&url).await;
    assert_eq!(answer.status, 302, "{}", answer.text());
    let location = answer.headers["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with("http://localhost:53124/?"),
        "{location}"
    );
    let query = location.split_once('?').unwrap().1;
    query
        .split('&')
        .map(|kv| kv.split_once('=').unwrap())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn authorization_code_with_pkce_honours_login_hint_and_the_sign_in_as_override() {
    let h = Harness::start().await;
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let redeem = |code: String, verifier: &'static str| {
        let h = &h;
        async move {
            let url = "https://login.microsoftonline.com/organizations/oauth2/v2.0/token";
            h.client
                .post_form(
                    url,
                    &[
                        ("grant_type", "authorization_code"),
                        ("client_id", REST_CLIENT_ID),
                        ("code", &code),
                        ("redirect_uri", "http://localhost:53124/"),
                        ("code_verifier", verifier),
                        (
                            "scope",
                            "https://outlook.office365.com/.default offline_access",
                        ),
                    ],
                )
                .await
        }
    };
    let q = authorize(&h, "user%40contoso.com", challenge).await;
    assert_eq!(q["state"], "st-1");
    let ok = redeem(q["code"].clone(), verifier).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(
        claims(ok.json()["access_token"].as_str().unwrap())["upn"],
        "user@contoso.com"
    );
    assert_aad_error(
        &redeem(q["code"].clone(), verifier).await,
        "invalid_grant",
        54005,
    );

    let q = authorize(&h, "user%40contoso.com", challenge).await;
    assert_aad_error(
        &redeem(q["code"].clone(), "wrong-verifier").await,
        "invalid_grant",
        501481,
    );

    h.sim.control().sign_in_as(Some("admin@contoso.com"));
    let q = authorize(&h, "user%40contoso.com", challenge).await;
    let wrong_user = redeem(q["code"].clone(), verifier).await;
    assert_eq!(
        claims(wrong_user.json()["access_token"].as_str().unwrap())["upn"],
        "admin@contoso.com"
    );
    assert_eq!(h.sim.control().counters().authorize_requests, 3);
    h.sim.shutdown().await;
}

#[tokio::test]
async fn resource_on_v2_is_refused_and_v1_takes_it() {
    let h = Harness::start().await;
    let v2 = h
        .client
        .post_form(
            &h.token_url(),
            &[
                ("grant_type", "client_credentials"),
                ("client_id", SECRET_APP_CLIENT_ID),
                ("client_secret", SECRET_APP_SECRET),
                ("resource", OUTLOOK),
            ],
        )
        .await;
    assert_aad_error(&v2, "invalid_request", 901002);
    let v1 = h
        .client
        .post_form(
            &format!("https://login.microsoftonline.com/{TENANT}/oauth2/token"),
            &[
                ("grant_type", "client_credentials"),
                ("client_id", SECRET_APP_CLIENT_ID),
                ("client_secret", SECRET_APP_SECRET),
                ("resource", "https://ps.compliance.protection.outlook.com"),
            ],
        )
        .await;
    assert_eq!(v1.status, 200, "{}", v1.text());
    let body = v1.json();
    assert_eq!(
        body["resource"],
        "https://ps.compliance.protection.outlook.com"
    );
    assert!(body["expires_on"].is_string());
    assert!(
        h.sim
            .control()
            .check_token(
                body["access_token"].as_str().unwrap(),
                "https://ps.compliance.protection.outlook.com"
            )
            .is_ok()
    );
    h.sim.shutdown().await;
}

#[tokio::test]
async fn token_lifetime_and_canary_and_cae_claims() {
    let config = SimConfig {
        canary: Some("CANARY-7f3a9c".into()),
        ..SimConfig::default()
    };
    let h = Harness::with(config).await;
    h.sim.control().set_token_lifetime(Duration::from_secs(1));
    let dc = h
        .client
        .post_form(
            &format!("https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/devicecode"),
            &[
                ("client_id", RPS_CLIENT_ID),
                (
                    "scope",
                    "https://outlook.office365.com/.default offline_access",
                ),
                (
                    "claims",
                    r#"{"access_token":{"xms_cc":{"values":["cp1"]}}}"#,
                ),
            ],
        )
        .await
        .json();
    h.sim.control().approve_device(None).unwrap();
    let tokens = poll(&h, dc["device_code"].as_str().unwrap()).await.json();
    assert_eq!(tokens["expires_in"], 1);
    let at = tokens["access_token"].as_str().unwrap();
    assert!(claims(at).to_string().contains("CANARY-7f3a9c"));
    assert!(
        tokens["refresh_token"]
            .as_str()
            .unwrap()
            .contains("CANARY-7f3a9c")
    );
    let checked = h.sim.control().check_token(at, OUTLOOK).unwrap();
    assert_eq!(checked.xms_cc, vec!["cp1".to_string()]);
    assert!(!checked.claims_satisfied);

    // Answering a claims challenge on refresh marks the token.
    let answered = h
        .client
        .post_form(
            &h.token_url(),
            &[
                ("grant_type", "refresh_token"),
                ("client_id", RPS_CLIENT_ID),
                ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
                ("scope", "https://outlook.office365.com/.default"),
                (
                    "claims",
                    r#"{"access_token":{"nbf":{"essential":true,"value":"1604106651"}}}"#,
                ),
            ],
        )
        .await
        .json();
    assert!(
        h.sim
            .control()
            .check_token(answered["access_token"].as_str().unwrap(), OUTLOOK)
            .unwrap()
            .claims_satisfied
    );

    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        h.sim.control().check_token(at, OUTLOOK).unwrap_err(),
        exosim::exchange::TokenRejection::Expired
    );
    h.sim.shutdown().await;
}

#[tokio::test]
async fn auto_approve_answers_the_first_poll_with_tokens() {
    let config = SimConfig {
        auto_approve: true,
        ..SimConfig::default()
    };
    let h = Harness::with(config).await;
    h.sim.control().sign_in_as(Some("user@contoso.com"));
    let dc = device_code(&h).await;
    let tokens = poll(&h, dc["device_code"].as_str().unwrap()).await;
    assert_eq!(tokens.status, 200);
    assert_eq!(
        claims(tokens.json()["access_token"].as_str().unwrap())["upn"],
        "user@contoso.com"
    );
    h.sim.shutdown().await;
}

#[tokio::test]
async fn v1_device_code_takes_resource_and_answers_verification_url() {
    let h = Harness::start().await;
    let v1 = format!("https://login.microsoftonline.com/{TENANT}/oauth2/devicecode");
    let dc = h
        .client
        .post_form(&v1, &[("client_id", RPS_CLIENT_ID), ("resource", OUTLOOK)])
        .await
        .json();
    assert_eq!(dc["verification_url"], "https://microsoft.com/devicelogin");
    h.sim.control().approve_device(None).unwrap();
    let tokens = h
        .client
        .post_form(
            &format!("https://login.microsoftonline.com/{TENANT}/oauth2/token"),
            &[
                ("grant_type", "device_code"),
                ("client_id", RPS_CLIENT_ID),
                ("code", dc["device_code"].as_str().unwrap()),
                ("resource", OUTLOOK),
            ],
        )
        .await;
    assert_eq!(tokens.status, 200, "{}", tokens.text());
    let body = tokens.json();
    assert_eq!(body["resource"], OUTLOOK);
    assert!(body["refresh_token"].is_string());
    h.sim.shutdown().await;
}

#[tokio::test]
async fn minted_tokens_work_like_issued_ones() {
    let h = Harness::start().await;
    let minted = h
        .sim
        .control()
        .mint_tokens(
            "user@contoso.com",
            RPS_CLIENT_ID,
            "https://outlook.office365.com/.default offline_access",
        )
        .unwrap();
    let checked = h
        .sim
        .control()
        .check_token(minted["access_token"].as_str().unwrap(), OUTLOOK)
        .unwrap();
    assert_eq!(checked.upn.as_deref(), Some("user@contoso.com"));
    assert_eq!(
        refresh(&h, minted["refresh_token"].as_str().unwrap())
            .await
            .status,
        200
    );
    assert!(
        h.sim
            .control()
            .mint_tokens(
                "nobody@contoso.com",
                RPS_CLIENT_ID,
                "https://outlook.office365.com/.default"
            )
            .is_err()
    );
    h.sim.shutdown().await;
}

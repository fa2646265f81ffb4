use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;

use super::*;
use crate::token::secret::DeviceCode;
use rustls_pki_types::pem::PemObject as _;

const RSA_KEY: &str = include_str!("../testdata/rsa_key.pem");
const RSA_CERT: &str = include_str!("../testdata/rsa_cert.pem");
/// `openssl x509 -outform DER | openssl dgst -sha256 -binary | base64url` of the test certificate.
const RSA_CERT_S256: &str = "sI8voNXVY_HJIJ5AaUlkY9c7f1jl1Hhg2FuKJ4A9Xx0";

fn response(status: u16, body: &str) -> http::Response<Bytes> {
    http::Response::builder()
        .status(status)
        .body(Bytes::from(body.to_string()))
        .unwrap()
}

fn form_of(req: &http::Request<Bytes>) -> Vec<(String, String)> {
    parse_form(std::str::from_utf8(req.body()).unwrap())
}

fn field(form: &[(String, String)], key: &str) -> Option<String> {
    form.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

/// Issue 10 row 12: only Entra ID cloud hosts have the tenant layout; any other authority is an issuer.
#[test]
fn discovery_follows_the_issuer_unless_the_authority_is_entra() {
    assert_eq!(
        discovery_url("https://login.microsoftonline.us", "contoso.com"),
        "https://login.microsoftonline.us/contoso.com/v2.0/.well-known/openid-configuration"
    );
    assert_eq!(
        discovery_url("https://idp.example/realms/corp/", "contoso.com"),
        "https://idp.example/realms/corp/.well-known/openid-configuration"
    );
    assert_eq!(
        discovery_url("https://127.0.0.1:8443", "contoso.com"),
        "https://127.0.0.1:8443/.well-known/openid-configuration"
    );
    assert_eq!(
        discovery_request_at("https://idp.example/odd/openid.json").uri(),
        "https://idp.example/odd/openid.json"
    );
}

#[test]
fn discovery_request_and_parse() {
    let req = discovery_request("https://login.microsoftonline.com/", "contoso.com");
    assert_eq!(req.method(), http::Method::GET);
    assert_eq!(
        req.uri(),
        "https://login.microsoftonline.com/contoso.com/v2.0/.well-known/openid-configuration"
    );
    let body = r#"{"token_endpoint":"https://login.microsoftonline.com/tid/oauth2/v2.0/token",
        "authorization_endpoint":"https://login.microsoftonline.com/tid/oauth2/v2.0/authorize",
        "device_authorization_endpoint":"https://login.microsoftonline.com/tid/oauth2/v2.0/devicecode",
        "issuer":"https://login.microsoftonline.com/tid/v2.0","jwks_uri":"x","cloud_instance_name":"microsoftonline.com"}"#;
    let endpoints = parse_discovery(&response(200, body)).unwrap();
    assert_eq!(
        endpoints.token,
        "https://login.microsoftonline.com/tid/oauth2/v2.0/token"
    );
    assert!(
        endpoints
            .device_authorization
            .unwrap()
            .ends_with("/devicecode")
    );
    assert!(parse_discovery(&response(200, "{}")).is_err());
}

#[test]
fn device_flow_start_and_poll_states() {
    let req =
        device_authorization_request("https://idp/t/oauth2/v2.0/devicecode", "cid", "s1 s2", None);
    assert_eq!(req.method(), http::Method::POST);
    assert_eq!(
        req.headers()[http::header::CONTENT_TYPE],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(
        std::str::from_utf8(req.body()).unwrap(),
        "client_id=cid&scope=s1%20s2"
    );
    let start = parse_device_authorization(&response(
        200,
        r#"{"device_code":"DC","user_code":"ABCD-EFGH","verification_uri":"https://microsoft.com/devicelogin",
            "expires_in":900,"interval":5,"message":"To sign in, use a web browser..."}"#,
    ))
    .unwrap();
    assert_eq!(start.user_code, "ABCD-EFGH");
    assert_eq!(start.expires_in, Duration::from_secs(900));
    assert_eq!(start.interval, Duration::from_secs(5));

    let poll = device_token_request("https://idp/token", "cid", &DeviceCode::new("DC"));
    let form = form_of(&poll);
    assert_eq!(
        field(&form, "grant_type").as_deref(),
        Some(GRANT_DEVICE_CODE)
    );
    assert_eq!(field(&form, "device_code").as_deref(), Some("DC"));

    let pending = r#"{"error":"authorization_pending","error_description":"AADSTS70016: OAuth 2.0 device flow error. Authorization is pending.\r\nTrace ID: x","error_codes":[70016]}"#;
    assert!(matches!(
        parse_device_poll(&response(400, pending)),
        Ok(DevicePoll::Pending)
    ));
    let slow = r#"{"error":"slow_down"}"#;
    assert!(matches!(
        parse_device_poll(&response(400, slow)),
        Ok(DevicePoll::SlowDown)
    ));
    for (error, kind) in [
        ("authorization_declined", ErrorKind::AuthorizationDeclined),
        ("expired_token", ErrorKind::ExpiredToken),
        ("bad_verification_code", ErrorKind::BadVerificationCode),
    ] {
        let body = format!(r#"{{"error":"{error}"}}"#);
        let err = parse_device_poll(&response(400, &body)).unwrap_err();
        assert_eq!(err.kind, kind);
    }
    let done = r#"{"token_type":"Bearer","scope":"x","expires_in":3599,"ext_expires_in":3599,"access_token":"AT","refresh_token":"RT","id_token":"IT"}"#;
    match parse_device_poll(&response(200, done)).unwrap() {
        DevicePoll::Done(tokens) => {
            assert_eq!(tokens.access_token.expose(), "AT");
            assert_eq!(tokens.refresh_token.unwrap().expose(), "RT");
            assert_eq!(tokens.expires_in, Duration::from_secs(3599));
        }
        other => panic!("expected tokens, got {other:?}"),
    }
}

#[test]
fn refresh_request_carries_claims_when_given() {
    let rt = RefreshToken::new("old-rt");
    let claims = r#"{"access_token":{"nbf":{"essential":true,"value":"1604106651"}}}"#;
    let req = refresh_request(
        "https://idp/token",
        "cid",
        &rt,
        "https://outlook.office365.com/.default offline_access",
        Some(claims),
    );
    let form = form_of(&req);
    assert_eq!(field(&form, "grant_type").as_deref(), Some("refresh_token"));
    assert_eq!(field(&form, "refresh_token").as_deref(), Some("old-rt"));
    assert_eq!(field(&form, "claims").as_deref(), Some(claims));
    let plain = refresh_request("https://idp/token", "cid", &rt, "s", None);
    assert!(field(&form_of(&plain), "claims").is_none());
}

#[test]
fn errors_parse_aadsts_invalid_grant_and_retry_after() {
    let body = r#"{"error":"invalid_grant","error_description":"AADSTS50173: The provided grant has expired due to it being revoked.\r\nTrace ID: 1\r\nCorrelation ID: 2","error_codes":[50173],"suberror":"bad_token"}"#;
    let err = parse_token_response(&response(400, body)).unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidGrant);
    assert_eq!(err.aadsts, Some(50173));
    assert!(err.needs_sign_in());
    assert_eq!(err.suberror.as_deref(), Some("bad_token"));
    assert!(!err.to_string().contains("Trace ID"), "{err}");

    // No error_codes: the code comes from the description prefix.
    let body = r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}"#;
    let err = parse_token_response(&response(401, body)).unwrap_err();
    assert_eq!(
        (err.kind.clone(), err.aadsts),
        (ErrorKind::InvalidClient, Some(7_000_215))
    );

    let throttled = http::Response::builder()
        .status(429)
        .header("retry-after", "20")
        .body(Bytes::from_static(b"busy"))
        .unwrap();
    let err = parse_token_response(&throttled).unwrap_err();
    assert!(err.is_transient());
    assert_eq!(err.retry_after, Some(Duration::from_secs(20)));
    let err = parse_token_response(&response(503, "")).unwrap_err();
    assert!(err.is_transient() && err.retry_after.is_none());
    // A 200 with a broken body is an error, not a panic.
    assert!(parse_token_response(&response(200, "<html>")).is_err());
}

#[test]
fn client_secret_credentials_request() {
    let auth = ClientAuth::Secret(ClientSecret::new("s3cr3t&=+"));
    let req = client_credentials_request(
        "https://idp/tid/oauth2/v2.0/token",
        "app",
        "https://outlook.office365.com/.default",
        &auth,
        None,
    );
    let form = form_of(&req);
    assert_eq!(
        field(&form, "grant_type").as_deref(),
        Some("client_credentials")
    );
    assert_eq!(field(&form, "client_secret").as_deref(), Some("s3cr3t&=+"));
    assert!(format!("{auth:?}").contains("[redacted]"));
}

fn decode_part(part: &str) -> serde_json::Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

#[test]
fn rs256_assertion_has_rfc7523_shape_and_verifies() {
    let cert = ClientCertificate::from_pem(RSA_CERT, RSA_KEY).unwrap();
    assert_eq!(cert.thumbprint_s256(), RSA_CERT_S256);
    let token_ep = "https://login.microsoftonline.com/tid/oauth2/v2.0/token";
    let jwt = cert
        .assertion("app-id", token_ep, 1_700_000_000, "jti-1")
        .unwrap();
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header = decode_part(parts[0]);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["x5t#S256"], RSA_CERT_S256);
    assert!(header["x5t"].as_str().is_some_and(|t| t.len() == 27));
    let claims = decode_part(parts[1]);
    assert_eq!(claims["aud"], token_ep);
    assert_eq!(
        (claims["iss"].clone(), claims["sub"].clone()),
        ("app-id".into(), "app-id".into())
    );
    assert_eq!(claims["jti"], "jti-1");
    assert_eq!(claims["nbf"], 1_700_000_000);
    assert_eq!(claims["exp"], 1_700_000_600);

    let key_der = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(RSA_KEY.as_bytes()).unwrap();
    let pair = ring::signature::RsaKeyPair::from_pkcs8(key_der.secret_pkcs8_der()).unwrap();
    let public = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        ring::signature::KeyPair::public_key(&pair)
            .as_ref()
            .to_vec(),
    );
    let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    let signed = format!("{}.{}", parts[0], parts[1]);
    public.verify(signed.as_bytes(), &signature).unwrap();

    let auth = ClientAuth::Assertion(jwt.clone());
    assert!(
        !format!("{auth:?}").contains(parts[2]),
        "assertions are redacted in Debug"
    );
    let req = client_credentials_request(token_ep, "app-id", "s", &auth, None);
    let form = form_of(&req);
    assert_eq!(
        field(&form, "client_assertion_type").as_deref(),
        Some(ASSERTION_TYPE_JWT_BEARER)
    );
    assert!(field(&form, "client_assertion").is_some());
}

/// The test certificate and key as PFX files, made with `openssl pkcs12 -export` (OpenSSL 3.0):
/// its default (AES-256-CBC, PBKDF2, SHA-256 MAC), the legacy 3DES/SHA-1 form older Windows exports,
/// and an unprotected file (empty password). Password of the protected ones: `exoproxy-test`.
const PFX_AES: &[u8] = include_bytes!("../testdata/rsa_aes.pfx");
const PFX_3DES: &[u8] = include_bytes!("../testdata/rsa_3des.pfx");
const PFX_NO_PASSWORD: &[u8] = include_bytes!("../testdata/rsa_nopass.pfx");

#[test]
fn pfx_files_give_the_same_credential_as_the_pem_pair() {
    let pem = ClientCertificate::from_pem(RSA_CERT, RSA_KEY).unwrap();
    for (name, pfx, password) in [
        ("aes", PFX_AES, "exoproxy-test"),
        ("3des", PFX_3DES, "exoproxy-test"),
        ("no password", PFX_NO_PASSWORD, ""),
    ] {
        let cert =
            ClientCertificate::from_pkcs12(pfx, password).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(cert.thumbprint_s256(), RSA_CERT_S256, "{name}");
        // RSA PKCS#1 v1.5 signatures are deterministic: same key, same input, same assertion.
        let from_pfx = cert.assertion("app", "https://idp/token", 1, "j").unwrap();
        let from_pem = pem.assertion("app", "https://idp/token", 1, "j").unwrap();
        assert_eq!(*from_pfx, *from_pem, "{name}");
    }
}

#[test]
fn a_wrong_pfx_password_or_a_non_pfx_file_is_a_clear_error() {
    let wrong = ClientCertificate::from_pkcs12(PFX_AES, "not-it").unwrap_err();
    assert!(
        matches!(&wrong, AssertionError::BadPfx(m) if m.contains("password")),
        "{wrong}"
    );
    let pem_as_pfx = ClientCertificate::from_pkcs12(RSA_CERT.as_bytes(), "").unwrap_err();
    assert!(
        matches!(pem_as_pfx, AssertionError::BadPfx(_)),
        "{pem_as_pfx}"
    );
    assert!(!format!("{wrong:?}").contains("exoproxy-test"));
}

#[test]
fn es256_assertion_from_an_rcgen_key() {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["app".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let credential = ClientCertificate::from_pem(&cert.pem(), &key.serialize_pem()).unwrap();
    let jwt = credential
        .assertion("app", "https://idp/token", 1, "j")
        .unwrap();
    let header = decode_part(jwt.split('.').next().unwrap());
    assert_eq!(header["alg"], "ES256");
}

#[test]
fn bad_pem_is_a_typed_error() {
    assert_eq!(
        ClientCertificate::from_pem("nothing", RSA_KEY).unwrap_err(),
        AssertionError::NoCertificate
    );
    assert!(matches!(
        ClientCertificate::from_pem(RSA_CERT, "nothing").unwrap_err(),
        AssertionError::BadKey(_)
    ));
}

#[test]
fn pkce_s256_matches_rfc7636_appendix_b() {
    let pkce = Pkce::from_verifier(PkceVerifier::new(
        "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
    ));
    assert_eq!(
        pkce.challenge,
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    );
    let fresh = Pkce::new().unwrap();
    assert!(fresh.verifier.expose().len() >= 43);
}

#[test]
fn authorize_url_and_redirect_state_check() {
    let url = AuthorizeUrl {
        endpoint: "https://idp/t/oauth2/v2.0/authorize",
        client_id: "cid",
        redirect_uri: "http://127.0.0.1:5000/",
        scope: "a b",
        state: "st8",
        code_challenge: "ch",
        login_hint: Some("admin@contoso.com"),
        claims: None,
    }
    .build();
    assert!(
        url.starts_with("https://idp/t/oauth2/v2.0/authorize?client_id=cid&response_type=code")
    );
    assert!(url.contains("redirect_uri=http%3A%2F%2F127.0.0.1%3A5000%2F"));
    assert!(url.contains("login_hint=admin%40contoso.com"));
    assert!(url.contains("code_challenge_method=S256"));
    assert!(url.contains("state=st8"));

    assert_eq!(
        parse_redirect_query("code=abc&state=st8", "st8")
            .unwrap()
            .expose(),
        "abc"
    );
    assert!(parse_redirect_query("code=abc&state=evil", "st8").is_err());
    let err = parse_redirect_query(
        "error=access_denied&error_description=AADSTS65004%3A+declined&state=st8",
        "st8",
    )
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::AuthorizationDeclined);
    assert_eq!(err.aadsts, Some(65004));
}

#[test]
fn form_encoding_round_trips() {
    let value = "a b&c=d+é/%";
    assert_eq!(form_decode(&form_encode(value)), value);
    assert_eq!(form_decode("a+b%2"), "a b%2");
}

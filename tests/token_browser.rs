//! Browser sign-in (authorization code + PKCE S256 over a loopback redirect) against the fake IdP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod token_support;

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use exoproxy::token::oauth::parse_form;
use exoproxy::token::schedule::Jitter;
use exoproxy::token::{
    AccountConfig, Audience, Flow, ManagerSettings, SignInPrompt, TokenError, TokenManager,
};
use token_support::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn settings() -> ManagerSettings {
    ManagerSettings {
        jitter: Jitter::None,
        open_browser: false,
        ..ManagerSettings::default()
    }
}

/// Plays the browser: follows the redirect the IdP would send, to the loopback listener.
async fn redirect(redirect_uri: &str, query: &str) -> String {
    let port: u16 = redirect_uri
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let request = format!("GET /?{query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

fn query_of(url: &str) -> Vec<(String, String)> {
    parse_form(url.split_once('?').unwrap().1)
}

fn get<'a>(pairs: &'a [(String, String)], key: &str) -> &'a str {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap()
}

async fn browser_login(
    upn_in_token: &'static str,
) -> (Result<(), TokenError>, Arc<FakeIdp>, TokenManager) {
    let challenge = Arc::new(Mutex::new(String::new()));
    let expected = challenge.clone();
    let idp = FakeIdp::new(move |call, _| {
        assert_eq!(call.grant(), Some("authorization_code"));
        assert_eq!(call.field("code"), Some("the-code"));
        let verifier = call.field("code_verifier").unwrap();
        let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
        assert_eq!(
            URL_SAFE_NO_PAD.encode(digest.as_ref()),
            *expected.lock().unwrap(),
            "PKCE S256"
        );
        assert!(
            call.field("redirect_uri")
                .unwrap()
                .starts_with("http://127.0.0.1:")
        );
        tokens(&jwt(upn_in_token, EXO, "browser"), Some("rt-browser"), 3600)
    });
    let manager = TokenManager::new(idp.clone(), None, settings()).unwrap();
    let mut config = AccountConfig::new(UPN);
    config.authority = Some(AUTHORITY.into());
    manager.add_account(config);
    let handle = manager.begin_login(UPN, Some(Flow::Browser)).await.unwrap();
    let SignInPrompt::Browser { url } = handle.prompt.clone() else {
        panic!("expected a browser prompt")
    };
    assert!(url.starts_with(&format!("{AUTHORITY}/contoso.com/oauth2/v2.0/authorize?")));
    let query = query_of(&url);
    assert_eq!(get(&query, "login_hint"), UPN);
    assert_eq!(get(&query, "code_challenge_method"), "S256");
    assert_eq!(get(&query, "response_type"), "code");
    *challenge.lock().unwrap() = get(&query, "code_challenge").to_string();
    let redirect_uri = get(&query, "redirect_uri").to_string();
    // Unrelated requests (a favicon fetch) do not end the wait.
    let state = get(&query, "state").to_string();
    assert!(
        redirect(&redirect_uri, "favicon=1")
            .await
            .starts_with("HTTP/1.1 404")
    );
    let page = redirect(&redirect_uri, &format!("code=the-code&state={state}")).await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    (handle.wait().await, idp, manager)
}

#[tokio::test]
async fn browser_flow_signs_in_with_pkce_and_login_hint() {
    let (result, idp, manager) = browser_login(UPN).await;
    result.unwrap();
    assert_eq!(idp.calls().len(), 1);
    let token = manager.token(UPN, &Audience::new(EXO)).await.unwrap();
    assert_eq!(token.expose(), jwt(UPN, EXO, "browser"));
}

#[tokio::test]
async fn browser_flow_applies_the_wrong_user_guard() {
    let (result, _idp, manager) = browser_login("someone.else@contoso.com").await;
    let err = result.unwrap_err();
    assert!(
        err.to_string().contains("someone.else@contoso.com") && err.to_string().contains(UPN),
        "{err}"
    );
    assert!(!manager.accounts()[0].has_refresh_token);
}

#[tokio::test]
async fn browser_flow_refuses_a_forged_state() {
    let idp = FakeIdp::new(|_, _| panic!("no token call may happen"));
    let manager = TokenManager::new(idp.clone(), None, settings()).unwrap();
    let mut config = AccountConfig::new(UPN);
    config.authority = Some(AUTHORITY.into());
    config.flow = Flow::Browser;
    manager.add_account(config);
    let handle = manager.begin_login(UPN, None).await.unwrap();
    let SignInPrompt::Browser { url } = handle.prompt.clone() else {
        panic!()
    };
    let redirect_uri = get(&query_of(&url), "redirect_uri").to_string();
    assert!(
        redirect(&redirect_uri, "code=stolen&state=forged")
            .await
            .starts_with("HTTP/1.1 400")
    );
    assert!(matches!(
        handle.wait().await,
        Err(TokenError::SignInFailed { .. })
    ));
    assert!(idp.calls().is_empty());
}

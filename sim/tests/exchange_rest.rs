//! REST ("adminapi") behaviour of the Exchange emulator, driven through `Exchange::handle` directly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod exchange_support;

use std::time::Duration;

use bytes::Bytes;
use exchange_support::*;
use exosim::exchange::{Exchange, ExchangeSettings};
use serde_json::{Value, json};

const TENANT_HOST: &str = "nam12b.outlook.office365.com";
const SCC_TENANT_HOST: &str = "nam12b.ps.compliance.protection.outlook.com";
const INVOKE: &str = "/adminapi/beta/contoso.onmicrosoft.com/InvokeCommand";

struct Env {
    ex: Exchange,
    tokens: TestTokens,
}

impl Env {
    fn new(settings: ExchangeSettings) -> Env {
        Env {
            ex: Exchange::new(settings),
            tokens: TestTokens::new(),
        }
    }

    fn token(&self, aud: &str) -> String {
        self.tokens.mint(&Mint::user(aud, ADMIN))
    }

    async fn invoke(
        &self,
        host: &str,
        url_path: &str,
        token: &str,
        input: Value,
        prefer: Option<&str>,
    ) -> http::Response<Bytes> {
        let mut b = http::Request::post(format!("https://{host}{url_path}"))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json");
        if let Some(p) = prefer {
            b = b.header("prefer", p);
        }
        let req = b.body(Bytes::from(input.to_string())).unwrap();
        self.ex.handle(host, req, &self.tokens).await
    }
}

fn cmdlet(name: &str, params: Value) -> Value {
    json!({"CmdletInput": {"CmdletName": name, "Parameters": params}})
}

fn json_of(resp: &http::Response<Bytes>) -> Value {
    serde_json::from_slice(resp.body()).unwrap()
}

#[tokio::test]
async fn front_door_redirects_to_the_tenant_host() {
    let env = Env::new(ExchangeSettings::default());
    let resp = env
        .invoke(
            "outlook.office365.com",
            INVOKE,
            &env.token(EXO),
            cmdlet("Get-Mailbox", json!({})),
            None,
        )
        .await;
    assert_eq!(resp.status(), 302);
    assert_eq!(
        resp.headers()["location"],
        format!("https://{TENANT_HOST}{INVOKE}")
    );
    let resp = env
        .invoke(
            "ps.compliance.protection.outlook.com",
            INVOKE,
            &env.token(SCC),
            cmdlet("Get-Label", json!({})),
            None,
        )
        .await;
    assert_eq!(
        resp.headers()["location"],
        format!("https://{SCC_TENANT_HOST}{INVOKE}")
    );
}

#[tokio::test]
async fn get_mailbox_pages_through_the_generated_set() {
    let env = Env::new(ExchangeSettings {
        mailboxes: 23,
        page_size: 10,
        ..ExchangeSettings::default()
    });
    let token = env.token(EXO);
    let mut path = INVOKE.to_owned();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let resp = env
            .invoke(
                TENANT_HOST,
                &path,
                &token,
                cmdlet("Get-Mailbox", json!({"ResultSize": "Unlimited"})),
                None,
            )
            .await;
        assert_eq!(resp.status(), 200);
        let v = json_of(&resp);
        pages += 1;
        seen.extend(
            v["value"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["PrimarySmtpAddress"].as_str().unwrap().to_owned()),
        );
        let Some(next) = v["@odata.nextLink"].as_str() else {
            break;
        };
        let rest = next
            .strip_prefix(&format!("https://{TENANT_HOST}"))
            .expect("nextLink on the same host");
        path = rest.to_owned();
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 23);
    assert_eq!(seen[0], "user0001@contoso.onmicrosoft.com");
    assert_eq!(seen[22], "user0023@contoso.onmicrosoft.com");
    // The client may ask for smaller pages; ResultSize limits the set.
    let resp = env
        .invoke(
            TENANT_HOST,
            INVOKE,
            &token,
            cmdlet("Get-Mailbox", json!({"ResultSize": 12})),
            Some("odata.maxpagesize=5"),
        )
        .await;
    let v = json_of(&resp);
    assert_eq!(v["value"].as_array().unwrap().len(), 5);
    assert!(
        v["@odata.nextLink"]
            .as_str()
            .unwrap()
            .ends_with("?%24skiptoken=5")
    );
    let resp = env
        .invoke(
            TENANT_HOST,
            &format!("{INVOKE}?%24skiptoken=10"),
            &token,
            cmdlet("Get-Mailbox", json!({"ResultSize": 12})),
            None,
        )
        .await;
    let v = json_of(&resp);
    assert_eq!(v["value"].as_array().unwrap().len(), 2);
    assert!(v.get("@odata.nextLink").is_none());
}

#[tokio::test]
async fn other_cmdlets_and_v1_path() {
    let env = Env::new(ExchangeSettings::default());
    let token = env.token(EXO);
    let path = "/adminapi/v1.0/6f6c9a3e-1c2b-4b8e-9d41-3c1f0e2a7b55/InvokeCommand";
    let resp = env
        .invoke(
            TENANT_HOST,
            path,
            &token,
            cmdlet("Get-OrganizationConfig", json!({})),
            None,
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(json_of(&resp)["value"][0]["DisplayName"], "Contoso");
    let resp = env
        .invoke(
            TENANT_HOST,
            INVOKE,
            &token,
            cmdlet(
                "Get-Mailbox",
                json!({"Identity": "user0003@contoso.onmicrosoft.com"}),
            ),
            None,
        )
        .await;
    assert_eq!(json_of(&resp)["value"].as_array().unwrap().len(), 1);
    let resp = env
        .invoke(
            TENANT_HOST,
            INVOKE,
            &token,
            cmdlet("Get-Mailbox", json!({"Identity": "nobody"})),
            None,
        )
        .await;
    assert_eq!(resp.status(), 404);
    let resp = env
        .invoke(
            SCC_TENANT_HOST,
            INVOKE,
            &env.token(SCC),
            cmdlet("Get-Label", json!({})),
            None,
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(json_of(&resp)["value"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn unknown_cmdlet_and_bad_body_get_error_objects() {
    let env = Env::new(ExchangeSettings::default());
    let token = env.token(EXO);
    let resp = env
        .invoke(
            TENANT_HOST,
            INVOKE,
            &token,
            cmdlet("Get-Nothing", json!({})),
            None,
        )
        .await;
    assert_eq!(resp.status(), 400);
    let v = json_of(&resp);
    assert_eq!(v["error"]["code"], "BadRequest");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'Get-Nothing' is not recognized")
    );
    assert!(v["error"]["innererror"]["internalException"]["message"].is_string());
    // S&C does not know EXO cmdlets.
    let resp = env
        .invoke(
            SCC_TENANT_HOST,
            INVOKE,
            &env.token(SCC),
            cmdlet("Get-Mailbox", json!({})),
            None,
        )
        .await;
    assert_eq!(resp.status(), 400);
    let resp = env
        .invoke(TENANT_HOST, INVOKE, &token, json!({"nope": 1}), None)
        .await;
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn bad_tokens_get_401_with_bearer_challenge() {
    let env = Env::new(ExchangeSettings::default());
    let expired = env.tokens.mint(&Mint {
        expires_in: -1,
        ..Mint::user(EXO, ADMIN)
    });
    for (host, token, reason) in [
        (TENANT_HOST, expired.as_str(), "expired"),
        ("outlook.office365.com", "garbage", "malformed"),
    ] {
        let resp = env
            .invoke(host, INVOKE, token, cmdlet("Get-Mailbox", json!({})), None)
            .await;
        assert_eq!(resp.status(), 401);
        let challenges: Vec<&str> = resp
            .headers()
            .get_all("www-authenticate")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(
            challenges.len(),
            1,
            "REST offers Bearer only: {challenges:?}"
        );
        assert!(
            challenges[0].starts_with("Bearer ")
                && challenges[0].contains("error=\"invalid_token\"")
        );
        assert!(
            resp.headers()["x-ms-diagnostics"]
                .to_str()
                .unwrap()
                .contains(reason)
        );
    }
}

#[tokio::test]
async fn a_token_for_one_audience_is_refused_by_the_other() {
    let env = Env::new(ExchangeSettings::default());
    let resp = env
        .invoke(
            SCC_TENANT_HOST,
            INVOKE,
            &env.token(EXO),
            cmdlet("Get-Label", json!({})),
            None,
        )
        .await;
    assert_eq!(resp.status(), 401);
    let resp = env
        .invoke(
            TENANT_HOST,
            INVOKE,
            &env.token(SCC),
            cmdlet("Get-Mailbox", json!({})),
            None,
        )
        .await;
    assert_eq!(resp.status(), 401);
    assert!(
        resp.headers()["x-ms-diagnostics"]
            .to_str()
            .unwrap()
            .contains("audience")
    );
}

#[tokio::test]
async fn throttle_mode_answers_429_with_retry_after_and_rate_limit_headers() {
    let env = Env::new(ExchangeSettings::default());
    env.ex.update(|s| s.throttle = Some(Duration::from_secs(7)));
    let resp = env
        .invoke(
            TENANT_HOST,
            INVOKE,
            &env.token(EXO),
            cmdlet("Get-Mailbox", json!({})),
            None,
        )
        .await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    assert_eq!(resp.headers()["rate-limit-remaining"], "0");
    assert_eq!(resp.headers()["rate-limit-reset"], "7");
    assert!(resp.headers().contains_key("rate-limit-limit"));
    assert_eq!(json_of(&resp)["error"]["code"], "TooManyRequests");
    // Authentication still comes first.
    let resp = env
        .invoke(
            TENANT_HOST,
            INVOKE,
            "garbage",
            cmdlet("Get-Mailbox", json!({})),
            None,
        )
        .await;
    assert_eq!(resp.status(), 401);
    env.ex.update(|s| s.throttle = None);
    let resp = env
        .invoke(
            TENANT_HOST,
            INVOKE,
            &env.token(EXO),
            cmdlet("Get-Mailbox", json!({})),
            None,
        )
        .await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn cae_mode_challenges_rest_clients() {
    let env = Env::new(ExchangeSettings {
        cae: true,
        ..ExchangeSettings::default()
    });
    let resp = env
        .invoke(
            TENANT_HOST,
            INVOKE,
            &env.token(EXO),
            cmdlet("Get-Mailbox", json!({})),
            None,
        )
        .await;
    assert_eq!(resp.status(), 401);
    let challenge = resp.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains("error=\"insufficient_claims\"") && challenge.contains("claims=\""),
        "{challenge}"
    );
    let satisfied = env.tokens.mint(&Mint {
        claims_satisfied: true,
        ..Mint::user(EXO, ADMIN)
    });
    let resp = env
        .invoke(
            TENANT_HOST,
            INVOKE,
            &satisfied,
            cmdlet("Get-Mailbox", json!({})),
            None,
        )
        .await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn app_only_tokens_work_on_rest() {
    let env = Env::new(ExchangeSettings::default());
    let app = env.tokens.mint(&Mint::app(EXO));
    let resp = env
        .invoke(
            TENANT_HOST,
            INVOKE,
            &app,
            cmdlet("Get-AcceptedDomain", json!({})),
            None,
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        json_of(&resp)["value"][0]["DomainName"],
        "contoso.onmicrosoft.com"
    );
}

#[tokio::test]
async fn the_exchange_front_door_answers_a_call_that_names_its_mailbox() {
    let env = Env::new(ExchangeSettings::default());
    let call = |host: &str, aud: &str, cmdlet_name: &str| {
        http::Request::post(format!("https://{host}{INVOKE}"))
            .header("authorization", format!("Bearer {}", env.token(aud)))
            .header("x-anchormailbox", format!("UPN:{ADMIN}"))
            .header("content-type", "application/json")
            .body(Bytes::from(cmdlet(cmdlet_name, json!({})).to_string()))
            .unwrap()
    };
    let front = "outlook.office365.com";
    let resp = env
        .ex
        .handle(front, call(front, EXO, "Get-Mailbox"), &env.tokens)
        .await;
    assert_eq!(resp.status(), 200);
    let v = json_of(&resp);
    assert!(
        v["@odata.nextLink"]
            .as_str()
            .unwrap()
            .starts_with(&format!("https://{front}/adminapi/beta/")),
        "the next page stays on the front door: {v}"
    );
    // The S&C front door redirects even with an anchor.
    let scc = "ps.compliance.protection.outlook.com";
    let resp = env
        .ex
        .handle(scc, call(scc, SCC, "Get-Label"), &env.tokens)
        .await;
    assert_eq!(resp.status(), 302);
}

//! A scripted fake Entra ID: an in-memory `Transport` that answers discovery itself and hands every
//! other request to the test's closure, recording each call with its tokio-clock time. Response shapes
//! follow docs/PROTOCOL.md#device-code and docs/PROTOCOL.md#token-responses.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use exoproxy::token::oauth::parse_form;
use exoproxy::token::{BoxFuture, Transport, TransportError};
use tokio::time::Instant;

/// An Entra ID cloud host, so the tenant layout applies (the fake answers it in memory).
pub const AUTHORITY: &str = "https://login.microsoftonline.com";
pub const UPN: &str = "Admin@Contoso.com";
pub const EXO: &str = "https://outlook.office365.com";
pub const SCC: &str = "https://ps.compliance.protection.outlook.com";

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Call {
    pub at: Instant,
    pub path: String,
    pub form: Vec<(String, String)>,
}

impl Call {
    pub fn field(&self, key: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    pub fn grant(&self) -> Option<&str> {
        self.field("grant_type")
    }
}

/// A scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
    pub delay: Duration,
    pub transport_error: bool,
}

type Handler = dyn Fn(&Call, usize) -> Reply + Send + Sync;

/// The fake IdP; `handler(call, n)` gets the n-th (0-based) non-discovery call.
pub struct FakeIdp {
    handler: Box<Handler>,
    calls: Mutex<Vec<Call>>,
}

impl FakeIdp {
    pub fn new(handler: impl Fn(&Call, usize) -> Reply + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Self {
            handler: Box::new(handler),
            calls: Mutex::new(Vec::new()),
        })
    }

    /// Every non-discovery call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// Calls with this grant type.
    pub fn grants(&self, grant: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.grant() == Some(grant))
            .collect()
    }
}

impl Transport for FakeIdp {
    fn send(
        &self,
        req: http::Request<Bytes>,
    ) -> BoxFuture<'_, Result<http::Response<Bytes>, TransportError>> {
        Box::pin(async move {
            let path = req.uri().path().to_string();
            if path.ends_with("/.well-known/openid-configuration") {
                let tenant = path
                    .trim_start_matches('/')
                    .split('/')
                    .next()
                    .unwrap_or_default();
                return Ok(response(200, &discovery(tenant), &[]));
            }
            let form = parse_form(std::str::from_utf8(req.body()).unwrap());
            let call = Call {
                at: Instant::now(),
                path,
                form,
            };
            let n = {
                let mut calls = self.calls.lock().unwrap();
                calls.push(call.clone());
                calls.len() - 1
            };
            let reply = (self.handler)(&call, n);
            if !reply.delay.is_zero() {
                tokio::time::sleep(reply.delay).await;
            }
            if reply.transport_error {
                return Err(TransportError::Connect("connection refused (fake)".into()));
            }
            Ok(response(reply.status, &reply.body, &reply.headers))
        })
    }
}

fn response(status: u16, body: &str, headers: &[(&'static str, String)]) -> http::Response<Bytes> {
    let mut builder = http::Response::builder()
        .status(status)
        .header("content-type", "application/json");
    for (name, value) in headers {
        builder = builder.header(*name, value);
    }
    builder.body(Bytes::from(body.to_string())).unwrap()
}

/// The OIDC document of `tenant` (endpoints under `/{tenant}/`, as Entra's tenant-specific metadata).
pub fn discovery(tenant: &str) -> String {
    serde_json::json!({
        "token_endpoint": format!("{AUTHORITY}/{tenant}/oauth2/v2.0/token"),
        "authorization_endpoint": format!("{AUTHORITY}/{tenant}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{AUTHORITY}/{tenant}/oauth2/v2.0/devicecode"),
        "issuer": format!("{AUTHORITY}/{tenant}/v2.0"),
        "jwks_uri": format!("{AUTHORITY}/{tenant}/discovery/v2.0/keys"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
    })
    .to_string()
}

pub fn token_endpoint(tenant: &str) -> String {
    format!("{AUTHORITY}/{tenant}/oauth2/v2.0/token")
}

/// An unsigned JWT-shaped access token for `upn` at `aud` (the proxy never verifies signatures).
pub fn jwt(upn: &str, aud: &str, tag: &str) -> String {
    let claims = serde_json::json!({
        "aud": aud, "iss": "https://sts.windows.net/tid/", "tid": "tid", "upn": upn,
        "unique_name": upn, "scp": "Exchange.Manage", "exp": 1_900_000_000, "jti": tag,
    });
    format!(
        "{}.{}.c2ln",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// A token success body (§2.4).
pub fn tokens(access: &str, refresh: Option<&str>, expires_in: u64) -> Reply {
    let mut body = serde_json::json!({
        "token_type": "Bearer", "scope": "https://outlook.office365.com/.default",
        "expires_in": expires_in, "ext_expires_in": expires_in, "access_token": access,
    });
    if let Some(rt) = refresh {
        body["refresh_token"] = rt.into();
    }
    ok(&body.to_string())
}

pub fn ok(body: &str) -> Reply {
    Reply {
        status: 200,
        body: body.to_string(),
        headers: vec![],
        delay: Duration::ZERO,
        transport_error: false,
    }
}

/// An Entra error body (§2.4).
pub fn error(status: u16, error: &str, aadsts: u32, text: &str) -> Reply {
    let body = serde_json::json!({
        "error": error,
        "error_description": format!("AADSTS{aadsts}: {text}\r\nTrace ID: 0000\r\nCorrelation ID: 1111\r\nTimestamp: 2026-01-01 00:00:00Z"),
        "error_codes": [aadsts], "timestamp": "2026-01-01 00:00:00Z", "trace_id": "0000", "correlation_id": "1111",
        "error_uri": "https://login.microsoftonline.com/error?code=0",
    });
    Reply {
        status,
        body: body.to_string(),
        headers: vec![],
        delay: Duration::ZERO,
        transport_error: false,
    }
}

pub fn status(status: u16, retry_after: Option<u64>) -> Reply {
    let headers = retry_after
        .map(|s| vec![("retry-after", s.to_string())])
        .unwrap_or_default();
    Reply {
        status,
        body: String::new(),
        headers,
        delay: Duration::ZERO,
        transport_error: false,
    }
}

pub fn delayed(mut reply: Reply, delay: Duration) -> Reply {
    reply.delay = delay;
    reply
}

pub fn device_start() -> Reply {
    ok(&serde_json::json!({
        "device_code": "DEVICE-CODE-SECRET", "user_code": "ABCD-EFGH",
        "verification_uri": "https://microsoft.com/devicelogin", "expires_in": 900, "interval": 5,
        "message": "To sign in, use a web browser to open the page https://microsoft.com/devicelogin and enter the code ABCD-EFGH to authenticate.",
    })
    .to_string())
}

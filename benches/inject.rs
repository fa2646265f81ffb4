//! The per-request injection step on an intercepted host: `inject::classify` → `inject::select_account`
//! → `inject::apply`, on the headers PowerShell really sends (WS-Man: 12 headers with a Basic
//! `user:password` the proxy replaces; REST: the EXO V3 module's `X-AnchorMailbox`, or a client bearer
//! token whose `upn` claim names the account). The token written is a realistic ~1.8 KB JWT. The header
//! map is cloned outside the timed part (`iter_batched`), so the figure is the injection step alone.
//!
//! Run: `cargo bench --bench inject -- --warm-up-time 1 --measurement-time 3`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use exoproxy::inject::{self, Treatment};
use http::header::{HeaderMap, HeaderName, HeaderValue};

const WSMAN_PATH: &str = "/powershell-liveid?BasicAuthToOAuthConversion=true;PSVersion=5.1.19041.4170;clientRequestId=6f1c";
const REST_PATH: &str = "/adminapi/beta/72f988bf-86f1-41af-91ab-2d7cd011db47/InvokeCommand";

/// A JWT-shaped string of about `len` characters with the given claims (signature is filler).
fn fake_jwt(claims: &str, len: usize) -> String {
    let header = URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"RS256","kid":"bench"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims);
    let used = header.len() + payload.len() + 2;
    let filler: Vec<u8> = (0..len.saturating_sub(used) * 3 / 4)
        .map(|i| (i * 7) as u8)
        .collect();
    format!("{header}.{payload}.{}", URL_SAFE_NO_PAD.encode(filler))
}

fn headers(pairs: &[(&str, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

/// The 12 headers of a WinRM (Windows PowerShell 5.1) WS-Man request to Exchange Online.
fn wsman_headers() -> HeaderMap {
    let basic = STANDARD.encode("admin@contoso.onmicrosoft.com:placeholder-password");
    headers(&[
        ("host", "outlook.office365.com".into()),
        ("connection", "Keep-Alive".into()),
        ("content-type", "application/soap+xml;charset=UTF-8".into()),
        ("user-agent", "Microsoft WinRM Client".into()),
        ("content-length", "5312".into()),
        ("authorization", format!("Basic {basic}")),
        (
            "x-anchormailbox",
            "UPN:admin@contoso.onmicrosoft.com".into(),
        ),
        ("x-clientapplication", "ExoManagement".into()),
        ("x-responsesource", "Exchange".into()),
        ("accept", "*/*".into()),
        ("accept-encoding", "gzip, deflate".into()),
        (
            "x-ms-client-request-id",
            "6f1c1d32-0b1e-4c5b-9a43-4c7a3f2e8d11".into(),
        ),
    ])
}

/// The EXO V3 module's REST request; `bearer` adds a client token whose `upn` picks the account.
fn rest_headers(bearer: Option<&str>) -> HeaderMap {
    let mut pairs = vec![
        ("host", "outlook.office365.com".to_string()),
        ("connection", "Keep-Alive".into()),
        ("content-type", "application/json".into()),
        (
            "user-agent",
            "Mozilla/5.0 (Windows NT; Windows NT 10.0; en-US) WindowsPowerShell/5.1".into(),
        ),
        ("content-length", "214".into()),
        ("accept", "application/json".into()),
        ("x-clientapplication", "ExoManagement.Ps5".into()),
        ("x-responseformat", "clixml".into()),
        ("x-serializationlevel", "Partial".into()),
        (
            "x-ms-client-request-id",
            "0d3b8c51-2a7f-4c44-8d0a-0f5f6c1e9b20".into(),
        ),
        ("prefer", "odata.maxpagesize=1000".into()),
    ];
    match bearer {
        Some(token) => pairs.push(("authorization", format!("Bearer {token}"))),
        None => pairs.push((
            "x-anchormailbox",
            "UPN:admin@contoso.onmicrosoft.com".into(),
        )),
    }
    headers(&pairs)
}

/// classify → select_account → apply, as the intercept path runs them per request.
fn inject_step(path: &str, mut headers: HeaderMap, token: &str) -> HeaderMap {
    let Treatment::Inject(injection) = inject::classify(path, &headers) else {
        panic!("{path} must be an injection path");
    };
    let account = inject::select_account(&headers, None).expect("an account");
    let user = account.basic_username.as_deref().unwrap_or(&account.upn);
    inject::apply(&mut headers, injection, user, token).unwrap();
    headers
}

fn bench_inject(c: &mut Criterion) {
    let claims = r#"{"aud":"https://outlook.office365.com","iss":"https://sts.windows.net/72f988bf/","upn":"admin@contoso.onmicrosoft.com","scp":"Exchange.Manage","exp":1800000000}"#;
    let token = fake_jwt(claims, 1800);
    let client_bearer = fake_jwt(claims, 1500);
    let cases = [
        ("wsman_basic_user", WSMAN_PATH, wsman_headers()),
        ("rest_anchor_mailbox", REST_PATH, rest_headers(None)),
        (
            "rest_client_bearer_upn",
            REST_PATH,
            rest_headers(Some(&client_bearer)),
        ),
    ];
    let mut group = c.benchmark_group("inject");
    for (name, path, map) in cases {
        // A wrong case must fail loudly, not bench a pass-through.
        let out = inject_step(path, map.clone(), &token);
        assert!(out.get("authorization").unwrap().is_sensitive());
        group.bench_function(name, |b| {
            b.iter_batched(
                || map.clone(),
                |h| inject_step(black_box(path), h, black_box(&token)),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench_inject);
criterion_main!(benches);

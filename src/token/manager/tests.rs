//! Unit tests that need crate internals: cache write failures (FLT-18), the device-code deadline, the
//! whole-call timeout, certificate files.

use std::sync::Mutex;

use bytes::Bytes;

use super::*;
use crate::token::cache::Load;
use crate::token::transport::{BoxFuture, TransportError};

const UPN: &str = "admin@contoso.com";
const EXO: &str = "https://outlook.office365.com";

type Script = dyn Fn(&str, usize) -> Option<(u16, String)> + Send + Sync;

/// Answers discovery itself; `script(body, n)` answers the rest (`None`: never answer).
struct Scripted {
    script: Box<Script>,
    calls: Mutex<Vec<String>>,
}

impl Transport for Scripted {
    fn send(
        &self,
        req: http::Request<Bytes>,
    ) -> BoxFuture<'_, Result<http::Response<Bytes>, TransportError>> {
        Box::pin(async move {
            let body = if req.uri().path().ends_with("openid-configuration") {
                serde_json::json!({
                    "token_endpoint": "https://idp.test/t/oauth2/v2.0/token",
                    "device_authorization_endpoint": "https://idp.test/t/oauth2/v2.0/devicecode",
                })
                .to_string()
            } else {
                let form = String::from_utf8_lossy(req.body()).into_owned();
                let n = {
                    let mut calls = self.calls.lock().unwrap();
                    calls.push(form.clone());
                    calls.len() - 1
                };
                match (self.script)(&form, n) {
                    Some((status, body)) => {
                        return Ok(http::Response::builder()
                            .status(status)
                            .body(Bytes::from(body))
                            .unwrap());
                    }
                    None => std::future::pending().await,
                }
            };
            Ok(http::Response::new(Bytes::from(body)))
        })
    }
}

fn scripted(
    script: impl Fn(&str, usize) -> Option<(u16, String)> + Send + Sync + 'static,
) -> Arc<Scripted> {
    Arc::new(Scripted {
        script: Box::new(script),
        calls: Mutex::new(Vec::new()),
    })
}

fn token_body(at: &str, rt: &str) -> String {
    serde_json::json!({"token_type": "Bearer", "expires_in": 3600, "access_token": at, "refresh_token": rt}).to_string()
}

fn settings() -> ManagerSettings {
    ManagerSettings {
        jitter: Jitter::None,
        open_browser: false,
        ..ManagerSettings::default()
    }
}

fn seeded(dir: &Path, transport: Arc<Scripted>) -> TokenManager {
    let cache = TokenCache::open(dir).unwrap();
    cache
        .save(&crate::token::cache::CachedAccount {
            upn: UPN.into(),
            refresh_token: Some(crate::token::secret::RefreshToken::new("rt-0")),
            ..Default::default()
        })
        .unwrap();
    let manager = TokenManager::new(transport, Some(dir), settings()).unwrap();
    let mut config = AccountConfig::new(UPN);
    config.authority = Some("https://idp.test".into());
    manager.add_account(config);
    manager
}

fn disk_rt(manager: &TokenManager) -> Option<String> {
    match manager.shared.cache.as_ref().unwrap().load(UPN) {
        Load::Loaded(account) => account.refresh_token.map(|t| t.expose().to_string()),
        _ => None,
    }
}

#[tokio::test(start_paused = true)]
async fn flt18_cache_write_failure_keeps_serving_from_memory() {
    let dir = tempfile::tempdir().unwrap();
    let transport = scripted(|form, n| {
        assert!(
            form.contains(&format!("refresh_token=rt-{n}")),
            "uses the newest RT: {form}"
        );
        Some((
            200,
            token_body(&format!("at-{n}"), &format!("rt-{}", n + 1)),
        ))
    });
    let manager = seeded(dir.path(), transport.clone());
    manager.shared.cache.as_ref().unwrap().fail_next_write();
    let first = manager.token(UPN, &Audience::new(EXO)).await.unwrap();
    assert_eq!(first.expose(), "at-0");
    // The disk still has the old file (intact); memory moved on to the rotated RT.
    assert_eq!(disk_rt(&manager).as_deref(), Some("rt-0"));
    let second = manager
        .invalidate_and_reacquire(UPN, &Audience::new(EXO), &first, None)
        .await
        .unwrap();
    assert_eq!(second.expose(), "at-1");
    // The next successful write catches the disk up.
    assert_eq!(disk_rt(&manager).as_deref(), Some("rt-2"));
}

#[tokio::test(start_paused = true)]
async fn token_calls_time_out_after_ten_minutes_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let transport = scripted(|_, _| None);
    let manager = seeded(dir.path(), transport.clone());
    let started = tokio::time::Instant::now();
    let err = manager.token(UPN, &Audience::new(EXO)).await.unwrap_err();
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(15),
        "caller gives up at 15 s"
    );
    assert!(matches!(err, TokenError::Unavailable { .. }));
    tokio::time::sleep(Duration::from_secs(600)).await;
    let summary = &manager.accounts()[0];
    assert!(
        summary
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("did not answer within 600s"),
        "{summary:?}"
    );
    assert_eq!(transport.calls.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn device_code_deadline_ends_the_sign_in() {
    let transport = scripted(|form, _| {
        if form.contains("device_code=") {
            return Some((
                400,
                r#"{"error":"authorization_pending","error_codes":[70016]}"#.into(),
            ));
        }
        Some((200, r#"{"device_code":"d","user_code":"U","verification_uri":"https://v","expires_in":60,"interval":5}"#.into()))
    });
    let manager = TokenManager::new(transport.clone(), None, settings()).unwrap();
    let mut config = AccountConfig::new(UPN);
    config.authority = Some("https://idp.test".into());
    manager.add_account(config);
    let handle = manager.begin_login(UPN, None).await.unwrap();
    assert!(matches!(&handle.prompt, SignInPrompt::Device(p) if p.user_code == "U"));
    let err = handle.wait().await.unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
    let polls = transport
        .calls
        .lock()
        .unwrap()
        .iter()
        .filter(|f| f.contains("device_code="))
        .count();
    assert_eq!(polls, 11, "polled every 5 s until the 60 s deadline");
    assert_eq!(manager.accounts()[0].status, AccountStatus::SignedOut);
}

#[tokio::test]
async fn certificate_flow_reads_pem_and_pfx_files() {
    let transport = scripted(|form, _| {
        assert!(form.contains("client_assertion="), "{form}");
        Some((
            200,
            serde_json::json!({"access_token": "app", "expires_in": 3600}).to_string(),
        ))
    });
    let manager = TokenManager::new(transport, None, settings()).unwrap();
    let testdata = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/token/testdata");
    let mut config = AccountConfig::new("app@contoso.com");
    config.authority = Some("https://idp.test".into());
    config.flow = Flow::Certificate {
        cert_pem: testdata.join("rsa_cert.pem"),
        key_pem: testdata.join("rsa_key.pem"),
    };
    manager.add_account(config.clone());
    assert_eq!(
        manager
            .token("app@contoso.com", &Audience::new(EXO))
            .await
            .unwrap()
            .expose(),
        "app"
    );

    let pfx_with = |password: &str| Flow::CertificatePfx {
        pfx: testdata.join("rsa_aes.pfx"),
        password: crate::token::secret::ClientSecret::new(password),
    };
    config.upn = "pfx-app@contoso.com".into();
    config.flow = pfx_with("exoproxy-test");
    manager.add_account(config.clone());
    let token = manager
        .token("pfx-app@contoso.com", &Audience::new(EXO))
        .await;
    assert_eq!(token.unwrap().expose(), "app");

    config.upn = "wrong-pfx-password@contoso.com".into();
    config.flow = pfx_with("wrong");
    manager.add_account(config.clone());
    let err = manager
        .token("wrong-pfx-password@contoso.com", &Audience::new(EXO))
        .await
        .unwrap_err();
    assert!(matches!(err, TokenError::Config { .. }), "{err:?}");
    assert!(err.to_string().contains("rsa_aes.pfx"), "{err}");

    config.upn = "missing@contoso.com".into();
    config.flow = Flow::Certificate {
        cert_pem: testdata.join("nope.pem"),
        key_pem: testdata.join("nope.pem"),
    };
    manager.add_account(config);
    let err = manager
        .token("missing@contoso.com", &Audience::new(EXO))
        .await
        .unwrap_err();
    assert!(matches!(err, TokenError::Config { .. }), "{err:?}");
}

#[test]
fn token_errors_map_onto_the_proxy_catalogue() {
    let unavailable = TokenError::Unavailable {
        upn: UPN.into(),
        detail: "down".into(),
        retry_after: Some(Duration::from_secs(5)),
    };
    assert!(matches!(
        crate::error::ProxyError::from(unavailable),
        crate::error::ProxyError::TokenUnavailable {
            retry_after: Some(_),
            ..
        }
    ));
    let required = TokenError::SignInRequired {
        upn: UPN.into(),
        aadsts: Some(50173),
        detail: "revoked".into(),
    };
    match crate::error::ProxyError::from(required) {
        crate::error::ProxyError::SignInRequired { account, detail } => {
            assert_eq!(account, UPN);
            assert!(detail.contains("AADSTS50173"));
        }
        other => panic!("{other:?}"),
    }
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn pending_device_code_is_logged_with_a_countdown_every_30s() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let transport = scripted(|form, _| {
        if form.contains("device_code=") {
            return Some((400, r#"{"error":"authorization_pending"}"#.into()));
        }
        Some((200, r#"{"device_code":"DEVICE-SECRET-XYZ","user_code":"QWER-TYUI","verification_uri":"https://microsoft.com/devicelogin","expires_in":95,"interval":5}"#.into()))
    });
    let manager = TokenManager::new(transport, None, settings()).unwrap();
    let mut config = AccountConfig::new(UPN);
    config.authority = Some("https://idp.test".into());
    manager.add_account(config);
    let err = manager.token(UPN, &Audience::new(EXO)).await.unwrap_err();
    assert!(matches!(err, TokenError::SignInPending { .. }));
    tokio::time::sleep(Duration::from_secs(100)).await;
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let prompts: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("SIGN-IN NEEDED"))
        .collect();
    assert_eq!(prompts.len(), 4, "at 0, 30, 60 and 90 s:\n{logs}");
    assert!(
        prompts
            .iter()
            .all(|l| l.contains("QWER-TYUI") && l.contains("https://microsoft.com/devicelogin"))
    );
    assert!(
        prompts[0].contains("95 s left") && prompts[3].contains("5 s left"),
        "{logs}"
    );
    assert!(
        !logs.contains("DEVICE-SECRET-XYZ"),
        "the device code is a secret"
    );
}

#[tokio::test]
async fn flt17_wall_clock_catches_a_suspend_the_monotonic_clock_missed() {
    use super::live::{LiveToken, Slot};
    let slot = Slot::new(Audience::new(EXO));
    let now = tokio::time::Instant::now();
    let wall = crate::token::cache::unix_now();
    let token = |expires_wall: i64| LiveToken {
        token: AccessToken::new("at"),
        issued: now,
        expires: now + Duration::from_secs(3600),
        expires_wall,
    };
    // Monotonic: 1 h left. Wall clock: the machine slept through the expiry.
    slot.set_token(Some(token(wall - 60)));
    assert!(
        slot.fresh(Duration::from_secs(30)).is_none(),
        "an expired token is never served"
    );
    assert!(
        slot.refresh_due(now).unwrap() <= now,
        "refresh is due immediately"
    );
    // Both clocks agree on 1 h: served, refresh at 48 min.
    slot.set_token(Some(token(wall + 3600)));
    assert!(slot.fresh(Duration::from_secs(30)).is_some());
    let due = slot.refresh_due(now).unwrap() - now;
    assert!((47 * 60..=48 * 60).contains(&due.as_secs()), "{due:?}");
}

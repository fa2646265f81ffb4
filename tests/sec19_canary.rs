//! SEC-19: with exosim's canary embedded in every token it issues (a JWT claim in access tokens, plain
//! text in refresh tokens), a whole session at TRACE (device-code sign-in, REST and WS-Man through the
//! proxy, token rollovers, a CAE re-acquisition, a revoked refresh token, a new sign-in, logout) leaves
//! the canary in none of: the log output, the files under the state and temp dirs, the `Debug` output of
//! the account summaries, the `TokenManager` and the `InterceptState`, or error bodies the clients got.
//!
//! Its own test binary: it installs the global tracing subscriber (TRACE, into an in-memory buffer).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod intercept_support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use exoproxy::token::Cloud;
use intercept_support::*;
use tracing_subscriber::EnvFilter;

const CANARY: &str = "CANARY-sec19-5d1e9b7c04a2f6831d";
/// Short enough that a few seconds of traffic roll the token over several times.
const TOKEN_LIFETIME: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sec19_canary_never_reaches_logs_state_or_debug_output() {
    let started = Instant::now();
    let logs = capture_logs_at_trace();
    let h = Harness::start(Options {
        token_lifetime: TOKEN_LIFETIME,
        canary: Some(CANARY.into()),
        state_dir: true,
        ..Options::default()
    })
    .await;
    let mut seen = Observed::default();

    seen.prove_the_canary_is_live(&h).await;
    rest_across_rollovers(&h, &mut seen).await;
    wsman_session(&h, &mut seen).await;
    cae_reacquisition(&h, &mut seen).await;
    seen.record_debug(&h);
    seen.scan_files(&h, "after the first session");
    assert_sealed_cache_exists(&h);

    revoked_refresh_token(&h, &mut seen).await;
    h.sign_in(ADMIN).await;
    let tenant = tenant_host(&h).await;
    let (status, body) = rest_once(&h, &tenant).await;
    assert_eq!(status, 200, "after signing in again: {body}");
    seen.prove_the_canary_is_live(&h).await;
    seen.record_debug(&h);
    seen.scan_files(&h, "after signing in again");

    h.tokens.logout(ADMIN).unwrap();
    seen.record_debug(&h);
    seen.scan_files(&h, "after logout");
    assert!(
        !h.state_dir
            .as_ref()
            .unwrap()
            .join("tokens/admin@contoso.com.json")
            .exists()
    );

    let log_text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    // For a human reviewing what TRACE shows: `SEC19_LOG_FILE=/tmp/sec19.log cargo test --test sec19_canary`.
    if let Ok(path) = std::env::var("SEC19_LOG_FILE") {
        std::fs::write(path, &log_text).unwrap();
    }
    seen.assert_logs_are_clean_and_real(&log_text);
    seen.assert_debug_is_clean();
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}

// === the session ===

/// Requests on one keep-alive connection for longer than a token lives.
async fn rest_across_rollovers(h: &Harness, seen: &mut Observed) {
    let tenant = tenant_host(h).await;
    let mut client = h.client(&tenant).await;
    let before = refresh_calls(h);
    for _ in 0..5 {
        let (status, _, body) = send(&mut client, post_json(&tenant, REST_PATH, GET_MAILBOX)).await;
        assert_eq!(status, 200, "{body}");
        seen.client_output.push(body);
        tokio::time::sleep(Duration::from_millis(900)).await;
    }
    assert!(refresh_calls(h) > before, "no rollover happened");
    seen.prove_the_canary_is_live(h).await;
}

/// pypsrp through the proxy: Basic `upn:Bearer <jwt>` injected on every request.
async fn wsman_session(h: &Harness, seen: &mut Observed) {
    let out = whoami(h, ADMIN).await;
    assert!(out.status.success(), "{}", describe(&out));
    seen.client_output.push(describe(&out));
}

/// exosim demands a claims challenge: one re-acquisition, one replay.
async fn cae_reacquisition(h: &Harness, seen: &mut Observed) {
    let tenant = tenant_host(h).await;
    let calls = refresh_calls(h);
    h.control().update_exchange(|s| s.cae = true);
    let (status, body) = rest_once(h, &tenant).await;
    h.control().update_exchange(|s| s.cae = false);
    assert_eq!(status, 200, "{body}");
    assert!(refresh_calls(h) > calls, "no re-acquisition");
    seen.client_output.push(body);
}

/// The IdP revokes the refresh token: the client gets a reauth error, the account a sign-in mark.
async fn revoked_refresh_token(h: &Harness, seen: &mut Observed) {
    let tenant = tenant_host(h).await;
    h.control().revoke_user(ADMIN);
    tokio::time::sleep(TOKEN_LIFETIME + Duration::from_millis(500)).await;
    let (status, body) = rest_once(h, &tenant).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("reauth_required"), "{body}");
    seen.client_output.push(body);
    seen.record_debug(h);
    seen.scan_files(h, "after the revocation");
}

fn assert_sealed_cache_exists(h: &Harness) {
    let tokens = h.state_dir.as_ref().unwrap().join("tokens");
    let file = std::fs::read_to_string(tokens.join("admin@contoso.com.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&file).unwrap();
    assert_eq!(json["version"], 2, "{file}");
    assert!(
        json["refresh_token"].is_string(),
        "no refresh token cached: {file}"
    );
    assert!(tokens.join(".cache-key").exists());
}

// === what was observed ===

#[derive(Default)]
struct Observed {
    /// Signature segments of access tokens served: a logged token shows up by them.
    signatures: Vec<String>,
    /// `Debug` output of the admin-facing state.
    debug_output: Vec<String>,
    /// Bodies and output the clients saw.
    client_output: Vec<String>,
    files_scanned: usize,
}

impl Observed {
    /// The access token the proxy would inject carries the canary (decoded), so the test is live.
    async fn prove_the_canary_is_live(&mut self, h: &Harness) {
        let token = h
            .tokens
            .token(ADMIN, &Cloud::Global.exchange())
            .await
            .unwrap();
        let jwt = token.expose();
        let payload = jwt.split('.').nth(1).unwrap();
        let claims = URL_SAFE_NO_PAD.decode(payload).unwrap();
        assert!(
            String::from_utf8_lossy(&claims).contains(CANARY),
            "the canary is not in the access token: the test would prove nothing"
        );
        assert!(
            !jwt.contains(CANARY),
            "a JWT carries the canary only encoded"
        );
        self.signatures
            .push(jwt.rsplit('.').next().unwrap().to_string());
    }

    fn record_debug(&mut self, h: &Harness) {
        self.debug_output.push(format!("{:?}", h.tokens.accounts()));
        self.debug_output
            .push(format!("{:#?}", h.tokens.accounts()));
        self.debug_output.push(format!("{:?}", h.tokens));
        self.debug_output.push(format!("{:?}", h.intercept));
    }

    fn needles(&self) -> Vec<String> {
        let mut needles = canary_encodings();
        needles.extend(self.signatures.iter().cloned());
        needles
    }

    /// Every file under the harness's temp dir (CA files, the state dir with the token cache).
    fn scan_files(&mut self, h: &Harness, when: &str) {
        let needles = self.needles();
        for path in files_under(h.temp_dir()) {
            let bytes = std::fs::read(&path).unwrap();
            for needle in &needles {
                assert!(
                    !contains(&bytes, needle.as_bytes()),
                    "{when}: {needle} found in {}",
                    path.display()
                );
            }
            self.files_scanned += 1;
        }
    }

    fn assert_logs_are_clean_and_real(&self, logs: &str) {
        let lines = logs.lines().count();
        assert!(
            lines > 1000,
            "only {lines} log lines: is TRACE capture working?"
        );
        let own_events = logs.lines().filter(|l| l.contains(" exoproxy::")).count();
        assert!(own_events > 30, "only {own_events} exoproxy events logged");
        for expected in [
            "signed in",
            "TRACE",
            "token rejected upstream",
            "AADSTS50173",
        ] {
            assert!(logs.contains(expected), "no {expected:?} in the logs");
        }
        for needle in self.needles() {
            if let Some(at) = logs.find(&needle) {
                let line = logs[..at].lines().count();
                panic!(
                    "{needle} found in the logs at line {line}: {}",
                    context(logs, at)
                );
            }
        }
        assert!(
            self.files_scanned > 3,
            "{} files scanned",
            self.files_scanned
        );
    }

    fn assert_debug_is_clean(&self) {
        let needles = self.needles();
        for text in self.debug_output.iter().chain(&self.client_output) {
            for needle in &needles {
                assert!(!text.contains(needle.as_str()), "{needle} found in {text}");
            }
        }
        let summaries = self.debug_output.join("\n");
        assert!(
            summaries.contains(ADMIN) && summaries.contains("SignInRequired"),
            "{summaries}"
        );
    }
}

// === helpers ===

/// The canary in clear and as it appears base64-encoded inside a JWT (url-safe) or a Basic header
/// (standard), at each of the three byte alignments.
fn canary_encodings() -> Vec<String> {
    let mut needles = vec![CANARY.to_string()];
    for shift in 0..3usize {
        let mut bytes = vec![b'x'; shift];
        bytes.extend_from_slice(CANARY.as_bytes());
        // Drop the characters that mix in the prefix or the end padding bits.
        let skip = (shift * 8).div_ceil(6);
        for engine in [&URL_SAFE_NO_PAD, &STANDARD_NO_PAD] {
            let encoded = engine.encode(&bytes);
            needles.push(encoded[skip..encoded.len() - 1].to_string());
        }
    }
    needles.sort();
    needles.dedup();
    needles
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    files
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn context(text: &str, at: usize) -> &str {
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    &text[start..end]
}

/// Installs the global subscriber: everything at TRACE, no colours, into the returned buffer.
fn capture_logs_at_trace() -> Arc<Mutex<Vec<u8>>> {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let writer = buffer.clone();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new("trace"))
        .with_ansi(false)
        .with_writer(move || SharedBuffer(writer.clone()))
        .init();
    buffer
}

struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

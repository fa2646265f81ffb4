//! Exchange Online side of the emulator: the retired RPS endpoint (WS-Man `/PowerShell-LiveID`) and the
//! REST "adminapi" endpoint, on the Exchange and Security & Compliance hosts.
//!
//! Contract (the seam with the server half of exosim):
//! - the server terminates TLS, buffers the body and calls [`Exchange::handle`] for every request whose
//!   host [`Exchange::serves`]; this module never touches sockets;
//! - tokens are verified by the caller's [`TokenCheck`] (signature, `exp`/`nbf`, `aud`); this module
//!   decides which audience a host demands and how a refusal looks on the wire
//!   (docs/PROTOCOL.md#token-rejection);
//! - runtime knobs live in [`ExchangeSettings`], changed through [`Exchange::update`].
//!
//! # Layout
//! - `hosts`: which host is a front door or a tenant host, and its audience;
//! - `auth`: Basic-with-Bearer (RPS) and Bearer (REST) authentication, 401 and CAE challenges;
//! - `wsman`: the WS-Man shell (Create/Command/Receive/Send/Signal/Delete), redirect, affinity cookie;
//! - `rest`: `InvokeCommand` with generated mailboxes, paging and throttling.

mod auth;
mod hosts;
mod ids;
mod rest;
mod wsman;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;

use hosts::{EndpointKind, HostInfo};

/// Claims the Exchange side needs from a validated access token.
#[derive(Debug, Clone)]
pub struct TokenClaims {
    /// e.g. `https://outlook.office365.com` or `https://ps.compliance.protection.outlook.com`.
    pub aud: String,
    /// Tenant id (GUID string).
    pub tid: String,
    /// Delegated tokens: upn / unique_name / preferred_username (first present).
    pub upn: Option<String>,
    /// Client application id.
    pub appid: String,
    /// App-only tokens, e.g. `["Exchange.ManageAsApp"]`.
    pub roles: Vec<String>,
    /// Delegated tokens.
    pub scp: Option<String>,
    /// Unix seconds.
    pub exp: u64,
    /// Client capabilities (`cp1` = CAE capable).
    pub xms_cc: Vec<String>,
    /// The token was issued in answer to a `claims` challenge (CAE), i.e. carries the required claim.
    pub claims_satisfied: bool,
}

/// Why a token was refused (drives 401 headers per docs/PROTOCOL.md#token-rejection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRejection {
    /// Not a JWT, or unreadable claims.
    Malformed,
    /// Signature does not verify with the emulator's key.
    BadSignature,
    /// `exp` in the past (or `nbf` in the future).
    Expired,
    /// `aud` is not the audience this host demands.
    WrongAudience {
        /// The audience the host demands.
        expected: String,
        /// The audience the token carries.
        got: String,
    },
}

/// Implemented by the JWT verifier (sim-entra): checks signature (RS256, the sim's key), `exp`/`nbf`,
/// and that `aud` equals `audience`.
pub trait TokenCheck: Send + Sync {
    /// Verify `jwt` for `audience` and return its claims.
    fn check(&self, jwt: &str, audience: &str) -> Result<TokenClaims, TokenRejection>;
}

/// Runtime knobs, changed by the control plane.
#[derive(Debug, Clone)]
pub struct ExchangeSettings {
    /// WS-Man Receive long-poll answers 500 w:TimedOut after min(client OperationTimeout, this).
    pub operation_timeout_cap: Duration,
    /// Concurrent shells per user before the WS-Man quota fault (EXO: 5).
    pub max_shells_per_user: usize,
    /// 401 insufficient_claims + claims challenge until a token with `claims_satisfied`.
    pub cae: bool,
    /// REST: 429 with Retry-After = this.
    pub throttle: Option<Duration>,
    /// Size of the generated Get-Mailbox set.
    pub mailboxes: usize,
    /// REST paging: largest page (a client's `Prefer: odata.maxpagesize` may lower it).
    pub page_size: usize,
}

/// The Exchange Online emulator state: shells, affinity cookies, counters and settings.
#[derive(Debug)]
pub struct Exchange {
    /// WS-Man shells and affinity cookies; never held across an await (Receive waits on a Notify).
    state: Mutex<wsman::State>,
    /// Read as a snapshot at the start of each request, so a control-plane change applies to the next one.
    settings: Mutex<ExchangeSettings>,
    /// Requests that reached this module, so tests can tell "refused by the proxy" from "refused here".
    requests: AtomicU64,
}

// === impl ExchangeSettings ===

impl Default for ExchangeSettings {
    fn default() -> Self {
        ExchangeSettings {
            operation_timeout_cap: Duration::from_secs(180),
            max_shells_per_user: 5,
            cae: false,
            throttle: None,
            mailboxes: 25,
            page_size: 10,
        }
    }
}

// === impl Exchange ===

impl Exchange {
    /// A fresh emulator with no shells and no affinity cookies.
    pub fn new(settings: ExchangeSettings) -> Exchange {
        Exchange {
            state: Mutex::new(wsman::State::default()),
            settings: Mutex::new(settings),
            requests: AtomicU64::new(0),
        }
    }

    /// A snapshot of the current settings.
    pub fn settings(&self) -> ExchangeSettings {
        lock(&self.settings).clone()
    }

    /// Change the settings; takes effect for the next request.
    pub fn update(&self, f: impl FnOnce(&mut ExchangeSettings)) {
        f(&mut lock(&self.settings));
    }

    /// Requests that reached Exchange (for tests).
    pub fn request_count(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Open WS-Man shells of all users (for tests and the control plane).
    pub fn open_shells(&self) -> usize {
        lock(&self.state).shell_count()
    }

    /// Forget every shell and affinity cookie (control plane: "the service restarted"); waiting
    /// Receives wake up and answer the shell-not-found fault.
    pub fn reset_shells(&self) {
        lock(&self.state).clear();
    }

    /// True when `host` is one of the Exchange or S&C hosts (incl. tenant hosts) this module serves.
    pub fn serves(host: &str) -> bool {
        HostInfo::classify(host).is_some()
    }

    /// Handle one request. `host` is the lower-cased Host/SNI without port. Bodies are buffered.
    pub async fn handle(
        &self,
        host: &str,
        req: http::Request<Bytes>,
        tokens: &dyn TokenCheck,
    ) -> http::Response<Bytes> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let Some(info) = HostInfo::classify(host) else {
            return plain(http::StatusCode::NOT_FOUND, "not an Exchange host\n");
        };
        match EndpointKind::of(req.uri().path()) {
            Some(EndpointKind::Rps) => wsman::handle(self, &info, req, tokens).await,
            Some(EndpointKind::Rest) => rest::handle(self, &info, req, tokens),
            None => plain(
                http::StatusCode::NOT_FOUND,
                "no such endpoint on this host\n",
            ),
        }
    }
}

/// Lock a mutex, recovering from poisoning: a panicked test thread must not wedge the emulator.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A short text response (for paths that no Exchange client should hit).
fn plain(status: http::StatusCode, text: &'static str) -> http::Response<Bytes> {
    let mut resp = http::Response::new(Bytes::from_static(text.as_bytes()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

//! Exchange Online emulation (WS-Man/RPS and REST). PLACEHOLDER owned by sim-exo: only the seam's
//! signatures, so the server compiles until the real module lands; every request answers 503.

/// Claims the Exchange side needs from a validated access token.
#[derive(Debug, Clone)]
pub struct TokenClaims {
    pub aud: String,
    pub tid: String,
    pub upn: Option<String>,
    pub appid: String,
    pub roles: Vec<String>,
    pub scp: Option<String>,
    pub exp: u64,
    pub xms_cc: Vec<String>,
    pub claims_satisfied: bool,
}

/// Why a token was refused (drives 401 headers per PROTOCOL.md §1.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRejection {
    Malformed,
    BadSignature,
    Expired,
    WrongAudience { expected: String, got: String },
}

/// Implemented by the JWT verifier: signature, `exp`/`nbf`, and `aud` equal to `audience`.
pub trait TokenCheck: Send + Sync {
    fn check(&self, jwt: &str, audience: &str) -> Result<TokenClaims, TokenRejection>;
}

/// Runtime knobs, changed by the control plane.
#[derive(Debug, Clone)]
pub struct ExchangeSettings {
    pub operation_timeout_cap: std::time::Duration,
    pub max_shells_per_user: usize,
    pub cae: bool,
    pub throttle: Option<std::time::Duration>,
    pub mailboxes: usize,
    pub page_size: usize,
}

/// Placeholder state: only the settings.
#[derive(Debug)]
pub struct Exchange {
    settings: std::sync::Mutex<ExchangeSettings>,
}

impl Exchange {
    pub fn new(settings: ExchangeSettings) -> Exchange {
        Exchange {
            settings: std::sync::Mutex::new(settings),
        }
    }

    pub fn settings(&self) -> ExchangeSettings {
        match self.settings.lock() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn update(&self, f: impl FnOnce(&mut ExchangeSettings)) {
        match self.settings.lock() {
            Ok(mut s) => f(&mut s),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    pub fn request_count(&self) -> u64 {
        0
    }

    /// True when `host` is one of the Exchange or S&C hosts (incl. tenant hosts).
    pub fn serves(host: &str) -> bool {
        host == "outlook.office365.com"
            || host == "ps.outlook.com"
            || host == "ps.compliance.protection.outlook.com"
            || host.ends_with(".outlook.office365.com")
            || host.ends_with(".ps.compliance.protection.outlook.com")
    }

    pub async fn handle(
        &self,
        _host: &str,
        _req: http::Request<bytes::Bytes>,
        _tokens: &dyn TokenCheck,
    ) -> http::Response<bytes::Bytes> {
        let mut resp = http::Response::new(bytes::Bytes::from_static(b"exchange placeholder"));
        *resp.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
        resp
    }
}

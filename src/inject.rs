//! Token injection: which requests get a token ([`classify`]), for which account ([`select_account`]),
//! and how it is written ([`apply`]); whether an answer rejected it ([`challenge`]). The built-in
//! cloud [`profiles`] say which hosts are intercepted and which token audience each host takes.
//!
//! Contract (docs/PROTOCOL.md#basic-to-oauth, docs/PROTOCOL.md#rest-adminapi,
//! docs/ARCHITECTURE.md#security-model):
//! - Only injection paths get a token: WS-Man (`/powershell-liveid`, `/PowerShell`, any case) and REST
//!   (`/adminapi/…`). Everything else on an intercepted host passes through untouched.
//! - Browser-marked requests (`Origin`, any `Sec-Fetch-*`) never get a token (SEC-15): PowerShell sends
//!   neither, a web page riding on the proxy always does.
//! - The client's own `Authorization` is replaced, never duplicated (SEC-17).
//! - The token for a host is always the token of that host's audience (TOK-11); the caller looks it up
//!   with [`Profile::audience_for`].

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::header::{AUTHORIZATION, HeaderMap, HeaderValue};

pub mod challenge;

pub use challenge::{Rejection, rejection};

/// How a token rides on a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injection {
    /// WS-Man with `BasicAuthToOAuthConversion=true`: `Basic base64(<user>:Bearer <token>)`.
    WsMan,
    /// REST (`/adminapi/`): `Bearer <token>`.
    Rest,
}

/// What to do with one request on an intercepted host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Treatment {
    /// Inject a token with this scheme.
    Inject(Injection),
    /// Forward untouched, without a token (not an injection path, or a browser request).
    PassThrough,
}

/// Which account a request is for, and the Basic user name to keep for WS-Man.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountChoice {
    /// The UPN (lower-cased) whose token is used.
    pub upn: String,
    /// How the account was chosen, for logs and error messages.
    pub source: &'static str,
    /// The client's Basic user name, kept verbatim on WS-Man (routing/affinity key,
    /// docs/PROTOCOL.md#basic-to-oauth).
    pub basic_username: Option<String>,
}

/// A cloud's intercepted hosts and their token audiences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// `global`, `usgov-gcchigh`, `usgov-dod`, `china`, or a configured name.
    pub name: String,
    /// Entra ID authority base URL for this cloud.
    pub authority: String,
    /// Host patterns (exact or `*.suffix`) and the audience of tokens sent to them.
    pub hosts: Vec<(String, String)>,
}

// === Classification ===

/// Decides whether a request on an intercepted host gets a token, and how.
pub fn classify(path: &str, headers: &HeaderMap) -> Treatment {
    if is_browser_request(headers) {
        return Treatment::PassThrough;
    }
    match injection_for_path(path) {
        Some(i) => Treatment::Inject(i),
        None => Treatment::PassThrough,
    }
}

/// The injection scheme for a request path (without the query), if it is an injection path.
pub fn injection_for_path(path: &str) -> Option<Injection> {
    let path = path.split(['?', ';']).next().unwrap_or(path);
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    if first.eq_ignore_ascii_case("powershell-liveid") || first.eq_ignore_ascii_case("powershell") {
        Some(Injection::WsMan)
    } else if first.eq_ignore_ascii_case("adminapi") {
        Some(Injection::Rest)
    } else {
        None
    }
}

/// True when the request carries a browser's marks (`Origin` or any `Sec-Fetch-*` header).
pub fn is_browser_request(headers: &HeaderMap) -> bool {
    headers.contains_key(http::header::ORIGIN)
        || headers.keys().any(|k| k.as_str().starts_with("sec-fetch-"))
}

// === Account selection ===

/// Picks the account: the client's Basic user name; else `X-AnchorMailbox: UPN:…`; else the `upn` of
/// a bearer token the client sent; else the configured default. `None` means: ask the client (401
/// with `WWW-Authenticate: Basic realm="exoproxy"`, so WinRM sends its UPN).
pub fn select_account(headers: &HeaderMap, default: Option<&str>) -> Option<AccountChoice> {
    let auth = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let Some(user) = basic_username(auth) {
        return Some(AccountChoice {
            upn: user.to_ascii_lowercase(),
            source: "Basic user name",
            basic_username: Some(user),
        });
    }
    if let Some(upn) = anchor_mailbox_upn(headers) {
        return Some(choice(upn, "X-AnchorMailbox"));
    }
    if let Some(upn) = bearer_upn(auth) {
        return Some(choice(upn, "client bearer token"));
    }
    default.map(|d| choice(d.to_string(), "default account"))
}

fn choice(upn: String, source: &'static str) -> AccountChoice {
    AccountChoice {
        upn: upn.to_ascii_lowercase(),
        source,
        basic_username: None,
    }
}

/// The user half of `Basic base64(user:password)`, when it is non-empty.
fn basic_username(auth: &str) -> Option<String> {
    let encoded = strip_scheme(auth, "basic")?;
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let user = text.split(':').next()?.trim();
    (!user.is_empty()).then(|| user.to_string())
}

/// `X-AnchorMailbox: UPN:admin@contoso.com` → `admin@contoso.com` (system-mailbox anchors are ignored).
fn anchor_mailbox_upn(headers: &HeaderMap) -> Option<String> {
    let v = headers.get("x-anchormailbox")?.to_str().ok()?;
    let upn = v.get(..4)?.eq_ignore_ascii_case("upn:").then(|| &v[4..])?;
    let upn = upn.trim();
    let system = upn.to_ascii_lowercase().starts_with("systemmailbox{");
    (upn.contains('@') && !system).then(|| upn.to_string())
}

/// The `upn` (or `preferred_username`, `unique_name`) claim of a bearer token the client sent. The
/// token is only read, never trusted or forwarded.
fn bearer_upn(auth: &str) -> Option<String> {
    let token = strip_scheme(auth, "bearer")?;
    let payload = token.trim().split('.').nth(1)?;
    let json = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&json).ok()?;
    ["upn", "preferred_username", "unique_name"]
        .iter()
        .find_map(|k| claims.get(k)?.as_str().map(str::to_string))
        .filter(|u| u.contains('@'))
}

fn strip_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (s, rest) = value.split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then_some(rest)
}

// === Injection ===

/// Writes the token into the request headers, replacing any `Authorization` the client sent. The
/// header value is marked sensitive so that it is never indexed or printed by the HTTP stack.
pub fn apply(
    headers: &mut HeaderMap,
    injection: Injection,
    basic_username: &str,
    token: &str,
) -> Result<(), http::header::InvalidHeaderValue> {
    let value = match injection {
        Injection::WsMan => {
            let pair = zeroize::Zeroizing::new(format!("{basic_username}:Bearer {token}"));
            zeroize::Zeroizing::new(format!("Basic {}", STANDARD.encode(pair.as_bytes())))
        }
        Injection::Rest => zeroize::Zeroizing::new(format!("Bearer {token}")),
    };
    let mut header = HeaderValue::from_str(&value)?;
    header.set_sensitive(true);
    headers.remove(AUTHORIZATION);
    headers.insert(AUTHORIZATION, header);
    Ok(())
}

// === Profiles ===

/// The built-in cloud profiles (docs/PROTOCOL.md#exchange-hosts).
pub fn profiles() -> Vec<Profile> {
    let p = |name: &str, authority: &str, hosts: &[(&str, &str)]| Profile {
        name: name.into(),
        authority: authority.into(),
        hosts: hosts
            .iter()
            .map(|(h, a)| (h.to_string(), a.to_string()))
            .collect(),
    };
    const EXO: &str = "https://outlook.office365.com";
    const SCC: &str = "https://ps.compliance.protection.outlook.com";
    const GCCH: &str = "https://outlook.office365.us";
    const GCCH_SCC: &str = "https://ps.compliance.protection.office365.us";
    const DOD: &str = "https://outlook-dod.office365.us";
    const DOD_SCC: &str = "https://l5.ps.compliance.protection.office365.us";
    const CN: &str = "https://partner.outlook.cn";
    const CN_SCC: &str = "https://ps.compliance.protection.partner.outlook.cn";
    vec![
        p(
            "global",
            "https://login.microsoftonline.com",
            &[
                ("outlook.office365.com", EXO),
                ("*.outlook.office365.com", EXO),
                ("ps.outlook.com", EXO),
                ("ps.compliance.protection.outlook.com", SCC),
                ("*.ps.compliance.protection.outlook.com", SCC),
            ],
        ),
        p(
            "usgov-gcchigh",
            "https://login.microsoftonline.us",
            &[
                ("outlook.office365.us", GCCH),
                ("*.outlook.office365.us", GCCH),
                ("ps.compliance.protection.office365.us", GCCH_SCC),
                ("*.ps.compliance.protection.office365.us", GCCH_SCC),
            ],
        ),
        p(
            "usgov-dod",
            "https://login.microsoftonline.us",
            &[
                ("outlook-dod.office365.us", DOD),
                ("*.outlook-dod.office365.us", DOD),
                ("webmail.apps.mil", DOD),
                ("l5.ps.compliance.protection.office365.us", DOD_SCC),
            ],
        ),
        p(
            "china",
            "https://login.partner.microsoftonline.cn",
            &[
                ("partner.outlook.cn", CN),
                ("*.partner.outlook.cn", CN),
                ("ps.compliance.protection.partner.outlook.cn", CN_SCC),
                ("*.ps.compliance.protection.partner.outlook.cn", CN_SCC),
            ],
        ),
    ]
}

// === impl Profile ===

impl Profile {
    /// The audience of tokens for `host` (normalised, lower case), if this profile intercepts it.
    /// Exact entries win over wildcard ones; a wildcard matches on a label boundary only.
    pub fn audience_for(&self, host: &str) -> Option<&str> {
        let exact = self.hosts.iter().find(|(p, _)| p == host);
        let wildcard = || {
            self.hosts.iter().find(|(p, _)| {
                p.strip_prefix("*.").is_some_and(|suffix| {
                    host.len() > suffix.len() + 1
                        && host.ends_with(suffix)
                        && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
                })
            })
        };
        exact.or_else(wildcard).map(|(_, a)| a.as_str())
    }

    /// The OAuth scope for an audience (`<audience>/.default`).
    pub fn scope_for(audience: &str) -> String {
        format!("{}/.default", audience.trim_end_matches('/'))
    }
}

#[cfg(test)]
mod tests;

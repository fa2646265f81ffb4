//! Account model: who signs in, where, with which client and flow, and for which resource (audience).
//!
//! Contract: an account is keyed by its UPN (case-insensitive); tokens are kept per (account, audience),
//! so a token minted for the Exchange host is never sent to the S&C host (TOK-11, TOK-15). Defaults follow
//! docs/PROTOCOL.md#client-ids, docs/PROTOCOL.md#entra-endpoints: the tenant comes from the UPN's
//! domain, the authority from the cloud.

use std::path::PathBuf;
use std::time::Duration;

use crate::token::secret::{ClientSecret, PrivateKeyPem};

/// `a0c73c16-…`: "Microsoft Exchange Online Remote PowerShell" (RPS over WS-Man),
/// docs/PROTOCOL.md#client-ids.
pub const CLIENT_ID_WSMAN: &str = "a0c73c16-a7e3-4564-9a95-2bdf47383716";
/// `fb78d390-…`: "Microsoft Exchange REST API Based Powershell" (V2/V3 module), docs/PROTOCOL.md#client-ids.
pub const CLIENT_ID_REST: &str = "fb78d390-0c51-40cd-8e17-fdbfab77341b";

/// How long an audience keeps being renewed in the background after its last use.
pub const DEFAULT_IDLE_RENEWAL: Duration = Duration::from_secs(3600);

/// The Entra ID authority hosts of every cloud (docs/PROTOCOL.md#entra-endpoints), current and retired
/// (`.de`): an
/// authority on one of them has the tenant layout `{authority}/{tenant}/v2.0/…`; any other authority is
/// a standards OpenID provider's issuer.
pub const ENTRA_AUTHORITY_HOSTS: &[&str] = &[
    "login.microsoftonline.com",
    "login.microsoft.com",
    "login.windows.net",
    "login.microsoftonline.us",
    "login.partner.microsoftonline.cn",
    "login.chinacloudapi.cn",
    "login.microsoftonline.de",
];

/// True when `authority` (a base URL) is on an Entra ID cloud host.
pub fn is_entra_authority(authority: &str) -> bool {
    let Ok(uri) = authority.parse::<http::Uri>() else {
        return false;
    };
    uri.host().is_some_and(|host| {
        let host = host.trim_end_matches('.');
        ENTRA_AUTHORITY_HOSTS
            .iter()
            .any(|entra| entra.eq_ignore_ascii_case(host))
    })
}

/// Which national cloud the account lives in; picks the authority and the Exchange resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cloud {
    /// login.microsoftonline.com / outlook.office365.com.
    #[default]
    Global,
    /// login.microsoftonline.us / outlook.office365.us.
    UsGov,
    /// login.partner.microsoftonline.cn / partner.outlook.cn.
    China,
}

/// Which client the account signs in as: the two Exchange PowerShell clients differ (§2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientKind {
    /// RPS / WS-Man scripts: client id [`CLIENT_ID_WSMAN`].
    WsMan,
    /// REST (V3) module: client id [`CLIENT_ID_REST`].
    #[default]
    Rest,
}

/// How the account obtains tokens.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Flow {
    /// RFC 8628 device authorization; the user enters a code on another device.
    #[default]
    DeviceCode,
    /// Authorization code + PKCE with a loopback redirect (RFC 7636, RFC 8252).
    Browser,
    /// App-only, client credentials with a certificate-signed assertion (RFC 7523).
    Certificate {
        /// PEM file with the certificate (its thumbprint goes into the assertion header).
        cert_pem: PathBuf,
        /// PEM file with the PKCS#8 private key.
        key_pem: PathBuf,
    },
    /// App-only, client credentials with an assertion signed by the key of a PFX/PKCS#12 file.
    CertificatePfx {
        /// The PFX file (certificate and private key).
        pfx: PathBuf,
        /// Its password; empty for an unprotected file.
        password: ClientSecret,
    },
    /// App-only, client credentials with a client secret.
    Secret {
        /// The application's secret.
        secret: ClientSecret,
    },
    /// App-only with an already loaded certificate and key (tests, embedders).
    CertificateInline {
        /// PEM text of the certificate.
        cert_pem: String,
        /// PEM text of the PKCS#8 private key.
        key_pem: PrivateKeyPem,
    },
}

/// The resource a token is minted for, e.g. `https://outlook.office365.com`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Audience(String);

/// One configured account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountConfig {
    /// The admin's UPN (or `OAuthUser@tenant` for app-only); the account key.
    pub upn: String,
    /// Tenant id or domain; `None` → the UPN's domain.
    pub tenant: Option<String>,
    /// National cloud.
    pub cloud: Cloud,
    /// Sign-in flow.
    pub flow: Flow,
    /// Client kind; decides the default client id.
    pub client: ClientKind,
    /// Explicit client id (app-only flows need the customer's own app id).
    pub client_id: Option<String>,
    /// Explicit scope; `None` → `{audience}/.default`.
    pub scope: Option<String>,
    /// Authority base URL, e.g. `https://login.microsoftonline.com` or an emulator's URL; for a
    /// provider other than Entra ID, its issuer.
    pub authority: Option<String>,
    /// Where the OpenID configuration is, for layouts discovery cannot derive from the authority.
    pub discovery_url: Option<String>,
    /// An audience not asked for during this long is no longer renewed in the background; its next
    /// request renews it on demand ([`DEFAULT_IDLE_RENEWAL`]).
    pub idle_renewal: Duration,
}

// === impl Cloud ===

impl Cloud {
    /// The Entra authority host for this cloud (docs/PROTOCOL.md#entra-endpoints).
    pub fn authority(self) -> &'static str {
        match self {
            Cloud::Global => "https://login.microsoftonline.com",
            Cloud::UsGov => "https://login.microsoftonline.us",
            Cloud::China => "https://login.partner.microsoftonline.cn",
        }
    }

    /// The Exchange Online resource for this cloud.
    pub fn exchange(self) -> Audience {
        match self {
            Cloud::Global => Audience::new("https://outlook.office365.com"),
            Cloud::UsGov => Audience::new("https://outlook.office365.us"),
            Cloud::China => Audience::new("https://partner.outlook.cn"),
        }
    }

    /// The Security & Compliance resource for this cloud.
    pub fn compliance(self) -> Audience {
        match self {
            Cloud::Global => Audience::new("https://ps.compliance.protection.outlook.com"),
            Cloud::UsGov => Audience::new("https://ps.compliance.protection.office365.us"),
            Cloud::China => Audience::new("https://ps.compliance.protection.partner.outlook.cn"),
        }
    }
}

impl Cloud {
    /// The audience whose token may be sent to `host` (TOK-11): the Exchange resource for the Exchange
    /// hosts and their forests, the S&C resource for the compliance hosts, `None` for anything else.
    pub fn audience_for_host(self, host: &str) -> Option<Audience> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let under = |domain: &str| host == domain || host.ends_with(&format!(".{domain}"));
        let (exchange, compliance): (&[&str], &str) = match self {
            Cloud::Global => (
                &["outlook.office365.com", "ps.outlook.com"],
                "ps.compliance.protection.outlook.com",
            ),
            Cloud::UsGov => (
                &["outlook.office365.us"],
                "ps.compliance.protection.office365.us",
            ),
            Cloud::China => (
                &["partner.outlook.cn"],
                "ps.compliance.protection.partner.outlook.cn",
            ),
        };
        if under(compliance) {
            Some(self.compliance())
        } else if exchange.iter().any(|d| under(d)) {
            Some(self.exchange())
        } else {
            None
        }
    }
}

// === impl Flow ===

impl Flow {
    /// True for flows that act as a user (and so get a refresh token and the wrong-user guard).
    pub fn is_delegated(&self) -> bool {
        matches!(self, Flow::DeviceCode | Flow::Browser)
    }

    /// The flow's name as the configuration spells it (`device-code`, `browser`, `certificate`,
    /// `secret`), for the status page; never a path, a key or a secret.
    pub fn name(&self) -> &'static str {
        match self {
            Flow::DeviceCode => "device-code",
            Flow::Browser => "browser",
            Flow::Certificate { .. }
            | Flow::CertificatePfx { .. }
            | Flow::CertificateInline { .. } => "certificate",
            Flow::Secret { .. } => "secret",
        }
    }
}

// === impl Audience ===

impl Audience {
    /// An audience from a resource URI; a trailing `/` is dropped so both spellings match.
    pub fn new(resource: impl Into<String>) -> Self {
        let mut resource = resource.into();
        while resource.ends_with('/') {
            resource.pop();
        }
        Self(resource)
    }

    /// The resource URI.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The v2 scope `{resource}/.default` (docs/PROTOCOL.md#entra-endpoints).
    pub fn default_scope(&self) -> String {
        format!("{}/.default", self.0)
    }
}

impl std::fmt::Display for Audience {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

// === impl AccountConfig ===

impl AccountConfig {
    /// A delegated account with every default: device code, REST client, global cloud.
    pub fn new(upn: impl Into<String>) -> Self {
        Self {
            upn: upn.into(),
            tenant: None,
            cloud: Cloud::Global,
            flow: Flow::DeviceCode,
            client: ClientKind::Rest,
            client_id: None,
            scope: None,
            authority: None,
            discovery_url: None,
            idle_renewal: DEFAULT_IDLE_RENEWAL,
        }
    }

    /// The account key: the UPN in lower case.
    pub fn key(&self) -> String {
        normalize_upn(&self.upn)
    }

    /// The tenant: configured, else the UPN's domain, else `organizations`.
    pub fn tenant(&self) -> String {
        if let Some(tenant) = self.tenant.as_deref().filter(|t| !t.is_empty()) {
            return tenant.to_string();
        }
        match self.upn.rsplit_once('@') {
            Some((_, domain)) if !domain.is_empty() => domain.to_ascii_lowercase(),
            _ => "organizations".to_string(),
        }
    }

    /// The client id: configured, else the default of the client kind.
    pub fn client_id(&self) -> &str {
        match (&self.client_id, self.client) {
            (Some(id), _) => id,
            (None, ClientKind::WsMan) => CLIENT_ID_WSMAN,
            (None, ClientKind::Rest) => CLIENT_ID_REST,
        }
    }

    /// The authority base URL without a trailing `/`.
    pub fn authority(&self) -> String {
        let base = self.authority.as_deref().unwrap_or(self.cloud.authority());
        base.trim_end_matches('/').to_string()
    }

    /// The scope string for `audience` (docs/PROTOCOL.md §2.2). The configured `scope` applies only where
    /// it fits: its resource-qualified words (`https://…/X`, `api://…/X`) are kept for the audience they
    /// name, its bare words (a non-Entra provider's `read write`) for every audience; when nothing is
    /// left the audience's own `<audience>/.default` is asked for, so every intercepted host gets a token
    /// for its own audience (TOK-11). Delegated flows add `offline_access openid profile` for a refresh
    /// token and an ID token; every word appears once.
    pub fn scope_for(&self, audience: &Audience) -> String {
        let configured = self.scope.as_deref().unwrap_or_default();
        let default = audience.default_scope();
        let mut words: Vec<&str> = Vec::new();
        let mut push = |word| {
            if !words.iter().any(|w: &&str| w.eq_ignore_ascii_case(word)) {
                words.push(word);
            }
        };
        let mut names_audience = false;
        for word in configured.split_whitespace() {
            if OIDC_SCOPES.iter().any(|o| o.eq_ignore_ascii_case(word)) {
                continue;
            }
            match resource_of(word) {
                Some(resource) if resource.eq_ignore_ascii_case(audience.as_str()) => {
                    names_audience = true;
                    push(word);
                }
                Some(_) => {}
                None => {
                    names_audience = true;
                    push(word);
                }
            }
        }
        if !names_audience {
            push(&default);
        }
        for word in configured.split_whitespace() {
            if OIDC_SCOPES.iter().any(|o| o.eq_ignore_ascii_case(word)) {
                push(word);
            }
        }
        if self.flow.is_delegated() {
            for word in ["offline_access", "openid", "profile"] {
                push(word);
            }
        }
        words.join(" ")
    }

    /// The audience used when none is named: Exchange Online of the account's cloud.
    pub fn default_audience(&self) -> Audience {
        self.cloud.exchange()
    }
}

/// The OpenID Connect scopes that name no resource.
const OIDC_SCOPES: &[&str] = &["openid", "profile", "offline_access", "email"];

/// The resource a scope word names: `https://outlook.office365.com/Exchange.Manage` →
/// `https://outlook.office365.com`; `None` for a bare word such as `read`.
fn resource_of(word: &str) -> Option<&str> {
    let (_, rest) = word.split_once("://")?;
    let path = rest.find('/')?;
    let end = word.len() - rest.len() + path;
    Some(&word[..end])
}

/// UPNs compare case-insensitively; this is the canonical form.
pub fn normalize_upn(upn: &str) -> String {
    upn.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_derive_tenant_client_and_scope() {
        let account = AccountConfig::new("Admin@Contoso.com");
        assert_eq!(account.key(), "admin@contoso.com");
        assert_eq!(account.tenant(), "contoso.com");
        assert_eq!(account.client_id(), CLIENT_ID_REST);
        assert_eq!(account.authority(), "https://login.microsoftonline.com");
        let scope = account.scope_for(&account.default_audience());
        assert_eq!(
            scope,
            "https://outlook.office365.com/.default offline_access openid profile"
        );
    }

    #[test]
    fn hosts_map_to_their_own_audience() {
        let cases = [
            (
                "outlook.office365.com",
                Some("https://outlook.office365.com"),
            ),
            (
                "NAMPR01.Outlook.Office365.com",
                Some("https://outlook.office365.com"),
            ),
            ("ps.outlook.com", Some("https://outlook.office365.com")),
            (
                "eur02b.ps.compliance.protection.outlook.com",
                Some("https://ps.compliance.protection.outlook.com"),
            ),
            ("evil-outlook.office365.com", None),
            ("outlook.office365.com.evil.example", None),
            ("login.microsoftonline.com", None),
        ];
        for (host, expected) in cases {
            let got = Cloud::Global.audience_for_host(host);
            assert_eq!(got.as_ref().map(Audience::as_str), expected, "{host}");
        }
        assert_eq!(
            Cloud::UsGov.audience_for_host("outlook.office365.us"),
            Some(Cloud::UsGov.exchange())
        );
    }

    /// Issue 10 row 14: a configured scope no longer forces one audience on every host, and the OpenID
    /// scopes are never sent twice.
    #[test]
    fn tok11_configured_scope_follows_the_audience_and_is_deduplicated() {
        let mut account = AccountConfig::new("admin@contoso.com");
        account.scope = Some(
            "https://outlook.office365.com/Exchange.Manage offline_access openid profile".into(),
        );
        let exchange = Cloud::Global.exchange();
        let compliance = Cloud::Global.compliance();
        assert_eq!(
            account.scope_for(&exchange),
            "https://outlook.office365.com/Exchange.Manage offline_access openid profile"
        );
        assert_eq!(
            account.scope_for(&compliance),
            "https://ps.compliance.protection.outlook.com/.default offline_access openid profile"
        );
        // Bare words (a non-Entra provider's scopes) apply to every audience.
        account.scope = Some("read write read".into());
        assert_eq!(
            account.scope_for(&compliance),
            "read write offline_access openid profile"
        );
        assert_eq!(resource_of("api://app-id/Thing.Read"), Some("api://app-id"));
        assert_eq!(resource_of("read"), None);
    }

    #[test]
    fn explicit_values_win() {
        let mut account = AccountConfig::new("app@contoso.com");
        account.client = ClientKind::WsMan;
        assert_eq!(account.client_id(), CLIENT_ID_WSMAN);
        account.tenant = Some("11111111-2222-3333-4444-555555555555".into());
        account.authority = Some("https://127.0.0.1:4443/".into());
        account.flow = Flow::Secret {
            secret: ClientSecret::new("s"),
        };
        assert_eq!(account.tenant(), "11111111-2222-3333-4444-555555555555");
        assert_eq!(account.authority(), "https://127.0.0.1:4443");
        let audience = Audience::new("https://ps.compliance.protection.outlook.com/");
        assert_eq!(
            account.scope_for(&audience),
            "https://ps.compliance.protection.outlook.com/.default"
        );
    }
}

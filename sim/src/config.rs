//! What the emulator knows at start: tenants, users, clients, host names, lifetimes and knobs.
//!
//! Everything is plain data with a `Default` that matches the seam in sim-interface.md (tenant contoso,
//! users admin@/user@contoso.com and fed@contoso.test, the two Exchange PowerShell public clients, one
//! app client with a certificate and one with a secret). Tests change fields before `Sim::start`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::exchange::ExchangeSettings;

/// Client id of "Microsoft Exchange Online Remote PowerShell" (RPS, V1 scripts).
pub const RPS_CLIENT_ID: &str = "a0c73c16-a7e3-4564-9a95-2bdf47383716";
/// Client id of "Microsoft Exchange REST API Based Powershell" (V2/V3 module).
pub const REST_CLIENT_ID: &str = "fb78d390-0c51-40cd-8e17-fdbfab77341b";
/// App client that authenticates with the certificate in `sim/keys/app-client.pem`.
pub const CERT_APP_CLIENT_ID: &str = "6d1f0c2e-5b7a-4c33-9a1e-0e5a5c0ffe01";
/// App client that authenticates with [`SECRET_APP_SECRET`].
pub const SECRET_APP_CLIENT_ID: &str = "6d1f0c2e-5b7a-4c33-9a1e-0e5a5c0ffe02";
/// The client secret of [`SECRET_APP_CLIENT_ID`] (a test fixture, not a secret).
pub const SECRET_APP_SECRET: &str = "exosim-test-secret~0123456789abcdef";
/// Tenant id of contoso.
pub const CONTOSO_TENANT_ID: &str = "4f6b9a52-1c1e-4d6a-9d3e-2c3b5a7e0c11";
/// PEM of the app client certificate (self-signed, RSA 2048, valid 100 years).
pub const APP_CLIENT_CERT_PEM: &str = include_str!("../keys/app-client.pem");
/// PKCS#8 PEM of the app client private key, for tests that build client assertions.
pub const APP_CLIENT_KEY_PEM: &str = include_str!("../keys/app-client.key");

/// The authority hosts the emulator answers as Entra ID.
pub const AUTHORITY_HOSTS: &[&str] = &[
    "login.microsoftonline.com",
    "login.microsoftonline.us",
    "login.partner.microsoftonline.cn",
    "login.chinacloudapi.cn",
    "login.windows.net",
];

/// Exchange and S&C names added to the certificate (routing decides who answers).
pub const EXCHANGE_CERT_NAMES: &[&str] = &[
    "outlook.office365.com",
    "*.outlook.office365.com",
    "ps.outlook.com",
    "ps.compliance.protection.outlook.com",
    "*.ps.compliance.protection.outlook.com",
];

/// Start-time configuration of the emulator. `Debug` redacts the canary.
#[derive(Clone)]
pub struct SimConfig {
    /// Where to listen; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Lifetime of access tokens (and `expires_in`); seconds in tests.
    pub token_lifetime: Duration,
    /// Lifetime of refresh tokens (90 days like Entra); expiry gives AADSTS700082.
    pub refresh_token_lifetime: Duration,
    /// `expires_in` of a device code (Entra: 900 s).
    pub device_code_lifetime: Duration,
    /// `interval` of a device code (Entra: 5 s; 1 s keeps tests short).
    pub device_code_interval: Duration,
    /// Lifetime of an authorization code.
    pub auth_code_lifetime: Duration,
    /// Unique string embedded in every access and refresh token (SEC-19 log greps).
    pub canary: Option<String>,
    /// Approve every device code at once (for `exoproxy demo`).
    pub auto_approve: bool,
    /// Peer ports whose connections count as "came through a proxy" at the STS.
    pub proxy_source_ports: Vec<u16>,
    /// Peer addresses whose connections count as "came through a proxy" at the STS.
    pub proxy_source_addrs: Vec<IpAddr>,
    /// Host name of the control plane.
    pub control_host: String,
    /// Extra DNS names for the certificate.
    pub extra_cert_names: Vec<String>,
    pub tenants: Vec<Tenant>,
    pub users: Vec<User>,
    pub clients: Vec<Client>,
    /// The user a sign-in picks when nothing else says who.
    pub default_user: String,
    pub exchange: ExchangeSettings,
}

/// One Entra tenant and its verified domains.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: String,
    /// `contoso.onmicrosoft.com`.
    pub initial_domain: String,
    pub domains: Vec<Domain>,
}

/// A verified domain: managed, or federated to an STS host.
#[derive(Debug, Clone)]
pub struct Domain {
    pub name: String,
    /// `Some(sts host)` for a federated domain.
    pub federated_sts: Option<String>,
}

/// A user who can sign in.
#[derive(Debug, Clone)]
pub struct User {
    pub upn: String,
    pub display_name: String,
    pub object_id: String,
    pub tenant_id: String,
}

/// A registered application.
#[derive(Debug, Clone)]
pub struct Client {
    pub id: String,
    pub name: String,
    pub credential: ClientCredential,
    /// App roles granted for app-only tokens, e.g. `Exchange.ManageAsApp`.
    pub app_roles: Vec<String>,
    /// Home tenant of a confidential (single-tenant) app; public clients work in every tenant.
    pub home_tenant: Option<String>,
    /// Object id of the service principal (the `oid`/`sub` of app-only tokens).
    pub object_id: String,
}

/// How a client proves who it is. `Debug` redacts the secret.
#[derive(Clone)]
pub enum ClientCredential {
    /// Public client: no secret.
    Public,
    /// Confidential client with a registered certificate (DER).
    Certificate(Vec<u8>),
    /// Confidential client with a shared secret.
    Secret(String),
}

// === impl SimConfig ===

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            token_lifetime: Duration::from_secs(3600),
            refresh_token_lifetime: Duration::from_secs(90 * 24 * 3600),
            device_code_lifetime: Duration::from_secs(900),
            device_code_interval: Duration::from_secs(1),
            auth_code_lifetime: Duration::from_secs(600),
            canary: None,
            auto_approve: false,
            proxy_source_ports: Vec::new(),
            proxy_source_addrs: Vec::new(),
            control_host: "control.exosim.test".into(),
            extra_cert_names: Vec::new(),
            tenants: vec![Tenant::contoso()],
            users: default_users(),
            clients: default_clients(),
            default_user: "admin@contoso.com".into(),
            exchange: default_exchange_settings(),
        }
    }
}

impl SimConfig {
    /// The tenant named by a path segment: its id or any of its domains (case-insensitive).
    pub fn tenant(&self, id_or_domain: &str) -> Option<&Tenant> {
        let wanted = id_or_domain.to_ascii_lowercase();
        self.tenants.iter().find(|t| {
            t.id == wanted
                || t.initial_domain.eq_ignore_ascii_case(&wanted)
                || t.domains
                    .iter()
                    .any(|d| d.name.eq_ignore_ascii_case(&wanted))
        })
    }

    pub fn tenant_by_id(&self, id: &str) -> Option<&Tenant> {
        self.tenants.iter().find(|t| t.id == id)
    }

    pub fn user(&self, upn: &str) -> Option<&User> {
        self.users.iter().find(|u| u.upn.eq_ignore_ascii_case(upn))
    }

    /// The domain entry for `name`, with its tenant.
    pub fn domain(&self, name: &str) -> Option<(&Tenant, &Domain)> {
        self.tenants.iter().find_map(|t| {
            t.domains
                .iter()
                .find(|d| d.name.eq_ignore_ascii_case(name))
                .map(|d| (t, d))
        })
    }

    /// Every STS host a federated domain points at.
    pub fn sts_hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = self
            .tenants
            .iter()
            .flat_map(|t| t.domains.iter().filter_map(|d| d.federated_sts.clone()))
            .collect();
        hosts.sort();
        hosts.dedup();
        hosts
    }

    /// Every DNS name the certificate must carry.
    pub fn cert_names(&self) -> Vec<String> {
        let mut names: Vec<String> = AUTHORITY_HOSTS.iter().map(|h| h.to_string()).collect();
        names.extend(EXCHANGE_CERT_NAMES.iter().map(|h| h.to_string()));
        names.extend(self.sts_hosts());
        names.push(self.control_host.clone());
        names.push("localhost".into());
        names.extend(self.extra_cert_names.iter().cloned());
        names
    }
}

impl std::fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimConfig")
            .field("listen", &self.listen)
            .field("token_lifetime", &self.token_lifetime)
            .field("refresh_token_lifetime", &self.refresh_token_lifetime)
            .field("device_code_lifetime", &self.device_code_lifetime)
            .field("device_code_interval", &self.device_code_interval)
            .field("auth_code_lifetime", &self.auth_code_lifetime)
            .field("canary", &self.canary.as_ref().map(|_| "[redacted]"))
            .field("auto_approve", &self.auto_approve)
            .field("proxy_source_ports", &self.proxy_source_ports)
            .field("proxy_source_addrs", &self.proxy_source_addrs)
            .field("control_host", &self.control_host)
            .field("extra_cert_names", &self.extra_cert_names)
            .field("tenants", &self.tenants)
            .field("users", &self.users)
            .field("clients", &self.clients)
            .field("default_user", &self.default_user)
            .field("exchange", &self.exchange)
            .finish()
    }
}

// === impl ClientCredential ===

impl std::fmt::Debug for ClientCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientCredential::Public => f.write_str("Public"),
            ClientCredential::Certificate(der) => write!(f, "Certificate({} bytes DER)", der.len()),
            ClientCredential::Secret(_) => f.write_str("Secret([redacted])"),
        }
    }
}

// === impl Tenant ===

impl Tenant {
    /// contoso: contoso.onmicrosoft.com and contoso.com managed, contoso.test federated.
    pub fn contoso() -> Tenant {
        let managed = |name: &str| Domain {
            name: name.into(),
            federated_sts: None,
        };
        Tenant {
            id: CONTOSO_TENANT_ID.into(),
            initial_domain: "contoso.onmicrosoft.com".into(),
            domains: vec![
                managed("contoso.onmicrosoft.com"),
                managed("contoso.com"),
                Domain {
                    name: "contoso.test".into(),
                    federated_sts: Some("sts.contoso.test".into()),
                },
            ],
        }
    }
}

// === impl Client ===

impl Client {
    pub fn is_public(&self) -> bool {
        matches!(self.credential, ClientCredential::Public)
    }
}

fn default_users() -> Vec<User> {
    let user = |upn: &str, name: &str, oid: &str| User {
        upn: upn.into(),
        display_name: name.into(),
        object_id: oid.into(),
        tenant_id: CONTOSO_TENANT_ID.into(),
    };
    vec![
        user(
            "admin@contoso.com",
            "Contoso Admin",
            "0a1b2c3d-0000-4000-8000-000000000001",
        ),
        user(
            "user@contoso.com",
            "Contoso User",
            "0a1b2c3d-0000-4000-8000-000000000002",
        ),
        user(
            "fed@contoso.test",
            "Federated User",
            "0a1b2c3d-0000-4000-8000-000000000003",
        ),
    ]
}

fn default_clients() -> Vec<Client> {
    let public = |id: &str, name: &str, oid: &str| Client {
        id: id.into(),
        name: name.into(),
        credential: ClientCredential::Public,
        app_roles: Vec::new(),
        home_tenant: None,
        object_id: oid.into(),
    };
    let app = |id: &str, name: &str, credential: ClientCredential, oid: &str| Client {
        id: id.into(),
        name: name.into(),
        credential,
        app_roles: vec!["Exchange.ManageAsApp".into()],
        home_tenant: Some(CONTOSO_TENANT_ID.into()),
        object_id: oid.into(),
    };
    vec![
        public(
            RPS_CLIENT_ID,
            "Microsoft Exchange Online Remote PowerShell",
            "5e0c0001-0000-4000-8000-00000000a0c7",
        ),
        public(
            REST_CLIENT_ID,
            "Microsoft Exchange REST API Based Powershell",
            "5e0c0002-0000-4000-8000-00000000fb78",
        ),
        app(
            CERT_APP_CLIENT_ID,
            "exosim app (certificate)",
            ClientCredential::Certificate(app_client_cert_der()),
            "5e0c0003-0000-4000-8000-000000000ce7",
        ),
        app(
            SECRET_APP_CLIENT_ID,
            "exosim app (secret)",
            ClientCredential::Secret(SECRET_APP_SECRET.into()),
            "5e0c0004-0000-4000-8000-0000000005ec",
        ),
    ]
}

/// DER of [`APP_CLIENT_CERT_PEM`].
pub fn app_client_cert_der() -> Vec<u8> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(APP_CLIENT_CERT_PEM.as_bytes())
        .map(|c| c.to_vec())
        .unwrap_or_default()
}

fn default_exchange_settings() -> ExchangeSettings {
    ExchangeSettings {
        operation_timeout_cap: Duration::from_secs(180),
        max_shells_per_user: 5,
        cae: false,
        throttle: None,
        mailboxes: 25,
        page_size: 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_canary_and_client_secrets() {
        let config = SimConfig {
            canary: Some("CANARY-debug-1".into()),
            ..SimConfig::default()
        };
        let printed = format!("{config:?}");
        assert!(!printed.contains("CANARY-debug-1"));
        assert!(!printed.contains(SECRET_APP_SECRET));
        assert!(printed.contains("[redacted]"));
    }

    #[test]
    fn tenants_resolve_by_id_or_any_domain() {
        let config = SimConfig::default();
        for name in [
            CONTOSO_TENANT_ID,
            "contoso.onmicrosoft.com",
            "CONTOSO.COM",
            "contoso.test",
        ] {
            assert_eq!(
                config.tenant(name).map(|t| t.id.as_str()),
                Some(CONTOSO_TENANT_ID),
                "{name}"
            );
        }
        assert!(config.tenant("fabrikam.test").is_none());
        assert_eq!(config.sts_hosts(), vec!["sts.contoso.test".to_string()]);
        assert!(
            config
                .cert_names()
                .contains(&"*.outlook.office365.com".to_string())
        );
    }
}

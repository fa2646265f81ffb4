//! Stage one: a serde mirror of the TOML file, and the only schema: every table denies unknown keys,
//! every field is optional (built-in defaults fill the gaps in `validate`), and nothing is
//! interpreted here. `config::parse` collects every key that does not fit (see `keys`).
//!
//! The documented example is `config/exoproxy.toml`; a test parses it so it cannot rot.

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Folder for the CA, token cache and other state (`--state-dir`, `EXOPROXY_HOME`).
    pub state_dir: Option<String>,
    #[serde(default)]
    pub listen: ListenSection,
    #[serde(default)]
    pub upstream: UpstreamSection,
    #[serde(default)]
    pub routing: RoutingSection,
    #[serde(default)]
    pub timeouts: TimeoutsSection,
    #[serde(default)]
    pub log: LogSection,
    /// `HOST:PORT:ADDR:PORT` mappings (curl's `--connect-to`).
    #[serde(default)]
    pub connect_to: Vec<String>,
    #[serde(default)]
    pub intercept: InterceptSection,
    #[serde(default)]
    pub tls: TlsSection,
    /// `[[account]]`: the admins (or apps) exoproxy obtains tokens for.
    #[serde(default)]
    pub account: Vec<AccountEntry>,
    /// Keys left out because they are unknown or of the wrong type (filled by `config::parse`).
    #[serde(skip)]
    pub problems: Vec<super::ConfigError>,
}

/// Which hosts are intercepted and which account a request without one gets.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterceptSection {
    /// Terminate TLS to the Exchange hosts and inject tokens (default true).
    pub enabled: Option<bool>,
    /// Built-in cloud profiles to intercept: `global`, `usgov-gcchigh`, `usgov-dod`, `china`
    /// (default `["global"]`).
    pub clouds: Option<Vec<String>>,
    /// The account for requests that name none (default: the only `[[account]]`, if exactly one).
    pub default_account: Option<String>,
    /// Extra profiles, e.g. Microsoft Graph.
    #[serde(default)]
    pub profile: Vec<ProfileEntry>,
}

/// A configured interception profile: hosts and the token audience each gets.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileEntry {
    pub name: Option<String>,
    /// Entra ID (or other OIDC) authority base URL; default the global cloud's.
    pub authority: Option<String>,
    /// Host pattern (exact or `*.suffix`) → audience, e.g. `"graph.microsoft.com" = "https://graph.microsoft.com"`.
    pub hosts: Option<std::collections::BTreeMap<String, String>>,
}

/// TLS towards the real servers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM file of extra roots trusted besides the system's (`--upstream-ca`).
    pub extra_roots: Option<String>,
    /// Accept `http://` authorities (`[[account]]` and `[[intercept.profile]]`): for tests against a
    /// local identity provider emulator only; tokens would otherwise travel in clear text.
    pub allow_http_authority: Option<bool>,
}

/// One account.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountEntry {
    /// The admin's UPN, or `OAuthUser@<tenant>` for app-only flows.
    pub upn: Option<String>,
    /// Tenant id or domain (default: the UPN's domain).
    pub tenant: Option<String>,
    /// `global` (default), `usgov`, `china`.
    pub cloud: Option<String>,
    /// `device-code` (default), `browser`, `certificate`, `secret`.
    pub flow: Option<String>,
    /// `rest` (default, client id fb78d390-…) or `wsman` (a0c73c16-…).
    pub client: Option<String>,
    /// Application (client) id; required for `certificate` and `secret`.
    pub client_id: Option<String>,
    /// Scopes instead of `<audience>/.default`: resource-qualified ones apply to the audience they name,
    /// bare ones (`read write`) to every audience; other audiences keep `<audience>/.default`.
    pub scope: Option<String>,
    /// Authority base URL instead of the cloud's (any OIDC provider: its issuer).
    pub authority: Option<String>,
    /// The OpenID configuration URL, for providers whose layout discovery cannot derive.
    pub discovery_url: Option<String>,
    /// `certificate` flow: PEM file with the certificate, or a PFX/PKCS#12 file (then without `key`).
    pub certificate: Option<String>,
    /// `certificate` flow: PEM file with the PKCS#8 private key.
    pub key: Option<String>,
    /// `certificate` flow with a PFX file: the environment variable holding its password.
    pub pfx_password_env: Option<String>,
    /// `secret` flow: the environment variable holding the client secret.
    pub secret_env: Option<String>,
    /// Seconds an audience keeps being renewed in the background after its last use (default 3600).
    pub idle_renewal_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenSection {
    /// Socket addresses to listen on; default `127.0.0.1:8765` and `[::1]:8765`.
    pub addresses: Option<Vec<String>>,
    /// Must be true to listen on a non-loopback address (SEC-5).
    pub allow_remote: Option<bool>,
    /// Cap on concurrent client connections (1,024).
    pub max_connections: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    /// `direct` | `static` | `env` | `pac` | `winhttp` | `ie` | `auto` (the proxy's own environment is
    /// read only when `env` is chosen).
    pub source: Option<String>,
    /// PAC script: a file path, `file://…` or an `http(s)://` URL (fetched DIRECT). Implies
    /// `source = "pac"` when no source is given.
    pub pac: Option<String>,
    /// `fail` (default: requests are refused while no script is usable) or `direct`.
    pub pac_failure: Option<String>,
    /// Honour WPAD auto-detection flags in system settings (default false: WPAD can be hijacked).
    pub wpad: Option<bool>,
    /// Upstream proxies in order, e.g. `http://proxy.corp:8080` or `http://user@proxy.corp:8080`.
    pub proxies: Option<Vec<String>>,
    /// Try DIRECT after every proxy failed.
    pub fallback_direct: Option<bool>,
    /// WinHTTP/IE-style bypass list: these targets go DIRECT.
    pub bypass: Option<Vec<String>>,
    /// Credentials for upstream proxies; also the allow-list of proxies that may receive them.
    #[serde(default)]
    pub credentials: Vec<CredentialEntry>,
}

/// One proxy's credentials. Exactly one of `password_env`, `password_file`, `password` is set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialEntry {
    /// `host:port` of the proxy these credentials are for.
    pub proxy: Option<String>,
    pub username: Option<String>,
    /// Name of an environment variable that holds the password (preferred).
    pub password_env: Option<String>,
    /// Path of a file whose first line is the password.
    pub password_file: Option<String>,
    /// The password itself (discouraged: config files get shared).
    pub password: Option<String>,
    /// NTLM domain (default: the `DOMAIN` of a `DOMAIN\\user` user name).
    pub domain: Option<String>,
    /// Name of an environment variable holding the NT hash (32 hex digits) instead of a password:
    /// NTLM only, Basic is then never used.
    pub nt_hash_env: Option<String>,
    /// Schemes these credentials may be used with (`negotiate`, `ntlm`, `basic`); default: any.
    /// `["negotiate"]` without `username` signs in as the current Windows user (SSPI).
    pub schemes: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingSection {
    /// Hosts always reached DIRECT and never intercepted (STS/ADFS).
    pub direct_hosts: Option<Vec<String>>,
    /// Hosts or CIDRs refused with 403.
    pub block: Option<Vec<String>>,
    /// Ports a CONNECT may target (default `[443]`).
    pub connect_ports: Option<Vec<i64>>,
    /// Ports a plain `http://` request may target (default `route::DEFAULT_HTTP_PORTS`).
    pub http_ports: Option<Vec<i64>>,
    /// Hosts or CIDRs that may resolve to loopback or link-local addresses.
    pub allow_local: Option<Vec<String>>,
    /// Ask Entra ID for the federation STS of each account domain and send it DIRECT (default true).
    pub discover_sts: Option<bool>,
    /// UPNs or domains whose federation STS is discovered (until accounts are configured).
    pub sts_domains: Option<Vec<String>>,
}

/// Timeouts in seconds; defaults in docs/TESTING.md#limits.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsSection {
    pub connect_secs: Option<f64>,
    pub connect_reply_secs: Option<f64>,
    pub failover_total_secs: Option<f64>,
    pub bad_proxy_secs: Option<f64>,
    /// Stream-idle limit of intercepted EWS requests, whose streaming notifications wait up to
    /// 30 min between events (default 2100; other requests: 300).
    pub streaming_idle_secs: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// A tracing filter such as `info` or `exoproxy=debug`.
    pub level: Option<String>,
    /// `true` (logs in `<state_dir>/logs/`), `false` (never), or a file path; unset: a file only
    /// when there is no console (see `app::log`).
    pub file: Option<LogFileEntry>,
}

/// `[log] file`: a switch or a path.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum LogFileEntry {
    Switch(bool),
    Path(String),
}

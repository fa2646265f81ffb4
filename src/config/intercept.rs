//! The `[intercept]`, `[tls]` and `[[account]]` parts of the configuration: which cloud profiles are
//! intercepted (and so which domains the local CA is constrained to), the accounts tokens are
//! obtained for, and the extra roots trusted towards the real servers.
//!
//! Contract: interception is on by default for the `global` profile; an unknown cloud, a profile
//! without hosts, an account without a UPN, an authority that is not an `https://` URL (`http://`
//! only with `tls.allow_http_authority`), a file that does not exist (extra roots, certificate, key,
//! PFX), a PFX that needs a password when no `pfx_password_env` names one, or an app-only flow
//! without its client id and key material are errors with their key path; every key of an account
//! is checked even when its UPN is wrong. A secret named by `secret_env`/`pfx_password_env` is read
//! here, once, and kept in a redacting newtype; when the variable is not set that is a warning
//! ([`super::MissingSecret`]) and the account keeps an empty secret that the commands using it never
//! reach (`Config::require_secrets`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::file::{AccountEntry, FileConfig, ProfileEntry};
use super::validate::{Errors, check_authority};
use crate::inject::{Profile, profiles};
use crate::route::InterceptRule;
use crate::token::oauth::ClientCertificate;
use crate::token::secret::ClientSecret;
use crate::token::{AccountConfig, ClientKind, Cloud, Flow};

/// Built-in profiles intercepted when `intercept.clouds` is not set.
pub const DEFAULT_CLOUDS: [&str; 1] = ["global"];

/// The typed interception configuration.
#[derive(Debug, Clone, Default)]
pub struct InterceptConfig {
    /// False: intercepted hosts are tunnelled blind like any other (no CA, no tokens).
    pub enabled: bool,
    /// Profiles whose hosts are intercepted, built-in ones first.
    pub profiles: Vec<Profile>,
    /// Account for requests that name none.
    pub default_account: Option<String>,
    /// Extra roots (PEM) trusted for upstream TLS besides the system's.
    pub extra_roots: Option<PathBuf>,
    /// Configured accounts (more appear when users sign in with `exoproxy login`).
    pub accounts: Vec<AccountConfig>,
}

// === impl InterceptConfig ===

impl InterceptConfig {
    /// The route's interception rules: one per profile, its host patterns in order.
    pub fn rules(&self) -> Vec<InterceptRule> {
        if !self.enabled {
            return Vec::new();
        }
        self.profiles
            .iter()
            .map(|p| InterceptRule {
                profile: p.name.clone(),
                hosts: p.hosts.iter().map(|(h, _)| h.clone()).collect(),
            })
            .collect()
    }

    /// The DNS subtrees the local CA is constrained to: every intercepted pattern without `*.`.
    pub fn ca_domains(&self) -> Vec<String> {
        let set: BTreeSet<String> = self
            .profiles
            .iter()
            .flat_map(|p| p.hosts.iter())
            .map(|(h, _)| ca_domain(h))
            .collect();
        set.into_iter().collect()
    }
}

/// The DNS subtree of the local CA that an intercepted host pattern needs.
pub fn ca_domain(pattern: &str) -> String {
    pattern.trim_start_matches("*.").to_ascii_lowercase()
}

/// Builds the interception config; `upstream_ca` is the `--upstream-ca` override.
pub(super) fn intercept_config(
    file: &FileConfig,
    upstream_ca: Option<&PathBuf>,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Errors,
) -> InterceptConfig {
    let section = &file.intercept;
    let allow_http = file.tls.allow_http_authority.unwrap_or(false);
    let mut profiles = builtin_profiles(section.clouds.as_deref(), errors);
    for (i, entry) in section.profile.iter().enumerate() {
        let path = format!("intercept.profile[{i}]");
        if let Some(p) = custom_profile(entry, &path, allow_http, errors) {
            profiles.push(p);
        }
    }
    let accounts: Vec<AccountConfig> = file
        .account
        .iter()
        .enumerate()
        .filter_map(|(i, a)| account(a, &format!("account[{i}]"), allow_http, env, errors))
        .collect();
    let extra_roots = match (upstream_ca, &file.tls.extra_roots) {
        (Some(p), _) => Some((p.clone(), "--upstream-ca")),
        (None, Some(p)) => Some((PathBuf::from(p), "tls.extra_roots")),
        (None, None) => None,
    };
    if let Some((path, key)) = &extra_roots {
        errors.file_exists(key, path);
    }
    let default_account = section
        .default_account
        .clone()
        .or_else(|| match accounts.as_slice() {
            [only] => Some(only.upn.clone()),
            _ => None,
        });
    InterceptConfig {
        enabled: section.enabled.unwrap_or(true),
        profiles,
        default_account,
        extra_roots: extra_roots.map(|(p, _)| p),
        accounts,
    }
}

fn builtin_profiles(clouds: Option<&[String]>, errors: &mut Errors) -> Vec<Profile> {
    let all = profiles();
    let wanted: Vec<String> = match clouds {
        Some(list) => list.to_vec(),
        None => DEFAULT_CLOUDS.iter().map(|c| c.to_string()).collect(),
    };
    let mut chosen = Vec::new();
    for name in wanted {
        match all.iter().find(|p| p.name.eq_ignore_ascii_case(&name)) {
            Some(p) => chosen.push(p.clone()),
            None => {
                let known: Vec<&str> = all.iter().map(|p| p.name.as_str()).collect();
                errors.push(
                    "intercept.clouds",
                    format!("unknown cloud {name:?}; known: {}", known.join(", ")),
                );
            }
        }
    }
    chosen
}

fn custom_profile(
    entry: &ProfileEntry,
    path: &str,
    allow_http: bool,
    errors: &mut Errors,
) -> Option<Profile> {
    if let Some(authority) = &entry.authority {
        check_authority(authority, &format!("{path}.authority"), allow_http, errors);
    }
    let Some(name) = entry.name.clone().filter(|n| !n.is_empty()) else {
        errors.push(&format!("{path}.name"), "a profile needs a name");
        return None;
    };
    let hosts: Vec<(String, String)> = entry
        .hosts
        .iter()
        .flatten()
        .map(|(h, a)| (h.trim_end_matches('.').to_ascii_lowercase(), a.clone()))
        .collect();
    if hosts.is_empty() {
        errors.push(
            &format!("{path}.hosts"),
            "list the intercepted hosts and their audiences, e.g. \"graph.microsoft.com\" = \"https://graph.microsoft.com\"",
        );
        return None;
    }
    for (host, audience) in &hosts {
        let scheme = url::Url::parse(audience).map(|u| u.scheme().to_string());
        if !matches!(scheme.as_deref(), Ok("https" | "api")) {
            errors.push(
                &format!("{path}.hosts"),
                format!("audience {audience:?} of {host:?} is not an https:// or api:// URI"),
            );
        }
    }
    Some(Profile {
        name,
        authority: entry
            .authority
            .clone()
            .unwrap_or_else(|| Cloud::Global.authority().to_string()),
        hosts,
    })
}

fn account(
    entry: &AccountEntry,
    path: &str,
    allow_http: bool,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Errors,
) -> Option<AccountConfig> {
    let upn = entry.upn.clone().filter(|u| u.contains('@'));
    if upn.is_none() {
        errors.push(
            &format!("{path}.upn"),
            "each account needs a upn such as admin@contoso.com (OAuthUser@tenant for app-only)",
        );
    }
    // The other keys are checked all the same, so one run reports every error of the account.
    let mut config = AccountConfig::new(upn.clone().unwrap_or_default());
    if let Some(authority) = &entry.authority {
        check_authority(authority, &format!("{path}.authority"), allow_http, errors);
    }
    config.tenant = entry.tenant.clone();
    config.client_id = entry.client_id.clone();
    config.scope = entry.scope.clone();
    config.authority = entry.authority.clone();
    config.discovery_url = entry.discovery_url.clone();
    if let Some(url) = &config.discovery_url
        && !is_https_url(url)
    {
        errors.push(
            &format!("{path}.discovery_url"),
            format!("{url:?} is not an https:// URL"),
        );
    }
    match entry.idle_renewal_secs {
        None => {}
        Some(secs @ 1..=604_800) => config.idle_renewal = std::time::Duration::from_secs(secs),
        Some(_) => errors.push(
            &format!("{path}.idle_renewal_secs"),
            "must be between 1 and 604800 (a week)",
        ),
    }
    config.cloud = match entry.cloud.as_deref() {
        None | Some("global") => Cloud::Global,
        Some("usgov") => Cloud::UsGov,
        Some("china") => Cloud::China,
        Some(other) => {
            errors.push(
                &format!("{path}.cloud"),
                format!("{other:?} is not global, usgov or china"),
            );
            Cloud::Global
        }
    };
    config.client = match entry.client.as_deref() {
        None | Some("rest") => ClientKind::Rest,
        Some("wsman") => ClientKind::WsMan,
        Some(other) => {
            errors.push(
                &format!("{path}.client"),
                format!("{other:?} is not rest or wsman"),
            );
            ClientKind::Rest
        }
    };
    let app_only = matches!(entry.flow.as_deref(), Some("certificate" | "secret"));
    if app_only && config.client_id.is_none() {
        errors.push(
            &format!("{path}.client_id"),
            "app-only flows need the application (client) id of your app registration",
        );
    }
    config.flow = flow(entry, path, upn.as_deref(), env, errors)?;
    upn.map(|_| config)
}

/// An absolute `https://` URL with a host.
fn is_https_url(url: &str) -> bool {
    url.parse::<http::Uri>()
        .is_ok_and(|uri| uri.scheme_str() == Some("https") && uri.host().is_some())
}

/// The account's flow; `upn` is `None` when the UPN is wrong (the flow is checked all the same).
fn flow(
    entry: &AccountEntry,
    path: &str,
    upn: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Errors,
) -> Option<Flow> {
    match entry.flow.as_deref() {
        None | Some("device-code") => Some(Flow::DeviceCode),
        Some("browser") => Some(Flow::Browser),
        Some("certificate") => certificate_flow(entry, path, upn, env, errors),
        Some("secret") => {
            let Some(var) = &entry.secret_env else {
                errors.push(
                    &format!("{path}.secret_env"),
                    "the secret flow needs secret_env, the environment variable holding the secret",
                );
                return None;
            };
            let secret = errors.secret_env(env, &format!("{path}.secret_env"), var, upn);
            Some(Flow::Secret {
                secret: ClientSecret::new(secret.unwrap_or_default()),
            })
        }
        Some(other) => {
            errors.push(
                &format!("{path}.flow"),
                format!("{other:?} is not device-code, browser, certificate or secret"),
            );
            None
        }
    }
}

/// `certificate` with `key` (PEM pair) or alone (a PFX): the files must exist, and a PFX that needs
/// a password must have `pfx_password_env`.
fn certificate_flow(
    entry: &AccountEntry,
    path: &str,
    upn: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Errors,
) -> Option<Flow> {
    let cert_key = format!("{path}.certificate");
    match (&entry.certificate, &entry.key) {
        (Some(cert), Some(key)) => {
            let cert_ok = errors.file_exists(&cert_key, Path::new(cert));
            let key_ok = errors.file_exists(&format!("{path}.key"), Path::new(key));
            (cert_ok && key_ok).then(|| Flow::Certificate {
                cert_pem: PathBuf::from(cert),
                key_pem: PathBuf::from(key),
            })
        }
        (Some(pfx), None) => {
            let exists = errors.file_exists(&cert_key, Path::new(pfx));
            let password = match &entry.pfx_password_env {
                Some(var) => {
                    let key = format!("{path}.pfx_password_env");
                    errors.secret_env(env, &key, var, upn).unwrap_or_default()
                }
                None => {
                    if exists && let Err(e) = open_pfx(Path::new(pfx), "") {
                        errors.push(
                            &cert_key,
                            format!(
                                "{pfx}: cannot open it without a password ({e}); if it has one, set \
                                 pfx_password_env to the environment variable that holds it (a PEM \
                                 certificate needs `key`)"
                            ),
                        );
                    }
                    String::new()
                }
            };
            Some(Flow::CertificatePfx {
                pfx: PathBuf::from(pfx),
                password: ClientSecret::new(password),
            })
        }
        _ => {
            errors.push(
                &cert_key,
                "the certificate flow needs `certificate` (a PFX file, or a PEM file with `key`)",
            );
            None
        }
    }
}

/// Opens a PFX file as the certificate flow will.
fn open_pfx(pfx: &Path, password: &str) -> Result<(), String> {
    let bytes = zeroize::Zeroizing::new(std::fs::read(pfx).map_err(|e| e.to_string())?);
    ClientCertificate::from_pkcs12(&bytes, password)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

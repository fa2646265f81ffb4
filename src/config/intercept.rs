//! The `[intercept]`, `[tls]` and `[[account]]` parts of the configuration: which cloud profiles are
//! intercepted (and so which domains the local CA is constrained to), the accounts tokens are
//! obtained for, and the extra roots trusted towards the real servers.
//!
//! Contract: interception is on by default for the `global` profile; an unknown cloud, a profile
//! without hosts, an account without a UPN, or an app-only flow without its client id and key
//! material are errors with their key path. A secret named by `secret_env` is read here, once, and
//! kept in a redacting newtype.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::file::{AccountEntry, FileConfig, ProfileEntry};
use super::validate::Errors;
use crate::inject::{Profile, profiles};
use crate::route::InterceptRule;
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
            .map(|(h, _)| h.trim_start_matches("*.").to_ascii_lowercase())
            .collect();
        set.into_iter().collect()
    }
}

/// Builds the interception config; `upstream_ca` is the `--upstream-ca` override.
pub(super) fn intercept_config(
    file: &FileConfig,
    upstream_ca: Option<&PathBuf>,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Errors,
) -> InterceptConfig {
    let section = &file.intercept;
    let mut profiles = builtin_profiles(section.clouds.as_deref(), errors);
    for (i, entry) in section.profile.iter().enumerate() {
        if let Some(p) = custom_profile(entry, &format!("intercept.profile[{i}]"), errors) {
            profiles.push(p);
        }
    }
    let accounts: Vec<AccountConfig> = file
        .account
        .iter()
        .enumerate()
        .filter_map(|(i, a)| account(a, &format!("account[{i}]"), env, errors))
        .collect();
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
        extra_roots: upstream_ca
            .cloned()
            .or_else(|| file.tls.extra_roots.as_ref().map(PathBuf::from)),
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

fn custom_profile(entry: &ProfileEntry, path: &str, errors: &mut Errors) -> Option<Profile> {
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
        if !audience.starts_with("https://") && !audience.starts_with("api://") {
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
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Errors,
) -> Option<AccountConfig> {
    let Some(upn) = entry.upn.clone().filter(|u| u.contains('@')) else {
        errors.push(
            &format!("{path}.upn"),
            "each account needs a upn such as admin@contoso.com (OAuthUser@tenant for app-only)",
        );
        return None;
    };
    let mut config = AccountConfig::new(upn);
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
    config.flow = flow(entry, path, env, errors)?;
    Some(config)
}

/// An absolute `https://` URL with a host.
fn is_https_url(url: &str) -> bool {
    url.parse::<http::Uri>()
        .is_ok_and(|uri| uri.scheme_str() == Some("https") && uri.host().is_some())
}

fn flow(
    entry: &AccountEntry,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Errors,
) -> Option<Flow> {
    match entry.flow.as_deref() {
        None | Some("device-code") => Some(Flow::DeviceCode),
        Some("browser") => Some(Flow::Browser),
        Some("certificate") => match (&entry.certificate, &entry.key) {
            (Some(cert), Some(key)) => Some(Flow::Certificate {
                cert_pem: PathBuf::from(cert),
                key_pem: PathBuf::from(key),
            }),
            (Some(pfx), None) => {
                let password = match &entry.pfx_password_env {
                    None => String::new(),
                    Some(var) => env(var).unwrap_or_else(|| {
                        errors.push(
                            &format!("{path}.pfx_password_env"),
                            format!("environment variable {var} (the PFX password) is not set"),
                        );
                        String::new()
                    }),
                };
                Some(Flow::CertificatePfx {
                    pfx: PathBuf::from(pfx),
                    password: ClientSecret::new(password),
                })
            }
            _ => {
                errors.push(
                    &format!("{path}.certificate"),
                    "the certificate flow needs `certificate` (a PFX file, or a PEM file with `key`)",
                );
                None
            }
        },
        Some("secret") => {
            let Some(var) = &entry.secret_env else {
                errors.push(
                    &format!("{path}.secret_env"),
                    "the secret flow needs secret_env, the environment variable holding the secret",
                );
                return None;
            };
            match env(var).filter(|v| !v.is_empty()) {
                Some(secret) => Some(Flow::Secret {
                    secret: ClientSecret::new(secret),
                }),
                None => {
                    errors.push(
                        &format!("{path}.secret_env"),
                        format!("environment variable {var} is not set"),
                    );
                    None
                }
            }
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

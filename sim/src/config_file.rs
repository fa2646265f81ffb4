//! A small TOML file that adds to the built-in directory (users, app clients, domains) for the binary
//! (`exosim --config FILE`). Unknown keys are errors, so a typo cannot silently do nothing.
//!
//! ```toml
//! default_user = "ops@contoso.com"
//! [[users]]
//! upn = "ops@contoso.com"
//! display_name = "Ops"
//! [[clients]]
//! id = "0b7c2d9e-0000-4000-8000-000000000abc"
//! name = "my automation app"
//! secret = "s3cret"                  # or: certificate = "app.pem" (PEM file, relative to the config file)
//! roles = ["Exchange.ManageAsApp"]
//! [[domains]]
//! name = "fabrikam.test"
//! federated_sts = "sts.fabrikam.test"  # omit for a managed domain
//! ```
//! Everything joins the first tenant (contoso by default).

use std::path::Path;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::Deserialize;

use crate::Error;
use crate::config::{Client, ClientCredential, Domain, SimConfig, User};
use crate::ids::guid;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    default_user: Option<String>,
    #[serde(default)]
    users: Vec<FileUser>,
    #[serde(default)]
    clients: Vec<FileClient>,
    #[serde(default)]
    domains: Vec<FileDomain>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUser {
    upn: String,
    display_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileClient {
    id: String,
    name: Option<String>,
    secret: Option<String>,
    certificate: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDomain {
    name: String,
    federated_sts: Option<String>,
}

/// Read `path` and add what it declares to `config`.
pub fn apply_file(config: &mut SimConfig, path: &Path) -> Result<(), Error> {
    let text = std::fs::read_to_string(path)?;
    apply(config, &text, path.parent().unwrap_or(Path::new(".")))
}

/// Add the declarations in `text` to `config`; relative certificate paths resolve against `base`.
pub fn apply(config: &mut SimConfig, text: &str, base: &Path) -> Result<(), Error> {
    let file: FileConfig = toml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
    let tenant_id = config
        .tenants
        .first()
        .map(|t| t.id.clone())
        .ok_or_else(|| Error::Config("no tenant to add to".into()))?;
    for user in file.users {
        config.users.push(User {
            display_name: user.display_name.unwrap_or_else(|| user.upn.clone()),
            upn: user.upn,
            object_id: guid(),
            tenant_id: tenant_id.clone(),
        });
    }
    for client in file.clients {
        let client = client_from(client, &tenant_id, base)?;
        config.clients.push(client);
    }
    if let Some(tenant) = config.tenants.first_mut() {
        tenant
            .domains
            .extend(file.domains.into_iter().map(|d| Domain {
                name: d.name,
                federated_sts: d.federated_sts,
            }));
    }
    if let Some(user) = file.default_user {
        if config.user(&user).is_none() {
            return Err(Error::Config(format!(
                "default_user {user} is not a known user"
            )));
        }
        config.default_user = user;
    }
    Ok(())
}

fn client_from(c: FileClient, tenant_id: &str, base: &Path) -> Result<Client, Error> {
    let credential = match (c.secret, c.certificate) {
        (Some(secret), None) => ClientCredential::Secret(secret),
        (None, Some(path)) => {
            let pem = std::fs::read(base.join(&path))?;
            let cert = CertificateDer::from_pem_slice(&pem)
                .map_err(|e| Error::Config(format!("{path}: {e}")))?;
            ClientCredential::Certificate(cert.to_vec())
        }
        (None, None) => ClientCredential::Public,
        (Some(_), Some(_)) => {
            return Err(Error::Config(format!(
                "client {}: secret or certificate, not both",
                c.id
            )));
        }
    };
    let confidential = !matches!(credential, ClientCredential::Public);
    Ok(Client {
        name: c.name.unwrap_or_else(|| c.id.clone()),
        id: c.id.to_ascii_lowercase(),
        credential,
        app_roles: c.roles,
        home_tenant: confidential.then(|| tenant_id.to_string()),
        object_id: guid(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_adds_users_clients_and_domains() {
        let mut config = SimConfig::default();
        let text = r#"
default_user = "ops@contoso.com"
[[users]]
upn = "ops@contoso.com"
[[clients]]
id = "0B7C2D9E-0000-4000-8000-000000000ABC"
secret = "s3cret"
roles = ["Exchange.ManageAsApp"]
[[domains]]
name = "fabrikam.test"
federated_sts = "sts.fabrikam.test"
"#;
        apply(&mut config, text, Path::new(".")).unwrap();
        assert_eq!(config.default_user, "ops@contoso.com");
        assert!(
            config
                .clients
                .iter()
                .any(|c| c.id == "0b7c2d9e-0000-4000-8000-000000000abc" && !c.is_public())
        );
        assert!(
            config
                .sts_hosts()
                .contains(&"sts.fabrikam.test".to_string())
        );
    }

    #[test]
    fn unknown_keys_and_unknown_default_user_are_errors() {
        let mut config = SimConfig::default();
        assert!(apply(&mut config, "colour = \"blue\"", Path::new(".")).is_err());
        assert!(
            apply(
                &mut config,
                "default_user = \"ghost@contoso.com\"",
                Path::new(".")
            )
            .is_err()
        );
    }
}

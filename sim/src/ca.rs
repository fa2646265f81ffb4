//! The emulator's own certificate authority, generated at start (ECDSA P-256 via rcgen + ring), and one
//! server leaf that carries every emulated host name (wildcards included). Clients trust the CA PEM
//! ([`crate::Sim::ca_pem`]); nothing is written to disk unless the binary is asked to.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::Error;

/// The CA and the TLS server configurations.
#[derive(Debug)]
pub(crate) struct Authority {
    pub(crate) ca_pem: String,
    /// The leaf signed by the CA.
    pub(crate) server_config: Arc<ServerConfig>,
    /// A self-signed leaf with the same names, for the "untrusted certificate" fault.
    pub(crate) untrusted_config: Arc<ServerConfig>,
}

/// Generate the CA and a leaf for `names`, and build the TLS server configuration.
pub(crate) fn generate(names: &[String]) -> Result<Authority, Error> {
    let ca_key = KeyPair::generate().map_err(cert_err)?;
    let ca_params = ca_params()?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(cert_err)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate().map_err(cert_err)?;
    let leaf = leaf_params(names)?
        .signed_by(&leaf_key, &issuer)
        .map_err(cert_err)?;

    let chain = vec![
        leaf.der().clone(),
        CertificateDer::from(ca_cert.der().to_vec()),
    ];
    let server_config = server_config_for(chain, &leaf_key)?;

    let rogue_key = KeyPair::generate().map_err(cert_err)?;
    let rogue = leaf_params(names)?
        .self_signed(&rogue_key)
        .map_err(cert_err)?;
    let untrusted_config = server_config_for(vec![rogue.der().clone()], &rogue_key)?;
    Ok(Authority {
        ca_pem: ca_cert.pem(),
        server_config,
        untrusted_config,
    })
}

/// rustls with ring, TLS 1.2 and 1.3, HTTP/1.1 only.
fn server_config_for(
    chain: Vec<CertificateDer<'static>>,
    key: &KeyPair,
) -> Result<Arc<ServerConfig>, Error> {
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| Error::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn ca_params() -> Result<CertificateParams, Error> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "exosim test CA");
    dn.push(DnType::OrganizationName, "exosim");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

fn leaf_params(names: &[String]) -> Result<CertificateParams, Error> {
    let mut params = CertificateParams::new(names.to_vec()).map_err(cert_err)?;
    params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
    params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::IpAddr::from(
            std::net::Ipv6Addr::LOCALHOST,
        )));
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        names.first().cloned().unwrap_or_else(|| "exosim".into()),
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    Ok(params)
}

fn cert_err(e: rcgen::Error) -> Error {
    Error::Cert(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_pem_is_a_certificate() {
        let authority = generate(&[
            "login.microsoftonline.com".into(),
            "*.outlook.office365.com".into(),
        ])
        .unwrap();
        assert!(authority.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    }
}

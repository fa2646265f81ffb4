//! The proxy's one outbound TLS client configuration: how exoproxy verifies every server it talks to
//! itself (the upstream side of an intercepted tunnel, the token and STS calls of
//! [`crate::client`], the PAC download).
//!
//! Contract:
//! - The operating system's root store is read at most once per process ([`system_roots`]); a config
//!   is built from those roots plus optional extra roots (`tls.extra_roots`, `--upstream-ca`, a test
//!   CA). Without extra roots every caller gets the same shared `Arc` ([`system_client_config`]).
//! - TLS 1.2 and 1.3 only, ALPN `http/1.1` (the only protocol spoken outbound), certificates always
//!   verified: there is deliberately no way to disable verification (docs/ARCHITECTURE.md, security
//!   model).
//! - [`ring_provider`] is the crypto provider for every rustls config the crate builds, server side
//!   included; it is built once because interception makes a `ServerConfig` per connection.
//!
//! A leaf module: it imports nothing from the crate, so `route`, `client` and `intercept` may all use
//! it (docs/ARCHITECTURE.md, "Layering").

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// The only application protocol spoken on outbound connections and inside intercepted tunnels.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// How many times the OS root store was read (tests prove it is once).
static SYSTEM_ROOT_LOADS: AtomicUsize = AtomicUsize::new(0);

/// Why an outbound TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// The extra-roots file could not be read or holds no certificate.
    #[error("extra CA file {}: {detail}", path.display())]
    ExtraRoots { path: PathBuf, detail: String },
    /// Neither the system store nor the extra roots yielded a usable root.
    #[error("no trusted root certificates found (system store empty and no extra CA file)")]
    NoRoots,
    /// rustls refused the configuration or a certificate.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The ring provider, built once.
pub fn ring_provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The operating system's trusted roots, read on first use and kept for the life of the process.
pub fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(load_system_roots)
}

fn load_system_roots() -> RootCertStore {
    SYSTEM_ROOT_LOADS.fetch_add(1, Ordering::Relaxed);
    let native = rustls_native_certs::load_native_certs();
    if !native.errors.is_empty() {
        tracing::warn!(
            errors = native.errors.len(),
            "some system root certificates could not be loaded"
        );
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(added, ignored, "loaded system root certificates");
    roots
}

/// The shared config trusting the system roots only; every call returns the same `Arc`.
pub fn system_client_config() -> Result<Arc<ClientConfig>, TlsSetupError> {
    static SHARED: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    if let Some(config) = SHARED.get() {
        return Ok(config.clone());
    }
    let config = with_extra_roots(system_roots().clone(), &[])?;
    Ok(SHARED.get_or_init(|| config).clone())
}

/// System roots plus `extra` (DER); without extra roots, the shared [`system_client_config`].
pub fn client_config(
    extra: &[CertificateDer<'static>],
) -> Result<Arc<ClientConfig>, TlsSetupError> {
    match extra {
        [] => system_client_config(),
        _ => with_extra_roots(system_roots().clone(), extra),
    }
}

/// System roots plus the certificates of the PEM file `extra_roots`, if any.
pub fn upstream_client_config(
    extra_roots: Option<&Path>,
) -> Result<Arc<ClientConfig>, TlsSetupError> {
    match extra_roots {
        None => system_client_config(),
        Some(path) => client_config(&load_pem_certificates(path)?).map_err(|e| match e {
            TlsSetupError::Rustls(e) => extra_roots_error(path, &e.to_string()),
            other => other,
        }),
    }
}

fn with_extra_roots(
    mut roots: RootCertStore,
    extra: &[CertificateDer<'static>],
) -> Result<Arc<ClientConfig>, TlsSetupError> {
    for cert in extra {
        roots.add(cert.clone())?;
    }
    if roots.is_empty() {
        return Err(TlsSetupError::NoRoots);
    }
    client_config_with_roots(roots)
}

/// A verifying `ClientConfig` trusting exactly `roots` (TLS 1.2+, ALPN `http/1.1`).
pub fn client_config_with_roots(roots: RootCertStore) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let mut config = ClientConfig::builder_with_provider(ring_provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok(Arc::new(config))
}

/// Every certificate in a PEM file; an unreadable file or one without certificates is an error.
pub fn load_pem_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let iter =
        CertificateDer::pem_file_iter(path).map_err(|e| extra_roots_error(path, &e.to_string()))?;
    let certs = iter
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| extra_roots_error(path, &e.to_string()))?;
    if certs.is_empty() {
        return Err(extra_roots_error(path, "no CERTIFICATE block found"));
    }
    Ok(certs)
}

fn extra_roots_error(path: &Path, detail: &str) -> TlsSetupError {
    TlsSetupError::ExtraRoots {
        path: path.to_path_buf(),
        detail: detail.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_roots_are_loaded_once_and_the_config_is_shared() {
        let first = system_client_config();
        let second = upstream_client_config(None);
        let third = client_config(&[]);
        let _ = system_roots();
        assert_eq!(SYSTEM_ROOT_LOADS.load(Ordering::Relaxed), 1);
        // A machine without any system root (a bare container) cannot build the shared config;
        // everywhere else the three calls must hand out one and the same `Arc`.
        if let (Ok(a), Ok(b), Ok(c)) = (first, second, third) {
            assert!(Arc::ptr_eq(&a, &b) && Arc::ptr_eq(&b, &c));
        }
    }

    #[test]
    fn extra_roots_are_added_to_the_system_roots() {
        let key = rcgen::generate_simple_self_signed(vec!["pac.test".to_string()]).unwrap();
        let extra = [key.cert.der().clone()];
        let config = client_config(&extra).unwrap();
        assert_eq!(config.alpn_protocols, vec![ALPN_HTTP11.to_vec()]);
        assert!(!Arc::ptr_eq(&config, &client_config(&extra).unwrap()));
        assert_eq!(SYSTEM_ROOT_LOADS.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn extra_roots_file_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        assert!(matches!(
            load_pem_certificates(&missing),
            Err(TlsSetupError::ExtraRoots { .. })
        ));
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificates here\n").unwrap();
        let err = upstream_client_config(Some(&empty)).unwrap_err();
        assert!(err.to_string().contains("empty.pem"), "{err}");
    }
}

//! rustls configurations for both sides of an intercepted tunnel, and TLS failure classification.
//!
//! Contract:
//! - Client side ([`server_config_for_host`]): one `ServerConfig` per intercepted connection, bound
//!   to the CONNECT host. The certificate is always the CONNECT host's (no SNI → that certificate);
//!   an SNI naming another host gets no certificate, so rustls aborts the handshake with an alert
//!   (BAD-15). ALPN offers `http/1.1` only (TLS-7, no h2 coalescing); a client that offers only h2
//!   fails the handshake (`no_application_protocol`). No session resumption: a session could
//!   otherwise outlive the host binding.
//! - Upstream side ([`upstream_client_config`]): system roots (rustls-native-certs) plus optional
//!   extra roots from a PEM file (`tls.extra_roots`, `--upstream-ca`); TLS 1.2 and 1.3 only
//!   (TLS-5); certificates always verified: there is deliberately no way to disable that (TLS-3).
//! - [`classify_tls_error`] maps a failed handshake to a stable [`TlsFailureKind`] for
//!   `upstream_tls_<kind>` (FLT-8).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, NoServerSessionStorage, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::ca::{CaError, normalise_dns_name};
use super::leaf_cache::LeafCache;
use crate::error::ProxyError;

/// The only application protocol spoken on either side of an intercepted tunnel.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Why the upstream TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// The extra-roots file could not be read or holds no certificate.
    #[error("extra CA file {}: {detail}", path.display())]
    ExtraRoots { path: PathBuf, detail: String },
    /// Neither the system store nor the extra file yielded a usable root.
    #[error("no trusted root certificates found (system store empty and no extra CA file)")]
    NoRoots,
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Stable names for upstream handshake failures (`upstream_tls_<kind>`, FLT-8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsFailureKind {
    /// The server certificate is expired or not yet valid.
    Expired,
    /// The certificate does not name the host we dialled.
    WrongHost,
    /// The chain does not lead to a trusted root (self-signed, unknown issuer, bad signature…).
    Untrusted,
    /// Anything else: protocol version, alerts, reset, malformed messages.
    Handshake,
}

/// Binds one connection's certificate to its CONNECT host (BAD-15).
#[derive(Debug)]
struct ConnectHostResolver {
    host: String,
    key: Arc<CertifiedKey>,
}

// === impl TlsFailureKind ===

impl TlsFailureKind {
    /// The short stable name (`expired`, `wrong_host`, `untrusted`, `handshake`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::WrongHost => "wrong_host",
            Self::Untrusted => "untrusted",
            Self::Handshake => "handshake",
        }
    }

    /// The `X-LocalProxy-Error` code, `upstream_tls_<kind>`.
    pub fn error_code(self) -> &'static str {
        match self {
            Self::Expired => "upstream_tls_expired",
            Self::WrongHost => "upstream_tls_wrong_host",
            Self::Untrusted => "upstream_tls_untrusted",
            Self::Handshake => "upstream_tls_handshake",
        }
    }
}

// === impl ConnectHostResolver ===

impl ResolvesServerCert for ConnectHostResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        match client_hello.server_name() {
            Some(sni) if !sni.trim_end_matches('.').eq_ignore_ascii_case(&self.host) => {
                tracing::debug!(connect_host = %self.host, sni, "SNI differs from CONNECT host");
                None
            }
            _ => Some(self.key.clone()),
        }
    }
}

// === client side of the MITM ===

/// A `ServerConfig` for one intercepted connection to `connect_host` (from the CONNECT line).
pub fn server_config_for_host(
    cache: &LeafCache,
    connect_host: &str,
) -> Result<Arc<ServerConfig>, CaError> {
    let host = normalise_dns_name(connect_host)?;
    let key = cache.get(&host)?;
    let mut config = ServerConfig::builder_with_provider(ring_provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| CaError::Crypto(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(ConnectHostResolver { host, key }));
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    config.session_storage = Arc::new(NoServerSessionStorage {});
    Ok(Arc::new(config))
}

/// The ring provider, built once: a `ServerConfig` is made per intercepted connection.
pub fn ring_provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

// === upstream side ===

/// System roots plus the certificates in `extra_roots` (PEM), TLS 1.2+, ALPN `http/1.1`.
pub fn upstream_client_config(
    extra_roots: Option<&Path>,
) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    if !native.errors.is_empty() {
        tracing::warn!(
            errors = native.errors.len(),
            "some system root certificates could not be loaded"
        );
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(added, ignored, "loaded system root certificates");
    if let Some(path) = extra_roots {
        for cert in load_pem_certificates(path)? {
            roots
                .add(cert)
                .map_err(|e| extra_roots_error(path, &e.to_string()))?;
        }
    }
    if roots.is_empty() {
        return Err(TlsSetupError::NoRoots);
    }
    client_config_with_roots(roots)
}

/// A verifying upstream `ClientConfig` trusting exactly `roots` (TLS 1.2+, ALPN `http/1.1`).
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

// === failure classification ===

/// Classifies an I/O error from a tokio-rustls handshake (the rustls error is its inner error).
pub fn classify_tls_error(err: &io::Error) -> TlsFailureKind {
    err.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .map_or(TlsFailureKind::Handshake, classify_rustls_error)
}

/// Classifies a rustls error.
pub fn classify_rustls_error(err: &rustls::Error) -> TlsFailureKind {
    match err {
        rustls::Error::InvalidCertificate(cert) => classify_certificate_error(cert),
        _ => TlsFailureKind::Handshake,
    }
}

fn classify_certificate_error(err: &CertificateError) -> TlsFailureKind {
    match err {
        CertificateError::Expired
        | CertificateError::ExpiredContext { .. }
        | CertificateError::NotValidYet
        | CertificateError::NotValidYetContext { .. } => TlsFailureKind::Expired,
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            TlsFailureKind::WrongHost
        }
        _ => TlsFailureKind::Untrusted,
    }
}

/// The [`ProxyError`] for a failed upstream handshake to `host`.
pub fn upstream_tls_error(host: &str, err: &io::Error) -> ProxyError {
    ProxyError::UpstreamTls {
        host: host.to_owned(),
        kind: classify_tls_error(err).as_str(),
        detail: err.to_string(),
    }
}

#[cfg(test)]
mod tests;

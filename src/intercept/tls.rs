//! The client-facing rustls configuration of an intercepted tunnel, and TLS failure classification.
//!
//! Contract:
//! - Client side ([`server_config_for_host`]): one `ServerConfig` per intercepted connection, bound
//!   to the CONNECT host. The certificate is always the CONNECT host's (no SNI → that certificate);
//!   an SNI naming another host gets no certificate, so rustls aborts the handshake with an alert
//!   (BAD-15). ALPN offers `http/1.1` only (TLS-7, no h2 coalescing); a client that offers only h2
//!   fails the handshake (`no_application_protocol`). No session resumption: a session could
//!   otherwise outlive the host binding.
//! - Upstream side: the proxy's one outbound configuration, [`crate::tls_client`] (system roots
//!   loaded once plus `tls.extra_roots`; TLS 1.2+, TLS-5; always verified, TLS-3).
//! - [`classify_tls_error`] maps a failed handshake to a stable [`TlsFailureKind`] for
//!   `upstream_tls_<kind>` (FLT-8).

use std::io;
use std::sync::Arc;

use rustls::server::{ClientHello, NoServerSessionStorage, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, ServerConfig};

use super::ca::{CaError, normalise_dns_name};
use super::leaf_cache::LeafCache;
use crate::error::ProxyError;
use crate::tls_client::{ALPN_HTTP11, ring_provider};

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

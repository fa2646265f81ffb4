//! The home-realm fetch for STS discovery: one `GET https://…` through the normal route, by the
//! proxy's own [`OutboundClient`] (router decision for the authority, dialled by `upstream`, so a
//! corporate proxy and its authentication are honoured), TLS verified against the OS roots plus any
//! extra roots.
//!
//! Contract: [`get_via`] returns status and body or an error string without secrets; it is what
//! `StsDirectory::discover` / `run_refresher` are given as their fetch.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, header};
use rustls_pki_types::CertificateDer;

use super::Router;
use super::sts::FetchResponse;
use crate::client::OutboundClient;
use crate::upstream::Upstream;

/// An outbound client trusting the OS roots plus `extra_roots` (a corporate or emulator CA).
pub fn outbound_client(
    router: Arc<Router>,
    upstream: Arc<Upstream>,
    extra_roots: &[CertificateDer<'static>],
) -> Result<OutboundClient, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    roots.add_parsable_certificates(extra_roots.iter().cloned());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(OutboundClient::new(router, upstream, Arc::new(config)))
}

/// GETs `url` with `client` within `timeout`.
pub async fn get_via(
    client: &OutboundClient,
    url: &str,
    timeout: Duration,
) -> Result<FetchResponse, String> {
    let request = Request::get(url)
        .header(header::ACCEPT, "application/json")
        .header(
            header::USER_AGENT,
            concat!("exoproxy/", env!("CARGO_PKG_VERSION")),
        )
        .body(Bytes::new())
        .map_err(|e| format!("bad URL: {e}"))?;
    let response = tokio::time::timeout(timeout, client.send(request))
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
        .map_err(|e| e.to_string())?;
    Ok(FetchResponse {
        status: response.status().as_u16(),
        body: response.into_body().to_vec(),
    })
}

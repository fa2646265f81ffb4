//! The home-realm fetch for STS discovery: one `GET https://…` through the normal route (the router's
//! decision for the authority, dialled by `upstream`, so a corporate proxy is honoured), TLS verified
//! against the OS roots plus `extra_roots`.
//!
//! Contract: [`get_via`] returns status and body (capped at 256 KiB) or an error string without
//! secrets. It exists until the lead's outbound client lands; it is what `StsDirectory::discover`
//! is given as its fetch.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Uri, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls_pki_types::{CertificateDer, ServerName};

use super::Router;
use super::sts::FetchResponse;
use crate::target::{Action, Target};
use crate::upstream::Upstream;

/// Largest realm answer read.
const MAX_BODY: usize = 256 * 1024;

/// GETs an `https://` URL through `router` + `upstream` within `timeout`.
pub async fn get_via(
    router: &Router,
    upstream: &Upstream,
    url: &str,
    extra_roots: &[CertificateDer<'static>],
    timeout: Duration,
) -> Result<FetchResponse, String> {
    tokio::time::timeout(timeout, get(router, upstream, url, extra_roots))
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
}

async fn get(
    router: &Router,
    upstream: &Upstream,
    url: &str,
    extra_roots: &[CertificateDer<'static>],
) -> Result<FetchResponse, String> {
    let uri: Uri = url.parse().map_err(|e| format!("bad URL: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err("only https:// is fetched".into());
    }
    let host = uri.host().ok_or("URL without host")?.to_string();
    let port = uri.port_u16().unwrap_or(443);
    let target = Target::parse_connect(&format!("{host}:{port}")).map_err(|e| e.0)?;
    let decision = router.resolve(&target).await.map_err(|e| e.to_string())?;
    if let Action::Block { reason } = &decision.action {
        return Err(format!("route refused {host}: {reason}"));
    }
    let connected = upstream
        .connect(&target, &decision)
        .await
        .map_err(|e| e.to_string())?;
    let tls = tls_connect(connected.stream, &host, extra_roots).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| format!("HTTP handshake with {host}: {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(
            header::HOST,
            uri.authority().map_or(host.as_str(), |a| a.as_str()),
        )
        .header(header::ACCEPT, "application/json")
        .header(
            header::USER_AGENT,
            concat!("exoproxy/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("GET {host}: {e}"))?;
    let status = response.status().as_u16();
    let body = Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| format!("reading the answer of {host}: {e}"))?
        .to_bytes()
        .to_vec();
    Ok(FetchResponse { status, body })
}

async fn tls_connect(
    tcp: tokio::net::TcpStream,
    host: &str,
    extra_roots: &[CertificateDer<'static>],
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    roots.add_parsable_certificates(extra_roots.iter().cloned());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = ServerName::try_from(host.to_string()).map_err(|e| format!("TLS name: {e}"))?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS to {host}: {e}"))
}

//! The one HTTPS listener for every emulated host. Each connection: read the ClientHello (so a login-host
//! "refuse" fault can close it before the handshake completes), finish TLS with the emulator's leaf,
//! serve HTTP/1.1, and route each request by `Host` (falling back to SNI) to Entra, the STS, the control
//! host or Exchange. Unknown hosts get 421 Misdirected Request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::LazyConfigAcceptor;

use crate::config::AUTHORITY_HOSTS;
use crate::exchange::Exchange;
use crate::state::{LoginFault, Shared};
use crate::wire::{self, Request};

/// The TLS configurations the listener chooses between.
#[derive(Debug, Clone)]
pub(crate) struct Tls {
    pub(crate) trusted: Arc<ServerConfig>,
    /// Self-signed leaf for the login hosts while the "untrusted certificate" fault is on.
    pub(crate) untrusted: Arc<ServerConfig>,
}

/// Largest request body the emulator buffers (WS-Man envelopes are far smaller).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Accept until `shutdown` flips, then abort every connection and return.
pub(crate) async fn run(
    listener: TcpListener,
    tls: Tls,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(serve_connection(stream, peer, tls.clone(), shared.clone()));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}

async fn serve_connection(stream: TcpStream, peer: SocketAddr, tls: Tls, shared: Arc<Shared>) {
    let acceptor = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream);
    let Ok(start) = acceptor.await else { return };
    let sni = start
        .client_hello()
        .server_name()
        .map(str::to_ascii_lowercase);
    if sni.as_deref().is_some_and(is_authority) && refuse(&shared) {
        tracing::debug!(%peer, "login host connection refused by fault");
        return;
    }
    let login = sni.as_deref().is_some_and(is_authority);
    let config = if login && untrusted(&shared) {
        tls.untrusted
    } else {
        tls.trusted
    };
    let tls_stream = match start.into_stream(config).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
    };
    let service = service_fn(move |req| {
        let shared = shared.clone();
        let sni = sni.clone();
        async move { Ok::<_, Infallible>(respond(&shared, peer, sni.as_deref(), req).await) }
    });
    if let Err(e) = http1::Builder::new()
        .serve_connection(TokioIo::new(tls_stream), service)
        .await
    {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Take one firing of an `UntrustedCertificate` fault.
fn untrusted(shared: &Shared) -> bool {
    shared.with(|s| {
        s.take_fault(|f| *f == LoginFault::UntrustedCertificate)
            .is_some()
    })
}

/// Take one firing of a `Refuse` fault.
fn refuse(shared: &Shared) -> bool {
    shared.with(|s| {
        let refused = s.take_fault(|f| *f == LoginFault::Refuse).is_some();
        if refused {
            s.counters.refused_connections += 1;
        }
        refused
    })
}

async fn respond(
    shared: &Arc<Shared>,
    peer: SocketAddr,
    sni: Option<&str>,
    req: http::Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return wire::text(StatusCode::PAYLOAD_TOO_LARGE, "body too large").map(Full::new);
        }
    };
    let req = Request::from_parts(parts, body);
    let host = request_host(&req, sni);
    tracing::debug!(method = %req.method(), %host, path = req.uri().path(), "request");
    route(shared, &host, peer, req).await.map(Full::new)
}

async fn route(
    shared: &Arc<Shared>,
    host: &str,
    peer: SocketAddr,
    req: Request,
) -> Response<Bytes> {
    if is_authority(host) {
        crate::entra::handle(shared, host, req).await
    } else if host == shared.config.control_host {
        crate::control::http(shared, req)
    } else if shared.config.sts_hosts().iter().any(|h| h == host) {
        crate::sts::handle(shared, host, peer, &req)
    } else if Exchange::serves(host) {
        shared.exchange.handle(host, req, &shared.signer).await
    } else {
        wire::text(
            StatusCode::MISDIRECTED_REQUEST,
            "exosim does not serve this host",
        )
    }
}

fn is_authority(host: &str) -> bool {
    AUTHORITY_HOSTS.contains(&host)
}

/// `Host` without port, lower-cased; else the absolute-form authority; else SNI.
fn request_host(req: &Request, sni: Option<&str>) -> String {
    let from_header = req
        .headers()
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let raw = from_header
        .or_else(|| req.uri().host().map(String::from))
        .or_else(|| sni.map(String::from))
        .unwrap_or_default();
    strip_port(&raw).to_ascii_lowercase()
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split(']')
            .next()
            .map(|h| h.trim_start_matches('['))
            .unwrap_or(host);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_header_port_is_dropped() {
        assert_eq!(
            strip_port("outlook.office365.com:443"),
            "outlook.office365.com"
        );
        assert_eq!(strip_port("[::1]:8443"), "::1");
        assert_eq!(
            strip_port("login.microsoftonline.com"),
            "login.microsoftonline.com"
        );
    }
}

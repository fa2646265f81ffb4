//! The real host's side of an intercepted connection: one verified TLS connection carrying
//! HTTP/1.1, redialled once when it died between requests.
//!
//! Contract:
//! - [`Origin::open`] runs TLS over a stream the handler dialled (the certificate is always
//!   verified; a failed handshake is 502 `upstream_tls_<kind>`: FLT-8), then the HTTP/1.1 handshake.
//!   It returns the connection's driver, which the caller runs (the handler runs it beside the
//!   client's connection, in the same task).
//! - One connection per client connection (WS-Man affinity). [`Origin::send`] uses it; when the
//!   connection died before the request was written, the request goes once on a fresh connection
//!   dialled through the decision's hops (nothing was sent, so any method is safe: FLT-7). A request
//!   that may have reached the host is never sent again by this module.
//! - No traffic for the request's stream-idle limit ends the exchange: 504 before the response
//!   head. The limit is set per request from its path ([`Limits::stream_idle_for`]: EWS streaming
//!   gets the longer one, docs/TESTING.md#flt-15) and holds until the next request.

use std::pin::Pin;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_rustls::TlsConnector;

use super::body::OutBody;
use super::tls::upstream_tls_error;
use crate::error::ProxyError;
use crate::io::{IdleIo, IdleLimit};
use crate::limits::Limits;
use crate::target::{Decision, Target};
use crate::upstream::Upstream;

/// An upstream HTTP/1.1 connection's driver: runs until the connection closes.
pub type Driver = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The connection to the real host of one intercepted CONNECT.
pub struct Origin {
    upstream: Arc<Upstream>,
    /// Verifying TLS config for the real hosts.
    tls: Arc<ClientConfig>,
    target: Target,
    /// The route of the CONNECT, for a redial.
    decision: Decision,
    limits: Limits,
    /// The idle limit of the upstream connection (and of a redialled one), set per request.
    idle: IdleLimit,
    /// The HTTP connection; `None` before [`Origin::open`] and after it died (the next request
    /// redials once).
    sender: Mutex<Option<SendRequest<OutBody>>>,
}

// === impl Origin ===

impl Origin {
    pub fn new(
        upstream: Arc<Upstream>,
        tls: Arc<ClientConfig>,
        target: Target,
        decision: Decision,
        limits: Limits,
    ) -> Origin {
        Origin {
            upstream,
            tls,
            target,
            decision,
            idle: IdleLimit::new(limits.stream_idle),
            limits,
            sender: Mutex::new(None),
        }
    }

    /// TLS and HTTP/1.1 over the stream dialled before the 200; returns the connection's driver.
    pub async fn open(&self, stream: TcpStream) -> Result<Driver, ProxyError> {
        let (sender, connection) = self.handshake(stream).await?;
        *self.sender.lock().await = Some(sender);
        Ok(connection)
    }

    /// Sends on the open connection; a connection that died before the request was written is
    /// replaced once (nothing was sent, so any method is safe: FLT-7).
    pub async fn send(&self, req: Request<OutBody>) -> Result<Response<Incoming>, ProxyError> {
        let mut slot = self.sender.lock().await;
        self.idle.set(self.limits.stream_idle_for(req.uri().path()));
        let mut req = req;
        if let Some(sender) = slot.as_mut()
            && sender.ready().await.is_ok()
        {
            match sender.try_send_request(req).await {
                Ok(response) => return Ok(response),
                Err(mut e) => match e.take_message() {
                    Some(unsent) => req = unsent,
                    None => {
                        *slot = None;
                        return Err(self.error(e.error()));
                    }
                },
            }
        }
        *slot = None;
        let mut sender = self.redial().await?;
        let response = sender.send_request(req).await.map_err(|e| self.error(&e))?;
        *slot = Some(sender);
        Ok(response)
    }

    /// TLS to the real host over `stream` (verified), then an HTTP/1.1 client connection: its
    /// sender, and the connection itself, which the caller must drive (await or spawn).
    async fn handshake(
        &self,
        stream: TcpStream,
    ) -> Result<(SendRequest<OutBody>, Driver), ProxyError> {
        let host = self.target.host.as_str_for_lookup();
        let name = ServerName::try_from(host.clone())
            .map_err(|_| ProxyError::BadRequest(format!("{host} is not a valid TLS name")))?;
        let connector = TlsConnector::from(self.tls.clone());
        let tls = connector
            .connect(name, stream)
            .await
            .map_err(|e| upstream_tls_error(&host, &e))?;
        let io = TokioIo::new(IdleIo::with_limit(tls, self.idle.clone()));
        let (sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| self.error(&e))?;
        let connection = Box::pin(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "intercepted upstream connection ended with an error");
            }
        });
        Ok((sender, connection))
    }

    /// A fresh upstream connection through the decision's hops, driven by a task of its own.
    async fn redial(&self) -> Result<SendRequest<OutBody>, ProxyError> {
        let connected = self.upstream.connect(&self.target, &self.decision).await?;
        let (sender, connection) = self.handshake(connected.stream).await?;
        tokio::spawn(connection);
        Ok(sender)
    }

    /// A failed exchange: 504 when the idle limit cut it, else 502.
    fn error(&self, e: &hyper::Error) -> ProxyError {
        let timed_out = std::error::Error::source(e)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut);
        if timed_out {
            return ProxyError::UpstreamTimeout {
                target: self.target.to_string(),
                after: self.idle.get(),
                detail: "no response".into(),
            };
        }
        ProxyError::UpstreamBadResponse {
            peer: self.target.to_string(),
            detail: e.to_string(),
        }
    }
}

impl std::fmt::Debug for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Origin")
            .field("target", &self.target)
            .field("decision", &self.decision)
            .finish_non_exhaustive()
    }
}

//! The HTTP seam: token code builds `http::Request<Bytes>` and reads `http::Response<Bytes>`; how the bytes
//! travel (through the proxy's upstream chain, a scripted fake IdP in tests) is the [`Transport`]'s job.
//!
//! Contract: a transport sends one request and returns the whole response, or a [`TransportError`] for
//! anything below HTTP (connect, TLS, timeout). [`send_with_timeout`] bounds every token call to
//! [`TOKEN_CALL_TIMEOUT`].

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;

/// The whole-request limit for one call to the identity provider.
pub const TOKEN_CALL_TIMEOUT: Duration = Duration::from_secs(600);

/// A boxed, sendable future: keeps [`Transport`] object-safe without `async-trait`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Sends one HTTP request to the identity provider.
pub trait Transport: Send + Sync {
    /// Sends `req` and collects the full response body.
    fn send(
        &self,
        req: http::Request<Bytes>,
    ) -> BoxFuture<'_, Result<http::Response<Bytes>, TransportError>>;
}

/// A failure below HTTP: the request may or may not have reached the server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// Could not connect (DNS, refused, proxy refused).
    #[error("could not reach the identity provider: {0}")]
    Connect(String),
    /// The call did not finish in time.
    #[error("identity provider did not answer within {0:?}")]
    Timeout(Duration),
    /// Anything else (TLS, broken connection, body too large).
    #[error("identity provider transport error: {0}")]
    Other(String),
}

// === impl Transport helpers ===

/// Sends through `transport`, giving up after `limit` (normally [`TOKEN_CALL_TIMEOUT`]).
pub async fn send_with_timeout(
    transport: &dyn Transport,
    req: http::Request<Bytes>,
    limit: Duration,
) -> Result<http::Response<Bytes>, TransportError> {
    match tokio::time::timeout(limit, transport.send(req)).await {
        Ok(result) => result,
        Err(_) => Err(TransportError::Timeout(limit)),
    }
}

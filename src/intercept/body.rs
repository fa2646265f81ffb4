//! Bodies on the intercepted path: a request body is kept for one replay when it is small, and
//! streamed once when it is not; a rejected response is read to its end before the replay.
//!
//! Contract:
//! - [`prepare`] reads the request body up to [`REPLAY_LIMIT`]: a body that ended by then is
//!   [`Prepared::Buffered`] (sendable twice); a larger one is [`Prepared::Streaming`], the bytes read
//!   so far first, then the rest of the client's body, sent once. A malformed body is a 400.
//! - Nothing reaches the real host while that buffer fills, so by the stream-idle measure (no byte
//!   forwarded) the exchange is idle: [`prepare`] gets the stream-idle limit in all, and a body that
//!   trickles in slower (1 byte a second, or not at all) is a 400 that closes the connection
//!   (docs/TESTING.md#load-8). A streaming body is forwarded as it comes, under the upstream
//!   connection's own idle limit.
//! - [`discard`] reads at most 64 KiB of a rejected response within 5 s and drops it, so that the
//!   connection can carry the replay.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::Response;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use crate::error::ProxyError;
use crate::io::PrefixedBody;

/// Request bodies up to this size are buffered so that a token rejection can be replayed once.
pub const REPLAY_LIMIT: usize = 1024 * 1024;

/// Most bytes of a rejected response read (and discarded) before a replay, to keep the connection.
const REJECTION_BODY_LIMIT: usize = 64 * 1024;

/// The body type of requests sent to the real host.
pub type OutBody = BoxBody<Bytes, hyper::Error>;

/// A request body: buffered (replayable) or streaming (sent once).
#[derive(Debug)]
pub enum Prepared {
    Buffered(Bytes),
    Streaming(OutBody),
}

/// Reads up to [`REPLAY_LIMIT`] of the body within `within`: all of it → buffered; more → streaming.
pub async fn prepare(body: Incoming, within: Duration) -> Result<Prepared, ProxyError> {
    tokio::time::timeout(within, read_replayable(body))
        .await
        .unwrap_or_else(|_| {
            Err(ProxyError::BadRequest(format!(
                "the request body did not arrive within {} s",
                within.as_secs_f64()
            )))
        })
}

async fn read_replayable(mut body: Incoming) -> Result<Prepared, ProxyError> {
    let mut buffered = BytesMut::new();
    while buffered.len() <= REPLAY_LIMIT {
        match body.frame().await {
            None => return Ok(Prepared::Buffered(buffered.freeze())),
            Some(Err(e)) => {
                return Err(ProxyError::BadRequest(format!(
                    "malformed request body ({e})"
                )));
            }
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    buffered.extend_from_slice(&data);
                }
            }
        }
    }
    Ok(Prepared::Streaming(
        PrefixedBody::new(buffered.freeze(), body).boxed(),
    ))
}

/// Reads a small rejected response to its end so the connection stays usable.
pub async fn discard(response: Response<Incoming>) {
    let body = Limited::new(response.into_body(), REJECTION_BODY_LIMIT);
    let _ = tokio::time::timeout(Duration::from_secs(5), body.collect()).await;
}

/// A buffered body, as sent upstream.
pub fn full(bytes: Bytes) -> OutBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

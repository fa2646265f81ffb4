//! Bodies on the intercepted path: a request body is kept for one replay when it is small, and
//! streamed once when it is not; a rejected response is read to its end before the replay.
//!
//! Contract:
//! - [`prepare`] reads the request body up to [`REPLAY_LIMIT`]: a body that ended by then is
//!   [`Prepared::Buffered`] (sendable twice); a larger one is [`Prepared::Streaming`], the bytes read
//!   so far first, then the rest of the client's body, sent once. A malformed body is a 400.
//! - [`discard`] reads at most 64 KiB of a rejected response within 5 s and drops it, so that the
//!   connection can carry the replay.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::Response;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::error::ProxyError;

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

/// A body that yields `prefix` first, then the rest of the client's body.
struct PrefixedBody {
    prefix: Option<Bytes>,
    rest: Incoming,
}

/// Reads up to [`REPLAY_LIMIT`] of the body: all of it → buffered; more → streaming.
pub async fn prepare(mut body: Incoming) -> Result<Prepared, ProxyError> {
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
    let prefix = Some(buffered.freeze());
    Ok(Prepared::Streaming(
        PrefixedBody { prefix, rest: body }.boxed(),
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

// === impl PrefixedBody ===

impl Body for PrefixedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(prefix) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        // The rest's hint counts what is left of the client's body; the prefix comes on top.
        let rest = self.rest.size_hint();
        let extra = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        let mut hint = SizeHint::new();
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + extra);
        }
        hint.set_lower(rest.lower() + extra);
        hint
    }
}

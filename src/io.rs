//! The byte-stream adapters of the request path: [`Rewind`] replays bytes already read from a
//! stream, and [`IdleIo`] fails a stream that saw no traffic for a while.
//!
//! Contract:
//! - [`Rewind`] yields exactly its prefix, then the rest of the inner stream; writes (vectored ones
//!   too) go straight through. The handler uses it for the bytes its head guard read before hyper,
//!   interception for the bytes it peeked to recognise a TLS ClientHello.
//! - [`IdleIo`] fails the next read with `TimedOut` once its limit passed without a read or a write
//!   completing; otherwise it is transparent. The limit is an [`IdleLimit`], which its owner may
//!   change while the stream lives (interception sets it per request: docs/TESTING.md#flt-15); a
//!   change applies from the next read or write on.
//! - Both require `Unpin` inner streams (sockets, TLS streams and upgraded connections are).
//! - [`PrefixedBody`] is the same idea for an HTTP request body: the bytes a pre-read took, then
//!   the rest of the client's body (plain `http://` forwarding and interception both pre-read).

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// A stream with some bytes pushed back in front of it.
#[derive(Debug)]
pub struct Rewind<T> {
    /// The bytes not yet replayed; emptied (and its buffer released) once replayed.
    prefix: Bytes,
    inner: T,
}

/// A stream whose reads fail with `TimedOut` after its [`IdleLimit`] without reads or writes.
#[derive(Debug)]
pub struct IdleIo<T> {
    inner: T,
    idle: IdleLimit,
    /// One timer per stream, re-armed on traffic (not a new timer per read).
    timer: Pin<Box<Sleep>>,
}

// === impl Rewind ===

impl<T> Rewind<T> {
    /// A stream that yields `prefix` before reading `inner`.
    pub fn new(prefix: impl Into<Bytes>, inner: T) -> Rewind<T> {
        Rewind {
            prefix: prefix.into(),
            inner,
        }
    }

    /// The bytes not yet replayed.
    pub fn pending_prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// The bytes not yet replayed and the inner stream.
    pub fn into_parts(self) -> (Bytes, T) {
        (self.prefix, self.inner)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            if self.prefix.is_empty() {
                // Release the buffer (up to a whole request head) for the rest of the connection.
                self.prefix = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The idle limit of one or more [`IdleIo`] streams, shared with whoever may change it.
#[derive(Debug, Clone)]
pub struct IdleLimit(Arc<AtomicU64>);

// === impl IdleLimit ===

impl IdleLimit {
    pub fn new(idle: Duration) -> IdleLimit {
        IdleLimit(Arc::new(AtomicU64::new(millis(idle))))
    }

    /// The limit from the next read or write on.
    pub fn set(&self, idle: Duration) {
        self.0.store(millis(idle), Ordering::Relaxed);
    }

    pub fn get(&self) -> Duration {
        Duration::from_millis(self.0.load(Ordering::Relaxed))
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

// === impl IdleIo ===

impl<T> IdleIo<T> {
    /// A stream with a fixed limit.
    pub fn new(inner: T, idle: Duration) -> IdleIo<T> {
        IdleIo::with_limit(inner, IdleLimit::new(idle))
    }

    /// A stream whose limit follows `idle`.
    pub fn with_limit(inner: T, idle: IdleLimit) -> IdleIo<T> {
        let timer = Box::pin(tokio::time::sleep(idle.get()));
        IdleIo { inner, idle, timer }
    }

    fn touch(&mut self) {
        let next = Instant::now() + self.idle.get();
        self.timer.as_mut().reset(next);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                self.touch();
                Poll::Ready(result)
            }
            Poll::Pending => match self.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no traffic for {:?}", self.idle.get()),
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if result.is_ready() {
            self.touch();
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A request body that yields `prefix` first, then the rest of the client's body.
#[derive(Debug)]
pub struct PrefixedBody {
    prefix: Option<Bytes>,
    rest: Incoming,
}

impl PrefixedBody {
    pub fn new(prefix: Bytes, rest: Incoming) -> Self {
        Self {
            prefix: Some(prefix),
            rest,
        }
    }
}

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
        let read = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        let rest = self.rest.size_hint();
        match rest.exact() {
            Some(n) => SizeHint::with_exact(n + read),
            None => {
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower() + read);
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper + read);
                }
                hint
            }
        }
    }
}

#[cfg(test)]
mod tests;

//! Peek at the first bytes of a tunnel, then hand on a stream that replays them.
//!
//! Contract: [`peek_client_hello`] reads at most [`PEEK_LEN`] bytes (the TLS record header and the
//! handshake type), stopping early as soon as the bytes cannot be a ClientHello or at EOF, and
//! reports whether they start a TLS ClientHello (`16 03 0x .. .. 01`). The returned [`Rewind`]
//! yields exactly the bytes read, then the rest of the inner stream; writes go straight through.
//! It does not time out by itself: the caller wraps it in its first-byte timeout.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// Bytes needed to recognise a ClientHello: 5-byte record header + handshake type.
pub const PEEK_LEN: usize = 6;

/// A stream that first replays a prefix, then reads from `inner`.
#[derive(Debug)]
pub struct Rewind<S> {
    prefix: Vec<u8>,
    consumed: usize,
    inner: S,
}

/// The result of [`peek_client_hello`].
#[derive(Debug)]
pub struct Peeked<S> {
    /// The stream, rewound: reading it yields the peeked bytes first.
    pub stream: Rewind<S>,
    /// True when the peeked bytes start a TLS handshake record carrying a ClientHello.
    pub is_client_hello: bool,
}

// === impl Rewind ===

impl<S> Rewind<S> {
    /// A stream that yields `prefix` before reading `inner`.
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        Self {
            prefix,
            consumed: 0,
            inner,
        }
    }

    /// The bytes not yet replayed.
    pub fn pending_prefix(&self) -> &[u8] {
        &self.prefix[self.consumed..]
    }

    /// The inner stream and the bytes not yet replayed.
    pub fn into_parts(self) -> (Vec<u8>, S) {
        let mut prefix = self.prefix;
        prefix.drain(..self.consumed);
        (prefix, self.inner)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.consumed < this.prefix.len() {
            let rest = &this.prefix[this.consumed..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.consumed += n;
            if this.consumed == this.prefix.len() {
                this.prefix = Vec::new(); // release the buffer; `consumed` is reset with it
                this.consumed = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
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

// === peeking ===

/// Reads the first bytes of `stream` and says whether they start a TLS ClientHello.
pub async fn peek_client_hello<S: AsyncRead + Unpin>(mut stream: S) -> io::Result<Peeked<S>> {
    let mut prefix = Vec::with_capacity(PEEK_LEN);
    let mut chunk = [0u8; PEEK_LEN];
    while prefix.len() < PEEK_LEN && could_be_client_hello(&prefix) {
        let n = stream.read(&mut chunk[..PEEK_LEN - prefix.len()]).await?;
        if n == 0 {
            break;
        }
        prefix.extend_from_slice(&chunk[..n]);
    }
    let is_client_hello = prefix.len() == PEEK_LEN && could_be_client_hello(&prefix);
    Ok(Peeked {
        stream: Rewind::new(prefix, stream),
        is_client_hello,
    })
}

/// True while `bytes` is a prefix of `16 03 {00..04} len len 01`.
fn could_be_client_hello(bytes: &[u8]) -> bool {
    const HANDSHAKE: u8 = 0x16;
    const CLIENT_HELLO: u8 = 0x01;
    bytes.iter().enumerate().all(|(i, &b)| match i {
        0 => b == HANDSHAKE,
        1 => b == 0x03,
        2 => b <= 0x04,
        5 => b == CLIENT_HELLO,
        _ => true,
    })
}

#[cfg(test)]
mod tests;

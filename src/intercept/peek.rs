//! Peek at the first bytes of a tunnel, then hand on a stream that replays them.
//!
//! Contract: [`peek_client_hello`] reads at most [`PEEK_LEN`] bytes (the TLS record header and the
//! handshake type), stopping early as soon as the bytes cannot be a ClientHello or at EOF, and
//! reports whether they start a TLS ClientHello (`16 03 0x .. .. 01`). The returned [`Rewind`]
//! yields exactly the bytes read, then the rest of the inner stream; writes go straight through.
//! It does not time out by itself: the caller wraps it in its first-byte timeout.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::io::Rewind;

/// Bytes needed to recognise a ClientHello: 5-byte record header + handshake type.
pub const PEEK_LEN: usize = 6;

/// The result of [`peek_client_hello`].
#[derive(Debug)]
pub struct Peeked<S> {
    /// The stream, rewound: reading it yields the peeked bytes first.
    pub stream: Rewind<S>,
    /// True when the peeked bytes start a TLS handshake record carrying a ClientHello.
    pub is_client_hello: bool,
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

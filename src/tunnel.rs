//! Byte splice between client and upstream with idle timeout and byte counts.
//!
//! Contract: bytes are relayed unchanged in both directions; an EOF on one side half-closes the other
//! (so TLS close_notify and HTTP/1.0 style endings pass through); an error on either side, or `idle`
//! without traffic in either direction, ends the tunnel. The result says how much went each way.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Buffer per direction; large enough for a TLS record.
const BUF_SIZE: usize = 16 * 1024 + 512;

/// How a tunnel ended, with its byte counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpliceStats {
    /// Bytes from the client to the upstream.
    pub up: u64,
    /// Bytes from the upstream to the client.
    pub down: u64,
    pub end: SpliceEnd,
}

/// Why a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpliceEnd {
    /// Both sides closed cleanly.
    #[default]
    Closed,
    /// No traffic for the idle timeout.
    Idle,
    /// A read or write failed (reset, broken pipe).
    Error,
}

/// Relays until both sides closed, one failed, or the tunnel was idle for `idle`.
pub async fn splice<C, U>(client: C, upstream: U, idle: Duration) -> SpliceStats
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (mut client_rd, mut client_wr) = tokio::io::split(client);
    let (mut up_rd, mut up_wr) = tokio::io::split(upstream);
    let mut stats = SpliceStats::default();
    let (mut up_open, mut down_open) = (true, true);
    let mut up_buf = vec![0u8; BUF_SIZE];
    let mut down_buf = vec![0u8; BUF_SIZE];
    while up_open || down_open {
        let step = tokio::select! {
            read = client_rd.read(&mut up_buf), if up_open => {
                relay(read, &up_buf, &mut up_wr, &mut stats.up, &mut up_open).await
            }
            read = up_rd.read(&mut down_buf), if down_open => {
                relay(read, &down_buf, &mut client_wr, &mut stats.down, &mut down_open).await
            }
            () = tokio::time::sleep(idle) => Err(SpliceEnd::Idle),
        };
        if let Err(end) = step {
            stats.end = end;
            break;
        }
    }
    let _ = client_wr.shutdown().await;
    let _ = up_wr.shutdown().await;
    stats
}

/// Writes what one read returned to the other side; EOF half-closes the other side.
async fn relay<W: AsyncWrite + Unpin>(
    read: std::io::Result<usize>,
    buf: &[u8],
    to: &mut W,
    count: &mut u64,
    open: &mut bool,
) -> Result<(), SpliceEnd> {
    match read {
        Ok(0) => {
            *open = false;
            let _ = to.shutdown().await;
            Ok(())
        }
        Ok(n) => {
            to.write_all(&buf[..n])
                .await
                .map_err(|_| SpliceEnd::Error)?;
            *count += n as u64;
            Ok(())
        }
        Err(_) => Err(SpliceEnd::Error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn relays_both_ways_and_counts() {
        let (client, mut client_peer) = tokio::io::duplex(1024);
        let (upstream, mut upstream_peer) = tokio::io::duplex(1024);
        let task = tokio::spawn(splice(client, upstream, Duration::from_secs(5)));
        client_peer.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        upstream_peer.read_exact(&mut buf).await.unwrap();
        upstream_peer.write_all(b"world!").await.unwrap();
        let mut buf = [0u8; 6];
        client_peer.read_exact(&mut buf).await.unwrap();
        drop(client_peer);
        drop(upstream_peer);
        let stats = task.await.unwrap();
        assert_eq!((stats.up, stats.down, stats.end), (5, 6, SpliceEnd::Closed));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_tunnel_ends() {
        let (client, _client_peer) = tokio::io::duplex(1024);
        let (upstream, _upstream_peer) = tokio::io::duplex(1024);
        let stats = splice(client, upstream, Duration::from_secs(3600)).await;
        assert_eq!(stats.end, SpliceEnd::Idle);
    }
}

//! Byte splice between client and upstream with idle timeout and byte counts.
//!
//! Contract: bytes are relayed unchanged in both directions; an EOF on one side half-closes the other
//! (so TLS close_notify and HTTP/1.0 style endings pass through); an error on either side, or `idle`
//! without traffic in either direction, ends the tunnel. The result says how much went each way.
//!
//! Speed (BENCHMARKS.md §1, §4): an active direction reads into a heap buffer that holds one TLS
//! record and doubles, up to 128 KiB, whenever a read fills it, so bulk transfers move large chunks
//! per system call. Memory (docs/TESTING.md#load-3): a quiet direction holds no
//! heap buffer. It waits with a 512-byte read into the task itself (`PROBE`); a read that fills it
//! (a burst) takes a buffer, small exchanges never do, and after 2 s without traffic (`QUIET`) both
//! buffers are released, so thousands of idle tunnels cost about 10 KiB each (BENCHMARKS.md §5). The deadline is one timer per tunnel, re-armed only when it fires
//! or when a quiet tunnel wakes up (not a new timer per read).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// Starting buffer per direction; large enough for a TLS record.
const BUF_SIZE: usize = 16 * 1024 + 512;
/// Largest buffer per direction, reached only by bulk transfers.
const MAX_BUF: usize = 128 * 1024;
/// The read a quiet direction waits with: part of the task, no heap buffer.
const PROBE: usize = 512;
/// No traffic for this long releases the buffers.
const QUIET: Duration = Duration::from_secs(2);

/// One direction's read buffer: empty while quiet (reads go to the probe), taken on traffic.
struct Lane {
    buf: Vec<u8>,
    probe: [u8; PROBE],
}

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
    let mut up = Lane::quiet();
    let mut down = Lane::quiet();
    let mut last_traffic = Instant::now();
    let deadline = tokio::time::sleep(idle);
    tokio::pin!(deadline);
    while up_open || down_open {
        let step = tokio::select! {
            read = client_rd.read(up.slot()), if up_open => {
                last_traffic = Instant::now();
                let (step, woke) = up.relay(read, &mut up_wr, &mut stats.up, &mut up_open, idle).await;
                if woke {
                    deadline.as_mut().reset(last_traffic + QUIET.min(idle));
                }
                step
            }
            read = up_rd.read(down.slot()), if down_open => {
                last_traffic = Instant::now();
                let (step, woke) = down.relay(read, &mut client_wr, &mut stats.down, &mut down_open, idle).await;
                if woke {
                    deadline.as_mut().reset(last_traffic + QUIET.min(idle));
                }
                step
            }
            () = &mut deadline => {
                let quiet_for = last_traffic.elapsed();
                if quiet_for >= idle {
                    Err(SpliceEnd::Idle)
                } else {
                    let holding = up.is_active() || down.is_active();
                    if holding && quiet_for >= QUIET {
                        up.release();
                        down.release();
                    }
                    let next = match up.is_active() || down.is_active() {
                        true => QUIET.min(idle),
                        false => idle,
                    };
                    deadline.as_mut().reset(last_traffic + next);
                    Ok(())
                }
            }
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

// === impl Lane ===

impl Lane {
    fn quiet() -> Lane {
        Lane {
            buf: Vec::new(),
            probe: [0; PROBE],
        }
    }

    fn is_active(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Where the next read goes: the buffer while active, the probe while quiet.
    fn slot(&mut self) -> &mut [u8] {
        match self.buf.is_empty() {
            true => &mut self.probe,
            false => &mut self.buf,
        }
    }

    /// Relays what the last read returned. A probe read that filled the probe means a burst: take a
    /// buffer (quiet → active, `true`); small exchanges never take one. A full buffer grows.
    async fn relay<W: AsyncWrite + Unpin>(
        &mut self,
        read: std::io::Result<usize>,
        to: &mut W,
        count: &mut u64,
        open: &mut bool,
        idle: Duration,
    ) -> (Result<(), SpliceEnd>, bool) {
        let was_quiet = self.buf.is_empty();
        let full = read.as_ref().is_ok_and(|&n| n == self.slot().len());
        let step = relay(read, self.slot(), to, count, open, idle).await;
        if was_quiet && full && step.is_ok() {
            self.buf = vec![0u8; BUF_SIZE];
            return (step, true);
        }
        grow_if(full, &mut self.buf);
        (step, false)
    }

    fn release(&mut self) {
        self.buf = Vec::new();
    }
}

/// Doubles `buf` (up to [`MAX_BUF`]) after a read that filled it.
fn grow_if(full: bool, buf: &mut Vec<u8>) {
    if full && !buf.is_empty() && buf.len() < MAX_BUF {
        buf.resize((buf.len() * 2).min(MAX_BUF), 0);
    }
}

/// Writes what one read returned to the other side; EOF half-closes the other side. A write that
/// cannot finish within `idle` (the peer stopped reading, LOAD-9 in docs/TESTING.md#load-9) ends
/// the tunnel as idle: the idle deadline above is not polled while a write waits.
async fn relay<W: AsyncWrite + Unpin>(
    read: std::io::Result<usize>,
    buf: &[u8],
    to: &mut W,
    count: &mut u64,
    open: &mut bool,
    idle: Duration,
) -> Result<(), SpliceEnd> {
    match read {
        Ok(0) => {
            *open = false;
            let _ = to.shutdown().await;
            Ok(())
        }
        Ok(n) => {
            tokio::time::timeout(idle, to.write_all(&buf[..n]))
                .await
                .map_err(|_| SpliceEnd::Idle)?
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

    #[tokio::test]
    async fn bulk_transfer_grows_the_buffer_and_keeps_every_byte() {
        let (client, mut client_peer) = tokio::io::duplex(256 * 1024);
        let (upstream, mut upstream_peer) = tokio::io::duplex(256 * 1024);
        let task = tokio::spawn(splice(client, upstream, Duration::from_secs(5)));
        let data: Vec<u8> = (0..4 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        let writer = {
            let data = data.clone();
            tokio::spawn(async move {
                upstream_peer.write_all(&data).await.unwrap();
                upstream_peer.shutdown().await.unwrap();
                upstream_peer
            })
        };
        let mut received = Vec::new();
        client_peer.read_to_end(&mut received).await.unwrap();
        assert!(received == data, "bytes changed in the relay");
        drop(client_peer);
        drop(writer.await.unwrap());
        let stats = task.await.unwrap();
        assert_eq!(stats.down, data.len() as u64);
    }

    #[tokio::test]
    async fn buffers_are_taken_by_bursts_only_and_released() {
        let mut sink = tokio::io::sink();
        let (mut count, mut open) = (0, true);
        let mut lane = Lane::quiet();
        let (step, woke) = lane
            .relay(
                Ok(10),
                &mut sink,
                &mut count,
                &mut open,
                Duration::from_secs(5),
            )
            .await;
        assert_eq!(
            (step, woke, lane.is_active()),
            (Ok(()), false, false),
            "small: no buffer"
        );
        let (_, woke) = lane
            .relay(
                Ok(PROBE),
                &mut sink,
                &mut count,
                &mut open,
                Duration::from_secs(5),
            )
            .await;
        assert!(
            woke && lane.is_active() && lane.slot().len() == BUF_SIZE,
            "a burst takes one"
        );
        lane.release();
        assert!(!lane.is_active() && lane.slot().len() == PROBE);
        assert_eq!(count, 10 + PROBE as u64);
    }

    #[test]
    fn buffers_double_up_to_the_cap_only_when_full() {
        let mut buf = vec![0u8; BUF_SIZE];
        grow_if(false, &mut buf);
        assert_eq!(buf.len(), BUF_SIZE);
        for _ in 0..10 {
            grow_if(true, &mut buf);
        }
        assert_eq!(buf.len(), MAX_BUF);
    }

    #[tokio::test(start_paused = true)]
    async fn traffic_keeps_an_idle_deadline_away() {
        let (client, mut client_peer) = tokio::io::duplex(1024);
        let (upstream, mut upstream_peer) = tokio::io::duplex(1024);
        let task = tokio::spawn(splice(client, upstream, Duration::from_secs(10)));
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(6)).await;
            client_peer.write_all(b"x").await.unwrap();
            let mut b = [0u8; 1];
            upstream_peer.read_exact(&mut b).await.unwrap();
        }
        assert!(!task.is_finished(), "30 s of traffic every 6 s is not idle");
        let stats = task.await.unwrap();
        assert_eq!((stats.up, stats.end), (5, SpliceEnd::Idle));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_tunnel_ends() {
        let (client, _client_peer) = tokio::io::duplex(1024);
        let (upstream, _upstream_peer) = tokio::io::duplex(1024);
        let stats = splice(client, upstream, Duration::from_secs(3600)).await;
        assert_eq!(stats.end, SpliceEnd::Idle);
    }
}

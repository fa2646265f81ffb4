use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

const HELLO_START: [u8; 8] = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01];

#[tokio::test]
async fn small_reads_drain_the_prefix_then_the_inner_stream_and_writes_pass_through() {
    let (mut client, server) = tokio::io::duplex(64);
    // Six bytes were read before (a peeked TLS header), two are still in the socket.
    client.write_all(&HELLO_START[6..]).await.unwrap();
    let mut stream = Rewind::new(Bytes::copy_from_slice(&HELLO_START[..6]), server);
    let mut one = [0u8; 4];
    stream.read_exact(&mut one).await.unwrap();
    assert_eq!(one, HELLO_START[..4]);
    stream.read_exact(&mut one).await.unwrap();
    assert_eq!(one, HELLO_START[4..]);
    stream.write_all(b"pong").await.unwrap();
    let mut back = [0u8; 4];
    client.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"pong");
}

#[tokio::test]
async fn the_whole_prefix_then_the_inner_stream_and_the_buffer_is_released() {
    let (mut client, server) = tokio::io::duplex(64);
    client.write_all(b" rest").await.unwrap();
    drop(client);
    let mut stream = Rewind::new(Bytes::from_static(b"GET / HTTP/1.1\r\n"), server);
    assert_eq!(stream.pending_prefix(), b"GET / HTTP/1.1\r\n");
    let mut all = Vec::new();
    stream.read_to_end(&mut all).await.unwrap();
    assert_eq!(all, b"GET / HTTP/1.1\r\n rest");
    assert!(stream.pending_prefix().is_empty());
}

#[tokio::test(start_paused = true)]
async fn idle_reads_time_out_and_traffic_rearms_the_timer() {
    let idle = Duration::from_secs(10);
    let (mut client, server) = tokio::io::duplex(64);
    let mut stream = IdleIo::new(server, idle);
    tokio::time::advance(Duration::from_secs(8)).await;
    client.write_all(b"x").await.unwrap();
    let mut one = [0u8; 1];
    stream.read_exact(&mut one).await.unwrap();
    // The read re-armed the timer: 8 s more are still within the limit.
    tokio::time::advance(Duration::from_secs(8)).await;
    client.write_all(b"y").await.unwrap();
    stream.read_exact(&mut one).await.unwrap();
    assert_eq!(&one, b"y");
    let started = Instant::now();
    let err = stream.read(&mut one).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert!(started.elapsed() >= idle);
}

#[tokio::test(start_paused = true)]
async fn a_changed_limit_applies_from_the_next_traffic_on() {
    let limit = IdleLimit::new(Duration::from_secs(2));
    let (mut client, server) = tokio::io::duplex(64);
    let mut stream = IdleIo::with_limit(server, limit.clone());
    limit.set(Duration::from_secs(10));
    client.write_all(b"x").await.unwrap();
    let mut one = [0u8; 1];
    stream.read_exact(&mut one).await.unwrap();
    // Re-armed with the new limit: 8 s of silence are within it, 2 s were not.
    tokio::time::advance(Duration::from_secs(8)).await;
    client.write_all(b"y").await.unwrap();
    stream.read_exact(&mut one).await.unwrap();
    let started = Instant::now();
    let err = stream.read(&mut one).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert!(started.elapsed() >= Duration::from_secs(10));
}

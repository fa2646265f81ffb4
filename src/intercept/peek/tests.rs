use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

const HELLO_START: [u8; 8] = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01];

#[tokio::test]
async fn client_hello_is_recognised_and_replayed() {
    let (mut client, server) = tokio::io::duplex(64);
    client.write_all(&HELLO_START).await.unwrap();
    client.write_all(b"rest").await.unwrap();
    drop(client);
    let peeked = peek_client_hello(server).await.unwrap();
    assert!(peeked.is_client_hello);
    assert_eq!(peeked.stream.pending_prefix().len(), PEEK_LEN);
    let mut all = Vec::new();
    let mut stream = peeked.stream;
    stream.read_to_end(&mut all).await.unwrap();
    assert_eq!(all, [&HELLO_START[..], b"rest"].concat());
}

#[tokio::test]
async fn header_split_over_many_reads_is_still_recognised() {
    let (mut client, server) = tokio::io::duplex(64);
    let writer = tokio::spawn(async move {
        for b in HELLO_START {
            client.write_all(&[b]).await.unwrap();
            tokio::task::yield_now().await;
        }
        client
    });
    let peeked = peek_client_hello(server).await.unwrap();
    assert!(peeked.is_client_hello);
    drop(writer.await.unwrap());
    let mut all = Vec::new();
    let mut stream = peeked.stream;
    stream.read_to_end(&mut all).await.unwrap();
    assert_eq!(all, HELLO_START);
}

#[tokio::test]
async fn plain_http_is_not_tls_and_is_replayed_intact() {
    let (mut client, server) = tokio::io::duplex(64);
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    drop(client);
    let peeked = peek_client_hello(server).await.unwrap();
    assert!(!peeked.is_client_hello);
    assert!(
        peeked.stream.pending_prefix().len() <= PEEK_LEN,
        "never reads past the header"
    );
    let mut all = Vec::new();
    let mut stream = peeked.stream;
    stream.read_to_end(&mut all).await.unwrap();
    assert_eq!(all, b"GET / HTTP/1.1\r\n\r\n");
}

#[tokio::test]
async fn other_handshake_types_and_versions_are_not_client_hellos() {
    for bytes in [
        [0x16, 0x03, 0x03, 0x00, 0x10, 0x02], // ServerHello
        [0x16, 0x02, 0x00, 0x00, 0x10, 0x01], // SSLv2-ish version
        [0x17, 0x03, 0x03, 0x00, 0x10, 0x01], // application data
    ] {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(&bytes).await.unwrap();
        drop(client);
        let peeked = peek_client_hello(server).await.unwrap();
        assert!(!peeked.is_client_hello, "{bytes:02x?}");
    }
}

#[tokio::test]
async fn early_eof_is_not_tls_and_keeps_the_bytes() {
    let (mut client, server) = tokio::io::duplex(64);
    client.write_all(&[0x16, 0x03]).await.unwrap();
    drop(client);
    let peeked = peek_client_hello(server).await.unwrap();
    assert!(!peeked.is_client_hello);
    let (prefix, _) = peeked.stream.into_parts();
    assert_eq!(&prefix[..], [0x16, 0x03]);
}

use super::*;

// Two rows as Linux x86_64 prints them: 127.0.0.1:54321 → 127.0.0.1:8765 owned by uid 1000, and the
// listening socket itself (remote 0.0.0.0:0) owned by uid 0.
const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:223D 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:D431 0100007F:223D 01 00000000:00000000 00:00000000 00000000  1000        0 2 1 0000000000000000 20 4 30 10 -1
";

const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:D432 00000000000000000000000001000000:223D 01 00000000:00000000 00:00000000 00000000  1001        0 3 1 0000000000000000 20 4 30 10 -1
   1: 0000000000000000FFFF00000100007F:D433 0000000000000000FFFF00000100007F:223D 01 00000000:00000000 00:00000000 00000000  1002        0 4 1 0000000000000000 20 4 30 10 -1
";

#[cfg(target_endian = "little")]
#[test]
fn finds_the_owner_of_the_client_row() {
    let client: SocketAddr = "127.0.0.1:54321".parse().unwrap();
    let local: SocketAddr = "127.0.0.1:8765".parse().unwrap();
    assert_eq!(find_owner_uid(TCP, client, local), Some(1000));
    // The reverse direction is the proxy's own socket, not the client's.
    assert_eq!(find_owner_uid(TCP, local, client), None);

    let client6: SocketAddr = "[::1]:54322".parse().unwrap();
    let local6: SocketAddr = "[::1]:8765".parse().unwrap();
    assert_eq!(find_owner_uid(TCP6, client6, local6), Some(1001));
    // An IPv4 client accepted on a dual-stack socket appears v4-mapped.
    let mapped: SocketAddr = "127.0.0.1:54323".parse().unwrap();
    assert_eq!(find_owner_uid(TCP6, mapped, local), Some(1002));
}

#[test]
fn garbage_rows_are_ignored() {
    let client: SocketAddr = "127.0.0.1:1".parse().unwrap();
    assert_eq!(
        find_owner_uid("header\n0: zz:yy 1:2 x\n\n", client, client),
        None
    );
}

#[cfg(target_os = "linux")]
#[test]
fn a_real_loopback_connection_is_ours() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (_server_side, peer) = listener.accept().unwrap();
    assert_eq!(peer, client.local_addr().unwrap());
    assert_eq!(check(peer, listener.local_addr().unwrap()), PeerUser::Same);
}

//! Memory of idle tunnels (docs/TESTING.md#load-3): N tunnels through the proxy to a loopback echo
//! server, each used once and then left idle, cost ≤ 16 KiB of RSS each and the process stays under
//! 150 MiB; held idle (under the proxy's 1 h tunnel idle limit), every one still relays afterwards;
//! after they close, RSS is back within 2× of the baseline before they opened.
//!
//! The proxy, the clients and the echo server share this process, so the per-tunnel figure includes
//! the test's own two sockets per tunnel: it is an upper bound for the proxy alone.
//! `EXOPROXY_IDLE_TUNNELS` sets N (default 2 000, the CI-sized form; BENCHMARKS.md has the 10 000
//! run, which needs `ulimit -n 65536`: four descriptors per tunnel). `EXOPROXY_SOAK_SECS` sets how
//! long they are held idle (default 3 s; the plan's long form is 1 000 tunnels for 30 min:
//! `EXOPROXY_IDLE_TUNNELS=1000 EXOPROXY_SOAK_SECS=1800 cargo test --release --test idle_tunnels`).

#![cfg(target_os = "linux")] // reads /proc/self/status
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use exoproxy::limits::Limits;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// VmRSS of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Echoes every connection with a small buffer (its memory counts against the tunnels).
async fn start_echo() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// Opens `n` tunnels and echoes `burst` bytes through each once.
async fn open_tunnels(proxy: std::net::SocketAddr, n: usize, burst: usize) -> Vec<TcpStream> {
    let sent: Vec<u8> = (0..burst).map(|i| (i % 251) as u8).collect();
    let mut tunnels = Vec::with_capacity(n);
    for i in 0..n {
        let (head, _, mut stream) = connect(proxy, &format!("{ORIGIN_HOST}:443")).await;
        assert!(head.starts_with("HTTP/1.1 200"), "tunnel {i}: {head}");
        stream.write_all(&sent).await.unwrap();
        let mut back = vec![0u8; burst];
        stream.read_exact(&mut back).await.unwrap();
        assert!(back == sent, "tunnel {i}: echo differs");
        tunnels.push(stream);
    }
    tunnels
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load3_idle_tunnels_cost_at_most_16_kib_each_and_memory_comes_back() {
    let n = env_or("EXOPROXY_IDLE_TUNNELS", 2000);
    // Bytes echoed once through each tunnel before it idles (a small request/reply by default;
    // more than 512 makes the relay take its buffers, which it releases after 2 s quiet).
    let burst = env_or("EXOPROXY_IDLE_TUNNEL_BURST", 64);
    // At least past the relay's 2 s quiet period, so that every tunnel has given its buffers back.
    let hold = Duration::from_secs(env_or("EXOPROXY_SOAK_SECS", 3).max(3) as u64);
    let echo = start_echo().await;
    let limits = Limits {
        max_connections: n + 100,
        tunnel_idle: Limits::default().tunnel_idle,
        ..test_limits()
    };
    let proxy = start_proxy(direct(), direct_config(echo.port()), limits).await;
    // Warm the runtime and the allocator, then measure from there.
    drop(open_tunnels(proxy.addr, 100, burst).await);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let baseline = rss_kib();

    let mut tunnels = open_tunnels(proxy.addr, n, burst).await;
    tokio::time::sleep(hold).await;
    let open = rss_kib();
    let per_tunnel = (open.saturating_sub(baseline)) as f64 / n as f64;
    // All survived the idle hold: one more byte through each.
    for (i, tunnel) in tunnels.iter_mut().enumerate() {
        tunnel.write_all(b"!").await.unwrap();
        let mut back = [0u8; 1];
        let echoed =
            tokio::time::timeout(Duration::from_secs(5), tunnel.read_exact(&mut back)).await;
        assert!(
            matches!(echoed, Ok(Ok(_))) && back == *b"!",
            "tunnel {i} did not survive {hold:?} idle: {echoed:?}"
        );
    }

    drop(tunnels);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let closed = rss_kib();
    println!(
        "idle tunnels: n={n} burst={burst} B held={hold:?} baseline={baseline} KiB open={open} KiB ({per_tunnel:.1} KiB per tunnel) closed={closed} KiB"
    );
    assert!(
        per_tunnel <= 16.0,
        "{per_tunnel:.1} KiB per idle tunnel (limit 16)"
    );
    assert!(
        open < 150 * 1024,
        "RSS {open} KiB with {n} idle tunnels (limit 150 MiB)"
    );
    assert!(
        closed <= 2 * baseline,
        "RSS after close {closed} KiB, baseline {baseline} KiB"
    );
}
